"""Overnight runs: the budget is what the user asked for, the run directory grows linearly, memory is reuse."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import own_home
from tinyarch.agents.history import History
from tinyarch.agents.runner import KEEP_CHECKPOINTS, run_search
from tinyarch.core.config import RunConfig
from tinyarch.core.rundir import RunDir, load_run
from tinyarch.interfaces.report import overview

CLI = [sys.executable, "-m", "tinyarch.interfaces.cli"]


@pytest.mark.nats_table
def test_a_2000_evaluation_budget_gives_2000_evaluations_in_a_small_run_directory(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    command = [*CLI, "search", "--name", "night", "--strategy", "random", "--budget-evals", "2000", "--batch", "16"]
    done = subprocess.run(
        [*command, "--runs-dir", str(runs), "--memory", "off"], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert "stopped: evaluation budget spent (2000 of 2000)" in done.stdout
    rundir = RunDir(runs / "night")
    assert len(rundir.finished_evaluations()) == 2000
    history = rundir.read_history()
    assert sum(c["status"] == "evaluated" for c in history) == 2000
    spent = [c["id"] for c in history if c["status"] != "rejected"]
    assert len(spent) == len(set(spent)) == 2000  # each evaluated once, duplicates rejected before any cost
    # the checkpoints hold the small state only, and only the newest few of them
    with sqlite3.connect(rundir.checkpoints) as db:
        (kept,) = db.execute("SELECT COUNT(*) FROM checkpoints").fetchone()
        (largest,) = db.execute("SELECT MAX(LENGTH(checkpoint)) FROM checkpoints").fetchone()
    assert kept <= KEEP_CHECKPOINTS + 10 and largest < 20_000  # pruned once per iteration
    assert rundir.checkpoints.stat().st_size < 2_000_000  # was 55 MB for 398 evaluations
    state = load_run(rundir.root).state
    assert state["history_len"] == len(history) and state["spent"] == 2000


def test_history_lines_past_the_checkpoint_are_dropped_on_resume(tmp_path: Path) -> None:
    """A kill between a node's write and its checkpoint: the resumed node writes its candidates again, once."""
    rundir = RunDir(tmp_path / "run")
    first = History(rundir)
    first.sync(0)
    records = [{"id": f"c{i}", "iteration": i // 2, "status": "evaluated"} for i in range(6)]
    assert first.append(records[:4]) == 4
    first.append(records[4:])  # killed before the checkpoint recorded length 6
    resumed = History(rundir)
    resumed.sync(4)
    assert [c["id"] for c in rundir.read_history()] == ["c0", "c1", "c2", "c3"] and resumed.ids == {
        "c0",
        "c1",
        "c2",
        "c3",
    }
    assert resumed.append(records[4:]) == 6
    assert [c["id"] for c in rundir.read_history()] == [c["id"] for c in records]
    assert [c["id"] for c in resumed.this_iteration(2)] == ["c4", "c5"]
    with pytest.raises(RuntimeError, match="damaged"):
        History(rundir).sync(7)


def _config(name: str, seed: int, folder: Path, **fields: object) -> RunConfig:
    return RunConfig(name=name, strategy="random", seed=seed, budget_evals=40, batch=8, memory_path=folder, **fields)


@pytest.mark.nats_table
def test_a_second_search_recalls_the_first_instead_of_rejecting_it(tmp_path: Path) -> None:
    runs, memory = tmp_path / "runs", tmp_path / "memory"
    first = run_search(_config("first", 0, memory), runs)
    second = run_search(_config("second", 1, memory), runs)
    evaluated = {c["id"]: c for c in first["history"] if c["status"] == "evaluated"}
    recalled = [c for c in second["history"] if c["recalled"]]
    assert recalled and all(c["recalled"] == "first" and c["id"] in evaluated for c in recalled)
    assert all(c["metrics"] == evaluated[c["id"]]["metrics"] for c in recalled)
    assert not any("earlier run" in c["reason"] for c in second["history"])
    # recalled at no budget cost: the second run still evaluated 40 architectures of its own, all new
    own = RunDir(runs / "second").finished_evaluations()
    assert len(own) == 40 and not set(own) & set(evaluated)
    # memory's front came in first, so the second front is at least as good with the same budget
    assert {c["origin"] for c in recalled if c["iteration"] == 0} == {"memory front"}
    assert set(first["front"]) <= {c["id"] for c in recalled}
    assert second["hypervolume"][-1] >= first["hypervolume"][-1]
    best = max(c["metrics"]["accuracy"] for c in second["history"] if c["status"] == "evaluated")
    assert best >= max(c["metrics"]["accuracy"] for c in evaluated.values())
    # marked in the traces and the report
    traces = RunDir(runs / "second").read_traces()
    assert any(t["agent"] == "recall" and t["recalled"] for t in traces)
    rows = dict(overview(load_run(runs / "second"), None))
    assert f"({len(recalled)} recalled from memory)" in rows["candidates"]
    assert "recalled from memory" in rows["came from"]


@pytest.mark.nats_table
def test_memory_recalls_only_under_the_same_evaluator_settings_and_never_when_off(tmp_path: Path) -> None:
    runs, memory = tmp_path / "runs", tmp_path / "memory"
    run_search(_config("cifar100", 0, memory), runs)
    other_dataset = run_search(_config("cifar10", 0, memory, dataset="cifar10"), runs)
    independent = run_search(_config("off", 0, memory, memory="off"), runs)
    for state in (other_dataset, independent):
        assert not any(c["recalled"] for c in state["history"])
        assert sum(c["status"] == "evaluated" for c in state["history"]) == 40


@pytest.mark.nats_table
def test_the_live_view_shows_recalled_candidates(tmp_path: Path) -> None:
    runs, home = tmp_path / "runs", tmp_path / "home"
    for name, seed in (("a", "0"), ("b", "1")):
        command = [*CLI, "search", "--name", name, "--strategy", "random", "--seed", seed, "--budget-evals", "16"]
        done = subprocess.run(
            [*command, "--runs-dir", str(runs)],
            capture_output=True,
            text=True,
            timeout=300,
            env=own_home(home),
        )
        assert done.returncode == 0, done.stderr
    assert "recalled from memory: 0" not in done.stdout.split("Pareto front")[0]
    history = [json.loads(line) for line in (runs / "b" / "history.jsonl").read_text().splitlines()]
    recalled = sum(bool(c["recalled"]) for c in history)
    assert recalled and f"({recalled} recalled from memory" in done.stdout
