"""Datasets behind one registry, held in memory as uint8 NCHW tensors.

- `cifar100`, `cifar10`: torchvision's on-disk layout, MD5-verified, from `--data-dir` or
  `TINYARCH_DATA`;
- `fashion-mnist`: IDX files, found at Debian's `/usr/share/datasets/fashion-mnist/` when
  `dataset-fashion-mnist` is installed, padded from 28 to 32 px;
- `imagefolder`: a user's `DIR/train/<class>/*` (and optional `DIR/test/<class>/*`);
- `synthetic`: class-prototype images made from a seed, for tests.

The validation split is carved from the training set with a fixed seed. The test split is only
returned by `load_test_split`, which is for final reporting: search and model selection never
call it.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10, CIFAR100
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from tinyarch.core.errors import TinyarchError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def _torchvision_md5s(cls: type[CIFAR10]) -> dict[str, str]:
    files = [*cls.train_list, *cls.test_list, [cls.meta["filename"], cls.meta["md5"]]]
    return {f"{cls.base_folder}/{name}": md5 for name, md5 in files}


CIFAR_MD5 = {"cifar100": _torchvision_md5s(CIFAR100), "cifar10": _torchvision_md5s(CIFAR10)}
CIFAR_URL = {"cifar100": CIFAR100.url, "cifar10": CIFAR10.url}


class DataError(TinyarchError, RuntimeError):
    """Missing or corrupt data; the message says what to put where and how to get it."""


@dataclass(frozen=True)
class ImageSet:
    """uint8 images (N, C, H, W) and int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> ImageSet:
        return ImageSet(self.images[index], self.labels[index])


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    channels: int
    resolution: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool


@dataclass(frozen=True)
class Data:
    """Train and validation splits of one dataset; the test split is loaded separately."""

    info: DatasetInfo
    train: ImageSet
    val: ImageSet
    data_dir: Path | None

    def with_train_subset(self, images: int, seed: int = 0) -> Data:
        """The same data with a fixed-seed subset of the training split (validation unchanged), for cheap proxies."""
        if images >= len(self.train):
            return self
        keep = torch.randperm(len(self.train), generator=torch.Generator().manual_seed(seed))[:images]
        return Data(self.info, self.train.subset(keep), self.val, self.data_dir)


Loader = Callable[[Path | None, str, int], ImageSet]
"""(data_dir, split 'train' | 'test', seed) -> images."""


def data_dir_from_env(data_dir: Path | str | None) -> Path | None:
    value = data_dir or os.environ.get("TINYARCH_DATA")
    return Path(value).expanduser() if value else None


# ---------------------------------------------------------------------------------------- CIFAR


def _md5(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "md5").hexdigest()


def verify_cifar(name: str, root: Path | None, checksums: dict[str, str] | None = None) -> Path:
    """The root holding torchvision's CIFAR layout, after checking every file's MD5."""
    checksums = checksums or CIFAR_MD5[name]
    folder = next(iter(checksums)).split("/")[0]
    where = f"{root}/{folder}/" if root else f"<data-dir>/{folder}/ (pass --data-dir or set TINYARCH_DATA)"
    get = f"download {CIFAR_URL[name]} and untar it into {root or '<data-dir>'}"
    if root is None or not (root / folder).is_dir():
        raise DataError(f"{name} not found: expected torchvision's layout at {where}; {get}")
    for rel, md5 in checksums.items():
        path = root / rel
        if not path.is_file():
            raise DataError(f"{name}: missing {path}; {get}")
        if _md5(path) != md5:
            raise DataError(f"{name}: {path} is corrupt (MD5 {_md5(path)}, expected {md5}); delete it and {get}")
    return root


def _load_cifar_pickle(path: Path, label_key: str) -> ImageSet:
    with path.open("rb") as f:
        batch = pickle.load(f, encoding="latin1")
    images = torch.from_numpy(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).copy())
    return ImageSet(images, torch.tensor(batch[label_key], dtype=torch.int64))


def _cifar_loader(name: str, checksums: dict[str, str] | None = None) -> Loader:
    def load(data_dir: Path | None, split: str, seed: int) -> ImageSet:
        root = verify_cifar(name, data_dir, checksums)
        if name == "cifar100":
            return _load_cifar_pickle(root / "cifar-100-python" / split, "fine_labels")
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        parts = [_load_cifar_pickle(root / "cifar-10-batches-py" / f, "labels") for f in files]
        return ImageSet(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]))

    return load


