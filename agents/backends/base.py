"""What every LLM backend provides: one chat completion constrained by a JSON Schema."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from tinyarch.core.errors import TinyarchError

Message = dict[str, str]
"""{"role": "system" | "user" | "assistant", "content": "..."}"""


class LLMUnavailable(TinyarchError, RuntimeError):
    """The model cannot be reached or loaded (server down, timeout, missing file); retries did not help."""


class LLMUnreachable(LLMUnavailable):
    """The server did not answer (refused, timed out, HTTP 5xx): worth waiting for, unlike a missing model."""


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int


class ChatBackend(Protocol):
    """A chat model that answers with JSON valid under `schema` (decoding is constrained where the
    server supports it; the caller still validates, because not every server enforces it)."""

    name: str
    server: str | None
    """The server's URL; None for a model in this process."""

    def complete(
        self, messages: list[Message], schema: dict[str, Any], temperature: float, seed: int | None = None
    ) -> Completion: ...

    def probe(self) -> None:
        """Check at start-up that the server answers and serves the model (`LLMUnreachable` when it is down)."""
