"""Explanations the agents read: which design choices move accuracy and cost, and what a trained model relies on.

Design level (`design_effects`): per target (accuracy, log MACs, log peak SRAM, log latency) a
bootstrap ensemble of small MLPs is fitted on one-hot encoded specs, and captum's Integrated
Gradients (baseline: the mean encoding) attributes each candidate's prediction to its slots. The
effect of `path=value` is the mean attribution of that slot over the candidates holding the value:
how far the value moves the target from the average choice. Values are also pooled over slots of
one kind (`edge_*` in cells, `*.activation` across stages). The spread over ensemble members is the
uncertainty; a K-fold held-out Spearman says how far the surrogate can be trusted at all.

Model level (`model_explanation`): Integrated Gradients saliency with an explicit completeness
check, per-stage LayerConductance, and cheap well-defined ablations (SE bypassed, residual
blocks skipped) measured on a few dozen validation images.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients, LayerConductance
from pydantic import BaseModel, Field
from scipy.stats import spearmanr
from torch import nn

from tinyarch.core.spaces import SearchSpace, SpecError
from tinyarch.core.spec import ArchSpec
from tinyarch.tools.builder import SqueezeExcite, TinyNet
from tinyarch.tools.surrogate import OneHot, bootstrap_counts, fit_ensemble, single_thread

MIN_CANDIDATES = 12
"""Below this many candidates with a target, a surrogate says nothing worth a prompt line."""
MIN_COUNT = 3
"""An effect seen on fewer candidates (or slot occurrences) is never called confident."""
TARGETS: dict[str, tuple[str, bool]] = {
    "accuracy": ("metrics", False),
    "macs": ("cost", True),
    "peak_sram": ("cost", True),
    "latency_ms": ("cost", True),
}
"""Target name -> (history section, fitted on the log scale)."""
MEMBERS = 5
FOLDS = 4
IG_STEPS = 32
Z90 = 1.645
"""Half-width of a two-sided 90 % normal interval, in standard deviations."""


# ------------------------------------------------------------------------------------------- design level


class TargetFit(BaseModel):
    """How one target's surrogate was fitted and how well it ranks candidates it never saw."""

    target: str
    log: bool
    """Fitted on ln(value); effects are then ln-ratios (0.1 is about +10 %)."""
    candidates: int
    spearman: float
    """Rank correlation of K-fold held-out predictions with the measured values."""


class Effect(BaseModel):
    """The attribution of one design choice (`edge_2_0=nor_conv_3x3`) or a pooled value (`edge_*=none`).

    `mean` is in the target's units (accuracy points, or ln-ratio for log targets) relative to the
    average choice of the slot; `std` is over ensemble members; `count` is candidates holding the
    value, or slot occurrences for a pooled value.
    """

    target: str
    choice: str
    pooled: bool
    mean: float
    std: float
    count: int

    @property
    def confident(self) -> bool:
        """The 90 % interval excludes zero and enough candidates back it."""
        return abs(self.mean) > Z90 * self.std and self.count >= MIN_COUNT


