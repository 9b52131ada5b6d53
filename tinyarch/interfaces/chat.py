"""`tinyarch chat`: talk to a run, live or not.

Commands and directives are handled by rules and reach the search through the run's inbox
(`RunDir.post`), which the graph's `human` node applies before the next design step; questions go
to an LLM that is given the run's data and must cite candidate ids. Reading uses the traces, the
evaluations and a read-only view of the checkpoint, so a chat never blocks the search.
"""

from __future__ import annotations

import re
from pathlib import Path

from tinyarch.agents.context import describe
from tinyarch.agents.directives import is_question, parse_directive, tighten
from tinyarch.agents.llm import StructuredLLM
from tinyarch.core.budget import cost_figures, limit_texts
from tinyarch.core.config import RunConfig
from tinyarch.core.rundir import Run, RunDir, load_run
from tinyarch.prompts import render

HELP = """Plain sentences: a directive ("stay under 60 M MACs", "only kernel 3 in the first two stages")
or a question ("why did you drop SE?", "what is on the front?").
/status  where the run is        /front   the Pareto front        /budget  the limits the checks enforce
/why ID  how a candidate came about and how it did                /pause /resume /stop   steer the search
/help    this text               /quit    leave (the search goes on)"""
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string", "maxLength": 600},
        "cites": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 6},
    },
    "required": ["answer", "cites"],
    "additionalProperties": False,
}
ID = re.compile(r"\b[0-9a-f]{12}\b")


