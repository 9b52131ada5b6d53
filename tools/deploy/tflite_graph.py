"""Read a .tflite flatbuffer and bind its operators to the spec's operator graph.

The spec's `OpGraph` decides the schedule and the memory plan; the .tflite only supplies what
quantisation decided: int8 weights, int32 biases, scales and zero points. Binding walks the spec's
ops in order and finds, through tensor producers and consumers, the TFLite op that computes each
one plus the chain of unary activation ops after it (LEAKY_RELU, LOGISTIC, swish's LOGISTIC+MUL),
which the firmware folds into one 256-entry lookup table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tinyarch.tools.deploy import DeployError
from tinyarch.tools.opgraph import OpGraph

EXPECTED = {
    "conv": "CONV_2D",
    "pointwise": "CONV_2D",
    "depthwise": "DEPTHWISE_CONV_2D",
    "fully_connected": "FULLY_CONNECTED",
    "add": "ADD",
    "mul": "MUL",
    "mean": "MEAN",
}


class BindError(DeployError):
    """The .tflite does not compute what the spec's operator graph says."""


@dataclass(slots=True)
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    scales: np.ndarray
    zero_points: np.ndarray
    data: np.ndarray | None

    @property
    def scale(self) -> float:
        return float(self.scales[0])

    @property
    def zero_point(self) -> int:
        return int(self.zero_points[0])


@dataclass(slots=True)
class TfliteOp:
    index: int
    opcode: str
    inputs: list[int]
    outputs: list[int]
    options: Any


@dataclass(slots=True)
class TfliteGraph:
    """Subgraph 0 of a .tflite model, with the object-API model kept for building sub-models."""

    model: Any
    tensors: list[Tensor]
    ops: list[TfliteOp]
    inputs: list[int]
    outputs: list[int]
    consumers: dict[int, list[int]] = field(default_factory=dict)
    """Readers of each tensor, with reshapes seen through (see `canonical`)."""
    aliases: dict[int, int] = field(default_factory=dict)

    def opcode_of(self, op: int) -> str:
        return self.ops[op].opcode

    def canonical(self, tensor: int) -> int:
        """The tensor a RESHAPE output views: same bytes and quantisation (at 1x1 the converter
        squeezes a residual's input to a vector before the ADD), so the C code needs no op for it."""
        while tensor in self.aliases:
            tensor = self.aliases[tensor]
        return tensor


def read_tflite(data: bytes) -> TfliteGraph:
    from ai_edge_litert import schema_py_generated as fb

    model = fb.ModelT.InitFromObj(fb.Model.GetRootAs(data, 0))
    if len(model.subgraphs) != 1:
        raise BindError(f"expected one subgraph, found {len(model.subgraphs)}")
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    codes = [names[max(c.builtinCode, c.deprecatedBuiltinCode)] for c in model.operatorCodes]
    dtypes = {fb.TensorType.INT8: np.int8, fb.TensorType.INT32: np.int32}
    sg = model.subgraphs[0]
    tensors = []
    for i, t in enumerate(sg.tensors):
        q = t.quantization
        raw = model.buffers[t.buffer].data if t.buffer else None
        data_ = None
        if raw is not None and len(raw) and t.type in dtypes:
            data_ = np.frombuffer(np.asarray(raw, np.uint8).tobytes(), dtypes[t.type]).reshape(t.shape)
        scales = np.asarray(q.scale if q is not None and q.scale is not None else [0.0], np.float32)
        zps = np.asarray(q.zeroPoint if q is not None and q.zeroPoint is not None else [0], np.int64)
        tensors.append(Tensor(i, t.name.decode(), tuple(int(d) for d in t.shape), scales, zps, data_))
    ops = [
        TfliteOp(i, codes[o.opcodeIndex], [int(x) for x in o.inputs], [int(x) for x in o.outputs], o.builtinOptions)
        for i, o in enumerate(sg.operators)
    ]
    graph = TfliteGraph(model, tensors, ops, [int(x) for x in sg.inputs], [int(x) for x in sg.outputs])
    for op in ops:
        source, result = tensors[op.inputs[0]], tensors[op.outputs[0]]
        if op.opcode == "RESHAPE" and _same_quantisation(source, result):
            graph.aliases[result.index] = source.index
    for op in ops:
        if op.opcode != "RESHAPE":
            for t in op.inputs:
                graph.consumers.setdefault(graph.canonical(t), []).append(op.index)
    return graph


def _same_quantisation(a: Tensor, b: Tensor) -> bool:
    return bool(np.array_equal(a.scales, b.scales) and np.array_equal(a.zero_points, b.zero_points))


@dataclass(slots=True)
class BoundOp:
    """One spec op, the TFLite op computing it (None for a mean over 1x1 that the converter elided),
    its input tensors, and the unary ops folded into its lookup table."""

    main: TfliteOp | None
    inputs: list[Tensor]
    output: Tensor
    raw_output: Tensor
    chain: list[TfliteOp]
    fused: int
    """TFLite's fused activation code (0 none, 1 ReLU, 3 ReLU6), applied as the output clamp."""


