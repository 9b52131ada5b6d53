"""One self-contained HTML page per run: Pareto plots, hypervolume, leaderboard, explanations, firmware, traces.

Everything is inline (CSS, a little JS, images as data URIs) so the page can be archived or mailed and opens
without a network. Trace text includes LLM output, so it is untrusted: jinja escapes every value, and a
Content-Security-Policy that admits only the page's own script (by hash) keeps anything that slipped through inert.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from tinyarch.agents.state import origin_kind
from tinyarch.budget import format_bytes, format_count
from tinyarch.config import RunConfig
from tinyarch.rundir import RunDir
from tinyarch.trace_view import AGENTS, by_iteration, fold, is_error, llm_title, step_line

TEMPLATES = resources.files("tinyarch") / "templates"
COST_COLUMNS = {
    "macs": ("MACs", format_count),
    "params": ("params", lambda v: f"{int(v):,}"),
    "flash": ("flash", format_bytes),
    "peak_sram": ("peak SRAM", format_bytes),
    "latency_ms": ("latency", lambda v: f"{v:.1f} ms"),
}
PLOT_AXES = {"macs": ("MACs", "M", 1e6), "peak_sram": ("peak SRAM", "KB", 1024.0), "latency_ms": ("latency", "ms", 1.0)}
"""Costs plotted against accuracy: axis name, unit, and the divisor into that unit."""
AGENT_ORDER = {a: i for i, a in enumerate(AGENTS)}


@dataclass(frozen=True)
class Reference:
    """A published model to place beside a run's candidates; figures are the source's own, not re-measured here."""

    label: str
    dataset: str
    accuracy: float
    costs: dict[str, float]


REFERENCES = (
    Reference(
        "LMaNet-elite (El Zeinaty et al. 2025, paper's own figures)",
        "cifar100",
        74.5,
        {"macs": 86e6, "peak_sram": 165 * 1024},
    ),
    Reference(
        "MCUNet-in3 (320kB; model zoo, int8, TinyEngine)",
        "imagenet",
        61.8,
        {"macs": 81.8e6, "peak_sram": 293 * 1024, "latency_ms": 336.0},
    ),
    Reference(
        "MCUNet-in4 (512kB; model zoo, int8, TinyEngine)",
        "imagenet",
        68.0,
        {"macs": 125.9e6, "peak_sram": 456 * 1024, "latency_ms": 463.0},
    ),
)


@dataclass
class Run:
    """Everything a report reads from a run directory, read once."""

    root: Path
    config: RunConfig
    traces: list[dict[str, Any]]
    evaluations: dict[str, dict[str, Any]]
    state: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @cached_property
    def evaluated(self) -> list[dict[str, Any]]:
        """Evaluated candidates, most accurate first; from the checkpoint, or from evaluations.jsonl without one."""
        done = [c for c in self.state.get("history", []) if c["status"] == "evaluated"]
        if not self.state:
            done = [
                {"id": i, "metrics": r["metrics"], "cost": r.get("cost", {}), "spec": r.get("spec", {}), "summary": ""}
                for i, r in self.evaluations.items()
                if r["status"] == "ok"
            ]
        return sorted(done, key=lambda c: -c["metrics"]["accuracy"])

    @property
    def front(self) -> list[str]:
        analysed = [t for t in self.traces if t.get("agent") == "analyse"]
        return self.state.get("front") or (analysed[-1].get("front", []) if analysed else [])


def load_run(root: Path) -> Run:
    """The run in `root` (config.yaml must exist); the checkpoint is opened read-only, a search may be writing."""
    config = RunConfig.load(root / "config.yaml")
    rundir = RunDir(root)
    notes: list[str] = []
    state: dict[str, Any] = {}
    if rundir.checkpoints.is_file():
        try:
            state = read_state(rundir.checkpoints, config.name)
        except sqlite3.Error as e:
            notes.append(f"checkpoint unreadable ({e}); candidates come from evaluations.jsonl")
    return Run(root, config, rundir.read_traces(), rundir.finished_evaluations(), state, notes)


def read_state(path: Path, thread: str) -> dict[str, Any]:
    """The latest SearchState of `thread` in a LangGraph SQLite checkpoint, without building the graph."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    try:
        found = SqliteSaver(connection).get_tuple({"configurable": {"thread_id": thread}})
    finally:
        connection.close()
    return dict(found.checkpoint["channel_values"]) if found else {}


