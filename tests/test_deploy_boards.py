"""Board support and emulation: a stand-in model built for host, QEMU's mps2-an500 and the STM32H743.

The stand-in's ta_invoke writes input + 1 (int8 wrap-around) to the output, optionally after a
loop over a const table, so outputs are known exactly and the extra work must show up in the
instruction count and in flash.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tinyarch.tools.deploy.emulator import (
    EmulatorError,
    QemuResult,
    build_project,
    copy_firmware,
    firmware_size,
    parse_outputs,
    run_binary,
    run_host,
    run_qemu,
)

INPUTS = [[0, 1, 2, 127, -128, -1], [5, -6, 7, -8, 9, -10], [100, 50, 0, -50, -100, 126]]
TABLE_SIZE = 65536
OP_WORK = 200

needs_cross = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None,
    reason="arm-none-eabi-gcc missing: install Debian's gcc-arm-none-eabi and libnewlib-arm-none-eabi",
)
needs_qemu = pytest.mark.skipif(
    shutil.which("qemu-system-arm") is None or shutil.which("gcc") is None,
    reason="qemu-system-arm (Debian package qemu-system-arm) or gcc for its plugin missing",
)


def _c_array(values: list[int]) -> str:
    return "{" + ", ".join(str(v) for v in values) + "}"


def make_project(root: Path, *, work: int = 0, status: int = 0, arena: int = 64, ops: int = 0) -> Path:
    """A project laid out as `tinyarch deploy` writes it, with a hand-written model.

    With `ops`, ta_invoke first runs that many stand-in operators, operator k a loop of
    OP_WORK * (k + 1) iterations, each followed by TA_OP_DONE() as in the generated model.c."""
    root.mkdir(parents=True)
    copy_firmware(root, "project.mk", "common", "boards")
    (root / "kernels").mkdir()
    for name in ("reference.c", "optimized_m7.c"):
        (root / "kernels" / name).write_text("/* stand-in: the model below needs no kernels */\nint ta_kernels_stub;\n")
    (root / "Makefile").write_text("BOARD ?= mps2-an500\nKERNELS ?= reference\ninclude project.mk\n")
    n = len(INPUTS[0])
    (root / "model.h").write_text(
        "#ifndef MODEL_H\n#define MODEL_H\n#include <stdint.h>\n"
        f"#define TA_INPUT_SIZE {n}\n#define TA_OUTPUT_SIZE {n}\n#define TA_ARENA_SIZE {arena}\n"
        "int ta_invoke(const int8_t *input, int8_t *output);\n#endif\n"
    )
    table = ""
    loop = ""
    if work:
        table = f"static const int8_t table[{TABLE_SIZE}] = {{1, 2, 3}};\n"
        loop = (
            "    volatile int32_t acc = 0;\n"
            f"    for (int i = 0; i < {work}; ++i) acc += table[(i * 97) % {TABLE_SIZE}];\n"
            "    arena[TA_ARENA_SIZE - 1] = (int8_t)acc;\n"
        )
    operators = "".join(
        f"    for (int i = 0; i < {OP_WORK * (k + 1)}; ++i) op_acc += i;\n    TA_OP_DONE();\n" for k in range(ops)
    )
    if ops:
        operators = "    volatile int32_t op_acc = 0;\n" + operators
    (root / "model.c").write_text(
        '#include "model.h"\n'
        "#ifdef TA_PROFILE_OPS\nvoid ta_mark(void);\n#define TA_OP_DONE() ta_mark()\n"
        "#else\n#define TA_OP_DONE() ((void)0)\n#endif\n"
        "static int8_t arena[TA_ARENA_SIZE];\n"
        f"{table}"
        "int ta_invoke(const int8_t *input, int8_t *output) {\n"
        f"{operators}"
        "    volatile float half = 0.5f;\n"
        "    const int one = (int)(half * 2.0f); /* runs on the FPU: faults unless start-up enabled it */\n"
        f"{loop}"
        "    for (int i = 0; i < TA_INPUT_SIZE; ++i) arena[i] = (int8_t)(input[i] + one);\n"
        "    for (int i = 0; i < TA_OUTPUT_SIZE; ++i) output[i] = arena[i];\n"
        f"    return input[0] == {INPUTS[1][0]} ? {status} : 0;\n"
        "}\n"
    )
    (root / "test_data.h").write_text(
        f'#include "model.h"\n#define TA_TEST_COUNT {len(INPUTS)}\n'
        "extern const int8_t ta_test_inputs[TA_TEST_COUNT][TA_INPUT_SIZE];\n"
    )
    rows = ", ".join(_c_array(row) for row in INPUTS)
    (root / "test_data.c").write_text(
        f'#include "test_data.h"\nconst int8_t ta_test_inputs[TA_TEST_COUNT][TA_INPUT_SIZE] = {{{rows}}};\n'
    )
    return root


def expected_lines() -> list[str]:
    lines = [f"out {i} " + bytes((v + 1) & 0xFF for v in row).hex() for i, row in enumerate(INPUTS)]
    return [*lines, f"done {len(INPUTS)}"]


def test_host_build_prints_every_output(tmp_path: Path) -> None:
    binary = build_project(make_project(tmp_path / "p"), "host")
    stdout, status = run_host(binary)
    assert status == 0
    assert stdout.splitlines() == expected_lines()
    assert parse_outputs(stdout)[0] == bytes([1, 2, 3, 0x80, 0x81, 0])  # 127 + 1 wraps to -128
    result = run_binary(binary, "host")
    assert result.stdout == stdout and result.instructions_per_inference is None


def test_unknown_board_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(EmulatorError, match="unknown board"):
        build_project(tmp_path, "esp32")
    with pytest.raises(EmulatorError, match="cannot run here"):
        run_binary(tmp_path / "firmware.elf", "stm32h743")


@pytest.fixture(scope="module")
def mps2_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, QemuResult]]:
    """The stand-in without and with extra work, run once each in QEMU."""
    root = tmp_path_factory.mktemp("mps2")
    runs = {}
    for name, work in (("light", 0), ("heavy", 2000)):
        elf = build_project(make_project(root / name, work=work), "mps2-an500")
        runs[name] = (elf, run_qemu(elf, timeout=30))
    return runs


@needs_cross
@needs_qemu
def test_mps2_prints_outputs_and_exits_zero(mps2_runs: dict[str, tuple[Path, QemuResult]]) -> None:
    _, result = mps2_runs["light"]
    assert result.exit_code == 0
    assert result.stdout.splitlines() == expected_lines()


@needs_cross
@needs_qemu
def test_mps2_counts_instructions_per_inference(mps2_runs: dict[str, tuple[Path, QemuResult]]) -> None:
    (light_elf, light), (heavy_elf, heavy) = mps2_runs["light"], mps2_runs["heavy"]
    assert light.instructions > 0
    assert len(light.inference_instructions) == len(INPUTS)
    assert all(0 < n < 200 for n in light.inference_instructions)
    assert sum(light.inference_instructions) < light.instructions  # start-up and printing come on top
    assert light.instructions_per_inference == light.inference_instructions[0]
    # 2000 extra loop iterations, several instructions each, in every inference and in the total.
    for lo, hi in zip(light.inference_instructions, heavy.inference_instructions, strict=True):
        assert hi - lo >= 2000 * 3
    assert heavy.instructions - light.instructions >= len(INPUTS) * 2000 * 3
    assert heavy.stdout == light.stdout
    # The const table lives in flash (text), not RAM.
    small, big = firmware_size(light_elf), firmware_size(heavy_elf)
    assert big.text - small.text >= TABLE_SIZE
    assert big.data == small.data and big.bss == small.bss


@needs_cross
@needs_qemu
def test_mps2_failed_inference_sets_exit_status(tmp_path: Path) -> None:
    elf = build_project(make_project(tmp_path / "p", status=-7), "mps2-an500")
    result = run_qemu(elf, timeout=30)
    assert result.exit_code == 2
    assert result.stdout.splitlines() == [expected_lines()[0], "error 1 -7"]


@needs_cross
def test_mps2_arena_too_large_fails_to_link(tmp_path: Path) -> None:
    with pytest.raises(EmulatorError, match="overflowed"):
        build_project(make_project(tmp_path / "p", arena=5 * 1024 * 1024), "mps2-an500")


def _symbols(elf: Path) -> dict[str, int]:
    out = subprocess.run(["arm-none-eabi-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    return {f[2]: int(f[0], 16) for f in (line.split() for line in out.splitlines()) if len(f) == 3}


def _sections(elf: Path) -> dict[str, tuple[int, int]]:
    out = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    return {
        f[0]: (int(f[2]), int(f[1]))
        for f in (line.split() for line in out.splitlines())
        if len(f) == 3 and f[1].isdigit()
    }


def build_stm32(
    root: Path, clock_mhz: int | None = None, profile_ops: bool = False, cflags: str = "", **project: int
) -> Path:
    """The stand-in built for the STM32H743, at `make CLOCK_MHZ=clock_mhz` (None: the default, 480)."""
    project_dir = make_project(root, **project)
    with pytest.MonkeyPatch.context() as mp:
        if clock_mhz is None:
            mp.delenv("CLOCK_MHZ", raising=False)
        else:
            mp.setenv("CLOCK_MHZ", str(clock_mhz))
        mp.setenv("EXTRA_CFLAGS", cflags)
        return build_project(project_dir, "stm32h743", profile_ops=profile_ops)


@pytest.fixture(scope="module")
def stm32_elfs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Default (480 MHz), 400 MHz, 64 MHz and a 480 MHz -DTA_PROFILE_OPS build of the stand-in."""
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc missing: install Debian's gcc-arm-none-eabi and libnewlib-arm-none-eabi")
    root = tmp_path_factory.mktemp("stm32")
    return {
        "480": build_stm32(root / "480", work=100),
        "400": build_stm32(root / "400", 400, work=100),
        "64": build_stm32(root / "64", 64, work=100),
        "profile": build_stm32(root / "profile", profile_ops=True, ops=3),
        # Gives up on a ready flag after 2000 polls, so a flag that never comes is quick to emulate.
        "impatient": build_stm32(root / "impatient", cflags="-DBOARD_WAIT_POLLS=2000u", work=100),
    }


