"""What the web app shows, read from a run directory by the same readers as `chat`, `trace` and `report`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tinyarch.agents.graph import activity
from tinyarch.core.budget import COSTS
from tinyarch.core.outage import OutageEvent
from tinyarch.core.rundir import Run, RunDir, load_run
from tinyarch.interfaces.chat import Chat
from tinyarch.interfaces.report import firmware, nats_optimum, plot_axes, settings, trace_step
from tinyarch.interfaces.trace_view import AGENTS, is_error, llm_title, select, step_line
from tinyarch.interfaces.web.models import (
    AgentActivity,
    Axis,
    CandidateDetail,
    FileEntry,
    Layer,
    Point,
    RunLive,
    RunStatus,
    RunSummary,
    TracePage,
    TraceStep,
)

LOG_LINES = 15
DOWNLOAD_SKIP = ("optimizer.safetensors", "state.json")
"""Training-resume state: large and of no use outside the run."""


def run_status(rundir: RunDir, state: dict[str, Any], starting: bool) -> RunStatus:
    if rundir.search_running():
        return "paused" if rundir.paused() else "running"
    if starting:
        return "starting"
    return "finished" if "final" in state else "not running"


def summary(root: Path, starting: bool = False) -> RunSummary:
    """One row of the run list; a run whose directory cannot be read says why instead of failing the list."""
    try:
        run = load_run(root)
    except Exception as e:  # a broken config.yaml must not hide the other runs
        return RunSummary(name=root.name, status="not running", error=f"{type(e).__name__}: {e}"[:300])
    return _summary(run, starting)


def _summary(run: Run, starting: bool) -> RunSummary:
    c = run.config
    best = run.evaluated[0] if run.evaluated else None
    return RunSummary(
        name=run.root.name,  # the directory: what the API's paths name
        status=run_status(RunDir(run.root), run.state, starting),
        space=c.space,
        dataset=c.dataset,
        strategy=c.strategy,
        evaluator=c.evaluator,
        iteration=run.state.get("iteration", 0),
        evaluated=len(run.evaluated),
        budget_evals=c.budget_evals,
        best_accuracy=best["metrics"]["accuracy"] if best else None,
        best_id=best["id"] if best else None,
    )


def live(chat: Chat, starting: bool = False) -> RunLive:
    """The live view of `chat`'s run: the checkpoint's state, plus evaluations finished since (they appear one
    by one); the limits in force are the chat's, with directives it sent and the search has not yet read."""
    root = chat.root
    run, rundir = load_run(root), chat.rundir
    c, state = run.config, run.state
    history = run.history
    now = time.time()
    latest: dict[str, dict[str, Any]] = {}
    for record in run.traces:
        latest[record.get("agent", "?")] = record
    agents = [
        AgentActivity(
            agent=agent,
            line=llm_title(r) if r.get("kind") == "llm" else step_line(r),
            seconds_ago=round(now - float(r.get("time", now)), 1),
            error=is_error(r),
        )
        for agent, r in sorted(latest.items(), key=lambda item: _agent_order(item[0]))
    ]
    status = run_status(rundir, state, starting)
    node = next((k.removeprefix("branch:to:") for k in state if k.startswith("branch:to:")), None)
    points = _points(run)
    done = {p.id for p in points}
    pending = [c["id"] for c in state.get("pending", [])] if node == "evaluate" else []
    evaluating = [i for i in pending if i not in done]
    inbox = rundir.read_inbox()
    limits = c.limits(state.get("limits"))
    log = root / "search.log"
    return RunLive(
        **_summary(run, starting).model_dump(),
        settings=settings(c),
        failed=sum(h["status"] == "failed" for h in history),
        rejected=sum(h["status"] == "rejected" for h in history),
        recalled=sum(bool(h.get("recalled")) for h in history),
        hypervolume=[float(v) for v in state.get("hypervolume", [])],
        now=_now(status, node, evaluating, c.strategy, state, _outage(run.traces)),
        agents=agents,
        limits=chat.limits_text(run),
        directives=list(state.get("directives", [])),
        waiting=[m.get("text", m["kind"]) for m in inbox[state.get("inbox_read", 0) :]],
        evaluating=evaluating,
        points=points,
        axes=[
            Axis(key=key, label=COSTS[key].label, unit=unit, divisor=divisor, limit=limits.get(key))
            for key, (unit, divisor) in plot_axes().items()
            if points and all(key in p.costs for p in points)
        ],
        optimum=nats_optimum(c),
        stop_reason=state.get("stop_reason", ""),
        log_tail=log.read_text(errors="replace").splitlines()[-LOG_LINES:] if log.is_file() else [],
        notes=run.notes,
    )


def _agent_order(agent: str) -> tuple[int, str]:
    return (AGENTS.index(agent) if agent in AGENTS else len(AGENTS), agent)


def _now(
    status: RunStatus,
    node: str | None,
    evaluating: list[str],
    strategy: str,
    state: dict[str, Any],
    waiting: dict[str, Any] | None = None,
) -> str:
    if status == "paused":
        return "paused before the next design step (resume to go on)"
    if status != "running":
        return {"starting": "starting the search process", "finished": f"finished: {state.get('stop_reason', '')}"}.get(
            status, "no search process (continue to resume it)"
        )
    if waiting is not None:
        return OutageEvent.from_record(waiting).text()
    if node == "evaluate" and evaluating:
        return f"evaluating {len(evaluating)}: {', '.join(evaluating)}"
    return activity(node, strategy) if node else "working"


