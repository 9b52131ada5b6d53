from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from tests.conftest import QUICK
from tinyarch.core.spec import ArchSpec
from tinyarch.tools.data import AugmentedView, Data, SeededAugment
from tinyarch.tools.distill import (
    KDConfig,
    TeacherConfig,
    TeacherError,
    TeacherLogitCache,
    kd_loss,
    load_teacher,
    teacher_config_path,
)
from tinyarch.tools.train import train


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny timm model saved the way `tinyarch teacher train` saves one."""
    torch.manual_seed(0)
    net = timm.create_model("test_resnet", num_classes=10)
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    config = TeacherConfig(model="test_resnet", num_classes=10, input_size=48, mean=(0.5,) * 3, std=(0.25,) * 3)
    teacher_config_path(path).write_text(config.model_dump_json())
    return path


def test_cached_teacher_gives_the_same_kd_loss_as_a_live_teacher(
    synthetic: Data, teacher_file: Path, tmp_path: Path
) -> None:
    teacher = load_teacher(teacher_file, 10)
    augment = SeededAugment(7, hflip=True, autoaugment=True)
    cache = TeacherLogitCache(tmp_path, teacher, synthetic, augment, views=3)
    cache.ensure(1)
    batch = torch.utils.data.DataLoader(AugmentedView(synthetic.train, augment, 1), batch_size=64, shuffle=True)
    images, labels, index = next(iter(batch))
    student = torch.randn(64, 10) * 3
    live = kd_loss(student, teacher.logits(images), labels, temperature=10, alpha=0.6)
    cached = kd_loss(student, cache.logits(1, index), labels, temperature=10, alpha=0.6)
    assert cached.item() == pytest.approx(live.item(), rel=1e-3)  # float16 storage

    reopened = TeacherLogitCache(tmp_path, teacher, synthetic, augment, views=3)
    assert reopened.done == {1} and reopened.key == cache.key
    other = TeacherLogitCache(tmp_path, teacher, synthetic, SeededAugment(8, True, True), views=3)
    assert other.key != cache.key and other.done == set()


def test_kd_loss_and_alpha_schedule() -> None:
    logits = torch.randn(8, 5)
    targets = torch.randint(0, 5, (8,))
    assert kd_loss(logits, logits, targets, temperature=10, alpha=1.0).item() == pytest.approx(0.0, abs=1e-6)
    ce = torch.nn.functional.cross_entropy(logits, targets)
    assert kd_loss(logits, torch.randn(8, 5), targets, 10, 0.0).item() == pytest.approx(ce.item())
    kd = KDConfig()
    assert (kd.temperature, kd.alpha(0, 30), kd.alpha(29, 30)) == (10.0, 0.4, pytest.approx(0.8))


def test_missing_teacher_names_the_expected_file(tmp_path: Path) -> None:
    with pytest.raises(TeacherError) as info:
        load_teacher(tmp_path / "vit.pth", 100)
    message = str(info.value)
    assert f"teacher checkpoint {tmp_path / 'vit.pth'} not found" in message
    assert "vit_base_patch16_224 state dict for 100 classes" in message and "tinyarch teacher train" in message


def test_teacher_that_does_not_fit_its_model(teacher_file: Path, tmp_path: Path) -> None:
    with pytest.raises(TeacherError, match="predicts 10 classes; the dataset has 100"):
        load_teacher(teacher_file, 100)
    wrong = tmp_path / "wrong.safetensors"
    wrong.write_bytes(teacher_file.read_bytes())
    teacher_config_path(wrong).write_text(TeacherConfig(model="test_vit", num_classes=10).model_dump_json())
    with pytest.raises(TeacherError, match="does not fit timm model test_vit"):
        load_teacher(wrong, 10)


def test_kd_training_runs_with_cached_and_live_teacher(
    rgb_spec: ArchSpec, synthetic: Data, teacher_file: Path, tmp_path: Path
) -> None:
    spec = rgb_spec
    teacher = load_teacher(teacher_file, 10)
    _, cached = train(spec, synthetic, QUICK, None, teacher=teacher, teacher_cache_dir=tmp_path, progress=False)
    _, live = train(spec, synthetic, QUICK, None, teacher=teacher, progress=False)
    assert cached.ok and live.ok
    assert cached.history[0]["train_loss"] == pytest.approx(live.history[0]["train_loss"], rel=2e-2)
