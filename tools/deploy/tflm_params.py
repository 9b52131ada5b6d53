"""Integer kernel parameters derived from a .tflite's float scales exactly as TFLM's Prepare does.

The firmware kernels (firmware/kernels/tinyarch_kernels.h) reproduce TFLM's int8 reference kernels
bit for bit only if their multipliers, shifts and clamps are the ones TFLM computes at Prepare time.
This module mirrors that arithmetic:

- Scales are float32 in the flatbuffer and are promoted to double where TFLM promotes them; the one
  exception is the per-tensor fully connected multiplier, whose input * filter product TFLM forms in
  float32 before promoting (`GetQuantizedConvolutionMultipler`).
- `quantize_multiplier` is TFLM's `QuantizeMultiplier`: frexp, then round(q * 2^31) with C++
  `std::round` (halves away from zero), so a real multiplier is `mult * 2^(shift - 31)`.
- Activation clamps quantize 0 and 6 in float32 (`CalculateActivationRangeQuantized`).

The kernels requantize with TFLM's default double-rounding `MultiplyByQuantizedMultiplier`, which
is what the tflite_micro Python package uses.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

INT8_MIN = -128
INT8_MAX = 127
ADD_LEFT_SHIFT = 20
"""TFLM's left shift for int8 ADD (15 for int16)."""

_ACTIVATIONS = {0: None, 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}
"""TFLite ActivationFunctionType codes handled by the fused clamp (others need a LUT or are invalid)."""


@dataclass(slots=True, frozen=True)
class OutputParams:
    """ta_output_t without the LUT: offsets and clamp of conv, depthwise and fully connected."""

    input_offset: int
    output_offset: int
    act_min: int
    act_max: int


@dataclass(slots=True, frozen=True)
class ChannelParams:
    """Per-output-channel requantisation: `mult[i] * 2^(shift[i] - 31)`."""

    mult: list[int]
    shift: list[int]


@dataclass(slots=True, frozen=True)
class AddParams:
    """ta_add_t."""

    input1_offset: int
    input1_mult: int
    input1_shift: int
    input2_offset: int
    input2_mult: int
    input2_shift: int
    left_shift: int
    output_offset: int
    output_mult: int
    output_shift: int
    act_min: int
    act_max: int


@dataclass(slots=True, frozen=True)
class MulParams:
    """ta_mul_t (input1 is the feature map x, input2 the per-channel scale s; the product commutes)."""

    input1_offset: int
    input2_offset: int
    output_offset: int
    output_mult: int
    output_shift: int
    act_min: int
    act_max: int


@dataclass(slots=True, frozen=True)
class MeanParams:
    """ta_mean_t, with the division by the element count already folded into mult and shift."""

    input_zero_point: int
    output_zero_point: int
    mult: int
    shift: int


def f32(x: float) -> float:
    """The float32 value TFLM stores for a scale, as a Python float (double)."""
    return float(np.float32(x))


def round_half_away(x: float) -> int:
    """C++ std::round: nearest integer, halves away from zero (exact for any double)."""
    a = abs(x)
    f = math.floor(a)
    r = f + 1 if a - f >= 0.5 else f
    return int(-r if x < 0 else r)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLM's QuantizeMultiplier: (mult, shift) with real == mult * 2^(shift - 31), mult in [2^30, 2^31)."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = round_half_away(q * float(1 << 31))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def _quantize_float32(value: float, scale: float, zero_point: int) -> int:
    """kernel_util's Quantize: zero_point + round(value / scale) evaluated in float32."""
    return zero_point + round_half_away(float(np.float32(value) / np.float32(scale)))


