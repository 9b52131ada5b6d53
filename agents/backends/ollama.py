"""Ollama through langchain-ollama's ChatOllama, with the JSON Schema passed as Ollama's `format`."""

from __future__ import annotations

from typing import Any

from tinyarch.agents.backends.base import Completion, LLMUnavailable, LLMUnreachable, Message


class OllamaBackend:
    def __init__(self, model: str, base_url: str = "http://127.0.0.1:11434", timeout_s: float = 300.0):
        self.model, self.base_url, self.timeout_s = model, base_url, timeout_s
        self.name = f"ollama:{model}"
        self.server = base_url

    def complete(
        self, messages: list[Message], schema: dict[str, Any], temperature: float, seed: int | None = None
    ) -> Completion:
        import httpx
        from langchain_ollama import ChatOllama
        from ollama import ResponseError

        chat = ChatOllama(
            model=self.model,
            base_url=self.base_url,
            format=schema,
            temperature=temperature,
            seed=seed,
            client_kwargs={"timeout": self.timeout_s},
        )
        try:
            answer = chat.invoke([(m["role"], m["content"]) for m in messages])
        except (httpx.TransportError, ConnectionError) as e:
            raise LLMUnreachable(f"Ollama at {self.base_url}: {type(e).__name__}: {e}") from None
        except ResponseError as e:
            error = LLMUnreachable if e.status_code >= 500 else LLMUnavailable
            raise error(f"Ollama at {self.base_url}: {type(e).__name__}: {e}") from None
        except httpx.HTTPError as e:
            raise LLMUnavailable(f"Ollama at {self.base_url}: {type(e).__name__}: {e}") from None
        usage = answer.usage_metadata or {}
        return Completion(str(answer.content), usage.get("input_tokens", 0), usage.get("output_tokens", 0))

    def probe(self) -> None:
        """GET /api/tags: the server answers and has the model ("NAME" matches "NAME:latest")."""
        import httpx

        try:
            response = httpx.get(f"{self.base_url.rstrip('/')}/api/tags", timeout=10)
            response.raise_for_status()
        except httpx.HTTPError as e:
            raise LLMUnreachable(f"Ollama at {self.base_url}: {type(e).__name__}: {e}") from None
        names = {m.get(key) for m in response.json().get("models", []) for key in ("name", "model")}
        if self.model not in names and f"{self.model}:latest" not in names:
            served = ", ".join(sorted(n for n in names if n)) or "none"
            raise LLMUnavailable(
                f"Ollama at {self.base_url} has no model {self.model!r} (it has: {served}); "
                f"pull it with: ollama pull {self.model}"
            )