@pytest.mark.parametrize("build", ["480", "64", "profile"])
def test_stm32_sections_sit_in_their_regions(stm32_elfs: dict[str, Path], build: str) -> None:
    elf = stm32_elfs[build]
    symbols, sections = _symbols(elf), _sections(elf)
    flash, axi, dtcm = (0x08000000, 2 << 20), (0x24000000, 512 << 10), (0x20000000, 128 << 10)

    def inside(name: str, region: tuple[int, int]) -> bool:
        addr, size = sections[name]
        return region[0] <= addr and addr + size <= region[0] + region[1]

    assert symbols["vector_table"] == 0x08000000 == sections[".isr_vector"][0]
    assert all(inside(name, flash) for name in (".isr_vector", ".text", ".rodata"))
    assert inside(".data", axi) and inside(".bss", axi)
    assert inside(".stack", dtcm) and symbols["_estack"] == dtcm[0] + dtcm[1]
    assert flash[0] <= symbols["_sidata"] < flash[0] + flash[1]  # .data's load image, in flash
    if build != "profile":
        assert firmware_size(elf).text >= TABLE_SIZE


def _stm32():  # the helper module, imported only where unicorn is installed
    pytest.importorskip("unicorn")
    from tests import stm32h743_unicorn

    return stm32h743_unicorn


