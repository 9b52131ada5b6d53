"""The `llm` strategy: the Designer agent fills a screened pool of ideas, and the best of it is evaluated.

One design step:
1. the proposer gives ideas: compact edits of the best candidates so far (one or two choices
   changed, named by a short label) and a few whole designs. `LLMDesigner` asks the LLM for them
   under a JSON Schema; `RandomEditor` draws the same number of the same kinds at random (the
   `screened` strategy, the ablation that shows what the LLM itself adds);
2. each idea becomes a spec; one that breaks the budget is repaired to the nearest feasible spec
   (`moves.repair`), and the next prompt says what the repair changed;
3. the pool keeps only specs new to the run and the batch, before anything is spent (memory's are recalled); classic
   moves (the incumbent's neighbours, then random specs) top it up, so the search never stalls;
4. the screen ranks the pool: the surrogate ensemble's upper confidence bound once enough candidates
   are evaluated, before that a cheap prior (the profiler's MACs: more compute within the budget);
5. the batch is the top of the screen. Every proposal's origin and screen rank go into the traces.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from tinyarch.agents.context import SearchContext, describe
from tinyarch.agents.moves import edit, neighbours, overshoot, repair, unchecked
from tinyarch.agents.state import Proposal, RunView, evaluated
from tinyarch.agents.strategies import Admission, accuracy, best_of, seeded, ucb
from tinyarch.core.spaces import SpecError
from tinyarch.prompts import render
from tinyarch.tools.profile import candidate_cost

HISTORY_SHOWN = 8
"""Evaluated candidates shown to the Designer: the most accurate ones."""
EDITS_PER_BATCH = 1
"""Edits asked for per batch slot: each costs the 0.5B model about a second on 2 cores."""
EDITABLE = 4
"""The Designer edits the most accurate few: a small model otherwise spends edits on the worst."""
MAX_CHANGES = 2
"""Choices one edit may change."""
DESIGNS = 1
"""Whole designs asked for per call: a few hundred tokens each for `mcu`, so few."""
POOL_PER_BATCH = 4
"""Classic moves top the pool up to this many specs per batch slot, so the screen always has a choice."""
FALLBACK_DRAWS = 200
"""Random specs (each repaired to the budget) the fallback draws at most, so a full space cannot stall it."""
SURROGATE_MIN = 10
"""Evaluated candidates needed before the surrogate replaces the cost prior as the screen."""
KAPPA = 1.0
"""Upper confidence bound = surrogate mean + KAPPA * ensemble spread."""


@dataclass
class Idea:
    """A whole design (`spec`), or `changes` (slot path -> value) to the shown candidate `base`."""

    origin: str
    spec: Any = None
    base: dict[str, Any] | None = None
    changes: dict[str, Any] | None = None


class Proposer(Protocol):
    strategy: str

    def ideas(
        self, ctx: SearchContext, state: RunView, shown: list[dict[str, Any]], edits: int, attempt: int
    ) -> list[Idea]: ...


def shown_candidates(state: RunView) -> list[dict[str, Any]]:
    """The most accurate evaluated candidates, best last (the order the Designer reads them in)."""
    return sorted(evaluated(state), key=accuracy)[-HISTORY_SHOWN:]


def label(position: int) -> str:
    return f"c{position + 1}"


class LLMDesigner:
    """Asks the LLM for edits of the shown candidates and whole designs, under a JSON Schema."""

    strategy = "llm"

    def schema(self, ctx: SearchContext, shown: list[dict[str, Any]], edits: int) -> dict[str, Any]:
        """Edits as `{"of": "c12", "set": [{"edge_3_2": "nor_conv_3x3"}]}`: about 20 tokens each for a small model."""
        change = {
            "anyOf": [
                {"type": "object", "properties": {p: {"enum": c}}, "required": [p], "additionalProperties": False}
                for p, c in ctx.space.slots()
                if p not in ctx.fixed_fields()
            ]
        }
        properties: dict[str, Any] = {"rationale": {"type": "string", "maxLength": 80}}
        if shown:
            properties["edits"] = {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "of": {"enum": [label(i) for i in range(len(shown))][-EDITABLE:]},
                        "set": {"type": "array", "items": change, "minItems": 1, "maxItems": MAX_CHANGES},
                    },
                    "required": ["of", "set"],
                    "additionalProperties": False,
                },
                # exact counts: under grammar-constrained decoding a small model otherwise stops at one
                "minItems": edits,
                "maxItems": edits,
            }
        properties["designs"] = {
            "type": "array",
            "items": ctx.space.json_schema(num_classes=ctx.num_classes, in_channels=ctx.in_channels),
            "minItems": DESIGNS,
            "maxItems": DESIGNS,
        }
        return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}

    def messages(
        self, ctx: SearchContext, state: RunView, shown: list[dict[str, Any]], edits: int
    ) -> list[dict[str, str]]:
        """Static parts first (task and budget), so llama.cpp reuses the cached prefix across calls."""
        advice = state.get("advice") or {}
        advice_text = "(none yet)"
        if advice.get("advice"):
            tried, avoid = "; ".join(advice.get("try_next", [])), "; ".join(advice.get("avoid", []))
            advice_text = f"{advice['advice']} Try: {tried or '-'}. Avoid: {avoid or '-'}."
        history = [{**c, "id": label(i)} for i, c in enumerate(shown)]
        iteration = state.get("iteration", 0)
        repaired = [
            c for c in state.get("history", []) if c["iteration"] == iteration - 1 and "repaired" in c["origin"]
        ]
        user = render(
            "designer_user",
            dataset=ctx.config.dataset,
            num_classes=ctx.num_classes,
            space_name=ctx.space.name,
            budget=ctx.budget_text(state),
            choices=choices_text(ctx, evaluated(state)),
            lessons=lessons_text(ctx),
            directives="; ".join(state.get("directives", [])) or "(none)",
            advice=advice_text,
            explanations=(state.get("explanation") if ctx.config.use_explanations else None) or "(none yet)",
            repaired="\n".join(f"- {c['origin']}" for c in repaired[:4]) or "(none)",
            history=describe(history, limit=HISTORY_SHOWN),
            request=(
                f"Propose {edits} edits of the listed candidates and {DESIGNS} new whole design(s)."
                if shown
                else f"Nothing is evaluated yet: propose {DESIGNS} new whole design(s)."
            ),
        )
        return [{"role": "system", "content": render("designer_system")}, {"role": "user", "content": user}]

    def ideas(
        self, ctx: SearchContext, state: RunView, shown: list[dict[str, Any]], edits: int, attempt: int
    ) -> list[Idea]:
        assert ctx.llm is not None
        iteration = state.get("iteration", 0)
        answer, calls = ctx.llm.ask(
            "designer",
            self.messages(ctx, state, shown, edits),
            self.schema(ctx, shown, edits),
            seed=ctx.config.seed * 10_007 + iteration * 101 + attempt,
        )
        for call in calls:
            ctx.rundir.trace("llm", iteration, "designer", **call.model_dump(exclude={"agent"}))
        if not isinstance(answer, dict):
            return []
        out = [Idea("llm design", spec=d) for d in answer.get("designs", [])]
        labels = {label(i): c for i, c in enumerate(shown)}
        for e in answer.get("edits", []):
            base = labels.get(e.get("of")) if isinstance(e, dict) else None
            changes = {k: v for change in e.get("set", []) for k, v in change.items()} if base else {}
            if base and changes:
                out.append(Idea(f"llm edit of {base['id']}", base=base, changes=changes))
        return out


class RandomEditor:
    """The ablation: as many edits (one or two random choices of a random shown candidate) and whole
    designs as the LLM is asked for, drawn at random."""

    strategy = "screened"

    def ideas(
        self, ctx: SearchContext, state: RunView, shown: list[dict[str, Any]], edits: int, attempt: int
    ) -> list[Idea]:
        rng = seeded(ctx, self.strategy, state, attempt, "ideas")
        slots = [(p, c) for p, c in ctx.space.slots() if p not in ctx.fixed_fields()]
        out = [
            Idea("random design", spec=ctx.space.sample(rng, ctx.num_classes, **ctx.fixed_fields()))
            for _ in range(DESIGNS)
        ]
        for _ in range(edits if shown else 0):
            base = rng.choice(shown[-EDITABLE:])
            picked = rng.sample(slots, rng.choice(range(1, MAX_CHANGES + 1)))
            out.append(Idea(f"random edit of {base['id']}", base=base, changes={p: rng.choice(c) for p, c in picked}))
        return out


class ScreenedPool:
    """The loop around a proposer: ideas -> specs (repaired to the budget) -> new ones only -> screen -> batch."""

    def __init__(self, proposer: Proposer):
        self.proposer, self.name = proposer, proposer.strategy

    def propose(self, ctx: SearchContext, state: RunView, n: int, attempt: int) -> list[Proposal]:
        shown, admission = shown_candidates(state), Admission(ctx, state)
        pool = admitted(ctx, state, admission, self.proposer.ideas(ctx, state, shown, EDITS_PER_BATCH * n, attempt))
        top_up = admitted(ctx, state, admission, fallback(ctx, state, attempt), POOL_PER_BATCH * n - len(pool))
        return screen_pool(ctx, state, pool + top_up, n)


def admitted(
    ctx: SearchContext, state: RunView, admission: Admission, ideas: Iterable[Idea], want: int | None = None
) -> list[tuple[Any, str]]:
    """(spec, origin) for each idea that is valid, within the budget once repaired, and new; at most `want`."""
    limits, out = ctx.limits_now(state), []
    for idea in ideas:
        if want is not None and len(out) >= want:
            break
        try:
            base = None if idea.base is None else ctx.space.parse(idea.base["spec"])
            spec = unchecked(ctx.space, idea.spec) if base is None else edit(ctx.space, base, idea.changes or {})
        except SpecError as e:
            reason = str(e)[:300]
            ctx.rundir.trace(
                "tool", state.get("iteration", 0), "screen", origin=idea.origin, status="invalid", reason=reason
            )
            continue
        origin, broken = idea.origin, ctx.space.violations(spec)
        if broken or overshoot(candidate_cost(ctx.space, spec), limits) > 0:
            fixed = repair(ctx.space, spec, limits, ctx.fixed_fields())
            if fixed is None:
                continue
            fits = "the space's rules and the budget" if broken else "the budget"
            spec, origin = fixed[0], f"{origin} (repaired to {fits}: {'; '.join(fixed[1])})"
        if admission.admit(spec):
            out.append((spec, origin))
    return out


def fallback(ctx: SearchContext, state: RunView, attempt: int) -> Iterator[Idea]:
    """Classic moves, drawn as needed: the incumbent's neighbours in a seeded order, then random specs. The
    draws are seeded alike for `llm` and its ablation, so at the same history the two differ only in ideas."""
    done = evaluated(state)
    rng = seeded(ctx, "llm", state, attempt, "fallback")
    if done:
        incumbent = max(done, key=accuracy)
        options = neighbours(ctx.space, ctx.space.parse(incumbent["spec"]), ctx.fixed_fields())
        rng.shuffle(options)
        yield from (Idea(f"fallback: neighbour of {incumbent['id']}", spec=s) for s in options)
    for _ in range(FALLBACK_DRAWS):
        yield Idea("fallback: random", spec=ctx.space.sample(rng, ctx.num_classes, **ctx.fixed_fields()))


def screen_pool(ctx: SearchContext, state: RunView, pool: list[tuple[Any, str]], n: int) -> list[Proposal]:
    """The `n` best of the pool by the surrogate's UCB, or by the cost prior while the history is short."""
    if not pool:
        return []
    done, specs = evaluated(state), [spec for spec, _ in pool]
    if len(done) >= SURROGATE_MIN:
        scores, why = ucb(ctx, done, specs, KAPPA)
    else:
        scores = np.array([math.log(max(candidate_cost(ctx.space, s).get("macs", 1), 1)) for s in specs])
        why = [f"prior log MACs {v:.2f}" for v in scores]
    return best_of(pool, scores, why, n, "screen")


