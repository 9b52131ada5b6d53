"""Spec + int8 .tflite -> `model.c` / `model.h`: const weights in flash, one static arena.

The schedule and every arena offset come from the spec's operator graph and its memory plan, the
same two the profiler reads, so the firmware arena *is* the profiler's peak SRAM. The .tflite
supplies the quantised weights and the scales from which `tflm_params` derives each kernel's
integer parameters exactly as TFLM's Prepare does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyarch.core.spec import ArchSpec
from tinyarch.tools.deploy import tflm_params
from tinyarch.tools.deploy.tflite_graph import BoundOp, TfliteGraph, activation_lut, bind, read_tflite
from tinyarch.tools.memory_plan import MemoryPlan, plan_memory
from tinyarch.tools.opgraph import Op, lower


@dataclass(slots=True)
class GeneratedModel:
    arena: int
    input_size: int
    output_size: int
    input_scale: float
    input_zero_point: int
    weight_bytes: int


class _Writer:
    """Accumulates C definitions and the calls of `ta_invoke`."""

    def __init__(self) -> None:
        self.definitions: list[str] = []
        self.calls: list[str] = []
        self.weight_bytes = 0

    def array(self, name: str, ctype: str, values: np.ndarray) -> str:
        flat = values.reshape(-1).astype({"int8_t": np.int8, "int32_t": np.int32}[ctype], casting="same_kind")
        self.weight_bytes += flat.nbytes
        rows = [", ".join(str(int(v)) for v in flat[i : i + 24]) for i in range(0, len(flat), 24)]
        body = ",\n    ".join(rows)
        self.definitions.append(f"static const {ctype} {name}[{len(flat)}] = {{\n    {body}\n}};")
        return name

    def records(self, name: str, ctype: str, rows: np.ndarray) -> str:
        """An array of structs whose int32 fields are the columns of `rows`."""
        self.weight_bytes += rows.astype(np.int32).nbytes
        body = ",\n    ".join("{" + ", ".join(str(int(v)) for v in row) + "}" for row in rows)
        self.definitions.append(f"static const {ctype} {name}[{len(rows)}] = {{\n    {body}\n}};")
        return name

    def struct(self, name: str, ctype: str, fields: dict[str, object]) -> str:
        inits = ", ".join(f".{k} = {v}" for k, v in fields.items())
        self.definitions.append(f"static const {ctype} {name} = {{{inits}}};")
        return f"&{name}"


def generate(spec: ArchSpec, model: bytes, out_dir: Path) -> GeneratedModel:
    """Write model.c and model.h for `spec` quantised as `model` into `out_dir`."""
    graph = lower(spec)
    plan = plan_memory(graph)
    tfl = read_tflite(model)
    bound = bind(graph, tfl)
    w = _Writer()
    for i, (op, b) in enumerate(zip(graph.ops, bound, strict=True)):
        c_name = op.name.replace(".", "_")
        w.calls.append(f"    /* {op.name}: {op.kind} {op.in_shape} -> {op.out_shape} */")
        w.calls.append(_emit(w, c_name, i, op, b, tfl, plan))
        w.calls.append("    TA_OP_DONE();")
    image = tfl.tensors[tfl.inputs[0]]
    in_off, out_off = plan.tensor_offsets[0], plan.tensor_offsets[graph.ops[-1].output]
    result = GeneratedModel(plan.arena, graph.sizes[0], graph.sizes[-1], image.scale, image.zero_point, w.weight_bytes)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "model.h").write_text(_HEADER.format(spec=spec.summary(), id=spec.id, r=result, s=spec))
    body = "\n".join(w.calls)
    (out_dir / "model.c").write_text(
        _SOURCE.format(
            id=spec.id,
            definitions="\n\n".join(w.definitions),
            in_off=in_off,
            out_off=out_off,
            body=body,
        )
    )
    return result


def _output_stage(w: _Writer, name: str, b: BoundOp, tfl: TfliteGraph) -> str:
    """ta_output_t: offsets, the fused clamp, and the activation table when there is one."""
    x, raw = b.inputs[0], b.raw_output
    lo, hi = tflm_params.activation_range(b.fused, raw.scale, raw.zero_point)
    lut = "NULL"
    if b.chain:
        lut = w.array(f"{name}_lut", "int8_t", tflm_params.output_table(activation_lut(tfl, b.chain), lo, hi))
    return w.struct(
        f"{name}_q",
        "ta_output_t",
        {"input_offset": -x.zero_point, "output_offset": raw.zero_point, "act_min": lo, "act_max": hi, "lut": lut},
    )


def _weights_and_channels(w: _Writer, name: str, b: BoundOp) -> tuple[str, str]:
    """Weights and the per-channel records (folded bias, multiplier, shift) of a conv, depthwise or
    fully connected op."""
    x, weights = b.inputs[0], b.inputs[1]
    assert b.main is not None and weights.data is not None
    bias = b.inputs[2].data if len(b.inputs) > 2 else None  # the converter drops an all-zero bias
    if b.main.opcode == "FULLY_CONNECTED":
        p = tflm_params.fc_output_params(x.scale, weights.scales, b.raw_output.scale, weights.shape[0])
    else:
        p = tflm_params.conv_output_params(x.scale, weights.scales, b.raw_output.scale)
    table = tflm_params.channel_table(bias, weights.data, b.main.opcode == "DEPTHWISE_CONV_2D", -x.zero_point, p)
    return w.array(f"{name}_w", "int8_t", weights.data), w.records(f"{name}_c", "ta_channel_t", table)


def _emit(w: _Writer, name: str, i: int, op: Op, b: BoundOp, tfl: TfliteGraph, plan: MemoryPlan) -> str:
    def at(t: int) -> str:
        return f"arena + {plan.tensor_offsets[t]}"

    (h, wd, c), (ho, wo, co) = op.in_shape, op.out_shape
    x, y = op.inputs[0], op.output
    scratch = f"arena + {plan.buffer_offsets[plan.scratch_buffer[i]]}" if i in plan.scratch_buffer else "NULL"
    if op.kind in ("conv", "pointwise", "depthwise", "fully_connected"):
        wts, ch = _weights_and_channels(w, name, b)
        q = _output_stage(w, name, b, tfl)
        pt, pl = (tflm_params.same_padding(n, op.kernel, op.stride)[1] for n in (h, wd))
    if op.kind in ("conv", "pointwise"):
        return (
            f"    ta_conv_s8({at(x)}, {h}, {wd}, {c}, {wts}, {ch}, {at(y)}, {ho}, {wo}, {co}, "
            f"{op.kernel}, {op.stride}, {pt}, {pl}, {q}, {scratch});"
        )
    if op.kind == "depthwise":
        if i in plan.inplace_ops:
            return (
                f"    ta_depthwise_inplace_s8({at(x)}, {h}, {wd}, {c}, {wts}, {ch}, {op.kernel}, "
                f"{pt}, {pl}, {q}, {scratch});"
            )
        return (
            f"    ta_depthwise_s8({at(x)}, {h}, {wd}, {c}, {wts}, {ch}, {at(y)}, {ho}, {wo}, "
            f"{op.kernel}, {op.stride}, {pt}, {pl}, {q}, {scratch});"
        )
    if op.kind == "fully_connected":
        return f"    ta_fully_connected_s8({at(x)}, {c}, {wts}, {ch}, {at(y)}, {co}, {q});"
    if op.kind == "mean":
        if b.main is None:  # a mean over 1x1 is the identity; the converter dropped it
            return f"    memcpy({at(y)}, {at(x)}, {c});"
        x_t, y_t = b.inputs[0], b.output
        mean = tflm_params.mean_params(x_t.scale, x_t.zero_point, y_t.scale, y_t.zero_point, h * wd)
        params = w.struct(f"{name}_p", "ta_mean_t", _fields(mean))
        return f"    ta_mean_hw_s8({at(x)}, {h}, {wd}, {c}, {at(y)}, {params});"
    # add and mul: each operand with its own parameters (TFLM's arithmetic is symmetric in the two)
    first, second = b.inputs
    y_t = b.output
    if op.kind == "add":
        add = tflm_params.add_params(
            first.scale, first.zero_point, second.scale, second.zero_point, y_t.scale, y_t.zero_point
        )
        params = w.struct(f"{name}_p", "ta_add_t", _fields(add))
        return f"    ta_add_s8({at(x)}, {at(op.inputs[1])}, {at(y)}, {h * wd * c}, {params});"
    mul = tflm_params.mul_params(
        first.scale, first.zero_point, second.scale, second.zero_point, y_t.scale, y_t.zero_point
    )
    params = w.struct(f"{name}_p", "ta_mul_t", _fields(mul))
    return f"    ta_mul_channel_s8({at(x)}, {at(op.inputs[1])}, {at(y)}, {h * wd}, {c}, {params});"


def _fields(params: object) -> dict[str, object]:
    return dataclasses.asdict(params)  # type: ignore[call-overload]


_HEADER = """/* Generated by tinyarch from spec {id}: {spec} */
#ifndef TINYARCH_MODEL_H
#define TINYARCH_MODEL_H

