"""Does distillation pay off? Students from the `mcu` space, with and without a teacher, on real data.

Run: .venv/bin/python benchmarks/distill.py --teacher runs/teachers/fmnist/teacher.safetensors
     [--train-images 5000 --epochs 8 --seeds 0 1 2]

For each student and seed: a control (the full recipe without MixUp, which KD turns off, so the
recipes match) and the same student distilled from the teacher (T = 10, alpha 0.4 -> 0.8). Then a
sweep of KD settings on seed 0, judged on validation only. Test accuracy is measured once per
trained model, and only reported, at the end: median and spread over the seeds. Wall times, in
one process back to back: the teacher's logits for every augmentation view of one seed (shared by
all students), and one training epoch of each student alone, from cached logits and with the
teacher run live (median of two, alternated).
Every run resumes from its model directory, so a rerun only measures what is missing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from tinyarch.core.spaces import load_space
from tinyarch.core.spec import ArchSpec
from tinyarch.tools.data import Data, ImageSet, SeededAugment, load_data, load_test_split
from tinyarch.tools.distill import KDConfig, Teacher, TeacherLogitCache, load_teacher, teacher_accuracy
from tinyarch.tools.profile import profile
from tinyarch.tools.train import RECIPES, Recipe, TrainResult, evaluate, load_trained, pick_device, train

EXAMPLES = Path("examples")
SWEEP = [KDConfig(temperature=4.0), KDConfig(alpha_start=0.1, alpha_end=0.5)]
"""Settings tried beside the default (T = 10, alpha 0.4 -> 0.8): a cooler T, a lighter teacher."""

Runs = dict[tuple[str, str, int], tuple[ArchSpec, TrainResult]]
"""(spec id, arm, seed) -> (spec, its training)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", type=Path, required=True, help="teacher.safetensors from `tinyarch teacher train`")
    parser.add_argument(
        "--students", type=Path, nargs="+", default=[EXAMPLES / "cpu_small.json", EXAMPLES / "cpu_tiny.json"]
    )
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--train-images", type=int, default=5_000, help="fixed-seed subset of the training split")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--dataset", default="fashion-mnist", help="another dataset only for a quick smoke run")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/distill"))
    parser.add_argument(
        "--kd-only", action="store_true", help="only the distilled runs of --seeds, no table: to run seeds in parallel"
    )
    args = parser.parse_args()

    space = load_space("mcu")
    students = [space.parse(path.read_text()) for path in args.students]
    full = load_data(args.dataset, seed=0)  # the teacher's split: its validation images are held out from it too
    data = full.with_train_subset(args.train_images, seed=0)
    recipe = RECIPES["full"].model_copy(update={"epochs": args.epochs, "mixup_alpha": 0.0})
    device = pick_device()
    cache_dir = args.out / "teacher-logits"
    args.out.mkdir(parents=True, exist_ok=True)

    runs: Runs = {}
    for seed in args.seeds:  # the controls first: they need no teacher, so they can run while it trains
        for spec in students:
            runs[spec.id, "control", seed] = (spec, run(args.out, spec, data, recipe, seed, None, None))
    teacher = load_teacher(args.teacher, data.info.num_classes, device)
    kd_settings = (teacher, cache_dir)
    for seed in args.seeds:
        fill_cache(cache_dir, teacher, data, recipe, seed)
    if args.kd_only:
        for seed in args.seeds:
            for spec in students:
                run(args.out, spec, data, recipe, seed, KDConfig(), kd_settings)
        return
    sweep = {
        (spec.id, i): run(args.out, spec, data, recipe, args.seeds[0], kd, kd_settings)
        for spec in students
        for i, kd in enumerate(SWEEP)
    }
    for seed in args.seeds:
        for spec in students:
            runs[spec.id, "KD", seed] = (spec, run(args.out, spec, data, recipe, seed, KDConfig(), kd_settings))

    # Test accuracy: measured once per model, here at the end, and only reported.
    test_set = load_test_split(args.dataset)
    test = {key: test_accuracy(result, test_set, data, device) for key, (_, result) in runs.items()}
    teacher_test = teacher_accuracy(teacher, test_set)
    teacher_val = teacher.config.val_acc if teacher.config.val_acc is not None else teacher_accuracy(teacher, data.val)
    results = {
        "teacher": {"model": teacher.config.model, "val_acc": teacher_val, "test_acc": teacher_test},
        "runs": [
            {"spec": k[0], "arm": k[1], "seed": k[2], "val_acc": r.val_acc, "test_acc": test[k], "seconds": r.seconds}
            for k, (_, r) in runs.items()
        ],
        "sweep": [{"spec": k[0], **SWEEP[k[1]].model_dump(), "val_acc": r.val_acc} for k, r in sweep.items()],
        "wall_seconds": wall_times(students, data, recipe, teacher),
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(markdown(args, students, runs, test, sweep, results))


def fill_cache(cache_dir: Path, teacher: Teacher, data: Data, recipe: Recipe, seed: int) -> None:
    """The teacher's logits for every view `train` draws with this seed, before students read them."""
    cache = TeacherLogitCache(
        cache_dir, teacher, data, SeededAugment(seed, data.info.hflip, recipe.autoaugment), recipe.epochs
    )
    for view in range(recipe.epochs):
        cache.ensure(view)


def wall_times(students: list[ArchSpec], data: Data, recipe: Recipe, teacher: Teacher) -> dict[str, float]:
    """Seconds: a cold cache fill for one seed, and per student one epoch alone, from the cache, with a live teacher."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        fill_cache(Path(tmp), teacher, data, recipe, seed=0)
        seconds: dict[str, list[float]] = {"teacher logits, all views of one seed": [time.perf_counter() - started]}
        one = recipe.model_copy(update={"epochs": 1})
        arms = {"alone": {}, "KD, cached logits": {"teacher": teacher, "teacher_cache_dir": Path(tmp)}}
        arms["KD, live teacher"] = {"teacher": teacher}
        for _ in range(2):
            for spec in students:
                for arm, extra in arms.items():
                    result = train(spec, data, one, None, seed=0, progress=False, **extra)[1]
                    seconds.setdefault(f"{spec.name or spec.id}: one epoch {arm}", []).append(
                        result.history[0]["seconds"]
                    )
    return {what: statistics.median(values) for what, values in seconds.items()}


def run(
    out: Path,
    spec: ArchSpec,
    data: Data,
    recipe: Recipe,
    seed: int,
    kd: KDConfig | None,
    teacher: tuple[Teacher, Path] | None,
) -> TrainResult:
    """One student, trained (or resumed) in a directory named by its settings; `teacher`: (teacher, cache)."""
    name = "control" if kd is None else f"kd-T{kd.temperature:g}-a{kd.alpha_start:g}-{kd.alpha_end:g}"
    extra: dict[str, Any] = {}
    if kd and teacher:
        extra = {"teacher": teacher[0], "kd": kd, "teacher_cache_dir": teacher[1]}
    model_dir = out / f"{spec.id}-{name}-e{recipe.epochs}-s{seed}"
    return train(spec, data, recipe, model_dir, seed=seed, progress=False, **extra)[1]


def test_accuracy(result: TrainResult, test_set: ImageSet, data: Data, device: torch.device) -> float:
    """Top-1 % on the test split of the model a run saved."""
    trained = load_trained(result.model_dir or Path())
    spec = trained.spec
    return evaluate(trained.model.to(device), test_set, data, spec.resolution, spec.in_channels, device)[1]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def markdown(
    args: argparse.Namespace,
    students: list[ArchSpec],
    runs: Runs,
    test: dict[tuple[str, str, int], float],
    sweep: dict[tuple[str, int], TrainResult],
    results: dict[str, Any],
) -> str:
    teacher, seeds = results["teacher"], args.seeds
    lines = [
        f"{args.dataset}, {args.train_images} training images, {args.epochs} epochs, seeds "
        f"{', '.join(map(str, seeds))}; teacher {teacher['model']}: val {teacher['val_acc']:.2f} %, "
        f"test {teacher['test_acc']:.2f} %",
        "",
        "| student | MACs | arm | val top-1 %, median | test top-1 %, median (min-max) | training minutes |",
        "|---|---|---|---|---|---|",
    ]
    for spec in students:
        macs, label = f"{profile(spec).macs / 1e6:.2f} M", spec.name or spec.id
        for arm in ("control", "KD"):
            keys = [(spec.id, arm, s) for s in seeds]
            val = statistics.median(runs[k][1].val_acc for k in keys)
            minutes = statistics.median(sum(h["seconds"] for h in runs[k][1].history) for k in keys) / 60
            row = f"| {label} | {macs} | {arm} | {val:.2f} | {spread([test[k] for k in keys])} | {minutes:.1f} |"
            lines.append(row)
    lines += ["", f"KD settings, seed {seeds[0]}, validation top-1 % (test not used):", ""]
    lines += ["| student | teacher lead (val) | T | alpha | val top-1 % | vs control |", "|---|---|---|---|---|---|"]
    for spec in students:
        control = runs[spec.id, "control", seeds[0]][1].val_acc
        tried = [(KDConfig(), runs[spec.id, "KD", seeds[0]][1])] + [
            (kd, sweep[spec.id, i]) for i, kd in enumerate(SWEEP)
        ]
        for kd, result in tried:
            lines.append(
                f"| {spec.name or spec.id} | {teacher['val_acc'] - control:+.2f} | {kd.temperature:g} | "
                f"{kd.alpha_start:g} -> {kd.alpha_end:g} | {result.val_acc:.2f} | {result.val_acc - control:+.2f} |"
            )
    lines += ["", "Wall time (one process, back to back):", "", "| what | seconds |", "|---|---|"]
    lines += [f"| {what} | {seconds:.1f} |" for what, seconds in results["wall_seconds"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
