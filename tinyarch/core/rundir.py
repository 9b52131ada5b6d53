"""The run directory: config, LangGraph checkpoints, traces and evaluations of one search.

```
runs/NAME/config.yaml          the RunConfig
runs/NAME/checkpoints.sqlite   LangGraph's SQLite checkpointer (resume after a kill): the small graph state,
                               the last few checkpoints only
runs/NAME/history.jsonl        every candidate of the run and its fate, in order, written once; the checkpointed
                               state holds its committed length (`history_len`), lines past it are a killed
                               node's and are dropped on resume
runs/NAME/traces.jsonl         every LLM call and tool result, one JSON object a line
runs/NAME/evaluations.jsonl    every finished evaluation as it finishes, so a resumed run never repeats one
runs/NAME/candidates/ID/       model directories of trained candidates
runs/NAME/inbox.jsonl          the user's directives and commands (`tinyarch chat`), read by the search
runs/NAME/search.lock          locked (flock) by the search process running this directory; holds its pid
```
Lines are appended and flushed to disk one at a time, so a kill loses at most the line in flight.
`load_run` reads all of it at once (the checkpoint read-only) for the chat, the report and the web app.

A search is alive while its process holds an exclusive `flock` on `search.lock`. The kernel drops
the lock when the process ends in any way (kill -9 included), so a stale file or a reused pid
never makes a dead search look alive. The file stays; only its lock says anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from tinyarch.core.config import RunConfig

_HELD: set[int] = set()
"""Descriptors of the search locks this process holds."""


def _close_held_in_child() -> None:
    """A forked child does not inherit the search: its copies of the lock's descriptor are closed (closing a
    copy leaves the parent's lock in place), so a child that outlives a killed search never keeps it alive."""
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_held_in_child)


