"""What the commands share: the consoles, the common options, and reading a spec, a space or a run by name."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from tinyarch.core.errors import UserError
from tinyarch.core.spaces import SearchSpace, SpecError, load_space
from tinyarch.core.spec import ArchSpec

# Piped output gets a wide page so tables stay readable in logs; terminals use their own width.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

SpaceOpt = Annotated[str, typer.Option(help="Search space name or YAML path.")]
DataDirOpt = Annotated[Path | None, typer.Option(help="Data root (default: $TINYARCH_DATA).")]
RunsDirOpt = Annotated[Path, typer.Option(help="Where run directories live.")]
RunArg = Annotated[str, typer.Argument(help="Run name (a directory under --runs-dir).")]


def read_spec(path: Path, space: SearchSpace) -> ArchSpec:
    """A spec file that belongs to `space`, or a UserError naming every problem."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        spec: ArchSpec = space.parse(path.read_text())
    except SpecError as e:
        raise UserError(*(f"{path}: {v}" for v in e.violations)) from None
    return spec


def open_space(name: str) -> SearchSpace:
    try:
        return load_space(name)
    except (ValueError, FileNotFoundError) as e:
        raise UserError(str(e)) from None


def run_root(runs_dir: Path, run: str) -> Path:
    """The directory of an existing run, or a UserError naming where it was looked for."""
    root = runs_dir / run
    if not (root / "config.yaml").is_file():
        raise UserError(f"no run {run!r} under {runs_dir}/")
    return root


def figures_table(title: str, rows: Iterable[tuple[str, str]]) -> Table:
    """(label, value) rows, such as a deployment's figures, as a two-column table."""
    table = Table(title=title, box=box.SIMPLE)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for label, value in rows:
        table.add_row(label, value)
    return table
