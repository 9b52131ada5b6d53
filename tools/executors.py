"""Where candidate evaluations run: in this process (`local`, the default) or as Ray tasks (`ray`).

An executor takes a batch of specs and yields `TrialEvent`s as trials are queued, start, are
retried and finish, so the graph records each result the moment it exists and the live display
shows every trial. Under Ray the evaluator, with its dataset or table, goes into the object store
once per search and each worker process fetches it once, never once per trial. A trial whose
worker dies (killed, out of memory, node lost) runs again up to `max_retries` times, then comes
back as a failed `Evaluation` with the reason, so the search goes on.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tinyarch.core.errors import TinyarchError
from tinyarch.tools.evaluators import Evaluation

POLL_S = 0.25
"""How often the driver collects the workers' start notices while it waits for results."""
CONNECT_TIMEOUT_S = 5.0


class ExecutorError(TinyarchError, RuntimeError):
    """The executor cannot start (nothing at the Ray address, a trial no node can hold): one line."""


@dataclass(frozen=True)
class TrialEvent:
    """A step of the batch's trial `index`: "queued", "running", "retrying", or "done" with its evaluation."""

    index: int
    state: str
    attempt: int = 1
    where: str = ""
    reason: str = ""
    evaluation: Evaluation | None = None

    def progress(self, candidate_id: str) -> dict[str, Any]:
        """What a live view shows of this step (JSON-ready)."""
        payload = {"id": candidate_id, "state": self.state, "attempt": self.attempt, "where": self.where}
        if self.evaluation is None:
            return {**payload, "reason": self.reason}
        ev = self.evaluation
        return {**payload, "status": ev.status, "metrics": ev.metrics, "reason": ev.reason, "seconds": ev.seconds}


class Executor(Protocol):
    def run(self, specs: Sequence[Any]) -> Iterator[TrialEvent]:
        """Evaluate a batch; each trial's last event is exactly one "done" carrying its evaluation."""
        ...

    def close(self) -> None: ...


def here() -> str:
    """host:pid of this process, to say where a trial runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


class LocalExecutor:
    """Evaluates in this process, one trial after another: the default, and the reference Ray must match."""

    def __init__(self, evaluator: Any):
        self.evaluator = evaluator

    def run(self, specs: Sequence[Any]) -> Iterator[TrialEvent]:
        yield from (TrialEvent(i, "queued") for i in range(len(specs)))
        for i, spec in enumerate(specs):
            yield TrialEvent(i, "running", where=here())
            yield TrialEvent(i, "done", where=here(), evaluation=self.evaluator.evaluate(spec))

    def close(self) -> None:
        """Nothing to release."""


_evaluators: dict[str, Any] = {}
"""In each Ray worker process: the current search's evaluator by object id, fetched once."""


def _trial(boxed: list[Any], spec: Any, index: int, attempt: int, started: Any) -> tuple[Evaluation, str]:
    """The Ray task. The evaluator's reference comes boxed in a list so that Ray hands over the reference,
    not a fresh copy of the object for every trial."""
    import ray

    started.put_nowait((index, attempt, here()))
    key = boxed[0].hex()
    if key not in _evaluators:
        _evaluators.clear()  # a worker serves one search at a time
        _evaluators[key] = ray.get(boxed[0])
    return _evaluators[key].evaluate(spec), here()


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def connect(address: str | None) -> None:
    """ray.init at `address` (None: the cluster started on this machine, or a new local instance)."""
    import ray

    if address not in (None, "auto"):  # Ray itself retries a dead address for minutes
        host, port = address.removeprefix("ray://").rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as e:
            raise ExecutorError(
                f"cannot connect to Ray at {address}: {e.strerror or e} (is `ray start --head` running there?)"
            ) from None
    dashboard = False if address is None else None  # None: Ray's default
    try:  # worker output would scroll through the live display; it stays in Ray's session logs
        ray.init(address=address, include_dashboard=dashboard, log_to_driver=False, logging_level=logging.WARNING)
    except ConnectionError as e:
        raise ExecutorError(f"cannot connect to Ray at {address}: {_first_line(e)}") from None