def activation_range(kind: str | int | None, scale: float, zero_point: int) -> tuple[int, int]:
    """Clamp of a fused activation on an int8 output (CalculateActivationRangeQuantized).

    kind: None/"NONE", "RELU", "RELU6", "RELU_N1_TO_1", or the flatbuffer's fusedActivationFunction code.
    """
    if isinstance(kind, int):
        if kind not in _ACTIVATIONS:
            raise ValueError(f"fused activation {kind} is not a clamp")
        kind = _ACTIVATIONS[kind]
    kind = None if kind is None or kind.upper() == "NONE" else kind.upper()
    if kind is None:
        return INT8_MIN, INT8_MAX
    if kind == "RELU":
        return max(INT8_MIN, _quantize_float32(0.0, scale, zero_point)), INT8_MAX
    if kind == "RELU6":
        lo = max(INT8_MIN, _quantize_float32(0.0, scale, zero_point))
        return lo, min(INT8_MAX, _quantize_float32(6.0, scale, zero_point))
    if kind == "RELU_N1_TO_1":
        lo = max(INT8_MIN, _quantize_float32(-1.0, scale, zero_point))
        return lo, min(INT8_MAX, _quantize_float32(1.0, scale, zero_point))
    raise ValueError(f"unknown fused activation {kind!r}")


def output_params(
    input_zero_point: int, output_scale: float, output_zero_point: int, activation: str | int | None = None
) -> OutputParams:
    """ta_output_t fields (lut aside) for conv, depthwise or fully connected."""
    lo, hi = activation_range(activation, output_scale, output_zero_point)
    return OutputParams(-int(input_zero_point), int(output_zero_point), lo, hi)


def conv_output_params(
    input_scale: float, filter_scales: Sequence[float] | np.ndarray, output_scale: float
) -> ChannelParams:
    """Per-channel mult/shift of CONV_2D and DEPTHWISE_CONV_2D (PopulateConvolutionQuantizationParams).

    Each multiplier is double(input_scale) * double(filter_scale) / double(output_scale); a per-tensor
    filter (one scale) gives one entry, which the caller repeats per channel.
    """
    si, so = f32(input_scale), f32(output_scale)
    mults, shifts = [], []
    for s in filter_scales:
        m, e = quantize_multiplier(si * f32(s) / so)
        mults.append(m)
        shifts.append(e)
    return ChannelParams(mults, shifts)


def fc_output_params(
    input_scale: float, filter_scales: Sequence[float] | np.ndarray, output_scale: float, out_n: int
) -> ChannelParams:
    """Per-channel mult/shift of FULLY_CONNECTED (CalculateOpDataFullyConnected), out_n entries.

    Several filter scales: per channel, as for conv (double products). One scale: the per-tensor
    path, whose input * filter product is rounded to float32 before the division in double; the
    result is repeated for every output.
    """
    if len(filter_scales) > 1:
        if len(filter_scales) != out_n:
            raise ValueError(f"{len(filter_scales)} filter scales for {out_n} outputs")
        return conv_output_params(input_scale, filter_scales, output_scale)
    product = float(np.float32(input_scale) * np.float32(filter_scales[0]))
    m, e = quantize_multiplier(product / f32(output_scale))
    return ChannelParams([m] * out_n, [e] * out_n)


def add_params(
    input1_scale: float,
    input1_zero_point: int,
    input2_scale: float,
    input2_zero_point: int,
    output_scale: float,
    output_zero_point: int,
    activation: str | int | None = None,
) -> AddParams:
    """ta_add_t for int8 ADD (CalculateOpDataAdd): both inputs rescaled to twice the larger scale."""
    s1, s2, so = f32(input1_scale), f32(input2_scale), f32(output_scale)
    twice_max = 2.0 * max(s1, s2)
    m1, e1 = quantize_multiplier(s1 / twice_max)
    m2, e2 = quantize_multiplier(s2 / twice_max)
    mo, eo = quantize_multiplier(twice_max / ((1 << ADD_LEFT_SHIFT) * so))
    for e in (e1, e2, eo):
        if e > 0:
            raise ValueError("ADD multipliers must be below one (TFLM rejects this model)")
    lo, hi = activation_range(activation, output_scale, output_zero_point)
    return AddParams(
        input1_offset=-int(input1_zero_point),
        input1_mult=m1,
        input1_shift=e1,
        input2_offset=-int(input2_zero_point),
        input2_mult=m2,
        input2_shift=e2,
        left_shift=ADD_LEFT_SHIFT,
        output_offset=int(output_zero_point),
        output_mult=mo,
        output_shift=eo,
        act_min=lo,
        act_max=hi,
    )


