"""Playwright drives `tinyarch serve` in Debian's headless Chromium through a real search: the embedded LLM
designs NATS cells while the page starts the run, steers it through the chat, watches the Pareto plot
grow, asks the run a question, reads the trace and stops it, taking a screenshot at each step."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from playwright.sync_api import Page

from tests.conftest import free_port, wait_for_port
from tests.test_chat import needs_nats_table
from tinyarch.core.rundir import RunDir

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
"""Without the networking flags Chromium keeps dialling out, and this machine's closed network refuses it."""
TOKEN = "browser-test-token-0123456789abcdef"
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).is_file(), reason="needs Debian's chromium (apt-get install chromium)"
)
LLM_WAIT_MS = 900_000
"""The embedded model takes 10-40 s a call on 2 cores; a design round can take minutes on a busy machine."""


@contextmanager
def served(runs: Path) -> Iterator[tuple[Page, str, list[str]]]:
    """A Chromium page, `tinyarch serve` on `runs` with a token, its URL, and the page's console errors.
    Searches the page started are stopped on the way out, so a failing test leaves none behind."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tinyarch.interfaces.cli", "serve", "--port", str(port), "--runs-dir", str(runs)],
        env={**os.environ, "TINYARCH_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL,
    )
    problems: list[str] = []
    try:
        wait_for_port(port)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            yield page, f"http://127.0.0.1:{port}/?token={TOKEN}", problems
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
        for lock_file in runs.glob("*/search.lock"):
            pid = RunDir(lock_file.parent).search_pid()
            if pid is not None:
                with suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGTERM)


@needs_chromium
def test_a_browser_starts_steers_watches_and_stops_a_live_llm_search(tmp_path: Path) -> None:
    needs_nats_table()
    from playwright.sync_api import expect

    runs = tmp_path / "runs"
    shots = Path(os.environ.get("TINYARCH_SCREENSHOTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    with served(runs) as (page, url, problems):
        page.goto(f"{url}#/")
        expect(page.locator("#start-config")).to_be_visible()
        # A budget the test never reaches: the stop button, not the budget, ends the run.
        config = f"name: browser\nstrategy: llm\nbatch: 2\nbudget_evals: 40\nmemory_path: {tmp_path / 'memory'}\n"
        page.fill("#start-config", "name: ../x\nstrategy: genius\n")
        page.click("#start")
        expect(page.locator("#start-errors")).to_contain_text("strategy: Input should be 'llm'")
        problems.clear()  # the browser logs the refused config's 422; nothing else may fail
        page.fill("#start-config", config)
        page.screenshot(path=shots / "1-start.png")
        page.click("#start")
        expect(page).to_have_url(re.compile(r"#/run/browser$"))
        expect(page.locator("#run-status")).to_have_text("running", timeout=180_000)

        page.fill("#chat-input", "stay under 30 M MACs")
        page.click("#chat-send")
        expect(page.locator(".msg.bot").last).to_contain_text("MACs <= 30.00 M", timeout=60_000)
        page.screenshot(path=shots / "2-directive.png", full_page=True)

        points = page.locator("#plot circle.pt")
        expect(points.first).to_be_attached(timeout=LLM_WAIT_MS)
        first = points.count()
        deadline = time.monotonic() + LLM_WAIT_MS / 1000  # the page's CSP forbids wait_for_function's eval
        while points.count() <= first:
            assert time.monotonic() < deadline, "no new candidate reached the plot"
            page.wait_for_timeout(1000)
        expect(page.locator("#plot circle.pt.new").first).to_be_attached()
        page.screenshot(path=shots / "3-plot.png", full_page=True)

        page.fill("#chat-input", "/status")
        page.click("#chat-send")
        expect(page.locator(".msg.bot").last).to_contain_text("browser: running")
        page.fill("#chat-input", "which candidate is the most accurate so far?")
        page.click("#chat-send")  # the run's own embedded LLM answers in the server process
        expect(page.locator(".msg.bot")).to_have_count(3, timeout=LLM_WAIT_MS)
        answer = page.locator(".msg.bot").last.inner_text()
        assert answer and not answer.startswith("error"), answer

        page.click("#crumbs >> text=trace")
        designer = page.locator('.step[data-agent="designer"]').first
        expect(designer).to_be_visible()
        expect(page.locator('.step[data-agent="human"]').first).to_contain_text("directive")
        designer.locator("summary").click()
        expect(designer.locator("details pre").first).to_be_visible()
        page.screenshot(path=shots / "4-trace.png")

        page.go_back()
        page.click("#btn-stop")
        expect(page.locator("#run-status")).to_have_text("finished", timeout=LLM_WAIT_MS)
        best = page.locator("#leaderboard a").first
        best.click()
        expect(page.locator("#spec")).to_contain_text("edge_1_0")
        page.screenshot(path=shots / "5-candidate.png", full_page=True)
    assert not problems, problems

    traces = [json.loads(line) for line in (runs / "browser" / "traces.jsonl").read_text().splitlines()]
    applied = next(t for t in traces if t["agent"] == "human" and t["message"] == "directive")
    stopped = next(t for t in traces if t["agent"] == "human" and t["message"] == "stop")
    assert applied["limits"] == {"macs": 30e6} and stopped["time"] > applied["time"]
    designer = [t for t in traces if t["agent"] == "designer" and t["time"] > applied["time"]]
    assert designer and "User directives: stay under 30 M MACs" in designer[0]["messages"][1]["content"]
    later = {t["id"] for t in traces if t["agent"] == "evaluate" and t["time"] > applied["time"]}
    evaluations = [json.loads(line) for line in (runs / "browser" / "evaluations.jsonl").read_text().splitlines()]
    assert all(e["cost"]["macs"] <= 30e6 for e in evaluations if e["id"] in later)
    assert sorted(p.name for p in shots.glob("*.png")) == [
        "1-start.png",
        "2-directive.png",
        "3-plot.png",
        "4-trace.png",
        "5-candidate.png",
    ]


@needs_chromium
def test_continue_restarts_a_killed_search_from_the_page(tmp_path: Path) -> None:
    """A search killed mid-run shows as not running; the continue button resumes it and stop ends it."""
    needs_nats_table()
    from playwright.sync_api import expect

    runs, config = tmp_path / "runs", tmp_path / "run.yaml"
    config.write_text(
        "name: killed\nstrategy: random\nbudget_evals: 5000\nmax_iterations: 5000\nbatch: 1\n"
        f"memory_path: {tmp_path / 'memory'}\nuse_explanations: false\n"
    )
    search = subprocess.Popen(
        [sys.executable, "-m", "tinyarch.interfaces.cli", "search", "--config", str(config), "--runs-dir", str(runs)],
        stdout=subprocess.DEVNULL,
    )
    evaluations = runs / "killed" / "evaluations.jsonl"
    deadline = time.monotonic() + 120
    while not (evaluations.is_file() and len(evaluations.read_text().splitlines()) >= 3):
        assert time.monotonic() < deadline and search.poll() is None
        time.sleep(0.2)
    search.kill()
    search.wait()
    killed_at = len(evaluations.read_text().splitlines())

    with served(runs) as (page, url, problems):
        page.goto(f"{url}#/run/killed")
        expect(page.locator("#run-status")).to_have_text("not running")
        page.click("#btn-continue")
        expect(page.locator("#run-status")).to_have_text("running", timeout=120_000)
        deadline = time.monotonic() + 120
        while len(evaluations.read_text().splitlines()) <= killed_at + 2:
            assert time.monotonic() < deadline, "the resumed search evaluates nothing"
            page.wait_for_timeout(500)
        page.click("#btn-stop")
        expect(page.locator("#run-status")).to_have_text("finished", timeout=120_000)
    assert not problems, problems
    ids = [json.loads(line)["id"] for line in evaluations.read_text().splitlines()]
    assert len(ids) == len(set(ids)) > killed_at + 2  # resumed, nothing evaluated twice
