"""Board support and emulation: a stand-in model built for host, QEMU's mps2-an500 and the STM32H743.

The stand-in's ta_invoke writes input + 1 (int8 wrap-around) to the output, optionally after a
loop over a const table, so outputs are known exactly and the extra work must show up in the
instruction count and in flash.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tinyarch.tools.deploy.emulator import (
    FIRMWARE_DIR,
    EmulatorError,
    QemuResult,
    build_project,
    firmware_size,
    parse_outputs,
    run_binary,
    run_host,
    run_qemu,
)

INPUTS = [[0, 1, 2, 127, -128, -1], [5, -6, 7, -8, 9, -10], [100, 50, 0, -50, -100, 126]]
TABLE_SIZE = 65536

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


def make_project(root: Path, *, work: int = 0, status: int = 0, arena: int = 64) -> Path:
    """A project laid out as `tinyarch deploy` writes it, with a hand-written model."""
    root.mkdir(parents=True)
    shutil.copy(FIRMWARE_DIR / "project.mk", root)
    shutil.copytree(FIRMWARE_DIR / "common", root / "common")
    shutil.copytree(FIRMWARE_DIR / "boards", root / "boards")
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
    (root / "model.c").write_text(
        '#include "model.h"\n'
        "static int8_t arena[TA_ARENA_SIZE];\n"
        f"{table}"
        "int ta_invoke(const int8_t *input, int8_t *output) {\n"
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


@pytest.fixture(scope="module")
def stm32_elf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc missing: install Debian's gcc-arm-none-eabi and libnewlib-arm-none-eabi")
    return build_project(make_project(tmp_path_factory.mktemp("stm32") / "p", work=100), "stm32h743")


def test_stm32_sections_sit_in_their_regions(stm32_elf: Path) -> None:
    symbols, sections = _symbols(stm32_elf), _sections(stm32_elf)
    flash, axi, dtcm = (0x08000000, 2 << 20), (0x24000000, 512 << 10), (0x20000000, 128 << 10)

    def inside(name: str, region: tuple[int, int]) -> bool:
        addr, size = sections[name]
        return region[0] <= addr and addr + size <= region[0] + region[1]

    assert symbols["vector_table"] == 0x08000000 == sections[".isr_vector"][0]
    assert all(inside(name, flash) for name in (".isr_vector", ".text", ".rodata"))
    assert inside(".data", axi) and inside(".bss", axi)
    assert inside(".stack", dtcm) and symbols["_estack"] == dtcm[0] + dtcm[1]
    assert flash[0] <= symbols["_sidata"] < flash[0] + flash[1]  # .data's load image, in flash
    assert firmware_size(stm32_elf).text >= TABLE_SIZE


def test_stm32_image_runs_to_its_uart_writes(stm32_elf: Path) -> None:
    """Unicorn runs the image from reset: peripherals are plain memory, USART3's TDR writes are captured."""
    unicorn = pytest.importorskip("unicorn")
    from unicorn import arm_const

    image = stm32_elf.with_suffix(".bin")
    subprocess.run(
        [
            "arm-none-eabi-objcopy",
            "-O",
            "binary",
            *["-j", ".isr_vector", "-j", ".text", "-j", ".rodata", "-j", ".data"],
            str(stm32_elf),
            str(image),
        ],
        check=True,
    )
    code = image.read_bytes()
    uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
    uc.ctl_set_cpu_model(arm_const.UC_CPU_ARM_CORTEX_M7)
    regions = [(0x08000000, 2 << 20), (0x20000000, 128 << 10), (0x24000000, 512 << 10)]
    regions += [(0x40004000, 0x1000), (0x58020000, 0x8000), (0xE0000000, 0x100000)]  # USART3, GPIO+RCC, PPB
    for base, size in regions:
        uc.mem_map(base, size)
    uc.mem_write(0x08000000, code)
    uc.mem_write(0x4000481C, struct.pack("<I", 0xC0))  # USART3 ISR: TXE and TC always set
    uart = bytearray()

    def on_write(_uc: object, _access: int, address: int, _size: int, value: int, _data: object) -> None:
        if address == 0x40004828:  # USART3 TDR
            uart.append(value & 0xFF)

    uc.hook_add(unicorn.UC_HOOK_MEM_WRITE, on_write, begin=0x40004800, end=0x400048FF)
    sp, pc = struct.unpack("<II", code[:8])
    uc.reg_write(arm_const.UC_ARM_REG_SP, sp)
    uc.emu_start(pc | 1, 0xFFFFFFFF, count=500_000)

    lines = uart.decode().replace("\r\n", "\n").splitlines()
    assert [line for line in lines if not line.startswith("cycles ")] == [*expected_lines(), "exit 0"]
    assert [line.split()[:2] for line in lines if line.startswith("cycles ")] == [
        ["cycles", str(i)] for i in range(len(INPUTS))
    ]

    def reg(address: int) -> int:
        return struct.unpack("<I", uc.mem_read(address, 4))[0]

    assert reg(0xE000ED88) >> 20 & 0xF == 0xF  # CPACR: FPU on
    assert reg(0x58024400 + 0xE0) & 1 << 3 and reg(0x58024400 + 0xE8) & 1 << 18  # GPIOD, USART3 clocks
    assert reg(0x58020C00) >> 16 & 0xF == 0xA and reg(0x58020C24) & 0xFF == 0x77  # PD8/PD9 AF7
    assert reg(0x4000480C) == 556 and reg(0x40004800) & 0b1101 == 0b1101  # 115200 baud from 64 MHz, UE TE RE
    assert reg(0xE0001000) & 1 and reg(0xE000EDFC) & 1 << 24  # DWT cycle counter on
    assert reg(0xE000ED14) & 0b11 << 16 == 0b11 << 16  # I- and D-cache on
