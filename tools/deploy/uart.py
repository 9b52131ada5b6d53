"""Read what a board's firmware prints on its UART and check it against the firmware project.

The STM32H743 firmware (firmware/boards/stm32h743, firmware/common/main.c) prints, at 115200 8N1:

    clock <Hz>                              the core clock it reached
    warning clock: ...                      the clock set-up fell short (rev Y silicon, a flag that never came)
    out <i> <hex>                           image i's int8 output
    cycles <i> <n>                          DWT cycles of that inference
    opcycles <i> <c0> <c1> ...              per operator, in a -DTA_PROFILE_OPS build
    opcycles_truncated <i> <operators>      more operators than the firmware stores
    error <i> <status> | fault: ...         a failed inference, an unexpected exception
    done <count>, exit 0 | exit error

`read_port` captures that from a serial device with nothing but the standard library (termios);
`parse_log` reads it; `check` compares the outputs byte for byte with the project's expected.txt
(TFLM's outputs, written by `tinyarch deploy`) and turns cycles into cycles per MAC (MACs from the
spec) and milliseconds (at the clock the firmware reports).
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, computed_field

from tinyarch.core.spec import ArchSpec
from tinyarch.tools.deploy import DeployError

BAUD = 115200
_END_PREFIXES = ("exit ", "fault")


class UartError(DeployError):
    """The port, the log or the project cannot be read; the message says which and why."""


@dataclass
class BoardLog:
    """One run of the firmware as its UART showed it (the last run, if the board was reset midway)."""

    clock_hz: int | None = None
    outputs: dict[int, bytes] = field(default_factory=dict)
    cycles: dict[int, int] = field(default_factory=dict)
    op_cycles: dict[int, list[int]] = field(default_factory=dict)
    op_truncated: dict[int, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """`error <i> <status>` and `fault: ...` lines, as printed."""
    unreadable: list[str] = field(default_factory=list)
    """Lines that start like firmware output but do not parse (line noise, a cut-off line)."""
    done: int | None = None
    exit: str | None = None


def parse_log(text: str) -> BoardLog:
    """The firmware's lines in `text`; anything else (a terminal's noise, a boot banner) is skipped."""
    log = BoardLog()
    for raw in text.replace("\r", "\n").splitlines():
        line = raw.strip()
        fields = line.split()
        if not fields:
            continue
        head = fields[0]
        try:
            if head == "clock" and len(fields) == 2:
                log = BoardLog(clock_hz=int(fields[1]))  # printed first after a reset: a new run
            elif head == "warning":
                log.warnings.append(line)
            elif head == "out" and len(fields) == 3:
                log.outputs[int(fields[1])] = bytes.fromhex(fields[2])
            elif head == "cycles" and len(fields) == 3:
                log.cycles[int(fields[1])] = int(fields[2])
            elif head == "opcycles" and len(fields) >= 2:
                log.op_cycles[int(fields[1])] = [int(v) for v in fields[2:]]
            elif head == "opcycles_truncated" and len(fields) == 3:
                log.op_truncated[int(fields[1])] = int(fields[2])
            elif head == "error" or head.startswith("fault"):
                log.errors.append(line)
            elif head == "done" and len(fields) == 2:
                log.done = int(fields[1])
            elif head == "exit" and len(fields) == 2:
                log.exit = fields[1]
            elif head in ("clock", "out", "cycles", "opcycles_truncated", "done", "exit"):
                log.unreadable.append(line)
        except ValueError:
            log.unreadable.append(line)
    return log


def _configure(fd: int, baud: int) -> None:
    """Raw 8N1 at `baud`, no flow control, reads that never block (select decides when to read)."""
    import termios

    speed = getattr(termios, f"B{baud}", None)
    if speed is None:
        raise UartError(f"baud rate {baud} is not one termios offers")
    iflag, oflag, cflag, lflag, _, _, cc = termios.tcgetattr(fd)
    iflag &= ~(
        termios.IGNBRK
        | termios.BRKINT
        | termios.PARMRK
        | termios.ISTRIP
        | termios.INLCR
        | termios.IGNCR
        | termios.ICRNL
        | termios.IXON
        | termios.IXOFF
        | termios.IXANY
        | termios.INPCK
    )
    oflag &= ~termios.OPOST
    cflag &= ~(termios.PARENB | termios.CSTOPB | termios.CSIZE | getattr(termios, "CRTSCTS", 0))
    cflag |= termios.CS8 | termios.CREAD | termios.CLOCAL
    lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    cc[termios.VMIN] = 0
    cc[termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, [iflag, oflag, cflag, lflag, speed, speed, cc])
    termios.tcflush(fd, termios.TCIFLUSH)


def read_port(
    port: str | Path,
    baud: int = BAUD,
    timeout: float = 120.0,
    on_line: Callable[[str], None] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> str:
    """Everything `port` sends until the firmware's `exit ...` or `fault` line, or `timeout` seconds.

    Start it, then reset the board (its RESET button, or `make flash`): the firmware runs once from
    reset. `on_ready` is called once the port is open and configured, `on_line` with each complete
    line as it arrives. Raises UartError when the port cannot be opened or configured, or sent
    nothing at all."""
    port = str(port)
    try:
        fd = os.open(port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as e:
        raise UartError(f"cannot open {port}: {e.strerror or e}") from None
    received = bytearray()
    pending = ""
    try:
        if not os.isatty(fd):
            raise UartError(f"{port} is not a serial port (not a tty)")
        try:
            _configure(fd, baud)
        except OSError as e:
            raise UartError(f"cannot configure {port} for {baud} 8N1: {e}") from None
        if on_ready is not None:
            on_ready()
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([fd], [], [], min(left, 0.2))
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except BlockingIOError:
                continue
            except OSError as e:  # the device went away (board unplugged, pty closed)
                raise UartError(f"reading {port} failed: {e.strerror or e}") from None
            if not chunk:
                continue
            received += chunk
            pending += chunk.decode("ascii", errors="replace").replace("\r", "")
            *lines, pending = pending.split("\n")
            finished = False
            for line in lines:
                if on_line is not None:
                    on_line(line)
                finished = finished or line.startswith(_END_PREFIXES)
            if finished:
                break
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    if not received:
        raise UartError(
            f"nothing from {port} within {timeout:g} s: is the firmware flashed, and was the board reset after "
            "the reader started?"
        )
    return received.decode("ascii", errors="replace")


@dataclass
class Project:
    """What a firmware project says a correct run prints, and the model it runs."""

    dir: Path
    expected: list[bytes]
    spec: ArchSpec | None
    spec_source: Path | None
    macs: int | None


def _read_spec(path: Path) -> ArchSpec:
    try:
        return ArchSpec.model_validate_json(path.read_text())
    except (OSError, ValueError) as e:
        raise UartError(f"{path}: not an architecture spec ({type(e).__name__})") from None


def load_project(project_dir: Path, spec_file: Path | None = None) -> Project:
    """expected.txt and the spec of a project `tinyarch deploy` wrote.

    The spec is `spec_file`, else spec.json in the project, else in its parent (the trained model
    directory that `tinyarch deploy` writes `firmware-<board>` into); without one, deploy.json's MACs
    are used if present."""
    project_dir = Path(project_dir)
    if not project_dir.is_dir():
        raise UartError(f"{project_dir}: no such firmware project directory")
    expected_file = project_dir / "expected.txt"
    if not expected_file.is_file():
        raise UartError(f"{expected_file} missing: not a project written by `tinyarch deploy`")
    expected_log = parse_log(expected_file.read_text())
    if sorted(expected_log.outputs) != list(range(len(expected_log.outputs))):
        raise UartError(f"{expected_file}: its `out` lines are not numbered 0..n-1")
    expected = [expected_log.outputs[i] for i in range(len(expected_log.outputs))]
    if spec_file is not None and not Path(spec_file).is_file():
        raise UartError(f"{spec_file}: no such spec file")
    candidates = [Path(spec_file)] if spec_file else [project_dir / "spec.json", project_dir.parent / "spec.json"]
    source = next((p for p in candidates if p.is_file()), None)
    spec = _read_spec(source) if source else None
    macs = None
    if spec is None and (project_dir / "deploy.json").is_file():
        import json

        with contextlib.suppress(ValueError, AttributeError):
            macs = json.loads((project_dir / "deploy.json").read_text()).get("macs")
    return Project(project_dir, expected, spec, source, macs)


class ImageRow(BaseModel):
    index: int
    cycles: int | None
    cycles_per_mac: float | None
    ms: float | None
    match: bool | None
    """Output equal to expected.txt's byte for byte; None when expected.txt has no such image."""


