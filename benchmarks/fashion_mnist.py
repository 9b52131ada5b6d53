"""Real Fashion-MNIST on the CPU: the full recipe, and the gain from distillation.

Run: .venv/bin/python benchmarks/fashion_mnist.py [--epochs 15 --teacher-epochs 25]
     [--teacher runs/teachers/X/teacher.safetensors] [--arms control kd]

Trains, with one seed: the `examples/cpu_small.json` student with the full recipe (arm `full`);
because KD turns MixUp off, the same student with the full recipe minus MixUp (`control`), so the
KD gain is shown against an identical recipe; the CPU teacher of `tinyarch teacher train` (a
quarter-width timm ResNet-18), unless `--teacher` gives a trained one; and the student distilled from
the teacher with cached logits (`kd`). Validation picks nothing here; test accuracy is reported
once at the end of each run. Results go to OUT/results.json and a table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tinyarch.core.spaces import load_space
from tinyarch.tools.data import load_data, load_test_split
from tinyarch.tools.distill import CPU_TEACHER, CPU_TEACHER_KWARGS, load_teacher, train_teacher
from tinyarch.tools.profile import profile
from tinyarch.tools.train import RECIPES, TEACHER_RECIPE, evaluate, pick_device, train

ARMS = ["full", "control", "kd"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--teacher-epochs", type=int, default=TEACHER_RECIPE.epochs)
    parser.add_argument("--spec", type=Path, default=Path("examples/cpu_small.json"))
    parser.add_argument("--out", type=Path, default=Path("runs/bench/fashion-mnist"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", default="fashion-mnist", help="another dataset only for a quick smoke run")
    parser.add_argument("--teacher", type=Path, help="a trained teacher.safetensors instead of training the CPU one")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=ARMS, help="which student runs to train")
    args = parser.parse_args()

    spec = load_space("mcu").parse(args.spec.read_text())
    data = load_data(args.dataset, seed=args.seed)
    test_set = load_test_split(args.dataset)
    device = pick_device()
    full = RECIPES["full"].model_copy(update={"epochs": args.epochs})
    rows: list[dict] = []

    def record(name: str, model, result, resolution: int, channels: int) -> None:
        _, test_acc = evaluate(model, test_set, data, resolution, channels, device)
        rows.append(
            {
                "run": name,
                "epochs": result.epochs_done,
                "val_acc": result.val_acc,
                "test_acc": test_acc,
                "images_per_s": result.images_per_s,
                "minutes": result.seconds / 60,
                "status": result.status,
            }
        )
        (args.out / "results.json").write_text(json.dumps(rows, indent=2))

    args.out.mkdir(parents=True, exist_ok=True)

    def student(name: str, recipe, teacher=None) -> None:
        model_dir = args.out / name.replace(" ", "-").replace(",", "").replace("(", "").replace(")", "")
        model, result = train(
            spec,
            data,
            recipe,
            model_dir,
            teacher=teacher,
            teacher_cache_dir=args.out / "teacher-logits",
            seed=args.seed,
        )
        record(name, model, result, spec.resolution, spec.in_channels)

    # Every run checkpoints each epoch in its own directory, so a rerun resumes where it stopped.
    if "full" in args.arms:
        student("student, full recipe", full)
    if "control" in args.arms:
        student("student, full recipe without MixUp", full.model_copy(update={"mixup_alpha": 0.0}))
    if "kd" in args.arms:
        checkpoint = args.teacher
        if checkpoint is None:
            teacher_recipe = TEACHER_RECIPE.model_copy(update={"epochs": args.teacher_epochs})
            net, result, checkpoint = train_teacher(
                CPU_TEACHER, data, teacher_recipe, args.out / "teacher", seed=args.seed, model_kwargs=CPU_TEACHER_KWARGS
            )
            record(f"teacher {CPU_TEACHER} (teacher recipe)", net, result, data.info.resolution, 3)
        teacher = load_teacher(checkpoint, data.info.num_classes, device)
        student("student, full recipe + KD (cached teacher)", full, teacher)

    prof = profile(spec)
    title = f"{args.dataset}, {device.type.upper()}, seed {args.seed}: student {spec.id} ({prof.macs / 1e6:.2f} M MACs)"
    table = Table(title=title)
    for col in ("run", "epochs", "val top-1 %", "test top-1 %", "train images/s", "minutes"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for r in rows:
        table.add_row(
            r["run"],
            str(r["epochs"]),
            f"{r['val_acc']:.2f}",
            f"{r['test_acc']:.2f}",
            f"{r['images_per_s']:,.0f}",
            f"{r['minutes']:.1f}",
        )
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
