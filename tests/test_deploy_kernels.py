"""tinyarch's int8 C kernels against TensorFlow Lite Micro, byte for byte.

Small Keras models are converted to full-int8 TFLite and run in TFLM (the tflite_micro package)
with every tensor preserved. Each CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, MUL and MEAN
is then recomputed from TFLM's own input tensors by both firmware/kernels/reference.c and
optimized_m7.c (built for the host with gcc and loaded with ctypes), using parameters from
tinyarch.tools.deploy.tflm_params, and must give exactly TFLM's output bytes.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tinyarch.tools.deploy import tflm_params as tp
from tinyarch.tools.opgraph import conv_scratch, depthwise_scratch

pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs were expected")

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ROOT / "firmware" / "kernels"
SOURCES = {"reference": KERNELS / "reference.c", "optimized": KERNELS / "optimized_m7.c"}
HOST_FLAGS = ["-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC"]
ARM_FLAGS = ["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16", "-O2", "-std=c99"]
ARM_FLAGS += ["-Wall", "-Wextra", "-Werror", "-c"]

i8p = ctypes.POINTER(ctypes.c_int8)
i32p = ctypes.POINTER(ctypes.c_int32)
c_int = ctypes.c_int


# --- the C kernels through ctypes -----------------------------------------------------------------


class OutputT(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int32) for n in ("input_offset", "output_offset", "act_min", "act_max")]
    _fields_ += [("lut", i8p)]


def _struct(name: str, fields: tuple[str, ...]) -> type[ctypes.Structure]:
    return type(name, (ctypes.Structure,), {"_fields_": [(f, ctypes.c_int32) for f in fields]})


AddT = _struct("AddT", tp.AddParams.__slots__)
MulT = _struct("MulT", tp.MulParams.__slots__)
MeanT = _struct("MeanT", tp.MeanParams.__slots__)


def _ptr(a: np.ndarray | None, kind: Any) -> Any:
    return None if a is None else a.ctypes.data_as(kind)


def _i8(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int8)


def _i32(a: Any) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.int32)


@dataclass
class Quant:
    """One conv-like op's integer parameters, ready for C."""

    mult: np.ndarray
    shift: np.ndarray
    out: OutputT
    lut: np.ndarray | None = None

    @classmethod
    def of(cls, ch: tp.ChannelParams, op: tp.OutputParams, lut: np.ndarray | None = None) -> Quant:
        """`lut` is an activation table; the clamp is folded into it as code generation does."""
        if lut is not None:
            lut = np.ascontiguousarray(tp.output_table(lut, op.act_min, op.act_max))
        out = OutputT(op.input_offset, op.output_offset, op.act_min, op.act_max, _ptr(lut, i8p))
        return cls(_i32(ch.mult), _i32(ch.shift), out, lut)

    def channels(self, bias: np.ndarray | None, weights: np.ndarray, depthwise: bool = False) -> np.ndarray:
        """ta_channel_t records of the weights' channels (first axis, or last for depthwise), the input
        offset folded in."""
        n = weights.shape[-1 if depthwise else 0]
        params = tp.ChannelParams(list(self.mult[:n]), list(self.shift[:n]))
        table = tp.channel_table(None if bias is None else bias[:n], weights, depthwise, self.out.input_offset, params)
        return _i32(table)


def _scratch(nbytes: int) -> tuple[np.ndarray, Any]:
    """A scratch buffer with 16 guard bytes after the `nbytes` the kernel may use, 4-byte aligned."""
    buf = np.full(nbytes + 16, 0x55, np.int8)
    return buf, _ptr(buf, i8p)


def _check_guard(buf: np.ndarray, nbytes: int) -> None:
    assert (buf[nbytes:] == 0x55).all(), f"a kernel wrote past its {nbytes}-byte scratch"


OUT_T = ctypes.POINTER(OutputT)
SIGNATURES = {
    "ta_conv_s8": [i8p, c_int, c_int, c_int, i8p, i32p, i8p, *[c_int] * 7, OUT_T, i8p],
    "ta_depthwise_s8": [i8p, c_int, c_int, c_int, i8p, i32p, i8p, *[c_int] * 6, OUT_T, i8p],
    "ta_depthwise_inplace_s8": [i8p, c_int, c_int, c_int, i8p, i32p, *[c_int] * 3, OUT_T, i8p],
    "ta_fully_connected_s8": [i8p, c_int, i8p, i32p, i8p, c_int, OUT_T],
    "ta_add_s8": [i8p, i8p, i8p, c_int, ctypes.POINTER(AddT)],
    "ta_mul_channel_s8": [i8p, i8p, i8p, c_int, c_int, ctypes.POINTER(MulT)],
    "ta_mean_hw_s8": [i8p, c_int, c_int, c_int, i8p, ctypes.POINTER(MeanT)],
}


