"""The Designer agent: an LLM proposes a batch of specs as schema-constrained JSON."""

from __future__ import annotations

import json
import random
from typing import Any

from tinyarch.agents.context import SearchContext, describe
from tinyarch.agents.state import SearchState, evaluated
from tinyarch.prompts import render


class LLMDesigner:
    name = "llm"

    def schema(self, ctx: SearchContext, n: int) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {
                "rationale": {"type": "string", "maxLength": 200},
                "candidates": {
                    "type": "array",
                    "items": ctx.space.json_schema(num_classes=ctx.num_classes, in_channels=ctx.in_channels),
                    # a full batch: under grammar-constrained decoding a small model otherwise stops at one
                    "minItems": n,
                    "maxItems": n,
                },
            },
            "required": ["rationale", "candidates"],
            "additionalProperties": False,
        }

    def messages(self, ctx: SearchContext, state: SearchState, n: int) -> list[dict[str, str]]:
        done = evaluated(state)
        front_ids = state.get("front", [])
        front = [c for c in done if c["id"] in front_ids]
        front.sort(key=lambda c: -c["metrics"]["accuracy"])
        recalled = "(memory off)"
        if ctx.memory is not None and front:
            best = ctx.space.parse(front[0]["spec"])
            nearest = ctx.memory.nearest(ctx.space, best, k=4, dataset=ctx.config.dataset)
            lines = [
                f"- {r.metrics.get('accuracy', 0):.2f}% in run {r.run}: {ctx.space.parse(r.spec).summary()}"
                for r in nearest
            ]
            recalled = "\n".join(lines) or "(empty)"
        advice = state.get("advice") or {}
        advice_text = "(none yet)"
        if advice.get("advice"):
            tried, avoid = "; ".join(advice.get("try_next", [])), "; ".join(advice.get("avoid", []))
            advice_text = f"{advice['advice']} Try: {tried or '-'}. Avoid: {avoid or '-'}."
        user = render(
            "designer_user",
            examples=self.feasible_examples(ctx, state),
            dataset=ctx.config.dataset,
            num_classes=ctx.num_classes,
            space_name=ctx.space.name,
            budget=ctx.budget_text(state),
            space=ctx.space.describe(),
            front=describe(front),
            recent=describe(done[-6:][::-1]),
            memory=recalled,
            rejected=describe(state.get("rejected", [])),
            advice=advice_text,
            directives="; ".join(state.get("directives", [])) or "(none)",
            explanations=(state.get("explanation") if ctx.config.use_explanations else None) or "(none yet)",
            batch=n,
        )
        return [{"role": "system", "content": render("designer_system")}, {"role": "user", "content": user}]

    def feasible_examples(self, ctx: SearchContext, state: SearchState, count: int = 2) -> str:
        """A few random specs that pass the budget, as compact JSON: anchors for a small model."""
        rng = random.Random(hash((ctx.config.seed, state.get("iteration", 0))))
        found: list[str] = []
        for _ in range(2000):
            spec = ctx.space.sample(rng, ctx.num_classes, **ctx.fixed_fields())
            cost = ctx.space.cost(spec)
            if all(limit is None or cost.get(k, 0) <= limit for k, limit in ctx.limits_now(state).items()):
                found.append(json.dumps(spec.model_dump(mode="json", exclude={"name"}), separators=(",", ":")))
                if len(found) == count:
                    break
        return "\n".join(found) or "(none found)"

    def propose(self, ctx: SearchContext, state: SearchState, n: int, attempt: int) -> list[dict[str, Any]]:
        assert ctx.llm is not None
        iteration = state.get("iteration", 0)
        answer, calls = ctx.llm.ask(
            "designer",
            self.messages(ctx, state, n),
            self.schema(ctx, n),
            seed=ctx.config.seed * 10_007 + iteration * 101 + attempt,
        )
        for call in calls:
            ctx.rundir.trace("llm", iteration, "designer", **call.model_dump(exclude={"agent"}))
        if answer is None:
            return []
        return [c for c in answer["candidates"] if isinstance(c, dict)][:n]
