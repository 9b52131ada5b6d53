"""The run directory: config, LangGraph checkpoints, traces and evaluations of one search.

```
runs/NAME/config.yaml          the RunConfig
runs/NAME/checkpoints.sqlite   LangGraph's SQLite checkpointer (resume after a kill)
runs/NAME/traces.jsonl         every LLM call and tool result, one JSON object a line
runs/NAME/evaluations.jsonl    every finished evaluation, so a resumed run never repeats one
runs/NAME/candidates/ID/       model directories of trained candidates
runs/NAME/inbox.jsonl          the user's directives and commands (`tinyarch chat`), read by the search
runs/NAME/search.pid           present while a search process runs this directory
```
Lines are appended and flushed to disk one at a time, so a kill loses at most the line in flight.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


class RunDir:
    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "candidates").mkdir(exist_ok=True)

    config = property(lambda self: self.root / "config.yaml")
    checkpoints = property(lambda self: self.root / "checkpoints.sqlite")
    traces = property(lambda self: self.root / "traces.jsonl")
    evaluations = property(lambda self: self.root / "evaluations.jsonl")
    candidates = property(lambda self: self.root / "candidates")
    inbox = property(lambda self: self.root / "inbox.jsonl")
    pid_file = property(lambda self: self.root / "search.pid")

    @staticmethod
    def _append(path: Path, record: dict[str, Any]) -> None:
        with path.open("a") as f:
            f.write(json.dumps(record, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    @staticmethod
    def _read(path: Path) -> list[dict[str, Any]]:
        if not path.is_file():
            return []
        records = []
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
        return records

    def trace(self, kind: str, iteration: int, agent: str, **payload: Any) -> None:
        """One step of one agent or tool: what it was given, what it produced, what went wrong."""
        self._append(
            self.traces, {"time": time.time(), "kind": kind, "iteration": iteration, "agent": agent, **payload}
        )

    def read_traces(self) -> list[dict[str, Any]]:
        return self._read(self.traces)

    def record_evaluation(self, candidate_id: str, evaluation: dict[str, Any]) -> None:
        self._append(self.evaluations, {"id": candidate_id, **evaluation})

    def finished_evaluations(self) -> dict[str, dict[str, Any]]:
        return {r["id"]: r for r in self._read(self.evaluations)}

    def post(self, kind: str, **payload: Any) -> None:
        """A message for the search (directive, pause, resume, stop). Appending a line is atomic, so a
        chat never writes the search's checkpoint database and the two never contend for it."""
        self._append(self.inbox, {"time": time.time(), "kind": kind, **payload})

    def read_inbox(self) -> list[dict[str, Any]]:
        return self._read(self.inbox)

    def paused(self) -> bool:
        """Whether the user's last pause/resume was a pause (the search waits before its next design step)."""
        switches = [m["kind"] for m in self.read_inbox() if m["kind"] in ("pause", "resume")]
        return bool(switches) and switches[-1] == "pause"

    def search_running(self) -> bool:
        """Whether a live search process holds this directory (its pid file names a running process)."""
        try:
            os.kill(int(self.pid_file.read_text()), 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return False
        except PermissionError:
            return True
        return True
