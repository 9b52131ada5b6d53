"""Search strategies on the NATS-Bench topology space (nats-tss): best accuracy found against evaluations.

Run (the README's table):

    .venv/bin/python benchmarks/search_nats.py --seeds 5 --evals 100 --llm-evals 50 --jobs 2 --markdown

Three tasks: CIFAR-100 and ImageNet16-120 unconstrained, and CIFAR-100 under a MACs budget that
excludes the unconstrained optimum (computed from the table: the largest multiple of 10 M below
half the optimum's MACs, 90 M; at 75 % the budget would exclude under 2 % of the cells and cost
the optimum 0.03 points), where only feasible candidates count and the accuracy-MACs hypervolume
at the end is reported too. Each variant (a strategy, and for the LLM its model) runs once per
seed with the same graph, checks and table evaluator, and a fresh memory in its own run directory
so no run sees another's results. Per task and variant the table gives the best accuracy
found after 10, 25, 50 and 100 evaluations (median and interquartile range over seeds), the regret
at the end of the variant's budget, the share of evaluated candidates that the pool's proposer gave
(the LLM's edits and designs, or the ablation's random ones) rather than its classic fallback, LLM
tokens and wall seconds per evaluation. LLM variants are slow on CPU, so they get `--llm-evals`.
`--markdown` prints the tables as Markdown, as the README shows them.

The table's accuracies are NATS-Bench *test* accuracies: this measures search efficiency on a fixed
benchmark, not model selection. Runs resume after a kill (a run is done when its `done.json`
exists); `--table-only` tabulates the finished ones without starting any.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tinyarch.agents.runner import run_search
from tinyarch.agents.state import origin_kind
from tinyarch.core.config import RunConfig
from tinyarch.core.rundir import RunDir
from tinyarch.core.spaces import SpecError, load_space
from tinyarch.core.spaces.nats import NatsCell
from tinyarch.tools.evaluators import NatsTableEvaluator
from tinyarch.tools.pareto import analyse

DEFAULT_LLM = "llamacpp:qwen2.5-coder-0.5b"
VARIANTS: dict[str, tuple[str, str]] = {
    "llm": ("llm", DEFAULT_LLM),
    "llm-1.5b": ("llm", "llamacpp:qwen2.5-coder-1.5b"),
    "llm-noexplain": ("llm", DEFAULT_LLM),
    "screened": ("screened", DEFAULT_LLM),
    "local": ("local", DEFAULT_LLM),
    "rea": ("rea", DEFAULT_LLM),
    "bo": ("bo", DEFAULT_LLM),
    "nsga2": ("nsga2", DEFAULT_LLM),
    "random": ("random", DEFAULT_LLM),
}
"""Variant name -> (RunConfig.strategy, RunConfig.llm); the llm string matters only to strategy llm, and
`-noexplain` leaves the explanation summaries out of the prompts."""
DEFAULT_VARIANTS = ("local", "rea", "bo", "nsga2", "random", "screened", "llm")
TASKS: dict[str, tuple[str, bool]] = {
    "cifar100": ("cifar100", False),
    "imagenet16-120": ("imagenet16-120", False),
    "cifar100-macs": ("cifar100", True),
}
"""Task name -> (dataset, under the MACs budget)."""
CHECKPOINTS = (10, 25, 50, 100)
PROPOSER_KINDS = ("llm edit", "llm design", "random edit", "random design")
"""Origins of the pool's proposer, as opposed to its classic fallback (`agents/designer.py`)."""
MACS_STEP = 10_000_000
MACS_FRACTION = 0.5
"""The MACs task's budget: the largest multiple of MACS_STEP below this fraction of the optimum's MACs."""


@dataclass(frozen=True)
class Task:
    name: str
    dataset: str
    optimum: float
    """Best accuracy in the whole table (under the budget where there is one): the regret's reference."""
    macs: int | None = None
    optimum_macs: int | None = None
    """MACs of the unconstrained optimum, which the budget excludes."""


@dataclass(frozen=True)
class RunSpec:
    """One (task, variant, seed) run; picklable, so a worker process can run it."""

    out: Path
    task: str
    dataset: str
    variant: str
    seed: int
    evals: int
    batch: int
    macs: int | None

    @property
    def name(self) -> str:
        return f"{self.variant}-s{self.seed}"

    @property
    def root(self) -> Path:
        return self.out / self.task / self.name

    def config(self) -> RunConfig:
        strategy, llm = VARIANTS[self.variant]
        return RunConfig(
            name=self.name,
            space="nats-tss",
            dataset=self.dataset,
            strategy=strategy,
            llm=llm,
            budget_evals=self.evals,
            batch=self.batch,
            seed=self.seed,
            macs=self.macs,
            memory_path=self.root / "memory",
            use_explanations=not self.variant.endswith("-noexplain"),
        )


