"""`tinyarch read-uart`: a board's UART (a serial port or a saved log) checked against its project.

The logs come from the STM32H743 firmware itself, run in unicorn (tests/stm32h743_unicorn.py), or
are written from a real spec's layers; the serial path is exercised over a pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES
from tests.test_deploy_boards import INPUTS, OP_WORK, build_stm32, expected_lines
from tinyarch.core.spec import ArchSpec
from tinyarch.tools.deploy.uart import UartError, check, load_project, parse_log, read_port, read_uart
from tinyarch.tools.profile import profile

SPEC = EXAMPLES / "cpu_small.json"


def project_dir(root: Path) -> Path:
    """What the checks read from a deploy project: expected.txt (the stand-in's outputs) and spec.json."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "expected.txt").write_text("\n".join(expected_lines()) + "\n")
    shutil.copy(SPEC, root / "spec.json")
    return root


def spec() -> ArchSpec:
    return ArchSpec.model_validate_json(SPEC.read_text())


def synthetic_log(clock: int = 480_000_000, per_mac: float = 2.0, tamper: int | None = None) -> str:
    """A profiling build's console for cpu_small: operator k takes per_mac cycles per MAC plus 500."""
    layers = profile(spec()).layers
    ops = [round(per_mac * layer.macs) + 500 for layer in layers]
    lines = [f"clock {clock}"]
    for i, line in enumerate(expected_lines()[:-1]):
        if i == tamper:
            line = line[:-2] + ("00" if line[-2:] != "00" else "01")
        lines += [line, f"cycles {i} {sum(ops) + 40}", f"opcycles {i} " + " ".join(map(str, ops))]
    return "\r\n".join([*lines, f"done {len(INPUTS)}", "exit 0"]) + "\r\n"


def test_parse_log_reads_the_last_run_and_skips_noise() -> None:
    text = (
        "\x00garbage\r\nclock 64000000\r\nout 0 00\r\n"  # a first run, cut short by a reset
        "clock 480000000\r\nwarning clock: something\r\nout 0 0102\r\ncycles 0 1234\r\nopcycles 0 1 2 3\r\n"
        "opcycles_truncated 0 300\r\nout 1 zz\r\nerror 1 -7\r\nexit error\r\n"
    )
    log = parse_log(text)
    assert log.clock_hz == 480_000_000 and log.outputs == {0: b"\x01\x02"} and log.cycles == {0: 1234}
    assert log.op_cycles == {0: [1, 2, 3]} and log.op_truncated == {0: 300}
    assert log.warnings == ["warning clock: something"] and log.errors == ["error 1 -7"]
    assert log.unreadable == ["out 1 zz"] and log.exit == "error" and log.done is None


def test_check_names_operators_and_computes_cycles_per_mac(tmp_path: Path) -> None:
    project = load_project(project_dir(tmp_path / "p"))
    report = check(project, parse_log(synthetic_log()))
    prof = profile(spec())
    assert report.ok and report.matches == report.expected_images == len(INPUTS)
    assert report.macs == prof.macs and report.spec_id == spec().id and report.clock_hz == 480_000_000
    total = report.images[0].cycles
    assert report.images[0].ms == pytest.approx(1e3 * total / 480e6)
    assert report.images[0].cycles_per_mac == pytest.approx(total / prof.macs)
    assert [o.name for o in report.operators] == [layer.name for layer in prof.layers]
    for row, layer in zip(report.operators, prof.layers, strict=True):
        assert row.macs == layer.macs and row.kind == layer.kind
        if layer.macs > 10_000:
            assert row.cycles_per_mac == pytest.approx(2.0, rel=0.05)
    assert sum(o.share for o in report.operators) == pytest.approx(100.0)


def test_check_reports_a_differing_output_and_an_unfinished_run(tmp_path: Path) -> None:
    project = load_project(project_dir(tmp_path / "p"))
    report = check(project, parse_log(synthetic_log(tamper=1)))
    assert [r.match for r in report.images] == [True, False, True] and not report.ok
    cut = synthetic_log().split("out 2")[0]
    report = check(project, parse_log(cut))
    assert not report.complete and not report.ok
    assert "image 2: no output" in report.problems
    assert any("did not finish" in p for p in report.problems)


def test_clock_from_the_firmware_wins_over_the_option(tmp_path: Path) -> None:
    project = load_project(project_dir(tmp_path / "p"))
    report = check(project, parse_log(synthetic_log(clock=400_000_000)), clock_hz=480e6)
    assert report.clock_hz == 400_000_000 and report.clock_source == "printed by the firmware"
    assert any("400 MHz, not the 480 MHz" in w for w in report.warnings)
    no_clock = synthetic_log().split("\r\n", 1)[1]
    assert check(project, parse_log(no_clock), clock_hz=480e6).clock_source == "given"
    assert check(project, parse_log(no_clock)).images[0].ms is None


def test_spec_found_above_the_project_or_macs_from_deploy_json(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    project = project_dir(model_dir / "firmware-stm32h743")
    (project / "spec.json").rename(model_dir / "spec.json")
    assert load_project(project).spec_source == model_dir / "spec.json"
    (model_dir / "spec.json").unlink()
    (project / "deploy.json").write_text(json.dumps({"macs": 1234}))
    loaded = load_project(project)
    assert loaded.spec is None and loaded.macs == 1234


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(UartError, match="no such firmware project"):
        load_project(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UartError, match=r"expected\.txt missing"):
        load_project(tmp_path / "empty")
    project = project_dir(tmp_path / "p")
    (project / "spec.json").write_text("{}")
    with pytest.raises(UartError, match="not an architecture spec"):
        load_project(project)
    with pytest.raises(UartError, match="cannot open /dev/nonexistent-tty"):
        read_port("/dev/nonexistent-tty", timeout=1)
    with pytest.raises(UartError, match="not a serial port"):
        read_port(project / "expected.txt", timeout=1)
    with pytest.raises(UartError, match="either a serial port or a log file"):
        read_uart(project)


def test_read_port_over_a_pseudo_terminal(tmp_path: Path) -> None:
    """The termios path: raw 8N1 on a tty, lines as they come, stop at `exit`."""
    master, slave = os.openpty()
    text = synthetic_log()
    lines: list[str] = []

    def board() -> None:
        time.sleep(0.2)  # the reader is waiting; the board comes out of reset
        for k in range(0, len(text), 37):
            os.write(master, text[k : k + 37].encode())
            time.sleep(0.005)

    writer = threading.Thread(target=board)
    writer.start()
    try:
        got = read_port(os.ttyname(slave), timeout=20, on_line=lines.append)
    finally:
        writer.join()
        os.close(slave)
        os.close(master)
    assert got.replace("\r\n", "\n") == text.replace("\r\n", "\n")
    assert lines[0] == "clock 480000000" and lines[-1] == "exit 0"
    master, slave = os.openpty()
    try:
        with pytest.raises(UartError, match=r"nothing from .* within 1 s"):
            read_port(os.ttyname(slave), timeout=1)
    finally:
        os.close(slave)
        os.close(master)


@pytest.fixture(scope="module")
def unicorn_log(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The console of the 480 MHz profiling build of the stand-in, run in unicorn."""
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc missing")
    pytest.importorskip("unicorn")
    from tests import stm32h743_unicorn

    elf = build_stm32(tmp_path_factory.mktemp("uart") / "fw", profile_ops=True, ops=3)
    run = stm32h743_unicorn.run_image(elf)
    assert run.violations == []
    return run.uart


def test_a_unicorn_run_of_the_firmware_checks_out(tmp_path: Path, unicorn_log: str) -> None:
    log_file = tmp_path / "uart.log"
    log_file.write_text(unicorn_log)
    report = read_uart(project_dir(tmp_path / "p"), log_file=log_file)
    assert report.ok and report.matches == len(INPUTS) and report.clock_hz == 480_000_000
    assert [o.name for o in report.operators] == ["op0", "op1", "op2"]  # 3 stand-in operators, not cpu_small's
    assert any("3 operators timed" in w for w in report.warnings)
    for k, row in enumerate(report.operators):
        assert row.cycles >= 3 * OP_WORK * (k + 1)
    macs = profile(spec()).macs
    for row in report.images:
        assert row.cycles_per_mac == pytest.approx(row.cycles / macs)
        assert row.ms == pytest.approx(row.cycles / 480e3)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tinyarch.interfaces.cli", "read-uart", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_cli_reads_a_log(tmp_path: Path) -> None:
    project = project_dir(tmp_path / "p")
    (tmp_path / "good.log").write_text(synthetic_log())
    (tmp_path / "bad.log").write_text(synthetic_log(tamper=0))
    res = cli(str(project), "--log", str(tmp_path / "good.log"))
    assert res.returncode == 0, res.stderr
    assert "3/3 images identical to expected.txt" in res.stdout and "cycles per operator" in res.stdout
    assert "s0b0.depthwise" in res.stdout and "480 MHz" in res.stdout
    res = cli(str(project), "--log", str(tmp_path / "bad.log"), "--json")
    assert res.returncode == 1
    report = json.loads(res.stdout)
    assert report["matches"] == 2 and report["ok"] is False and report["mean_cycles"] > 0
    res = cli(str(project))
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "--port" in res.stderr
    res = cli(str(tmp_path / "nowhere"), "--log", str(tmp_path / "good.log"))
    assert res.returncode == 2 and "no such firmware project" in res.stderr


@pytest.mark.slow
def test_a_generated_model_runs_its_first_inference_at_480_mhz_in_unicorn(tmp_path: Path) -> None:
    """cpu_small through export and codegen, optimised kernels, per-operator marks: from reset with
    the clock tree set up, bit-exact with TFLM, one timed operator per spec layer."""
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc missing")
    pytest.importorskip("unicorn")
    from tests import stm32h743_unicorn
    from tinyarch.tools.deploy.deploy import random_project
    from tinyarch.tools.deploy.emulator import build_project

    project = random_project(spec(), tmp_path / "fw", "stm32h743", "optimized", checks=1)
    assert (project.dir / "spec.json").is_file()  # written by deploy, read back for the MACs
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CLOCK_MHZ", raising=False)
        elf = build_project(project.dir, "stm32h743", "optimized", profile_ops=True)
    run = stm32h743_unicorn.run_image(elf, max_instructions=80_000_000)
    assert run.violations == [] and run.sysclk_hz == 480_000_000
    (tmp_path / "uart.log").write_text(run.uart)
    report = read_uart(project.dir, log_file=tmp_path / "uart.log")
    assert report.ok and report.matches == report.expected_images == 1, report.problems
    assert [o.name for o in report.operators] == [layer.name for layer in profile(spec()).layers]
    assert sum(o.cycles for o in report.operators) <= report.images[0].cycles
