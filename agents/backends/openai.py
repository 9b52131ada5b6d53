"""Any OpenAI-compatible server (vLLM, llama.cpp's server, ...) through langchain-openai's ChatOpenAI."""

from __future__ import annotations

import os
from typing import Any

from tinyarch.agents.backends.base import Completion, LLMUnreachable, Message


class OpenAIBackend:
    def __init__(self, model: str, base_url: str | None = None, timeout_s: float = 300.0):
        self.model, self.base_url, self.timeout_s = model, base_url, timeout_s
        self.name = f"openai:{model}"
        self.server = base_url or "https://api.openai.com/v1"

    def complete(
        self, messages: list[Message], schema: dict[str, Any], temperature: float, seed: int | None = None
    ) -> Completion:
        import openai
        from langchain_openai import ChatOpenAI

        chat = ChatOpenAI(
            model=self.model,
            base_url=self.base_url,
            api_key=os.environ.get("OPENAI_API_KEY", "none"),
            temperature=temperature,
            seed=seed,
            timeout=self.timeout_s,
            max_retries=0,
        )
        response_format = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
        try:
            answer = chat.bind(response_format=response_format).invoke([(m["role"], m["content"]) for m in messages])
        except (openai.APIConnectionError, openai.APITimeoutError, openai.InternalServerError) as e:
            raise LLMUnreachable(f"{self.base_url or 'OpenAI'}: {type(e).__name__}: {e}") from None
        usage = answer.usage_metadata or {}
        return Completion(str(answer.content), usage.get("input_tokens", 0), usage.get("output_tokens", 0))

    def probe(self) -> None:
        """GET /models: the server answers (an error status below 500 still means it is up)."""
        import httpx

        headers = {"Authorization": f"Bearer {os.environ.get('OPENAI_API_KEY', 'none')}"}
        try:
            response = httpx.get(f"{self.server.rstrip('/')}/models", headers=headers, timeout=10)
        except httpx.HTTPError as e:
            raise LLMUnreachable(f"{self.server}: {type(e).__name__}: {e}") from None
        if response.status_code >= 500:
            raise LLMUnreachable(f"{self.server}: HTTP {response.status_code} from GET /models")
