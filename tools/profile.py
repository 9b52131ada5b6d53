"""Analytic profiler: per-layer MACs, parameters, int8 flash, live SRAM and latency, in milliseconds.

Everything is derived from the spec's operator graph (`opgraph.lower`) and its memory plan
(`memory_plan.plan_memory`), the same two that the firmware generator uses. The latency model
is fitted to per-operator instruction counts of our own kernels on QEMU's Cortex-M7
(`benchmarks/firmware.py --calibrate` writes `latency_m7.json`), at one instruction per cycle;
without that file it is a labelled guess. `Profile.latency_calibrated` says which one it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources

import numpy as np
from pydantic import BaseModel

from tinyarch.core.budget import COSTS, Budget, BudgetBreach, breaches
from tinyarch.core.spaces import SearchSpace
from tinyarch.core.spec import ArchSpec, SpecBase
from tinyarch.tools.memory_plan import MemoryPlan, plan_memory
from tinyarch.tools.opgraph import Op, OpGraph, lower

CALIBRATION_FILE = resources.files("tinyarch.tools") / "latency_m7.json"  # package data

TERMS: dict[str, tuple[str, ...]] = {
    "conv": ("macs", "outputs", "pixels", "op"),
    "pointwise": ("macs", "outputs", "weights", "op"),
    "depthwise": ("macs", "outputs", "channel_rows", "op"),
    "fully_connected": ("macs", "outputs", "op"),
    "add": ("outputs", "op"),
    "mul": ("outputs", "op"),
    "mean": ("inputs", "outputs", "op"),
}
"""The features that a kind's instruction count is fitted on (see `op_features`)."""


def op_key(op: Op) -> str:
    """An operator's class in the latency model: the stem; pointwise on a 1x1 map (a matrix-vector
    product: squeeze-excite, heads on a 1x1 map); depthwise by kernel size and stride; else the kind."""
    if op.name == "stem":
        return "stem"
    if op.kind == "pointwise" and op.out_shape[:2] == (1, 1):
        return "pointwise_1px"
    if op.kind == "depthwise":
        return f"depthwise_k{op.kernel}s{op.stride}"
    return op.kind


def op_features(op: Op) -> dict[str, float]:
    """What an operator's instruction count grows with: MACs, output and (first) input elements,
    weights (setup passes over them), output pixels, output rows x channels (per-row set-up of a
    depthwise kernel), and a constant per call."""
    hi, wi, ci = op.in_shape
    ho, wo, co = op.out_shape
    return {
        "macs": op.macs,
        "outputs": ho * wo * co,
        "inputs": hi * wi * ci,
        "weights": op.macs // (ho * wo),
        "pixels": ho * wo,
        "channel_rows": ho * co,
        "op": 1.0,
    }


CLOCK_HZ = 480e6
"""The STM32H743's core clock: latency figures assume one instruction per cycle at this rate."""


class LatencyModel(BaseModel):
    """instructions(op) = sum of coefficients[key][feature] * op_features(op)[feature], with key
    `op_key(op)` where the model has it, else the op's kind; latency = instructions / clock_hz,
    i.e. one instruction per cycle."""

    clock_hz: float = CLOCK_HZ
    coefficients: dict[str, dict[str, float]] = {
        "conv": {"macs": 2.0, "op": 2000.0},
        "pointwise": {"macs": 1.6, "op": 2000.0},
        "depthwise": {"macs": 3.5, "op": 2000.0},
        "fully_connected": {"macs": 1.5, "op": 2000.0},
        "add": {"outputs": 4.0, "op": 2000.0},
        "mul": {"outputs": 3.0, "op": 2000.0},
        "mean": {"inputs": 1.0, "op": 2000.0},
    }
    calibrated: bool = False
    source: str = "uncalibrated: guessed from MCUNet/TinyEngine's published STM32H743 latencies"

    def cycles(self, op: Op) -> float:
        key = op_key(op)
        terms = self.coefficients.get(key if key in self.coefficients else op.kind, {})
        features = op_features(op)
        return sum(c * features[name] for name, c in terms.items())

    @classmethod
    def fit(cls, samples: list[tuple[Op, int]], source: str, totals: list[int] | None = None) -> LatencyModel:
        """Least squares with non-negative coefficients on measured (op, instructions), over the
        kind's TERMS, once per op key, and once per kind over all its operators where no key
        bears the kind's name (the fallback for keys never measured, e.g. depthwise).

        Each residual is divided by sqrt(instructions x totals[i]), totals[i] being the whole
        inference of the sample's model (by the instructions alone without totals): halfway
        between each operator's and each model's relative error."""
        from scipy.optimize import nnls

        totals = totals or [n for _, n in samples]
        keys = [op_key(op) for op, _ in samples]
        named = set(keys)
        groups: dict[str, list[int]] = {}
        for i, ((op, _), key) in enumerate(zip(samples, keys, strict=True)):
            groups.setdefault(key, []).append(i)
            if op.kind not in named:  # a kind without a key of its own name: fit all its operators too
                groups.setdefault(op.kind, []).append(i)
        coefficients: dict[str, dict[str, float]] = {}
        for key, members in sorted(groups.items()):
            terms = TERMS.get(samples[members[0]][0].kind, ("macs", "outputs", "op"))
            a = np.array([[op_features(samples[i][0])[t] for t in terms] for i in members], dtype=float)
            b = np.array([samples[i][1] for i in members], dtype=float)
            w = 1.0 / np.sqrt(np.maximum(b, 1.0) * np.array([max(totals[i], 1) for i in members], dtype=float))
            a, b = a * w[:, None], b * w
            scale = np.maximum(np.abs(a).max(axis=0), 1e-30)  # condition the columns; undo on the way out
            x, _ = nnls(a / scale, b)
            coefficients[key] = {t: float(f"{v:.6g}") for t, v in zip(terms, x / scale, strict=True) if v > 0}
        return cls(coefficients=coefficients, calibrated=True, source=source)

    @classmethod
    def default(cls) -> LatencyModel:
        """The calibration in `latency_m7.json` when one was made (benchmarks/firmware.py --calibrate)."""
        if CALIBRATION_FILE.is_file():
            return cls.model_validate_json(CALIBRATION_FILE.read_text())
        return cls()


