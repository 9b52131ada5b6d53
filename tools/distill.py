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
from tinyarch.tools.data import AugmentedView, Data, ImageSet, SeededAugment, to_model_input

DEFAULT_TEACHER = "vit_base_patch16_224"
SMALL_INPUT = 64
"""Teachers at this resolution or below get a stride-1 stem (CIFAR-style) instead of ImageNet's 4x reduction."""
CPU_TEACHER = "resnet18"
CPU_TEACHER_KWARGS: dict[str, Any] = {"channels": [16, 32, 64, 128]}
"""timm's `resnet18` at a quarter of its width (0.71 M parameters, 44.5 M MACs at 32 px with the stride-1 stem):
the default of `tinyarch teacher train`, two minutes an epoch of Fashion-MNIST on 2 CPU cores, and 25 epochs
of the teacher recipe put it 2.1 validation points above the best full-data `cpu_small` student (README)."""
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
    """The sidecar `<checkpoint>.json`: what model the weights belong to, how it reads images, how good it is."""

    model: str = DEFAULT_TEACHER
    model_kwargs: dict[str, Any] = {}
    """Extra timm.create_model arguments (widths, depth, patch size), so a narrow variant rebuilds exactly."""
    small_input_stem: bool = False
    """The ResNet stem is a 3x3 stride-1 convolution without max-pool (see `small_input_stem`)."""
    num_classes: int
    input_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    val_acc: float | None = None
    """Validation top-1 % on the dataset it was trained on; finalize's auto rule compares students with it."""


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
        x = to_model_input(images.to(device), c.mean, c.std, c.input_size, 3, channels_last=True)
        return self.model(x).float()


@torch.no_grad()
def teacher_accuracy(teacher: Teacher, images: ImageSet, batch_size: int = 256) -> float:
    """Top-1 % of the teacher on `images` (a validation split), for a checkpoint whose sidecar has none."""
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = teacher.logits(images.images[start : start + batch_size])
        correct += int((logits.argmax(1).cpu() == images.labels[start : start + batch_size]).sum())
    return 100.0 * correct / max(len(images), 1)


def teacher_config_path(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".json")


def load_teacher(checkpoint: Path | str, num_classes: int, device: str | torch.device = "cpu") -> Teacher:
    """A timm model with weights from `checkpoint` (.safetensors, or a .pth state dict).

    Without a sidecar JSON the model is `vit_base_patch16_224` at 224 px with ImageNet normalisation.
    """
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
    model = build_teacher(config)
    state = _read_state_dict(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise TeacherError(f"teacher {path} does not fit timm model {config.model}: {_first_problem(e)}") from None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    model = model.to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]  # as in train_model
    return Teacher(model.eval(), config, f"{config.model}-{digest}")


def build_teacher(config: TeacherConfig) -> nn.Module:
    """The timm model a TeacherConfig names, randomly initialised."""
    import timm

    try:
        model = timm.create_model(config.model, pretrained=False, num_classes=config.num_classes, **config.model_kwargs)
    except (RuntimeError, TypeError) as e:  # an unknown name, or kwargs the model does not take
        raise TeacherError(f"timm model {config.model} with {config.model_kwargs}: {_first_problem(e)}") from None
    return small_input_stem(model) if config.small_input_stem else model


def fixed_input_size(model: nn.Module) -> int | None:
    """The side a timm model with a fixed patch grid (a ViT: `patch_embed.img_size`) needs, else None."""
    size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    return int(size[0]) if isinstance(size, tuple | list) else None


def _stem_conv(model: nn.Module) -> nn.Conv2d | None:
    """The first convolution of `conv1` (a convolution, or a deep stem starting with one)."""
    conv1 = getattr(model, "conv1", None)
    first = conv1[0] if isinstance(conv1, nn.Sequential) else conv1
    return first if isinstance(first, nn.Conv2d) else None


def has_imagenet_stem(model: nn.Module) -> bool:
    """A timm ResNet-style stem: a `conv1` and a `maxpool`."""
    return _stem_conv(model) is not None and isinstance(getattr(model, "maxpool", None), nn.Module)


