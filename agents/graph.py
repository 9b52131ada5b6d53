"""The LangGraph state machine of one search.

```
recall -> human -> design -> check -> evaluate -> analyse -> critique -> remember -> human ...   (stop -> finalize)
                              |  no candidate survived: back to design with the reasons (bounded attempts)
```
`recall` starts a run with the front of what memory knows under the same evaluator settings, and
`check` recalls any other proposal memory already holds: both enter the history at no budget cost.
`human` applies what the user sent through `tinyarch chat` (the run's inbox) before each design
step: directives for the prompts, budget limits for the checks, pause, resume and stop.
Nodes read the `SearchContext` (space, evaluator, executor, strategy, memory, LLM, run directory) by
closure and return only what they add to the `SearchState`; candidates go to the run's `History`
(once, on disk) and the state keeps only its length. Every LLM call and every tool result is
written to the run's traces; LangGraph's SQLite checkpointer stores the small state after every
node, so a killed run resumes at the node it was in, and finished evaluations are read back from
`evaluations.jsonl` instead of being run again.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any

from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph

from tinyarch.agents.context import SearchContext
from tinyarch.agents.critic import critique
from tinyarch.agents.directives import tighten
from tinyarch.agents.state import HYPERVOLUME_WINDOW, Outcome, SearchState, evaluated
from tinyarch.core.budget import breaches
from tinyarch.core.spaces import SpecError
from tinyarch.memory.store import Evaluated
from tinyarch.tools.pareto import analyse
from tinyarch.tools.profile import candidate_cost

ACTIVITY = {
    "recall": "recalling what memory knows",
    "human": "reading the user's messages",
    "check": "checking and profiling the proposals",
    "evaluate": "evaluating",
    "analyse": "analysing the front",
    "critique": "Critic reviewing",
    "remember": "storing the iteration in memory",
    "finalize": "finalizing the front",
}
"""What the search is doing while each node runs, for the terminal's and the web app's live views."""
MAX_DESIGN_ATTEMPTS = 3
CRITIC_GAP, CRITIC_EVERY = 4, 8
"""Iterations between the Critic's reviews: at least CRITIC_GAP when the front changed, at most CRITIC_EVERY."""
FLAT_ITERATIONS = 3
"""A Critic's stop needs the hypervolume flat over this many iterations."""
IDLE_ITERATIONS = 50
"""A run that evaluated nothing for this many iterations in a row stops: its strategy finds nothing new
within the budget (an iteration cap, if the user wants one, is --max-iterations)."""
PAUSE_POLL_S = 0.5
EVALUATION_KEYS = ("status", "metrics", "reason", "seconds")


