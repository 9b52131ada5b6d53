"""The Ray executor on this machine: overhead per trial, throughput with 1 and 2 workers, and a projection.

Run: .venv/bin/python benchmarks/ray_scaling.py [--lookups 200 --trainings 8 --images 512]

Two batches, each in this process (the local executor) and on a fresh local Ray instance with 1
and 2 workers of 1 CPU: nats-tss table lookups (microseconds each), so the wall time is Ray's own
cost, and tiny proxy trainings (`mcu` candidates under 10 M MACs, one epoch on synthetic data, one
torch thread everywhere). Ray's overhead per trial is the lookups' (wall - local wall / workers) / n;
next to a training it is below this machine's noise, so those rows show the speed-up over the local
executor. Each Ray worker's first trial (process start, torch import, evaluator fetch) runs before
the clock starts and is reported on its own; the local executor gets one warm-up trial too.

Then a projection, not a measurement: a search iteration evaluates a batch of B <= 16 candidates and
waits for the slowest, so with N GPU workers an iteration takes ceil(B / N) * (trial + overhead) plus
the driver's own time per iteration (design, check, analyse, critique, memory), measured here with a
random-strategy search. It assumes equal trial times and one trial per GPU; `--trial-seconds` puts
in a GPU's trial time instead of this machine's.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import pickle
import random
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import ray
import torch

from tinyarch.agents.runner import run_search
from tinyarch.core.config import RunConfig
from tinyarch.core.spaces import load_space
from tinyarch.tools.data import load_data
from tinyarch.tools.evaluators import NatsTableEvaluator, ProxyTrainingEvaluator
from tinyarch.tools.executors import LocalExecutor, RayExecutor
from tinyarch.tools.profile import candidate_cost
from tinyarch.tools.train import RECIPES

GPU_COUNTS = (1, 2, 4, 8, 16, 32)


def timed(executor: Any, specs: list[Any]) -> float:
    """Wall seconds for the batch."""
    started = time.perf_counter()
    done = [e.evaluation for e in executor.run(specs) if e.evaluation is not None]
    assert all(ev.status == "ok" for ev in done), [ev.reason for ev in done if ev.status != "ok"]
    return time.perf_counter() - started


def on_ray(workers: int, evaluator: Any, specs: list[Any]) -> tuple[float, float]:
    """(wall, warm-up wall) on a fresh local Ray instance with `workers` CPUs."""
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        executor = RayExecutor(evaluator, cpus_per_trial=1)
        warm_up = timed(executor, specs[:workers])  # one first trial per worker
        wall = timed(executor, specs)
        executor.close()
    finally:
        ray.shutdown()
    return wall, warm_up


class Row(NamedTuple):
    trial: str
    workers: int  # 0: the local executor
    n: int
    wall: float
    warm_up: float = 0.0

    def overhead(self, local: Row) -> float:
        """Seconds per trial beyond the local executor's, as if the workers shared its work perfectly."""
        return (self.wall - local.wall / self.workers) / self.n


def measure(trial: str, evaluator: Any, specs: list[Any]) -> list[Row]:
    """The batch in this process (after one warm-up trial), then on Ray with 1 and 2 workers."""
    timed(LocalExecutor(evaluator), specs[:1])
    rows = [Row(trial, 0, len(specs), timed(LocalExecutor(evaluator), specs))]
    return rows + [Row(trial, workers, len(specs), *on_ray(workers, evaluator, specs)) for workers in (1, 2)]


