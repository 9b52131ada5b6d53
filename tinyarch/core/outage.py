"""Riding out a server's outage: a night's search should survive an LLM or Chroma server that restarts.

`Outage(service, transient, max_wait_s).call(fn)` calls `fn`; when it fails in a way `transient` says is
the server's (connection refused, timeout, HTTP 5xx), it waits with bounded exponential back-off and
tries again, reporting each wait and the recovery to `report`. After `max_wait_s` of failures in a row it
raises `ServiceDown`. Everything else `fn` raises passes through at once. At start-up `probe(fn)` tries
once, so an unreachable server fails the command in seconds instead of after a long wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, TypeVar

from tinyarch.core.errors import TinyarchError

T = TypeVar("T")


def span(seconds: float) -> str:
    """'40 s', or '12 min' from two minutes on."""
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def error_text(error: BaseException) -> str:
    """The error as one short line: its type and message."""
    return " ".join(f"{type(error).__name__}: {error}".split())[:300]


class ServiceDown(TinyarchError, RuntimeError):
    """A server stayed unreachable: at start (`waited_s` None), or past the run's outage wait, in which
    case the run stopped at its last checkpoint and can be resumed."""

    def __init__(self, service: str, error: str, waited_s: float | None = None):
        self.service, self.error, self.waited_s = service, error, waited_s
        if waited_s is None:
            message = f"{service} is unreachable ({error})"
        else:
            message = f"{service} was unreachable for {span(waited_s)} ({error}); the run stopped in a resumable state"
        super().__init__(message)


@dataclass(frozen=True)
class OutageEvent:
    """One wait for a server, or its recovery: what the traces record and the live views show."""

    service: str
    state: Literal["waiting", "recovered", "gave up"]
    waited_s: float
    retry_in_s: float = 0.0
    error: str = ""

    def record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> OutageEvent:
        """The event back from its record, read from a trace (which carries more keys)."""
        return cls(**{f.name: record[f.name] for f in fields(cls)})

    def text(self) -> str:
        if self.state == "recovered":
            return f"{self.service} is back after {span(self.waited_s)}"
        if self.state == "gave up":
            return f"{self.service} unreachable for {span(self.waited_s)} ({self.error}): the run stops, resumable"
        return (
            f"waiting for {self.service}: {span(self.waited_s)} so far, retry in {span(self.retry_in_s)} ({self.error})"
        )


@dataclass
class Outage:
    """How calls to one server ride out its outages. `service` names it in messages ("the Chroma server at
    URL"); `transient(error)` says whether an error means the server is unreachable rather than a bad call."""

    service: str
    transient: Callable[[Exception], bool]
    max_wait_s: float
    report: Callable[[OutageEvent], None] | None = None
    first_step_s: float = 1.0
    max_step_s: float = 30.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def call(self, fn: Callable[[], T]) -> T:
        """`fn()`, retried while the server is unreachable, up to `max_wait_s` counted from the first failure."""
        first_failure: float | None = None
        step = self.first_step_s
        while True:
            try:
                result = fn()
            except Exception as e:
                if not self.transient(e):
                    raise
                now = self.clock()
                first_failure = now if first_failure is None else first_failure
                waited = now - first_failure
                if waited >= self.max_wait_s:
                    self._report(OutageEvent(self.service, "gave up", waited, error=error_text(e)))
                    raise ServiceDown(self.service, error_text(e), waited) from e
                pause = min(step, self.max_wait_s - waited)
                self._report(OutageEvent(self.service, "waiting", waited, pause, error_text(e)))
                self.sleep(pause)
                step = min(step * 2, self.max_step_s)
                continue
            if first_failure is not None:
                self._report(OutageEvent(self.service, "recovered", self.clock() - first_failure))
            return result

    def probe(self, fn: Callable[[], T]) -> T:
        """`fn()` tried once, at start-up: an unreachable server is a `ServiceDown` at once."""
        try:
            return fn()
        except Exception as e:
            if not self.transient(e):
                raise
            raise ServiceDown(self.service, error_text(e)) from e

    def _report(self, event: OutageEvent) -> None:
        if self.report is not None:
            self.report(event)
