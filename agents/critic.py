"""The Critic agent: an LLM reads the front and this round's results, advises, and decides continue/stop."""

from __future__ import annotations

from typing import Any

from tinyarch.agents.context import SearchContext, describe
from tinyarch.agents.state import Advice, RunView, evaluated
from tinyarch.prompts import render

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "advice": {"type": "string", "maxLength": 300},
        "try_next": {"type": "array", "items": {"type": "string", "maxLength": 120}, "maxItems": 3},
        "avoid": {"type": "array", "items": {"type": "string", "maxLength": 120}, "maxItems": 3},
        "why": {"type": "string", "maxLength": 200},
        "decision": {"enum": ["continue", "stop"]},
        "reason": {"type": "string", "maxLength": 200},
    },
    "required": ["advice", "try_next", "avoid", "why", "decision", "reason"],
    "additionalProperties": False,
}


def critique(ctx: SearchContext, state: RunView) -> Advice | None:
    """Structured advice, or None when the LLM gave no valid answer (the failure is in the traces)."""
    assert ctx.llm is not None
    iteration = state.get("iteration", 0)
    done = evaluated(state)
    front = sorted((c for c in done if c["id"] in state.get("front", [])), key=lambda c: -c["metrics"]["accuracy"])
    this_round = [c for c in state.get("history", []) if c["iteration"] == iteration]
    user = render(
        "critic_user",
        dataset=ctx.config.dataset,
        space_name=ctx.space.name,
        budget=ctx.budget_text(state),
        evals_used=len(done),
        evals_budget=ctx.config.budget_evals,
        iteration=iteration,
        hypervolume=", ".join(f"{h:.4f}" for h in state.get("hypervolume", [])) or "(none)",
        front=describe(front),
        recent=describe([c for c in this_round if c["status"] == "evaluated"]),
        rejected=describe([c for c in this_round if c["status"] != "evaluated"]),
        explanations=(state.get("explanation") if ctx.config.use_explanations else None) or "(none yet)",
        directives="; ".join(state.get("directives", [])) or "(none)",
    )
    messages = [{"role": "system", "content": render("critic_system")}, {"role": "user", "content": user}]
    answer, calls = ctx.llm.ask("critic", messages, SCHEMA, seed=ctx.config.seed * 10_007 + iteration * 101 + 50)
    for call in calls:
        ctx.rundir.trace("llm", iteration, "critic", **call.model_dump(exclude={"agent"}))
    return Advice.model_validate(answer) if answer is not None else None
