from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from tests.conftest import QUICK, own_home
from tinyarch.core.spec import ArchSpec
from tinyarch.tools.data import AugmentedView, Data, SeededAugment
from tinyarch.tools.distill import (
    KDConfig,
    TeacherConfig,
    TeacherError,
    TeacherLogitCache,
    init_from_checkpoint,
    kd_loss,
    load_teacher,
    teacher_accuracy,
    teacher_config_path,
)
from tinyarch.tools.evaluators import Evaluation, ProxyTrainingEvaluator
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


def _teacher_with_accuracy(path: Path, val_acc: float | None, num_classes: int = 10) -> Path:
    """A random `test_resnet` teacher whose sidecar claims `val_acc` (what `tinyarch teacher train` records)."""
    torch.manual_seed(0)
    save_file(timm.create_model("test_resnet", num_classes=num_classes).state_dict(), str(path))
    config = TeacherConfig(model="test_resnet", num_classes=num_classes, input_size=32, val_acc=val_acc)
    teacher_config_path(path).write_text(config.model_dump_json())
    return path


def test_finalize_distils_only_from_a_teacher_clearly_better_than_the_student_alone(
    rgb_spec: ArchSpec, synthetic: Data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TINYARCH_CACHE", str(tmp_path / "cache"))
    weak = _teacher_with_accuracy(tmp_path / "weak.safetensors", 5.0)

    def finalize(distill: str, teacher: Path = weak) -> tuple[Evaluation, list[str]]:
        runs = tmp_path / distill / teacher.stem
        ev = ProxyTrainingEvaluator(synthetic, QUICK, QUICK, runs, teacher=teacher, distill=distill, progress=False)
        result = ev.finalize(rgb_spec)
        assert result.status == "ok", result.reason
        return result, sorted(d.name.removeprefix(rgb_spec.id) for d in runs.iterdir())

    skipped, trained = finalize("auto")
    assert trained == ["-full"] and skipped.metrics["kd_used"] == 0.0 and skipped.metrics["teacher_accuracy"] == 5.0
    assert skipped.reason.startswith("KD skipped: the teacher's 5.00 % validation top-1 does not lead the student's")
    forced, trained = finalize("always")
    assert trained == ["-full-kd"] and forced.metrics["kd_used"] == 1.0
    assert forced.metrics["kd_accuracy"] == forced.metrics["accuracy"] and "control_accuracy" not in forced.metrics
    never, trained = finalize("never")
    assert trained == ["-full"] and "teacher_accuracy" not in never.metrics
    unknown, _ = finalize("auto", _teacher_with_accuracy(tmp_path / "unknown.safetensors", None))
    assert unknown.metrics["teacher_accuracy"] == pytest.approx(
        teacher_accuracy(load_teacher(tmp_path / "unknown.safetensors", 10), synthetic.val)
    )


VIT = "vit_tiny_patch16_224"
TINY_VIT = {"img_size": 32, "patch_size": 8, "depth": 1, "embed_dim": 32, "num_heads": 2}
"""ViT-B/16's code path (timm VisionTransformer) at a size that trains in seconds."""


def test_a_vit_fine_tuned_from_a_checkpoint_teaches_a_student(tmp_path: Path) -> None:
    from tests.test_cli import _problems, run, train_with_teacher

    torch.manual_seed(0)
    pretrained = timm.create_model(VIT, num_classes=1000, **TINY_VIT).state_dict()  # an "ImageNet" head
    save_file(pretrained, str(tmp_path / "vit.safetensors"))
    torch.save({"state_dict": pretrained}, tmp_path / "vit.pth")  # a timm training checkpoint's layout
    fresh = timm.create_model(VIT, num_classes=10, **TINY_VIT)
    assert init_from_checkpoint(fresh, tmp_path / "vit.safetensors") == ["head.bias", "head.weight"]
    assert torch.equal(fresh.state_dict()["blocks.0.attn.qkv.weight"], pretrained["blocks.0.attn.qkv.weight"])

    kwargs = ["--model", VIT, "--model-kwargs", json.dumps(TINY_VIT), "--dataset", "synthetic", "--recipe", "proxy"]
    res = run(
        "teacher", "train", *kwargs, "--epochs", "1", "--init", str(tmp_path / "vit.pth"), "--out", str(tmp_path / "t")
    )
    assert res.returncode == 0, res.stderr
    checkpoint = tmp_path / "t" / "teacher.safetensors"
    config = TeacherConfig.model_validate_json(teacher_config_path(checkpoint).read_text())
    assert (config.model, config.input_size, config.small_input_stem) == (VIT, 32, False)
    assert config.val_acc is not None and f"validation top-1 {config.val_acc:.2f} %, in teacher.json" in res.stdout

    student = train_with_teacher(tmp_path, checkpoint, tmp_path / "student", "--kd-temperature", "4")
    assert student.returncode == 0, student.stderr
    metrics = json.loads((tmp_path / "student" / "metrics.json").read_text())
    assert metrics["status"] == "ok" and list((tmp_path / "cache").glob("*.npy"))

    wider = timm.create_model(VIT, num_classes=1000, **{**TINY_VIT, "embed_dim": 48, "num_heads": 3})
    save_file(wider.state_dict(), str(tmp_path / "wider.safetensors"))
    res = run("teacher", "train", *kwargs, "--init", str(tmp_path / "wider.safetensors"), "--out", str(tmp_path / "w"))
    (line,) = _problems(res)
    assert line.startswith(f"error: --init {tmp_path / 'wider.safetensors'} does not fit timm model {VIT}: ")


def _noise_imagefolder(root: Path, classes: int = 4, per_class: int = 64) -> Path:
    """Random 32 px images: whatever a student learns alone stays near chance, so a teacher said to score
    99 % leads it clearly and `distill: auto` distils."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / "train" / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def test_a_search_finalizes_both_winners_with_kd_deploys_them_and_reports_it(tmp_path: Path) -> None:
    from tinyarch.core.rundir import load_run
    from tinyarch.interfaces.report import firmware

    data = _noise_imagefolder(tmp_path / "data")
    teacher = _teacher_with_accuracy(tmp_path / "teacher.safetensors", 99.0, num_classes=4)
    flags = {
        "--name": "kd",
        "--space": "mcu",
        "--evaluator": "proxy",
        "--dataset": "imagefolder",
        "--data-dir": str(data),
        "--strategy": "random",
        "--budget-evals": "4",
        "--batch": "4",
        "--budget-macs": "20M",
        "--proxy-epochs": "1",
        "--final-top-k": "2",
        "--final-epochs": "1",
        "--deploy-board": "host",
        "--teacher": str(teacher),
        "--runs-dir": str(tmp_path / "runs"),
    }
    command = [sys.executable, "-m", "tinyarch.interfaces.cli", "search", *(x for kv in flags.items() for x in kv)]
    res = subprocess.run(command, capture_output=True, text=True, timeout=600, env=own_home(tmp_path / "home"))
    assert res.returncode == 0, res.stderr

    run = load_run(tmp_path / "runs" / "kd")
    final = run.state["final"]
    assert len(final) == 2 and all(c["final"]["status"] == "ok" for c in final)
    for c in final:
        metrics = c["final"]["metrics"]
        assert metrics["teacher_accuracy"] == 99.0 and "kd_accuracy" in metrics and "control_accuracy" in metrics
        assert c["final"]["firmware"]["status"] == "ok", c["final"]["firmware"]
    rows = {row["id"]: row for row in firmware(run)}
    report = (tmp_path / "runs" / "kd" / "report.html").read_text()
    for c in final:
        m = c["final"]["metrics"]
        shown = rows[c["id"]]["distillation"]
        assert f"KD {m['kd_accuracy']:.2f} %" in shown and "teacher 99.00 %" in shown and shown in report
