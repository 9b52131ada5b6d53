"""Evaluators turn one candidate into measured metrics: a benchmark-table lookup or proxy training.

Every evaluator returns an `Evaluation`; a candidate that cannot be evaluated comes back with
status "failed" and its reason, so the caller records it and moves on.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tinyarch.core.errors import TinyarchError
from tinyarch.core.paths import cache_root
from tinyarch.core.spaces.nats import NatsCell

if TYPE_CHECKING:
    from tinyarch.tools.distill import KDConfig

NATS_TABLE_NAME = "nats_tss_accuracy.csv"
NATS_COLUMNS = {
    "cifar10": "CIFAR10TestAccuracy200Epochs",
    "cifar100": "CIFAR100TestAccuracy200Epochs",
    "imagenet16-120": "ImageNetTestAccuracy200Epochs",
}
SHARED_NATS_TABLE = Path(__file__).resolve().parents[2] / "shared" / "data" / NATS_TABLE_NAME
"""Where the project's shared data sits beside a checkout."""


class EvaluatorError(TinyarchError, RuntimeError):
    """The evaluator cannot run at all (missing table, wrong dataset); one line says what is needed."""


@dataclass
class Evaluation:
    status: str  # "ok" | "failed"
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    seconds: float = 0.0
    firmware: dict[str, Any] | None = None
    """The deployment report of a finalized model (see tools/deploy/deploy.py), or why it failed."""


def settings_key(*parts: object) -> str:
    """A short digest of an evaluator's settings: equal settings, equal metrics for the same spec."""
    return f"{parts[0]}-" + hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def find_nats_table(explicit: Path | str | None = None) -> Path:
    """--nats-table PATH, then $TINYARCH_NATS_TABLE, then ../shared/data/ beside the checkout."""
    candidates = [Path(p) for p in (explicit, os.environ.get("TINYARCH_NATS_TABLE")) if p]
    candidates.append(SHARED_NATS_TABLE)
    for path in candidates:
        if path.is_file():
            return path
    raise EvaluatorError(
        f"the nats evaluator needs {NATS_TABLE_NAME} (NATS-Bench topology accuracies for all 15,625 cells, "
        "as tabulated in the public v-tao/nats-bench-landscape repository): pass --nats-table PATH or set "
        f"TINYARCH_NATS_TABLE; looked in {', '.join(map(str, candidates))}"
    )


class NatsTableEvaluator:
    """Looks a cell's 200-epoch accuracy up in the NATS-Bench table.

    These are the benchmark's *test* accuracies: a search that uses them measures search
    efficiency on a fixed benchmark, not a model-selection protocol, and reports say so.
    """

    def __init__(self, dataset: str = "cifar100", table: Path | str | None = None):
        if dataset not in NATS_COLUMNS:
            raise EvaluatorError(f"nats evaluator: dataset must be one of {', '.join(NATS_COLUMNS)}, not {dataset!r}")
        self.dataset = dataset
        self.path = find_nats_table(table)
        column = NATS_COLUMNS[dataset]
        with self.path.open(newline="") as f:
            self.accuracy = {row["ArchitectureString"]: float(row[column]) for row in csv.DictReader(f)}
        self.settings_key = settings_key("nats", dataset, hashlib.sha256(self.path.read_bytes()).hexdigest())
        """What makes two lookups comparable (memory recalls an evaluation only under the same key)."""

    @property
    def optimum(self) -> float:
        return max(self.accuracy.values())

    def evaluate(self, cell: NatsCell) -> Evaluation:
        started = time.perf_counter()
        accuracy = self.accuracy.get(cell.arch_string())
        if accuracy is None:
            return Evaluation("failed", reason=f"{cell.arch_string()} is not in {self.path.name}")
        return Evaluation("ok", {"accuracy": accuracy}, seconds=time.perf_counter() - started)

    def finalize(self, cell: NatsCell) -> Evaluation:
        """The table already holds the 200-epoch result: nothing to train."""
        return self.evaluate(cell)

    def explain(self, cell: NatsCell) -> str | None:
        """A table lookup has no model to explain."""
        return None


KD_MARGIN = 1.0
"""Validation points a teacher must lead the student trained alone by before `distill: auto` distils."""


