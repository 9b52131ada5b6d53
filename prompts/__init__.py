"""Prompt templates, one file per agent task (package data); `$names` are filled by `render`."""

from __future__ import annotations

from importlib import resources
from string import Template


def render(name: str, **values: object) -> str:
    """The template `prompts/NAME.md` with every `$name` replaced; a missing value is an error."""
    text = resources.files("tinyarch.prompts").joinpath(f"{name}.md").read_text()
    return Template(text).substitute({k: str(v) for k, v in values.items()}).strip()
