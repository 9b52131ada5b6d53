"""Moves, the classic strategies and the screened pool: budgets, provenance, repair, resume after kill -9."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import own_home, resume_command
from tinyarch.agents.moves import edit, neighbours, overshoot, repair
from tinyarch.agents.runner import run_search
from tinyarch.core.budget import breaches
from tinyarch.core.config import RunConfig
from tinyarch.core.rundir import RunDir
from tinyarch.core.spaces import SearchSpace, SpecError, load_space
from tinyarch.tools.profile import candidate_cost

NATS = load_space("nats-tss")
CLASSIC = ["local", "rea", "bo", "nsga2"]


def test_neighbours_differ_in_exactly_one_choice() -> None:
    cell = NATS.sample(random.Random(0), 100)
    found = neighbours(NATS, cell)
    assert len(found) == 6 * 4 == len({c.id for c in found})
    for other in found:
        assert sum(a != b for a, b in zip(NATS.encode(cell), NATS.encode(other), strict=True)) == 1


def test_neighbours_keep_frozen_fields(mcu: SearchSpace) -> None:
    spec = mcu.sample(random.Random(1), 10, in_channels=1)
    found = neighbours(mcu, spec, frozen={"in_channels": 1})
    assert found and all(s.in_channels == 1 and not mcu.violations(s) for s in found)


def test_edit_names_bad_fields_and_values() -> None:
    cell = NATS.sample(random.Random(0), 100)
    assert edit(NATS, cell, {"edge_1_0": "none"}).edge_1_0.value == "none"
    with pytest.raises(SpecError, match="edge_9_9: no such choice"):
        edit(NATS, cell, {"edge_9_9": "none"})
    with pytest.raises(SpecError, match="edge_1_0: 'conv_9x9' is not one of"):
        edit(NATS, cell, {"edge_1_0": "conv_9x9"})


def test_repair_reaches_the_budget_with_few_moves(mcu: SearchSpace) -> None:
    rng = random.Random(3)
    limits = {"macs": 5e6, "peak_sram": 64 * 1024, "flash": None}
    repaired = 0
    for _ in range(5):
        spec = mcu.sample(rng, 10, in_channels=1)
        if overshoot(candidate_cost(mcu, spec), limits) == 0:
            continue
        result = repair(mcu, spec, limits, frozen={"in_channels": 1})
        assert result is not None
        fixed, moves = result
        assert not breaches(candidate_cost(mcu, fixed), limits) and 1 <= len(moves) <= 16
        assert fixed.in_channels == 1 and all("->" in m for m in moves)
        repaired += 1
    assert repaired >= 3
    assert repair(mcu, spec, {"macs": 1, "peak_sram": None, "flash": None}) is None  # nothing fits 1 MAC


@pytest.mark.nats_table
@pytest.mark.parametrize("strategy", [*CLASSIC, "screened"])
def test_strategies_spend_the_budget_on_new_feasible_specs(strategy: str, tmp_path: Path) -> None:
    config = RunConfig(
        name=strategy, strategy=strategy, budget_evals=40, batch=4, macs="60M", memory_path=tmp_path / "m"
    )
    state = run_search(config, tmp_path / "runs")
    done = [c for c in state["history"] if c["status"] == "evaluated"]
    assert len(done) == 40 == len({c["id"] for c in done})
    assert all(c["cost"]["macs"] <= 60e6 for c in done)
    if strategy != "nsga2":  # NSGA-II's own variation does not look at the budget; the checks reject for it
        assert not [c for c in state["history"] if c["status"] == "rejected"]
    assert all(c["origin"] for c in done)
    if strategy in ("bo", "screened"):
        assert any(c["note"].startswith(("surrogate rank", "screen rank")) and "UCB" in c["note"] for c in done)


@pytest.mark.nats_table
def test_local_search_walks_from_its_incumbent(tmp_path: Path) -> None:
    config = RunConfig(name="walk", strategy="local", budget_evals=24, batch=4, memory_path=tmp_path / "m")
    state = run_search(config, tmp_path / "runs")
    done = [c for c in state["history"] if c["status"] == "evaluated"]
    assert [c["origin"] for c in done[:4]] == ["restart"] * 4
    by_id = {c["id"]: c for c in done}
    for c in done[4:]:
        if c["origin"].startswith("neighbour of incumbent "):
            parent = by_id[c["origin"].rsplit(" ", 1)[1]]
            earlier = [d for d in done if d["iteration"] < c["iteration"]]  # 24 evaluations need no restart
            assert parent["metrics"]["accuracy"] == max(d["metrics"]["accuracy"] for d in earlier)
            assert c["id"] in {n.id for n in neighbours(NATS, NATS.parse(parent["spec"]))}


def _search(tmp_path: Path, name: str, strategy: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "tinyarch.interfaces.cli", "search", "--name", name, "--strategy", strategy]
    command += ["--budget-evals", "60", "--batch", "4", "--runs-dir", str(tmp_path / "runs")]
    env = own_home(tmp_path / f"home-{name}")  # a memory of its own
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.nats_table
@pytest.mark.parametrize("strategy", [*CLASSIC, "screened"])
def test_kill_and_resume_gives_the_uninterrupted_search(strategy: str, tmp_path: Path) -> None:
    victim = _search(tmp_path, "victim", strategy)
    evaluations = tmp_path / "runs" / "victim" / "evaluations.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not evaluations.is_file() or len(evaluations.read_text().splitlines()) < 20):
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert 20 <= len(evaluations.read_text().splitlines()) < 60
    straight = _search(tmp_path, "straight", strategy)
    assert straight.wait(timeout=300) == 0, straight.stderr.read()

    env = own_home(tmp_path / "home-victim")
    resumed = subprocess.run(
        resume_command(tmp_path / "runs", "victim"), capture_output=True, text=True, timeout=300, env=env
    )
    assert resumed.returncode == 0, resumed.stderr
    ids = [json.loads(line)["id"] for line in evaluations.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 60  # nothing evaluated twice, nothing lost
    reference = RunDir(tmp_path / "runs" / "straight").finished_evaluations()
    assert ids == list(reference)  # the same search as the uninterrupted run


@pytest.mark.nats_table
def test_where_candidates_came_from_shows_in_trace_and_report(tmp_path: Path) -> None:
    from tinyarch.core.rundir import load_run
    from tinyarch.interfaces.report import overview

    runs = tmp_path / "runs"
    run_search(RunConfig(name="origins", strategy="screened", budget_evals=16, memory_path=tmp_path / "m"), runs)
    command = [
        sys.executable,
        "-m",
        "tinyarch.interfaces.cli",
        "trace",
        "origins",
        "--agent",
        "design",
        "--runs-dir",
        str(runs),
    ]
    shown = subprocess.run(command, capture_output=True, text=True, check=True, env={**os.environ, "COLUMNS": "200"})
    assert "screened proposed 4 candidates (attempt 0): " in shown.stdout
    assert "fallback: neighbour of " in shown.stdout and "screen rank 1 of 16: UCB " in shown.stdout
    rows = dict(overview(load_run(runs / "origins"), None))
    assert "fallback neighbour: " in rows["came from"] and "(best " in rows["came from"]


def test_the_screened_pool_runs_a_proxy_search_on_mcu(tmp_path: Path) -> None:
    """Over-budget ideas are cut down to the budget, not thrown away; nothing reaches the checks to be rejected."""
    config = RunConfig(
        name="mcu",
        space="mcu",
        dataset="synthetic",
        evaluator="proxy",
        strategy="screened",
        budget_evals=4,
        batch=2,
        macs="5M",
        sram="64KB",
        proxy_epochs=1,
        deploy_board=None,
        memory_path=tmp_path / "m",
    )
    state = run_search(config, tmp_path / "runs")
    done = [c for c in state["history"] if c["status"] == "evaluated"]
    assert len(done) == 4 and not [c for c in state["history"] if c["status"] == "rejected"]
    assert all(c["cost"]["macs"] <= 5e6 and c["cost"]["peak_sram"] <= 64 * 1024 for c in done)
    assert all(c["spec"]["in_channels"] == 3 for c in done)  # the data's channels, never edited
    proposals = [
        p for t in RunDir(tmp_path / "runs" / "mcu").read_traces() if t["agent"] == "design" for p in t["proposals"]
    ]
    assert any("repaired to the budget" in p["origin"] for p in proposals)


@pytest.mark.parametrize("space_name", ["nats-tss", "mcu"])
def test_the_designer_schema_compiles_to_a_llama_cpp_grammar(space_name: str, tmp_path: Path) -> None:
    """The edit format is decoded under a grammar; a schema llama.cpp cannot compile would fail only at run time."""
    from llama_cpp.llama_grammar import LlamaGrammar

    from tinyarch.agents.context import SearchContext
    from tinyarch.agents.designer import LLMDesigner

    space = load_space(space_name)
    config = RunConfig(name="g", space=space_name, evaluator="nats" if space_name == "nats-tss" else "proxy")
    ctx = SearchContext(
        config, space, None, None, RunDir(tmp_path / "g"), 10, in_channels=1 if space_name == "mcu" else None
    )
    spec = space.sample(random.Random(0), 10, **ctx.fixed_fields())
    shown = [{"id": spec.id, "spec": spec.model_dump(mode="json"), "metrics": {"accuracy": 50.0}}]
    for candidates in ([], shown):
        schema = LLMDesigner().schema(ctx, candidates, edits=4)
        LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        assert ("edits" in schema["properties"]) == bool(candidates)


def test_the_designer_reads_choices_ranked_by_evidence(tmp_path: Path) -> None:
    from tinyarch.agents.designer import choices_text

    config = RunConfig(name="c")
    ctx = type("Ctx", (), {"space": NATS, "config": config, "fixed_fields": staticmethod(lambda: {})})()
    conv = {e: "nor_conv_3x3" for e in ("edge_1_0", "edge_2_0", "edge_2_1", "edge_3_0", "edge_3_1", "edge_3_2")}
    done = [
        {"spec": {"num_classes": 100, **conv}, "metrics": {"accuracy": 70.0}},
        {"spec": {"num_classes": 100, **conv, "edge_1_0": "none"}, "metrics": {"accuracy": 60.0}},
    ]
    line = choices_text(ctx, done)
    assert line.startswith(
        "edge_1_0, edge_2_0, edge_2_1, edge_3_0, edge_3_1, edge_3_2: nor_conv_3x3 (65.5% in 11), none (60.0% in 1)"
    )
    assert line.endswith("(untried)")


def test_a_design_that_breaks_a_rule_is_repaired_not_dropped(mcu: SearchSpace, tmp_path: Path) -> None:
    from tinyarch.agents.context import SearchContext
    from tinyarch.agents.designer import Idea, admitted
    from tinyarch.agents.strategies import Admission

    raw = mcu.sample(random.Random(2), 10, in_channels=1).model_dump(mode="json")
    raw["stem"]["stride"] = 2
    for stage in raw["stages"]:
        stage["stride"] = 2  # a total stride of 64: the space allows 32
    assert any("total stride 64" in str(v) for v in mcu.validate_spec(raw))
    config = RunConfig(name="r", space="mcu", evaluator="proxy", macs="5M", sram="64KB")
    ctx = SearchContext(config, mcu, None, None, RunDir(tmp_path / "r"), 10, in_channels=1)
    ((spec, origin),) = admitted(ctx, {}, Admission(ctx, {}), [Idea("llm design", spec=raw)])
    assert not mcu.violations(spec) and not breaches(candidate_cost(mcu, spec), ctx.limits)
    assert origin.startswith("llm design (repaired to the space's rules and the budget: ")
