"""The `tinyarch` command line (typer + rich), one module per concern:

profile.py  profile, space show/sample      (the core install: no extra)
train.py    train, teacher train
model.py    model fetch
search.py   search and its live view        (flags from RunConfig: options.py)
runs.py     trace, report, explain, chat, serve
deploy.py   deploy, read-uart

Expected failures (`TinyarchError`) are one line each, exit code 2.
"""

from __future__ import annotations

import os
import sys

import typer
from rich.markup import escape

from tinyarch.core.errors import TinyarchError
from tinyarch.core.extras import install_line
from tinyarch.interfaces.cli import deploy, model, profile, runs, search, train
from tinyarch.interfaces.cli.common import err

app = typer.Typer(
    help="LLM agents design, train, explain and deploy networks for microcontrollers.", no_args_is_help=True
)
for _commands in (profile, train, model, search, runs, deploy):
    app.add_typer(_commands.app)


def main() -> None:
    """Entry point: a `TinyarchError`, or a missing extra (naming its `pip install`), is one line per problem
    with exit code 2; anything else is one line with its type, exit code 1 (TINYARCH_DEBUG=1: the traceback)."""
    try:
        app(standalone_mode=True)
    except Exception as e:
        line = install_line(e)
        if line is None and not isinstance(e, TinyarchError) and os.environ.get("TINYARCH_DEBUG"):
            raise
        lines = [line] if line else e.lines() if isinstance(e, TinyarchError) else [f"{type(e).__name__}: {e}"]
        for text in lines:
            err.print(f"[red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)
        sys.exit(2 if line or isinstance(e, TinyarchError) else 1)
