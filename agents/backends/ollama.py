"""Ollama through langchain-ollama's ChatOllama, with the JSON Schema passed as Ollama's `format`."""

from __future__ import annotations

from typing import Any

from tinyarch.agents.backends.base import Completion, LLMUnavailable, Message


class OllamaBackend:
    def __init__(self, model: str, base_url: str = "http://127.0.0.1:11434", timeout_s: float = 300.0):
        self.model, self.base_url, self.timeout_s = model, base_url, timeout_s
        self.name = f"ollama:{model}"

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
        except (httpx.HTTPError, ResponseError, ConnectionError) as e:
            raise LLMUnavailable(f"Ollama at {self.base_url}: {type(e).__name__}: {e}") from None
        usage = answer.usage_metadata or {}
        return Completion(str(answer.content), usage.get("input_tokens", 0), usage.get("output_tokens", 0))