def mul_params(
    x_scale: float,
    x_zero_point: int,
    s_scale: float,
    s_zero_point: int,
    output_scale: float,
    output_zero_point: int,
    activation: str | int | None = None,
) -> MulParams:
    """ta_mul_t for int8 MUL (CalculateOpDataMul): one multiplier x_scale * s_scale / output_scale."""
    m, e = quantize_multiplier(f32(x_scale) * f32(s_scale) / f32(output_scale))
    lo, hi = activation_range(activation, output_scale, output_zero_point)
    return MulParams(-int(x_zero_point), -int(s_zero_point), int(output_zero_point), m, e, lo, hi)


def mean_params(
    input_scale: float, input_zero_point: int, output_scale: float, output_zero_point: int, count: int
) -> MeanParams:
    """ta_mean_t for int8 MEAN over `count` = h * w elements (keep_dims does not matter).

    TFLM quantizes input_scale / output_scale, then at Eval folds 1/count into it: with
    s = min(floor(log2(count)), 32, 31 + shift), mult = (mult << s) // count and shift -= s.
    """
    if count <= 0:
        raise ValueError("MEAN over an empty window")
    mult, shift = quantize_multiplier(f32(input_scale) / f32(output_scale))
    s = min(count.bit_length() - 1, 32, 31 + shift)
    return MeanParams(int(input_zero_point), int(output_zero_point), (mult << s) // count, shift - s)


def channel_table(
    bias: np.ndarray | None, weights: np.ndarray, depthwise: bool, input_offset: int, params: ChannelParams
) -> np.ndarray:
    """ta_channel_t records (bias, mult, shift), one row per output channel, int32.

    `weights` are output channel first ([out, ..., in]: conv, fully connected) or, for a depthwise
    conv, channel last ([..., c]). The bias has input_offset * (sum of the channel's weights) folded
    in, wrapping modulo 2^32 as the kernels' accumulators do, so a kernel that reads padding as the
    input zero point sums exactly TFLM's value without adding the offset to every input. A
    per-tensor `params` (one entry) is repeated for every channel.
    """
    w = np.asarray(weights, np.int64)
    weight_sums = w.reshape(-1, w.shape[-1]).sum(axis=0) if depthwise else w.reshape(w.shape[0], -1).sum(axis=1)
    n = len(weight_sums)
    mult, shift = (params.mult * n, params.shift * n) if len(params.mult) == 1 else (params.mult, params.shift)
    raw = np.zeros(n, np.int64) if bias is None else np.asarray(bias, np.int64)
    folded = (raw + int(input_offset) * weight_sums).astype(np.uint32).view(np.int32)
    return np.stack([folded, np.asarray(mult, np.int32), np.asarray(shift, np.int32)], axis=1)


def output_table(lut: np.ndarray, act_min: int, act_max: int) -> np.ndarray:
    """An activation table with the clamp folded in: entry v + 128 is lut[clamp(v) + 128], so that
    kernels may saturate to int8 and look up in one step (ta_output_t.lut)."""
    v = np.clip(np.arange(INT8_MIN, INT8_MAX + 1), act_min, act_max)
    return np.asarray(lut, np.int8)[v - INT8_MIN]


def same_padding(in_size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TFLite SAME padding: (output size, padding before), the extra odd pixel going after."""
    out = (in_size + stride - 1) // stride
    total = max((out - 1) * stride + kernel - in_size, 0)
    return out, total // 2
