"""Lower a spec to its int8 operator graph: the execution order that the profiler, the memory
planner and the firmware code generator all share.

Conventions (they match the int8 deployment, where batch norm is folded into the convolution):
- every convolution carries its batch norm and activation; activations are applied in the
  conv's output stage (ReLU6 by clamping, leaky ReLU, swish and sigmoid by a 256-entry int8
  lookup table), so they never materialise a tensor of their own;
- tensors are int8, NHWC, one byte per element;
- `params` counts what the torch model trains (conv weights, batch-norm scale and shift,
  biases), `flash` what the int8 model stores (weights, then per output channel an int32 bias,
  an int32 multiplier and an int32 shift, plus 256 bytes per lookup table).
"""

from __future__ import annotations

from dataclasses import dataclass

from tinyarch.core.spec import Activation, ArchSpec, BlockType

PER_CHANNEL_BYTES = 12
"""int32 bias, int32 requantisation multiplier and int32 shift for each output channel."""
LUT_BYTES = 256
"""An int8 -> int8 lookup table for a non-piecewise-linear activation."""

Shape = tuple[int, int, int]


def _round2(n: int) -> int:
    return n + (n & 1)


def conv_scratch(kernel: int, stride: int, in_channels: int) -> int:
    """Bytes of ta_conv_s8's working memory: an int16 im2col of two pixels (none for pointwise)."""
    return 0 if kernel == 1 and stride == 1 else 4 * _round2(kernel * kernel * in_channels)


def depthwise_scratch(kernel: int, stride: int, out_width: int) -> int:
    """Bytes of ta_depthwise_s8's working memory: a ring of `kernel` padded int16 input rows."""
    return 2 * kernel * _round2(stride * _round2(out_width) + kernel + 2)


@dataclass(frozen=True, slots=True)
class Op:
    """One int8 operator. `overwrites` names an input whose buffer the output may take over when
    this op is that input's last reader; `scratch` is the working memory its kernel needs while it
    runs (firmware/kernels/tinyarch_kernels.h: ta_conv_scratch, ta_depthwise_scratch)."""

    name: str
    kind: str  # conv | depthwise | pointwise | fully_connected | add | mul | mean
    inputs: tuple[int, ...]
    output: int
    in_shape: Shape
    out_shape: Shape
    kernel: int = 1
    stride: int = 1
    activation: str | None = None
    macs: int = 0
    params: int = 0
    flash: int = 0
    overwrites: int | None = None
    scratch: int = 0


@dataclass(slots=True)
class OpGraph:
    """Ops in execution order over tensors identified by index; tensor 0 is the input image."""

    ops: list[Op]
    shapes: list[Shape]

    @property
    def sizes(self) -> list[int]:
        return [h * w * c for h, w, c in self.shapes]


def lower(spec: ArchSpec) -> OpGraph:
    """The operator graph of `spec`, block by block from `spec.blocks()`."""
    shapes: list[Shape] = [(spec.resolution, spec.resolution, spec.in_channels)]
    ops: list[Op] = []

    def new_tensor(shape: Shape) -> int:
        shapes.append(shape)
        return len(shapes) - 1

    def conv(
        name: str, x: int, cout: int, kernel: int, stride: int, depthwise: bool, act: str | None, bias: bool = False
    ) -> int:
        h, w, cin = shapes[x]
        ho, wo = -(-h // stride), -(-w // stride)
        per_out = kernel * kernel * (1 if depthwise else cin)
        weights = per_out * cout
        kind = "depthwise" if depthwise else ("pointwise" if kernel == 1 else "conv")
        y = new_tensor((ho, wo, cout))
        lut = LUT_BYTES if act in ("leaky_relu", "swish", "sigmoid") else 0
        # A stride-1 depthwise can run in place (as in TinyEngine): its kernel widens each input row
        # into a ring of `kernel` rows before the output row that overwrites it is written.
        in_place = depthwise and stride == 1
        ops.append(
            Op(
                name,
                kind,
                (x,),
                y,
                shapes[x],
                (ho, wo, cout),
                kernel,
                stride,
                act,
                macs=ho * wo * weights,
                params=weights + (cout if bias else 2 * cout),
                flash=weights + PER_CHANNEL_BYTES * cout + lut,
                overwrites=x if in_place else None,
                scratch=depthwise_scratch(kernel, stride, wo) if depthwise else conv_scratch(kernel, stride, cin),
            )
        )
        return y

    def elementwise(name: str, kind: str, a: int, b: int) -> int:
        y = new_tensor(shapes[a])
        ops.append(Op(name, kind, (a, b), y, shapes[a], shapes[a], overwrites=a))
        return y

    def mean(name: str, x: int) -> int:
        y = new_tensor((1, 1, shapes[x][2]))
        ops.append(Op(name, "mean", (x,), y, shapes[x], shapes[y]))
        return y

    def act(a: Activation) -> str:
        return a.value

    x = conv("stem", 0, spec.stem.width, spec.stem.kernel, spec.stem.stride, False, act(spec.stem.activation))
    for b in spec.blocks():
        p = f"s{b.stage}b{b.index}"
        block_in = x
        if b.kind is BlockType.mbconv:
            x = conv(f"{p}.expand", x, b.mid_channels, 1, 1, False, act(b.activation))
        x = conv(f"{p}.depthwise", x, b.mid_channels, b.kernel, b.stride, True, act(b.activation))
        if b.se_channels:
            s = mean(f"{p}.se.pool", x)
            s = conv(f"{p}.se.reduce", s, b.se_channels, 1, 1, False, "relu", bias=True)
            s = conv(f"{p}.se.expand", s, b.mid_channels, 1, 1, False, "sigmoid", bias=True)
            x = elementwise(f"{p}.se.scale", "mul", x, s)
        x = conv(f"{p}.project", x, b.out_channels, 1, 1, False, None)
        if b.residual:
            x = elementwise(f"{p}.add", "add", x, block_in)
    if spec.head.width:
        x = conv("head", x, spec.head.width, 1, 1, False, act(spec.head.activation))
    x = mean("pool", x)
    cin, cout = shapes[x][2], spec.num_classes
    y = new_tensor((1, 1, cout))
    ops.append(
        Op(
            "classifier",
            "fully_connected",
            (x,),
            y,
            shapes[x],
            (1, 1, cout),
            macs=cin * cout,
            params=cin * cout + cout,
            flash=cin * cout + PER_CHANNEL_BYTES * cout,
        )
    )
    return OpGraph(ops, shapes)
