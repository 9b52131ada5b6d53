"""Classic search strategies that share the graph with the LLM Designer, each at its strongest.

- `random`: uniform samples of the space;
- `local`: first-improvement local search over the incumbent's one-choice neighbours, with restarts;
- `rea`: regularized evolution (aging population, tournament selection, one-choice mutation);
- `bo`: a surrogate ensemble fitted on the history ranks mutations of the best candidates by UCB;
- `nsga2`: pymoo's NSGA-II through ask/tell, with a population of its own.

Every strategy is a deterministic function of the run seed and the history (its random numbers
are seeded by both), so a resumed run proposes exactly what an uninterrupted one would. Each
proposal says where it came from (`Proposal.origin`), and all but `random` propose only specs new to
the run and within the budget, so none of their evaluations is wasted.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

import numpy as np

from tinyarch.agents.context import SearchContext
from tinyarch.agents.moves import mutate, neighbours
from tinyarch.agents.state import Proposal, RunView, evaluated
from tinyarch.core.budget import breaches
from tinyarch.tools.profile import candidate_cost

SAMPLE_TRIES = 2000
"""Random draws a strategy spends looking for a new, feasible spec before it gives up."""


def seeded(ctx: SearchContext, name: str, state: RunView, attempt: int, salt: str = "") -> random.Random:
    """Random numbers fixed by the seed, the strategy and the point in the run: the same after a resume."""
    return random.Random(f"{ctx.config.seed}:{name}:{state.get('iteration', 0)}:{attempt}:{salt}")


def accuracy(candidate: dict[str, Any]) -> float:
    return candidate["metrics"]["accuracy"]


class Admission:
    """Which specs a strategy may still propose: new to the run and the batch, and within the budget. One that
    memory holds under the same evaluator settings is welcome: `check` recalls it at no budget cost."""

    def __init__(self, ctx: SearchContext, state: RunView):
        self.ctx, self.limits = ctx, ctx.limits_now(state)
        self.taken = {c["id"] for c in state.get("history", [])}

    def admit(self, spec: Any) -> bool:
        """True (and the spec is taken) when it may be proposed."""
        if spec.id in self.taken:
            return False
        ctx = self.ctx
        if breaches(candidate_cost(ctx.space, spec), self.limits):
            return False
        self.taken.add(spec.id)
        return True

    def sample(self, rng: random.Random) -> Any | None:
        ctx = self.ctx
        for _ in range(SAMPLE_TRIES):
            spec = ctx.space.sample(rng, ctx.num_classes, **ctx.fixed_fields())
            if self.admit(spec):
                return spec
        return None

    def fill(self, proposals: list[Proposal], n: int, rng: random.Random, origin: str) -> list[Proposal]:
        """`proposals` topped up with random new specs to `n`."""
        while len(proposals) < n and (spec := self.sample(rng)) is not None:
            proposals.append(proposal(spec, origin))
        return proposals


def proposal(spec: Any, origin: str, note: str = "") -> Proposal:
    return Proposal(spec=spec.model_dump(mode="json", exclude={"name"}), origin=origin, note=note)


class RandomStrategy:
    name = "random"

    def propose(self, ctx: SearchContext, state: RunView, n: int, attempt: int) -> list[Proposal]:
        rng = random.Random(hash((ctx.config.seed, state.get("iteration", 0), attempt)))
        return [proposal(ctx.space.sample(rng, ctx.num_classes, **ctx.fixed_fields()), "random") for _ in range(n)]


class LocalSearch:
    """First improvement: the incumbent's neighbours in a random order fixed per incumbent, a batch at a
    time; the best of the walk becomes the incumbent. When every neighbour is known, a restart from a
    random spec begins a new walk."""

    name = "local"

    def propose(self, ctx: SearchContext, state: RunView, n: int, attempt: int) -> list[Proposal]:
        history, admission = state.get("history", []), Admission(ctx, state)
        restarts = [i for i, c in enumerate(history) if c["origin"] == "restart"]
        walk: list[dict[str, Any]] = []
        if restarts:
            last = history[restarts[-1]]
            first = next(
                i
                for i in restarts
                if (history[i]["iteration"], history[i]["attempt"]) == (last["iteration"], last["attempt"])
            )
            walk = [c for c in history[first:] if c["status"] == "evaluated"]
        out: list[Proposal] = []
        if walk:
            incumbent = max(walk, key=accuracy)
            options = neighbours(ctx.space, ctx.space.parse(incumbent["spec"]), ctx.fixed_fields())
            random.Random(f"{ctx.config.seed}:{incumbent['id']}").shuffle(options)
            origin = f"neighbour of incumbent {incumbent['id']}"
            out = _take(options, admission, n, origin)
        return admission.fill(out, n, seeded(ctx, self.name, state, attempt), "restart")


def _take(specs: Iterable[Any], admission: Admission, n: int, origin: str) -> list[Proposal]:
    """The first `n` admissible specs, in order."""
    out: list[Proposal] = []
    for spec in specs:
        if len(out) == n:
            break
        if admission.admit(spec):
            out.append(proposal(spec, origin))
    return out


class RegularizedEvolution:
    """Real et al. (2019): the population is the last `population` evaluated candidates (the oldest dies);
    each child mutates one choice of the best of `sample` members drawn at random."""

    name = "rea"

    def __init__(self, population: int = 10, sample: int = 5):
        self.population, self.sample = population, sample

    def propose(self, ctx: SearchContext, state: RunView, n: int, attempt: int) -> list[Proposal]:
        done, admission = evaluated(state), Admission(ctx, state)
        rng = seeded(ctx, self.name, state, attempt)
        if len(done) < self.population:
            return admission.fill([], n, rng, "initial population")
        population = done[-self.population :]
        out: list[Proposal] = []
        for _ in range(n * 20):
            if len(out) == n:
                break
            parent = max(rng.sample(population, min(self.sample, len(population))), key=accuracy)
            child = mutate(ctx.space, ctx.space.parse(parent["spec"]), rng, ctx.fixed_fields())
            if admission.admit(child):
                out.append(proposal(child, f"mutation of {parent['id']}"))
        return admission.fill(out, n, rng, "random (no new mutation)")


class SurrogateSearch:
    """Bayesian-optimisation style: after `initial` random candidates, a bootstrap MLP ensemble fitted on
    the history scores every one-choice neighbour of the `parents` best candidates and `explore` random
    specs by the upper confidence bound mean + kappa * spread; the highest are evaluated."""

    name = "bo"

    def __init__(self, initial: int = 10, parents: int = 5, explore: int = 100, kappa: float = 1.0):
        self.initial, self.parents, self.explore, self.kappa = initial, parents, explore, kappa

    def propose(self, ctx: SearchContext, state: RunView, n: int, attempt: int) -> list[Proposal]:
        done, admission = evaluated(state), Admission(ctx, state)
        rng = seeded(ctx, self.name, state, attempt)
        if len(done) < self.initial:
            return admission.fill([], n, rng, "initial random")
        pool: list[tuple[Any, str]] = []
        for parent in sorted(done, key=accuracy, reverse=True)[: self.parents]:
            origin = f"neighbour of {parent['id']}"
            pool += [(s, origin) for s in neighbours(ctx.space, ctx.space.parse(parent["spec"]), ctx.fixed_fields())]
        pool = [(s, o) for s, o in pool if admission.admit(s)]
        pool += [(s, "random") for _ in range(self.explore) if (s := admission.sample(rng)) is not None]
        if not pool:
            return []
        scores, why = ucb(ctx, done, [spec for spec, _ in pool], self.kappa)
        return best_of(pool, scores, why, n, "surrogate")


def ucb(ctx: SearchContext, done: list[dict[str, Any]], specs: list[Any], kappa: float) -> tuple[np.ndarray, list[str]]:
    """Each spec's upper confidence bound on accuracy from a surrogate fitted on `done`, and how it reads."""
    from tinyarch.tools.surrogate import Surrogate

    fitted = [ctx.space.parse(c["spec"]) for c in done]
    mean, spread = Surrogate.fit(ctx.space, fitted, [accuracy(c) for c in done], seed=len(done)).predict(specs)
    scores = mean + kappa * spread
    return scores, [f"UCB {u:.2f} (mean {m:.2f} ± {s:.2f})" for u, m, s in zip(scores, mean, spread, strict=True)]


