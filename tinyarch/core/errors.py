"""The one base of the errors tinyarch expects: a bad spec, a missing dataset, a failed deployment, an
unreachable LLM... The CLI catches `TinyarchError` alone and prints each of its `lines()` as one line
`error: ...`, exit code 2; anything else is a bug and keeps its type in the message (exit code 1)."""

from __future__ import annotations


class TinyarchError(Exception):
    """An expected failure, reported to the user as it is; subclasses may also derive from a builtin
    exception (ValueError, FileNotFoundError, ...) for callers that catch those."""

    def lines(self) -> list[str]:
        """What the user reads: one line per problem."""
        return [str(self)]


class UserError(TinyarchError):
    """A problem with the user's input (a flag, a file, a name): one line per problem."""

    def __init__(self, *lines: str):
        self._lines = list(lines)
        super().__init__("; ".join(lines))

    def lines(self) -> list[str]:
        return self._lines