class Kernels:
    """One compiled kernel file, with numpy wrappers (x: HWC, conv weights OHWI, depthwise HWC)."""

    def __init__(self, path: Path) -> None:
        self.lib = ctypes.CDLL(str(path))
        for name, args in SIGNATURES.items():
            getattr(self.lib, name).argtypes = args
            getattr(self.lib, name).restype = None

    def conv(
        self,
        x: np.ndarray,
        w: np.ndarray,
        bias: np.ndarray | None,
        q: Quant,
        stride: int,
        pad: tuple[int, int],
        out_hw: tuple[int, int],
    ) -> np.ndarray:
        x, w = _i8(x), _i8(w)
        (h, wd, c), (oc, k) = x.shape, w.shape[:2]
        ch = q.channels(bias, w)
        out = np.zeros((*out_hw, oc), np.int8)
        nbytes = conv_scratch(k, stride, c)
        buf, scratch = _scratch(nbytes)
        args = (_ptr(out, i8p), *out_hw, oc, k, stride, *pad, q.out, scratch)
        self.lib.ta_conv_s8(_ptr(x, i8p), h, wd, c, _ptr(w, i8p), _ptr(ch, i32p), *args)
        _check_guard(buf, nbytes)
        return out

    def depthwise(
        self,
        x: np.ndarray,
        w: np.ndarray,
        bias: np.ndarray | None,
        q: Quant,
        stride: int,
        pad: tuple[int, int],
        out_hw: tuple[int, int],
    ) -> np.ndarray:
        x, w = _i8(x), _i8(w)
        h, wd, c = x.shape
        ch = q.channels(bias, w, depthwise=True)
        out = np.zeros((*out_hw, c), np.int8)
        nbytes = depthwise_scratch(w.shape[0], stride, out_hw[1])
        buf, scratch = _scratch(nbytes)
        args = (_ptr(out, i8p), *out_hw, w.shape[0], stride, *pad, q.out, scratch)
        self.lib.ta_depthwise_s8(_ptr(x, i8p), h, wd, c, _ptr(w, i8p), _ptr(ch, i32p), *args)
        _check_guard(buf, nbytes)
        return out

    def depthwise_inplace(
        self, x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, q: Quant, pad: tuple[int, int]
    ) -> np.ndarray:
        io, w = _i8(x).copy(), _i8(w)
        h, wd, c = io.shape
        ch = q.channels(bias, w, depthwise=True)
        nbytes = depthwise_scratch(w.shape[0], 1, wd)
        buf, scratch = _scratch(nbytes)
        args = (w.shape[0], *pad, q.out, scratch)
        self.lib.ta_depthwise_inplace_s8(_ptr(io, i8p), h, wd, c, _ptr(w, i8p), _ptr(ch, i32p), *args)
        _check_guard(buf, nbytes)
        return io

    def fully_connected(self, x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, q: Quant) -> np.ndarray:
        x, w = _i8(x.reshape(-1)), _i8(w)
        assert w.shape[1] == x.size
        ch = q.channels(bias, w)
        out = np.zeros(w.shape[0], np.int8)
        self.lib.ta_fully_connected_s8(
            _ptr(x, i8p), x.size, _ptr(w, i8p), _ptr(ch, i32p), _ptr(out, i8p), w.shape[0], q.out
        )
        return out

    def add(self, a: np.ndarray, b: np.ndarray, p: tp.AddParams) -> np.ndarray:
        a, b = _i8(a), _i8(b)
        out = np.zeros_like(a)
        self.lib.ta_add_s8(_ptr(a, i8p), _ptr(b, i8p), _ptr(out, i8p), a.size, AddT(*_fields(p)))
        return out

    def mul_channel(self, x: np.ndarray, s: np.ndarray, p: tp.MulParams) -> np.ndarray:
        x, s = _i8(x), _i8(s.reshape(-1))
        out = np.zeros_like(x)
        hw = x.size // s.size
        self.lib.ta_mul_channel_s8(_ptr(x, i8p), _ptr(s, i8p), _ptr(out, i8p), hw, s.size, MulT(*_fields(p)))
        return out

    def mean(self, x: np.ndarray, p: tp.MeanParams) -> np.ndarray:
        x = _i8(x)
        h, w, c = x.shape
        out = np.zeros(c, np.int8)
        self.lib.ta_mean_hw_s8(_ptr(x, i8p), h, w, c, _ptr(out, i8p), MeanT(*_fields(p)))
        return out


def _fields(p: Any) -> list[int]:
    return [getattr(p, f) for f in type(p).__slots__]


def _compile(src: Path, out: Path, *defines: str) -> Path:
    subprocess.run(["gcc", *HOST_FLAGS, *defines, "-I", str(KERNELS), str(src), "-o", str(out)], check=True)
    return out


@pytest.fixture(scope="module")
def libs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Kernels]:
    if shutil.which("gcc") is None:
        pytest.skip("host gcc is needed to build the kernels")
    d = tmp_path_factory.mktemp("kernels")
    return {name: Kernels(_compile(src, d / f"{name}.so")) for name, src in SOURCES.items()}


# --- parameters ---------------------------------------------------------------------------------------


def test_round_half_away_matches_cpp_round() -> None:
    cases = {0.5: 1, -0.5: -1, 1.5: 2, 2.5: 3, -2.5: -3, 0.49999999999999994: 0, 2.4999999: 2, -7.0: -7}
    for x, want in cases.items():
        assert tp.round_half_away(x) == want, x


def test_quantize_multiplier_edges() -> None:
    assert tp.quantize_multiplier(0.0) == (0, 0)
    assert tp.quantize_multiplier(0.5) == (1 << 30, 0)
    assert tp.quantize_multiplier(1.0) == (1 << 30, 1)
    assert tp.quantize_multiplier(0.75) == (3 << 29, 0)
    assert tp.quantize_multiplier(2.0**-40) == (0, 0)  # below 2^-32: flushed to zero like TFLM
    assert tp.quantize_multiplier(1.0 - 2.0**-40) == (1 << 30, 1)  # mantissa rounds up to 2^31
    m, s = tp.quantize_multiplier(0.0123)
    assert 1 << 30 <= m < 1 << 31 and abs(m * 2.0 ** (s - 31) - 0.0123) < 1e-11


def test_activation_range() -> None:
    assert tp.activation_range(None, 0.1, 3) == (-128, 127)
    assert tp.activation_range("RELU", 0.1, 3) == (3, 127)
    assert tp.activation_range("RELU6", 6 / 255, -128) == (-128, 127)
    assert tp.activation_range(3, 0.05, -128) == (-128, -8)  # 6 / 0.05 = 120
    assert tp.activation_range("relu6", 0.1, -20) == (-20, 40)
    with pytest.raises(ValueError):
        tp.activation_range(4, 0.1, 0)  # TANH is not a clamp


