"""Analytic profiler: per-layer MACs, parameters, int8 flash, live SRAM and latency, in milliseconds.

Everything is derived from the spec's operator graph (`opgraph.lower`) and its memory plan
(`memory_plan.plan_memory`), the same two that the firmware generator uses. The latency model
is fitted to per-operator instruction counts of our own kernels on QEMU's Cortex-M7
(`benchmarks/firmware.py --calibrate` writes `latency_m7.json`), at one instruction per cycle;
without that file it is a labelled guess. `Profile.latency_calibrated` says which one it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from tinyarch.budget import Budget, BudgetBreach, breaches
from tinyarch.spec import ArchSpec
from tinyarch.tools.memory_plan import MemoryPlan, plan_memory
from tinyarch.tools.opgraph import Op, OpGraph, lower

KINDS = ("conv", "pointwise", "depthwise", "fully_connected", "add", "mul", "mean")
CALIBRATION_FILE = Path(__file__).with_name("latency_m7.json")


def op_features(op: Op) -> tuple[float, float, float]:
    """What an operator's instruction count grows with: MACs, elements written, and a constant."""
    ho, wo, co = op.out_shape
    return float(op.macs), float(ho * wo * co), 1.0


CLOCK_HZ = 480e6
"""The STM32H743's core clock: latency figures assume one instruction per cycle at this rate."""


class LatencyModel(BaseModel):
    """instructions(op) = per_mac[kind] * MACs + per_element[kind] * output elements + per_op[kind];
    latency = instructions / clock_hz, i.e. one instruction per cycle."""

    clock_hz: float = CLOCK_HZ
    per_mac: dict[str, float] = {"conv": 2.0, "pointwise": 1.6, "depthwise": 3.5, "fully_connected": 1.5}
    per_element: dict[str, float] = {"add": 4.0, "mul": 3.0, "mean": 1.0}
    per_op: dict[str, float] = dict.fromkeys(KINDS, 2000.0)
    calibrated: bool = False
    source: str = "uncalibrated: guessed from MCUNet/TinyEngine's published STM32H743 latencies"

    def cycles(self, op: Op) -> float:
        macs, elements, _ = op_features(op)
        return (
            self.per_mac.get(op.kind, 0.0) * macs
            + self.per_element.get(op.kind, 0.0) * elements
            + self.per_op.get(op.kind, 0.0)
        )

    @classmethod
    def fit(cls, samples: list[tuple[Op, int]], source: str) -> LatencyModel:
        """Least squares with non-negative coefficients, per operator kind, on measured (op, instructions)."""
        from scipy.optimize import nnls

        coefficients: dict[str, dict[str, float]] = {"per_mac": {}, "per_element": {}, "per_op": {}}
        for kind in KINDS:
            rows = [(op_features(op), n) for op, n in samples if op.kind == kind]
            if not rows:
                continue
            a = np.array([f for f, _ in rows])
            b = np.array([n for _, n in rows], dtype=float)
            scale = np.maximum(a.max(axis=0), 1.0)  # condition the columns; undo on the way out
            x, _ = nnls(a / scale, b)
            for name, value in zip(coefficients, x / scale, strict=True):
                coefficients[name][kind] = round(float(value), 4)
        return cls(**coefficients, calibrated=True, source=source)

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