class ProxyTrainingEvaluator:
    """Trains a spec with the proxy recipe and reports validation accuracy (never test); `finalize`
    trains a front member with the full recipe, distilled from the teacher when one is given.

    `distill`: "always" trains with KD only; "never" without; "auto" trains the student alone first
    and distils only when the teacher's validation accuracy leads it by KD_MARGIN points, then keeps
    whichever of the two did better on validation. A teacher that is no better than its student
    only drags it down (the README's measurements), and the control costs one more full training.
    """

    def __init__(
        self,
        data: Any,
        recipe: Any,
        final_recipe: Any,
        runs_dir: Path | None = None,
        seed: int = 0,
        teacher: Path | None = None,
        full_data: Any = None,
        deploy_board: str | None = None,
        distill: Literal["auto", "always", "never"] = "auto",
        kd: KDConfig | None = None,
        **train_kwargs: Any,
    ):
        self.deploy_board, self.distill, self.kd = deploy_board, distill, kd
        self.data, self.recipe, self.final_recipe = data, recipe, final_recipe
        self.full_data = full_data or data
        self.runs_dir, self.seed, self.teacher_path, self.train_kwargs = runs_dir, seed, teacher, train_kwargs
        labels = hashlib.sha256(data.train.labels.numpy().tobytes()).hexdigest()
        self.settings_key = settings_key("proxy", data.info.name, len(data.train), labels, recipe.model_dump(), seed)
        """Dataset, the proxy's training images, recipe and seed: equal keys train a spec alike."""

    def _train(self, spec: Any, data: Any, recipe: Any, suffix: str, **extra: Any) -> Evaluation:
        from tinyarch.tools.train import CandidateFailed, train

        model_dir = self.runs_dir / f"{spec.id}{suffix}" if self.runs_dir else None
        try:
            _, result = train(spec, data, recipe, model_dir, seed=self.seed, **self.train_kwargs, **extra)
        except CandidateFailed as e:
            return Evaluation("failed", reason=str(e))
        if not result.ok:
            return Evaluation("failed", reason=result.reason, seconds=result.seconds)
        metrics = {"accuracy": result.val_acc, "val_loss": result.val_loss, "train_seconds": result.seconds}
        return Evaluation("ok", metrics, seconds=result.seconds)

    def evaluate(self, spec: Any) -> Evaluation:
        return self._train(spec, self.data, self.recipe, "")

    def explain(self, spec: Any) -> str | None:
        """The model-level explanation summary of an evaluated candidate (cached in its directory)."""
        from tinyarch.tools.explain import explain_model_dir

        model_dir = self.runs_dir / spec.id if self.runs_dir else None
        if model_dir is None or not (model_dir / "weights.safetensors").is_file():
            return None
        return explain_model_dir(model_dir, self.data.data_dir).summary()

    def finalize(self, spec: Any) -> Evaluation:
        result, suffix = self._finalize_training(spec)
        if result.status == "ok" and self.deploy_board and self.runs_dir:
            result.firmware = self._deploy(self.runs_dir / f"{spec.id}{suffix}")
        return result

    @cached_property
    def _teacher(self) -> tuple[Any, float]:
        """The teacher and its validation top-1, loaded (and, for a checkpoint from elsewhere, measured on the
        same validation split) once for all the winners a run finalizes."""
        from tinyarch.tools.distill import load_teacher, teacher_accuracy

        assert self.teacher_path is not None
        teacher = load_teacher(self.teacher_path, self.full_data.info.num_classes)
        accuracy = teacher.config.val_acc
        return teacher, accuracy if accuracy is not None else teacher_accuracy(teacher, self.full_data.val)

    def _finalize_training(self, spec: Any) -> tuple[Evaluation, str]:
        """The full-recipe result to keep and its model directory's suffix, by the `distill` rule."""
        if self.teacher_path is None or self.distill == "never":
            return self._train(spec, self.full_data, self.final_recipe, "-full"), "-full"
        teacher, teacher_acc = self._teacher
        control = None
        if self.distill == "auto":
            control = self._train(spec, self.full_data, self.final_recipe, "-full")
            own = control.metrics.get("accuracy", float("nan"))
            if control.status != "ok" or not teacher_acc >= own + KD_MARGIN:
                control.metrics |= {"teacher_accuracy": teacher_acc, "kd_used": 0.0}
                control.reason = control.reason or (
                    f"KD skipped: the teacher's {teacher_acc:.2f} % validation top-1 does not lead the student's own "
                    f"{own:.2f} % by {KD_MARGIN:g} points"
                )
                return control, "-full"
        extra = {"teacher": teacher, "teacher_cache_dir": cache_root() / "teacher-logits", "kd": self.kd}
        kd = self._train(spec, self.full_data, self.final_recipe, "-full-kd", **extra)
        found = {"teacher_accuracy": teacher_acc}
        if kd.status == "ok":
            found["kd_accuracy"] = kd.metrics["accuracy"]
        if control is not None:
            found["control_accuracy"] = control.metrics["accuracy"]
            if kd.status != "ok" or kd.metrics["accuracy"] < control.metrics["accuracy"]:
                control.metrics |= {**found, "kd_used": 0.0}
                control.reason = f"KD trained but not kept: {kd.reason or 'a lower validation top-1 than without'}"
                return control, "-full"
        kd.metrics |= {**found, "kd_used": 1.0}
        return kd, "-full-kd"

    def _deploy(self, model_dir: Path) -> dict[str, Any]:
        """Int8 firmware for the finalized model; a failure is recorded, not raised, so the run keeps its models."""
        from tinyarch.tools.deploy import DeployError
        from tinyarch.tools.deploy.deploy import deploy

        board = self.deploy_board or ""
        try:
            report = deploy(model_dir, board, model_dir / f"firmware-{board}", data_dir=self.full_data.data_dir)
        except DeployError as e:
            return {"status": "failed", "reason": str(e).splitlines()[0]}
        return {"status": "ok", **report.model_dump()}
