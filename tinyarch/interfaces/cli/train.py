"""`tinyarch train` and `tinyarch teacher train`: a spec or a teacher trained here, to a model directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tinyarch.core.errors import UserError
from tinyarch.core.extras import require
from tinyarch.core.paths import cache_root
from tinyarch.interfaces.cli.common import DataDirOpt, SpaceOpt, open_space, out, read_spec

app = typer.Typer()
teacher_app = typer.Typer(help="Teachers for knowledge distillation.", no_args_is_help=True)
app.add_typer(teacher_app, name="teacher")

DatasetOpt = Annotated[str, typer.Option(help="cifar100 | cifar10 | fashion-mnist | imagefolder | synthetic.")]
EpochsOpt = Annotated[int | None, typer.Option(min=1, help="Override the recipe's epochs.")]
SeedOpt = Annotated[int, typer.Option(help="Seed for initialisation, order and augmentation.")]
DeviceOpt = Annotated[str | None, typer.Option(help="cpu | cuda (default: cuda when available).")]
TestOpt = Annotated[bool, typer.Option("--test", help="Report test accuracy at the end (final reporting only).")]


def _report_run(
    model: Any, data: Any, result: Any, out_dir: Path, resolution: int, channels: int, test: bool, device: str | None
) -> None:
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
    kd_temperature: Annotated[float, typer.Option(min=0.01, help="Distillation temperature T.")] = 10.0,
    kd_alpha_start: Annotated[
        float, typer.Option(min=0, max=1, help="Weight of the teacher's loss at epoch 1 (ramps linearly).")
    ] = 0.4,
    kd_alpha_end: Annotated[float, typer.Option(min=0, max=1, help="Weight of the teacher's loss at the end.")] = 0.8,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Model directory (resumes if it holds this run).")
    ] = None,
    epochs: EpochsOpt = None,
    data_dir: DataDirOpt = None,
    space: SpaceOpt = "mcu",
    seed: SeedOpt = 0,
    device: DeviceOpt = None,
    test: TestOpt = False,
) -> None:
    """Train (and optionally distil) a spec; writes weights, spec, metrics and the training curve."""
    require("train")
    from tinyarch.tools.data import load_data
    from tinyarch.tools.distill import KDConfig, load_teacher
    from tinyarch.tools.train import RECIPES, pick_device, train

    if recipe not in RECIPES:
        raise UserError(f"--recipe: {recipe!r} is not one of {', '.join(RECIPES)}")
    spec = read_spec(spec_file, open_space(space))
    chosen = RECIPES[recipe].model_copy(update={"epochs": epochs} if epochs else {})
    data = load_data(dataset, data_dir, seed=seed)
    if spec.num_classes != data.info.num_classes:
        raise UserError(f"{spec_file}: num_classes is {spec.num_classes}, {dataset} has {data.info.num_classes}")
    kd = load_teacher(teacher, data.info.num_classes, pick_device(device)) if teacher is not None else None
    suffix = "-kd" if kd else ""
    out_dir = out_dir or Path("runs/train") / f"{spec.id}-{dataset}-{recipe}{suffix}"
    cache_dir = teacher_cache.expanduser() if teacher_cache else cache_root() / "teacher-logits"
    settings = KDConfig(temperature=kd_temperature, alpha_start=kd_alpha_start, alpha_end=kd_alpha_end)
    model, result = train(
        spec, data, chosen, out_dir, teacher=kd, kd=settings, teacher_cache_dir=cache_dir, seed=seed, device=device
    )
    _report_run(model, data, result, out_dir, spec.resolution, spec.in_channels, test, device)


@teacher_app.command("train")
def teacher_train_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for teacher.safetensors and teacher.json.")],
    dataset: DatasetOpt = "fashion-mnist",
    model: Annotated[str, typer.Option(help="Any timm model name.")] = "resnet18",
    model_kwargs: Annotated[
        str | None,
        typer.Option(
            help="JSON of timm.create_model arguments [default for resnet18 without --init: a quarter-width "
            "CPU teacher].",
            show_default=False,
        ),
    ] = None,
    init: Annotated[
        Path | None, typer.Option(help="Pretrained checkpoint to fine-tune (.safetensors or timm .pth); head is new.")
    ] = None,
    input_size: Annotated[int | None, typer.Option(help="Teacher resolution (default: the dataset's).")] = None,
    recipe: Annotated[str, typer.Option(help="teacher | proxy | full.")] = "teacher",
    epochs: EpochsOpt = None,
    lr: Annotated[
        float | None, typer.Option(min=0, help="Override the recipe's peak learning rate (fine-tuning: ~0.01).")
    ] = None,
    data_dir: DataDirOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = None,
    test: TestOpt = False,
) -> None:
    """Train or fine-tune a timm teacher; pass its teacher.safetensors to --teacher.

    At 64 px or less a ResNet gets a 3x3 stride-1 stem without max-pool (CIFAR-style).
    """
    require("train")
    from tinyarch.tools.data import load_data
    from tinyarch.tools.distill import CPU_TEACHER, CPU_TEACHER_KWARGS, fixed_input_size, train_teacher
    from tinyarch.tools.train import RECIPES, TEACHER_RECIPE

    recipes = {"teacher": TEACHER_RECIPE, **RECIPES}
    if recipe not in recipes:
        raise UserError(f"--recipe: {recipe!r} is not one of {', '.join(recipes)}")
    kwargs = _json_object("--model-kwargs", model_kwargs) if model_kwargs else None
    if kwargs is None and model == CPU_TEACHER and init is None:
        kwargs = CPU_TEACHER_KWARGS
    data = load_data(dataset, data_dir, seed=seed)
    overrides = {"epochs": epochs, "lr": lr}
    chosen = recipes[recipe].model_copy(update={k: v for k, v in overrides.items() if v is not None})
    net, result, checkpoint = train_teacher(
        model, data, chosen, out_dir, input_size, seed=seed, model_kwargs=kwargs, init=init, device=device
    )
    size = input_size or fixed_input_size(net) or data.info.resolution
    _report_run(net, data, result, out_dir, size, 3, test, device)
    out.print(f"teacher checkpoint: {checkpoint} (validation top-1 {result.val_acc:.2f} %, in teacher.json)")


def _json_object(flag: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{flag}: not JSON ({e.msg} at character {e.pos})") from None
    if not isinstance(value, dict):
        raise UserError(f"{flag}: give a JSON object such as '{{\"depth\": 2}}'")
    return value