def _outage(traces: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The trace of a server outage the run is waiting out now: the last trace, when it is a wait."""
    last = traces[-1] if traces else {}
    return last if last.get("agent") == "outage" and last.get("state") == "waiting" else None


def _points(run: Run) -> list[Point]:
    """Evaluated candidates: the checkpoint's, then evaluations.jsonl's not yet in it (the batch in flight)."""
    front = set(run.front)
    points = [
        Point(
            id=c["id"],
            accuracy=c["metrics"]["accuracy"],
            costs={k: float(v) for k, v in c.get("cost", {}).items()},
            front=c["id"] in front,
            iteration=c.get("iteration"),
            recalled=c.get("recalled", ""),
        )
        for c in run.evaluated
    ]
    known = {p.id for p in points}
    for candidate_id, record in run.evaluations.items():
        if candidate_id not in known and record.get("status") == "ok" and "accuracy" in record.get("metrics", {}):
            cost = {k: float(v) for k, v in record.get("cost", {}).items()}
            points.append(
                Point(id=candidate_id, accuracy=record["metrics"]["accuracy"], costs=cost, front=False, iteration=None)
            )
    return points


def traces(
    root: Path, iteration: int | None, agents: list[str], errors_only: bool, offset: int, limit: int
) -> TracePage:
    records = RunDir(root).read_traces()
    started = float(records[0].get("time", 0.0)) if records else 0.0
    position = {id(r): i for i, r in enumerate(records)}
    chosen = select(records, iteration, agents, errors_only)
    steps = [
        TraceStep(
            index=position[id(r)],
            iteration=int(r.get("iteration", 0)),
            seconds=round(float(r.get("time", started)) - started, 1),
            **trace_step(r),
        )
        for r in chosen[offset : offset + limit]
    ]
    return TracePage(
        total=len(chosen),
        iterations=sorted({int(r.get("iteration", 0)) for r in records}),
        agents=sorted({r.get("agent", "?") for r in records}, key=_agent_order),
        steps=steps,
    )


def candidate(root: Path, candidate_id: str) -> CandidateDetail | None:
    """A candidate's page: spec, profile, curves, explanations, firmware and its files; None if unknown."""
    run = load_run(root)
    record = run.evaluations.get(candidate_id)
    c = run.candidates.get(candidate_id)
    if c is None and record is None:
        return None
    c = c or {"id": candidate_id, "status": "evaluated" if record["status"] == "ok" else "failed", "summary": ""}
    spec = c.get("spec") or (record or {}).get("spec", {})
    cost = c.get("cost") or (record or {}).get("cost", {})
    metrics = {k: float(v) for k, v in (c.get("metrics") or (record or {}).get("metrics", {})).items()}
    candidates_dir = RunDir(root).candidates
    dirs = sorted(d for d in candidates_dir.glob(f"{candidate_id}*") if d.is_dir())
    explanation, images, curves = [], [], {}
    for d in dirs:
        cached = d / "explanation.json"
        if cached.is_file():
            from tinyarch.tools.explain import ModelExplanation

            explanation.append(f"{d.name}: " + ModelExplanation.model_validate_json(cached.read_text()).summary())
        images += [f"{d.name}/{p.name}" for p in sorted(d.glob("*.png"))]
        metrics_file = d / "metrics.json"
        if metrics_file.is_file():
            curves[d.name] = json.loads(metrics_file.read_text()).get("history", [])
    return CandidateDetail(
        id=candidate_id,
        status=c.get("status", ""),
        summary=c.get("summary", ""),
        iteration=c.get("iteration"),
        source=c.get("source", ""),
        reason=c.get("reason", "") or (record or {}).get("reason", ""),
        front=candidate_id in run.front,
        spec=spec,
        metrics=metrics,
        costs=[(COSTS[k].label, COSTS[k].format(v)) for k, v in cost.items() if k in COSTS],
        layers=_layers(run, spec),
        curves=curves,
        explanation="\n\n".join(explanation),
        images=images,
        firmware=[row for row in firmware(run) if row["id"].startswith(candidate_id)],
        files=[
            FileEntry(path=str(p.relative_to(candidates_dir)), bytes=p.stat().st_size)
            for d in dirs
            for p in sorted(d.rglob("*"))
            if p.is_file() and p.name not in DOWNLOAD_SKIP and not p.is_symlink()
        ],
    )


def _layers(run: Run, spec: dict[str, Any]) -> list[Layer]:
    """The profiler's per-layer table, for spaces whose specs it profiles (not NATS cells)."""
    from tinyarch.core.spaces import load_space

    space = load_space(run.config.space)
    if space.kind != "hierarchical" or not spec:
        return []
    from tinyarch.tools.profile import profile

    return [
        Layer(
            name=row.name,
            kind=row.kind,
            out_shape=row.out_shape,
            macs=row.macs,
            params=row.params,
            live_bytes=row.live_bytes,
            latency_ms=round(row.latency_ms, 3),
        )
        for row in profile(space.parse(spec)).layers
    ]
