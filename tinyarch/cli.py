"""The `tinyarch` command line (typer + rich). Expected failures are one line each, exit code 2."""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tinyarch.budget import Budget, format_bytes, format_count
from tinyarch.space import SearchSpace, SpecError, load_space
from tinyarch.spec import ArchSpec

app = typer.Typer(
    help="LLM agents design, train, explain and deploy networks for microcontrollers.", no_args_is_help=True
)
space_app = typer.Typer(help="Inspect and sample search spaces.", no_args_is_help=True)
app.add_typer(space_app, name="space")

# Piped output gets a wide page so tables stay readable in logs; terminals use their own width.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


class UserError(Exception):
    """A problem with the user's input: reported as one line per problem, exit code 2."""

    def __init__(self, *lines: str):
        self.lines = lines
        super().__init__("; ".join(lines))


def read_spec(path: Path, space: SearchSpace) -> ArchSpec:
    """A spec file that belongs to `space`, or a UserError naming every problem."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        return space.parse(path.read_text())
    except SpecError as e:
        raise UserError(*(f"{path}: {v}" for v in e.violations)) from None


def open_space(name: str) -> SearchSpace:
    try:
        return load_space(name)
    except (ValueError, FileNotFoundError) as e:
        raise UserError(str(e)) from None


def parse_budget(sram: str | None, flash: str | None, macs: str | None) -> Budget:
    try:
        return Budget(sram=sram, flash=flash, macs=macs)
    except ValueError as e:
        raise UserError(
            *(f"--budget-{x['loc'][0]}: {x['msg'].removeprefix('Value error, ')}" for x in e.errors())
        ) from None


@app.command("profile")
def profile_cmd(
    spec_file: Annotated[Path, typer.Argument(help="Spec JSON file.")],
    budget_sram: Annotated[str | None, typer.Option(help="Peak SRAM limit, e.g. 320KB.")] = None,
    budget_flash: Annotated[str | None, typer.Option(help="Flash limit, e.g. 1MB.")] = None,
    budget_macs: Annotated[str | None, typer.Option(help="MACs limit, e.g. 100M.")] = None,
    space: Annotated[str, typer.Option(help="Search space name or YAML path.")] = "mcu",
    as_json: Annotated[bool, typer.Option("--json", help="Print totals and breaches as JSON.")] = False,
) -> None:
    """Per-layer MACs, parameters, int8 flash, peak SRAM and latency; exit 1 if over budget."""
    from tinyarch.tools.profile import check_budget, profile

    budget = parse_budget(budget_sram, budget_flash, budget_macs)
    spec = read_spec(spec_file, open_space(space))
    prof = profile(spec)
    breaches = check_budget(prof, budget)
    if as_json:
        print(json.dumps({**prof.totals(), "breaches": [str(b) for b in breaches]}, indent=2))
    else:
        out.print(escape(f"{spec.name or spec_file.stem} [{spec.id}]  {spec.summary()}"), soft_wrap=True)
        table = Table(box=box.SIMPLE_HEAD, caption="* runs in place over its input", caption_justify="left")
        for col in ("#", "layer", "kind", "output", "MACs", "params", "flash", "live SRAM", "ms"):
            table.add_column(col, justify="left" if col in ("layer", "kind", "output") else "right", no_wrap=True)
        for i, r in enumerate(prof.layers):
            table.add_row(
                str(i),
                r.name,
                r.kind + ("*" if r.inplace else ""),
                "x".join(map(str, r.out_shape)),
                format_count(r.macs),
                f"{r.params:,}",
                format_bytes(r.flash),
                format_bytes(r.live_bytes),
                f"{r.latency_ms:.2f}",
            )
        out.print(table)
        label = "" if prof.latency_calibrated else " (uncalibrated estimate)"
        out.print(
            f"MACs {format_count(prof.macs)}  params {prof.params:,}  flash {format_bytes(prof.flash)}  "
            f"peak SRAM {format_bytes(prof.peak_sram)} (live lower bound {format_bytes(prof.peak_live)})  "
            f"latency {prof.latency_ms:.1f} ms @480 MHz{label}"
        )
        for b in breaches:
            err.print(f"[red]over budget:[/] {escape(str(b))}")
        if budget.model_dump(exclude_none=True) and not breaches:
            out.print("[green]within budget[/]")
    if breaches:
        raise typer.Exit(1)


@space_app.command("show")
def space_show(
    name: Annotated[str, typer.Argument(help="Space name or YAML path.")] = "mcu",
    schema: Annotated[bool, typer.Option("--schema", help="Print the JSON Schema for constrained decoding.")] = False,
) -> None:
    """The choices and rules of a search space."""
    sp = open_space(name)
    if schema:
        print(json.dumps(sp.json_schema(), indent=2))
        return
    table = Table(title=f"space {sp.name}: {sp.description}", title_justify="left")
    table.add_column("field")
    table.add_column("choices")
    for path, choices in sp.slots():
        if path.startswith("stages[") and not path.startswith("stages[0]"):
            continue
        table.add_row(escape(path.replace("stages[0]", "stages[i]")), ", ".join(map(str, choices)))
    for rule, value in sp.rules.model_dump().items():
        table.add_row(f"rule: {rule}", str(value))
    out.print(table)


@space_app.command("sample")
def space_sample(
    name: Annotated[str, typer.Argument(help="Space name or YAML path.")] = "mcu",
    n: Annotated[int, typer.Option("-n", min=1, help="How many specs.")] = 5,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    num_classes: Annotated[int, typer.Option(min=2, help="Classifier outputs.")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One spec JSON per line.")] = False,
) -> None:
    """Random specs from a space, with their analytic profile."""
    from tinyarch.tools.profile import profile

    sp = open_space(name)
    rng = random.Random(seed)
    specs = [sp.sample(rng, num_classes) for _ in range(n)]
    if as_json:
        for spec in specs:
            print(spec.model_dump_json(exclude={"name"}))
        return
    table = Table(title=f"{n} random specs from {sp.name} (seed {seed})", title_justify="left")
    for col in ("id", "MACs", "peak SRAM", "flash", "summary"):
        table.add_column(col, justify="right" if col in ("MACs", "peak SRAM", "flash") else "left")
    for spec in specs:
        p = profile(spec)
        table.add_row(
            spec.id, format_count(p.macs), format_bytes(p.peak_sram), format_bytes(p.flash), escape(spec.summary())
        )
    out.print(table)


def main() -> None:
    """Entry point: user errors become one line each with exit code 2; TINYARCH_DEBUG=1 shows tracebacks."""
    try:
        app(standalone_mode=True)
    except UserError as e:
        for line in e.lines:
            err.print(f"[red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except Exception as e:
        if os.environ.get("TINYARCH_DEBUG"):
            raise
        err.print(f"[red]error:[/] {escape(f'{type(e).__name__}: {e}')}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