def driver_seconds_per_iteration(out: Path, batch: int) -> float:
    """A random-strategy nats-tss search's wall time per iteration: the graph's cost without evaluations."""
    config = RunConfig(name="driver", strategy="random", budget_evals=batch * 5, batch=batch, memory_path=out / "mem")
    started = time.perf_counter()
    state = run_search(config, out / "runs")
    return (time.perf_counter() - started) / state["iteration"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lookups", type=int, default=200, help="table lookups for the overhead")
    parser.add_argument("--trainings", type=int, default=8, help="proxy trainings for the throughput")
    parser.add_argument("--images", type=int, default=512, help="training images per proxy training")
    parser.add_argument("--batch", type=int, default=16, help="candidates per iteration in the projection")
    parser.add_argument("--trial-seconds", type=float, help="trial time for the projection (default: measured)")
    args = parser.parse_args()

    load = os.getloadavg()[0]
    nats, mcu = load_space("nats-tss"), load_space("mcu")
    rng = random.Random(0)
    table = NatsTableEvaluator("cifar100")
    cells = [nats.sample(rng, 100) for _ in range(args.lookups)]
    specs = []
    while len(specs) < args.trainings:
        spec = mcu.sample(rng, 10, in_channels=3)
        if candidate_cost(mcu, spec)["macs"] <= 10e6:
            specs.append(spec)
    recipe = RECIPES["proxy"].model_copy(update={"epochs": 1, "batch_size": 64})
    data = load_data("synthetic").with_train_subset(args.images)
    trainer = ProxyTrainingEvaluator(data, recipe, recipe, progress=False)
    torch.set_num_threads(1)  # a Ray trial of 1 CPU trains on one thread; so does this process, for a fair comparison
    lookups, trainings = measure("lookup", table, cells), measure("proxy training", trainer, specs)

    megabytes = [len(pickle.dumps(e)) / 2**20 for e in (table, trainer)]
    warm_ups = ", ".join(f"{r.warm_up:.1f} s" for r in trainings[1:])
    print(
        f"Load average {load:.2f} before, {os.getloadavg()[0]:.2f} after ({os.cpu_count()} CPUs). Put into the "
        f"object store once: table {megabytes[0]:.1f} MB, trainer {megabytes[1]:.1f} MB. Proxy training: "
        f"{args.images} images, 1 epoch, batch 64. Ray workers' first trials, not timed below: {warm_ups} "
        "(1, 2 workers).\n"
    )
    print("| trial | executor | n | wall s | trials/min | Ray overhead ms/trial | speed-up over local |")
    print("|---|---|---|---|---|---|---|")
    for rows in (lookups, trainings):
        for r in rows:
            executor = f"Ray, {r.workers} worker{'s' * (r.workers > 1)}" if r.workers else "local"
            overhead = f"{r.overhead(rows[0]) * 1000:.1f}" if r.workers and rows is lookups else "-"
            rate, speed_up = f"{r.n / r.wall * 60:,.0f}", f"{rows[0].wall / r.wall:.3g}x"
            print(f"| {r.trial} | {executor} | {r.n} | {r.wall:.3g} | {rate} | {overhead} | {speed_up} |")

    overhead_s = lookups[1].overhead(lookups[0])  # one worker: what Ray adds to each trial
    trial = args.trial_seconds or trainings[0].wall / len(specs)
    with tempfile.TemporaryDirectory() as tmp:
        driver = driver_seconds_per_iteration(Path(tmp), args.batch)
    source = "given" if args.trial_seconds else "measured: a proxy training in this process, 1 thread"
    print(f"\nProjection (not measured): batch {args.batch}, trial {trial:.2f} s ({source}), Ray overhead")
    print(f"{overhead_s * 1000:.1f} ms/trial, driver {driver:.2f} s/iteration (measured, random strategy, no LLM).\n")
    print(f"| GPUs | rounds per batch of {args.batch} | s per iteration | trials/min | speed-up |")
    print("|---|---|---|---|---|")
    base = None
    for gpus in GPU_COUNTS:
        rounds = math.ceil(args.batch / gpus)
        iteration = rounds * (trial + overhead_s) + driver
        rate = args.batch / iteration * 60
        base = base or rate
        print(f"| {gpus} | {rounds} | {iteration:.2f} | {rate:,.1f} | {rate / base:.1f}x |")


if __name__ == "__main__":
    main()
