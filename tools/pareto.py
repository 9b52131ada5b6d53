"""Pareto analysis with pymoo: non-dominated sorting and hypervolume over accuracy and costs.

Accuracy (%) is maximised; every cost (MACs, peak SRAM, flash, latency, params) is minimised.
The budget acts twice: points over a limit are infeasible (never on the front, no volume), and
each limit is the reference point of its axis. Axes are normalised to [0, 1] (accuracy as error
/ 100, a cost as value / reference), so the hypervolume is a fraction of the budget box. A cost
without a limit takes 1.1 times its largest observed value as reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

COSTS = ("macs", "peak_sram", "flash", "latency_ms", "params")


@dataclass
class ParetoResult:
    front: list[int]
    """Indices into the points, of the feasible non-dominated ones, best accuracy first."""
    infeasible: list[int]
    hypervolume: float
    objectives: list[str]


def analyse(points: list[dict[str, float]], limits: dict[str, float | None] | None = None) -> ParetoResult:
    """Front and hypervolume of `points` (each with `accuracy` and costs) under `limits` (cost -> limit)."""
    caps = {k: v for k, v in (limits or {}).items() if v is not None}
    if not points:
        return ParetoResult([], [], 0.0, [])
    costs = [c for c in COSTS if all(c in p for p in points)]
    infeasible = [i for i, p in enumerate(points) if any(p[c] > caps[c] for c in costs if c in caps)]
    excluded = set(infeasible)
    feasible = [i for i in range(len(points)) if i not in excluded]
    objectives = ["accuracy", *costs]
    if not feasible:
        return ParetoResult([], infeasible, 0.0, objectives)
    reference = {c: caps.get(c) or 1.1 * max(p[c] for p in points) or 1.0 for c in costs}
    matrix = np.array(
        [[(100.0 - points[i]["accuracy"]) / 100.0] + [points[i][c] / reference[c] for c in costs] for i in feasible]
    )
    ranks = NonDominatedSorting().do(matrix, only_non_dominated_front=True)
    front = sorted((feasible[j] for j in ranks), key=lambda i: -points[i]["accuracy"])
    # the dominated points add no volume: measuring the front alone gives the same value, far faster
    volume = float(HV(ref_point=np.ones(matrix.shape[1]))(np.clip(matrix[ranks], 0.0, 1.0)))
    return ParetoResult(front, infeasible, volume, objectives)