DEFAULT_LATENCY = LatencyModel.default()


@dataclass(slots=True)
class LayerRow:
    name: str
    kind: str
    out_shape: tuple[int, int, int]
    macs: int
    params: int
    flash: int
    live_bytes: int
    latency_ms: float
    inplace: bool


@dataclass(slots=True)
class Profile:
    spec_id: str
    layers: list[LayerRow]
    macs: int
    params: int
    flash: int
    peak_sram: int
    peak_live: int
    latency_ms: float
    latency_calibrated: bool
    graph: OpGraph = field(repr=False)
    plan: MemoryPlan = field(repr=False)

    def totals(self) -> dict[str, int | float | bool | str]:
        return {
            "id": self.spec_id,
            "macs": self.macs,
            "params": self.params,
            "flash": self.flash,
            "peak_sram": self.peak_sram,
            "peak_live": self.peak_live,
            "latency_ms": round(self.latency_ms, 3),
            "latency_calibrated": self.latency_calibrated,
        }


def profile(spec: ArchSpec, latency: LatencyModel | None = None) -> Profile:
    """Profile `spec`; `peak_sram` is the planned arena, `peak_live` its lower bound."""
    latency = latency or DEFAULT_LATENCY
    graph = lower(spec)
    plan = plan_memory(graph)
    ms_per_cycle = 1e3 / latency.clock_hz
    rows = [
        LayerRow(
            op.name,
            op.kind,
            op.out_shape,
            op.macs,
            op.params,
            op.flash,
            plan.live_bytes[i],
            latency.cycles(op) * ms_per_cycle,
            i in plan.inplace_ops,
        )
        for i, op in enumerate(graph.ops)
    ]
    return Profile(
        spec_id=spec.id,
        layers=rows,
        macs=sum(r.macs for r in rows),
        params=sum(r.params for r in rows),
        flash=sum(r.flash for r in rows),
        peak_sram=plan.arena,
        peak_live=plan.peak_live,
        latency_ms=sum(r.latency_ms for r in rows),
        latency_calibrated=latency.calibrated,
        graph=graph,
        plan=plan,
    )


def check_budget(prof: Profile, budget: Budget) -> list[BudgetBreach]:
    """Every limit of `budget` that `prof` breaks; empty when it fits."""
    measured = {"peak_sram": prof.peak_sram, "flash": prof.flash, "macs": prof.macs}
    return breaches(measured, {"peak_sram": budget.sram, "flash": budget.flash, "macs": budget.macs})


def candidate_cost(space: SearchSpace, spec: SpecBase) -> dict[str, int | float]:
    """A candidate's analytic costs before any training: the profiler's totals for a network spec,
    the space's closed form for anything it does not lower (NATS cells)."""
    if isinstance(spec, ArchSpec):
        totals = profile(spec).totals()
        return {k: v for k, v in totals.items() if k in COSTS and isinstance(v, int | float)}
    return space.cost(spec)
