"""Executors: Ray gives the local executor's results, survives a killed worker, fails a trial that keeps
dying, and reports a wrong address in one line. Ray runs as a 2-CPU local instance for this module."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from rich.console import Console

from tests.conftest import free_port
from tests.test_cli import run
from tinyarch.agents.context import SearchContext
from tinyarch.agents.graph import build_graph
from tinyarch.agents.runner import run_search
from tinyarch.agents.strategies import RandomStrategy
from tinyarch.core.config import RunConfig
from tinyarch.core.rundir import RunDir
from tinyarch.core.spaces import load_space
from tinyarch.core.spaces.nats import NatsCell
from tinyarch.interfaces.cli.search import SearchDisplay
from tinyarch.tools.evaluators import Evaluation, EvaluatorError, NatsTableEvaluator
from tinyarch.tools.executors import RayExecutor

NATS = load_space("nats-tss")
try:
    TABLE = NatsTableEvaluator("cifar100")
except EvaluatorError as e:
    pytest.skip(f"no NATS table: {e}", allow_module_level=True)
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
"""Workers get this module's evaluators by value: a worker started after a kill need not import the module
(with torch and the CLI), which takes seconds."""


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def _search(tmp_path: Path, executor: str, **fields: Any) -> tuple[dict, dict[str, dict]]:
    """One run_search with `executor`; its final state and evaluations.jsonl by id."""
    config = RunConfig(name=executor, executor=executor, memory_path=tmp_path / f"memory-{executor}", **fields)
    state = run_search(config, tmp_path / "runs")
    return state, RunDir(tmp_path / "runs" / executor).finished_evaluations()


def _same_search(local: tuple[dict, dict], on_ray: tuple[dict, dict], metrics: tuple[str, ...]) -> None:
    (local_state, local_evals), (ray_state, ray_evals) = local, on_ray
    assert [c["id"] for c in ray_state["history"]] == [c["id"] for c in local_state["history"]]
    assert ray_state["front"] == local_state["front"]
    assert ray_evals.keys() == local_evals.keys()
    for cid, record in local_evals.items():
        assert ray_evals[cid]["status"] == record["status"] == "ok"
        assert {k: ray_evals[cid]["metrics"][k] for k in metrics} == {k: record["metrics"][k] for k in metrics}


@pytest.mark.parametrize("strategy", ["random", "nsga2"])
def test_ray_matches_local_on_nats(strategy: str, tmp_path: Path, local_ray: None) -> None:
    fields = {"strategy": strategy, "budget_evals": 16, "batch": 8, "seed": 3}
    local, on_ray = _search(tmp_path, "local", **fields), _search(tmp_path, "ray", **fields)
    assert len(local[1]) == 16
    _same_search(local, on_ray, ("accuracy",))


def test_ray_matches_local_on_a_tiny_proxy_run(tmp_path: Path, local_ray: None) -> None:
    import torch

    fields = {
        "space": "mcu",
        "dataset": "synthetic",
        "evaluator": "proxy",
        "strategy": "random",
        "budget_evals": 3,
        "batch": 4,
        "macs": "20M",
        "seed": 2,
        "proxy_epochs": 1,
        "proxy_images": 256,
        "deploy_board": None,
    }
    # A trial holding 1 Ray CPU trains on 1 thread; sums split over another thread count differ in the last bits.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = _search(tmp_path, "local", **fields)
    finally:
        torch.set_num_threads(threads)
    on_ray = _search(tmp_path, "ray", cpus_per_trial=1, **fields)
    assert len(local[1]) == 3
    _same_search(local, on_ray, ("accuracy", "val_loss"))
    assert all((tmp_path / "runs" / "ray" / "candidates" / cid / "weights.safetensors").is_file() for cid in on_ray[1])


class Claiming:
    """The table evaluator, except for the first trial to create `marks/claim`: it writes its cell's id and
    its worker's pid there, then stalls until the test kills that worker (`die=False`) or, every time that
    cell is tried, kills its own worker (`die=True`)."""

    def __init__(self, marks: Path, die: bool):
        self.claim, self.die, self.table = marks / "claim", die, NatsTableEvaluator("cifar100")

    def evaluate(self, cell: NatsCell) -> Evaluation:
        try:
            with self.claim.open("x") as f:
                f.write(f"{cell.id} {os.getpid()}")
            claimed = True
        except FileExistsError:
            claimed = False
        if self.die and self.claim.read_text().startswith(cell.id):
            os.kill(os.getpid(), signal.SIGKILL)
        if claimed and not self.die:
            time.sleep(60)  # killed here by the test
        return self.table.evaluate(cell)


def _run_graph(tmp_path: Path, evaluator: Any, max_retries: int) -> tuple[dict, RunDir]:
    config = RunConfig(name="faults", strategy="random", budget_evals=8, batch=4, executor="ray")
    rundir = RunDir(tmp_path / "faults")
    executor = RayExecutor(evaluator, max_retries=max_retries)
    ctx = SearchContext(config, NATS, evaluator, RandomStrategy(), rundir, 100, executor=executor)
    state = ctx.history.view(build_graph(ctx).invoke({"iteration": 0}, {"recursion_limit": 200}))
    executor.close()
    return state, rundir


def _kill_claimant(claim: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = claim.read_text() if claim.is_file() else ""
        if len(text.split()) == 2:
            os.kill(int(text.split()[1]), signal.SIGKILL)
            return
        time.sleep(0.05)


def test_a_worker_killed_mid_trial_is_retried_and_nothing_is_lost(tmp_path: Path, local_ray: None) -> None:
    killer = threading.Thread(target=_kill_claimant, args=(tmp_path / "claim",))
    killer.start()
    state, rundir = _run_graph(tmp_path, Claiming(tmp_path, die=False), max_retries=2)
    killer.join()
    victim = (tmp_path / "claim").read_text().split()[0]
    ids = [json.loads(line)["id"] for line in rundir.evaluations.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 8 and victim in ids  # nothing lost, nothing evaluated twice
    records = rundir.finished_evaluations()
    assert all(
        r["status"] == "ok" and r["metrics"] == TABLE.evaluate(NATS.parse(r["spec"])).metrics for r in records.values()
    )
    retries = [t for t in rundir.read_traces() if t.get("status") == "retrying"]
    assert [(t["id"], t["attempt"]) for t in retries] == [(victim, 2)] and "worker died" in retries[0]["reason"]
    assert state["stop_reason"] == "evaluation budget spent (8 of 8)"


def test_a_trial_whose_worker_keeps_dying_fails_with_the_reason(tmp_path: Path, local_ray: None) -> None:
    state, rundir = _run_graph(tmp_path, Claiming(tmp_path, die=True), max_retries=1)
    doomed = (tmp_path / "claim").read_text().split()[0]
    records = rundir.finished_evaluations()
    assert len(records) == 8 and records[doomed]["status"] == "failed"
    assert records[doomed]["reason"].startswith("worker died 2 times: The worker died unexpectedly")
    assert all(r["status"] == "ok" for cid, r in records.items() if cid != doomed)
    assert [c["status"] for c in state["history"]].count("failed") == 1


def test_the_live_display_shows_each_trial() -> None:
    display = SearchDisplay(RunConfig(name="d", executor="ray", max_retries=2))
    display.update("check", {})
    step = {"attempt": 1, "where": "", "reason": ""}
    for event in [
        {**step, "id": "aaa", "state": "running", "where": "node1:42"},
        {**step, "id": "bbb", "state": "retrying", "attempt": 2, "reason": "The worker died"},
        {**step, "id": "ccc", "state": "queued"},
        {**step, "id": "ddd", "state": "done", "status": "ok", "metrics": {"accuracy": 71.234}, "seconds": 2.5},
        {**step, "id": "eee", "state": "done", "attempt": 3, "status": "failed", "reason": "worker died 3 times: x"},
    ]:
        display.update("trial", event)
    console = Console(record=True, width=160)
    console.print(display)
    text = console.export_text()
    assert "on Ray" in text and "trial aaa │ running on node1:42 for 0 s" in text
    assert "trial bbb │ worker died (The worker died); queued again, attempt 2 of 3" in text
    assert "trial ccc │ queued" in text and "trial ddd │ 71.23 % in 2.5 s" in text
    assert "trial eee │ failed: worker died 3 times: x" in text


def test_ray_settings_are_checked_and_a_dead_address_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="a Ray address needs executor ray"):
        RunConfig(name="x", ray_address="auto")
    with pytest.raises(ValueError, match="must be auto, ray://HOST:PORT or HOST:PORT, not 'nowhere'"):
        RunConfig(name="x", executor="ray", ray_address="nowhere")
    address = f"127.0.0.1:{free_port()}"
    res = run(
        "search", "--name", "x", "--strategy", "random", "--executor", "ray", "--ray-address", address,
        "--runs-dir", str(tmp_path),
    )  # fmt: skip
    assert res.returncode == 2
    assert (
        res.stderr.strip()
        == f"error: cannot connect to Ray at {address}: Connection refused (is `ray start --head` running there?)"
    )
