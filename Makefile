# Set-up is two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
APT_PACKAGES := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm dataset-fashion-mnist chromium tmux
SYSTEM_STAMP := $(VENV)/.system

.PHONY: install system model qemu-plugin demo test lint bench clean

install: $(STAMP) $(SYSTEM_STAMP) model qemu-plugin

# Python stack, every version pinned in constraints.txt: the core and every extra, plus the dev tools.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[all,dev]'
	$(PY) -m pip check
	touch $@

# Debian packages: the firmware toolchain and emulator, real Fashion-MNIST for CPU training, and
# Chromium and tmux for the tests of the HTML report and of chatting with a live run.
$(SYSTEM_STAMP): $(STAMP)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then \
		echo "Debian packages present"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else \
		echo "warning: cannot install $$missing (needs root and apt-get); tests that need them are skipped"; \
	fi
	touch $@

system: $(SYSTEM_STAMP)

# The embedded LLM (Qwen2.5-Coder-0.5B-Instruct, GGUF), verified by SHA-256, in $TINYARCH_CACHE/models (default ~/.cache/tinyarch).
model: $(STAMP)
	$(VENV)/bin/tinyarch model fetch

# QEMU's instruction-count plugin (firmware/qemu), built once into $TINYARCH_CACHE/qemu-plugin (default ~/.cache/tinyarch).
qemu-plugin: $(SYSTEM_STAMP)
	@command -v qemu-system-arm >/dev/null || { echo "no qemu-system-arm: firmware runs on the host board only"; exit 0; }; \
	$(PY) -c "from tinyarch.tools.deploy.emulator import plugin_path; print(plugin_path())"

# A real search: the embedded LLM designs `mcu` networks for Fashion-MNIST (synthetic data when
# Debian's dataset-fashion-mnist is absent), each trained with a 3-epoch proxy on 6,000 images.
DEMO_DATASET := $(shell test -d /usr/share/datasets/fashion-mnist && echo fashion-mnist || echo synthetic)
demo: install
	$(VENV)/bin/tinyarch search --name demo-$$(date +%Y%m%d-%H%M%S) --space mcu --evaluator proxy \
		--dataset $(DEMO_DATASET) --strategy llm --batch 2 --budget-evals 6 --budget-macs 5M \
		--budget-sram 64KB --proxy-epochs 3 --proxy-images 6000

# deptry: the declared dependencies (core and extras) are exactly the imported ones.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/deptry .

test: install lint
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	$(PY) benchmarks/profile_speed.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