def build_graph(ctx: SearchContext, checkpointer: Any = None) -> Any:
    """The compiled graph; `checkpointer` (e.g. a SqliteSaver) makes it resumable."""
    space, config, rundir = ctx.space, ctx.config, ctx.rundir

    def recall(state: SearchState) -> dict[str, Any]:
        """A new run starts from the front of the architectures memory holds under the same evaluator
        settings (within this run's budget), so it never lacks the best ones already known."""
        ctx.history.sync(state.get("history_len", 0))
        if ctx.memory is None or ctx.history.records:
            return {}
        known = []
        for item in ctx.memory.known(space, ctx.evaluator.settings_key):
            try:
                spec = space.parse(item.spec)
            except SpecError:
                continue  # the space changed since
            cost = candidate_cost(space, spec)
            if item.status == "ok" and not breaches(cost, ctx.limits):
                known.append((spec, item, cost))
        front = analyse([{"accuracy": item.metrics["accuracy"], **cost} for _, item, cost in known], ctx.limits).front
        recalled = [
            Outcome.of(
                spec,
                iteration=0,
                position=position,
                source="memory",
                origin="memory front",
                status="evaluated",
                cost=cost,
                metrics=item.metrics,
                recalled=item.run,
            ).model_dump()
            for position, (spec, item, cost) in enumerate(known[i] for i in front)
        ]
        rundir.trace("tool", 0, "recall", known=len(known), recalled=[c["id"] for c in recalled])
        if not recalled:
            return {}
        return {"history_len": ctx.history.append(recalled), "progressed": 0}

    def design(state: SearchState) -> dict[str, Any]:
        view = ctx.history.view(state)
        iteration, attempt = state.get("iteration", 0), state.get("design_attempts", 0)
        remaining = config.budget_evals - state.get("spent", 0)
        proposed = ctx.strategy.propose(ctx, view, config.batch, attempt)[: max(remaining, 1)]
        proposals = [p.model_dump() for p in proposed]
        rundir.trace("tool", iteration, "design", strategy=ctx.strategy.name, attempt=attempt, proposals=proposals)
        return {"pending": proposals, "design_attempts": attempt + 1}

    def check(state: SearchState) -> dict[str, Any]:
        """Validate, deduplicate (run history, this batch), profile and reject before any training; recall
        what memory holds under the same evaluator settings instead of evaluating it again."""
        ctx.history.sync(state.get("history_len", 0))
        iteration, attempt = state.get("iteration", 0), state.get("design_attempts", 1) - 1
        base = {"iteration": iteration, "attempt": attempt, "source": ctx.strategy.name}
        seen = set(ctx.history.ids)
        accepted, decided = [], []
        for position, proposal in enumerate(state.get("pending", [])):
            provenance = {"position": position, "origin": proposal["origin"], "note": proposal["note"]}
            outcome = checked(proposal["spec"], seen, {**base, **provenance}, ctx.limits_now(state))
            seen.add(outcome.id)
            if outcome.status == "pending":
                accepted.append(outcome.model_dump())
                continue
            details = {"recalled": outcome.recalled} if outcome.recalled else {"reason": outcome.reason}
            rundir.trace("tool", iteration, "check", id=outcome.id, status=outcome.status, **details)
            decided.append(outcome.model_dump())
        rejected = [c for c in decided if c["status"] == "rejected"]
        update: dict[str, Any] = {"pending": accepted, "rejected": rejected}
        if decided:
            update["history_len"] = ctx.history.append(decided)
        if len(rejected) < len(decided):
            update["progressed"] = iteration
        return update

    def checked(raw: Any, seen: set[str], base: dict[str, Any], limits: dict[str, float | None]) -> Outcome:
        try:
            spec = space.parse(raw)
        except SpecError as e:
            return Outcome(
                id="invalid",
                spec=raw if isinstance(raw, dict) else {},
                summary="(invalid)",
                status="rejected",
                reason=str(e)[:500],
                **base,
            )
        outcome = Outcome.of(spec, status="pending", **base)
        if spec.id in seen:
            return outcome.model_copy(update={"status": "rejected", "reason": "duplicate of an earlier candidate"})
        outcome.cost = candidate_cost(space, spec)
        broken = breaches(outcome.cost, limits)
        if broken:
            return outcome.model_copy(update={"status": "rejected", "reason": "; ".join(map(str, broken))})
        known = ctx.memory.recall(space, spec.id, ctx.evaluator.settings_key) if ctx.memory is not None else None
        if known is not None:
            status = "evaluated" if known.status == "ok" else "failed"
            return outcome.model_copy(update={"status": status, "metrics": known.metrics, "recalled": known.run})
        return outcome

    def after_check(state: SearchState) -> str:
        if state.get("pending"):
            return "evaluate"
        return "design" if state.get("design_attempts", 0) < MAX_DESIGN_ATTEMPTS else "analyse"

    def evaluate(state: SearchState) -> dict[str, Any]:
        """Hand the batch to the executor and record each result as it arrives; after a kill, the
        candidates already in evaluations.jsonl are read back, not evaluated again."""
        ctx.history.sync(state.get("history_len", 0))
        iteration, pending = state.get("iteration", 0), state.get("pending", [])
        finished = rundir.finished_evaluations()
        records = {c["id"]: finished[c["id"]] for c in pending if c["id"] in finished}
        trace = partial(rundir.trace, "tool", iteration, "evaluate")
        for candidate_id, record in records.items():
            trace(id=candidate_id, **{k: record[k] for k in EVALUATION_KEYS})
        todo = [c for c in pending if c["id"] not in records]
        progress = get_stream_writer()
        for event in ctx.executor.run([space.parse(c["spec"]) for c in todo]):
            candidate = todo[event.index]
            progress(event.progress(candidate["id"]))
            if event.state == "retrying":
                trace(id=candidate["id"], status="retrying", attempt=event.attempt, reason=event.reason)
            if event.evaluation is None:
                continue
            ev = event.evaluation
            record = {"status": ev.status, "metrics": ev.metrics, "reason": ev.reason, "seconds": ev.seconds}
            record |= {"spec": candidate["spec"], "cost": candidate["cost"]}  # self-contained for `explain`
            rundir.record_evaluation(candidate["id"], record)
            records[candidate["id"]] = record
            trace(id=candidate["id"], **{k: record[k] for k in EVALUATION_KEYS})
        results = []
        for candidate in pending:
            record = records[candidate["id"]]
            status = "evaluated" if record["status"] == "ok" else "failed"
            results.append({**candidate, "status": status, "metrics": record["metrics"], "reason": record["reason"]})
        return {
            "history_len": ctx.history.append(results),
            "spent": state.get("spent", 0) + len(results),
            "progressed": iteration,
            "pending": [],
        }

    def analyse_node(state: SearchState) -> dict[str, Any]:
        done = evaluated(ctx.history.view(state))
        points = [{"accuracy": c["metrics"]["accuracy"], **c["cost"]} for c in done]
        result = analyse(points, ctx.limits)
        front = [done[i]["id"] for i in result.front]
        iteration = state.get("iteration", 0)
        rundir.trace("tool", iteration, "analyse", front=front, hypervolume=result.hypervolume)
        volumes = [*state.get("hypervolume", []), result.hypervolume][-HYPERVOLUME_WINDOW:]
        update: dict[str, Any] = {"front": front, "hypervolume": volumes}
        if config.strategy == "llm" and config.use_explanations:  # only the agents read them
            update["explanation"] = explain(done, front)
            rundir.trace("tool", iteration, "explain", summary=update["explanation"])
        return update

    def explain(done: list[dict[str, Any]], front: list[str]) -> str:
        """Design effects over the history, plus what the most accurate front member relies on."""
        from tinyarch.tools.explain import design_effects

        text = design_effects(space, done, seed=config.seed).summary()
        best = max((c for c in done if c["id"] in front), key=lambda c: c["metrics"]["accuracy"], default=None)
        model_text = ctx.evaluator.explain(space.parse(best["spec"])) if best else None
        if model_text:
            text += f"\nMost accurate front member {best['id']}:\n{model_text}"
        return text

    def critique_node(state: SearchState) -> dict[str, Any]:
        view = ctx.history.view(state)
        iteration, used = state.get("iteration", 0), state.get("spent", 0)
        stop_reason = ""
        if used >= config.budget_evals:
            stop_reason = f"evaluation budget spent ({used} of {config.budget_evals})"
        elif config.budget_time and time.time() - state.get("started_at", ctx.started) > config.budget_time:
            stop_reason = f"time budget of {config.budget_time:.0f} s spent"
        elif config.max_iterations and iteration + 1 >= config.max_iterations:
            stop_reason = f"iteration limit {config.max_iterations} reached (--max-iterations)"
        elif iteration - state.get("progressed", -1) >= IDLE_ITERATIONS:
            stop_reason = f"no new candidate could be evaluated in {IDLE_ITERATIONS} iterations in a row"
        update: dict[str, Any] = {}
        if ctx.llm is not None and config.strategy == "llm" and not stop_reason and critic_due(state):
            advice = critique(ctx, view)
            update["critiqued"] = {"iteration": iteration, "front": state.get("front", [])}
            if advice is not None:
                update["advice"] = advice.model_dump()
                if advice.decision == "stop":
                    ignored = unsupported_stop(advice.reason, state, used, config.budget_evals)
                    if ignored:
                        rundir.trace("tool", iteration, "critique", decision="stop ignored", reason=ignored)
                    else:
                        stop_reason = f"the Critic stopped the search: {advice.reason}"
        update["decision"] = "stop" if stop_reason else "continue"
        update["stop_reason"] = stop_reason
        rundir.trace("tool", iteration, "critique", decision=update["decision"], reason=stop_reason)
        return update

    def remember(state: SearchState) -> dict[str, Any]:
        iteration = state.get("iteration", 0)
        if ctx.memory is not None:
            ctx.history.sync(state.get("history_len", 0))
            evaluated = [
                Evaluated(
                    space.parse(c["spec"]), c["metrics"], c["cost"], "ok" if c["status"] == "evaluated" else "failed"
                )
                for c in ctx.history.this_iteration(iteration)
                if c["status"] in ("evaluated", "failed") and not c["recalled"]
            ]
            ctx.memory.remember(space, ctx.evaluator.settings_key, config.dataset, config.name, evaluated)
            advice = state.get("advice") or {}
            if advice.get("advice"):
                lesson = f"{advice['advice']} Why: {advice.get('why', '')}"
                ctx.memory.add_lesson(lesson, config.name, iteration, space.name, config.dataset)
        return {"iteration": iteration + 1, "design_attempts": 0, "rejected": []}

    def after_remember(state: SearchState) -> str:
        return "finalize" if state.get("decision") == "stop" else "human"

    def human(state: SearchState) -> dict[str, Any]:
        """Apply the inbox's new messages; while paused, wait here (checkpointed) for resume or stop."""
        iteration, read = state.get("iteration", 0), state.get("inbox_read", 0)
        directives, limits = [], dict(state.get("limits") or {})
        stop, paused = "", False
        while True:
            messages = rundir.read_inbox()
            for message in messages[read:]:
                kind = message["kind"]
                if kind == "directive":
                    directives.append(message["text"])
                    limits = tighten(limits, message.get("limits", {}))
                elif kind in ("pause", "resume"):
                    paused = kind == "pause"
                elif kind == "stop":
                    stop = "stopped by the user"
                details = {k: v for k, v in message.items() if k not in ("time", "kind")}
                rundir.trace("tool", iteration, "human", message=kind, **details)
            read = len(messages)
            if stop or not paused:
                break
            time.sleep(PAUSE_POLL_S)
        update: dict[str, Any] = {"inbox_read": read, "directives": directives, "limits": limits}
        if stop:
            update |= {"decision": "stop", "stop_reason": stop}
        return update

    def after_human(state: SearchState) -> str:
        return "finalize" if state.get("decision") == "stop" else "design"

    def finalize(state: SearchState) -> dict[str, Any]:
        """The front's top-k get the full recipe (and KD when a teacher is given); table lookups need none."""
        done = {c["id"]: c for c in evaluated(ctx.history.view(state))}
        final = [done[i] for i in state.get("front", [])[: max(config.final_top_k, 0)]]
        trained = []
        for candidate in final:
            ev = ctx.evaluator.finalize(space.parse(candidate["spec"]))
            final_record = {"status": ev.status, "metrics": ev.metrics, "reason": ev.reason, "firmware": ev.firmware}
            trained.append({**candidate, "final": final_record})
        rundir.trace(
            "tool",
            state.get("iteration", 0),
            "finalize",
            final=[c["id"] for c in trained],
            reason=state.get("stop_reason", ""),
        )
        return {"final": trained}

    graph = StateGraph(SearchState)
    graph.add_node("recall", recall)
    graph.add_node("design", design)
    graph.add_node("check", check)
    graph.add_node("evaluate", evaluate)
    graph.add_node("analyse", analyse_node)
    graph.add_node("critique", critique_node)
    graph.add_node("remember", remember)
    graph.add_node("human", human)
    graph.add_node("finalize", finalize)
    graph.add_edge(START, "recall")
    graph.add_edge("recall", "human")
    graph.add_conditional_edges("human", after_human, ["design", "finalize"])
    graph.add_edge("design", "check")
    graph.add_conditional_edges("check", after_check, ["evaluate", "design", "analyse"])
    graph.add_edge("evaluate", "analyse")
    graph.add_edge("analyse", "critique")
    graph.add_edge("critique", "remember")
    graph.add_conditional_edges("remember", after_remember, ["human", "finalize"])
    graph.add_edge("finalize", END)
    return graph.compile(checkpointer=checkpointer)


