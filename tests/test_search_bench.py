"""benchmarks/search_nats.py: the MACs task's budget, the curves, the proposer share and a tiny end-to-end run."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from tinyarch.core.rundir import RunDir
from tinyarch.core.spaces import load_space
from tinyarch.core.spaces.nats import EDGES, NatsCell
from tinyarch.tools.evaluators import NatsTableEvaluator

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("search_nats", ROOT / "benchmarks" / "search_nats.py")
bench = importlib.util.module_from_spec(_spec)
sys.modules["search_nats"] = bench  # dataclasses look their module up
_spec.loader.exec_module(bench)
NATS = load_space("nats-tss")


def test_spread_writes_median_and_quartiles() -> None:
    assert bench.spread([70.0, 71.0, 72.0, 73.0, 74.0]) == "72.00 (71.0-73.0)"
    assert bench.spread([70.0]) == "70.00"


@pytest.mark.nats_table
def test_the_macs_budget_excludes_the_unconstrained_optimum() -> None:
    task = bench.load_task("cifar100-macs")
    table = NatsTableEvaluator("cifar100").accuracy
    best = max(table, key=table.__getitem__)
    assert NATS.cost(NatsCell.from_arch_string(best, 100))["macs"] == task.optimum_macs > task.macs
    assert task.macs % 10_000_000 == 0 and task.macs < bench.MACS_FRACTION * task.optimum_macs <= task.macs + 10_000_000
    assert task.optimum < table[best]
    assert bench.load_task("cifar100").optimum == table[best] and bench.load_task("cifar100").macs is None


def _cell(*ops: str) -> dict:
    return NatsCell(num_classes=100, **dict(zip(EDGES, ops, strict=True))).model_dump(mode="json")


@pytest.mark.nats_table
def test_collect_counts_only_feasible_candidates_and_the_proposer_share(tmp_path: Path) -> None:
    run = bench.RunSpec(tmp_path, "cifar100-macs", "cifar100", "llm", 0, 3, 4, 50_000_000)
    rundir = RunDir(run.root)
    run.config().save(rundir.config)
    specs = [_cell(*["nor_conv_3x3"] * 6), _cell(*["skip_connect"] * 6), _cell(*["avg_pool_3x3"] * 6)]
    ids = [NATS.parse(s).id for s in specs]
    origins = ["llm edit of c1", "llm design", "fallback: random"]
    rundir.trace("tool", 0, "design", proposals=[{"spec": s, "origin": o} for s, o in zip(specs, origins, strict=True)])
    for i, (spec, accuracy, macs) in enumerate(zip(specs, [73.0, 40.0, 10.0], [90e6, 30e6, 20e6], strict=True)):
        record = {"status": "ok", "metrics": {"accuracy": accuracy}, "cost": {"macs": macs}, "spec": spec}
        rundir.record_evaluation(ids[i], record)
        rundir.trace("tool", 0, "evaluate", id=ids[i], status="ok")
    rundir.trace("llm", 0, "designer", prompt_tokens=100, completion_tokens=20)
    (run.root / "done.json").write_text(json.dumps({"seconds": 3.0}))
    result = bench.collect(run, bench.Task("cifar100-macs", "cifar100", 60.0, 50_000_000, 100_000_000))
    assert result["curve"] == [0.0, 40.0, 40.0] and result["regret"] == 20.0
    assert result["proposer_share"] == pytest.approx(2 / 3) and result["tokens"] == 120 and result["budget"] == 3
    assert 0 < result["hypervolume"] < 1


@pytest.mark.nats_table
@pytest.mark.slow
def test_a_tiny_benchmark_runs_resumes_and_tabulates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["search_nats.py", "--strategies", "random", "--seeds", "1", "--evals", "8", "--out", str(tmp_path)]
    argv += ["--tasks", "cifar100-macs"]
    monkeypatch.setattr(sys, "argv", argv)
    bench.main()
    results = json.loads((tmp_path / "results.json").read_text())
    (run,) = results["runs"]
    assert run["evals"] == 8 and len(run["curve"]) == 8 and run["curve"] == sorted(run["curve"])
    assert results["tasks"]["cifar100-macs"]["macs"] < results["tasks"]["cifar100-macs"]["optimum_macs"]
    bench.main()  # done: nothing runs again
    assert json.loads((tmp_path / "results.json").read_text())["runs"] == results["runs"]
