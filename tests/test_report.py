"""The run report and `tinyarch trace` on a seconds-long random search, with hostile text planted in its trace."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import finished_nats_run
from tests.test_cli import run as cli
from tinyarch.agents.runner import run_search
from tinyarch.core.config import RunConfig
from tinyarch.core.rundir import Run, RunDir
from tinyarch.interfaces.report import render, write_run_report
from tinyarch.interfaces.trace_view import is_error

NAME = "rep"
HOSTILE = '<script>alert(1)</script><img src="http://evil.example/x.png" onerror="alert(2)">'
PLANTED = {
    "kind": "llm",
    "iteration": 1,
    "agent": "designer",
    "backend": "scripted",
    "attempt": 2,
    "messages": [
        {"role": "system", "content": "\n".join(f"system line {i}" for i in range(10))},
        {"role": "user", "content": f"</pre></details>{HOSTILE}"},
    ],
    "raw": f"not json {HOSTILE}",
    "parsed": None,
    "errors": ["(answer): not valid JSON (Expecting value at line 1 column 1)"],
    "latency_s": 1.5,
    "prompt_tokens": 120,
    "completion_tokens": 7,
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished random search on the NATS table; its report is checked before the hostile record is planted."""
    return finished_nats_run(tmp_path_factory.mktemp("report"), NAME, budget_evals=20, batch=5)


def test_the_run_writes_its_report(runs: Path) -> None:
    html = (runs / NAME / "report.html").read_text()
    traces = RunDir(runs / NAME).read_traces()
    assert not [t for t in traces if t["agent"] == "report"], "the report failed at the end of the run"
    evaluated = [t["id"] for t in traces if t["agent"] == "evaluate"]
    assert len(evaluated) == 20 and all(i in html for i in evaluated)
    assert "NATS table optimum" in html and "data:image/png;base64," in html