#include <stdint.h>

#define TA_INPUT_SIZE {r.input_size}
#define TA_OUTPUT_SIZE {r.output_size}
#define TA_ARENA_SIZE {r.arena}
#define TA_INPUT_HEIGHT {s.resolution}
#define TA_INPUT_WIDTH {s.resolution}
#define TA_INPUT_CHANNELS {s.in_channels}
/* int8 input = round(normalised pixel / TA_INPUT_SCALE) + TA_INPUT_ZERO_POINT */
#define TA_INPUT_SCALE {r.input_scale!r}f
#define TA_INPUT_ZERO_POINT {r.input_zero_point}

/* Runs one inference: input is TA_INPUT_SIZE int8 values (NHWC), output TA_OUTPUT_SIZE int8 logits. */
int ta_invoke(const int8_t *input, int8_t *output);

#endif
"""

_SOURCE = """/* Generated by tinyarch from spec {id}. Weights are const (flash); activations live in one
 * static arena whose offsets come from tinyarch's memory planner (tools/memory_plan.py). */
#include <string.h>

#include "model.h"
#include "kernels/tinyarch_kernels.h"

static int8_t arena[TA_ARENA_SIZE] __attribute__((aligned(8)));

#ifdef TA_PROFILE_OPS /* per-operator instruction counts: QEMU's plugin records every ta_mark call */
void ta_mark(void);
#define TA_OP_DONE() ta_mark()
#else
#define TA_OP_DONE() ((void)0)
#endif

{definitions}

int ta_invoke(const int8_t *input, int8_t *output) {{
    memcpy(arena + {in_off}, input, TA_INPUT_SIZE);
{body}
    memcpy(output, arena + {out_off}, TA_OUTPUT_SIZE);
    return 0;
}}
"""
