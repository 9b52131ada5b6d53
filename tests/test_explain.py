"""Explanations: design effects recovered from the NATS table and planted data; IG completeness on a trained model."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import EXAMPLES, QUICK
from tinyarch.core.spaces import SearchSpace, load_space
from tinyarch.tools.builder import SqueezeExcite
from tinyarch.tools.data import Data, to_model_input
from tinyarch.tools.evaluators import NatsTableEvaluator
from tinyarch.tools.explain import (
    MIN_CANDIDATES,
    design_effects,
    explain_model_dir,
    integrated_gradients,
    model_explanation,
)
from tinyarch.tools.profile import candidate_cost
from tinyarch.tools.train import train


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Convolutions on a busy 2-core machine run many times faster on one thread than on two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def nats() -> SearchSpace:
    return load_space("nats-tss")


def _history(space: SearchSpace, n: int, accuracy: Any, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    cells = [space.sample(rng, num_classes=100) for _ in range(n)]
    return [
        {"spec": c.model_dump(mode="json"), "metrics": {"accuracy": accuracy(c)}, "cost": candidate_cost(space, c)}
        for c in cells
    ]


@pytest.mark.nats_table
def test_nats_cifar100_ranks_operations(nats: SearchSpace) -> None:
    table = NatsTableEvaluator("cifar100")
    effects = design_effects(nats, _history(nats, 200, lambda c: table.evaluate(c).metrics["accuracy"]), seed=0)

    fits = {f.target: f for f in effects.fits}
    assert set(fits) == {"accuracy", "macs"}  # nats-tss has no SRAM or latency model
    assert fits["accuracy"].spearman > 0.5, fits  # about 0.69 held out on this history
    assert fits["macs"].spearman > 0.9
    conv, none = effects.effect("accuracy", "edge_*=nor_conv_3x3"), effects.effect("accuracy", "edge_*=none")
    assert conv and none
    assert conv.confident and conv.mean > 0, conv
    assert none.confident and none.mean < 0, none
    pooled_macs = [e for e in effects.effects if e.target == "macs" and e.pooled]
    assert max(pooled_macs, key=lambda e: e.mean).choice == "edge_*=nor_conv_3x3"
    summary = effects.summary()
    assert f"Spearman {fits['accuracy'].spearman:.2f}" in summary and "edge_*=nor_conv_3x3 +" in summary


def test_planted_effect_is_recovered_and_summarised(nats: SearchSpace) -> None:
    """No table needed: accuracy is the number of 3x3 convolutions plus noise."""
    noise = random.Random(1)
    history = _history(nats, 60, lambda c: 50 + 2 * c.ops().count("nor_conv_3x3") + noise.gauss(0, 0.5))
    effects = design_effects(nats, history)
    conv = effects.effect("accuracy", "edge_*=nor_conv_3x3")
    assert conv and conv.confident and 0.5 < conv.mean < 3  # against the average op, which is 3x3 a fifth of the time
    lines = effects.summary().splitlines()
    assert len(lines) <= 8 and all("Spearman" in line for line in lines[1:])
    assert effects.fits[0].spearman > 0.8


def test_too_few_candidates_say_so(nats: SearchSpace) -> None:
    few = design_effects(nats, _history(nats, MIN_CANDIDATES - 1, lambda c: 50.0))
    assert not few.fits and not few.effects and few.candidates == MIN_CANDIDATES - 1
    assert "need 12" in few.summary() and len(few.summary().splitlines()) == 1
    unmeasured = [{**h, "metrics": {}, "cost": {}} for h in _history(nats, 20, lambda c: 0.0)]
    assert "no surrogate" in design_effects(nats, unmeasured).summary()


def test_hierarchical_costs_pool_fields_across_stages() -> None:
    """Cost-only history (no accuracy yet): log-scale cost targets, values pooled by field name."""
    mcu = load_space("mcu")
    rng = random.Random(0)
    specs = [mcu.sample(rng, num_classes=10, in_channels=3) for _ in range(40)]
    effects = design_effects(mcu, [{"spec": s.model_dump(mode="json"), "cost": candidate_cost(mcu, s)} for s in specs])
    assert [f.target for f in effects.fits] == ["macs", "peak_sram", "latency_ms"]
    assert all(f.log for f in effects.fits)
    swish = effects.effect("macs", "*.activation=swish")
    assert swish and swish.pooled and swish.count > 40  # stem, five stages and head hold an activation each
    assert effects.effect("macs", "stages[3].se_ratio=0.5")
    assert "%" in effects.summary()


def test_model_explanation_is_complete_and_ablates(one_thread: None, synthetic: Data, tmp_path: Path) -> None:
    mcu = load_space("mcu")
    spec = mcu.parse({**json.loads((EXAMPLES / "cpu_small.json").read_text()), "in_channels": synthetic.info.channels})
    model, result = train(spec, synthetic, QUICK, None, progress=False)
    assert result.ok
    info = synthetic.info
    x = to_model_input(synthetic.val.images[:16], info.mean, info.std, spec.resolution, spec.in_channels)
    y = synthetic.val.labels[:16]

    model.eval()
    attributions, _ = integrated_gradients(model, x, y, steps=64)
    with torch.no_grad():
        change = model(x).gather(1, y[:, None]).squeeze(1) - model(torch.zeros_like(x[:1]))[0, y]
    error = (attributions.sum((1, 2, 3)) - change).abs() / change.abs()
    assert error.max() < 0.05, error  # sum of attributions = f(x) − f(baseline), per image

    model.train()
    explanation = model_explanation(model, spec, x, y, out_dir=tmp_path, steps=32)
    assert model.training and isinstance(model.stages[2][0].se, SqueezeExcite)  # left as it was found
    assert explanation.completeness_error < 0.05
    assert len(explanation.stages) == len(spec.stages)
    assert sum(s.share for s in explanation.stages) == pytest.approx(1.0)
    blocks = spec.blocks()
    kinds = sorted(a.kind for a in explanation.ablations)
    assert kinds.count("se_bypass") == sum(b.se_channels > 0 for b in blocks)
    assert kinds.count("skip_block") == sum(b.residual for b in blocks)
    assert sorted(explanation.class_saliency) == sorted(set(y.tolist()))
    assert explanation.figures == [tmp_path / "saliency.png"]
    assert explanation.figures[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = explanation.summary()
    assert len(summary.splitlines()) <= 5 and "completeness error" in summary and "stages[4]" in summary


def test_model_dir_explanation_is_cached(one_thread: None, synthetic: Data, tmp_path: Path) -> None:
    """What the analyse node and `tinyarch explain --candidate` call: computed once, then read back."""
    mcu = load_space("mcu")
    spec = mcu.parse({**json.loads((EXAMPLES / "cpu_small.json").read_text()), "in_channels": synthetic.info.channels})
    train(spec, synthetic, QUICK, tmp_path, progress=False)
    first = explain_model_dir(tmp_path, images=8, steps=16)
    assert (tmp_path / "explanation.json").is_file() and (tmp_path / "saliency.png").is_file()
    assert explain_model_dir(tmp_path, images=8, steps=16).summary() == first.summary()


@pytest.mark.nats_table
def test_explain_cli_on_a_nats_run(tmp_path: Path) -> None:
    """`tinyarch explain RUN` fits the design effects of a finished run and writes them beside it."""
    cli = [sys.executable, "-m", "tinyarch.interfaces.cli"]
    runs = str(tmp_path / "runs")
    search = [*cli, "search", "--name", "r", "--strategy", "random", "--budget-evals", "40", "--batch", "8"]
    subprocess.run([*search, "--runs-dir", runs, "--memory", "off"], check=True, capture_output=True, timeout=300)
    res = subprocess.run([*cli, "explain", "r", "--runs-dir", runs], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "held-out Spearman" in res.stdout and (tmp_path / "runs" / "r" / "design_effects.json").is_file()
    res = subprocess.run([*cli, "explain", "r", "--candidate", "x", "--runs-dir", runs], capture_output=True, text=True)
    assert res.returncode == 2 and "no trained model" in res.stderr
    res = subprocess.run([*cli, "explain", "nope", "--runs-dir", runs], capture_output=True, text=True)
    assert res.returncode == 2 and "no run 'nope'" in res.stderr and not (tmp_path / "runs" / "nope").exists()
