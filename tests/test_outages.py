"""Server outages: the back-off itself, one clear line at start-up, a run that outlives a restarting LLM and
Chroma server, and one that stops resumable when the server stays down."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import free_port, own_home, resume_command, wait_for_port
from tests.test_llm import _Recorder
from tinyarch.core.config import RunConfig
from tinyarch.core.outage import Outage, OutageEvent, ServiceDown
from tinyarch.core.rundir import RunDir

NEEDS_TABLE = pytest.mark.nats_table
"""The searches below look accuracies up in the NATS table: seconds, no training."""


class FakeClock:
    def __init__(self) -> None:
        self.now, self.sleeps = 0.0, []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def flaky(failures: list[Exception]) -> object:
    """A call that raises each of `failures` in turn, then answers "ok"."""

    def call() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    return call


def refused(error: Exception) -> bool:
    return isinstance(error, ConnectionError)


def outage(max_wait_s: float, events: list[OutageEvent], clock: FakeClock) -> Outage:
    return Outage("the X server at U", refused, max_wait_s, events.append, sleep=clock.sleep, clock=lambda: clock.now)


def test_back_off_doubles_up_to_its_cap_and_reports_each_wait_and_the_recovery() -> None:
    events: list[OutageEvent] = []
    clock = FakeClock()
    assert outage(600, events, clock).call(flaky([ConnectionError("refused")] * 7)) == "ok"  # type: ignore[arg-type]
    assert clock.sleeps == [1, 2, 4, 8, 16, 30, 30]
    assert [e.state for e in events] == ["waiting"] * 7 + ["recovered"]
    assert [e.waited_s for e in events[:3]] == [0, 1, 3] and events[-1].waited_s == 91
    assert events[5].text() == "waiting for the X server at U: 31 s so far, retry in 30 s (ConnectionError: refused)"
    assert events[-1].text() == "the X server at U is back after 91 s"


def test_after_the_outage_wait_the_server_is_down_and_other_errors_pass_at_once() -> None:
    events: list[OutageEvent] = []
    clock = FakeClock()
    with pytest.raises(ServiceDown) as down:
        outage(10, events, clock).call(flaky([ConnectionError("refused")] * 100))  # type: ignore[arg-type]
    assert clock.sleeps == [1, 2, 4, 3]  # the last wait ends at the outage wait
    assert str(down.value) == (
        "the X server at U was unreachable for 10 s (ConnectionError: refused); the run stopped in a resumable state"
    )
    with pytest.raises(ValueError, match="bad request"):
        outage(10, events, clock).call(flaky([ValueError("bad request")]))  # type: ignore[arg-type]
    with pytest.raises(ServiceDown, match=r"^the X server at U is unreachable \(ConnectionError: refused\)$"):
        outage(10, events, clock).probe(flaky([ConnectionError("refused")]))  # type: ignore[arg-type]
    assert len(clock.sleeps) == 4  # neither waited
    assert [e.state for e in events] == ["waiting"] * 4 + ["gave up"]


def test_the_live_view_shows_the_wait_until_the_server_is_back() -> None:
    from rich.console import Console

    from tinyarch.interfaces.cli.search import SearchDisplay

    display = SearchDisplay(RunConfig(name="x"))
    console = Console(width=200, record=True)
    wait = OutageEvent("the LLM server at http://h:1", "waiting", 40, 16, "ConnectError: refused")
    display.update("outage", wait.record())
    console.print(display)
    assert "waiting for the LLM server at http://h:1: 40 s so far, retry in 16 s (ConnectError: refused)" in (
        console.export_text()
    )
    display.update("outage", OutageEvent(wait.service, "recovered", 60).record())
    console.print(display)
    assert display.outage is None and "starting" in console.export_text()


def test_the_trace_view_and_the_web_app_show_a_wait_from_the_traces(tmp_path: Path) -> None:
    from tinyarch.interfaces.trace_view import step_line
    from tinyarch.interfaces.web.views import _outage

    rundir = RunDir(tmp_path / "run")
    rundir.trace("tool", 3, "evaluate", id="c1", status="ok")
    wait = OutageEvent("the Chroma server at http://h:2", "waiting", 130, 30, "ConnectError: refused")
    rundir.trace("tool", 3, "outage", **wait.record())
    traces = rundir.read_traces()
    assert step_line(traces[-1]) == "waiting for the Chroma server at http://h:2: 2 min so far, retry in 30 s " + (
        "(ConnectError: refused)"
    )
    assert _outage(traces) == traces[-1]
    rundir.trace("tool", 3, "outage", **OutageEvent(wait.service, "recovered", 140).record())
    assert _outage(rundir.read_traces()) is None


class FakeOllama(ThreadingHTTPServer):
    """Ollama's API with one model, "fake", answering "{}" (the Designer falls back to random moves) on a
    fixed port; after `answers` chats it goes down, as a crashed server does."""

    def __init__(self, port: int, answers: int | None = None):
        self.bodies: list[dict] = []
        self.answers = answers
        super().__init__(("127.0.0.1", port), _FakeOllamaHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _FakeOllamaHandler(_Recorder):
    server: FakeOllama

    def do_GET(self) -> None:
        payload = json.dumps({"models": [{"name": "fake:latest", "model": "fake:latest"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        super().do_POST()
        if self.server.answers is not None and len(self.server.bodies) >= self.server.answers:
            threading.Thread(target=self.server.stop).start()


def search(tmp_path: Path, name: str, *flags: str) -> list[str]:
    """`tinyarch search` of a small NATS search named `name` under tmp_path/runs, with a memory of its own."""
    cli = [sys.executable, "-m", "tinyarch.interfaces.cli", "search"]
    return [*cli, "--name", name, "--batch", "4", *flags, "--runs-dir", str(tmp_path / "runs")]


def run(command: list[str], tmp_path: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=own_home(tmp_path / "home"))


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The lines the CLI reports as errors (stderr also carries libraries' progress bars)."""
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