def _check_console(lines: list[str], clock_hz: int, warnings: list[str] = ()) -> list[int]:
    """The console of a stand-in run: clock, warnings, every output, done, exit 0. Returns the cycles."""
    assert lines[0] == f"clock {clock_hz}"
    assert [line for line in lines if line.startswith("warning")] == list(warnings)
    plain = [line for line in lines[1:] if not line.startswith(("cycles ", "opcycles ", "warning"))]
    assert plain == [*expected_lines(), "exit 0"]
    cycles = [line.split() for line in lines if line.startswith("cycles ")]
    assert [c[1] for c in cycles] == [str(i) for i in range(len(INPUTS))]
    return [int(c[2]) for c in cycles]


def test_stm32_480_mhz_clock_tree_then_inference(stm32_elfs: dict[str, Path]) -> None:
    """From reset: LDO, VOS1, VOS0, flash latency, PLL1, prescalers and the switch, each waited for,
    each within RM0433's limits when it happens; then the UART at 120 MHz and every inference."""
    emu = _stm32()
    run = emu.run_image(stm32_elfs["480"])
    assert run.violations == []
    assert run.sysclk_hz == 480_000_000
    cycles = _check_console(run.lines, 480_000_000)
    assert all(n >= 100 * 3 for n in cycles)  # the DWT model counts instructions: 100 loop iterations at least
    r = run.registers
    assert r["PWR_CR3"] & 0b111 == 0b010  # LDO on, bypass off, supply configuration locked (SCUEN 0)
    assert r["PWR_D3CR"] >> 14 & 3 == 0b11 and r["SYSCFG_PWRCR"] & 1  # VOS1 plus the overdrive: VOS0
    assert r["RCC_APB4ENR"] & 1 << 1  # SYSCFG clock, needed for ODEN
    assert r["FLASH_ACR"] & 0x3F == 0x24  # 4 wait states, WRHIGHFREQ 2: AXI 240 MHz at VOS0
    assert r["RCC_PLLCKSELR"] == 0x02020040  # HSI, DIVM1 4; DIVM2/3 at reset
    assert r["RCC_PLLCFGR"] == 0x01F9000C  # PLL1RGE 8-16 MHz, wide VCO, integer, DIVP1EN only
    assert r["RCC_PLL1DIVR"] == 0x0101023B  # DIVN1 60, DIVP1 2 (Q, R 2, disabled)
    assert r["RCC_CR"] & 1 << 24  # PLL1ON
    assert r["RCC_CFGR"] & 0x3F == 0b011_011  # SW and SWS: PLL1
    assert (r["RCC_D1CFGR"], r["RCC_D2CFGR"], r["RCC_D3CFGR"]) == (0x48, 0x440, 0x40)  # /1 core, /2 AXI, /2 APBs
    assert r["USART3_BRR"] == 1042  # 120 MHz PCLK1 / 115200
    assert r["USART3_CR1"] & 0b1101 == 0b1101  # UE TE RE
    assert run.written("AXI_TARG7_FN_MOD") == []  # rev V: no AXI SRAM workaround
    # The order the hardware needs: voltage, then flash, then PLL, then the switch, then the UART.
    order = [name for name, _ in run.writes]
    switch = max(i for i, (name, value) in enumerate(run.writes) if name == "RCC_CFGR" and value & 7 == 3)
    assert order.index("SYSCFG_PWRCR") < order.index("FLASH_ACR") < order.index("RCC_PLL1DIVR") < switch
    assert switch < order.index("USART3_BRR")
    assert r["DWT_CTRL"] & 1 and r["DWT_LAR"] == 0xC5ACCE55  # DWT cycle counter on
    word = {name: run.memory[address] for name, address in emu.PEEK.items()}
    assert word["SCB_CPACR"] >> 20 & 0xF == 0xF and word["DEMCR"] & 1 << 24  # FPU on, trace (DWT) on
    assert word["SCB_CCR"] & 0b11 << 16 == 0b11 << 16  # I- and D-cache on
    assert word["GPIOD_MODER"] >> 16 & 0xF == 0xA and word["GPIOD_AFRH"] & 0xFF == 0x77  # PD8/PD9 AF7
    assert r["RCC_AHB4ENR"] & 1 << 3 and r["RCC_APB1LENR"] & 1 << 18  # GPIOD, USART3 clocks