class DesignEffects(BaseModel):
    """Per-target surrogate quality and effects; `summary()` is what goes into a prompt."""

    candidates: int
    fits: list[TargetFit] = Field(default_factory=list)
    effects: list[Effect] = Field(default_factory=list)
    reason: str = ""
    """Why nothing was fitted, when nothing was."""

    def effect(self, target: str, choice: str) -> Effect | None:
        return next((e for e in self.effects if e.target == target and e.choice == choice), None)

    def summary(self, top: int = 3) -> str:
        """A few lines for an LLM prompt: per target, its trustworthiness and the confident effects."""
        if not self.fits:
            return f"Design effects: {self.reason}"
        lines = [
            f"Design effects over {self.candidates} evaluated candidates: a {MEMBERS}-MLP bootstrap surrogate per "
            f"target on one-hot choices, Integrated Gradients per candidate; an effect is the change against the "
            f"slot's average choice, ± the std over members, uncertain ones left out; a * pools a value over slots."
        ]
        for fit in self.fits:
            mine = [e for e in self.effects if e.target == fit.target]
            sure = [e for e in mine if e.confident]
            up, down = ("helps", "hurts") if fit.target == "accuracy" else ("raises", "lowers")
            pooled = [e for e in sure if e.pooled]
            single = sorted((e for e in sure if not e.pooled), key=lambda e: -abs(e.mean))[:top]
            parts = [
                f"{up}: " + _effect_list(sorted((e for e in pooled if e.mean > 0), key=lambda e: -e.mean)[:top], fit),
                f"{down}: " + _effect_list(sorted((e for e in pooled if e.mean < 0), key=lambda e: e.mean)[:top], fit),
                "strongest single choices: " + _effect_list(single, fit),
            ]
            unit = "ln-ratio shown as %" if fit.log else "points"
            head = f"{fit.target} ({unit}; held-out Spearman {fit.spearman:.2f} on {fit.candidates} candidates"
            lines.append(f"{head}, {len(mine) - len(sure)} uncertain effects left out): " + "; ".join(parts))
        return "\n".join(lines)


def _effect_list(effects: list[Effect], fit: TargetFit) -> str:
    return ", ".join(f"{e.choice} {_format_effect(e, fit.log)}" for e in effects) or "none confident"


def _format_effect(e: Effect, log: bool) -> str:
    if log:  # a ratio: (e^m − 1) with the delta-method spread e^m·s
        return f"{100 * math.expm1(e.mean):+.0f}%±{100 * math.exp(e.mean) * e.std:.0f}%"
    return f"{e.mean:+.2f}±{e.std:.2f}"


def design_effects(space: SearchSpace, history: Sequence[dict[str, Any]], seed: int = 0) -> DesignEffects:
    """Fit a surrogate per target on the evaluated history and attribute it to design choices.

    `history` items are `{"spec": ..., "metrics": {"accuracy": ...}, "cost": {"macs": ..., ...}}`; a target
    is used when at least MIN_CANDIDATES items measured it, and items whose spec is not in `space` are skipped.
    """
    specs, rows = [], []
    for item in history:
        try:
            specs.append(space.parse(item["spec"]))
        except (SpecError, KeyError):
            continue  # a candidate outside the space cannot be encoded; it says nothing about the space's choices
        rows.append(item)
    encoding = OneHot(space)
    x = torch.tensor(np.array([encoding.encode(s) for s in specs]).reshape(len(specs), len(encoding.labels)))
    result = DesignEffects(candidates=len(specs))
    with single_thread():
        for target, (section, log) in TARGETS.items():
            keep, y = _target_values(rows, section, target, log)
            if len(keep) < MIN_CANDIDATES:
                continue
            fit, effects = _explain_target(encoding, x[keep], torch.tensor(y), target, log, seed)
            result.fits.append(fit)
            result.effects.extend(effects)
    if not result.fits:
        result.reason = (
            f"only {len(specs)} usable candidates (need {MIN_CANDIDATES} with a measured target); "
            "no surrogate fitted yet, so no design effects."
        )
    return result


def _target_values(rows: list[dict[str, Any]], section: str, target: str, log: bool) -> tuple[list[int], np.ndarray]:
    """Indices of the rows that measured `target` (finite; positive on a log scale) and its values."""
    keep, values = [], []
    for i, row in enumerate(rows):
        value = (row.get(section) or {}).get(target)
        if isinstance(value, int | float) and math.isfinite(value) and (value > 0 or not log):
            keep.append(i)
            values.append(math.log(value) if log else float(value))
    return keep, np.array(values, dtype=np.float32)


