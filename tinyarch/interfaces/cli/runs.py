"""The commands that read a run directory, live or finished: trace, report, explain, chat, and the web app
that shows them all (serve)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from tinyarch.core.config import RunConfig
from tinyarch.core.errors import UserError
from tinyarch.core.extras import require
from tinyarch.interfaces.cli.common import RunArg, RunsDirOpt, err, open_space, out, run_root

app = typer.Typer()


@app.command("explain")
def explain_cmd(
    run: RunArg,
    candidate: Annotated[
        str | None, typer.Option(help="Also explain this trained candidate (id, or id-full for a finalized one).")
    ] = None,
    runs_dir: RunsDirOpt = Path("runs"),
) -> None:
    """What the run's design choices did (surrogate + captum), and what one trained model relies on."""
    require("train")
    from tinyarch.core.rundir import RunDir
    from tinyarch.tools.explain import design_effects, explain_model_dir

    rundir = RunDir(run_root(runs_dir, run))
    config = RunConfig.load(rundir.config)
    space = open_space(config.space)
    records = [r for r in rundir.finished_evaluations().values() if r["status"] == "ok" and "spec" in r]
    with err.status("fitting the design-effect surrogate"):
        effects = design_effects(space, records, seed=config.seed)
    (rundir.root / "design_effects.json").write_text(effects.model_dump_json(indent=2))
    out.print(effects.summary(), highlight=False)
    out.print(f"written: {rundir.root / 'design_effects.json'}")
    if candidate is None:
        return
    model_dir = rundir.candidates / candidate
    if config.evaluator != "proxy":
        raise UserError(f"{config.evaluator} candidates are table lookups: there is no trained model to explain")
    with err.status(f"Integrated Gradients, conductance and ablations on {candidate}"):
        explanation = explain_model_dir(model_dir, config.data_dir)
    out.print(explanation.summary(), highlight=False)
    out.print(f"written: {model_dir / 'explanation.json'}, " + ", ".join(str(p) for p in explanation.figures))


@app.command("chat")
def chat_cmd(
    run: Annotated[str, typer.Argument(help="Run name (a directory under --runs-dir), live or not.")],
    say: Annotated[
        list[str] | None, typer.Option(help="Send this line and print the reply, then exit (repeatable).")
    ] = None,
    runs_dir: RunsDirOpt = Path("runs"),
) -> None:
    """Talk to a search: directives steer it, questions are answered from its data, /help lists commands."""
    require("llm")
    from tinyarch.agents.backends.base import LLMUnavailable
    from tinyarch.interfaces.chat import Chat

    chat = Chat(run_root(runs_dir, run))
    lines = iter(say) if say else None
    if lines is None:
        out.print(chat.cmd_status(""), highlight=False)
        out.print("[dim]/help for commands, /quit to leave (the search goes on)[/]")
    while True:
        try:
            line = next(lines) if lines is not None else out.input("[bold]you>[/] ")
            reply = chat.handle(line)
        except (EOFError, KeyboardInterrupt, StopIteration):
            break
        except LLMUnavailable as e:  # the conversation goes on: commands and directives need no LLM
            err.print(f"[red]error:[/] {escape(str(e))}", highlight=False)
            continue
        if reply:
            out.print(reply, highlight=False, markup=False)


@app.command("trace")
def trace_cmd(
    run: RunArg,
    iteration: Annotated[int | None, typer.Option("--iter", help="Only this iteration.")] = None,
    agent: Annotated[
        list[str] | None, typer.Option(help="Only this agent or tool (repeatable): designer, critic, check, ...")
    ] = None,
    errors: Annotated[
        bool, typer.Option("--errors", help="Only LLM calls with errors and failed/rejected results.")
    ] = False,
    full: Annotated[
        bool, typer.Option("--full", help="Show whole prompts and explanations, not their first lines.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The selected records as JSON lines, for scripts.")] = False,
    runs_dir: RunsDirOpt = Path("runs"),
) -> None:
    """A run's transcript, step by step: prompts, answers, validation errors and retries, tool results."""
    from tinyarch.core.rundir import RunDir
    from tinyarch.interfaces.trace_view import AGENTS, render, select

    root = run_root(runs_dir, run)
    unknown = [a for a in agent or [] if a not in AGENTS]
    if unknown:
        raise UserError(f"--agent: {', '.join(unknown)} is not one of {', '.join(AGENTS)}")
    traces = RunDir(root).read_traces()
    records = select(traces, iteration, agent or (), errors)
    if as_json:
        for record in records:
            print(json.dumps(record, default=str))
    elif records:
        render(out, records, float(traces[0].get("time", 0.0)), full)
    else:
        err.print("no trace records match")


@app.command("report")
def report_cmd(
    run: RunArg,
    out_file: Annotated[Path | None, typer.Option("--out", help="HTML file (default: runs/NAME/report.html).")] = None,
    runs_dir: RunsDirOpt = Path("runs"),
) -> None:
    """One self-contained HTML report of a run: plots, leaderboard, explanations, firmware and traces."""
    require("web")
    from tinyarch.interfaces.report import write_report

    root = run_root(runs_dir, run)
    if out_file is not None and not out_file.parent.is_dir():
        raise UserError(f"--out: {out_file.parent} is not a directory")
    with err.status("rendering the report"):
        path = write_report(root, out_file)
    out.print(f"report: {path} ({path.stat().st_size / 1024:.0f} KB)", highlight=False)


@app.command("serve")
def serve_cmd(
    host: Annotated[str, typer.Option(help="Interface to bind; anything but loopback requires a token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8765,
    token: Annotated[
        str | None,
        typer.Option(envvar="TINYARCH_TOKEN", help="API token (default off loopback: a new random one, printed)."),
    ] = None,
    runs_dir: RunsDirOpt = Path("runs"),
) -> None:
    """A local web app: runs, live view and Pareto plot, chat, traces, candidates; start and steer searches."""
    require("web")
    from tinyarch.interfaces.web.app import is_loopback, new_token, serve

    if token is not None and len(token) < 16:
        raise UserError("--token: use at least 16 characters")
    if token is None and not is_loopback(host):
        token = new_token()
    shown = "localhost" if is_loopback(host) else host
    out.print(f"tinyarch serve: http://{shown}:{port}/{f'?token={token}' if token else ''}  (runs in {runs_dir}/)")
    try:
        serve(runs_dir, host, port, token)
    except OSError as e:
        raise UserError(f"cannot serve on {host}:{port}: {e.strerror or e}") from None
