from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from tinyarch.tools import data as data_mod
from tinyarch.tools.data import (
    AugmentedView,
    DataError,
    SeededAugment,
    cifar_loader_with_checksums,
    load_data,
    load_test_split,
    to_model_input,
    write_fake_cifar100,
)


def test_fake_cifar100_loads_through_the_real_loader(tmp_path: Path) -> None:
    md5s = write_fake_cifar100(tmp_path, n_train=300, n_test=50, seed=1)
    loader = cifar_loader_with_checksums("cifar100", md5s)
    data = load_data("cifar100", tmp_path, val_fraction=0.1, loader=loader)
    assert data.info.num_classes == 100
    assert data.train.images.shape == (270, 3, 32, 32) and data.train.images.dtype == torch.uint8
    assert len(data.val) == 30 and int(data.train.labels.max()) < 100
    assert len(load_test_split("cifar100", tmp_path, loader=loader)) == 50


def test_wrong_md5_gives_a_clear_error(tmp_path: Path) -> None:
    write_fake_cifar100(tmp_path, n_train=20, n_test=10)
    with pytest.raises(DataError) as info:
        load_data("cifar100", tmp_path)  # the official checksums
    message = str(info.value)
    assert "\n" not in message
    assert "cifar-100-python/train is corrupt" in message and "expected 16019d7e3df5f24257cddd939b257f8d" in message
    assert "cifar-100-python.tar.gz" in message


def test_missing_cifar_says_what_to_put_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TINYARCH_DATA", raising=False)
    with pytest.raises(DataError, match=r"expected torchvision's layout at <data-dir>/cifar-10-batches-py/"):
        load_data("cifar10")
    monkeypatch.setenv("TINYARCH_DATA", str(tmp_path))
    with pytest.raises(DataError, match=rf"at {tmp_path}/cifar-100-python/; download https://\S+ and untar"):
        load_data("cifar100")


def test_validation_split_is_fixed_and_disjoint() -> None:
    a, b = load_data("synthetic", seed=3), load_data("synthetic", seed=3)
    assert torch.equal(a.val.images, b.val.images)
    assert len(a.train) + len(a.val) == 2000
    train_rows = {bytes(x.numpy()) for x in a.train.images}
    assert not any(bytes(x.numpy()) in train_rows for x in a.val.images)


@pytest.mark.skipif(not data_mod.FASHION_MNIST_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist() -> None:
    data = load_data("fashion-mnist")
    assert data.train.images.shape == (54000, 1, 32, 32) and len(data.val) == 6000
    assert int(data.train.images[:, :, :2].max()) == 0  # padded 28 -> 32 with zeros
    assert len(load_test_split("fashion-mnist")) == 10000
    x = to_model_input(data.val.images[:4], data.info.mean, data.info.std, 48, 3)
    assert x.shape == (4, 3, 48, 48)


def test_missing_fashion_mnist_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_mod, "FASHION_MNIST_DIR", tmp_path / "nowhere")
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_data("fashion-mnist", tmp_path)


def test_imagefolder(tmp_path: Path) -> None:
    for split, n in (("train", 6), ("test", 2)):
        for cls in ("cat", "dog"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(torch.randint(0, 255, (20, 20, 3), dtype=torch.uint8).numpy()).save(folder / f"{i}.png")
    data = load_data("imagefolder", tmp_path, val_fraction=0.25)
    assert data.info.num_classes == 2 and data.info.resolution == 20
    assert len(data.train) + len(data.val) == 12
    assert len(load_test_split("imagefolder", tmp_path)) == 4
    with pytest.raises(DataError, match="train/<class>/<image>"):
        load_data("imagefolder", tmp_path / "empty")


def test_unknown_dataset() -> None:
    with pytest.raises(DataError, match="choose one of cifar100, cifar10, fashion-mnist"):
        load_data("mnist-ish")


def test_augmentation_is_a_function_of_seed_view_and_index() -> None:
    data = load_data("synthetic")
    view0 = AugmentedView(data.train, SeededAugment(0, True, True), 0)
    again = AugmentedView(data.train, SeededAugment(0, True, True), 0)
    view1 = AugmentedView(data.train, SeededAugment(0, True, True), 1)
    assert all(torch.equal(view0[i][0], again[i][0]) for i in range(20))
    assert not all(torch.equal(view0[i][0], view1[i][0]) for i in range(20))