def _explain_target(
    encoding: OneHot, x: torch.Tensor, y: torch.Tensor, target: str, log: bool, seed: int
) -> tuple[TargetFit, list[Effect]]:
    """K-fold held-out Spearman and the final ensemble's effects, all members trained in one batched run."""
    n = len(y)
    g = torch.Generator().manual_seed(seed)
    fold = torch.randperm(n, generator=g) % FOLDS
    allowed = [fold != k for k in range(FOLDS) for _ in range(MEMBERS)] + [torch.ones(n, dtype=torch.bool)] * MEMBERS
    weights = torch.stack([bootstrap_counts(mask, g) for mask in allowed])
    scale = y.std().clamp(min=1e-8)
    net = fit_ensemble(x, (y - y.mean()) / scale, weights, g)

    with torch.no_grad():
        out = net(x)
    held_out = torch.empty(n)
    for k in range(FOLDS):
        held_out[fold == k] = out[fold == k, k * MEMBERS : (k + 1) * MEMBERS].mean(1)
    rho = float(spearmanr(held_out.numpy(), y.numpy()).statistic) if held_out.std() > 0 and y.std() > 0 else math.nan
    fit = TargetFit(target=target, log=log, candidates=n, spearman=rho)

    baseline = x.mean(0, keepdim=True).expand_as(x)
    slot_of = torch.tensor(encoding.slot_of)
    per_member = []
    for m in range(FOLDS * MEMBERS, (FOLDS + 1) * MEMBERS):
        ig = IntegratedGradients(partial(net, members=slice(m, m + 1)))
        attr = ig.attribute(x, baselines=baseline, target=0, n_steps=IG_STEPS) * scale
        per_slot = torch.zeros(n, len(encoding.slots)).index_add_(1, slot_of, attr)
        per_member.append(per_slot[:, slot_of] * x)  # each column: its slot's attribution where the value is held
    held = torch.stack(per_member).sum(1)  # (members, columns)
    counts = x.sum(0)
    effects = _effects(target, encoding.labels, held, counts, pooled=False)
    groups = sorted({p for p in encoding.pooled if p})
    if groups:
        pool = torch.tensor([[float(p == grp) for grp in groups] for p in encoding.pooled])
        effects += _effects(target, groups, held @ pool, counts @ pool, pooled=True)
    return fit, effects


def _effects(target: str, labels: list[str], sums: torch.Tensor, counts: torch.Tensor, pooled: bool) -> list[Effect]:
    """Per label: mean attribution over its holders, per member; then mean and std over members."""
    means = sums / counts.clamp(min=1)
    return [
        Effect(
            target=target,
            choice=label,
            pooled=pooled,
            mean=float(means[:, j].mean()),
            std=float(means[:, j].std()),
            count=int(counts[j]),
        )
        for j, label in enumerate(labels)
        if counts[j] > 0
    ]


# -------------------------------------------------------------------------------------------- model level


class StageAttribution(BaseModel):
    """Every stage passes on the whole output change (conductance is complete at any layer of a chain), so a
    stage's `share` is of absolute conductance: how much evidence, for and against, flows through its channels."""

    stage: int
    share: float
    channels: int
    channels_for_90: float
    """Fraction of the stage's channels that carry 90 % of its absolute conductance (small: width to spare)."""


class Ablation(BaseModel):
    kind: Literal["se_bypass", "skip_block"]
    """`se_bypass`: the block's SE scale set to 1; `skip_block`: a residual block replaced by the identity."""
    stage: int
    block: int
    accuracy_drop: float
    """Top-1 points lost on the explained images (positive: the part helps)."""
    loss_increase: float
    """Increase of mean cross-entropy; finer than accuracy on a few dozen images."""