def test_stm32_400_mhz_build(stm32_elfs: dict[str, Path]) -> None:
    emu = _stm32()
    run = emu.run_image(stm32_elfs["400"])
    assert run.violations == [] and run.sysclk_hz == 400_000_000
    _check_console(run.lines, 400_000_000)
    r = run.registers
    assert r["RCC_PLL1DIVR"] == 0x01010231 and r["FLASH_ACR"] & 0x3F == 0x22 and r["USART3_BRR"] == 868
    assert run.written("SYSCFG_PWRCR") == [] and r["PWR_D3CR"] >> 14 & 3 == 0b11  # VOS1, no overdrive


def test_stm32_rev_y_runs_a_480_build_at_400(stm32_elfs: dict[str, Path]) -> None:
    """Rev Y silicon has no VOS0 and a VCO that stops at 836 MHz: 400 MHz, said on the console."""
    emu = _stm32()
    run = emu.run_image(stm32_elfs["480"], rev_id=emu.REV_Y)
    assert run.violations == [] and run.sysclk_hz == 400_000_000
    _check_console(run.lines, 400_000_000, ["warning clock: rev Y silicon: 480 MHz needs rev V, running at 400 MHz"])
    assert run.written("AXI_TARG7_FN_MOD") == [1]  # ES0392's AXI SRAM read workaround
    assert run.written("SYSCFG_PWRCR") == [] and run.registers["USART3_BRR"] == 868


