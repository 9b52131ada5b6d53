"""The run's history, held once: in `history.jsonl` on disk and in this process's memory.

The checkpointed graph state holds only the committed length (`history_len`), so a checkpoint stays
the same size however long the run. A node appends its candidates here and returns the new length;
when the checkpoint and the file disagree (a kill between the two), the checkpoint wins and the lines
past it are dropped, so the re-run node writes them again exactly once.
"""

from __future__ import annotations

from typing import Any

from tinyarch.agents.state import RunView, SearchState
from tinyarch.core.rundir import RunDir


class History:
    def __init__(self, rundir: RunDir):
        self.rundir = rundir
        self.records: list[dict[str, Any]] = []
        self.ids: set[str] = set()
        """Every candidate id in the history: what a new proposal must not repeat."""
        self.synced = False

    def sync(self, length: int) -> None:
        """Hold exactly the first `length` records (the checkpoint's); reads the file only on a mismatch."""
        if self.synced and len(self.records) == length:
            return
        on_disk = self.rundir.read_history()
        if len(on_disk) < length:
            raise RuntimeError(
                f"{self.rundir.history} holds {len(on_disk)} candidates, the checkpoint {length}: the run is damaged"
            )
        if len(on_disk) > length:
            self.rundir.truncate_history(length)
        self.records, self.synced = on_disk[:length], True
        self.ids = {c["id"] for c in self.records}

    def append(self, records: list[dict[str, Any]]) -> int:
        """Write `records` after the committed ones; returns the new length for the node's update."""
        self.rundir.append_history(records)
        self.records += records
        self.ids.update(c["id"] for c in records)
        return len(self.records)

    def this_iteration(self, iteration: int) -> list[dict[str, Any]]:
        """The candidates of `iteration`: the history's tail, found without reading the rest."""
        start = len(self.records)
        while start and self.records[start - 1]["iteration"] == iteration:
            start -= 1
        return self.records[start:]

    def view(self, state: SearchState) -> RunView:
        """The state with the history it refers to: what the strategies and agents read."""
        self.sync(state.get("history_len", 0))
        return {**state, "history": self.records}
