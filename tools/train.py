"""Training: a short proxy recipe for search and a full one, seeded, resumable, guarded.

Both recipes use SGD with Nesterov momentum 0.9, weight decay 1e-4 and AutoAugment, as the
paper does; `full` adds MixUp and a linear warm-up before the cosine decay. Training runs
channels_last (on the CPU too, where it is faster: README, `benchmarks/train_throughput.py`)
and, on CUDA, with AMP. A NaN or divergent loss fails the candidate with a reason
instead of raising, so a search keeps going. With a model directory, every epoch is
checkpointed (safetensors) and a rerun resumes after the last finished epoch.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from safetensors.torch import load_file, save_file
from torch import nn

from tinyarch.core.errors import TinyarchError
from tinyarch.core.spec import ArchSpec
from tinyarch.tools.data import AugmentedView, Data, ImageSet, SeededAugment, to_model_input
from tinyarch.tools.distill import KDConfig, Teacher, TeacherLogitCache, kd_loss

if TYPE_CHECKING:
    from tinyarch.tools.builder import TinyNet


class Recipe(BaseModel):
    name: str
    epochs: int
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    autoaugment: bool = True
    mixup_alpha: float = 0.0
    warmup_epochs: int = 0
    dropout: float = 0.0

    def lr_at(self, step: int, steps_per_epoch: int) -> float:
        """Linear warm-up over `warmup_epochs`, then cosine decay to zero at the last step."""
        warmup = self.warmup_epochs * steps_per_epoch
        total = self.epochs * steps_per_epoch
        if step < warmup:
            return self.lr * (step + 1) / warmup
        return self.lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))


RECIPES = {
    "proxy": Recipe(name="proxy", epochs=5),
    "full": Recipe(name="full", epochs=60, mixup_alpha=0.2, warmup_epochs=3, dropout=0.1),
}


TEACHER_RECIPE = Recipe(name="teacher", epochs=25, autoaugment=False, warmup_epochs=1, weight_decay=5e-4)
"""A teacher's: no AutoAugment or MixUp, which slow a short run's convergence (the student's views are its test),
CIFAR ResNets' weight decay, and the 25 epochs that put the CPU teacher clearly above its students."""


class CandidateFailed(TinyarchError, RuntimeError):
    """Training of one candidate went wrong in a way the search should record and move past."""


@dataclass
class TrainResult:
    status: str  # "ok" | "failed"
    reason: str = ""
    val_acc: float = float("nan")
    val_loss: float = float("nan")
    epochs_done: int = 0
    seconds: float = 0.0
    images_per_s: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    model_dir: Path | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def pick_device(device: str | None = None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    images: ImageSet,
    data: Data,
    resolution: int,
    channels: int,
    device: torch.device,
    batch_size: int = 512,
) -> tuple[float, float]:
    """(mean cross-entropy, top-1 accuracy in %) of `model` on `images`."""
    model.eval()
    loss_sum, correct = 0.0, 0
    cuda = device.type == "cuda"
    for start in range(0, len(images), batch_size):
        x = to_model_input(
            images.images[start : start + batch_size].to(device),
            data.info.mean,
            data.info.std,
            resolution,
            channels,
            channels_last=True,
        )
        y = images.labels[start : start + batch_size].to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            logits = model(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    return loss_sum / len(images), 100.0 * correct / len(images)


_RNG_KEY = "__torch_rng_state__"


class _Checkpoint:
    """weights.safetensors, optimizer.safetensors (momentum buffers) and state.json in a model directory."""

    def __init__(self, directory: Path, identity: dict[str, Any]):
        self.dir, self.identity = directory, identity
        self.state_path = directory / "state.json"

    def load(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
        if not self.state_path.is_file():
            return None
        state = json.loads(self.state_path.read_text())
        if state["identity"] != self.identity:
            raise CandidateFailed(f"{self.dir} holds a different training run; choose another --out or delete it")
        model.load_state_dict(load_file(str(self.dir / "weights.safetensors")))
        buffers = load_file(str(self.dir / "optimizer.safetensors"))
        torch.set_rng_state(buffers.pop(_RNG_KEY))
        for name, p in model.named_parameters():
            if name in buffers:
                optimizer.state[p]["momentum_buffer"] = buffers[name].to(p.device)
        return state

    def save(self, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        buffers = {
            name: optimizer.state[p]["momentum_buffer"].detach().contiguous().cpu()
            for name, p in model.named_parameters()
            if "momentum_buffer" in optimizer.state.get(p, {})
        }
        buffers[_RNG_KEY] = torch.get_rng_state()  # dropout and MixUp pairing continue as if never stopped
        _atomic(self.dir / "weights.safetensors", lambda tmp: save_file(weights, str(tmp)))
        _atomic(self.dir / "optimizer.safetensors", lambda tmp: save_file(buffers, str(tmp)))
        _atomic(self.state_path, lambda tmp: tmp.write_text(json.dumps({**state, "identity": self.identity})))


def _atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    tmp.replace(path)


def train_model(
    model: nn.Module,
    data: Data,
    recipe: Recipe,
    *,
    resolution: int,
    channels: int,
    model_dir: Path | None = None,
    identity: dict[str, Any] | None = None,
    teacher: Teacher | None = None,
    kd: KDConfig | None = None,
    teacher_cache_dir: Path | None = None,
    seed: int = 0,
    device: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train `model` on `data.train`, validating on `data.val` after every epoch.

    With a teacher, the loss is KD (MixUp is then off: the teacher's targets are for the image it saw).
    Teacher logits come from the on-disk cache when `teacher_cache_dir` is given, live otherwise.
    """
    dev = pick_device(device)
    cuda = dev.type == "cuda"
    torch.manual_seed(seed)
    # torch's overloads of Module.to omit memory_format beside device, which its parser accepts
    model = model.to(dev, memory_format=torch.channels_last)  # type: ignore[call-overload]
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        weight_decay=recipe.weight_decay,
    )
    kd = kd or KDConfig()
    views = recipe.epochs
    augment = SeededAugment(seed, data.info.hflip, recipe.autoaugment)
    cache = (
        TeacherLogitCache(teacher_cache_dir, teacher, data, augment, views) if teacher and teacher_cache_dir else None
    )
    identity = {
        **(identity or {}),
        "recipe": recipe.model_dump(),
        "seed": seed,
        "teacher": teacher.key if teacher else None,
        "kd": kd.model_dump() if teacher else None,
    }
    ckpt = _Checkpoint(model_dir, identity) if model_dir else None
    state = ckpt.load(model, optimizer) if ckpt else None
    history: list[dict[str, float]] = state["history"] if state else []
    start_epoch = len(history)

    steps_per_epoch = len(data.train) // recipe.batch_size
    if steps_per_epoch == 0:
        return TrainResult(
            "failed", f"training split has {len(data.train)} images, fewer than one batch", model_dir=model_dir
        )
    workers = (0 if not cuda else 8) if workers is None else workers
    started = time.perf_counter()
    seen = 0
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        disable=not progress,
        transient=False,
    )
    with bar:
        for epoch in range(start_epoch, recipe.epochs):
            task = bar.add_task(f"epoch {epoch + 1}/{recipe.epochs}", total=steps_per_epoch, info="")
            order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
            loader = torch.utils.data.DataLoader(
                AugmentedView(data.train, augment, epoch % views),
                batch_size=recipe.batch_size,
                sampler=order.tolist(),
                num_workers=workers,
                drop_last=True,
                pin_memory=cuda,
                persistent_workers=False,
            )
            if cache:
                cache.ensure(epoch % views)
            alpha = kd.alpha(epoch, recipe.epochs)
            model.train()
            loss_sum = torch.zeros((), device=dev)
            epoch_start = time.perf_counter()
            for step, (images, labels, index) in enumerate(loader):
                for group in optimizer.param_groups:
                    group["lr"] = recipe.lr_at(epoch * steps_per_epoch + step, steps_per_epoch)
                x = to_model_input(
                    images.to(dev, non_blocking=True),
                    data.info.mean,
                    data.info.std,
                    resolution,
                    channels,
                    channels_last=True,
                )
                y = labels.to(dev, non_blocking=True)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
                    if teacher is not None:
                        t_logits = cache.logits(epoch % views, index).to(dev) if cache else teacher.logits(images)
                        loss = kd_loss(model(x), t_logits, y, kd.temperature, alpha)
                    elif recipe.mixup_alpha > 0:
                        lam = float(
                            np.random.default_rng(seed * 7919 + epoch * steps_per_epoch + step).beta(
                                recipe.mixup_alpha, recipe.mixup_alpha
                            )
                        )
                        perm = torch.randperm(len(y), device=dev)
                        logits = model(lam * x + (1 - lam) * x[perm]).float()
                        loss = lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y[perm])
                    else:
                        loss = F.cross_entropy(model(x).float(), y)
                if (not cuda or step % 25 == 0) and not torch.isfinite(loss):  # CUDA: check without a sync per step
                    reason = f"loss became {loss.item()} at epoch {epoch + 1}, step {step + 1}"
                    return _failed(reason, history, model_dir, started)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # bfloat16 autocast needs no loss scaling
                optimizer.step()
                loss_sum += loss.detach()
                if progress and step % 10 == 0:
                    bar.update(task, completed=step + 1, info=f"loss {loss.item():.3f}")
            train_loss = loss_sum.item() / steps_per_epoch
            epoch_seconds = time.perf_counter() - epoch_start
            seen += steps_per_epoch * recipe.batch_size
            diverged = max(10.0, 4 * math.log(data.info.num_classes))
            if not math.isfinite(train_loss) or train_loss > diverged:
                return _failed(
                    f"diverged: mean training loss {train_loss:.3g} at epoch {epoch + 1}", history, model_dir, started
                )
            val_loss, val_acc = evaluate(model, data.val, data, resolution, channels, dev)
            history.append(
                {
                    "epoch": epoch + 1,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "val_acc": val_acc,
                    "lr": optimizer.param_groups[0]["lr"],
                    "seconds": epoch_seconds,
                    "images_per_s": steps_per_epoch * recipe.batch_size / epoch_seconds,
                }
            )
            bar.update(task, completed=steps_per_epoch, info=f"loss {train_loss:.3f} val {val_acc:.2f} %")
            if ckpt:
                ckpt.save(model, optimizer, {"history": history})
    seconds = time.perf_counter() - started
    last = history[-1] if history else {}
    return TrainResult(
        "ok",
        val_acc=last.get("val_acc", float("nan")),
        val_loss=last.get("val_loss", float("nan")),
        epochs_done=len(history),
        seconds=seconds,
        images_per_s=seen / seconds if seen else 0.0,
        history=history,
        model_dir=model_dir,
    )


def _failed(reason: str, history: list[dict[str, float]], model_dir: Path | None, started: float) -> TrainResult:
    return TrainResult(
        "failed",
        reason,
        epochs_done=len(history),
        history=history,
        model_dir=model_dir,
        seconds=time.perf_counter() - started,
    )


def train(
    spec: ArchSpec, data: Data, recipe: Recipe, model_dir: Path | None = None, seed: int = 0, **kwargs: Any
) -> tuple[nn.Module, TrainResult]:
    """Build `spec`'s model and train it; the model directory also gets spec.json, metrics.json and curve.png."""
    from tinyarch.tools.builder import build_model

    if spec.num_classes != data.info.num_classes:
        raise CandidateFailed(f"spec has {spec.num_classes} classes, {data.info.name} has {data.info.num_classes}")
    if data.info.channels > spec.in_channels:
        raise CandidateFailed(f"{data.info.name} has {data.info.channels} channels, the spec takes {spec.in_channels}")
    torch.manual_seed(seed)
    model = build_model(spec, dropout=recipe.dropout)
    if model_dir:
        model_dir.mkdir(parents=True, exist_ok=True)
        (model_dir / "spec.json").write_text(spec.model_dump_json(indent=2))
    result = train_model(
        model,
        data,
        recipe,
        resolution=spec.resolution,
        channels=spec.in_channels,
        model_dir=model_dir,
        identity={"spec": spec.id, "dataset": data.info.name},
        seed=seed,
        **kwargs,
    )
    if model_dir:
        write_report(model_dir, result, {"spec": spec.id, "dataset": data.info.name, "recipe": recipe.name})
    return model, result


def write_report(model_dir: Path, result: TrainResult, about: dict[str, Any]) -> None:
    """metrics.json and the training curve (curve.png) of a finished or failed run."""
    metrics = {
        **about,
        "status": result.status,
        "reason": result.reason,
        "val_acc": result.val_acc,
        "val_loss": result.val_loss,
        "epochs": result.epochs_done,
        "seconds": result.seconds,
        "images_per_s": result.images_per_s,
        "history": result.history,
    }
    (model_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if result.history:
        plot_curve(result.history, model_dir / "curve.png", f"{about.get('spec', '')} on {about.get('dataset', '')}")


def plot_curve(history: list[dict[str, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], label="train")
    ax_loss.plot(epochs, [h["val_loss"] for h in history], label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss")
    ax_loss.legend()
    ax_acc.plot(epochs, [h["val_acc"] for h in history], color="tab:green")
    ax_acc.set(xlabel="epoch", ylabel="validation top-1 (%)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class ModelDirError(TinyarchError, RuntimeError):
    """A directory is not a trained model (spec.json, weights.safetensors and metrics.json)."""


@dataclass(slots=True)
class TrainedModel:
    spec: ArchSpec
    model: TinyNet
    dataset: str
    val_acc: float


def load_trained(model_dir: Path) -> TrainedModel:
    """A model directory written by `tinyarch train` or a search, in eval mode."""
    from tinyarch.tools.builder import build_model

    files = {name: model_dir / name for name in ("spec.json", "weights.safetensors", "metrics.json")}
    missing = [name for name, path in files.items() if not path.is_file()]
    if missing:
        raise ModelDirError(f"{model_dir} is not a trained model directory: missing {', '.join(missing)}")
    try:
        spec = ArchSpec.model_validate_json(files["spec.json"].read_text())
    except ValueError as e:
        raise ModelDirError(f"{files['spec.json']}: not an architecture spec ({e.__class__.__name__})") from None
    metrics = json.loads(files["metrics.json"].read_text())
    model = build_model(spec)
    model.load_state_dict(load_file(str(files["weights.safetensors"])))
    return TrainedModel(spec, model.eval(), metrics["dataset"], float(metrics.get("val_acc", float("nan"))))
