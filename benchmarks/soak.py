"""Soak: a long `nats-tss` search, measured against evaluations, as an overnight run would go.

Run (the README's table):

    .venv/bin/python benchmarks/soak.py --evals 5000 --llm-evals 320 --markdown

Each strategy runs once in this process with a fresh memory of its own (memory on, so Chroma's growth
counts too). At each milestone of evaluations the table gives the mean wall time per iteration since
the previous milestone, this process's resident memory, and the size of the run directory and of its
checkpoint database (with its WAL). Then the same search is started in a child process, killed with
SIGKILL halfway through its evaluations, and resumed: the table's last column is the time from the
resume command to its first new evaluation. The `llm` run uses the embedded model with the cheapest
settings (batch 16, explanations off); it costs about 20 s a design step on 2 cores, so it gets
`--llm-evals`.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tinyarch.agents.runner import run_search
from tinyarch.core.config import RunConfig

MILESTONES = (100, 500, 1000, 2000, 3000, 4000, 5000, 10000)


@dataclass
class Sample:
    evaluations: int
    seconds_per_iteration: float
    rss_mb: float
    rundir_mb: float
    checkpoints_mb: float


def rss_mb() -> float:
    """This process's resident set, from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


def config(strategy: str, evals: int, root: Path, name: str) -> RunConfig:
    return RunConfig(
        name=name,
        strategy=strategy,
        budget_evals=evals,
        batch=16,
        use_explanations=False,
        memory_path=root / f"memory-{name}",
    )


def soak(strategy: str, evals: int, root: Path) -> list[Sample]:
    """Run one search to `evals` evaluations, sampling at each milestone."""
    run = config(strategy, evals, root, strategy)
    rundir = root / "runs" / strategy
    marks = [m for m in MILESTONES if m < evals] + [evals]
    samples: list[Sample] = []
    spent, iterations, since = 0, 0, time.perf_counter()

    def on_update(node: str, update: dict[str, Any]) -> None:
        nonlocal spent, iterations, since
        if node == "evaluate":
            spent += sum(c["status"] != "rejected" and not c["recalled"] for c in update.get("history", []))
        if node != "remember":
            return
        iterations += 1
        if marks and spent >= marks[0]:
            marks.pop(0)
            now = time.perf_counter()
            checkpoints = sum(size_mb(p) for p in rundir.glob("checkpoints.sqlite*"))
            per_iteration = (now - since) / iterations
            samples.append(Sample(spent, per_iteration, rss_mb(), size_mb(rundir), checkpoints))
            iterations, since = 0, now

    run_search(run, root / "runs", on_update=on_update)
    return samples


def resume_seconds(strategy: str, evals: int, root: Path) -> float:
    """Kill -9 a run of the same search halfway, then time its resume to the first new evaluation."""
    name = f"{strategy}-killed"
    runs = root / "runs"
    run = config(strategy, evals, root, name)
    command = [sys.executable, "-m", "tinyarch.interfaces.cli", "search", "--runs-dir", str(runs)]
    flags = ["--name", name, "--strategy", strategy, "--budget-evals", str(evals), "--batch", "16"]
    flags += ["--no-use-explanations", "--memory-path", str(run.memory_path)]
    evaluations = runs / name / "evaluations.jsonl"

    def count() -> int:
        return len(evaluations.read_text().splitlines()) if evaluations.is_file() else 0

    victim = subprocess.Popen([*command, *flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while count() < evals // 2 and victim.poll() is None:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    before, started = count(), time.perf_counter()
    resumed = subprocess.Popen([*command, "--resume", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while count() == before and resumed.poll() is None:
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    resumed.kill()
    resumed.wait()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evals", type=int, default=5000, help="evaluations of the classic (random) run (0: skip it)")
    parser.add_argument("--llm-evals", type=int, default=320, help="evaluations of the llm run (0: skip it)")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables (the README's)")
    args = parser.parse_args()
    plan = [(strategy, n) for strategy, n in (("random", args.evals), ("llm", args.llm_evals)) if n]
    rows = []
    with tempfile.TemporaryDirectory(prefix="soak-") as folder:
        root = Path(folder)
        for strategy, evals in plan:
            started = time.perf_counter()
            samples = soak(strategy, evals, root)
            wall = time.perf_counter() - started
            resume = resume_seconds(strategy, evals, root)
            rows.append((strategy, samples, wall, resume))
    header = ["strategy", "evaluations", "s / iteration", "RSS MB", "run dir MB", "checkpoints MB", "resume s"]
    lines = []
    for strategy, samples, wall, resume in rows:
        for i, s in enumerate(samples):
            last = i == len(samples) - 1
            lines.append(
                [
                    strategy if i == 0 else "",
                    str(s.evaluations),
                    f"{s.seconds_per_iteration:.3f}",
                    f"{s.rss_mb:.0f}",
                    f"{s.rundir_mb:.2f}",
                    f"{s.checkpoints_mb:.2f}",
                    f"{resume:.1f} (whole run {wall:.0f} s)" if last else "",
                ]
            )
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for line in lines:
            print("| " + " | ".join(line) + " |")
        return
    table = Table(*header, title="soak: nats-tss, batch 16")
    for line in lines:
        table.add_row(*line)
    Console().print(table)


if __name__ == "__main__":
    main()
