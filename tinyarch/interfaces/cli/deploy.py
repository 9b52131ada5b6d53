"""`tinyarch deploy` and `tinyarch read-uart`: firmware for a trained model, and a board's run of it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from tinyarch.core.budget import format_count
from tinyarch.core.config import BOARDS
from tinyarch.core.errors import UserError
from tinyarch.core.extras import require
from tinyarch.interfaces.cli.common import DataDirOpt, err, figures_table, out
from tinyarch.interfaces.figures import firmware_figures

if TYPE_CHECKING:
    from tinyarch.tools.deploy.deploy import DeployReport
    from tinyarch.tools.deploy.uart import UartReport

app = typer.Typer()


@app.command("deploy")
def deploy_cmd(
    model_dir: Annotated[Path, typer.Argument(help="Trained model directory (spec.json, weights, metrics).")],
    board: Annotated[str, typer.Option(help="host | mps2-an500 (QEMU Cortex-M7) | stm32h743.")] = "mps2-an500",
    out_dir: Annotated[Path | None, typer.Option("--out", help="Firmware project directory.")] = None,
    kernels: Annotated[str, typer.Option(help="optimized (Cortex-M7 DSP) | reference.")] = "optimized",
    images: Annotated[int, typer.Option(min=1, help="Validation images checked bit for bit against TFLM.")] = 8,
    val_images: Annotated[
        int | None, typer.Option(min=1, help="Validation images for float vs int8 accuracy (default: all).")
    ] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Export int8, generate C, build firmware for a board, run it, and check it against TFLM."""
    require("deploy")
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from tinyarch.tools.deploy.deploy import deploy

    if board not in BOARDS:
        raise UserError(f"--board: {board!r} is not one of {', '.join(BOARDS)}")
    if kernels not in ("optimized", "reference"):
        raise UserError(f"--kernels: {kernels!r} is not optimized or reference")
    if not model_dir.is_dir():
        raise UserError(f"{model_dir}: no such model directory")
    out_dir = out_dir or model_dir / f"firmware-{board}"
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("deploying", total=None)
        report = deploy(
            model_dir,
            board,
            out_dir,
            kernels,
            images,
            val_images,
            data_dir,
            progress=lambda step: bar.update(task, description=step),
        )
    print_deploy_report(report)


def print_deploy_report(report: DeployReport) -> None:
    out.print(figures_table(f"firmware for {report.spec_id}", firmware_figures(report.model_dump())))
    out.print(f"firmware project: {report.project} (make; report in deploy.json)")
    if report.bit_exact_matches is None:
        out.print(
            "flash it with `make flash`, then `tinyarch read-uart PROJECT --port /dev/ttyACM0` checks the UART "
            "output against expected.txt (TFLM's outputs)",
            highlight=False,
        )


@app.command("read-uart")
def read_uart_cmd(
    project_dir: Annotated[
        Path, typer.Argument(help="Firmware project from `tinyarch deploy` (expected.txt; spec.json for MACs).")
    ],
    port: Annotated[
        str | None, typer.Option(help="The board's serial device, e.g. /dev/ttyACM0; reset the board once reading.")
    ] = None,
    log: Annotated[Path | None, typer.Option(help="A saved UART log to read instead of a port.")] = None,
    baud: Annotated[int, typer.Option(help="Baud rate (8N1, no flow control).")] = 115200,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for the run to finish (--port).")] = 120.0,
    save: Annotated[Path | None, typer.Option(help="Also write what the port sent to this file.")] = None,
    spec_file: Annotated[
        Path | None, typer.Option("--spec", help="Spec JSON for MACs (default: spec.json in or above the project).")
    ] = None,
    clock_mhz: Annotated[
        float | None, typer.Option(min=1, help="Core clock for ms when the firmware prints none (it prints it).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Read a board's UART or a saved log: cycles, cycles/MAC, ms and per-operator cycles per image, and
    each output against expected.txt byte for byte. Exit 1 unless every image matches and the run finished."""
    from tinyarch.tools.deploy.uart import read_uart

    if (port is None) == (log is None):
        raise UserError("give the board's serial device with --port, or a saved log with --log (one of the two)")
    if save is not None and port is None:
        raise UserError("--save records a --port capture; a --log is already saved")

    def ready() -> None:
        if not as_json:
            err.print(f"reading {port} at {baud} 8N1: reset the board now (RESET button or `make flash`)")

    report = read_uart(
        project_dir,
        port=port,
        log_file=log,
        baud=baud,
        timeout=timeout,
        spec_file=spec_file,
        clock_hz=clock_mhz * 1e6 if clock_mhz else None,
        save=save,
        on_line=None if as_json else lambda line: err.print(escape(line), highlight=False, style="dim"),
        on_ready=ready,
    )
    if as_json:
        out.print_json(report.model_dump_json())
    else:
        print_uart_report(report)
    if not report.ok:
        raise typer.Exit(1)


def print_uart_report(report: UartReport) -> None:
    clock = f"{report.clock_hz / 1e6:g} MHz" if report.clock_hz else "unknown clock"
    macs = format_count(report.macs) + " MACs" if report.macs else "MACs unknown (no spec.json)"
    title = f"board run of {report.spec_id or report.project}: {clock}, {macs}"
    table = Table(title=title, box=box.SIMPLE, title_justify="left")
    for col in ("image", "cycles", "cycles/MAC", "ms", "output vs expected.txt"):
        table.add_column(col, justify="left" if col.startswith("output") else "right")
    verdict = {True: "[green]identical[/]", False: "[red]differs[/]", None: "not in expected.txt"}
    for r in report.images:
        table.add_row(
            str(r.index),
            f"{r.cycles:,}" if r.cycles is not None else "-",
            f"{r.cycles_per_mac:.2f}" if r.cycles_per_mac is not None else "-",
            f"{r.ms:.3f}" if r.ms is not None else "-",
            verdict[r.match],
        )
    out.print(table)
    if report.operators:
        ops = Table(title="cycles per operator (mean over the images)", box=box.SIMPLE, title_justify="left")
        for col in ("#", "operator", "kind", "MACs", "cycles", "cycles/MAC", "share"):
            ops.add_column(col, justify="left" if col in ("operator", "kind") else "right")
        for o in report.operators:
            ops.add_row(
                str(o.index),
                escape(o.name),
                o.kind,
                format_count(o.macs) if o.macs else "-",
                f"{o.cycles:,}",
                f"{o.cycles_per_mac:.2f}" if o.cycles_per_mac is not None else "-",
                f"{o.share:.1f} %",
            )
        out.print(ops)
    if report.mean_cycles is not None:
        summary = f"mean {report.mean_cycles:,.0f} cycles"
        if report.macs:
            summary += f", {report.mean_cycles / report.macs:.2f} cycles/MAC"
        if report.clock_hz:
            summary += f", {1e3 * report.mean_cycles / report.clock_hz:.3f} ms at {clock} ({report.clock_source})"
        out.print(summary, highlight=False)
    out.print(f"{report.matches}/{report.expected_images} images identical to expected.txt", highlight=False)
    for line in report.warnings:
        out.print(f"[yellow]warning:[/] {escape(line)}", highlight=False)
    for line in report.problems:
        out.print(f"[red]problem:[/] {escape(line)}", highlight=False)