class ModelExplanation(BaseModel):
    """What one trained model relies on; `summary()` is what goes into a prompt."""

    images: int
    accuracy: float
    steps: int
    completeness_error: float
    """Largest |sum of IG attributions − (f(x) − f(baseline))| over the images, relative to the mean |f(x) − f(b)|."""
    stages: list[StageAttribution]
    ablations: list[Ablation]
    figures: list[Path] = Field(default_factory=list)
    class_saliency: dict[int, list[list[float]]] = Field(default_factory=dict, exclude=True, repr=False)
    """Mean absolute IG saliency (H, W) per true class; left out of dumps, it is in the figure."""

    def summary(self, top: int = 3) -> str:
        lines = [
            f"Integrated Gradients on {self.images} validation images (top-1 {self.accuracy:.1f} %, {self.steps} "
            f"steps, completeness error {100 * self.completeness_error:.1f} %)"
            + (f"; per-class saliency in {', '.join(p.name for p in self.figures)}" if self.figures else "")
        ]
        stages = ", ".join(
            f"stages[{s.stage}] {100 * s.share:.0f} % (90 % in {100 * s.channels_for_90:.0f} % of {s.channels} ch)"
            for s in self.stages
        )
        lines.append(f"Share of absolute conductance by stage: {stages}")
        for kind, text in (("se_bypass", "Bypassing SE"), ("skip_block", "Skipping residual blocks")):
            found = sorted((a for a in self.ablations if a.kind == kind), key=lambda a: -a.loss_increase)
            if found:
                items = ", ".join(
                    f"stages[{a.stage}] block {a.block} {0.0 - a.accuracy_drop:+.1f} pts (loss {a.loss_increase:+.3f})"
                    for a in found[:top]
                )
                lines.append(f"{text} (costliest of {len(found)}): {items}")
        return "\n".join(lines)


def integrated_gradients(
    model: nn.Module, images: torch.Tensor, targets: torch.Tensor, steps: int = IG_STEPS
) -> tuple[torch.Tensor, torch.Tensor]:
    """IG attributions from the all-zero baseline (the dataset mean after normalisation) and captum's deltas."""
    ig = IntegratedGradients(model)
    return ig.attribute(
        images,
        baselines=torch.zeros_like(images),
        target=targets,
        n_steps=steps,
        internal_batch_size=len(images),
        return_convergence_delta=True,
    )


