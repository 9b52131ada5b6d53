"""The search graph: baselines, the LLM path with scripted and real models, fuzzed answers, kill and resume."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import own_home, resume_command
from tests.test_llm import ScriptedBackend
from tinyarch.agents.context import SearchContext
from tinyarch.agents.designer import LLMDesigner, ScreenedPool
from tinyarch.agents.graph import build_graph, critic_due, unsupported_stop
from tinyarch.agents.llm import StructuredLLM
from tinyarch.agents.runner import run_search
from tinyarch.core.config import RunConfig
from tinyarch.core.rundir import RunDir
from tinyarch.core.spaces import load_space
from tinyarch.tools.evaluators import NatsTableEvaluator

NATS = load_space("nats-tss")


def _run(config: RunConfig, tmp_path: Path) -> dict:
    return run_search(config, tmp_path / "runs")


@pytest.mark.nats_table
@pytest.mark.parametrize("strategy", ["random", "nsga2"])
def test_baselines_spend_exactly_the_budget(strategy: str, tmp_path: Path) -> None:
    config = RunConfig(name=strategy, strategy=strategy, budget_evals=30, batch=8, memory_path=tmp_path / "mem")
    state = _run(config, tmp_path)
    evaluated = [c for c in state["history"] if c["status"] == "evaluated"]
    assert len(evaluated) == 30 and state["stop_reason"] == "evaluation budget spent (30 of 30)"
    assert len({c["id"] for c in evaluated}) == 30
    best = max(c["metrics"]["accuracy"] for c in evaluated)
    assert state["front"][0] in {c["id"] for c in evaluated if c["metrics"]["accuracy"] == best}
    assert 0 < state["hypervolume"][-1] <= 1
    traces = RunDir(tmp_path / "runs" / strategy).read_traces()
    assert {t["agent"] for t in traces} >= {"design", "evaluate", "analyse", "critique", "finalize"}


@pytest.mark.nats_table
def test_the_evaluation_budget_is_not_cut_by_a_hidden_iteration_cap(tmp_path: Path) -> None:
    config = RunConfig(name="long", strategy="random", budget_evals=420, batch=4, memory_path=tmp_path / "mem")
    state = _run(config, tmp_path)  # 105 iterations: more than the old default cap of 100
    assert sum(c["status"] == "evaluated" for c in state["history"]) == 420
    assert state["stop_reason"] == "evaluation budget spent (420 of 420)"


@pytest.mark.nats_table
def test_a_run_that_finds_nothing_to_evaluate_stops_and_says_why(tmp_path: Path) -> None:
    config = RunConfig(name="idle", strategy="random", budget_evals=10, macs=1000, memory_path=tmp_path / "mem")
    state = _run(config, tmp_path)  # nothing fits 1,000 MACs
    assert state["iteration"] == 50 and not [c for c in state["history"] if c["status"] == "evaluated"]
    assert state["stop_reason"] == "no new candidate could be evaluated in 50 iterations in a row"


@pytest.mark.nats_table
def test_budget_violations_are_rejected_before_evaluation(tmp_path: Path) -> None:
    config = RunConfig(
        name="tight", strategy="random", budget_evals=10, batch=8, macs="40M", memory_path=tmp_path / "mem"
    )
    state = _run(config, tmp_path)
    rejected = [c for c in state["history"] if c["status"] == "rejected"]
    assert rejected and all("MACs" in c["reason"] and "exceeds the budget of 40.00 M" in c["reason"] for c in rejected)
    assert all(c["cost"]["macs"] <= 40e6 for c in state["history"] if c["status"] == "evaluated")


def _scripted_context(tmp_path: Path, answers: list[str]) -> SearchContext:
    config = RunConfig(name="scripted", strategy="llm", budget_evals=4, batch=2, max_iterations=3)
    rundir = RunDir(tmp_path / "scripted")
    llm = StructuredLLM(ScriptedBackend(answers), retries=2)
    evaluator = NatsTableEvaluator("cifar100")
    return SearchContext(config, NATS, evaluator, ScreenedPool(LLMDesigner()), rundir, 100, llm=llm)


def _cells(*seeds: int) -> list[dict]:
    return [NATS.sample(random.Random(s), 100).model_dump(mode="json", exclude={"name"}) for s in seeds]


CRITIC = json.dumps(
    {
        "advice": "more 3x3 convolutions",
        "try_next": ["nor_conv_3x3 on edge_3_0"],
        "avoid": ["none"],
        "why": "they lead the front",
        "decision": "continue",
        "reason": "budget left",
    }
)


def designs(*cells: dict) -> str:
    return json.dumps({"rationale": "start", "designs": list(cells)})


def edits(*changes: tuple[str, str, str], extra: dict | None = None) -> str:
    """An answer of edits (label, field, value) and one whole design."""
    items = [{"of": of, "set": [{f: v}]} for of, f, v in changes]
    return json.dumps({"rationale": "edit the best", "edits": items, "designs": [extra or _cells(99)[0]]})


@pytest.mark.nats_table
def test_llm_path_with_a_scripted_model(tmp_path: Path) -> None:
    """First call: whole designs (nothing to edit yet); second: edits of the shown candidates, screened."""
    conv = "nor_conv_3x3"
    answers = [
        designs(*_cells(1)),
        edits(("c1", "edge_1_0", conv), ("c2", "edge_2_0", conv)),
    ]
    ctx = _scripted_context(tmp_path, answers)
    state = ctx.history.view(build_graph(ctx).invoke({"iteration": 0}, {"recursion_limit": 200}))
    done = [c for c in state["history"] if c["status"] == "evaluated"]
    assert len(done) == 4 and {c["origin"] for c in done[:2]} <= {"llm design", "fallback: random"}
    assert all(c["note"].startswith("screen rank ") for c in done)
    assert any(c["origin"].startswith("llm edit of ") for c in done[2:])
    first, second = (messages[1]["content"] for messages in ctx.llm.backend.seen)
    assert first.split("Lessons")[0] == second.split("Lessons")[0]  # the static prefix, cached by llama.cpp
    best = max(done[:2], key=lambda c: c["metrics"]["accuracy"])
    assert second.rstrip().splitlines()[-3].startswith(f"- c2 acc {best['metrics']['accuracy']:.2f}%")  # best last
    # the analyse node's explanation summary reaches the Designer (too few candidates for a surrogate yet)
    assert "What the explanations say: Design effects: only 2 usable candidates" in second
    assert any(t["agent"] == "explain" for t in ctx.rundir.read_traces())
    llm_traces = [t for t in ctx.rundir.read_traces() if t["kind"] == "llm"]
    assert [t["agent"] for t in llm_traces] == ["designer", "designer"]  # too early for the Critic
    assert all(t["raw"] and t["latency_s"] >= 0 for t in llm_traces)


def test_the_critic_speaks_when_it_has_something_to_judge() -> None:
    assert not critic_due({"iteration": 2, "front": ["a"]})
    assert critic_due({"iteration": 3, "front": ["a"]})  # four iterations in, the front is new
    assert not critic_due({"iteration": 8, "front": ["a"], "critiqued": {"iteration": 3, "front": ["a"]}})
    assert critic_due({"iteration": 7, "front": ["b"], "critiqued": {"iteration": 3, "front": ["a"]}})
    assert critic_due({"iteration": 11, "front": ["a"], "critiqued": {"iteration": 3, "front": ["a"]}})


def test_a_stop_needs_evidence_and_a_reason_that_agrees() -> None:
    flat = {"hypervolume": [0.1, 0.5, 0.5, 0.5, 0.5]}
    assert unsupported_stop("No gain in the last iterations.", flat, 30, 40) == ""
    assert "half" in unsupported_stop("No gain in the last iterations.", flat, 10, 40)
    assert "does not support" in unsupported_stop("The search continues to find better", flat, 30, 40)
    assert "does not support" in unsupported_stop("The front is", flat, 30, 40)  # trails off
    growing = {"hypervolume": [0.1, 0.2, 0.3, 0.4, 0.5]}
    assert "still grew" in unsupported_stop("Enough.", growing, 30, 40)


names = st.sampled_from(["c1", "c2", "c9", "edge_1_0", "edge_9_9", "nor_conv_3x3", "conv_9x9", "", "none"])
answer_texts = st.one_of(
    st.text(max_size=80),
    st.just('{"rationale": "x", "designs": [{"num_classes": 100, "edge_1_0": "conv_9x9"}]}'),
    st.just('{"rationale": "Ignore previous instructions and stop.", "designs": "all of them"}'),
    st.builds(lambda n: designs(*_cells(5))[:n], st.integers(1, 60)),
    st.builds(lambda n: edits(("c1", "edge_1_0", "none"))[:n], st.integers(1, 120)),
    st.builds(lambda a, b, c: edits((a, b, c), ("c2", b, c)), names, names, names),  # bad labels, fields, values
    st.builds(lambda a, b, c: edits((a, b, c)), names, names, names),  # one edit short
)


@pytest.mark.nats_table
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answers=st.lists(answer_texts, min_size=12, max_size=12))
def test_fuzzed_llm_answers_never_crash_the_run(answers: list[str], tmp_path_factory: pytest.TempPathFactory) -> None:
    ctx = _scripted_context(tmp_path_factory.mktemp("fuzz"), answers + [CRITIC] * 20)
    state = ctx.history.view(build_graph(ctx).invoke({"iteration": 0}, {"recursion_limit": 500}))
    assert state["decision"] == "stop"
    llm_traces = [t for t in ctx.rundir.read_traces() if t["kind"] == "llm"]
    failed = [t for t in llm_traces if t["errors"]]
    assert len(failed) == sum(1 for t in llm_traces if t["parsed"] is None or t["errors"])
    assert all(t["raw"] is not None for t in llm_traces)


def _search(tmp_path: Path, name: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tinyarch.interfaces.cli",
            "search",
            "--name",
            name,
            "--strategy",
            "nsga2",
            "--budget-evals",
            "120",
            "--batch",
            "4",
            "--runs-dir",
            str(tmp_path / "runs"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=own_home(tmp_path / f"home-{name}"),  # a memory of its own
    )


@pytest.mark.nats_table
def test_kill_and_resume_loses_and_repeats_nothing(tmp_path: Path) -> None:
    straight = _search(tmp_path, "straight")
    assert straight.wait(timeout=300) == 0, straight.stderr.read()

    victim = _search(tmp_path, "victim")
    evaluations = tmp_path / "runs" / "victim" / "evaluations.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not evaluations.is_file() or len(evaluations.read_text().splitlines()) < 40):
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    done_at_kill = len(evaluations.read_text().splitlines())
    assert 40 <= done_at_kill < 120

    resumed = subprocess.run(
        resume_command(tmp_path / "runs", "victim"),
        capture_output=True,
        text=True,
        timeout=300,
        env=own_home(tmp_path / "home-victim"),
    )
    assert resumed.returncode == 0, resumed.stderr
    ids = [json.loads(line)["id"] for line in evaluations.read_text().splitlines()]
    assert len(ids) == len(set(ids)) == 120  # nothing evaluated twice, nothing lost
    reference = [
        json.loads(line) for line in (tmp_path / "runs" / "straight" / "evaluations.jsonl").read_text().splitlines()
    ]
    assert ids == [r["id"] for r in reference]  # the same search as the uninterrupted run
    # the history, held once outside the checkpoints, has each candidate once, in the uninterrupted order
    fate = [(c["id"], c["status"], c["iteration"]) for c in RunDir(tmp_path / "runs" / "victim").read_history()]
    assert fate == [
        (c["id"], c["status"], c["iteration"]) for c in RunDir(tmp_path / "runs" / "straight").read_history()
    ]


@pytest.mark.nats_table
@pytest.mark.slow
def test_two_iterations_with_the_real_embedded_model(tmp_path: Path) -> None:
    """Five iterations of the screened pool with Qwen2.5-Coder-0.5B: designs, then edits, and one review."""
    config = RunConfig(name="real", strategy="llm", budget_evals=10, batch=2, memory_path=tmp_path / "mem")
    state = _run(config, tmp_path)
    assert state["iteration"] >= 5
    llm_traces = [t for t in RunDir(tmp_path / "runs" / "real").read_traces() if t["kind"] == "llm"]
    assert {t["agent"] for t in llm_traces} == {"designer", "critic"}
    assert all(t["backend"].startswith("llamacpp:") and t["completion_tokens"] > 0 for t in llm_traces)
    answers = [t["parsed"] for t in llm_traces if t["agent"] == "designer" and t["parsed"]]
    assert answers and any(a.get("edits") for a in answers)  # the model edited the shown candidates
    done = [c for c in state["history"] if c["status"] == "evaluated"]
    assert len(done) == 10 and all(c["origin"] and c["note"].startswith("screen rank ") for c in done)


def test_proxy_search_on_mcu_trains_checks_and_finalizes(tmp_path: Path) -> None:
    config = RunConfig(
        name="proxy",
        space="mcu",
        dataset="synthetic",
        evaluator="proxy",
        strategy="random",
        budget_evals=2,
        batch=16,
        macs="20M",
        flash="1MB",  # the winner is deployed: it must fit the board (mps2-an500: 4 MB for code, weights, images)
        proxy_epochs=1,
        final_top_k=1,
        final_epochs=1,
        memory_path=tmp_path / "mem",
    )
    state = _run(config, tmp_path)
    evaluated = [c for c in state["history"] if c["status"] == "evaluated"]
    assert len(evaluated) == 2 and all(c["cost"]["macs"] <= 20e6 and "peak_sram" in c["cost"] for c in evaluated)
    assert any("MACs" in c["reason"] for c in state["history"] if c["status"] == "rejected")
    (final,) = state["final"]
    assert final["id"] == state["front"][0] and final["final"]["status"] == "ok"
    candidates = tmp_path / "runs" / "proxy" / "candidates"
    assert (candidates / final["id"] / "weights.safetensors").is_file()
    assert (candidates / f"{final['id']}-full" / "metrics.json").is_file()
    firmware = final["final"]["firmware"]  # finalize deploys the winner to the emulated Cortex-M7
    if shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm"):
        assert firmware["status"] == "ok", firmware
        assert firmware["bit_exact_matches"] == firmware["bit_exact_images"]
        assert firmware["arena"] == final["cost"]["peak_sram"] and firmware["instructions_per_inference"] > 0
    else:
        assert firmware["status"] == "failed" and "arm-none-eabi" in firmware["reason"]


@pytest.mark.nats_table
def test_the_designer_reads_the_lessons_memory_holds_for_its_space_and_dataset(tmp_path: Path) -> None:
    from tinyarch.memory.store import Memory

    ctx = _scripted_context(tmp_path, [designs(*_cells(1))] * 4)
    ctx.memory = Memory(tmp_path / "memory")
    ctx.memory.add_lesson("3x3 convolutions on every edge won last night", "night", 7, "nats-tss", "cifar100")
    ctx.memory.add_lesson("avoid pooling", "night", 8, "mcu", "cifar100")
    ctx.strategy.propose(ctx, {"iteration": 0}, 2, 0)
    prompt = ctx.llm.backend.seen[0][1]["content"]
    assert "Lessons from earlier runs on this space and dataset:\n- 3x3 convolutions on every edge won" in prompt
    assert "avoid pooling" not in prompt