def write_fake_cifar100(root: Path, n_train: int = 500, n_test: int = 100, seed: int = 0) -> dict[str, str]:
    """A small CIFAR-100 in exactly torchvision's format (learnable class prototypes plus noise).

    Returns the MD5s of the files written, to pass to the loader in place of the real ones.
    """
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    prototypes = rng.integers(0, 256, size=(100, 3072))
    for split, n in (("train", n_train), ("test", n_test)):
        fine = rng.integers(0, 100, size=n)
        noise = rng.integers(-40, 41, size=(n, 3072))
        data = np.clip(prototypes[fine] + noise, 0, 255).astype(np.uint8)
        batch = {
            "filenames": [f"fake_{split}_{i}.png" for i in range(n)],
            "batch_label": f"fake {split} batch",
            "fine_labels": fine.tolist(),
            "coarse_labels": (fine // 5).tolist(),
            "data": data,
        }
        with (folder / split).open("wb") as f:
            pickle.dump(batch, f)
    meta = {
        "fine_label_names": [f"class_{i}" for i in range(100)],
        "coarse_label_names": [f"super_{i}" for i in range(20)],
    }
    with (folder / "meta").open("wb") as f:
        pickle.dump(meta, f)
    return {f"cifar-100-python/{name}": _md5(folder / name) for name in ("train", "test", "meta")}


# -------------------------------------------------------------------------------- Fashion-MNIST


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: expected {int(np.prod(dims))} values, found {data.size}")
    return data.reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise DataError(
        f"fashion-mnist: no {stem}[.gz] in {folder}; install Debian's dataset-fashion-mnist "
        f"(apt-get install dataset-fashion-mnist) or put the four IDX files in --data-dir/fashion-mnist/"
    )


def _fashion_mnist(data_dir: Path | None, split: str, seed: int) -> ImageSet:
    user = data_dir / "fashion-mnist" if data_dir else None
    folder = user if user and user.is_dir() else FASHION_MNIST_DIR
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(_find_idx(folder, f"{prefix}-images-idx3-ubyte"))
    labels = _read_idx(_find_idx(folder, f"{prefix}-labels-idx1-ubyte"))
    padded = np.pad(images, ((0, 0), (2, 2), (2, 2)))  # 28 -> 32 px, as LeNet did for MNIST
    return ImageSet(torch.from_numpy(padded.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))


# ---------------------------------------------------------------------------------- the others


def _imagefolder(data_dir: Path | None, split: str, seed: int) -> ImageSet:
    from PIL import Image
    from torchvision.datasets import ImageFolder

    if data_dir is None or not (data_dir / "train").is_dir():
        raise DataError(
            f"imagefolder: expected {data_dir or '<data-dir>'}/train/<class>/<image> (and optionally test/)"
        )
    folder = data_dir / split
    if not folder.is_dir():
        raise DataError(f"imagefolder: no {folder}/<class>/<image> for the {split} split")
    found = ImageFolder(str(folder))
    if not found.samples:
        raise DataError(f"imagefolder: no images under {folder}")
    images = [torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1) for p, _ in found.samples]
    side = max(max(i.shape[-2:]) for i in images)
    images = [TF.resize(i, [side, side], antialias=True) if i.shape[-2:] != (side, side) else i for i in images]
    return ImageSet(torch.stack(images), torch.tensor([c for _, c in found.samples], dtype=torch.int64))


def _imagefolder_info(data_dir: Path | None) -> DatasetInfo:
    from torchvision.datasets import ImageFolder

    if data_dir is None or not (data_dir / "train").is_dir():
        raise DataError(
            f"imagefolder: expected {data_dir or '<data-dir>'}/train/<class>/<image> (and optionally test/)"
        )
    classes = ImageFolder(str(data_dir / "train")).classes
    return DatasetInfo("imagefolder", len(classes), 3, 0, (0.5,) * 3, (0.25,) * 3, True)


SYNTHETIC_SIZES = {"train": 2000, "test": 500}


def _synthetic(data_dir: Path | None, split: str, seed: int) -> ImageSet:
    """10 classes of smooth random prototypes plus noise: learnable in one epoch, different per split."""
    g = torch.Generator().manual_seed(1234)
    prototypes = torch.nn.functional.interpolate(torch.rand(10, 3, 4, 4, generator=g), size=32, mode="bilinear")
    g.manual_seed(seed * 2 + (split == "test"))
    n = SYNTHETIC_SIZES[split]
    labels = torch.randint(0, 10, (n,), generator=g)
    images = prototypes[labels] * 200 + torch.rand(n, 3, 32, 32, generator=g) * 55
    return ImageSet(images.to(torch.uint8), labels)


_CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR_STD = (0.2470, 0.2435, 0.2616)
REGISTRY: dict[str, tuple[DatasetInfo | None, Loader]] = {
    "cifar100": (
        DatasetInfo("cifar100", 100, 3, 32, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), True),
        _cifar_loader("cifar100"),
    ),
    "cifar10": (DatasetInfo("cifar10", 10, 3, 32, _CIFAR_MEAN, _CIFAR_STD, True), _cifar_loader("cifar10")),
    "fashion-mnist": (DatasetInfo("fashion-mnist", 10, 1, 32, (0.2860,), (0.3530,), True), _fashion_mnist),
    "imagefolder": (None, _imagefolder),
    "synthetic": (DatasetInfo("synthetic", 10, 3, 32, (0.5,) * 3, (0.25,) * 3, True), _synthetic),
}


def dataset_info(name: str, data_dir: Path | None = None) -> DatasetInfo:
    if name not in REGISTRY:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(REGISTRY)}")
    info, _ = REGISTRY[name]
    return info or _imagefolder_info(data_dir)


def load_data(
    name: str,
    data_dir: Path | str | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    loader: Loader | None = None,
) -> Data:
    """Train and validation splits; the validation split is a fixed-seed slice of the training set."""
    root = data_dir_from_env(data_dir)
    info = dataset_info(name, root)
    full = (loader or REGISTRY[name][1])(root, "train", seed)
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, round(len(full) * val_fraction))
    if info.resolution == 0:
        info = DatasetInfo(**{**info.__dict__, "resolution": full.images.shape[-1]})
    return Data(info, full.subset(order[n_val:]), full.subset(order[:n_val]), root)


def load_test_split(name: str, data_dir: Path | str | None = None, loader: Loader | None = None) -> ImageSet:
    """The test split: for final reporting only, never for search or model selection."""
    root = data_dir_from_env(data_dir)
    dataset_info(name, root)
    return (loader or REGISTRY[name][1])(root, "test", 0)


def cifar_loader_with_checksums(name: str, checksums: dict[str, str]) -> Loader:
    """The real CIFAR loader verifying against `checksums` (e.g. those of `write_fake_cifar100`)."""
    return _cifar_loader(name, checksums)


# ---------------------------------------------------------------------------------- augmentation


_GLOBAL_RNG = threading.Lock()
"""Held while an augmentation seeds and draws from torch's global CPU generator."""


class SeededAugment:
    """Random crop (4 px padding), optional horizontal flip and AutoAugment (CIFAR-10 policy), drawn
    from a seed per (view, index): the same view of an image is the same pixels every time, which
    lets teacher logits be cached. AutoAugment is torchvision's public `v2.AutoAugment`, run on a
    fork of torch's global generator seeded for the sample, so the caller's random state is untouched."""

    SCHEME = "v2.AutoAugment-forked-rng"
    """Names how views are drawn; cached teacher logits are keyed by it, so a change never reuses stale ones."""

    def __init__(self, seed: int, hflip: bool, autoaugment: bool):
        self.seed, self.hflip, self.autoaugment = seed, hflip, autoaugment
        self._aa = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10, interpolation=v2.InterpolationMode.NEAREST)

    def __call__(self, image: torch.Tensor, view: int, index: int) -> torch.Tensor:
        rng = random.Random(hash((self.seed, view, index)))
        h, w = image.shape[-2:]
        padded = torch.nn.functional.pad(image, (4, 4, 4, 4))
        top, left = rng.randint(0, 8), rng.randint(0, 8)
        image = padded[..., top : top + h, left : left + w]
        if self.hflip and rng.random() < 0.5:
            image = image.flip(-1)
        if self.autoaugment:
            # AutoAugment draws its policy, probabilities and signs from torch's CPU generator: seed it for this
            # sample inside a fork that restores it afterwards (no CUDA generator is touched). The lock keeps
            # threads augmenting at once from drawing from each other's seeds.
            with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(rng.getrandbits(63))
                image = self._aa(image)
        return image


class AugmentedView(torch.utils.data.Dataset):
    """One augmentation view of an ImageSet; items are (uint8 image, label, index)."""

    def __init__(self, images: ImageSet, augment: SeededAugment | None, view: int):
        self.images, self.augment, self.view = images, augment, view

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        image = self.images.images[index]
        if self.augment is not None:
            image = self.augment(image, self.view, index)
        return image, self.images.labels[index], index


def to_model_input(
    images: torch.Tensor,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    resolution: int,
    channels: int,
    channels_last: bool = False,
) -> torch.Tensor:
    """uint8 NCHW batch -> normalised float at the model's resolution and channel count."""
    x = images.float().div_(255)
    x = (x - torch.tensor(mean, device=x.device).view(1, -1, 1, 1)) / torch.tensor(std, device=x.device).view(
        1, -1, 1, 1
    )
    if x.shape[1] != channels:
        if x.shape[1] != 1:
            raise DataError(f"the data has {x.shape[1]} channels; the model asks for {channels}")
        x = x.expand(-1, channels, -1, -1)
    if x.shape[-1] != resolution:
        x = torch.nn.functional.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()