class OperatorRow(BaseModel):
    index: int
    name: str
    kind: str
    macs: int | None
    cycles: int
    """Mean over the images."""
    cycles_per_mac: float | None
    share: float
    """Of the sum over all operators, in percent."""


class UartReport(BaseModel):
    project: str
    spec_id: str | None
    macs: int | None
    clock_hz: int | None
    clock_source: str
    images: list[ImageRow]
    operators: list[OperatorRow]
    expected_images: int
    matches: int
    complete: bool
    """The run printed `done <count>` and `exit 0`."""
    warnings: list[str]
    problems: list[str]

    @computed_field  # type: ignore[prop-decorator]  # mypy rejects decorated properties; pydantic's documented form
    @property
    def ok(self) -> bool:
        """Every expected image printed and identical, the run finished, nothing went wrong."""
        return self.complete and not self.problems and self.matches == self.expected_images

    @computed_field  # type: ignore[prop-decorator]  # mypy rejects decorated properties; pydantic's documented form
    @property
    def mean_cycles(self) -> float | None:
        values = [r.cycles for r in self.images if r.cycles is not None]
        return sum(values) / len(values) if values else None


def check(project: Project, log: BoardLog, clock_hz: float | None = None, log_name: str = "the log") -> UartReport:
    """Compare a run with its project: outputs, cycles, cycles per MAC, ms and per-operator cycles.

    The clock is the one the firmware printed; `clock_hz` only stands in when it printed none."""
    warnings = list(log.warnings)
    problems: list[str] = []
    if log.clock_hz is not None:
        hz, source = log.clock_hz, "printed by the firmware"
        if clock_hz is not None and abs(clock_hz - hz) > 0.5:
            warnings.append(f"the firmware reports {hz / 1e6:g} MHz, not the {clock_hz / 1e6:g} MHz given")
    elif clock_hz is not None:
        hz, source = int(clock_hz), "given"
    else:
        hz, source = None, "unknown (no clock line, none given): no milliseconds"
    layers = None
    macs = project.macs
    if project.spec is not None:
        from tinyarch.tools.profile import profile

        prof = profile(project.spec)
        macs, layers = prof.macs, prof.layers
    if not log.outputs and not log.errors:
        problems.append(f"{log_name} holds no firmware output (no `out` lines)")
    images = []
    for i in sorted(set(log.outputs) | set(log.cycles) | set(range(len(project.expected)))):
        cycles = log.cycles.get(i)
        got = log.outputs.get(i)
        match = None if i >= len(project.expected) else got == project.expected[i]
        if got is None and i < len(project.expected):
            problems.append(f"image {i}: no output")
        elif got is not None and i < len(project.expected) and len(got) != len(project.expected[i]):
            problems.append(f"image {i}: {len(got)} output bytes, expected.txt has {len(project.expected[i])}")
        images.append(
            ImageRow(
                index=i,
                cycles=cycles,
                cycles_per_mac=cycles / macs if cycles is not None and macs else None,
                ms=1e3 * cycles / hz if cycles is not None and hz else None,
                match=match,
            )
        )
    if len(log.outputs) > len(project.expected):
        problems.append(f"{len(log.outputs)} images printed, expected.txt has {len(project.expected)}")
    problems += log.errors
    problems += [f"unreadable line: {line}" for line in log.unreadable]
    operators = _operators(log, layers, problems, warnings)
    complete = log.done == len(log.outputs) and log.exit == "0"
    if not complete and not log.errors:
        problems.append("the run did not finish (no `done` and `exit 0`): cut short, or still running")
    return UartReport(
        project=str(project.dir),
        spec_id=project.spec.id if project.spec else None,
        macs=macs,
        clock_hz=hz,
        clock_source=source,
        images=images,
        operators=operators,
        expected_images=len(project.expected),
        matches=sum(r.match is True for r in images),
        complete=complete,
        warnings=warnings,
        problems=problems,
    )


