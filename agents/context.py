"""What every node needs besides the state: the space, evaluator, strategy, memory, LLM and run directory."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tinyarch.agents.llm import StructuredLLM
from tinyarch.budget import format_bytes, format_count
from tinyarch.config import RunConfig
from tinyarch.memory.store import Memory
from tinyarch.rundir import RunDir
from tinyarch.space import SearchSpace


@dataclass
class SearchContext:
    config: RunConfig
    space: SearchSpace
    evaluator: Any
    strategy: Any
    rundir: RunDir
    num_classes: int
    in_channels: int | None = None
    memory: Memory | None = None
    llm: StructuredLLM | None = None
    started: float = field(default_factory=time.time)

    @property
    def limits(self) -> dict[str, float | None]:
        """Budget limits keyed by the cost names of `SearchSpace.cost`."""
        return {"peak_sram": self.config.sram, "flash": self.config.flash, "macs": self.config.macs}

    def budget_text(self) -> str:
        c = self.config
        parts = [
            f"peak SRAM <= {format_bytes(c.sram)}" if c.sram else "",
            f"flash <= {format_bytes(c.flash)}" if c.flash else "",
            f"MACs <= {format_count(c.macs)}" if c.macs else "",
        ]
        return ", ".join(p for p in parts if p) or "none"

    def fixed_fields(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels} if self.in_channels else {}


def describe(candidates: list[dict[str, Any]], limit: int = 8) -> str:
    """One line per candidate for prompts: id, accuracy, costs, summary (or the rejection reason)."""
    if not candidates:
        return "(none yet)"
    lines = []
    for c in candidates[:limit]:
        figures = [f"acc {c['metrics']['accuracy']:.2f}%"] if "accuracy" in c.get("metrics", {}) else []
        cost = c.get("cost", {})
        figures += [f"MACs {format_count(cost['macs'])}"] if "macs" in cost else []
        figures += [f"SRAM {format_bytes(cost['peak_sram'])}"] if "peak_sram" in cost else []
        reason = f" REJECTED: {c['reason']}" if c["status"] in ("rejected", "failed") else ""
        lines.append(f"- {c['id']} {', '.join(figures)} | {c['summary']}{reason}")
    return "\n".join(lines)