def load_task(name: str) -> Task:
    """The task's optimum from the table; for the MACs task also its budget, below the unconstrained optimum's MACs."""
    dataset, constrained = TASKS[name]
    table = NatsTableEvaluator(dataset).accuracy
    if not constrained:
        return Task(name, dataset, max(table.values()))
    space, classes = load_space("nats-tss"), 100 if dataset == "cifar100" else 120
    macs = {arch: space.cost(NatsCell.from_arch_string(arch, classes))["macs"] for arch in table}
    best = max(table, key=table.__getitem__)
    budget = max(MACS_STEP, int(MACS_FRACTION * macs[best] - 1) // MACS_STEP * MACS_STEP)
    optimum = max(acc for arch, acc in table.items() if macs[arch] <= budget)
    return Task(name, dataset, optimum, budget, macs[best])


def run_one(spec: RunSpec) -> dict[str, Any]:
    """Run (or resume) one search unless it is done; never raises, so one crash does not stop the others."""
    done = spec.root / "done.json"
    try:
        config, rundir = spec.config(), RunDir(spec.root)
        if rundir.config.is_file() and RunConfig.load(rundir.config).model_dump() != config.model_dump():
            return {"run": str(spec.root), "error": "was started with other settings: remove it or pass another --out"}
        if done.is_file():
            return {"run": str(spec.root), "status": "done before"}
        resume = spec.name if rundir.checkpoints.is_file() else None
        started = time.perf_counter()
        run_search(None if resume else config, spec.out / spec.task, resume=resume)
        seconds = time.perf_counter() - started
        done.write_text(json.dumps({"seconds": seconds, "resumed": bool(resume)}))
        return {"run": str(spec.root), "status": "finished", "seconds": seconds}
    except Exception:
        return {"run": str(spec.root), "error": traceback.format_exc()}


def proposer_share(traces: list[dict[str, Any]]) -> float | None:
    """Fraction of evaluated candidates that the pool's proposer gave (the LLM's edits and designs, or the
    ablation's random ones), not its classic fallback: each evaluation takes the origin from the latest design
    step that proposed its id (a retried design step replaces its predecessor)."""
    space, origins, counted = load_space("nats-tss"), {}, {}
    for t in traces:
        if t["kind"] != "tool":
            continue
        if t["agent"] == "design":
            for p in t.get("proposals", []):
                try:
                    origins[space.parse(p["spec"]).id] = p.get("origin", "")
                except (SpecError, TypeError, ValueError):
                    continue
        elif t["agent"] == "evaluate" and t.get("status") in ("ok", "failed") and t.get("id") not in counted:
            counted[t["id"]] = origin_kind(origins.get(t["id"], "")) in PROPOSER_KINDS
    return sum(counted.values()) / len(counted) if counted else None


def collect(spec: RunSpec, task: Task) -> dict[str, Any] | None:
    """A finished run's best-so-far curve (under a budget, of feasible candidates) and costs; None if unfinished."""
    if not (spec.root / "done.json").is_file():
        return None
    rundir = RunDir(spec.root)
    curve, best, points = [], 0.0, []
    for record in rundir.finished_evaluations().values():
        if record["status"] == "ok":
            accuracy, macs = record["metrics"]["accuracy"], record.get("cost", {}).get("macs")
            if task.macs is None or (macs is not None and macs <= task.macs):
                best = max(best, accuracy)
            if macs is not None:
                points.append({"accuracy": accuracy, "macs": macs})
        curve.append(best)
    traces = rundir.read_traces()
    llm_calls = [t for t in traces if t["kind"] == "llm"]
    return {
        "task": spec.task,
        "variant": spec.variant,
        "seed": spec.seed,
        "budget": RunConfig.load(rundir.config).budget_evals,
        "evals": len(curve),
        "curve": curve,
        "regret": task.optimum - best,
        "hypervolume": analyse(points, {"macs": task.macs}).hypervolume if task.macs else None,
        **{k: v for k, v in json.loads((spec.root / "done.json").read_text()).items() if k in ("seconds", "resumed")},
        "tokens": sum((t.get("prompt_tokens") or 0) + (t.get("completion_tokens") or 0) for t in llm_calls),
        "proposer_share": proposer_share(traces),
    }


def spread(values: list[float], digits: int = 2) -> str:
    """Median and interquartile range, e.g. `72.10 (71.5-72.9)`."""
    median = statistics.median(values)
    if len(values) < 2:
        return f"{median:.{digits}f}"
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return f"{median:.{digits}f} ({q1:.{digits - 1}f}-{q3:.{digits - 1}f})"


def task_table(task: Task, results: list[dict[str, Any]], variants: list[str]) -> Table:
    """One task's table: a row per variant with any finished run."""
    rows = [(v, [r for r in results if r["task"] == task.name and r["variant"] == v]) for v in variants]
    rows = [(v, runs) for v, runs in rows if runs]
    top = max((r["budget"] for _, runs in rows for r in runs), default=max(CHECKPOINTS))
    checkpoints = [c for c in CHECKPOINTS if c <= top]
    if task.macs is None:
        title = f"nats-tss {task.dataset}, unconstrained (optimum {task.optimum:.2f})"
    else:
        title = (
            f"nats-tss {task.dataset}, MACs <= {task.macs / 1e6:.0f} M ({MACS_FRACTION:.0%} of the unconstrained "
            f"optimum's {task.optimum_macs / 1e6:.1f} M, rounded down to 10 M; best feasible {task.optimum:.2f})"
        )
    table = Table(title=f"{title}\nbest test accuracy found, median (interquartile range) over seeds")
    columns = ["variant", "runs", "evals", *(f"@{c}" for c in checkpoints), "regret"]
    columns += ["hypervolume"] if task.macs else []
    columns += ["proposer share", "tokens/eval", "s/eval"]
    for column in columns:
        table.add_column(column, justify="left" if column == "variant" else "right")
    for variant, runs in rows:
        budget = max(r["budget"] for r in runs)
        at = [
            spread([r["curve"][min(c, len(r["curve"])) - 1] if r["curve"] else 0.0 for r in runs])
            if c <= budget
            else "-"
            for c in checkpoints
        ]
        cells = [variant, str(len(runs)), str(budget), *at, f"{statistics.median(r['regret'] for r in runs):.2f}"]
        if task.macs:
            cells.append(spread([r["hypervolume"] for r in runs], 3))
        shares = [r["proposer_share"] for r in runs if r["proposer_share"] is not None]
        pooled = VARIANTS[variant][0] in ("llm", "screened")
        cells.append(f"{100 * statistics.median(shares):.0f} %" if pooled and shares else "-")
        evals = [max(r["evals"], 1) for r in runs]
        cells.append(f"{statistics.median(r['tokens'] / n for r, n in zip(runs, evals, strict=True)):,.0f}")
        seconds = statistics.median(r["seconds"] / n for r, n in zip(runs, evals, strict=True))
        cells.append(f"{seconds:.2f}{'*' if any(r.get('resumed') for r in runs) else ''}")
        table.add_row(*cells)
    if any(r.get("resumed") for _, runs in rows for r in runs):
        table.caption = "* some runs were resumed after a kill: their time counts only the last session"
    return table


def as_markdown(table: Table) -> str:
    """The table as Markdown: its title, a header row and a row per variant (for the README)."""
    rows = list(zip(*(list(column.cells) for column in table.columns), strict=True))
    lines = [f"**{str(table.title).splitlines()[0]}**", ""]
    lines.append("| " + " | ".join(str(column.header) for column in table.columns) + " |")
    lines.append("|" + "---|" * len(table.columns))
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines + ([f"\n{table.caption}"] if table.caption else []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", nargs="+", choices=list(VARIANTS), default=list(DEFAULT_VARIANTS))
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
    parser.add_argument("--evals", type=int, default=100, help="evaluations per run")
    parser.add_argument(
        "--llm-evals", type=int, default=50, help="evaluations per run of strategy llm (at most --evals)"
    )
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/search-nats"))
    parser.add_argument("--table-only", action="store_true", help="tabulate the finished runs, start none")
    parser.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    args = parser.parse_args()

    console = Console(width=180)
    tasks = {name: load_task(name) for name in args.tasks}
    specs = [
        RunSpec(
            args.out,
            task.name,
            task.dataset,
            variant,
            seed,
            min(args.llm_evals, args.evals) if VARIANTS[variant][0] == "llm" else args.evals,
            args.batch,
            task.macs,
        )
        for task in tasks.values()
        for variant in args.strategies
        for seed in range(args.seeds)
    ]
    failed = []
    if not args.table_only:
        todo = sorted(specs, key=lambda s: VARIANTS[s.variant][0] != "llm")  # the slow ones first
        if args.jobs > 1:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
                outcomes = (f.result() for f in as_completed([pool.submit(run_one, s) for s in todo]))
                failed = report(console, outcomes)
        else:
            failed = report(console, (run_one(s) for s in todo))

    results = [r for r in (collect(s, tasks[s.task]) for s in specs) if r is not None]
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"tasks": {name: asdict(task) for name, task in tasks.items()}, "runs": results}
    (args.out / "results.json").write_text(json.dumps(summary, indent=2))
    for task in tasks.values():
        table = task_table(task, results, args.strategies)
        console.print(as_markdown(table) + "\n" if args.markdown else table, highlight=False, markup=False)
    if failed:
        raise SystemExit(f"{len(failed)} run(s) failed: {', '.join(failed)}")


def report(console: Console, outcomes: Any) -> list[str]:
    """Print each run as it ends (a failure with its traceback); returns the failed runs."""
    failed = []
    for outcome in outcomes:
        if "error" in outcome:
            failed.append(outcome["run"])
            console.print(f"[red]{escape(outcome['run'])} failed[/red]\n{escape(outcome['error'])}", highlight=False)
        elif outcome["status"] == "finished":
            console.print(f"{outcome['run']}: {outcome['seconds']:.1f} s", highlight=False)
    return failed


if __name__ == "__main__":
    main()