def critic_due(state: SearchState) -> bool:
    """The Critic speaks when it has something to judge: the front changed and CRITIC_GAP iterations
    passed since it last spoke, or CRITIC_EVERY iterations passed in any case."""
    last = state.get("critiqued") or {"iteration": -1, "front": []}
    since = state.get("iteration", 0) - last["iteration"]
    return since >= CRITIC_EVERY or (since >= CRITIC_GAP and state.get("front", []) != last["front"])


def unsupported_stop(reason: str, state: SearchState, used: int, budget: int) -> str:
    """Why a Critic's stop is not followed ("" when it is): it must come after half the budget, say why in
    a complete sentence that does not argue for going on, and rest on evidence the run can check, i.e.
    no gain in hypervolume over the last FLAT_ITERATIONS iterations."""
    volumes = state.get("hypervolume", [])
    if used < budget // 2:
        return f"only {used} of {budget} evaluations used; the Critic may stop after half"
    if not reason.strip().endswith((".", "!")) or "continu" in reason.lower():
        return f"the reason does not support stopping: {reason!r}"
    if len(volumes) <= FLAT_ITERATIONS or volumes[-1] > volumes[-1 - FLAT_ITERATIONS] + 1e-9:
        return f"the hypervolume still grew within the last {FLAT_ITERATIONS} iterations"
    return ""


def activity(node: str, strategy: str) -> str:
    """The live views' "now" line while `node` runs."""
    if node == "design":
        return "Designer proposing" if strategy == "llm" else f"{strategy} proposing"
    return ACTIVITY.get(node, node)
