"""Search strategies on nats-tss CIFAR-100: best-found accuracy against evaluations, regret, cost.

Run: .venv/bin/python benchmarks/search_nats.py [--strategies llm nsga2 random --seeds 5 --evals 100]

Every strategy runs the same graph, checks and table evaluator, with a fresh memory per run so
no run sees another's results. The table's accuracies are NATS-Bench *test* accuracies: this
measures search efficiency on a fixed benchmark, not model selection. `--ablate explain` adds
the LLM strategy without the explanation summaries in its prompts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tinyarch.agents.runner import run_search
from tinyarch.config import RunConfig
from tinyarch.rundir import RunDir
from tinyarch.tools.evaluators import NatsTableEvaluator

CHECKPOINTS = (10, 25, 40, 50, 100)


def best_so_far(rundir: RunDir) -> list[float]:
    """Best accuracy after each evaluation, in the order the run evaluated them."""
    curve, best = [], 0.0
    for record in rundir.finished_evaluations().values():
        if record["status"] == "ok":
            best = max(best, record["metrics"]["accuracy"])
        curve.append(best)
    return curve


def run_one(
    out: Path, strategy: str, seed: int, evals: int, batch: int, explain: bool, llm: str, run: bool = True
) -> dict | None:
    name = f"{strategy}{'' if explain else '-noexplain'}-s{seed}"
    if not run and not (out / name / "done.json").is_file():
        return None
    rundir = RunDir(out / name)
    if not (rundir.root / "done.json").is_file():
        config = RunConfig(
            name=name,
            strategy=strategy,
            budget_evals=evals,
            batch=batch,
            seed=seed,
            llm=llm,
            memory_path=rundir.root / "memory",
            use_explanations=explain,
        )
        started = time.perf_counter()
        resume = name if rundir.checkpoints.is_file() else None
        run_search(None if resume else config, out, resume=resume)
        (rundir.root / "done.json").write_text(json.dumps({"seconds": time.perf_counter() - started}))
    seconds = json.loads((rundir.root / "done.json").read_text())["seconds"]
    llm_calls = [t for t in rundir.read_traces() if t["kind"] == "llm"]
    curve = best_so_far(rundir)
    return {
        "strategy": name.rsplit("-s", 1)[0],
        "seed": seed,
        "curve": curve,
        "seconds": seconds,
        "tokens": sum(t["prompt_tokens"] + t["completion_tokens"] for t in llm_calls),
        "evals": len(curve),
    }


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--strategies", nargs="+", default=["llm", "nsga2", "random"])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--evals", type=int, default=100)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--llm", default="llamacpp:qwen2.5-coder-0.5b")
    parser.add_argument("--ablate", choices=["explain"], default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/search-nats"))
    parser.add_argument("--table-only", action="store_true", help="tabulate the finished runs, start none")
    args = parser.parse_args()

    variants = [(s, True) for s in args.strategies]
    if args.ablate == "explain":  # add the LLM without explanation summaries in its prompts
        variants.append(("llm", False))
    runs = (
        run_one(args.out, s, seed, args.evals, args.batch, explain, args.llm, not args.table_only)
        for s, explain in variants
        for seed in range(args.seeds)
    )
    results = [r for r in runs if r is not None]
    (args.out / "results.json").write_text(json.dumps(results, indent=2))

    optimum = NatsTableEvaluator("cifar100").optimum
    table = Table(
        title=f"nats-tss CIFAR-100, {args.evals} evaluations: best accuracy found, median \\[min-max] over seeds"
    )
    at_columns = [f"@{c}" for c in CHECKPOINTS if c <= args.evals]
    for col in ("strategy", "seeds", *at_columns, "regret", "tokens/eval", "s/eval"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for strategy in dict.fromkeys(r["strategy"] for r in results):
        runs = [r for r in results if r["strategy"] == strategy]
        at = [summary([r["curve"][min(c, len(r["curve"])) - 1] for r in runs]) for c in CHECKPOINTS if c <= args.evals]
        regret = summary([optimum - r["curve"][-1] for r in runs])
        tokens = statistics.median(r["tokens"] / r["evals"] for r in runs)
        seconds = statistics.median(r["seconds"] / r["evals"] for r in runs)
        table.add_row(strategy, str(len(runs)), *at, regret, f"{tokens:,.0f}", f"{seconds:.2f}")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
