"""Moves in a search space that every strategy shares: neighbours, mutation, edits and budget repair.

A move works on the space's choice encoding, so it is the same for cells and hierarchical specs.
`frozen` slot paths (such as `in_channels`, given by the task) are never changed.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from tinyarch.core.budget import breaches
from tinyarch.core.spaces import SearchSpace, SpecError, Violation
from tinyarch.tools.profile import candidate_cost

Limits = Mapping[str, float | None]
REPAIR_STEPS = 16
"""Greedy repair gives up after this many one-choice moves."""


def neighbours(space: SearchSpace, spec: Any, frozen: Iterable[str] = ()) -> list[Any]:
    """Every valid spec that differs from `spec` in exactly one choice, in slot order, choices in order."""
    vector, frozen = space.encode(spec), set(frozen)
    found: dict[str, Any] = {}
    for position, (path, choices) in enumerate(space.slots()):
        if path in frozen:
            continue
        for index in range(len(choices)):
            if index == vector[position]:
                continue
            candidate = space.decode([*vector[:position], index, *vector[position + 1 :]], spec.num_classes)
            if candidate.id != spec.id and candidate.id not in found and not space.violations(candidate):
                found[candidate.id] = candidate
    return list(found.values())


def mutate(space: SearchSpace, spec: Any, rng: random.Random, frozen: Iterable[str] = ()) -> Any:
    """A uniformly drawn one-choice neighbour (the spec itself when it has none)."""
    options = neighbours(space, spec, frozen)
    return rng.choice(options) if options else spec


def edit(space: SearchSpace, spec: Any, changes: Mapping[str, Any]) -> Any:
    """`spec` with the slot values in `changes` (path -> value), the space's rules unchecked (see `repair`);
    SpecError names a bad path or value."""
    slots = dict(space.slots())
    problems = [Violation(path, "no such choice in the space") for path in changes if path not in slots]
    problems += [
        Violation(path, f"{value!r} is not one of {slots[path]}")
        for path, value in changes.items()
        if path in slots and value not in slots[path]
    ]
    if problems:
        raise SpecError(problems)
    vector = space.encode(spec)
    for position, (path, choices) in enumerate(space.slots()):
        if path in changes:
            vector[position] = choices.index(changes[path])
    return space.decode(vector, spec.num_classes)


def overshoot(cost: Mapping[str, float], limits: Limits) -> float:
    """How far `cost` is over its limits: the sum of relative excesses, 0 when it fits."""
    return sum(b.excess / b.limit for b in breaches(cost, limits))


def repair(space: SearchSpace, spec: Any, limits: Limits, frozen: Iterable[str] = ()) -> tuple[Any, list[str]] | None:
    """The valid, feasible spec reached from `spec` by the fewest greedy one-choice moves, and the moves made.

    `spec` may break the space's rules (say, a total stride over the limit): the first move then takes
    it to its best valid neighbour. Each step takes the neighbour with the smallest overshoot of the
    budget (ties: the larger MACs, so the least capacity is given up), e.g. a narrower stage, fewer
    blocks or a lower resolution. None when REPAIR_STEPS moves do not get there.
    """
    frozen, moves = list(frozen), []
    current, valid = spec, not space.violations(spec)
    over = overshoot(candidate_cost(space, spec), limits) if valid else float("inf")
    for _ in range(REPAIR_STEPS):
        if over == 0:
            return current, moves
        scored = []
        for candidate in neighbours(space, current, frozen):
            cost = candidate_cost(space, candidate)
            scored.append((overshoot(cost, limits), -cost.get("macs", 0), candidate))
        if not scored:
            return None
        best_over, _, best = min(scored, key=lambda t: (t[0], t[1]))
        if best_over >= over:
            return None
        moves.append(describe_change(space, current, best))
        current, over = best, best_over
    return (current, moves) if over == 0 else None


def unchecked(space: SearchSpace, data: Any) -> Any:
    """`data` as a spec whose every value is one of the space's choices, its rules (such as the total
    stride) not yet checked, for `repair`; SpecError (every violation) when it is not even that."""
    try:
        return space.parse(data)
    except SpecError as error:
        try:
            spec = space.spec_model.model_validate(data)
            space.encode(spec)
        except (ValidationError, SpecError):
            raise error from None
        return spec


def describe_change(space: SearchSpace, before: Any, after: Any) -> str:
    """`path: old -> new` for each slot that differs."""
    old, new = space.values(before), space.values(after)
    return ", ".join(f"{p}: {old.get(p)} -> {new.get(p)}" for p, _ in space.slots() if old.get(p) != new.get(p))