def bind(graph: OpGraph, tfl: TfliteGraph) -> list[BoundOp]:
    """Match every spec op to the TFLite ops computing it, checking shapes on the way."""
    tensor_of = {0: tfl.inputs[0]}
    used: set[int] = set()
    bound = []
    for op in graph.ops:
        ins = [tensor_of[t] for t in op.inputs]
        want = EXPECTED[op.kind]
        candidates = [
            o
            for o in tfl.consumers.get(ins[0], [])
            if o not in used and tfl.opcode_of(o) == want and set(ins) <= {tfl.canonical(i) for i in tfl.ops[o].inputs}
        ]
        if not candidates:
            if op.kind == "mean" and op.in_shape[:2] == (1, 1):
                tensor_of[op.output] = ins[0]
                t = tfl.tensors[ins[0]]
                bound.append(BoundOp(None, [t], t, t, [], 0))
                continue
            raise BindError(f"{op.name}: no {want} reads tensor {tfl.tensors[ins[0]].name!r}")
        main = tfl.ops[candidates[0]]
        used.add(main.index)
        out, chain = main.outputs[0], []
        if op.activation in ("leaky_relu", "sigmoid", "swish"):
            first = "LEAKY_RELU" if op.activation == "leaky_relu" else "LOGISTIC"
            step = _only_consumer(tfl, out, first, op.name)
            chain.append(step)
            if op.activation == "swish":
                mul = _only_consumer(tfl, step.outputs[0], "MUL", op.name)
                if sorted(map(tfl.canonical, mul.inputs)) != sorted([out, step.outputs[0]]):
                    raise BindError(f"{op.name}: swish MUL does not multiply the conv by its sigmoid")
                chain.append(mul)
            used.update(o.index for o in chain)
        final = chain[-1].outputs[0] if chain else out
        _check_shape(op.name, tfl.tensors[final].shape, op.out_shape)
        tensor_of[op.output] = final
        fused = int(getattr(main.options, "fusedActivationFunction", 0))
        # conv-like ops: (input, weights, bias); add and mul: the spec op's operands, in its order
        data_inputs = [tfl.tensors[i] for i in (ins if op.kind in ("add", "mul") else main.inputs) if i >= 0]
        bound.append(BoundOp(main, data_inputs, tfl.tensors[final], tfl.tensors[out], chain, fused))
    used |= _alias_ops(tfl)
    leftover = [op.opcode for op in tfl.ops if op.index not in used]
    if leftover:
        raise BindError(f"the .tflite computes what the spec does not: {', '.join(leftover)}")
    if tensor_of[graph.ops[-1].output] != tfl.canonical(tfl.outputs[0]):
        raise BindError("the spec's last op does not produce the model's output")
    return bound


def _alias_ops(tfl: TfliteGraph) -> set[int]:
    return {op.index for op in tfl.ops if op.opcode == "RESHAPE" and op.outputs[0] in tfl.aliases}


def _only_consumer(tfl: TfliteGraph, tensor: int, opcode: str, name: str) -> TfliteOp:
    readers = [tfl.ops[o] for o in tfl.consumers.get(tensor, []) if tfl.opcode_of(o) == opcode]
    if len(readers) != 1:
        raise BindError(f"{name}: expected one {opcode} after {tfl.tensors[tensor].name!r}, found {len(readers)}")
    return readers[0]


def _check_shape(name: str, tflite_shape: tuple[int, ...], shape: tuple[int, int, int]) -> None:
    elements = int(np.prod(tflite_shape))
    if tflite_shape[-1] != shape[2] or elements != shape[0] * shape[1] * shape[2]:
        raise BindError(f"{name}: TFLite tensor {tflite_shape} is not {shape}")


def activation_lut(tfl: TfliteGraph, chain: list[TfliteOp]) -> np.ndarray:
    """The int8 -> int8 table of a chain of unary ops, computed by TFLM itself on all 256 inputs.

    The chain (LEAKY_RELU, LOGISTIC, or LOGISTIC then MUL by its own input) maps each int8 input
    to one int8 output, so a table reproduces TFLM exactly: build a model of just these ops with
    the same tensors and quantisation, reshaped to 256 elements, and run it.
    """
    import copy

    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    from tinyarch.tools.deploy.export import Tflm

    source = tfl.model.subgraphs[0]
    order: list[int] = []
    for op in chain:
        for t in (*op.inputs, *op.outputs):
            if t not in order:
                order.append(t)
    sub = fb.SubGraphT()
    sub.tensors = []
    for t in order:
        tensor = copy.deepcopy(source.tensors[t])
        tensor.shape = np.array([1, 1, 1, 256], np.int32)
        tensor.shapeSignature = None
        tensor.buffer = 0
        sub.tensors.append(tensor)
    sub.operators = []
    for op in chain:
        new = copy.deepcopy(source.operators[op.index])
        new.inputs = np.array([order.index(t) for t in op.inputs], np.int32)
        new.outputs = np.array([order.index(t) for t in op.outputs], np.int32)
        sub.operators.append(new)
    sub.inputs = np.array([order.index(chain[0].inputs[0])], np.int32)
    sub.outputs = np.array([order.index(chain[-1].outputs[0])], np.int32)
    model = fb.ModelT()
    model.version, model.description = tfl.model.version, b"tinyarch activation table"
    model.operatorCodes, model.subgraphs, model.buffers = tfl.model.operatorCodes, [sub], [fb.BufferT()]
    table = Tflm(bytes(flatbuffer_utils.convert_object_to_bytearray(model)), arena=64 * 1024)
    return table.run(np.arange(-128, 128, dtype=np.int8).reshape(1, 1, 1, 256))[0]
