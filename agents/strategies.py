"""Search strategies that share the graph with the LLM Designer: random sampling and NSGA-II.

Both are deterministic functions of the run seed and the history, so a resumed run proposes
exactly what an uninterrupted one would.
"""

from __future__ import annotations

import random
from itertools import groupby
from typing import Any

import numpy as np

from tinyarch.agents.context import SearchContext
from tinyarch.agents.state import SearchState


class RandomStrategy:
    name = "random"

    def propose(self, ctx: SearchContext, state: SearchState, n: int, attempt: int) -> list[dict[str, Any]]:
        rng = random.Random(hash((ctx.config.seed, state.get("iteration", 0), attempt)))
        specs = [ctx.space.sample(rng, ctx.num_classes, **ctx.fixed_fields()) for _ in range(n)]
        return [s.model_dump(mode="json", exclude={"name"}) for s in specs]


class NSGA2Strategy:
    """pymoo's NSGA-II through ask/tell on the space's integer encoding, minimising (-accuracy, MACs).

    The algorithm is a function of the seed and the history: each earlier ask is replayed with the
    objectives its candidates got. Within one process the algorithm is kept and only told what is
    new; after a resume it is rebuilt from the checkpointed history.
    """

    name = "nsga2"
    PENALTY = (0.0, 1e15)  # rejected or failed candidates: no accuracy, unbounded cost

    def __init__(self) -> None:
        self._algorithm: Any = None
        self._told: list[tuple[int, int]] = []
        self._asked: Any = None

    def _new_algorithm(self, ctx: SearchContext, n: int) -> Any:
        from pymoo.algorithms.moo.nsga2 import NSGA2
        from pymoo.core.problem import Problem
        from pymoo.operators.crossover.sbx import SBX
        from pymoo.operators.mutation.pm import PM
        from pymoo.operators.repair.rounding import RoundingRepair
        from pymoo.operators.sampling.rnd import IntegerRandomSampling

        slots = ctx.space.slots()
        problem = Problem(n_var=len(slots), n_obj=2, xl=0, xu=np.array([len(c) - 1 for _, c in slots]), vtype=int)
        algorithm = NSGA2(
            pop_size=n,
            sampling=IntegerRandomSampling(),
            crossover=SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
            mutation=PM(eta=20, vtype=float, repair=RoundingRepair()),
            eliminate_duplicates=True,
        )
        algorithm.setup(problem, seed=ctx.config.seed, termination=("n_gen", 1_000_000))
        return algorithm

    def propose(self, ctx: SearchContext, state: SearchState, n: int, attempt: int) -> list[dict[str, Any]]:
        ours = sorted(
            (c for c in state.get("history", []) if c["source"] == self.name),
            key=lambda c: (c["iteration"], c["attempt"], c["position"]),
        )
        groups = [(key, list(group)) for key, group in groupby(ours, key=lambda c: (c["iteration"], c["attempt"]))]
        keys = [key for key, _ in groups]
        if self._algorithm is None or keys[: len(self._told)] != self._told:
            self._algorithm, self._told, self._asked = self._new_algorithm(ctx, n), [], None
        for key, group in groups[len(self._told) :]:
            asked = self._asked if self._asked is not None else self._algorithm.ask()
            self._asked = None
            objectives = [self._objectives(c) for c in group]
            if len(objectives) != len(asked):  # a truncated last batch: nothing more to learn from it
                break
            asked.set("F", np.array(objectives))
            self._algorithm.tell(infills=asked)
            self._told.append(key)
        self._asked = self._algorithm.ask()
        return [
            ctx.space.decode([int(v) for v in x], ctx.num_classes).model_dump(mode="json", exclude={"name"})
            for x in self._asked.get("X")
        ]

    def _objectives(self, outcome: dict[str, Any]) -> tuple[float, float]:
        if outcome["status"] != "evaluated":
            return self.PENALTY
        return (-outcome["metrics"]["accuracy"], outcome["cost"].get("macs", 0.0))
