"""Build firmware projects and run them: natively, or in QEMU's Cortex-M7 machine with instruction counts.

A firmware project (see firmware/project.mk) builds for `host`, `mps2-an500` (QEMU) or `stm32h743`.
QEMU models no cycle counter, so speed on the emulator is measured in executed instructions: the
TCG plugin firmware/qemu/insn_count.c counts them, in total and between the `ta_mark()` calls that
firmware/common/main.c makes around every `ta_invoke`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import NamedTuple

from tinyarch.core.config import BOARDS
from tinyarch.core.paths import cache_root
from tinyarch.tools.deploy import DeployError

FIRMWARE: Traversable = resources.files("tinyarch.firmware")
"""Board support, common main, kernels, project.mk and the QEMU plugin: package data, copied out
(`copy_firmware`) wherever a compiler needs real files."""

KERNELS = ("reference", "optimized")
QEMU_MACHINE = "mps2-an500"

_PACKAGES = {
    "arm-none-eabi-gcc": "gcc-arm-none-eabi (and libnewlib-arm-none-eabi)",
    "arm-none-eabi-size": "binutils-arm-none-eabi",
    "arm-none-eabi-nm": "binutils-arm-none-eabi",
    "qemu-system-arm": "qemu-system-arm",
    "gcc": "gcc",
    "cc": "gcc",
    "make": "make",
}
_PLUGIN_SOURCES = ("insn_count.c", "qemu_plugin_api.h")
_MARKER_SYMBOL = "ta_mark"


class EmulatorError(DeployError):
    """A build, a tool or an emulator run failed; the message says which and why."""


class FirmwareSize(NamedTuple):
    """Bytes in flash (code, const weights, vectors), initialised RAM copied from flash, zeroed RAM.

    `bss` is the .bss section alone (the arena and other statics); the reserved stack is not in it.
    """

    text: int
    data: int
    bss: int


@dataclass(frozen=True, slots=True)
class QemuResult:
    """What one emulator run printed and counted."""

    stdout: str
    exit_code: int
    instructions: int
    """Guest instructions executed from reset to exit, start-up and printing included."""
    marks: tuple[int, ...] = ()
    """The instruction counter at each ta_mark call: before and after every inference, and after
    every operator too in a -DTA_PROFILE_OPS build."""

    @property
    def inference_instructions(self) -> tuple[int, ...]:
        """Instructions of each ta_invoke (between a pair of ta_mark calls, a call's few included)."""
        return tuple(self.marks[k + 1] - self.marks[k] for k in range(0, len(self.marks) - 1, 2))

    @property
    def instructions_per_inference(self) -> int | None:
        """The mean over the images, or None when nothing was counted (a host run)."""
        if not self.inference_instructions:
            return None
        return round(sum(self.inference_instructions) / len(self.inference_instructions))

    def operator_instructions(self, operators: int) -> list[list[int]]:
        """Per inference, the instructions of each operator, from a -DTA_PROFILE_OPS build's marks."""
        per = operators + 2
        if not self.marks or len(self.marks) % per:
            raise EmulatorError(f"{len(self.marks)} marks do not split into inferences of {operators} operators")
        runs = [self.marks[i : i + per] for i in range(0, len(self.marks), per)]
        return [[run[j + 1] - run[j] for j in range(operators)] for run in runs]


def _tool(name: str) -> str:
    """The tool's path, or an error that names the Debian package providing it."""
    path = shutil.which(name)
    if path is None:
        package = _PACKAGES.get(name, name)
        raise EmulatorError(f"{name} not found: install the Debian package {package}")
    return path


def copy_firmware(dest: Path, *parts: str) -> None:
    """Copy firmware files or folders (`"kernels"`, `"project.mk"`, `"qemu/insn_count.c"`, ...) from the
    installed package into `dest`, each under its own name, replacing what is there."""
    dest.mkdir(parents=True, exist_ok=True)
    for part in parts:
        _copy(FIRMWARE.joinpath(*part.split("/")), dest / part.rsplit("/", 1)[-1])


def _copy(source: Traversable, target: Path) -> None:
    if source.is_file():
        target.write_bytes(source.read_bytes())
    elif source.is_dir():
        target.mkdir(exist_ok=True)
        for child in source.iterdir():
            if child.name != "__pycache__":
                _copy(child, target / child.name)
    else:
        raise EmulatorError(f"the tinyarch package has no firmware/{source.name}: reinstall tinyarch")


def _cache_dir() -> Path:
    return cache_root() / "qemu-plugin"


def plugin_path() -> Path:
    """The instruction-count plugin, compiled with the host gcc on first use and cached by source hash.

    The plugin declares QEMU's v1 plugin API itself (Debian ships no qemu-plugin.h), so neither QEMU's
    headers nor glib's are needed.
    """
    digest = hashlib.sha256()
    for name in _PLUGIN_SOURCES:
        digest.update((FIRMWARE / "qemu" / name).read_bytes())
    target = _cache_dir() / f"libinsn-{digest.hexdigest()[:12]}.so"
    if target.is_file():
        return target
    gcc = _tool("gcc")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename, so concurrent first uses never see a half-written library.
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        build = Path(tmp)
        copy_firmware(build, *(f"qemu/{name}" for name in _PLUGIN_SOURCES))
        cmd = [gcc, "-shared", "-fPIC", "-O2", "-std=gnu11", "-Wall", "-Wextra", "-fvisibility=hidden"]
        cmd += [f"-I{build}", str(build / "insn_count.c"), "-o", str(build / "plugin.so")]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise EmulatorError(f"building the QEMU plugin failed:\n{proc.stderr.strip()}")
        os.replace(build / "plugin.so", target)
    return target


def build_project(
    project_dir: Path, board: str = QEMU_MACHINE, kernels: str = "reference", profile_ops: bool = False
) -> Path:
    """Run make in a firmware project and return the image: build/firmware (host) or build/firmware.elf.

    `profile_ops` marks every operator (-DTA_PROFILE_OPS) for per-operator instruction counts."""
    if board not in BOARDS:
        raise EmulatorError(f"unknown board {board!r}: expected one of {', '.join(BOARDS)}")
    if kernels not in KERNELS:
        raise EmulatorError(f"unknown kernels {kernels!r}: expected one of {', '.join(KERNELS)}")
    project_dir = Path(project_dir)
    if not (project_dir / "project.mk").is_file():
        raise EmulatorError(f"{project_dir} is not a firmware project: no project.mk")
    make = _tool("make")
    _tool("cc" if board == "host" else "arm-none-eabi-gcc")
    proc = subprocess.run(
        [make, "-C", str(project_dir), f"BOARD={board}", f"KERNELS={kernels}"]
        + (["EXTRA_CFLAGS=-DTA_PROFILE_OPS"] if profile_ops else []),
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise EmulatorError(f"make BOARD={board} KERNELS={kernels} failed in {project_dir}:\n{tail}")
    image = project_dir / "build" / ("firmware" if board == "host" else "firmware.elf")
    if not image.is_file():
        raise EmulatorError(f"make succeeded but {image} is missing")
    return image


def firmware_size(elf: Path) -> FirmwareSize:
    """Flash and RAM use of an ARM image from `arm-none-eabi-size -A`, the reserved stack left out."""
    proc = subprocess.run([_tool("arm-none-eabi-size"), "-A", str(elf)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise EmulatorError(f"arm-none-eabi-size {elf} failed: {proc.stderr.strip()}")
    text = data = bss = 0
    for line in proc.stdout.splitlines():
        fields = line.split()
        if len(fields) != 3 or not fields[0].startswith(".") or not fields[1].isdigit():
            continue
        name, size = fields[0], int(fields[1])
        if name.startswith((".debug", ".comment", ".ARM.attributes", ".stack")):
            continue
        if name == ".data":
            data += size
        elif name == ".bss":
            bss += size
        else:
            text += size
    return FirmwareSize(text, data, bss)


def _marker_address(elf: Path) -> int | None:
    """Where ta_mark starts, or None (the plugin then finds it by symbol name, if the ELF has symbols)."""
    nm = shutil.which("arm-none-eabi-nm")
    if nm is None:
        return None
    proc = subprocess.run([nm, str(elf)], capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[2] == _MARKER_SYMBOL and fields[1] in "Tt":
            return int(fields[0], 16) & ~1
    return None


def _parse_counts(text: str) -> tuple[int, tuple[int, ...]]:
    total = None
    marks: dict[int, int] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == "insns":
            total = int(fields[1])
        elif len(fields) == 3 and fields[0] == "mark":
            marks[int(fields[1])] = int(fields[2])
    if total is None:
        raise EmulatorError(f"the QEMU plugin wrote no instruction count:\n{text.strip()}")
    return total, tuple(marks[k] for k in sorted(marks))


def run_qemu(elf: Path, timeout: float = 60.0) -> QemuResult:
    """Run an mps2-an500 image in QEMU to its semihosting exit, counting executed instructions.

    stdout is what the firmware printed (semihosting goes to QEMU's stdio); exit_code is the status
    the firmware passed to board_exit. Raises EmulatorError when QEMU cannot start or times out.
    """
    elf = Path(elf)
    if not elf.is_file():
        raise EmulatorError(f"no firmware image at {elf}")
    if "," in str(elf):
        raise EmulatorError(f"QEMU cannot take a path with a comma: {elf}")
    qemu = _tool("qemu-system-arm")
    plugin = plugin_path()
    with tempfile.TemporaryDirectory(prefix="tinyarch-qemu-") as tmp:
        counts = Path(tmp) / "insns.txt"
        plugin_arg = f"{plugin},outfile={counts}"
        marker = _marker_address(elf)
        if marker is not None:
            plugin_arg += f",marker={marker:#x}"
        cmd = [qemu, "-M", QEMU_MACHINE, "-display", "none", "-serial", "null", "-monitor", "none"]
        cmd += ["-chardev", "stdio,id=semihosting"]
        cmd += ["-semihosting-config", "enable=on,target=native,chardev=semihosting"]
        cmd += ["-plugin", plugin_arg, "-kernel", str(elf)]
        try:
            proc = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise EmulatorError(
                f"QEMU did not finish {elf} within {timeout:g} s: the firmware hangs or runs too long"
            ) from None
        if proc.returncode != 0 and re.search(r"^qemu-system-arm: ", proc.stderr, re.MULTILINE):
            raise EmulatorError(f"QEMU failed on {elf}:\n{proc.stderr.strip()}")
        if not counts.is_file():
            raise EmulatorError(f"QEMU exited ({proc.returncode}) without instruction counts:\n{proc.stderr.strip()}")
        total, marks = _parse_counts(counts.read_text())
    return QemuResult(proc.stdout, proc.returncode, total, marks)


def run_host(binary: Path, timeout: float = 60.0) -> tuple[str, int]:
    """Run a host build: (stdout, exit status)."""
    try:
        proc = subprocess.run(
            [str(binary)], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise EmulatorError(f"{binary} did not finish within {timeout:g} s") from None
    return proc.stdout, proc.returncode


def run_binary(binary: Path, board: str, timeout: float = 60.0) -> QemuResult:
    """Run a build of `board` where it can run here: natively (nothing counted) or in QEMU (counted)."""
    if board == "host":
        stdout, status = run_host(binary, timeout)
        return QemuResult(stdout, status, 0)
    if board == QEMU_MACHINE:
        return run_qemu(binary, timeout)
    raise EmulatorError(f"{board} firmware cannot run here: flash it (make BOARD={board} flash) and read its UART")


def parse_outputs(stdout: str) -> list[bytes]:
    """The raw int8 outputs from the firmware's `out <i> <hex>` lines, in image order.

    `np.frombuffer(b, dtype=np.int8)` turns one into the model's output tensor.
    """
    outputs: dict[int, bytes] = {}
    for line in stdout.splitlines():
        fields = line.split()
        if len(fields) == 3 and fields[0] == "out":
            outputs[int(fields[1])] = bytes.fromhex(fields[2])
    if sorted(outputs) != list(range(len(outputs))):
        raise EmulatorError(f"firmware output lines are not numbered 0..{len(outputs) - 1}")
    return [outputs[i] for i in range(len(outputs))]
