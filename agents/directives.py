"""What the user says to a run: a question, or a directive whose budget limits the checks enforce.

Budgets are read with a rule, not by the LLM: "stay under 60 M MACs" must tighten the MACs limit
to exactly 60 M every time, and a small model cannot be trusted to do that arithmetic.
"""

from __future__ import annotations

import re

from pydantic import BaseModel

from tinyarch.core.budget import BUDGETED, limit_texts

QUESTION_WORDS = ("why", "what", "which", "how", "when", "where", "who", "is", "are", "does", "do", "did", "can")
_BOUND = r"(?:under|below|within|at most|max(?:imum)?|no more than|less than|<=?)\s*"
_AMOUNT = r"(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[kKmMgG]i?[bB]?|[bB])?"
_COST = {word: cost for cost in BUDGETED for word in cost.words}
"""What a user may call each cost a budget limits ("mac", "macs", "sram", "ram", "flash")."""
_WHAT = r"(?P<what>" + "|".join(sorted(_COST, key=len, reverse=True)) + ")"
_LIMITS = [  # "under 60 M MACs" and "SRAM below 200 KB"
    re.compile(_BOUND + _AMOUNT + r"\s*(?:of\s+)?" + _WHAT + r"\b", re.IGNORECASE),
    re.compile(r"\b" + _WHAT + r"\s+(?:\w+\s+){0,2}" + _BOUND + _AMOUNT, re.IGNORECASE),
]


class Directive(BaseModel):
    text: str
    limits: dict[str, float] = {}
    """Cost name (macs, peak_sram, flash) -> the limit the sentence sets."""

    def describe(self) -> str:
        """How the checks will read it, to show back to the user."""
        return "; ".join(limit_texts(self.limits))


def is_question(text: str) -> bool:
    words = text.strip().lower().split()
    return text.strip().endswith("?") or (bool(words) and words[0] in QUESTION_WORDS)


def tighten(limits: dict[str, float], more: dict[str, float]) -> dict[str, float]:
    """`limits` with each of `more` that is lower: directives only ever tighten a budget."""
    return {**limits, **{k: min(v, limits.get(k, v)) for k, v in more.items()}}


def parse_directive(text: str) -> Directive:
    """The directive with every budget limit it states ("stay under 60 M MACs", "SRAM below 200KB")."""
    limits: dict[str, float] = {}
    for m in (m for pattern in _LIMITS for m in pattern.finditer(text)):
        cost = _COST[m["what"].lower()]
        amount = f"{m['number']}{m['unit'] or ''}"
        if cost.unit != "bytes":
            value = cost.parse(amount.rstrip("bB"))
        else:
            value = cost.parse(amount if m["unit"] and m["unit"].lower().endswith("b") else f"{amount}B")
        limits[cost.key] = float(value)
    return Directive(text=text.strip(), limits=limits)