def _operators(log: BoardLog, layers: list | None, problems: list[str], warnings: list[str]) -> list[OperatorRow]:
    """Per-operator cycles, the mean over the images, named after the spec's layers when they line up."""
    runs = [log.op_cycles[i] for i in sorted(log.op_cycles)]
    if not runs:
        return []
    count = len(runs[0])
    if any(len(r) != count for r in runs):
        problems.append("opcycles lines differ in length between images")
        count = min(len(r) for r in runs)
    for i, total in sorted(log.op_truncated.items()):
        problems.append(f"image {i}: {total} operators ran, the firmware timed the first {len(log.op_cycles[i])}")
    if layers is not None and len(layers) != count and not log.op_truncated:
        warnings.append(f"{count} operators timed, the spec has {len(layers)}: names and MACs left out")
        layers = None
    means = [round(sum(r[k] for r in runs) / len(runs)) for k in range(count)]
    total = sum(means) or 1
    rows = []
    for k, cycles in enumerate(means):
        layer = layers[k] if layers is not None and k < len(layers) else None
        macs = layer.macs if layer is not None else None
        rows.append(
            OperatorRow(
                index=k,
                name=layer.name if layer is not None else f"op{k}",
                kind=layer.kind if layer is not None else "",
                macs=macs,
                cycles=cycles,
                cycles_per_mac=cycles / macs if macs else None,
                share=100.0 * cycles / total,
            )
        )
    return rows


def read_uart(
    project_dir: Path,
    *,
    port: str | None = None,
    log_file: Path | None = None,
    baud: int = BAUD,
    timeout: float = 120.0,
    spec_file: Path | None = None,
    clock_hz: float | None = None,
    save: Path | None = None,
    on_line: Callable[[str], None] | None = None,
    on_ready: Callable[[], None] | None = None,
) -> UartReport:
    """The whole check: the project first (so a wrong directory fails before the wait), then the
    port or the log, then the comparison. Exactly one of `port` and `log_file`."""
    if (port is None) == (log_file is None):
        raise UartError("give either a serial port or a log file, not both or neither")
    project = load_project(project_dir, spec_file)
    if log_file is not None:
        log_file = Path(log_file)
        try:
            text = log_file.read_text(errors="replace")
        except OSError as e:
            raise UartError(f"cannot read {log_file}: {e.strerror or e}") from None
        name = str(log_file)
    else:
        assert port is not None  # exactly one of port and log_file, checked above
        text = read_port(port, baud, timeout, on_line, on_ready)
        name = str(port)
        if save is not None:
            Path(save).write_text(text)
    return check(project, parse_log(text), clock_hz, name)