def model_explanation(
    model: TinyNet,
    spec: ArchSpec,
    images: torch.Tensor,
    labels: torch.Tensor,
    out_dir: Path | None = None,
    steps: int = IG_STEPS,
) -> ModelExplanation:
    """Saliency, per-stage conductance and SE/residual ablations of a trained model, for the true classes."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x, y = images.to(device), labels.to(device)
    try:
        with torch.no_grad():
            logits = model(x)
            change = logits.gather(1, y[:, None]).squeeze(1) - model(torch.zeros_like(x[:1]))[0, y]
        attr, delta = integrated_gradients(model, x, y, steps)
        completeness = float(delta.abs().max() / change.abs().mean().clamp(min=1e-12))
        saliency, classes = attr.detach().abs().sum(1).cpu(), labels.cpu()
        maps = {c: saliency[classes == c].mean(0) for c in sorted(set(classes.tolist()))}
        explanation = ModelExplanation(
            images=len(x),
            accuracy=_accuracy(logits, y),
            steps=steps,
            completeness_error=completeness,
            stages=_stage_attributions(model, x, y, steps),
            ablations=_ablations(model, x, y, logits),
            class_saliency={c: m.tolist() for c, m in maps.items()},
        )
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            path = out_dir / "saliency.png"
            _plot_saliency(images.cpu(), classes, maps, path, f"{spec.summary()}: mean |IG| per class")
            explanation.figures.append(path)
    finally:
        model.train(was_training)
    return explanation


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return 100.0 * float((logits.argmax(1) == y).float().mean())


def _stage_attributions(model: TinyNet, x: torch.Tensor, y: torch.Tensor, steps: int) -> list[StageAttribution]:
    per_channel = [
        LayerConductance(model, stage)
        .attribute(x, baselines=torch.zeros_like(x), target=y, n_steps=steps, internal_batch_size=2 * len(x))
        .detach()
        .abs()
        .sum((0, 2, 3))
        for stage in model.stages
    ]
    total = sum(float(p.sum()) for p in per_channel) or 1.0
    return [
        StageAttribution(stage=s, share=float(p.sum()) / total, channels=len(p), channels_for_90=_channels_for(p, 0.9))
        for s, p in enumerate(per_channel)
    ]


def _channels_for(mass: torch.Tensor, fraction: float) -> float:
    """The smallest fraction of channels whose mass reaches `fraction` of the total."""
    cumulative = mass.sort(descending=True).values.cumsum(0) / mass.sum().clamp(min=1e-12)
    return (int((cumulative < fraction).sum()) + 1) / len(mass)


def _ablations(model: TinyNet, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor) -> list[Ablation]:
    """Only the well-defined ones: SE scale set to 1 and residual blocks skipped; one forward pass each."""
    base_acc, base_loss = _accuracy(logits, y), float(F.cross_entropy(logits, y))
    found = []
    for s, stage in enumerate(model.stages):
        assert isinstance(stage, nn.Sequential)
        for b, block in enumerate(stage):
            swaps: list[tuple[Literal["se_bypass", "skip_block"], nn.Module, str]] = []
            if isinstance(block.se, SqueezeExcite):
                swaps.append(("se_bypass", block, "se"))
            if block.residual:
                swaps.append(("skip_block", stage, str(b)))
            for kind, parent, name in swaps:
                with _swapped(parent, name, nn.Identity()), torch.no_grad():
                    out = model(x)
                found.append(
                    Ablation(
                        kind=kind,
                        stage=s,
                        block=b,
                        accuracy_drop=base_acc - _accuracy(out, y),
                        loss_increase=float(F.cross_entropy(out, y)) - base_loss,
                    )
                )
    return found


@contextmanager
def _swapped(parent: nn.Module, name: str, replacement: nn.Module) -> Iterator[None]:
    original = getattr(parent, name)
    setattr(parent, name, replacement)
    try:
        yield
    finally:
        setattr(parent, name, original)


def _plot_saliency(
    images: torch.Tensor, labels: torch.Tensor, maps: dict[int, torch.Tensor], path: Path, title: str, limit: int = 10
) -> None:
    """One column per class (at most `limit`): an example image above the class's mean saliency."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    classes = list(maps)[:limit]
    fig = Figure(figsize=(1.6 * len(classes) + 0.4, 3.6))
    axes = fig.subplots(2, len(classes), squeeze=False)
    for col, c in enumerate(classes):
        example = images[labels == c][0, :3]
        example = (example - example.min()) / (example.max() - example.min()).clamp(min=1e-12)
        axes[0, col].imshow(example.permute(1, 2, 0).squeeze(2).numpy(), cmap="gray")
        axes[0, col].set_title(f"class {c} (n={int((labels == c).sum())})", fontsize=8)
        axes[1, col].imshow(maps[c].numpy(), cmap="inferno")
        for ax in axes[:, col]:
            ax.set_axis_off()
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def explain_model_dir(
    model_dir: Path, data_dir: Path | None = None, images: int = 32, steps: int = 128
) -> ModelExplanation:
    """Model-level explanation of a trained model directory on its first validation images.

    128 steps: on real trained models (swish, SE) 32 steps left a 20 % completeness error, 128 about 3 %.
    Cached as `explanation.json` (and `saliency.png`) in the directory: a model never changes
    after training, so neither does its explanation.
    """
    from tinyarch.tools.data import load_data, to_model_input
    from tinyarch.tools.train import load_trained

    cached = model_dir / "explanation.json"
    if cached.is_file():
        return ModelExplanation.model_validate_json(cached.read_text())
    trained = load_trained(model_dir)
    data = load_data(trained.dataset, data_dir, seed=0)
    spec = trained.spec
    x = to_model_input(data.val.images[:images], data.info.mean, data.info.std, spec.resolution, spec.in_channels)
    with single_thread():
        explanation = model_explanation(trained.model, spec, x, data.val.labels[:images], model_dir, steps)
    cached.write_text(explanation.model_dump_json(indent=2))
    return explanation
