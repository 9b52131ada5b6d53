# Set-up is two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PACKAGES := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
SYSTEM_STAMP := $(VENV)/.system

.PHONY: install system demo test lint bench clean

install: $(STAMP) $(SYSTEM_STAMP)

# Python stack, every version pinned in constraints.txt.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(PY) -m pip check
	touch $@

# Debian packages for the firmware toolchain and emulator, through apt-get when the machine has it.
$(SYSTEM_STAMP): $(STAMP)
	@if command -v arm-none-eabi-gcc >/dev/null && command -v qemu-system-arm >/dev/null; then \
		echo "firmware toolchain present"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES); \
	else \
		echo "warning: no arm-none-eabi-gcc/qemu-system-arm and no root apt-get; firmware falls back to the host gcc"; \
	fi
	touch $@

system: $(SYSTEM_STAMP)

demo: install
	$(VENV)/bin/tinyarch space show mcu
	$(VENV)/bin/tinyarch space sample mcu -n 5 --seed 0
	$(VENV)/bin/tinyarch profile examples/lmanet_elite.json --budget-sram 320KB --budget-flash 1MB --budget-macs 100M

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install lint
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	$(PY) benchmarks/profile_speed.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