def choices_text(ctx: SearchContext, done: list[dict[str, Any]]) -> str:
    """One line per kind of field (all edges of a cell, a field of every stage), its choices ordered best
    first by the mean accuracy of the evaluated candidates that hold them: the evidence a small model
    can act on directly. Choices no candidate holds yet come last."""
    from tinyarch.tools.surrogate import format_value, slot_kind

    slots = [(p, c) for p, c in ctx.space.slots() if p not in ctx.fixed_fields() and len(c) > 1]
    kind = {p: (slot_kind(p), tuple(c)) for p, c in slots}  # one kind: one role and the same choices
    groups: dict[tuple[str, tuple[Any, ...]], list[str]] = {}
    for path, _ in slots:
        groups.setdefault(kind[path], []).append(path)
    held: dict[tuple[Any, str], list[float]] = {}
    for c in done:
        for path, value in ctx.space.values(ctx.space.parse(c["spec"])).items():
            if path in kind:
                held.setdefault((kind[path], format_value(value)), []).append(accuracy(c))
    lines = []
    for key, paths in groups.items():
        stats = [(format_value(v), held.get((key, format_value(v)), [])) for v in key[1]]
        stats.sort(key=lambda item: -sum(item[1]) / len(item[1]) if item[1] else math.inf)
        shown = ", ".join(f"{v} ({sum(a) / len(a):.1f}% in {len(a)})" if a else f"{v} (untried)" for v, a in stats)
        lines.append(f"{_field_names(paths)}: {shown}")
    return "\n".join(lines)


def _field_names(paths: list[str]) -> str:
    """`stages[0].width` ... `stages[4].width` -> `stages[0..4].width`; other groups are listed."""
    stages = [re.fullmatch(r"stages\[(\d+)\]\.(\w+)", p) for p in paths]
    if len(paths) > 1 and all(stages) and len({m.group(2) for m in stages if m}) == 1:
        first, last = stages[0], stages[-1]
        assert first and last
        return f"stages[{first.group(1)}..{last.group(1)}].{first.group(2)}"
    return ", ".join(paths)


def lessons_text(ctx: SearchContext) -> str:
    """The Critic's lessons from earlier runs on this space and dataset, as memory holds them."""
    if ctx.memory is None:
        return "(memory off)"
    lessons = ctx.memory.relevant_lessons(
        f"{ctx.config.dataset} in {ctx.space.name}",
        space=ctx.space.name,
        dataset=ctx.config.dataset,
        exclude_run=ctx.config.name,
    )
    return "\n".join(f"- {text}" for text in lessons) or "(none yet)"
