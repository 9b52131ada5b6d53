from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import QUICK
from tinyarch.core.spec import ArchSpec
from tinyarch.tools import train as train_mod
from tinyarch.tools.data import Data
from tinyarch.tools.train import Recipe, train


def test_one_proxy_epoch_learns(rgb_spec: ArchSpec, synthetic: Data, tmp_path: Path) -> None:
    _, result = train(rgb_spec, synthetic, QUICK, tmp_path, progress=False)
    assert result.ok and result.epochs_done == 1
    assert result.val_acc > 30.0  # chance is 10 %
    for name in ("weights.safetensors", "spec.json", "metrics.json", "curve.png", "state.json"):
        assert (tmp_path / name).is_file(), name
    assert ArchSpec.model_validate_json((tmp_path / "spec.json").read_text()).id == rgb_spec.id
    assert json.loads((tmp_path / "metrics.json").read_text())["val_acc"] == result.val_acc


def test_resume_continues_from_the_last_finished_epoch(
    rgb_spec: ArchSpec, synthetic: Data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = QUICK.model_copy(update={"epochs": 3, "mixup_alpha": 0.2, "dropout": 0.1})
    _, straight = train(rgb_spec, synthetic, recipe, tmp_path / "straight", progress=False)

    real_save = train_mod._Checkpoint.save

    def save_then_die(self, model, optimizer, state):
        real_save(self, model, optimizer, state)
        if len(state["history"]) == 2:
            raise KeyboardInterrupt  # the process is killed right after epoch 2's checkpoint

    monkeypatch.setattr(train_mod._Checkpoint, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(rgb_spec, synthetic, recipe, tmp_path / "killed", progress=False)
    monkeypatch.setattr(train_mod._Checkpoint, "save", real_save)

    epochs_run = []
    real_view = train_mod.AugmentedView

    def spy(images, augment, view):
        epochs_run.append(view)
        return real_view(images, augment, view)

    monkeypatch.setattr(train_mod, "AugmentedView", spy)
    _, resumed = train(rgb_spec, synthetic, recipe, tmp_path / "killed", progress=False)
    assert epochs_run == [2]  # only the third epoch ran again
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    a = load_file(str(tmp_path / "straight" / "weights.safetensors"))
    b = load_file(str(tmp_path / "killed" / "weights.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit-identical to the uninterrupted run
    assert resumed.val_acc == straight.val_acc


def test_a_different_run_in_the_same_directory_is_refused(rgb_spec: ArchSpec, synthetic: Data, tmp_path: Path) -> None:
    train(rgb_spec, synthetic, QUICK, tmp_path, progress=False)
    with pytest.raises(train_mod.CandidateFailed, match="holds a different training run"):
        train(rgb_spec, synthetic, QUICK.model_copy(update={"lr": 0.05}), tmp_path, progress=False)


def test_divergence_fails_the_candidate_with_a_reason(rgb_spec: ArchSpec, synthetic: Data) -> None:
    wild = Recipe(name="wild", epochs=1, batch_size=32, lr=1e6, autoaugment=False)
    _, result = train(rgb_spec, synthetic, wild, None, progress=False)
    assert not result.ok
    assert "loss became" in result.reason or "diverged" in result.reason


def test_lr_schedule_warms_up_then_decays() -> None:
    recipe = Recipe(name="r", epochs=10, lr=0.2, warmup_epochs=2)
    lrs = [recipe.lr_at(step, 10) for step in range(100)]
    assert lrs[0] == pytest.approx(0.01) and lrs[19] == pytest.approx(0.2)
    assert all(a >= b for a, b in itertools.pairwise(lrs[20:])) and lrs[-1] < 1e-3
