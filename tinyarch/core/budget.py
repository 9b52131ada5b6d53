"""The costs a candidate has, device budgets, and the human units they are written in.

`COSTS` is the one table of costs (key, label, unit, formatter, the budget that limits it): the
budget check, the directives, the prompts, the chat, the report, the web app and the CLI all read it.
Sizes use binary units as microcontroller datasheets do: 1 KB = 1024 bytes, 1 MB = 1024 KB.
Operation counts use decimal ones: 1 M MACs = 10^6.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

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


@dataclass(frozen=True)
class Cost:
    """One cost a candidate has: what it is called, how it is written, and whether a budget limits it."""

    key: str
    """As `SearchSpace.cost`, the profiler's totals and a state's `limits` name it."""
    label: str
    """As people read it."""
    unit: str
    """What it counts: MACs, parameters, bytes or ms."""
    format: Callable[[float], str]
    budget: str | None = None
    """The `Budget` (and `RunConfig`) field that limits it, written `--budget-<budget>`; None: nothing limits it."""
    example: str = ""
    """A limit as a user writes it, for help texts."""
    words: tuple[str, ...] = ()
    """What a user's directive may call it ("keep SRAM below 200KB")."""
    axis: tuple[str, float] | None = None
    """Plotted against accuracy in this unit: its name and the divisor into it; None: not plotted."""

    def parse(self, text: str | int | float) -> int:
        """A limit written as text ('320KB', '100M') in this cost's unit."""
        return parse_bytes(text) if self.unit == "bytes" else parse_count(text)

    def figure(self, value: float) -> str:
        """'peak SRAM 200.0 KB'."""
        return f"{self.label} {self.format(value)}"

    def limit_text(self, limit: float, sign: str = "<=") -> str:
        """'peak SRAM <= 200.0 KB'."""
        return f"{self.label} {sign} {self.format(limit)}"

    @property
    def limit_help(self) -> str:
        """What a budget field or flag on this cost says about itself."""
        return f"{self.label[:1].upper()}{self.label[1:]} limit, e.g. {self.example}"


COSTS: dict[str, Cost] = {
    c.key: c
    for c in (
        Cost("macs", "MACs", "MACs", format_count, "macs", "100M", ("macs", "mac"), axis=("M", 1e6)),
        Cost("params", "params", "parameters", lambda v: f"{int(v):,}"),
        Cost("flash", "flash", "bytes", format_bytes, "flash", "1MB", ("flash",)),
        Cost("peak_sram", "peak SRAM", "bytes", format_bytes, "sram", "320KB", ("sram", "ram"), axis=("KB", 1024.0)),
        Cost("latency_ms", "latency", "ms", lambda v: f"{v:.1f} ms", axis=("ms", 1.0)),
    )
}
"""Every cost a candidate may have, in the order tables show them (the profiler's totals)."""
BUDGETED: tuple[Cost, ...] = tuple(c for c in COSTS.values() if c.budget)
"""The costs a budget limits, in the order limits are listed and checked."""
COST_BUDGETS: dict[str, str] = {c.key: c.budget for c in BUDGETED if c.budget}
"""Cost key (as `SearchSpace.cost` and the profiler name it) -> budget name (as `BudgetBreach` names it)."""


def cost_figures(cost: Mapping[str, float], keys: Collection[str] | None = None) -> list[str]:
    """'MACs 86.81 M', 'peak SRAM 200.0 KB', ...: each cost `cost` has (of `keys`, where given), in table order."""
    return [c.figure(cost[k]) for k, c in COSTS.items() if k in cost and (keys is None or k in keys)]


def limit_texts(
    limits: Mapping[str, float | None], tightened: Mapping[str, float] | None = None, sign: str = "<="
) -> list[str]:
    """'MACs <= 60.00 M', ...: each limit set in `limits` (cost key -> limit); one that `tightened` (a user's
    directives) set says so."""
    tightened = tightened or {}
    return [
        COSTS[k].limit_text(v, sign) + (" (tightened by a directive)" if v == tightened.get(k) else "")
        for k, v in limits.items()
        if v
    ]


def budget_cost(budget: str) -> Cost:
    """The cost that the budget field `budget` (sram, flash, macs) limits."""
    return next(c for c in BUDGETED if c.budget == budget)


def limit_field(key: str) -> Any:
    """The pydantic field of a limit on the cost `key`: unconstrained by default, its help from the table."""
    return Field(default=None, description=COSTS[key].limit_help)


def _from_text(parse: Callable[[str], int]) -> BeforeValidator:
    return BeforeValidator(lambda v: parse(v) if isinstance(v, str) else v)


Bytes = Annotated[int | None, _from_text(parse_bytes)]
"""A byte count that may be written as text such as '320KB'."""
Count = Annotated[int | None, _from_text(parse_count)]
"""A count that may be written as text such as '100M'."""


class Budget(BaseModel):
    """Limits a deployable spec must meet; None means unconstrained."""

    model_config = ConfigDict(extra="forbid")

    sram: Bytes = limit_field("peak_sram")
    flash: Bytes = limit_field("flash")
    macs: Count = limit_field("macs")


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
        cost = budget_cost(self.metric)
        fmt, pct = cost.format, 100 * self.excess / self.limit
        over = f"exceeds the budget of {fmt(self.limit)} by {fmt(self.excess)} ({pct:.1f} %)"
        return f"{cost.label} {fmt(self.value)} {over}"


def breaches(cost: Mapping[str, float], limits: Mapping[str, float | None]) -> list[BudgetBreach]:
    """The limits (keyed by cost, in their order) that `cost` breaks, each with its excess: the one budget check."""
    return [
        BudgetBreach(COST_BUDGETS[k], int(cost[k]), int(limit))
        for k, limit in limits.items()
        if limit is not None and k in cost and cost[k] > limit
    ]