def test_stm32_64_mhz_keeps_the_reset_clock(stm32_elfs: dict[str, Path]) -> None:
    emu = _stm32()
    run = emu.run_image(stm32_elfs["64"])
    assert run.violations == [] and run.sysclk_hz == 64_000_000
    _check_console(run.lines, 64_000_000)
    clock_tree = {"RCC_CR", "RCC_CFGR", "RCC_D1CFGR", "RCC_PLLCKSELR", "RCC_PLLCFGR", "RCC_PLL1DIVR", "PWR_CR3"}
    assert not clock_tree & {name for name, _ in run.writes} and run.written("FLASH_ACR") == []
    assert run.registers["USART3_BRR"] == 556


def test_stm32_pll_that_never_locks_leaves_the_hsi(stm32_elfs: dict[str, Path]) -> None:
    emu = _stm32()
    run = emu.run_image(stm32_elfs["impatient"], stuck=frozenset({"PLL1RDY"}))
    warning = "warning clock: RCC_CR.PLL1RDY never became ready, running at 64 MHz from the HSI"
    _check_console(run.lines, 64_000_000, [warning])
    assert run.violations == [] and run.sysclk_hz == 64_000_000
    assert not run.registers["RCC_CR"] & 1 << 24 and run.registers["RCC_CFGR"] & 7 == 0
    assert run.registers["USART3_BRR"] == 556


def test_stm32_profile_build_prints_cycles_per_operator(stm32_elfs: dict[str, Path]) -> None:
    emu = _stm32()
    run = emu.run_image(stm32_elfs["profile"])
    assert run.violations == []
    cycles = _check_console(run.lines, 480_000_000)
    per_op = [line.split() for line in run.lines if line.startswith("opcycles ")]
    assert [p[1] for p in per_op] == [str(i) for i in range(len(INPUTS))]
    for total, fields in zip(cycles, per_op, strict=True):
        ops = [int(v) for v in fields[2:]]
        assert len(ops) == 3
        for k, n in enumerate(ops):  # operator k: OP_WORK * (k + 1) iterations of a few instructions
            assert 3 * OP_WORK * (k + 1) <= n <= 20 * OP_WORK * (k + 1)
        assert sum(ops) < total


@needs_cross
@needs_qemu
def test_mps2_profile_build_still_counts_instructions_per_operator(tmp_path: Path) -> None:
    """ta_mark on QEMU is unchanged: the plugin's marks, no opcycles lines."""
    elf = build_project(make_project(tmp_path / "p", ops=3), "mps2-an500", profile_ops=True)
    result = run_qemu(elf, timeout=30)
    assert result.stdout.splitlines() == expected_lines()
    for run in result.operator_instructions(3):
        assert all(3 * OP_WORK * (k + 1) <= n <= 20 * OP_WORK * (k + 1) for k, n in enumerate(run))


@needs_cross
def test_stm32_clock_option_is_checked(tmp_path: Path) -> None:
    with pytest.raises(EmulatorError, match="CLOCK_MHZ must be 480, 400 or 64, not '100'"):
        build_stm32(tmp_path / "p", 100)
