"""Device budgets and the human units they are written in.

Sizes use binary units as microcontroller datasheets do: 1 KB = 1024 bytes, 1 MB = 1024 KB.
Operation counts use decimal ones: 1 M MACs = 10^6.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict

_BYTE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2, "mib": 1024**2}
_COUNT_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}
_NUMBER = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*$")


def _parse(text: str | int | float, units: dict[str, int], what: str) -> int:
    if isinstance(text, int | float):
        return int(text)
    match = _NUMBER.match(text)
    unit = match.group(2).lower() if match else ""
    if not match or unit not in units:
        raise ValueError(f"cannot read {text!r} as {what}; write e.g. {'320KB' if what == 'bytes' else '100M'}")
    return round(float(match.group(1)) * units[unit])


def parse_bytes(text: str | int | float) -> int:
    """'320KB' -> 327680, '1MB' -> 1048576, '2048' -> 2048."""
    return _parse(text, _BYTE_UNITS, "bytes")


def parse_count(text: str | int | float) -> int:
    """'100M' -> 100_000_000, '1.5G', '500k'."""
    return _parse(text, _COUNT_UNITS, "a count")


def format_bytes(n: float) -> str:
    return f"{n / 1024**2:.2f} MB" if abs(n) >= 1024**2 else f"{n / 1024:.1f} KB"


def format_count(n: float) -> str:
    return f"{n / 1e6:.2f} M" if abs(n) >= 1e5 else f"{n / 1e3:.1f} k"


def _from_text(parse: Callable[[str], int]) -> BeforeValidator:
    return BeforeValidator(lambda v: parse(v) if isinstance(v, str) else v)


Bytes = Annotated[int | None, _from_text(parse_bytes)]
"""A byte count that may be written as text such as '320KB'."""
Count = Annotated[int | None, _from_text(parse_count)]
"""A count that may be written as text such as '100M'."""


class Budget(BaseModel):
    """Limits a deployable spec must meet; None means unconstrained."""

    model_config = ConfigDict(extra="forbid")

    sram: Bytes = None
    flash: Bytes = None
    macs: Count = None


@dataclass(frozen=True)
class BudgetBreach:
    """A limit a spec breaks, and by how much."""

    metric: str
    value: int
    limit: int

    @property
    def excess(self) -> int:
        return self.value - self.limit

    def __str__(self) -> str:
        fmt = format_count if self.metric == "macs" else format_bytes
        label = {"sram": "peak SRAM", "flash": "flash", "macs": "MACs"}[self.metric]
        pct = 100 * self.excess / self.limit
        return f"{label} {fmt(self.value)} exceeds the budget of {fmt(self.limit)} by {fmt(self.excess)} ({pct:.1f} %)"


COST_BUDGETS = {"peak_sram": "sram", "flash": "flash", "macs": "macs"}
"""Cost key (as `SearchSpace.cost` and the profiler name it) -> budget name (as `BudgetBreach` names it)."""


def breaches(cost: Mapping[str, float], limits: Mapping[str, float | None]) -> list[BudgetBreach]:
    """The limits (keyed by cost, in their order) that `cost` breaks, each with its excess: the one budget check."""
    return [
        BudgetBreach(COST_BUDGETS[k], int(cost[k]), int(limit))
        for k, limit in limits.items()
        if limit is not None and k in cost and cost[k] > limit
    ]