def write_report(root: Path, out: Path | None = None) -> Path:
    """Render the run in `root` to `out` (default root/report.html), replacing it atomically."""
    out = out or root / "report.html"
    html = render(load_run(root))
    partial = out.with_name(out.name + ".partial")
    partial.write_text(html, encoding="utf-8")
    os.replace(partial, out)
    return out


def render(run: Run) -> str:
    """The page; the script's hash goes into the Content-Security-Policy so no other script can run."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("tinyarch"), autoescape=True, undefined=jinja2.StrictUndefined)
    script = (TEMPLATES / "report.js").read_text()
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    costs = [k for k in COST_COLUMNS if any(k in c.get("cost", {}) for c in run.evaluated)]
    optimum = nats_optimum(run.config)
    return env.get_template("report.html.j2").render(
        name=run.config.name,
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        notes=run.notes,
        overview=overview(run, optimum),
        pareto=pareto_figures(run, optimum),
        references=[r.label for r in references(run.config)],
        progress=progress_figure(run, optimum),
        cost_columns=[(k, COST_COLUMNS[k][0]) for k in costs],
        leaderboard=leaderboard(run, costs),
        explanations=explanations(run),
        firmware=firmware(run),
        trace=trace_groups(run.traces),
        agents=sorted({t.get("agent", "?") for t in run.traces}, key=lambda a: (AGENT_ORDER.get(a, len(AGENTS)), a)),
        script=script,
        script_hash=digest,
    )


# ---------------------------------------------------------------------------------------------- sections


def settings(config: RunConfig) -> list[tuple[str, str]]:
    """What the run was asked to do (the report's and the web app's first rows): search, LLM, budget."""
    c = config
    limits = [f"{COST_COLUMNS[k][0]} ≤ {COST_COLUMNS[k][1](v)}" for k, v in c.limits().items() if v]
    rows = [("search", f"{c.strategy} on {c.space} / {c.dataset}, {c.evaluator} evaluator, batch {c.batch}")]
    if c.strategy == "llm":
        rows.append(("LLM", c.llm))
    return [*rows, ("budget", f"{c.budget_evals} evaluations" + "".join(f", {x}" for x in limits))]


def overview(run: Run, optimum: float | None) -> list[tuple[str, str]]:
    c, history = run.config, run.state.get("history", [])
    llm = [t for t in run.traces if t.get("kind") == "llm"]
    times = [float(t["time"]) for t in run.traces if "time" in t]
    started = run.state.get("started_at", min(times, default=0.0))
    best = run.evaluated[0] if run.evaluated else None
    rows = [
        *settings(c),
        ("stopped", run.state.get("stop_reason") or "(still running or killed)"),
        ("iterations", str(run.state.get("iteration", max((t.get("iteration", 0) for t in run.traces), default=0)))),
        (
            "candidates",
            f"{len(run.evaluated)} evaluated, {sum(h['status'] == 'failed' for h in history)} failed, "
            f"{sum(h['status'] == 'rejected' for h in history)} rejected before evaluation",
        ),
        ("best", f"{best['metrics']['accuracy']:.2f} % ({best['id']})" if best else "-"),
        ("came from", origins(run.evaluated)),
        *([("NATS table optimum", f"{optimum:.2f} % (the best cell of the benchmark)")] if optimum is not None else []),
        ("wall time", _duration(max(times) - started) if times else "-"),
    ]
    if c.strategy == "llm":
        tokens = sum(t.get("prompt_tokens", 0) + t.get("completion_tokens", 0) for t in llm)
        seconds = sum(t.get("latency_s", 0.0) for t in llm)
        rows.append(
            ("LLM calls", f"{len(llm)} ({sum(map(is_error, llm))} with errors), {seconds:.0f} s, {tokens:,} tokens")
        )
    return rows


def origins(done: list[dict[str, Any]]) -> str:
    """How many evaluated candidates each kind of origin gave, and the best of them: the LLM's share."""
    kinds: dict[str, list[float]] = {}
    for c in done:
        kinds.setdefault(origin_kind(c.get("origin", "")), []).append(c["metrics"]["accuracy"])
    ranked = sorted(kinds.items(), key=lambda item: -len(item[1]))
    return "; ".join(f"{kind}: {len(acc)} (best {max(acc):.2f} %)" for kind, acc in ranked) or "-"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def leaderboard(run: Run, costs: list[str]) -> list[dict[str, Any]]:
    front = set(run.front)
    return [
        {
            "rank": rank,
            "id": c["id"],
            "front": c["id"] in front,
            "accuracy": f"{c['metrics']['accuracy']:.2f}",
            "costs": [COST_COLUMNS[k][1](c["cost"][k]) if k in c.get("cost", {}) else "-" for k in costs],
            "iteration": c.get("iteration", "-"),
            "origin": c.get("origin", ""),
            "note": c.get("note", ""),
            "summary": c.get("summary", ""),
            "spec": json.dumps(c.get("spec", {}), indent=1),
        }
        for rank, c in enumerate(run.evaluated, 1)
    ]