def test_fc_per_tensor_multiplier_uses_a_float32_product() -> None:
    """TFLM's per-tensor fully connected rounds input_scale * filter_scale to float32 first."""
    si, sf, so = 0.0123, 0.00456, 0.0789
    want = tp.quantize_multiplier(float(np.float32(si) * np.float32(sf)) / float(np.float32(so)))
    assert tp.fc_output_params(si, [sf], so, 3) == tp.ChannelParams([want[0]] * 3, [want[1]] * 3)
    assert tp.conv_output_params(si, [sf], so).mult[0] != want[0]  # the double product differs here


def test_mean_params_fold_the_count() -> None:
    p = tp.mean_params(0.02, 3, 0.01, -5, 49)
    m, s = tp.quantize_multiplier(float(np.float32(0.02)) / float(np.float32(0.01)))
    assert (p.input_zero_point, p.output_zero_point) == (3, -5)
    assert p.mult == (m << 5) // 49 and p.shift == s - 5
    assert abs(p.mult * 2.0 ** (p.shift - 31) - 2 / 49) < 1e-8


def test_same_padding() -> None:
    assert tp.same_padding(9, 3, 2) == (5, 1)
    assert tp.same_padding(8, 3, 2) == (4, 0)
    assert tp.same_padding(8, 3, 1) == (8, 1)
    assert tp.same_padding(8, 1, 2) == (4, 0)
    assert tp.same_padding(7, 7, 1) == (7, 3)


# --- TFLite models and TFLM runs ------------------------------------------------------------------------


OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL", "MEAN")


@dataclass
class Run:
    """A converted model, its flatbuffer, and every tensor after one TFLM invocation."""

    model: Any  # schema ModelT
    values: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def graph(self) -> Any:
        return self.model.subgraphs[0]

    def op_name(self, op: Any) -> str:
        code = self.model.operatorCodes[op.opcodeIndex]
        return _OP_NAMES[max(code.builtinCode, code.deprecatedBuiltinCode)]

    def quant(self, t: int) -> tuple[list[float], list[int]]:
        q = self.graph.tensors[t].quantization
        return [float(s) for s in q.scale], [int(z) for z in q.zeroPoint]

    def const(self, t: int) -> np.ndarray | None:
        if t < 0:
            return None
        tensor = self.graph.tensors[t]
        data = self.model.buffers[tensor.buffer].data
        dtype = {9: np.int8, 2: np.int32}[tensor.type]
        return np.asarray(data, np.uint8).view(dtype).reshape(tensor.shape)

    def ops(self) -> Iterator[tuple[int, str, Any]]:
        for i, op in enumerate(self.graph.operators):
            yield i, self.op_name(op), op


_OP_NAMES: dict[int, str] = {}