def check_fits(cpus: float, gpus: float) -> None:
    """Fail now, not hang: Ray would wait forever for a node that can hold a trial."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n["Alive"]]
    if not any(r.get("CPU", 0) >= cpus and r.get("GPU", 0) >= gpus for r in nodes):
        most_cpus = max((r.get("CPU", 0) for r in nodes), default=0)
        most_gpus = max((r.get("GPU", 0) for r in nodes), default=0)
        raise ExecutorError(
            f"no node of the Ray cluster can hold a trial of {cpus:g} CPUs and {gpus:g} GPUs "
            f"(the largest have {most_cpus:g} CPUs, {most_gpus:g} GPUs); lower --cpus-per-trial/--gpus-per-trial"
        )


class RayExecutor:
    """Each trial is a Ray task holding `cpus_per_trial` CPUs and `gpus_per_trial` GPUs wherever Ray places it.

    Uses the Ray instance this process is already connected to, else connects to `address`.
    """

    def __init__(
        self,
        evaluator: Any,
        address: str | None = None,
        cpus_per_trial: float = 1.0,
        gpus_per_trial: float = 0.0,
        max_retries: int = 3,
    ):
        import ray
        from ray.util.queue import Queue

        self.owns_ray = not ray.is_initialized()
        if self.owns_ray:
            connect(address)
        check_fits(cpus_per_trial, gpus_per_trial)
        self.evaluator = ray.put(evaluator)
        self.started = Queue(actor_options={"num_cpus": 0})
        self.max_retries = max_retries
        # Ray's own retries are off: ours count the deaths, say why, and show each retry.
        self.task = ray.remote(_trial).options(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_retries=0)

    def run(self, specs: Sequence[Any]) -> Iterator[TrialEvent]:
        import ray
        from ray.exceptions import (
            LocalRayletDiedError,
            NodeDiedError,
            ObjectLostError,
            OutOfMemoryError,
            WorkerCrashedError,
        )

        died = (WorkerCrashedError, OutOfMemoryError, NodeDiedError, LocalRayletDiedError, ObjectLostError)
        attempts = [1] * len(specs)
        running = {self._submit(specs, i, 1): i for i in range(len(specs))}
        yield from (TrialEvent(i, "queued") for i in range(len(specs)))
        polled = time.monotonic()
        try:
            while running:
                ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
                if time.monotonic() - polled >= POLL_S:  # a round trip per poll, not per result
                    polled = time.monotonic()
                    current = set(running.values())
                    for i, attempt, where in self._started():
                        if i in current and attempt == attempts[i]:  # not a finished trial or a dead attempt
                            yield TrialEvent(i, "running", attempt, where)
                for ref in ready:
                    i = running.pop(ref)
                    try:
                        evaluation, where = ray.get(ref)
                    except died as e:
                        reason = _first_line(e)
                        if attempts[i] > self.max_retries:
                            failed = Evaluation("failed", reason=f"worker died {attempts[i]} times: {reason}")
                            yield TrialEvent(i, "done", attempts[i], evaluation=failed)
                            continue
                        attempts[i] += 1
                        running[self._submit(specs, i, attempts[i])] = i
                        yield TrialEvent(i, "retrying", attempts[i], reason=reason)
                        continue
                    yield TrialEvent(i, "done", attempts[i], where, evaluation=evaluation)
        finally:  # the caller stopped early (an error, a kill): free the cluster
            for ref in running:
                ray.cancel(ref, force=True)

    def _submit(self, specs: Sequence[Any], i: int, attempt: int) -> Any:
        return self.task.remote([self.evaluator], specs[i], i, attempt, self.started)

    def _started(self) -> list[tuple[int, int, str]]:
        n = self.started.qsize()
        return self.started.get_nowait_batch(n) if n else []

    def close(self) -> None:
        import ray

        self.started.shutdown()
        if self.owns_ray:
            ray.shutdown()