def test_a_failing_report_never_loses_the_run(runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(root: Path, out: Path | None = None) -> Path:
        raise RuntimeError("disk full")

    monkeypatch.setattr("tinyarch.interfaces.report.write_report", broken)
    config = RunConfig(name="broken", strategy="random", budget_evals=5, batch=5, memory_path=tmp_path / "mem")
    state = run_search(config, tmp_path)
    write_run_report(RunDir(tmp_path / "broken"), state["iteration"])
    assert state["stop_reason"] == "evaluation budget spent (5 of 5)"
    failed = [t for t in RunDir(tmp_path / "broken").read_traces() if t["agent"] == "report"]
    assert [(t["status"], t["reason"]) for t in failed] == [("failed", "RuntimeError: disk full")]


@pytest.fixture(scope="module")
def planted(runs: Path) -> Path:
    """The hostile LLM record appended to the trace, and the report rendered again through the CLI."""
    last = RunDir(runs / NAME).read_traces()[-1]["time"]
    with (runs / NAME / "traces.jsonl").open("a") as f:
        f.write(json.dumps({"time": last + 1, **PLANTED}) + "\n")
    res = cli("report", NAME, "--runs-dir", str(runs))
    assert res.returncode == 0, res.stderr
    return runs / NAME / "report.html"


def test_report_is_self_contained_and_escapes_trace_text(planted: Path) -> None:
    html = planted.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '<img src="http' not in html and "onerror=" not in html.replace("onerror=&#34;", "")
    assert html.count("<script") == 1, "only the page's own script"
    assert "not valid JSON" in html


def test_trace_filters_and_json_round_trip(planted: Path) -> None:
    runs = str(planted.parent.parent)
    traces = RunDir(planted.parent).read_traces()

    def records(*args: str) -> list[dict]:
        res = cli("trace", NAME, "--runs-dir", runs, "--json", *args)
        assert res.returncode == 0, res.stderr
        return [json.loads(line) for line in res.stdout.splitlines()]

    assert records() == traces
    assert records("--agent", "evaluate") == [t for t in traces if t["agent"] == "evaluate"]
    assert records("--iter", "1") == [t for t in traces if t["iteration"] == 1]
    errors = records("--errors")
    assert {k: v for k, v in errors[-1].items() if k != "time"} == PLANTED and all(map(is_error, errors))
    assert errors == [t for t in traces if is_error(t)]

    text = cli("trace", NAME, "--runs-dir", runs, "--agent", "designer")
    assert text.returncode == 0 and "\x1b[" not in text.stdout, "piped output has no colour codes"
    assert "designer · attempt 2 · 1 error" in text.stdout and "(6 more lines, --full to show)" in text.stdout
    assert "<script>alert(1)</script>" in text.stdout and "not valid JSON" in text.stdout
    full = cli("trace", NAME, "--runs-dir", runs, "--agent", "designer", "--full").stdout
    assert "system line 9" in full and "more lines" not in full
    tools = cli("trace", NAME, "--runs-dir", runs, "--iter", "0", "--agent", "analyse", "--agent", "critique").stdout
    assert "iteration 0" in tools and "hypervolume" in tools and "decision continue" in tools
    assert "iteration 1" not in tools


def test_unknown_run_is_one_line(tmp_path: Path) -> None:
    for args in (("trace", "nope"), ("report", "nope")):
        res = cli(*args, "--runs-dir", str(tmp_path))
        assert res.returncode == 2 and res.stderr.strip() == f"error: no run 'nope' under {tmp_path}/"


def test_unknown_agent_is_one_line(runs: Path) -> None:
    res = cli("trace", NAME, "--runs-dir", str(runs), "--agent", "oracle")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert res.stderr.startswith("error: --agent: oracle is not one of designer, critic,")


FIRMWARE = {
    "status": "ok",
    "spec_id": "a1",
    "board": "mps2-an500",
    "kernels": "optimized",
    "project": "p",
    "macs": 3_000_000,
    "arena": 24576,
    "profiler_peak_sram": 24576,
    "tflm_arena": 40960,
    "tflm_activations": 26000,
    "flash_text": 300_000,
    "ram_data_bss": 30_000,
    "weight_bytes": 240_000,
    "profiler_flash": 243_000,
    "instructions_per_inference": 12_345_678,
    "estimated_latency_ms": 25.7,
    "bit_exact_images": 8,
    "bit_exact_matches": 8,
    "float_val_acc": 80.1,
    "int8_val_acc": 79.8,
    "val_images": 500,
}


def test_trained_run_shows_firmware_costs_and_the_paper_point(tmp_path: Path) -> None:
    """A cifar100 proxy run, as its state would read: all three cost plots, LMaNet-elite, and firmware figures."""
    config = RunConfig(name="fw", space="mcu", dataset="cifar100", evaluator="proxy", sram="320KB")
    cost = {"macs": 3e6, "params": 1e5, "flash": 2e5, "peak_sram": 24576, "latency_ms": 12.0}
    history = [
        {"id": f"a{i}", "status": "evaluated", "iteration": i, "summary": f"net {i}", "spec": {}, "cost": cost}
        | {"metrics": {"accuracy": 50.0 + i}}
        for i in range(1, 4)
    ]
    final = [{**history[0], "final": {"status": "ok", "metrics": {"accuracy": 61.5}, "firmware": FIRMWARE}}]
    failed = {**history[1], "final": {"status": "failed", "reason": "diverged", "metrics": {}, "firmware": None}}
    state = {"front": ["a3", "a1"], "final": [*final, failed], "stop_reason": "done"}
    html = render(Run(tmp_path, config, [], {}, state, history))
    assert html.count("data:image/png;base64,") == 3, "MACs, peak SRAM and latency plots"
    assert "LMaNet-elite (El Zeinaty et al. 2025, paper&#39;s own figures)" in html and "MCUNet" not in html
    assert "61.50 %" in html and "12,345,678" in html and "8/8 images" in html and "80.10 / 79.80 % on 500" in html
    assert "full training failed: diverged" in html and "peak SRAM ≤ 320.0 KB" in html


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(planted: Path, tmp_path: Path) -> None:
    browser = ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}"]
    url = planted.resolve().as_uri()
    shot = tmp_path / "report.png"
    subprocess.run(
        [*browser, f"--screenshot={shot}", "--window-size=1280,2000", url], capture_output=True, timeout=120, check=True
    )
    assert shot.stat().st_size > 50_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dump = subprocess.run(
        [*browser, "--enable-logging=stderr", "--v=0", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert 'data-ready="1"' in dump.stdout, "the page's script did not finish"
    assert re.search(r'<div id="js-errors" hidden="">\s*</div>', dump.stdout), "script errors on the page"
    console = [line for line in dump.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console and "Refused to" not in dump.stderr, console
    assert "alert(1)" in dump.stdout and "<script>alert" not in dump.stdout