@pytest.fixture(scope="module")
def tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf = pytest.importorskip("tensorflow")
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated")
    pytest.importorskip("tflite_micro")
    _OP_NAMES.update({v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")})
    return tf


def _convert(tf: Any, model: Any, seed: int, per_channel_dense: bool = True) -> bytes:
    rng = np.random.default_rng(seed)
    shapes = [tuple(int(d) for d in t.shape) for t in model.inputs]

    def representative() -> Iterator[list[np.ndarray]]:
        for _ in range(20):
            # inputs of different spreads, so that two-input ops see different scales
            yield [_sample(rng, s, i) for i, s in enumerate(shapes)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    if not per_channel_dense:
        conv._experimental_disable_per_channel_quantization_for_dense_layers = True
    return conv.convert()


def _sample(rng: np.random.Generator, shape: tuple[int, ...], i: int) -> np.ndarray:
    """Float input number i as the representative dataset draws it: different spreads per input."""
    return (rng.standard_normal(shape) * (1 + 2 * i) + i).astype(np.float32)


def _run_tflm(buf: bytes, inputs: list[np.ndarray] | str, seed: int) -> Run:
    """Invoke TFLM once. inputs: int8 arrays, "uniform" (any int8) or "typical" (quantized samples)."""
    from ai_edge_litert import schema_py_generated as schema
    from tflite_micro.python.tflite_micro import runtime

    run = Run(schema.ModelT.InitFromObj(schema.Model.GetRootAs(buf, 0)))
    interp = runtime.Interpreter.from_bytes(
        bytes(buf), arena_size=4 << 20, intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors
    )
    rng = np.random.default_rng(seed)
    for i, t in enumerate(run.graph.inputs):
        shape = tuple(run.graph.tensors[t].shape)
        if inputs == "uniform":
            x = rng.integers(-128, 128, shape, dtype=np.int8)
        elif inputs == "typical":
            (scale,), (zero,) = run.quant(t)
            x = np.clip(np.round(_sample(rng, shape, i) / scale) + zero, -128, 127).astype(np.int8)
        else:
            x = inputs[i].reshape(shape)
        interp.set_input(x, i)
    interp.invoke()
    for i in range(len(run.graph.tensors)):
        run.values[i] = np.asarray(interp.GetTensor(i, 0)["tensor_data"])
    return run


def _keras_models(keras: Any) -> dict[str, Callable[[], Any]]:
    """Model builders: name -> () -> keras.Model. Biases are random (the converter drops zero ones)."""
    L = keras.layers
    bias = keras.initializers.RandomUniform(-0.3, 0.3)

    def conv(filters: int, k: int, s: int = 1, act: str | None = None) -> Any:
        return L.Conv2D(filters, k, strides=s, padding="same", activation=act, bias_initializer=bias)

    def dw(k: int, s: int = 1, act: str | None = None) -> Any:
        return L.DepthwiseConv2D(k, strides=s, padding="same", activation=act, bias_initializer=bias)

    def conv_odd() -> Any:  # 9x9x5 input: odd size, 5 channels
        x = keras.Input((9, 9, 5), batch_size=1)
        a = conv(24, 3, 1, "relu6")(x)
        outs = [a, conv(7, 3, 2, "relu")(x), conv(5, 3, 1)(x), conv(3, 3, 2)(x), conv(24, 1)(x), conv(6, 1, 2)(x)]
        outs += [L.GlobalAveragePooling2D()(x), L.GlobalAveragePooling2D(keepdims=True)(a)]
        return keras.Model(x, outs)

    def conv_even() -> Any:  # 8x8x3 input: even size, an RGB stem
        x = keras.Input((8, 8, 3), batch_size=1)
        outs = [conv(16, 3, 2, "relu6")(x), conv(5, 3, 1, "relu")(x), conv(8, 1)(x), conv(4, 5, 2)(x)]
        outs += [conv(12, 3, 1)(x), L.GlobalAveragePooling2D(keepdims=True)(x)]
        return keras.Model(x, outs)

    def dw_odd() -> Any:
        x = keras.Input((9, 9, 24), batch_size=1)
        outs = [dw(3, 1, "relu6")(x), dw(5, 2)(x), dw(7, 1, "relu")(x), dw(3, 2)(x), dw(5, 1)(x)]
        return keras.Model(x, outs)

    def dw_even() -> Any:
        x = keras.Input((8, 8, 5), batch_size=1)
        outs = [dw(3, 1)(x), dw(5, 1, "relu6")(x), dw(7, 2)(x), dw(3, 2, "relu")(x), dw(7, 1)(x)]
        return keras.Model(x, outs)

    def dw_small() -> Any:  # 3 channels, fewer rows than the 4-channel in-place ring needs
        x = keras.Input((6, 7, 3), batch_size=1)
        return keras.Model(x, [dw(3, 1)(x), dw(5, 1, "relu6")(x), dw(3, 2)(x)])

    def se_block() -> Any:  # depthwise, squeeze-and-excite, residual add, pooling, classifier
        x = keras.Input((6, 6, 24), batch_size=1)
        d = dw(3, 1, "relu6")(x)
        s = L.GlobalAveragePooling2D(keepdims=True)(d)
        s = conv(24, 1, 1, "sigmoid")(conv(8, 1, 1, "relu")(s))
        m = L.Multiply()([d, s])
        y = L.Add()([x, conv(24, 1)(m)])
        logits = L.Dense(10, bias_initializer=bias)(L.GlobalAveragePooling2D()(y))
        return keras.Model(x, [logits, L.GlobalAveragePooling2D(keepdims=True)(y)])

    def se_odd() -> Any:  # 5 channels: the SE scale broadcast and ADD with a channel tail
        x = keras.Input((5, 5, 5), batch_size=1)
        s = conv(5, 1, 1, "sigmoid")(L.GlobalAveragePooling2D(keepdims=True)(x))
        return keras.Model(x, [L.Add()([x, L.Multiply()([x, s])])])

    def dense() -> Any:
        x = keras.Input((37,), batch_size=1)
        h = L.Dense(10, activation="relu", bias_initializer=bias)(x)
        return keras.Model(x, [h, L.Dense(7, bias_initializer=bias)(h), L.Dense(6, activation="relu6")(x)])

    def add_pair() -> Any:  # two inputs, different scales
        a, b = keras.Input((256, 256, 1), batch_size=1), keras.Input((256, 256, 1), batch_size=1)
        return keras.Model([a, b], [L.Add()([a, b])])

    return {
        "conv_odd": conv_odd,
        "conv_even": conv_even,
        "dw_odd": dw_odd,
        "dw_even": dw_even,
        "dw_small": dw_small,
        "se_block": se_block,
        "se_odd": se_odd,
        "dense": dense,
        "dense_per_tensor": dense,
        "add_pair": add_pair,
    }


INPUTS = ("typical", "uniform")
MODELS = ("conv_odd", "conv_even", "dw_odd", "dw_even", "dw_small", "se_block", "se_odd", "dense", "dense_per_tensor")


@pytest.fixture(scope="module")
def tflite(tf: Any) -> dict[str, bytes]:
    import keras

    builders = _keras_models(keras)
    out = {}
    for i, name in enumerate((*MODELS, "add_pair")):
        keras.utils.set_random_seed(i)
        out[name] = _convert(tf, builders[name](), seed=i, per_channel_dense=name != "dense_per_tensor")
    return out


@pytest.fixture(scope="module")
def runs(tflite: dict[str, bytes]) -> dict[tuple[str, str], Run]:
    """Each model run on inputs like its calibration data, and on arbitrary int8 (saturating) inputs."""
    out = {}
    for i, name in enumerate(MODELS):
        for kind in INPUTS:
            out[name, kind] = _run_tflm(tflite[name], kind, seed=100 + i)
    return out


@pytest.fixture(scope="module")
def exhaustive_add(tflite: dict[str, bytes]) -> Run:
    """ADD over all 65536 pairs of int8 inputs."""
    grid = np.arange(-128, 128, dtype=np.int8)
    return _run_tflm(tflite["add_pair"], [np.repeat(grid, 256), np.tile(grid, 256)], seed=0)


# --- one op of a run, recomputed in C ----------------------------------------------------------------------


def _pad(in_size: int, out_size: int, k: int, s: int, same: bool) -> int:
    return max((out_size - 1) * s + k - in_size, 0) // 2 if same else 0


def _activation(opts: Any) -> int:
    return int(getattr(opts, "fusedActivationFunction", 0))


def compute(run: Run, op: Any, kern: Kernels) -> tuple[str, np.ndarray, list[np.ndarray]]:
    """(description, TFLM's output, C outputs) for one op; several outputs where a kernel has variants."""
    name = run.op_name(op)
    opts = op.builtinOptions
    ins, out_t = list(op.inputs), op.outputs[0]
    want = run.values[out_t]
    (so,), (zo,) = run.quant(out_t)
    (si,), (zi,) = run.quant(ins[0])
    x = run.values[ins[0]]
    act = _activation(opts)
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        w, b = run.const(ins[1]), run.const(ins[2]) if len(ins) > 2 else None
        fscales, _ = run.quant(ins[1])
        _, h, wd, c = x.shape
        _, oh, ow, oc = want.shape
        k, s, same = w.shape[1], opts.strideH, opts.padding == 0
        assert opts.strideW == s and w.shape[2] == k and opts.dilationHFactor == opts.dilationWFactor == 1
        ch = tp.conv_output_params(si, fscales, so)
        if len(fscales) == 1:
            ch = tp.ChannelParams(ch.mult * oc, ch.shift * oc)
        q = Quant.of(ch, tp.output_params(zi, so, zo, act))
        pad = (_pad(h, oh, k, s, same), _pad(wd, ow, k, s, same))
        desc = f"{name} k{k} s{s} {h}x{wd}x{c}->{oh}x{ow}x{oc} act={act}"
        if name == "CONV_2D":
            return desc, want, [kern.conv(x[0], w, b, q, s, pad, (oh, ow))]
        assert opts.depthMultiplier == 1
        got = [kern.depthwise(x[0], w[0], b, q, s, pad, (oh, ow))]
        if s == 1:
            got.append(kern.depthwise_inplace(x[0], w[0], b, q, pad))
            desc += " (+in place)"
        return desc, want, got
    if name == "FULLY_CONNECTED":
        w, b = run.const(ins[1]), run.const(ins[2]) if len(ins) > 2 else None
        fscales, _ = run.quant(ins[1])
        q = Quant.of(tp.fc_output_params(si, fscales, so, w.shape[0]), tp.output_params(zi, so, zo, act))
        desc = f"{name} {w.shape[1]}->{w.shape[0]} act={act} filter scales={len(fscales)}"
        return desc, want.reshape(-1), [kern.fully_connected(x, w, b, q)]
    if name == "ADD":
        (s2,), (z2,) = run.quant(ins[1])
        assert x.shape == run.values[ins[1]].shape, "only the element-wise (residual) ADD is supported"
        p = tp.add_params(si, zi, s2, z2, so, zo, act)
        return f"ADD {x.shape} scales {si:.4g}/{s2:.4g}", want, [kern.add(x, run.values[ins[1]], p)]
    if name == "MUL":
        a, bb = (ins[0], ins[1]) if x.size >= run.values[ins[1]].size else (ins[1], ins[0])
        (sa,), (za,) = run.quant(a)
        (sb,), (zb,) = run.quant(bb)
        p = tp.mul_params(sa, za, sb, zb, so, zo, act)
        xa, sv = run.values[a], run.values[bb]
        assert sv.size == xa.shape[-1], "only the per-channel (SE) broadcast is supported"
        return f"MUL {xa.shape} x {sv.shape}", want, [kern.mul_channel(xa, sv, p)]
    if name == "MEAN":
        axis = run.const(ins[1])
        assert sorted(int(a) for a in axis.reshape(-1)) == [1, 2]
        _, h, wd, c = x.shape
        p = tp.mean_params(si, zi, so, zo, h * wd)
        return f"MEAN {h}x{wd}x{c} keep_dims={opts.keepDims}", want.reshape(-1), [kern.mean(x[0], p)]
    raise AssertionError(name)


def _check(run: Run, libs: dict[str, Kernels]) -> list[str]:
    """Compare every supported op with TFLM; returns the descriptions of the ops checked."""
    checked, bad = [], []
    for i, name, op in run.ops():
        if name not in OPS:
            continue
        for lib_name, kern in libs.items():
            desc, want, got = compute(run, op, kern)
            for variant, g in enumerate(got):
                n = int(np.count_nonzero(g.reshape(want.shape) != want))
                if n:
                    bad.append(f"op {i} {desc} [{lib_name} variant {variant}]: {n}/{want.size} bytes differ")
        checked.append(desc)
    assert not bad, "\n".join(bad)
    return checked


@pytest.mark.parametrize("inputs", INPUTS)
@pytest.mark.parametrize("model", MODELS)
def test_ops_match_tflm(model: str, inputs: str, runs: dict[tuple[str, str], Run], libs: dict[str, Kernels]) -> None:
    checked = _check(runs[model, inputs], libs)
    expected = {  # how many ops of each kind the model must contain, so nothing is silently skipped
        "conv_odd": {"CONV_2D": 6, "MEAN": 2},
        "conv_even": {"CONV_2D": 5, "MEAN": 1},
        "dw_odd": {"DEPTHWISE_CONV_2D": 5},
        "dw_even": {"DEPTHWISE_CONV_2D": 5},
        "dw_small": {"DEPTHWISE_CONV_2D": 3},
        "se_block": {"DEPTHWISE_CONV_2D": 1, "CONV_2D": 3, "MUL": 1, "ADD": 1, "MEAN": 3, "FULLY_CONNECTED": 1},
        "se_odd": {"CONV_2D": 1, "MUL": 1, "ADD": 1, "MEAN": 1},
        "dense": {"FULLY_CONNECTED": 3},
        "dense_per_tensor": {"FULLY_CONNECTED": 3},
    }[model]
    counts = {k: sum(d.startswith(k + " ") for d in checked) for k in expected}
    assert counts == expected, checked


def test_fused_activations_are_covered(runs: dict[tuple[str, str], Run]) -> None:
    acts = {(run.op_name(op), _activation(op.builtinOptions)) for run in runs.values() for _, _, op in run.ops()}
    for op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        assert {(op, 0), (op, 1), (op, 3)} <= acts, op  # NONE, RELU, RELU6


def test_dense_quantization_granularity(runs: dict[tuple[str, str], Run]) -> None:
    """The converter quantizes Dense weights per output channel unless told otherwise."""
    for model, want in (("dense", "per-channel"), ("dense_per_tensor", "per-tensor")):
        run = runs[model, "typical"]
        for _, name, op in run.ops():
            if name == "FULLY_CONNECTED":
                scales, zps = run.quant(op.inputs[1])
                n_out = run.graph.tensors[op.inputs[1]].shape[0]
                assert len(scales) == (n_out if want == "per-channel" else 1), (model, len(scales))
                assert not any(zps)


def test_add_exhaustive(exhaustive_add: Run, libs: dict[str, Kernels]) -> None:
    (desc,) = _check(exhaustive_add, libs)
    assert desc.startswith("ADD (1, 256, 256, 1)")


def test_tflm_uses_double_rounding(
    exhaustive_add: Run, runs: dict[tuple[str, str], Run], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """TFLM's MultiplyByQuantizedMultiplier has two variants (TFLITE_SINGLE_ROUNDING). The kernels
    use the double-rounding one; the same source built for single rounding must disagree."""
    d = tmp_path_factory.mktemp("single")
    single = Kernels(_compile(SOURCES["reference"], d / "single.so", "-DTA_SINGLE_ROUNDING=1"))
    differ = 0
    for run in (exhaustive_add, runs["se_block", "typical"], runs["conv_odd", "typical"]):
        for _, name, op in run.ops():
            if name in OPS:
                _, want, got = compute(run, op, single)
                differ += int(np.count_nonzero(got[0].reshape(want.shape) != want))
    assert differ > 0


# --- reference vs optimised beyond the models -------------------------------------------------------------


def _rand_quant(rng: np.random.Generator, n: int, lut: bool) -> Quant:
    scales = rng.uniform(0.0005, 0.05, n) * (8.0 if rng.random() < 0.2 else 1.0)  # sometimes above one
    ch = tp.conv_output_params(1.0, list(scales), 1.0)
    lo = int(rng.integers(-128, 0))
    op = tp.OutputParams(int(rng.integers(-127, 129)), int(rng.integers(-128, 128)), lo, int(rng.integers(lo, 128)))
    return Quant.of(ch, op, rng.integers(-128, 128, 256, dtype=np.int8) if lut else None)


def test_reference_and_optimized_agree_on_random_shapes(libs: dict[str, Kernels]) -> None:
    rng = np.random.default_rng(7)
    ref, opt = libs["reference"], libs["optimized"]
    for case in range(150):
        h, w = (int(v) for v in rng.integers(1, 12, 2))
        c, oc = int(rng.integers(1, 10)), int(rng.integers(1, 11))
        k, s = int(rng.choice([1, 3, 5, 7, 9])), int(rng.choice([1, 2]))
        oh, pt = tp.same_padding(h, k, s)
        ow, pl = tp.same_padding(w, k, s)
        x = rng.integers(-128, 128, (h, w, c), dtype=np.int8)
        bias = rng.integers(-5000, 5000, max(c, oc), dtype=np.int32) if case % 3 else None
        q = _rand_quant(rng, max(c, oc), lut=case % 4 == 0)
        msg = f"case {case}: {h}x{w}x{c} k{k} s{s} oc{oc}"
        wc = rng.integers(-128, 128, (oc, k, k, c), dtype=np.int8)
        np.testing.assert_array_equal(
            ref.conv(x, wc, bias, q, s, (pt, pl), (oh, ow)), opt.conv(x, wc, bias, q, s, (pt, pl), (oh, ow)), msg
        )
        wd = rng.integers(-128, 128, (k, k, c), dtype=np.int8)
        want = ref.depthwise(x, wd, bias, q, s, (pt, pl), (oh, ow))
        np.testing.assert_array_equal(want, opt.depthwise(x, wd, bias, q, s, (pt, pl), (oh, ow)), msg)
        if s == 1:
            for kern in (ref, opt):
                np.testing.assert_array_equal(want, kern.depthwise_inplace(x, wd, bias, q, (pt, pl)), msg)
        wf = rng.integers(-128, 128, (oc, w * c), dtype=np.int8)
        np.testing.assert_array_equal(
            ref.fully_connected(x[0], wf, bias, q), opt.fully_connected(x[0], wf, bias, q), msg
        )
        if q.lut is not None:  # the table is applied after the clamp
            o = q.out
            plain = Quant(q.mult, q.shift, OutputT(o.input_offset, o.output_offset, o.act_min, o.act_max, None))
            base = opt.conv(x, wc, bias, plain, s, (pt, pl), (oh, ow)).astype(np.int32)
            np.testing.assert_array_equal(opt.conv(x, wc, bias, q, s, (pt, pl), (oh, ow)), q.lut[base + 128], msg)


def test_elementwise_reference_and_optimized_agree(libs: dict[str, Kernels]) -> None:
    rng = np.random.default_rng(11)
    ref, opt = libs["reference"], libs["optimized"]
    for case in range(60):
        h, w, c = (int(v) for v in rng.integers(1, 20, 3))
        if case % 10 == 0:
            h, w = 23, 23  # over 256 pixels: the optimised mean flushes its 16-bit lanes
        x = rng.integers(-128, 128, (h, w, c), dtype=np.int8)
        y = rng.integers(-128, 128, (h, w, c), dtype=np.int8)
        sc = rng.uniform(0.001, 0.1, 4)
        z = [int(v) for v in rng.integers(-128, 128, 4)]
        pm = tp.mean_params(sc[0], z[0], sc[1] * rng.uniform(0.2, 1.5), z[1], h * w)
        np.testing.assert_array_equal(ref.mean(x, pm), opt.mean(x, pm))
        pa = tp.add_params(sc[0], z[0], sc[1], z[1], sc[2] * 2, z[2], ("RELU", None)[case % 2])
        np.testing.assert_array_equal(ref.add(x, y, pa), opt.add(x, y, pa))
        pmul = tp.mul_params(sc[0], z[0], 1 / 256, -128, sc[3], z[3], None)
        np.testing.assert_array_equal(ref.mul_channel(x, y[0, 0], pmul), opt.mul_channel(x, y[0, 0], pmul))
    # constant inputs: 256-pixel chunks of -128 sit exactly on the int16 lane limit
    for v in (-128, 127):
        x = np.full((20, 20, 8), v, np.int8)
        pm = tp.mean_params(0.05, 0, 0.05, 0, 400)
        np.testing.assert_array_equal(ref.mean(x, pm), np.full(8, v, np.int8))
        np.testing.assert_array_equal(opt.mean(x, pm), np.full(8, v, np.int8))


def _tflm_requantize(x: int, mult: int, shift: int) -> int:
    """TFLM's double-rounding MultiplyByQuantizedMultiplier on Python ints (gemmlowp's definitions)."""
    ab = (x << max(shift, 0)) * mult  # (no int32 overflow for the values tested)
    num = ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30))
    high = abs(num) // (1 << 31) * (1 if num >= 0 else -1)  # C++ division truncates
    e = max(-shift, 0)
    mask = (1 << e) - 1
    return (high >> e) + int((high & mask) > (mask >> 1) + int(high < 0))


def test_requantization_rounding_ties(libs: dict[str, Kernels]) -> None:
    """Exact halves in both roundings: a fully connected layer with x = 0, w = 1 outputs requant(bias)."""
    accs = np.arange(-300, 300, dtype=np.int32)
    for mult, shift in ((1 << 30, 0), (1 << 30, -1), (1 << 30, -3), (3 << 29, -2), ((1 << 30) + 1, -1), (1 << 30, 1)):
        want = np.array([np.clip(_tflm_requantize(int(a), mult, shift), -128, 127) for a in accs], np.int8)
        n = len(accs)
        q = Quant.of(tp.ChannelParams([mult] * n, [shift] * n), tp.OutputParams(0, 0, -128, 127))
        for name, kern in libs.items():
            got = kern.fully_connected(np.zeros(1, np.int8), np.ones((n, 1), np.int8), accs, q)
            np.testing.assert_array_equal(got, want, f"{name} mult={mult} shift={shift}")


# --- Cortex-M7 build ----------------------------------------------------------------------------------------


def test_cross_compiles_for_cortex_m7(tmp_path: Path) -> None:
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None:
        pytest.skip("arm-none-eabi-gcc is not installed")
    for name, src in SOURCES.items():
        obj = tmp_path / f"{name}.o"
        subprocess.run([gcc, *ARM_FLAGS, "-I", str(KERNELS), str(src), "-o", str(obj)], check=True)
        objdump = shutil.which("arm-none-eabi-objdump")
        if objdump and name == "optimized":
            asm = subprocess.run([objdump, "-d", str(obj)], check=True, capture_output=True, text=True).stdout
            for insn in ("smlad", "sxtab16", "sxtb16", "smlatb", "ssat", "smlal"):
                assert insn in asm, f"{insn} missing: the DSP path was not compiled"


# The optimised kernels as built for the M7 (real DSP instructions) run in unicorn's Cortex-M7 model.
M7_HARNESS = r"""
#include "tinyarch_kernels.h"
int32_t args[16];
int8_t in_buf[4096], out_buf[4096], w_buf[8192], lut[256];
int32_t scratch[2048];
ta_channel_t ch[64];
ta_output_t q;
ta_add_t addp;
ta_mul_t mulp;
ta_mean_t meanp;
void halt(void) { for (;;) {} }
void run(int op) {
    const int32_t *a = args;
    switch (op) {
    case 0: ta_conv_s8(in_buf, a[0], a[1], a[2], w_buf, ch, out_buf, a[3], a[4], a[5], a[6], a[7], a[8], a[9], &q,
                       scratch); break;
    case 1: ta_depthwise_s8(in_buf, a[0], a[1], a[2], w_buf, ch, out_buf, a[3], a[4], a[6], a[7], a[8], a[9], &q,
                            scratch); break;
    case 2: ta_depthwise_inplace_s8(in_buf, a[0], a[1], a[2], w_buf, ch, a[6], a[8], a[9], &q, scratch); break;
    case 3: ta_fully_connected_s8(in_buf, a[0], w_buf, ch, out_buf, a[1], &q); break;
    case 4: ta_add_s8(in_buf, w_buf, out_buf, a[0], &addp); break;
    case 5: ta_mul_channel_s8(in_buf, w_buf, out_buf, a[0], a[1], &mulp); break;
    case 6: ta_mean_hw_s8(in_buf, a[0], a[1], a[2], out_buf, &meanp); break;
    }
}
"""


class M7:
    """optimized_m7.c linked into a bare-metal image and called in unicorn's Cortex-M7."""

    BASE = 0x20000000

    def __init__(self, tmp: Path) -> None:
        unicorn = pytest.importorskip("unicorn")
        tools = {t: shutil.which(f"arm-none-eabi-{t}") for t in ("gcc", "objcopy", "nm")}
        if None in tools.values():
            pytest.skip("the arm-none-eabi toolchain is not installed")
        (tmp / "harness.c").write_text(M7_HARNESS)
        (tmp / "link.ld").write_text(
            "ENTRY(run)\nSECTIONS { . = 0x20000000; .text : { *(.text*) *(.rodata*) }\n"
            ".data : { *(.data*) } .bss : { *(.bss*) *(COMMON) } }\n"
        )
        elf, image = tmp / "m7.elf", tmp / "m7.bin"
        flags = [f for f in ARM_FLAGS if f not in ("-c", "-Wall", "-Wextra", "-Werror")]
        srcs = [str(tmp / "harness.c"), str(SOURCES["optimized"])]
        link = ["-nostdlib", "-T", str(tmp / "link.ld"), "-lc", "-lgcc"]  # newlib: memset, memcpy
        subprocess.run([tools["gcc"], *flags, "-I", str(KERNELS), *srcs, "-o", str(elf), *link], check=True)
        subprocess.run([tools["objcopy"], "-O", "binary", str(elf), str(image)], check=True)
        nm = subprocess.run([tools["nm"], str(elf)], check=True, capture_output=True, text=True).stdout
        self.sym = {line.split()[2]: int(line.split()[0], 16) for line in nm.splitlines() if len(line.split()) == 3}
        from unicorn import arm_const as arm

        self.arm = arm
        self.uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB)
        self.uc.ctl_set_cpu_model(arm.UC_CPU_ARM_CORTEX_M7)
        self.uc.mem_map(self.BASE, 1 << 20)
        self.uc.mem_write(self.BASE, image.read_bytes())

    def put(self, name: str, data: bytes | np.ndarray) -> None:
        self.uc.mem_write(self.sym[name], data if isinstance(data, bytes) else np.ascontiguousarray(data).tobytes())

    def get(self, name: str, n: int) -> np.ndarray:
        return np.frombuffer(bytes(self.uc.mem_read(self.sym[name], n)), np.int8).copy()

    def call(self, op: int, args: list[int], q: Quant | None = None, channels: np.ndarray | None = None) -> None:
        if q is not None:
            lut = self.sym["lut"] if q.lut is not None else 0
            o = q.out
            self.put("q", np.array([o.input_offset, o.output_offset, o.act_min, o.act_max, lut], np.int32))
            if q.lut is not None:
                self.put("lut", q.lut)
        if channels is not None:
            self.put("ch", channels)
        self.put("args", np.array(args + [0] * (16 - len(args)), np.int32))
        self.uc.reg_write(self.arm.UC_ARM_REG_SP, self.BASE + (1 << 20) - 64)
        self.uc.reg_write(self.arm.UC_ARM_REG_R0, op)
        self.uc.reg_write(self.arm.UC_ARM_REG_LR, self.sym["halt"] | 1)
        self.uc.emu_start(self.sym["run"] | 1, self.sym["halt"], count=50_000_000)


def test_cortex_m7_build_matches_reference(tmp_path: Path, libs: dict[str, Kernels]) -> None:
    """The DSP intrinsics (not their host emulation) give the reference's bytes."""
    m7, ref = M7(tmp_path), libs["reference"]
    rng = np.random.default_rng(3)
    for case in range(60):
        h, w = (int(v) for v in rng.integers(1, 13, 2))
        c, oc = int(rng.integers(1, 10)), int(rng.integers(1, 10))
        k, s = int(rng.choice([1, 3, 5, 7])), int(rng.choice([1, 2]))
        (oh, pt), (ow, pl) = tp.same_padding(h, k, s), tp.same_padding(w, k, s)
        x = rng.integers(-128, 128, (h, w, c), dtype=np.int8)
        bias = rng.integers(-5000, 5000, 64, dtype=np.int32)
        q = _rand_quant(rng, 64, lut=case % 4 == 0)
        geometry = [h, w, c, oh, ow, oc, k, s, pt, pl]
        m7.put("in_buf", x)
        msg = f"case {case}: {h}x{w}x{c} k{k} s{s} oc{oc}"
        wc = rng.integers(-128, 128, (oc, k, k, c), dtype=np.int8)
        m7.put("w_buf", wc)
        m7.call(0, geometry, q, q.channels(bias, wc))
        want = ref.conv(x, wc, bias[:oc], q, s, (pt, pl), (oh, ow))
        np.testing.assert_array_equal(m7.get("out_buf", want.size), want.reshape(-1), msg)
        wd = rng.integers(-128, 128, (k, k, c), dtype=np.int8)
        m7.put("w_buf", wd)
        m7.call(1, geometry, q, q.channels(bias, wd, depthwise=True))
        want = ref.depthwise(x, wd, bias[:c], q, s, (pt, pl), (oh, ow))
        np.testing.assert_array_equal(m7.get("out_buf", want.size), want.reshape(-1), msg)
        if s == 1:
            m7.call(2, geometry, q)
            np.testing.assert_array_equal(m7.get("in_buf", want.size), want.reshape(-1), msg)
        wf = rng.integers(-128, 128, (oc, w * c), dtype=np.int8)
        m7.put("in_buf", x)
        m7.put("w_buf", wf)
        m7.call(3, [w * c, oc], q, q.channels(bias, wf))
        want = ref.fully_connected(x[0], wf, bias[:oc], q)
        np.testing.assert_array_equal(m7.get("out_buf", want.size), want, msg)
        y = rng.integers(-128, 128, (h, w, c), dtype=np.int8)
        sc, z = rng.uniform(0.002, 0.1, 4), [int(v) for v in rng.integers(-128, 128, 4)]
        pa = tp.add_params(sc[0], z[0], sc[1], z[1], sc[2] * 2, z[2], ("RELU", None)[case % 2])
        pm = tp.mul_params(sc[0], z[0], 1 / 256, -128, sc[3], z[3], None)
        pmean = tp.mean_params(sc[0], z[0], sc[1], z[1], h * w)
        m7.put("w_buf", y)
        m7.put("addp", np.array(_fields(pa), np.int32))
        m7.put("mulp", np.array(_fields(pm), np.int32))
        m7.put("meanp", np.array(_fields(pmean), np.int32))
        m7.call(4, [x.size])
        np.testing.assert_array_equal(m7.get("out_buf", x.size), ref.add(x, y, pa).reshape(-1), msg)
        m7.call(5, [h * w, c])
        want = ref.mul_channel(x, y[0, 0], pm)
        np.testing.assert_array_equal(m7.get("out_buf", x.size), want.reshape(-1), msg)
        m7.call(6, [h, w, c])
        np.testing.assert_array_equal(m7.get("out_buf", c), ref.mean(x, pmean), msg)