def best_of(pool: list[tuple[Any, str]], scores: np.ndarray, why: list[str], n: int, screen: str) -> list[Proposal]:
    """The `n` highest-scoring (spec, origin) pairs of `pool`, each noted with its rank and score."""
    order = np.argsort(-scores, kind="stable")[:n]
    return [proposal(*pool[i], f"{screen} rank {r + 1} of {len(pool)}: {why[i]}") for r, i in enumerate(order)]


class NSGA2Strategy:
    """pymoo's NSGA-II through ask/tell on the space's integer encoding, minimising (-accuracy, MACs).

    Each ask is a generation of `population` members, evaluated a batch at a time; a generation is
    told once all its members have an outcome. The algorithm is a function of the seed and the
    history: every told generation is replayed with the objectives its members got. Within one
    process the algorithm is kept and only told what is new; after a resume it is rebuilt.
    """

    name = "nsga2"
    PENALTY = (0.0, 1e15)  # rejected or failed candidates: no accuracy, unbounded cost

    def __init__(self, population: int = 20):
        self.population = population
        self._algorithm: Any = None
        self._told = 0
        self._asked: Any = None

    def _new_algorithm(self, ctx: SearchContext) -> Any:
        from pymoo.algorithms.moo.nsga2 import NSGA2
        from pymoo.core.problem import Problem
        from pymoo.operators.crossover.sbx import SBX
        from pymoo.operators.mutation.pm import PM
        from pymoo.operators.repair.rounding import RoundingRepair
        from pymoo.operators.sampling.rnd import IntegerRandomSampling

        slots = ctx.space.slots()
        problem = Problem(n_var=len(slots), n_obj=2, xl=0, xu=np.array([len(c) - 1 for _, c in slots]), vtype=int)
        algorithm = NSGA2(
            pop_size=self.population,
            sampling=IntegerRandomSampling(),
            crossover=SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
            mutation=PM(eta=20, vtype=float, repair=RoundingRepair()),
            eliminate_duplicates=True,
        )
        algorithm.setup(problem, seed=ctx.config.seed, termination=("n_gen", 1_000_000))
        return algorithm

    def propose(self, ctx: SearchContext, state: RunView, n: int, attempt: int) -> list[Proposal]:
        history = state.get("history", [])
        done = {c["id"]: c for c in history if c["status"] == "evaluated"}  # a duplicate gets its original's values
        outcomes = {
            _member(c["origin"]): self._objectives(done.get(c["id"], c))
            for c in history
            if c["source"] == self.name and c["origin"].startswith("generation ")
        }
        if self._algorithm is None:
            self._algorithm, self._told, self._asked = self._new_algorithm(ctx), 0, None
        while True:
            if self._asked is None:
                self._asked = self._algorithm.ask()
            members = range(len(self._asked))
            if not all((self._told, k) in outcomes for k in members):
                break
            self._asked.set("F", np.array([outcomes[(self._told, k)] for k in members]))
            self._algorithm.tell(infills=self._asked)
            self._told, self._asked = self._told + 1, None
        xs = self._asked.get("X")
        missing = [k for k in range(len(xs)) if (self._told, k) not in outcomes]
        return [
            proposal(ctx.space.decode([int(v) for v in xs[k]], ctx.num_classes), f"generation {self._told}, member {k}")
            for k in missing[:n]
        ]

    def _objectives(self, outcome: dict[str, Any]) -> tuple[float, float]:
        if outcome["status"] != "evaluated":
            return self.PENALTY
        return (-outcome["metrics"]["accuracy"], outcome["cost"].get("macs", 0.0))


def _member(origin: str) -> tuple[int, int]:
    """ "generation 3, member 7" -> (3, 7)."""
    generation, member = origin.removeprefix("generation ").split(", member ")
    return int(generation), int(member)
