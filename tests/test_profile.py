"""The analytic profiler against the torch model it describes, over random specs from `mcu`."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.flop_counter import FlopCounterMode

from tinyarch.core.budget import Budget
from tinyarch.core.spaces import load_space
from tinyarch.core.spaces.hierarchical import final_resolution
from tinyarch.core.spec import ArchSpec
from tinyarch.tools.builder import SameConv2d, build_model
from tinyarch.tools.profile import CALIBRATION_FILE, TERMS, LatencyModel, check_budget, op_key, profile

MCU = load_space("mcu")


def _random_spec(seed: int) -> ArchSpec:
    rng = random.Random(seed)
    return MCU.sample(rng, num_classes=rng.choice([10, 100]))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_macs_and_params_match_torch(seed: int) -> None:
    spec = _random_spec(seed)
    with torch.device("meta"):
        model = build_model(spec).eval()
        x = torch.empty(1, spec.in_channels, spec.resolution, spec.resolution)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x)
    prof = profile(spec)
    assert prof.macs * 2 == counter.get_total_flops()
    assert prof.params == sum(p.numel() for p in model.parameters())


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_model_runs_at_spec_resolution_with_profiled_shapes(seed: int) -> None:
    spec = _random_spec(seed)
    model = build_model(spec).eval()
    x = torch.randn(1, spec.in_channels, spec.resolution, spec.resolution)
    with torch.no_grad():
        features = model.forward_features(x)
        logits = model(x)
    assert logits.shape == (1, spec.num_classes) and torch.isfinite(logits).all()
    last_conv = [op for op in profile(spec).graph.ops if op.kind != "fully_connected" and op.kind != "mean"][-1]
    h, w, c = last_conv.out_shape
    assert tuple(features.shape) == (1, c, h, w)


def test_same_padding_puts_the_extra_row_and_column_at_the_bottom_right() -> None:
    conv = SameConv2d(1, 1, 3, stride=2, bias=False)
    torch.nn.init.ones_(conv.weight)
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    with torch.no_grad():
        y = conv(x)
    assert y.shape[-2:] == (2, 2)
    assert y[0, 0, 0, 0] == x[0, 0, :3, :3].sum()  # TFLite: no padding on top and left
    assert y[0, 0, 1, 1] == x[0, 0, 2:, 2:].sum()  # one padded row and column at the far side


def test_odd_sides_shrink_by_ceil_division() -> None:
    spec = _random_spec(1).model_dump()
    spec.update(resolution=144, stem={**spec["stem"], "stride": 2})
    spec["stages"] = [{**s, "stride": 2 if i < 4 else 1} for i, s in enumerate(spec["stages"])]
    spec = ArchSpec.model_validate(spec)
    with torch.no_grad():
        features = build_model(spec).eval().forward_features(torch.zeros(1, spec.in_channels, 144, 144))
    assert features.shape[-2:] == (5, 5) == (final_resolution(spec),) * 2  # 144 72 36 18 9 5


def test_budget_breaches_say_which_limit_and_by_how_much(small_spec: ArchSpec) -> None:
    prof = profile(small_spec)
    assert check_budget(prof, Budget(sram="320KB", flash="1MB", macs="100M")) == []
    breaches = check_budget(prof, Budget(sram=prof.peak_sram - 1024, macs="1M"))
    assert [b.metric for b in breaches] == ["sram", "macs"]
    assert breaches[0].excess == 1024
    assert str(breaches[1]).startswith("MACs 4.91 M exceeds the budget of 1.00 M by 3.91 M")


def test_latency_is_labelled_calibrated_or_not(small_spec: ArchSpec) -> None:
    guess = profile(small_spec, LatencyModel())
    assert guess.latency_calibrated is False and guess.latency_ms > 0
    faster = profile(small_spec, LatencyModel(clock_hz=960e6))
    assert faster.latency_ms == pytest.approx(guess.latency_ms / 2)
    assert profile(small_spec).latency_calibrated == CALIBRATION_FILE.is_file()  # the shipped calibration


def test_latency_fit_recovers_per_key_coefficients(small_spec: ArchSpec) -> None:
    """Per-operator counts made from known coefficients give those coefficients back, per op key."""
    ops = [op for seed in range(8) for op in profile(_random_spec(seed)).graph.ops]
    keys = {op_key(op): op.kind for op in ops}
    assert {"stem", "pointwise", "pointwise_1px", "fully_connected", "add", "mul", "mean"} <= set(keys)
    assert any(key.startswith("depthwise_k") for key in keys)
    truth = LatencyModel(
        coefficients={
            key: {term: 1.5 + i + 0.1 * j for j, term in enumerate(TERMS[kind])}
            for i, (key, kind) in enumerate(sorted(keys.items()))
        },
        calibrated=True,
    )
    counts = [round(truth.cycles(op)) for op in ops]
    fitted = LatencyModel.fit(list(zip(ops, counts, strict=True)), source="synthetic", totals=[10**7] * len(ops))
    assert set(fitted.coefficients) == set(keys) | set(keys.values())  # every key, and a fallback per kind
    for op in ops[:300]:
        assert fitted.cycles(op) == pytest.approx(truth.cycles(op), rel=0.01, abs=50)


def test_latency_keys_fall_back_to_the_kind(small_spec: ArchSpec) -> None:
    ops = profile(small_spec).graph.ops
    assert op_key(ops[0]) == "stem" and ops[0].kind == "conv"
    depthwise = next(op for op in ops if op.kind == "depthwise")
    assert op_key(depthwise) == f"depthwise_k{depthwise.kernel}s{depthwise.stride}"
    by_kind = LatencyModel(coefficients={"depthwise": {"macs": 2.0, "op": 100.0}})
    assert by_kind.cycles(depthwise) == 2.0 * depthwise.macs + 100.0
    by_key = LatencyModel(coefficients={"depthwise": {"op": 1.0}, op_key(depthwise): {"channel_rows": 3.0}})
    assert by_key.cycles(depthwise) == 3.0 * depthwise.out_shape[0] * depthwise.out_shape[2]
    assert LatencyModel(coefficients={}).cycles(depthwise) == 0.0


def test_flash_counts_int8_weights_biases_quant_params_and_luts(small_spec: ArchSpec) -> None:
    prof = profile(small_spec)
    stem = prof.graph.ops[0]
    assert stem.kind == "conv" and stem.activation == "relu6"
    assert stem.flash == 3 * 3 * 1 * 16 + 12 * 16  # no lookup table for a clamp
    swish = next(op for op in prof.graph.ops if op.activation == "swish")
    _, _, cin = swish.in_shape
    cout = swish.out_shape[2]
    weights = swish.kernel**2 * (1 if swish.kind == "depthwise" else cin) * cout
    assert swish.flash == weights + 12 * cout + 256