def explanations(run: Run) -> dict[str, Any]:
    """The latest design-effects text (from the traces and/or `tinyarch explain`) and per-model explanations."""
    explained = [t for t in run.traces if t.get("agent") == "explain"]
    texts = []
    if explained:
        texts.append((f"agents' view after iteration {explained[-1].get('iteration')}", explained[-1]["summary"]))
    effects_file = run.root / "design_effects.json"
    if effects_file.is_file():
        from tinyarch.tools.explain import DesignEffects  # torch: only for runs that have explanations

        effects = DesignEffects.model_validate_json(effects_file.read_text())
        texts.append(("design_effects.json (tinyarch explain)", effects.summary()))
    model_dirs = sorted(
        d for d in run.root.glob("candidates/*") if (d / "explanation.json").is_file() or (d / "saliency.png").is_file()
    )
    return {"texts": texts, "models": [_model_entry(d) for d in model_dirs]}


def _model_entry(model_dir: Path) -> dict[str, Any]:
    cached, saliency = model_dir / "explanation.json", model_dir / "saliency.png"
    summary = ""
    if cached.is_file():
        from tinyarch.tools.explain import ModelExplanation

        summary = ModelExplanation.model_validate_json(cached.read_text()).summary()
    return {"id": model_dir.name, "summary": summary, "saliency": _file_uri(saliency) if saliency.is_file() else None}


def firmware(run: Run) -> list[dict[str, Any]]:
    """Finalized candidates' firmware figures: from the state's `final`, plus deploy.json files it does not cover.
    Table lookups (nats) finalize without a model, so they have none."""
    rows, seen = [], set()
    for c in run.state.get("final", []) if run.config.evaluator != "nats" else []:
        result = c.get("final", {})
        if result.get("status") != "ok":
            rows.append(_firmware_row(c["id"], None, {"reason": f"full training failed: {result.get('reason')}"}))
            continue
        fw = result.get("firmware") or {"reason": "not deployed (no deploy_board)"}
        if fw.get("status") == "failed":
            fw = {"reason": f"deployment failed: {fw.get('reason')}"}
        rows.append(_firmware_row(c["id"], result.get("metrics", {}).get("accuracy"), fw))
        seen.add((c["id"], fw.get("board")))
    for path in sorted(run.root.glob("candidates/*/firmware-*/deploy.json")):
        report = json.loads(path.read_text())
        if (report.get("spec_id"), report.get("board")) not in seen:
            rows.append(_firmware_row(report.get("spec_id", path.parent.parent.name), None, {"status": "ok", **report}))
    return rows