def small_input_stem(model: nn.Module) -> nn.Module:
    """Swap the ImageNet stem (stride-2 convolution, then max-pool: 4x down) for a 3x3 stride-1 one.

    At 28-32 px the ImageNet stem leaves 8x8 maps before the first block and 1x1 at the last;
    CIFAR-style ResNets keep full resolution until the first stage.
    """
    first = _stem_conv(model)
    if first is None or not has_imagenet_stem(model):
        raise TeacherError(f"{type(model).__name__} has no ResNet stem (conv1, maxpool) to adapt to small inputs")
    conv = nn.Conv2d(first.in_channels, first.out_channels, 3, stride=1, padding=1, bias=first.bias is not None)
    stem = model.conv1
    if isinstance(stem, nn.Sequential):
        stem[0] = conv
    else:
        model.conv1 = conv
    model.maxpool = nn.Identity()
    return model


def init_from_checkpoint(model: nn.Module, checkpoint: Path) -> list[str]:
    """Load pretrained weights into `model`, leaving its (new) classifier head out; returns the keys left out.

    The checkpoint's head is for its own classes: it is dropped and the model's fresh head kept.
    Any other missing, unexpected or differently shaped tensor means the checkpoint is for another model.
    """
    if not checkpoint.is_file():
        raise TeacherError(f"--init {checkpoint} not found: give a .safetensors or timm .pth state dict")
    state = _read_state_dict(checkpoint)
    own = model.state_dict()
    head = getattr(model, "pretrained_cfg", {}).get("classifier", "")
    heads = tuple(head) if isinstance(head, list | tuple) else (head,)
    is_head = [k for k in {*own, *state} if head and k.startswith(tuple(f"{h}." for h in heads))]
    state = {k: v for k, v in state.items() if k not in is_head}
    wrong = [
        f"{k} {tuple(v.shape)} != {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    missing = sorted(set(own) - set(state) - set(is_head))
    unexpected = sorted(set(state) - set(own))
    problems = wrong + [f"missing {k}" for k in missing] + [f"unexpected {k}" for k in unexpected]
    if problems:
        model_name = getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise TeacherError(f"--init {checkpoint} does not fit timm model {model_name}: {problems[0]}{more}")
    model.load_state_dict(state, strict=False)
    return sorted(is_head)


def _first_problem(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


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
    model_kwargs: dict[str, Any] | None = None,
    init: Path | None = None,
    **train_kwargs: Any,
) -> tuple[nn.Module, Any, Path]:
    """Train (or, from `init`, fine-tune) a timm model on `data`; save `teacher.safetensors` and `teacher.json`.

    At `SMALL_INPUT` px or less a ResNet-style model gets a stride-1 stem, so a 32 px image is not
    shrunk to 8 px before the first block. `init` loads pretrained weights without their head.
    Returns (model, TrainResult, checkpoint path); the checkpoint is only written when training succeeded.
    """
    from safetensors.torch import save_file

    from tinyarch.tools.train import train_model, write_report

    channels = 3 // len(data.info.mean)  # a one-channel dataset is replicated to RGB for the teacher
    config = TeacherConfig(
        model=model_name,
        model_kwargs=model_kwargs or {},
        num_classes=data.info.num_classes,
        input_size=input_size or data.info.resolution,
        mean=data.info.mean * channels,
        std=data.info.std * channels,
    )
    torch.manual_seed(seed)
    net = build_teacher(config)
    if input_size is None:  # a ViT's patch grid fixes its input size; a CNN takes the data's
        config.input_size = fixed_input_size(net) or config.input_size
    if init is not None:
        init_from_checkpoint(net, init)
    size = config.input_size
    if size <= SMALL_INPUT and has_imagenet_stem(net):
        config.small_input_stem = True
        net = small_input_stem(net)
    result = train_model(
        net,
        data,
        recipe,
        resolution=size,
        channels=3,
        model_dir=out_dir / "checkpoint",
        identity={"teacher": config.model_dump(), "init": str(init) if init else None, "dataset": data.info.name},
        seed=seed,
        **train_kwargs,
    )
    checkpoint = out_dir / "teacher.safetensors"
    if result.ok:
        save_file({k: v.contiguous().cpu() for k, v in net.state_dict().items()}, str(checkpoint))
        config.val_acc = result.val_acc
        teacher_config_path(checkpoint).write_text(config.model_dump_json(indent=2))
        write_report(out_dir, result, {"spec": model_name, "dataset": data.info.name, "recipe": recipe.name})
    return net, result, checkpoint
