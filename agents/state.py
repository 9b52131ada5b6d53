"""The graph's state: small, plain JSON-able data, checkpointed by LangGraph after every node.

Candidates are dicts (`Outcome.model_dump()`). The run's history (every candidate with its fate:
evaluated, failed, rejected; recalled from memory or not) is the single source for the front, the
prompts and the report; it lives once, in `agents/history.py`, and the state holds only its length.
Nothing in the state grows with the run, so every checkpoint is about the same size.
"""

from __future__ import annotations

import operator
import re
from typing import Annotated, Any, Literal, TypedDict

from pydantic import BaseModel


class Outcome(BaseModel):
    """One candidate and what happened to it."""

    id: str
    spec: dict[str, Any]
    summary: str
    iteration: int
    attempt: int = 0
    position: int = 0
    """Index in the batch its strategy proposed, so a strategy can replay its own asks in order."""
    source: str
    """The strategy that proposed it."""
    origin: str = ""
    """Where within the strategy it came from (an LLM design or edit, a fallback move, a mutation...)."""
    note: str = ""
    """How the strategy's screen ranked it, when it screens."""
    status: Literal["pending", "evaluated", "failed", "rejected"]
    reason: str = ""
    recalled: str = ""
    """The earlier run whose evaluation memory gave back (no budget spent); "" when evaluated here."""
    cost: dict[str, float] = {}
    metrics: dict[str, float] = {}

    @classmethod
    def of(cls, spec: Any, **fields: Any) -> Outcome:
        """The outcome of a parsed spec (its id, JSON and summary), with `fields` saying what happened to it."""
        return cls(id=spec.id, spec=spec.model_dump(mode="json", exclude={"name"}), summary=spec.summary(), **fields)


class Proposal(BaseModel):
    """What a strategy proposes: a spec (unchecked data, e.g. an LLM's answer) and its provenance."""

    spec: Any
    origin: str = ""
    note: str = ""


class Advice(BaseModel):
    """The Critic's structured advice and decision."""

    advice: str = ""
    try_next: list[str] = []
    avoid: list[str] = []
    why: str = ""
    decision: Literal["continue", "stop"] = "continue"
    reason: str = ""


class SearchState(TypedDict, total=False):
    started_at: float
    iteration: int
    history_len: int
    """Candidates of the run's history this checkpoint has committed (see agents/history.py)."""
    spent: int
    """Evaluations that cost budget: evaluated or failed here, not recalled."""
    progressed: int
    """The last iteration that added an evaluated, failed or recalled candidate."""
    pending: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    design_attempts: int
    front: list[str]
    hypervolume: list[float]
    """The last HYPERVOLUME_WINDOW iterations' hypervolumes (every one is in the analyse traces)."""
    advice: dict[str, Any]
    critiqued: dict[str, Any]
    """When the Critic last spoke: its iteration and the front it saw."""
    directives: Annotated[list[str], operator.add]
    limits: dict[str, float]
    """Budget limits the user's directives tightened (cost name -> limit); the checks enforce them."""
    inbox_read: int
    """Messages of the run's inbox already applied."""
    decision: Literal["continue", "stop"]
    stop_reason: str
    explanation: str
    final: list[dict[str, Any]]


HYPERVOLUME_WINDOW = 8


class RunView(SearchState, total=False):
    """The state with the run's history (`History.view`): what strategies and agents read, never checkpointed."""

    history: list[dict[str, Any]]


def origin_kind(origin: str) -> str:
    """The kind of an origin, without its candidate ids and details: "llm edit of ab12 (repaired ...)" ->
    "llm edit", "fallback: random" -> "fallback random", "generation 3, member 7" -> "generation"."""
    base = origin.split(" (", 1)[0]
    base = re.sub(r"( of .*|, member .*)$", "", base)
    return re.sub(r" \d+$", "", base).replace(": ", " ") or "(unknown)"


def evaluated(state: RunView) -> list[dict[str, Any]]:
    return [c for c in state.get("history", []) if c["status"] == "evaluated"]