@NEEDS_TABLE
@pytest.mark.parametrize(
    ("flags", "line"),
    [
        (["--strategy", "llm", "--llm", "ollama:fake", "--llm-url", "http://127.0.0.1:{port}"], "the LLM server at"),
        (["--strategy", "random", "--memory-url", "http://127.0.0.1:{port}"], "the Chroma server at"),
    ],
)
def test_an_unreachable_server_at_start_is_one_line_at_once(tmp_path: Path, flags: list[str], line: str) -> None:
    port = free_port()
    started = time.monotonic()
    result = run(search(tmp_path, "start", *(f.format(port=port) for f in flags)), tmp_path, timeout=120)
    assert result.returncode == 2 and time.monotonic() - started < 60  # no outage wait at start
    [error] = error_lines(result)
    assert error.startswith(f"error: {line} http://127.0.0.1:{port} is unreachable (") and "connect" in error.lower()


@NEEDS_TABLE
def test_a_missing_ollama_model_is_one_line_at_start(tmp_path: Path) -> None:
    server = FakeOllama(free_port())
    try:
        flags = ["--strategy", "llm", "--llm", "ollama:other", "--llm-url", f"http://127.0.0.1:{server.server_port}"]
        result = run(search(tmp_path, "missing", *flags), tmp_path, timeout=120)
    finally:
        server.stop()
    assert result.returncode == 2
    assert error_lines(result) == [
        f"error: Ollama at http://127.0.0.1:{server.server_port} has no model 'other' (it has: fake:latest); "
        "pull it with: ollama pull other"
    ]


def evaluation_ids(runs: Path, name: str) -> list[str]:
    return [json.loads(line)["id"] for line in (runs / name / "evaluations.jsonl").read_text().splitlines()]


def outage_traces(runs: Path, name: str) -> list[dict]:
    return [t for t in RunDir(runs / name).read_traces() if t["agent"] == "outage"]