class SearchLock:
    """This process's hold on a run directory; `release()` (or leaving the `with` block, or dying) frees it."""

    def __init__(self, fd: int):
        self.fd: int | None = fd

    def release(self) -> None:
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        _HELD.discard(fd)
        os.ftruncate(fd, 0)  # no pid of a finished search left behind
        os.close(fd)  # the last descriptor of the lock: the kernel releases it

    def __enter__(self) -> SearchLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class RunDir:
    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "candidates").mkdir(exist_ok=True)
        self._finished: dict[str, dict[str, Any]] = {}
        self._finished_offset = 0
        """evaluations.jsonl is read from here on: a long run reads each line once, not once per batch."""

    config = property(lambda self: self.root / "config.yaml")
    checkpoints = property(lambda self: self.root / "checkpoints.sqlite")
    history = property(lambda self: self.root / "history.jsonl")
    traces = property(lambda self: self.root / "traces.jsonl")
    evaluations = property(lambda self: self.root / "evaluations.jsonl")
    candidates = property(lambda self: self.root / "candidates")
    inbox = property(lambda self: self.root / "inbox.jsonl")
    lock_file = property(lambda self: self.root / "search.lock")

    @staticmethod
    def _lines(records: list[dict[str, Any]]) -> str:
        return "".join(json.dumps(record, default=str) + "\n" for record in records)

    @classmethod
    def _append(cls, path: Path, *records: dict[str, Any]) -> None:
        with path.open("a") as f:
            f.write(cls._lines(list(records)))
            f.flush()
            os.fsync(f.fileno())

    @staticmethod
    def _parse(lines: list[str]) -> list[dict[str, Any]]:
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
        return records

    @classmethod
    def _read(cls, path: Path) -> list[dict[str, Any]]:
        return cls._parse(path.read_text().splitlines()) if path.is_file() else []

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
        """Every finished evaluation by candidate id; only the lines added since the last call are read."""
        if self.evaluations.is_file():
            with self.evaluations.open("rb") as f:
                f.seek(self._finished_offset)
                tail = f.read()
            complete = tail[: tail.rfind(b"\n") + 1]  # a line still being written waits for the next call
            self._finished_offset += len(complete)
            self._finished.update((r["id"], r) for r in self._parse(complete.decode().splitlines()))
        return dict(self._finished)

    def append_history(self, records: list[dict[str, Any]]) -> None:
        self._append(self.history, *records)

    def read_history(self, length: int | None = None) -> list[dict[str, Any]]:
        """The run's candidates in order: the first `length` (the checkpoint's committed count) or all."""
        records = self._read(self.history)
        return records if length is None else records[:length]

    def truncate_history(self, length: int) -> None:
        """Drop the lines past the committed `length` (a killed node's), atomically."""
        kept = self.read_history(length)
        partial = self.history.with_suffix(".jsonl.tmp")
        partial.write_text(self._lines(kept))
        os.replace(partial, self.history)

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

    def lock_search(self, wait_s: float = 1.0) -> SearchLock | None:
        """Take this directory for this process's search, or None when a live search holds it.

        The lock is held until released or until this process dies. `wait_s` rides out the instant a
        `search_running` probe holds its shared lock; a real search holds the lock far longer.
        """
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return None
                time.sleep(0.02)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD.add(fd)
        return SearchLock(fd)

    def search_running(self) -> bool:
        """Whether a live search process holds this directory's lock (another process, or this one)."""
        try:
            fd = os.open(self.lock_file, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # also drops the shared lock taken when no search held it
        return False

    def search_pid(self) -> int | None:
        """The pid of the live search holding this directory, for display; None when none holds it."""
        if not self.search_running():
            return None
        try:
            return int(self.lock_file.read_text())
        except (FileNotFoundError, ValueError):
            return None  # taken an instant ago: the pid is not written yet


@dataclass
class Run:
    """Everything a run directory holds, read once: what the chat, the report and the web app show."""

    root: Path
    config: RunConfig
    traces: list[dict[str, Any]]
    evaluations: dict[str, dict[str, Any]]
    state: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    """Every candidate and its fate, in order (as far as the checkpoint has committed)."""
    notes: list[str] = field(default_factory=list)

    @cached_property
    def evaluated(self) -> list[dict[str, Any]]:
        """Evaluated candidates (recalled ones included), most accurate first; from the history, or from
        evaluations.jsonl when there is none."""
        done = [c for c in self.history if c["status"] == "evaluated"]
        if not self.history:
            done = [
                {"id": i, "metrics": r["metrics"], "cost": r.get("cost", {}), "spec": r.get("spec", {}), "summary": ""}
                for i, r in self.evaluations.items()
                if r["status"] == "ok"
            ]
        return sorted(done, key=lambda c: -c["metrics"]["accuracy"])

    @cached_property
    def candidates(self) -> dict[str, dict[str, Any]]:
        """The history's candidates by id, each as it first came (a later duplicate was rejected for being one;
        invalid proposals have no id)."""
        first: dict[str, dict[str, Any]] = {}
        for c in self.history:
            if c.get("id") != "invalid":
                first.setdefault(c["id"], c)
        return first

    @property
    def front(self) -> list[str]:
        analysed = [t for t in self.traces if t.get("agent") == "analyse"]
        front: list[str] = self.state.get("front") or (analysed[-1].get("front", []) if analysed else [])
        return front


def load_run(root: Path) -> Run:
    """The run in `root` (config.yaml must exist); the checkpoint is opened read-only, a search may be writing."""
    config = RunConfig.load(root / "config.yaml")
    rundir = RunDir(root)
    notes: list[str] = []
    state: dict[str, Any] = {}
    if rundir.checkpoints.is_file():
        try:
            state = read_state(rundir.checkpoints, config.name)
        except sqlite3.Error as e:
            notes.append(f"checkpoint unreadable ({e}); candidates come from evaluations.jsonl")
    history = rundir.read_history(state.get("history_len") if state else None)
    return Run(root, config, rundir.read_traces(), rundir.finished_evaluations(), state, history, notes)


def read_state(path: Path, thread: str) -> dict[str, Any]:
    """The latest SearchState of `thread` in a LangGraph SQLite checkpoint, without building the graph
    (needs the llm extra's langgraph)."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    try:
        found = SqliteSaver(connection).get_tuple({"configurable": {"thread_id": thread}})
    finally:
        connection.close()
    return dict(found.checkpoint["channel_values"]) if found else {}
