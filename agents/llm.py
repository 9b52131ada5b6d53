"""Structured LLM calls: one backend chosen by a model string, answers validated, bad answers sent back.

`make_backend("llamacpp:qwen2.5-coder-0.5b" | "llamacpp:/path/model.gguf" | "ollama:MODEL" | "openai:MODEL")`
picks the provider. `StructuredLLM.ask` sends a chat constrained by a JSON Schema, parses the
answer, checks it against the schema and an optional domain validator, and on failure returns
the exact errors to the model for a bounded number of retries. Every attempt becomes an `LLMCall`
trace, whether it succeeded or not. While the server is unreachable (refused, timeout, HTTP 5xx) the
call waits with bounded back-off (`tinyarch.core.outage`), up to `outage_wait_s`, then raises
`ServiceDown`; it never hangs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import jsonschema
from pydantic import BaseModel

from tinyarch.agents.backends.base import ChatBackend, LLMUnreachable, Message
from tinyarch.core.outage import Outage

Validator = Callable[[Any], list[str]]


class LLMCall(BaseModel):
    """One attempt: what was sent, what came back, what was wrong with it."""

    agent: str
    backend: str
    attempt: int
    messages: list[Message]
    raw: str
    parsed: Any = None
    errors: list[str] = []
    latency_s: float
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


def make_backend(model: str, base_url: str | None = None, seed: int = 0) -> ChatBackend:
    """The backend named by `provider:model`."""
    provider, _, name = model.partition(":")
    if provider == "llamacpp":
        from tinyarch.agents.backends.llamacpp import DEFAULT_MODEL, LlamaCppBackend

        return LlamaCppBackend(name or DEFAULT_MODEL, seed=seed)
    if provider == "ollama" and name:
        from tinyarch.agents.backends.ollama import OllamaBackend

        return OllamaBackend(name, base_url or "http://127.0.0.1:11434")
    if provider == "openai" and name:
        from tinyarch.agents.backends.openai import OpenAIBackend

        return OpenAIBackend(name, base_url)
    raise ValueError(f"unknown LLM {model!r}: use llamacpp:[NAME|PATH.gguf], ollama:MODEL or openai:MODEL")


def schema_errors(data: Any, schema: dict[str, Any]) -> list[str]:
    """Every JSON Schema violation, as `path: message` lines."""
    validator = jsonschema.Draft202012Validator(schema)
    out = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path)):
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path).lstrip(".")
        out.append(f"{path or '(answer)'}: {error.message[:200]}")
    return out


class StructuredLLM:
    def __init__(
        self,
        backend: ChatBackend,
        retries: int = 3,
        temperature: float = 0.7,
        outage_wait_s: float = 8.0,
    ):
        """`outage_wait_s`: how long a call waits for an unreachable server; a search sets its `outage_wait`,
        the chat keeps the short default because someone is waiting for the answer."""
        self.backend = backend
        self.retries, self.temperature = retries, temperature
        service = f"the LLM server at {backend.server}" if backend.server else backend.name
        self.outage = Outage(service, _unreachable, outage_wait_s)

    def probe(self) -> None:
        """At start-up: `ServiceDown` at once when the server does not answer."""
        self.outage.probe(self.backend.probe)

    def ask(
        self,
        agent: str,
        messages: list[Message],
        schema: dict[str, Any],
        validate: Validator | None = None,
        seed: int | None = None,
    ) -> tuple[Any | None, list[LLMCall]]:
        """(the first valid answer or None, every attempt's trace); `seed` makes sampling repeatable."""
        calls: list[LLMCall] = []
        conversation = list(messages)
        for attempt in range(1, self.retries + 1):
            started = time.perf_counter()
            completion = self._complete(conversation, schema, None if seed is None else seed + attempt)
            errors, parsed = self._check(completion.text, schema, validate)
            calls.append(
                LLMCall(
                    agent=agent,
                    backend=self.backend.name,
                    attempt=attempt,
                    messages=conversation,
                    raw=completion.text,
                    parsed=parsed,
                    errors=errors,
                    latency_s=time.perf_counter() - started,
                    prompt_tokens=completion.prompt_tokens,
                    completion_tokens=completion.completion_tokens,
                )
            )
            if not errors:
                return parsed, calls
            conversation = [
                *conversation,
                {"role": "assistant", "content": completion.text[:4000]},
                {
                    "role": "user",
                    "content": "Your answer was rejected:\n- "
                    + "\n- ".join(errors[:20])
                    + "\nAnswer again with corrected JSON only.",
                },
            ]
        return None, calls

    def _complete(self, messages: list[Message], schema: dict[str, Any], seed: int | None) -> Any:
        return self.outage.call(lambda: self.backend.complete(messages, schema, self.temperature, seed))

    @staticmethod
    def _check(text: str, schema: dict[str, Any], validate: Validator | None) -> tuple[list[str], Any | None]:
        try:
            # strict=False: a raw newline or tab inside a string is harmless, and small models emit them
            data = json.loads(text, strict=False)
        except json.JSONDecodeError as e:
            return [f"(answer): not valid JSON ({e.msg} at line {e.lineno} column {e.colno})"], None
        errors = schema_errors(data, schema)
        if not errors and validate is not None:
            errors = validate(data)
        return errors, data


def _unreachable(error: Exception) -> bool:
    """The server's transport failures; a missing model or a bad request is not worth waiting for."""
    return isinstance(error, LLMUnreachable | TimeoutError | ConnectionError)
