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
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from tinyarch.agents.state import origin_kind
from tinyarch.core.budget import COSTS, limit_texts
from tinyarch.core.config import RunConfig
from tinyarch.core.rundir import Run, RunDir, load_run
from tinyarch.interfaces.figures import firmware_figures
from tinyarch.interfaces.trace_view import AGENTS, by_iteration, fold, is_error, llm_title, step_line

TEMPLATES = resources.files("tinyarch.interfaces") / "templates"
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
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("tinyarch.interfaces"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    script = (TEMPLATES / "report.js").read_text()
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    costs = [k for k in COSTS if any(k in c.get("cost", {}) for c in run.evaluated)]
    optimum = nats_optimum(run.config)
    return env.get_template("report.html.j2").render(
        name=run.config.name,
        generated=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        notes=run.notes,
        overview=overview(run, optimum),
        pareto=pareto_figures(run, optimum),
        references=[r.label for r in references(run.config)],
        progress=progress_figure(run, optimum),
        cost_columns=[(k, COSTS[k].label) for k in costs],
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
    limits = limit_texts(c.limits(), sign="≤")
    rows = [("search", f"{c.strategy} on {c.space} / {c.dataset}, {c.evaluator} evaluator, batch {c.batch}")]
    if c.strategy == "llm":
        rows.append(("LLM", c.llm))
    return [*rows, ("budget", f"{c.budget_evals} evaluations" + "".join(f", {x}" for x in limits))]


def overview(run: Run, optimum: float | None) -> list[tuple[str, str]]:
    c, history = run.config, run.history
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
            f"{len(run.evaluated)} evaluated ({sum(bool(h.get('recalled')) for h in run.evaluated)} recalled from "
            f"memory), {sum(h['status'] == 'failed' for h in history)} failed, "
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
        kind = "recalled from memory" if c.get("recalled") else origin_kind(c.get("origin", ""))
        kinds.setdefault(kind, []).append(c["metrics"]["accuracy"])
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
            "costs": [COSTS[k].format(c["cost"][k]) if k in c.get("cost", {}) else "-" for k in costs],
            "iteration": c.get("iteration", "-"),
            "origin": c.get("origin", "") + (f"; recalled from run {c['recalled']}" if c.get("recalled") else ""),
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
        rows.append(_firmware_row(c["id"], result.get("metrics", {}).get("accuracy"), fw) | distillation(result))
        seen.add((c["id"], fw.get("board")))
    for path in sorted(run.root.glob("candidates/*/firmware-*/deploy.json")):
        report = json.loads(path.read_text())
        if (report.get("spec_id"), report.get("board")) not in seen:
            rows.append(_firmware_row(report.get("spec_id", path.parent.parent.name), None, {"status": "ok", **report}))
    return rows


def distillation(result: dict[str, Any]) -> dict[str, str]:
    """What distillation did for a finalized model: its accuracy with KD and the teacher's, or why KD was skipped."""
    m = result.get("metrics", {})
    if "teacher_accuracy" not in m:
        return {"distillation": ""}
    teacher = f"teacher {m['teacher_accuracy']:.2f} %"
    alone = f", without KD {m['control_accuracy']:.2f} %" if "control_accuracy" in m else ""
    if m.get("kd_used"):
        return {"distillation": f"with KD {m.get('kd_accuracy', m['accuracy']):.2f} % ({teacher}{alone})"}
    with_kd = f", with KD {m['kd_accuracy']:.2f} %" if "kd_accuracy" in m else ""
    return {"distillation": f"{result.get('reason') or 'KD skipped'} ({teacher}{with_kd})"}


def _firmware_row(candidate: str, accuracy: float | None, fw: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": candidate,
        "accuracy": f"{accuracy:.2f} %" if accuracy is not None else "",
        "ok": fw.get("status") == "ok",
        "reason": fw.get("reason", ""),
        "distillation": "",
    }
    if row["ok"]:
        row["figures"] = firmware_figures(fw)
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


def plot_axes() -> dict[str, tuple[str, float]]:
    """The costs plotted against accuracy (report and web app): cost key -> axis unit and the divisor into it."""
    return {k: c.axis for k, c in COSTS.items() if c.axis}


def pareto_figures(run: Run, optimum: float | None) -> list[dict[str, str]]:
    """Accuracy against each plotted cost every candidate has; front, budget and reference points marked."""
    from matplotlib.figure import Figure

    done, front = run.evaluated, set(run.front)
    refs = references(run.config)
    figures = []
    for cost, (unit_name, unit) in plot_axes().items():
        name = COSTS[cost].label
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


def write_run_report(rundir: RunDir, iteration: int) -> None:
    """runs/NAME/report.html at the end of a search; a failure is one trace line, never the loss of a finished run."""
    try:
        write_report(rundir.root)
    except Exception as e:
        rundir.trace("tool", iteration, "report", status="failed", reason=f"{type(e).__name__}: {e}"[:500])
