"""Specs profiled per second by the analytic profiler, in 1 and 2 processes.

Run: .venv/bin/python benchmarks/profile_speed.py [--specs 4000]
Specs are drawn uniformly from `mcu` with fixed seeds; drawing them is not timed.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import time

from rich.console import Console
from rich.table import Table

from tinyarch.core.spaces import load_space
from tinyarch.tools.profile import profile


def _timed_profiles(seed: int, count: int, barrier) -> tuple[float, float, int]:
    space = load_space("mcu")
    rng = random.Random(seed)
    specs = [space.sample(rng, 100) for _ in range(count)]
    ops = 0
    barrier.wait()
    start = time.perf_counter()
    for spec in specs:
        ops += len(profile(spec).layers)
    return start, time.perf_counter(), ops


def measure(processes: int, total: int) -> tuple[float, float]:
    """(specs per second, mean operators per spec) with `processes` workers sharing `total` specs."""
    per_worker = total // processes
    with mp.get_context("fork").Pool(processes) as pool:
        barrier = mp.get_context("fork").Manager().Barrier(processes)
        results = pool.starmap(_timed_profiles, [(seed, per_worker, barrier) for seed in range(processes)])
    start = min(r[0] for r in results)
    end = max(r[1] for r in results)
    done = per_worker * processes
    return done / (end - start), sum(r[2] for r in results) / done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--specs", type=int, default=4000)
    args = parser.parse_args()
    table = Table(title=f"analytic profiler speed, {args.specs} random mcu specs, {os.cpu_count()} cores")
    for col in ("processes", "specs/s", "µs/spec", "ops/spec"):
        table.add_column(col, justify="right")
    for processes in (1, 2):
        rate, ops = measure(processes, args.specs)
        table.add_row(str(processes), f"{rate:,.0f}", f"{1e6 / rate * processes:.0f}", f"{ops:.0f}")
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