def _firmware_row(candidate: str, accuracy: float | None, fw: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": candidate,
        "accuracy": f"{accuracy:.2f} %" if accuracy is not None else "",
        "ok": fw.get("status") == "ok",
        "reason": fw.get("reason", ""),
    }
    if not row["ok"]:
        return row
    exact = fw.get("bit_exact_matches")
    instructions, latency = fw.get("instructions_per_inference"), fw.get("estimated_latency_ms")
    row["figures"] = [
        ("board / kernels", f"{fw.get('board')} / {fw.get('kernels')}"),
        ("flash (text + data)", format_bytes(fw["flash_text"]) if fw.get("flash_text") else "-"),
        ("weights and tables", format_bytes(fw["weight_bytes"])),
        ("arena (profiler peak SRAM)", f"{format_bytes(fw['arena'])} ({format_bytes(fw['profiler_peak_sram'])})"),
        ("TFLM arena: activations / all", f"{format_bytes(fw['tflm_activations'])} / {format_bytes(fw['tflm_arena'])}"),
        ("instructions per inference", f"{instructions:,}" if instructions else "-"),
        ("estimated latency at 480 MHz", f"{latency:.1f} ms" if latency else "-"),
        ("bit-exact vs TFLM", f"{exact}/{fw['bit_exact_images']} images" if exact is not None else "-"),
        ("val top-1 float / int8", f"{fw['float_val_acc']:.2f} / {fw['int8_val_acc']:.2f} % on {fw['val_images']}"),
    ]
    return row


