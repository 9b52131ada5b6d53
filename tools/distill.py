"""Logits knowledge distillation from a timm teacher loaded from a local checkpoint.

The loss is alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE, with alpha ramping
linearly over the epochs (the paper: T = 10, alpha 0.4 -> 0.8). The teacher sees exactly the
augmented images the student sees, resized to its own resolution. Its logits are computed once
per augmentation view and cached on disk, keyed by teacher, training data and augmentation, so
every student trained on the same data reuses them and KD costs little more than plain training.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel
from torch import nn

from tinyarch.core.errors import TinyarchError
from tinyarch.tools.data import AugmentedView, Data, SeededAugment, to_model_input

DEFAULT_TEACHER = "vit_base_patch16_224"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TeacherError(TinyarchError, FileNotFoundError):
    """The teacher checkpoint is missing or does not fit the named model."""


class KDConfig(BaseModel):
    temperature: float = 10.0
    alpha_start: float = 0.4
    alpha_end: float = 0.8

    def alpha(self, epoch: int, epochs: int) -> float:
        """Weight of the soft loss at `epoch` (0-based): a linear ramp from start to end."""
        frac = epoch / max(epochs - 1, 1)
        return self.alpha_start + (self.alpha_end - self.alpha_start) * frac


def kd_loss(
    student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor, temperature: float, alpha: float
) -> torch.Tensor:
    t = temperature
    soft = F.kl_div(
        F.log_softmax(student.float() / t, 1),
        F.log_softmax(teacher.float() / t, 1),
        log_target=True,
        reduction="batchmean",
    )
    return alpha * soft * t * t + (1 - alpha) * F.cross_entropy(student.float(), targets)


class TeacherConfig(BaseModel):
    """The sidecar `<checkpoint>.json`: what model the weights belong to and how it reads images."""

    model: str = DEFAULT_TEACHER
    num_classes: int
    input_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


@dataclass
class Teacher:
    model: nn.Module
    config: TeacherConfig
    key: str

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Teacher logits for a uint8 batch, on the teacher's device."""
        device = next(self.model.parameters()).device
        c = self.config
        x = to_model_input(images.to(device), c.mean, c.std, c.input_size, 3)
        return self.model(x).float()


def teacher_config_path(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".json")


def load_teacher(checkpoint: Path | str, num_classes: int, device: str | torch.device = "cpu") -> Teacher:
    """A timm model with weights from `checkpoint` (.safetensors, or a .pth state dict).

    Without a sidecar JSON the model is `vit_base_patch16_224` at 224 px with ImageNet normalisation.
    """
    import timm

    path = Path(checkpoint)
    if not path.is_file():
        raise TeacherError(
            f"teacher checkpoint {path} not found: give --teacher a {DEFAULT_TEACHER} state dict for {num_classes} "
            f"classes (.safetensors or .pth, optional {path.with_suffix('.json').name} naming another timm model), "
            "or train one here with `tinyarch teacher train`"
        )
    sidecar = teacher_config_path(path)
    config = (
        TeacherConfig.model_validate_json(sidecar.read_text())
        if sidecar.is_file()
        else TeacherConfig(num_classes=num_classes)
    )
    if config.num_classes != num_classes:
        raise TeacherError(f"teacher {path} predicts {config.num_classes} classes; the dataset has {num_classes}")
    model = timm.create_model(config.model, pretrained=False, num_classes=num_classes)
    state = _read_state_dict(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise TeacherError(f"teacher {path} does not fit timm model {config.model}: {first}") from None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return Teacher(model.to(device).eval(), config, f"{config.model}-{digest}")


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    return state


class TeacherLogitCache:
    """Teacher logits for `views` augmentation views of the training split, as float16 on disk.

    File: `<cache_dir>/<key>.npy` of shape (views, N, classes), plus `<key>.json` listing the
    views already computed. The key covers the teacher's weights, the training images and labels,
    and the augmentation (seed, flip, AutoAugment, the scheme that draws the views).
    """

    def __init__(self, cache_dir: Path, teacher: Teacher, data: Data, augment: SeededAugment, views: int):
        self.teacher, self.data, self.augment, self.views = teacher, data, augment, views
        h = hashlib.sha256()
        h.update(teacher.key.encode())
        h.update(data.train.images.numpy().tobytes())
        h.update(data.train.labels.numpy().tobytes())
        h.update(f"{augment.seed}|{augment.hflip}|{augment.autoaugment}|{augment.SCHEME}|{views}".encode())
        self.key = h.hexdigest()[:24]
        cache_dir.mkdir(parents=True, exist_ok=True)
        self.path = cache_dir / f"{self.key}.npy"
        self.index_path = cache_dir / f"{self.key}.json"
        shape = (views, len(data.train), data.info.num_classes)
        mode = "r+" if self.path.is_file() else "w+"
        self.table = np.lib.format.open_memmap(self.path, mode=mode, dtype=np.float16, shape=shape)
        self.done: set[int] = set(json.loads(self.index_path.read_text())) if self.index_path.is_file() else set()

    def ensure(self, view: int, batch_size: int = 256) -> None:
        """Compute and store the teacher's logits for one view, unless they are cached."""
        if view in self.done:
            return
        loader = torch.utils.data.DataLoader(AugmentedView(self.data.train, self.augment, view), batch_size=batch_size)
        for images, _, index in loader:
            self.table[view, index.numpy()] = self.teacher.logits(images).cpu().numpy().astype(np.float16)
        self.table.flush()
        self.done.add(view)
        self.index_path.write_text(json.dumps(sorted(self.done)))

    def logits(self, view: int, index: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.table[view, index.numpy()].astype(np.float32))


def train_teacher(
    model_name: str,
    data: Data,
    recipe: Any,
    out_dir: Path,
    input_size: int | None = None,
    seed: int = 0,
    **train_kwargs: Any,
) -> tuple[nn.Module, Any, Path]:
    """Train a timm model on `data` and save `teacher.safetensors` with its `teacher.json` in `out_dir`.

    Returns (model, TrainResult, checkpoint path); the checkpoint is only written when training succeeded.
    """
    import timm
    from safetensors.torch import save_file

    from tinyarch.tools.train import train_model, write_report

    torch.manual_seed(seed)
    net = timm.create_model(model_name, pretrained=False, num_classes=data.info.num_classes)
    size = input_size or data.info.resolution
    result = train_model(
        net,
        data,
        recipe,
        resolution=size,
        channels=3,
        model_dir=out_dir / "checkpoint",
        identity={"teacher": model_name, "dataset": data.info.name},
        seed=seed,
        **train_kwargs,
    )
    checkpoint = out_dir / "teacher.safetensors"
    if result.ok:
        save_file({k: v.contiguous().cpu() for k, v in net.state_dict().items()}, str(checkpoint))
        channels = 3 // len(data.info.mean)  # a one-channel dataset is replicated to RGB for the teacher
        config = TeacherConfig(
            model=model_name,
            num_classes=data.info.num_classes,
            input_size=size,
            mean=data.info.mean * channels,
            std=data.info.std * channels,
        )
        teacher_config_path(checkpoint).write_text(config.model_dump_json(indent=2))
        write_report(out_dir, result, {"spec": model_name, "dataset": data.info.name, "recipe": recipe.name})
    return net, result, checkpoint
