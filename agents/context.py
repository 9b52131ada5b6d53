"""What every node needs besides the state: the space, evaluator, executor, strategy, memory, LLM, run directory
and the run's history."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from langgraph.config import get_stream_writer

from tinyarch.agents.history import History
from tinyarch.agents.llm import StructuredLLM
from tinyarch.core.budget import cost_figures, limit_texts
from tinyarch.core.config import RunConfig
from tinyarch.core.outage import OutageEvent
from tinyarch.core.rundir import RunDir
from tinyarch.core.spaces import SearchSpace
from tinyarch.memory.store import Memory
from tinyarch.tools.executors import Executor, LocalExecutor


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
    executor: Executor | None = None
    """Runs the evaluator on each batch; None: in this process."""
    started: float = field(default_factory=time.time)
    iteration: int = 0
    """The iteration of the node running now (set as each node starts), for the traces of server outages."""
    history: History = field(init=False)

    def __post_init__(self) -> None:
        if self.executor is None:
            self.executor = LocalExecutor(self.evaluator)
        for outage in (self.llm and self.llm.outage, self.memory and self.memory.outage):
            if outage:
                outage.report = self.report_outage
        self.history = History(self.rundir)

    def report_outage(self, event: OutageEvent) -> None:
        """Trace each wait for a server and its recovery, and tell the live view (through the running node's
        stream as `{"outage": record}`)."""
        self.rundir.trace("tool", self.iteration, "outage", **event.record())
        with contextlib.suppress(RuntimeError):  # outside a graph node there is no stream
            get_stream_writer()({"outage": event.record()})

    @property
    def limits(self) -> dict[str, float | None]:
        """The run's budget limits keyed by the cost names of `SearchSpace.cost`."""
        return self.config.limits()

    def limits_now(self, state: Mapping[str, Any]) -> dict[str, float | None]:
        """The run's limits, tightened by the user's directives so far (`state["limits"]`)."""
        return self.config.limits(state.get("limits"))

    def budget_text(self, state: Mapping[str, Any]) -> str:
        return ", ".join(limit_texts(self.limits_now(state))) or "none"

    def fixed_fields(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels} if self.in_channels else {}


PROMPT_COSTS = ("macs", "peak_sram")
"""The costs a prompt's candidate lines show (the others would only lengthen them)."""


def describe(candidates: list[dict[str, Any]], limit: int = 8) -> str:
    """One line per candidate for prompts: id, accuracy, costs, summary (or the rejection reason)."""
    if not candidates:
        return "(none yet)"
    lines = []
    for c in candidates[:limit]:
        figures = [f"acc {c['metrics']['accuracy']:.2f}%"] if "accuracy" in c.get("metrics", {}) else []
        figures += cost_figures(c.get("cost", {}), PROMPT_COSTS)
        reason = f" REJECTED: {c['reason']}" if c["status"] in ("rejected", "failed") else ""
        lines.append(f"- {c['id']} {', '.join(figures)} | {c['summary']}{reason}")
    return "\n".join(lines)