def trace_groups(traces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per iteration, each step as the template shows it."""
    groups = []
    for iteration, records in by_iteration(traces):
        steps = [trace_step(r) for r in records]
        groups.append({"iteration": iteration, "steps": steps, "errors": sum(s["error"] for s in steps)})
    return groups


def trace_step(record: dict[str, Any]) -> dict[str, Any]:
    """One trace record for a page: a title line and, for LLM calls, the conversation (report and web app)."""
    step = {"agent": record.get("agent", "?"), "error": is_error(record), "llm": record.get("kind") == "llm"}
    if step["llm"]:
        return step | {
            "title": llm_title(record),
            "errors": [str(e) for e in record.get("errors") or []],
            "raw": str(record.get("raw", "")),
            "messages": [_message(m) for m in record.get("messages") or []],
        }
    detail = record.get("summary") if record.get("agent") == "explain" else record.get("proposals")
    return step | {"title": step_line(record), "detail": _detail(detail)}


def _message(message: dict[str, Any]) -> dict[str, Any]:
    content = str(message.get("content", ""))
    first, hidden = fold(content, 1)
    return {"role": message.get("role", "?"), "first": first, "lines": hidden + 1, "content": content}


def _detail(value: Any) -> str:
    """An explanation as it is, or proposals one JSON a line."""
    if isinstance(value, list):
        return "\n".join(json.dumps(v, default=str) for v in value)
    return value or ""


# ---------------------------------------------------------------------------------------------- figures


def nats_optimum(config: RunConfig) -> float | None:
    """The best accuracy in the NATS-Bench table for the run's dataset: the ceiling a table search can reach."""
    if config.evaluator != "nats":
        return None
    from tinyarch.tools.evaluators import EvaluatorError, NatsTableEvaluator

    try:
        return NatsTableEvaluator(config.dataset, config.nats_table).optimum
    except EvaluatorError:
        return None


def references(config: RunConfig) -> list[Reference]:
    """Published models on the run's dataset; NATS runs compare with the table's optimum instead."""
    return [r for r in REFERENCES if r.dataset == config.dataset and config.evaluator != "nats"]


def pareto_figures(run: Run, optimum: float | None) -> list[dict[str, str]]:
    """Accuracy against each plotted cost every candidate has; front, budget and reference points marked."""
    from matplotlib.figure import Figure

    done, front = run.evaluated, set(run.front)
    refs = references(run.config)
    figures = []
    for cost, (name, unit_name, unit) in PLOT_AXES.items():
        if not done or not all(cost in c.get("cost", {}) for c in done):
            continue
        fig = Figure(figsize=(5.2, 3.8), layout="constrained")
        ax = fig.subplots()
        points = sorted((c["cost"][cost] / unit, c["metrics"]["accuracy"], c["id"] in front) for c in done)
        others = [(x, y) for x, y, on_front in points if not on_front]
        members = [(x, y) for x, y, on_front in points if on_front]
        if others:
            ax.scatter(*zip(*others, strict=True), s=18, color="#9aa5b1", label="evaluated")
        if members:
            ax.scatter(*zip(*members, strict=True), s=36, color="#d9480f", zorder=3, label="Pareto front (all costs)")
        best, staircase = float("-inf"), []
        for x, y, _ in points:
            best = max(best, y)
            staircase.append((x, best))
        ax.step(*zip(*staircase, strict=True), where="post", color="#d9480f", lw=0.8, alpha=0.6)
        limit = run.config.limits().get(cost)
        if limit:
            ax.axvline(limit / unit, color="#c92a2a", ls="--", lw=1, label=f"budget {limit / unit:g} {unit_name}")
        if optimum is not None:
            ax.axhline(optimum, color="#2b8a3e", ls=":", lw=1.2, label=f"NATS table optimum {optimum:.2f} %")
        for ref in refs:
            if cost in ref.costs:
                ax.scatter([ref.costs[cost] / unit], [ref.accuracy], marker="*", s=150, zorder=4, label=ref.label)
        xs = [x for x, _, _ in points] + [r.costs[cost] / unit for r in refs if cost in r.costs]
        if min(xs) > 0 and max(xs) / min(xs) > 30:
            ax.set_xscale("log")
        ax.set(xlabel=f"{name} ({unit_name})", ylabel="accuracy (%)", title=f"accuracy against {name}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        figures.append({"title": name, "src": _png(fig)})
    return figures


def progress_figure(run: Run, optimum: float | None) -> str | None:
    """Hypervolume per iteration and the best accuracy after each evaluation."""
    from matplotlib.figure import Figure

    analysed = [t for t in run.traces if t.get("agent") == "analyse"]
    evaluated = [t for t in run.traces if t.get("agent") == "evaluate" and t.get("status") == "ok"]
    if not analysed:
        return None
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    hv_ax, best_ax = fig.subplots(1, 2)
    hv_ax.plot([t["iteration"] for t in analysed], [t["hypervolume"] for t in analysed], marker="o", ms=3)
    hv_ax.set(xlabel="iteration", ylabel="hypervolume (fraction of the budget box)", title="hypervolume")
    accuracies = [t["metrics"]["accuracy"] for t in evaluated]
    running = [max(accuracies[: i + 1]) for i in range(len(accuracies))]
    best_ax.plot(range(1, len(running) + 1), running, drawstyle="steps-post")
    if optimum is not None:
        best_ax.axhline(optimum, color="#2b8a3e", ls=":", lw=1.2, label=f"NATS table optimum {optimum:.2f} %")
        best_ax.legend(fontsize=7, loc="lower right")
    best_ax.set(xlabel="evaluations", ylabel="best accuracy (%)", title="best accuracy so far")
    for ax in (hv_ax, best_ax):
        ax.grid(alpha=0.3)
    return _png(fig)


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _file_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
