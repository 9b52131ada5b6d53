"""`tinyarch profile` and `tinyarch space`: a spec's costs against a budget, and the search spaces. The core
install runs them: nothing here imports an extra."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich import box
from rich.markup import escape
from rich.table import Table

from tinyarch.core.budget import COSTS, Budget, format_bytes, format_count
from tinyarch.core.errors import UserError
from tinyarch.interfaces.cli.common import SpaceOpt, err, open_space, out, read_spec
from tinyarch.interfaces.cli.options import model_options, option_errors
from tinyarch.tools.profile import candidate_cost

app = typer.Typer()
space_app = typer.Typer(help="Inspect and sample search spaces.", no_args_is_help=True)
app.add_typer(space_app, name="space")


@app.command("profile")
@model_options(Budget)
def profile_cmd(
    spec_file: Annotated[Path, typer.Argument(help="Spec JSON file.")],
    space: SpaceOpt = "mcu",
    as_json: Annotated[bool, typer.Option("--json", help="Print totals and breaches as JSON.")] = False,
    *,
    given: dict[str, Any],
) -> None:
    """Per-layer MACs, parameters, int8 flash, peak SRAM and latency; exit 1 if over budget."""
    from tinyarch.tools.profile import check_budget, profile

    try:
        budget = Budget.model_validate(given)
    except ValidationError as e:
        raise UserError(*option_errors(e, given)) from None
    chosen = open_space(space)
    if chosen.kind != "hierarchical":
        raise UserError(f"--space: profile needs a hierarchical space; {chosen.name} is a {chosen.kind} space")
    spec = read_spec(spec_file, chosen)
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
        calibration = (
            " (calibrated on QEMU Cortex-M7 instruction counts, 1 instruction/cycle)"
            if prof.latency_calibrated
            else " (uncalibrated estimate)"
        )
        after = {
            "peak_sram": f" (live lower bound {format_bytes(prof.peak_live)})",
            "latency_ms": f" @480 MHz{calibration}",
        }
        totals = prof.totals()
        out.print("  ".join(c.figure(totals[k]) + after.get(k, "") for k, c in COSTS.items()))
        for b in breaches:
            err.print(f"[red]over budget:[/] {escape(str(b))}")
        if given and not breaches:
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
    rules = getattr(sp, "rules", None)
    for rule, value in (rules.model_dump() if rules else {}).items():
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
    """Random specs from a space, with their analytic costs."""
    sp = open_space(name)
    rng = random.Random(seed)
    specs = [sp.sample(rng, num_classes) for _ in range(n)]
    if as_json:
        for spec in specs:
            print(spec.model_dump_json(exclude={"name"}))
        return
    costs = [candidate_cost(sp, spec) for spec in specs]
    shown = [c for k, c in COSTS.items() if any(k in cost for cost in costs)]
    table = Table(title=f"{n} random specs from {sp.name} (seed {seed})", title_justify="left")
    for col in ("id", *(c.label for c in shown), "summary"):
        table.add_column(col, justify="left" if col in ("id", "summary") else "right")
    for spec, cost in zip(specs, costs, strict=True):
        figures = (c.format(cost[c.key]) if c.key in cost else "-" for c in shown)
        table.add_row(spec.id, *figures, escape(spec.summary()))
    out.print(table)
