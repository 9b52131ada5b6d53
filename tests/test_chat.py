"""Chat-style steering: directives reach the next design step and tighten the checks, commands
steer a live search in another process, and questions are answered from the run's data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import needs_nats_table, own_home
from tests.test_graph import NATS, _cells, _scripted_context, designs, edits
from tests.test_llm import ScriptedBackend
from tinyarch.agents.directives import is_question, parse_directive
from tinyarch.agents.graph import build_graph
from tinyarch.agents.llm import StructuredLLM
from tinyarch.interfaces.chat import Chat

CLI = [sys.executable, "-m", "tinyarch.interfaces.cli"]


@pytest.mark.parametrize(
    ("text", "limits"),
    [
        ("stay under 60 M MACs", {"macs": 60e6}),
        ("keep SRAM below 200KB and flash under 1MB", {"peak_sram": 200 * 1024, "flash": 1024**2}),
        ("peak SRAM should stay below 100 KB", {"peak_sram": 100 * 1024}),
        ("only kernel 3 in the first two stages", {}),
    ],
)
def test_directives_state_their_limits(text: str, limits: dict) -> None:
    assert parse_directive(text).limits == limits


def test_questions_are_told_from_directives() -> None:
    assert is_question("why did you drop SE?") and is_question("what is on the front")
    assert not is_question("stay under 60 M MACs") and not is_question("try SE only in the last stages")


def test_a_directive_reaches_the_designer_and_the_checks(tmp_path: Path) -> None:
    """Sent before the run starts: the first prompt carries it and the checks enforce its MACs limit."""
    needs_nats_table()
    over = [c for c in _cells(*range(40)) if NATS.cost(NATS.parse(c))["macs"] > 30e6]
    answers = [designs(over[0])]  # a whole design over the directive's limit, then edits
    conv, pool = "nor_conv_3x3", "avg_pool_3x3"
    answers += [edits(("c1", "edge_1_0", conv), ("c2", "edge_2_1", pool))]
    ctx = _scripted_context(tmp_path, answers)
    ctx.rundir.post("directive", **parse_directive("stay under 30 M MACs").model_dump())
    state = ctx.history.view(build_graph(ctx).invoke({"iteration": 0}, {"recursion_limit": 200}))
    first_prompt = ctx.llm.backend.seen[0][1]["content"]
    assert "User directives: stay under 30 M MACs" in first_prompt and "MACs <= 30.00 M" in first_prompt
    assert state["limits"] == {"macs": 30e6}
    done = [c for c in state["history"] if c["status"] == "evaluated"]
    assert done and all(c["cost"]["macs"] <= 30e6 for c in done)  # over-limit designs are cut down to fit
    assert any("repaired to the budget" in c["origin"] for c in done)


def test_questions_get_answers_citing_real_candidates(tmp_path: Path) -> None:
    needs_nats_table()
    runs = tmp_path / "runs"
    subprocess.run(
        [*CLI, "search", "--name", "q", "--strategy", "random", "--budget-evals", "8", "--runs-dir", str(runs)],
        check=True,
        capture_output=True,
        env=own_home(tmp_path / "home"),
    )
    chat = Chat(runs / "q")
    best = chat._run().state["front"][0]
    reply = json.dumps({"answer": f"{best} leads the front.", "cites": [best, "ffffffffffff"]})
    chat._llm = StructuredLLM(ScriptedBackend([reply]))
    text = chat.handle(f"why is {best} on the front?")
    assert text.endswith(f"(cites: {best})")  # an invented id is dropped
    prompt = chat.llm.backend.seen[0][1]["content"]
    assert f"Question: why is {best} on the front?" in prompt and f"{best}: " in prompt  # /why data included
    assert best in chat.handle(f"/why {best}") and "on the front" in chat.handle(f"/why {best}")
    assert chat.handle("/nope").startswith("unknown command")


def test_chat_steers_a_live_search_in_another_process(tmp_path: Path) -> None:
    """Pause, tighten the budget and resume a running `tinyarch search`, with no lost update and no lock."""
    needs_nats_table()
    runs, config = tmp_path / "runs", tmp_path / "run.yaml"
    config.write_text(
        "name: live\nstrategy: random\nbudget_evals: 5000\nmax_iterations: 5000\nbatch: 1\n"
        f"memory_path: {tmp_path / 'memory'}\nuse_explanations: false\n"
    )
    search = subprocess.Popen(
        [*CLI, "search", "--config", str(config), "--runs-dir", str(runs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    evaluations = runs / "live" / "evaluations.jsonl"
    deadline = time.monotonic() + 120
    while not (evaluations.is_file() and len(evaluations.read_text().splitlines()) >= 5):
        assert time.monotonic() < deadline and search.poll() is None, search.stderr.read() if search.poll() else ""
        time.sleep(0.2)

    def chat(*lines: str) -> str:
        said = [x for line in lines for x in ("--say", line)]
        res = subprocess.run([*CLI, "chat", "live", *said, "--runs-dir", str(runs)], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        return res.stdout

    assert "pause sent" in chat("/pause")
    reply = chat("stay under 20 M MACs")
    assert "User directives: stay under 20 M MACs" in reply and "MACs <= 20.00 M" in reply
    time.sleep(1.5)
    status = chat("/status")
    assert "running, paused" in status and "MACs <= 20.00 M (tightened by a directive)" in status
    chat("/resume")
    time.sleep(2)
    chat("/stop")
    stdout, stderr = search.communicate(timeout=120)
    assert search.returncode == 0, stderr
    assert "stopped by the user" in stdout and "locked" not in stderr

    traces = [json.loads(line) for line in (runs / "live" / "traces.jsonl").read_text().splitlines()]
    applied = next(t for t in traces if t["agent"] == "human" and t["message"] == "directive")
    later = [t for t in traces if t["agent"] == "evaluate" and t["time"] > applied["time"]]
    assert later, "the search went on after the directive"
    state_history = {json.loads(line)["id"]: json.loads(line) for line in evaluations.read_text().splitlines()}
    assert all(state_history[t["id"]]["cost"]["macs"] <= 20e6 for t in later)
    assert [t["message"] for t in traces if t["agent"] == "human"] == ["pause", "directive", "resume", "stop"]


@pytest.mark.skipif(not shutil.which("tmux"), reason="needs tmux (Debian package tmux)")
def test_tmux_chat_with_a_live_llm_search(tmp_path: Path) -> None:
    """The real embedded model designs; a user in another tmux pane tightens the MACs budget mid-run."""
    needs_nats_table()
    runs, session = tmp_path / "runs", f"tinyarch-chat-{os.getpid()}"
    config = tmp_path / "run.yaml"
    config.write_text(f"name: llm\nstrategy: llm\nbudget_evals: 6\nbatch: 2\nmemory_path: {tmp_path / 'memory'}\n")
    search = f"{' '.join(CLI)} search --config {config} --runs-dir {runs}; tmux wait-for -S {session}-done"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "200", "-y", "50", search], check=True)
    try:
        traces = runs / "llm" / "traces.jsonl"
        deadline = time.monotonic() + 900
        while not (traces.is_file() and '"agent": "design"' in traces.read_text()):
            assert time.monotonic() < deadline
            time.sleep(1)
        chat = f"{' '.join(CLI)} chat llm --runs-dir {runs}"
        subprocess.run(["tmux", "split-window", "-t", session, chat], check=True)
        time.sleep(8)  # the chat starts (imports) and shows the run's status
        subprocess.run(["tmux", "send-keys", "-t", f"{session}:0.1", "stay under 30 M MACs", "Enter"], check=True)
        time.sleep(3)
        pane = subprocess.run(["tmux", "capture-pane", "-p", "-t", f"{session}:0.1"], capture_output=True, text=True)
        assert "User directives: stay under 30 M MACs" in pane.stdout and "MACs <= 30.00 M" in pane.stdout
        subprocess.run(["tmux", "wait-for", f"{session}-done"], timeout=1200, check=True)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)

    records = [json.loads(line) for line in traces.read_text().splitlines()]
    applied = next(t for t in records if t["agent"] == "human" and t["message"] == "directive")
    prompts = [t for t in records if t["agent"] == "designer" and t["time"] > applied["time"]]
    assert prompts and "User directives: stay under 30 M MACs" in prompts[0]["messages"][1]["content"]
    evaluations = [json.loads(line) for line in (runs / "llm" / "evaluations.jsonl").read_text().splitlines()]
    later = {t["id"] for t in records if t["agent"] == "evaluate" and t["time"] > applied["time"]}
    assert all(e["cost"]["macs"] <= 30e6 for e in evaluations if e["id"] in later)