@NEEDS_TABLE
def test_a_server_down_past_the_outage_wait_stops_the_run_resumable(tmp_path: Path) -> None:
    port = free_port()
    server = FakeOllama(port, answers=1)
    flags = ["--strategy", "llm", "--llm", "ollama:fake", "--llm-url", f"http://127.0.0.1:{port}"]
    started = time.monotonic()
    stopped = run(search(tmp_path, "down", *flags, "--budget-evals", "12", "--outage-wait", "5s"), tmp_path)
    assert stopped.returncode == 2 and time.monotonic() - started < 120
    [error] = error_lines(stopped)
    assert error.startswith(f"error: the LLM server at http://127.0.0.1:{port} was unreachable for 5 s (")
    assert error.endswith(
        f"; the run stopped in a resumable state; resume with: tinyarch search --resume down --runs-dir {tmp_path}/runs"
    )
    *waits, gave_up = outage_traces(tmp_path / "runs", "down")
    assert waits and {t["state"] for t in waits} == {"waiting"} and gave_up["state"] == "gave up"  # the stop, traced
    assert [t["retry_in_s"] for t in waits[:2]] == [1, 2]
    assert waits[-1]["waited_s"] + waits[-1]["retry_in_s"] == pytest.approx(5)  # the last wait ends at the outage wait

    server = FakeOllama(port)
    try:
        resumed = run(resume_command(tmp_path / "runs", "down"), tmp_path)
    finally:
        server.stop()
    assert resumed.returncode == 0, resumed.stderr
    ids = evaluation_ids(tmp_path / "runs", "down")
    assert len(ids) == len(set(ids)) == 12  # nothing lost, nothing evaluated twice


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[dict[str, object]]:
    """A restartable Ollama-API server with the real embedded model and a restartable `chroma run` server,
    each on a fixed port (the Chroma one on a fixed folder)."""
    from tinyarch.agents.backends.llamacpp import resolve_model

    ollama_port, chroma_port = free_port(), free_port()
    chroma = shutil.which("chroma", path=str(Path(sys.executable).parent))
    server = str(Path(__file__).with_name("ollama_server.py"))
    commands = {
        "ollama": [sys.executable, server, str(resolve_model()), str(ollama_port)],
        "chroma": [chroma, "run", "--path", str(tmp_path / "chroma"), "--port", str(chroma_port)],
    }
    ports = {"ollama": ollama_port, "chroma": chroma_port}
    running: dict[str, subprocess.Popen] = {}

    def start(name: str) -> None:
        running[name] = subprocess.Popen(commands[name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(ports[name])

    def kill(name: str) -> None:
        running[name].kill()
        running[name].wait()

    start("ollama")
    start("chroma")
    try:
        yield {"start": start, "kill": kill, "ollama": ollama_port, "chroma": chroma_port}
    finally:
        for proc in running.values():
            proc.kill()
            proc.wait()


def wait_for_trace(runs: Path, name: str, found: object, timeout_s: float = 240) -> None:
    """Block until a trace of the run satisfies `found`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(found(t) for t in RunDir(runs / name).read_traces()):  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise TimeoutError(f"no such trace after {timeout_s:.0f} s")


@NEEDS_TABLE
@pytest.mark.slow
def test_a_run_outlives_restarts_of_its_llm_and_chroma_servers(tmp_path: Path, servers: dict) -> None:
    runs = tmp_path / "runs"
    flags = ["--strategy", "llm", "--llm", "ollama:qwen-embedded", "--llm-url", f"http://127.0.0.1:{servers['ollama']}"]
    flags += ["--memory-url", f"http://127.0.0.1:{servers['chroma']}", "--budget-evals", "8"]
    started = time.monotonic()
    proc = subprocess.Popen(
        search(tmp_path, "night", *flags),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=own_home(tmp_path / "home"),
    )
    try:
        wait_for_trace(runs, "night", lambda t: t["kind"] == "llm")  # the Designer answered once
        servers["kill"]("ollama")
        wait_for_trace(runs, "night", lambda t: t["agent"] == "outage" and "LLM" in t["service"])
        time.sleep(3)
        servers["start"]("ollama")
        servers["kill"]("chroma")  # while the Designer's call is in flight: the check after it finds Chroma down
        wait_for_trace(runs, "night", lambda t: t["agent"] == "outage" and "Chroma" in t["service"])
        time.sleep(3)
        servers["start"]("chroma")
        assert proc.wait(timeout=300) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.kill()
    print(f"the search with two outages took {time.monotonic() - started:.0f} s")
    ids = evaluation_ids(runs, "night")
    assert len(ids) == len(set(ids)) == 8
    waits = outage_traces(runs, "night")
    for service in (f"the LLM server at http://127.0.0.1:{servers['ollama']}", "the Chroma server at"):
        states = [t["state"] for t in waits if t["service"].startswith(service)]
        assert states[0] == "waiting" and states[-1] == "recovered", waits
    assert all(t["iteration"] >= 1 for t in waits)  # the Designer's second call, in iteration 1 or later
