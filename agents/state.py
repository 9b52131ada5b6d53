"""The graph's state: plain JSON-able data, checkpointed by LangGraph after every node.

Candidates are dicts (`Outcome.model_dump()`): `history` keeps every candidate of the run with its
fate (evaluated, failed, rejected) and is the single source for the front, the prompts and the
report. Reducers append, so a node returns only what it adds.
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
    cost: dict[str, float] = {}
    metrics: dict[str, float] = {}


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
    history: Annotated[list[dict[str, Any]], operator.add]
    pending: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    design_attempts: int
    front: list[str]
    hypervolume: Annotated[list[float], operator.add]
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


def origin_kind(origin: str) -> str:
    """The kind of an origin, without its candidate ids and details: "llm edit of ab12 (repaired ...)" ->
    "llm edit", "fallback: random" -> "fallback random", "generation 3, member 7" -> "generation"."""
    base = origin.split(" (", 1)[0]
    base = re.sub(r"( of .*|, member .*)$", "", base)
    return re.sub(r" \d+$", "", base).replace(": ", " ") or "(unknown)"


def evaluated(state: SearchState) -> list[dict[str, Any]]:
    return [c for c in state.get("history", []) if c["status"] == "evaluated"]