class Chat:
    """One conversation with the run in `root`; `handle` turns one line into the reply to print."""

    def __init__(self, root: Path, llm: StructuredLLM | None = None):
        self.root, self.rundir, self._llm = root, RunDir(root), llm
        self.config = RunConfig.load(self.rundir.config)

    def handle(self, line: str) -> str:
        line = line.strip()
        if not line:
            return ""
        if line.startswith("/"):
            command, _, argument = line[1:].partition(" ")
            handler = getattr(self, f"cmd_{command}", None)
            if handler is None:
                return f"unknown command /{command}; /help lists them"
            return handler(argument.strip())
        return self.ask(line) if is_question(line) else self.direct(line)

    # ------------------------------------------------------------------ reading the run

    def _run(self) -> Run:
        return load_run(self.root)

    def _pending_limits(self, run: Run) -> dict[str, float]:
        """Limits in effect once the inbox is applied: the state's, tightened by unread directives."""
        limits = dict(run.state.get("limits") or {})
        for message in self.rundir.read_inbox()[run.state.get("inbox_read", 0) :]:
            limits = tighten(limits, message.get("limits", {}))
        return limits

    def limits_text(self, run: Run) -> str:
        tightened = self._pending_limits(run)
        return ", ".join(limit_texts(self.config.limits(tightened), tightened)) or "none"

    # ------------------------------------------------------------------ commands

    def cmd_help(self, _: str) -> str:
        return HELP

    def cmd_quit(self, _: str) -> str:
        raise EOFError

    def cmd_status(self, _: str) -> str:
        run = self._run()
        history = list(run.candidates.values())
        done = [c for c in history if c["status"] == "evaluated"]
        best = max(done, key=lambda c: c["metrics"]["accuracy"], default=None)
        inbox, paused = self.rundir.read_inbox(), self.rundir.paused()
        live = "running" if self.rundir.search_running() else "not running (resume: tinyarch search --resume NAME)"
        lines = [
            f"{self.config.name}: {live}{', paused' if paused else ''}; iteration {run.state.get('iteration', 0)}",
            f"{len(done)} evaluated of {self.config.budget_evals}, "
            f"{sum(c['status'] == 'rejected' for c in history)} rejected before training",
            f"best: {best['metrics']['accuracy']:.2f} % {best['id']}" if best else "best: (none yet)",
            f"budget: {self.limits_text(run)}",
            f"directives: {'; '.join(run.state.get('directives', [])) or '(none)'}",
        ]
        waiting = [m for m in inbox[run.state.get("inbox_read", 0) :] if m["kind"] == "directive"]
        if waiting:
            lines.append(f"waiting for the next design step: {'; '.join(m['text'] for m in waiting)}")
        if run.state.get("stop_reason"):
            lines.append(f"stopped: {run.state['stop_reason']}")
        return "\n".join(lines)

    def cmd_front(self, _: str) -> str:
        run = self._run()
        candidates = run.candidates
        front = sorted(
            (candidates[i] for i in run.state.get("front", []) if i in candidates),
            key=lambda c: -c["metrics"]["accuracy"],
        )
        return describe(front, limit=20)

    def cmd_budget(self, _: str) -> str:
        return f"the checks enforce: {self.limits_text(self._run())}"

    def cmd_pause(self, _: str) -> str:
        self.rundir.post("pause")
        return "pause sent: the search stops before its next design step (/resume to go on)"

    def cmd_resume(self, _: str) -> str:
        self.rundir.post("resume")
        return "resume sent"

    def cmd_stop(self, _: str) -> str:
        self.rundir.post("stop")
        return "stop sent: the search finalizes before its next design step"

    def cmd_why(self, candidate_id: str) -> str:
        run = self._run()
        return self._why(run, candidate_id) or f"no candidate {candidate_id!r} in this run"

    def _why(self, run: Run, candidate_id: str) -> str | None:
        c = run.candidates.get(candidate_id)
        if c is None:
            return None
        lines = [f"{c['id']}: {c['summary']}"]
        origin = f"proposed by {c['source']} in iteration {c['iteration']} (attempt {c.get('attempt', 0)})"
        origin += f": {c['origin']}" if c.get("origin") else ""
        origin += f"; {c['note']}" if c.get("note") else ""
        calls = [
            t
            for t in run.traces
            if t.get("agent") == "designer" and t.get("iteration") == c["iteration"] and t.get("parsed")
        ]
        if calls:
            origin += f"; the Designer's rationale: {calls[-1]['parsed'].get('rationale', '')!r}"
        lines.append(origin)
        if c["status"] == "evaluated":
            on_front = "on the front" if c["id"] in run.state.get("front", []) else "not on the front"
            cost = ", ".join(cost_figures(c.get("cost", {})))
            lines.append(f"evaluated: {c['metrics'].get('accuracy', 0):.2f} % ({cost}); {on_front}")
        else:
            lines.append(f"{c['status']}: {c.get('reason') or '-'}")
        explanation = self.rundir.candidates / c["id"] / "explanation.json"
        if explanation.is_file():
            from tinyarch.tools.explain import ModelExplanation

            lines.append(ModelExplanation.model_validate_json(explanation.read_text()).summary())
        return "\n".join(lines)

    # ------------------------------------------------------------------ directives and questions

    def direct(self, text: str) -> str:
        directive = parse_directive(text)
        self.rundir.post("directive", text=directive.text, limits=directive.limits)
        run = self._run()
        directives = [*run.state.get("directives", []), directive.text]
        reply = [f'the Designer and Critic will read: "User directives: {"; ".join(directives)}"']
        if directive.limits:
            reply.append(f"the checks will reject anything over: {directive.describe()}")
        if not self.rundir.search_running():
            reply.append(f"(the run is not running; it applies on: tinyarch search --resume {run.config.name})")
        return "\n".join(reply)

    def ask(self, question: str) -> str:
        run = self._run()
        candidates = run.candidates
        done = [c for c in candidates.values() if c["status"] == "evaluated"]
        on_front = [c for c in done if c["id"] in run.state.get("front", [])]
        front = sorted(on_front, key=lambda c: -c["metrics"]["accuracy"])
        named = [self._why(run, i) for i in ID.findall(question)]
        advice = run.state.get("advice") or {}
        user = render(
            "chat_user",
            run=self.config.name,
            strategy=self.config.strategy,
            space_name=self.config.space,
            dataset=self.config.dataset,
            iteration=run.state.get("iteration", 0),
            evaluated=len(done),
            budget=self.limits_text(run),
            directives="; ".join(run.state.get("directives", [])) or "(none)",
            front=describe(front),
            recent=describe(done[-6:][::-1]),
            rejected=describe([c for c in candidates.values() if c["status"] == "rejected"][-4:]),
            advice=f"{advice.get('advice', '')} Why: {advice.get('why', '')}" if advice else "(none yet)",
            explanations=run.state.get("explanation") or "(none yet)",
            named="\n".join(n for n in named if n) or "(none)",
            question=question,
        )
        messages = [{"role": "system", "content": render("chat_system")}, {"role": "user", "content": user}]
        answer, calls = self.llm.ask("chat", messages, ANSWER_SCHEMA)
        for call in calls:
            self.rundir.trace("llm", run.state.get("iteration", 0), "chat", **call.model_dump(exclude={"agent"}))
        if answer is None:
            return "the model gave no valid answer (see tinyarch trace --agent chat)"
        cites = [i for i in answer["cites"] if i in candidates]
        return answer["answer"] + (f"\n(cites: {', '.join(cites)})" if cites else "")

    @property
    def llm(self) -> StructuredLLM:
        """The run's own LLM, loaded on the first question."""
        if self._llm is None:
            from tinyarch.agents.llm import make_backend

            self._llm = StructuredLLM(make_backend(self.config.llm, self.config.llm_url, seed=self.config.seed))
        return self._llm
