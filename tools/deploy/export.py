"""Trained spec -> Keras twin -> full-int8 TFLite, and TensorFlow Lite Micro as the reference.

The Keras twin is derived from the same spec as the torch model: batch norm is folded into each
convolution's weights and bias, "SAME" padding matches `SameConv2d`, and layers are named after
the operator graph (`opgraph.lower`) so a reader can follow one op from spec to C.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
from typing import Any

import numpy as np
import torch
from torch import nn

from tinyarch.core.spec import LEAKY_RELU_SLOPE, Activation, ArchSpec
from tinyarch.tools.builder import ConvBNAct, MobileBlock, SqueezeExcite, TinyNet
from tinyarch.tools.deploy import DeployError


class ExportError(DeployError):
    """The model directory or the conversion cannot give an int8 model."""


def _folded(block: ConvBNAct) -> tuple[np.ndarray, np.ndarray]:
    """Conv weights and bias with the batch norm folded in (torch layout)."""
    conv, bn = block[0], block[1]
    assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
    assert bn.running_mean is not None and bn.running_var is not None  # ConvBNAct tracks them
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    weight = conv.weight.detach() * scale.view(-1, 1, 1, 1)
    bias = bn.bias.detach() - bn.running_mean * scale
    return weight.numpy(), bias.numpy()


def keras_twin(spec: ArchSpec, model: TinyNet) -> Any:
    """The float Keras model computing what `model` computes (eval mode), NHWC."""
    import keras

    layers = keras.layers

    def activation(x: Any, kind: Activation | None, name: str) -> Any:
        if kind is Activation.relu6:
            return layers.ReLU(6.0, name=f"{name}.relu6")(x)
        if kind is Activation.leaky_relu:
            return layers.LeakyReLU(negative_slope=LEAKY_RELU_SLOPE, name=f"{name}.leaky_relu")(x)
        if kind is Activation.swish:
            return layers.Activation("swish", name=f"{name}.swish")(x)
        return x

    def conv(x: Any, block: ConvBNAct, name: str, act: Activation | None) -> Any:
        weight, bias = _folded(block)
        torch_conv = block[0]
        assert isinstance(torch_conv, nn.Conv2d)
        k, stride = torch_conv.kernel_size[0], torch_conv.stride[0]
        if torch_conv.groups > 1:
            layer = layers.DepthwiseConv2D(k, stride, padding="same", name=name)
            layer.build(x.shape)
            layer.set_weights([weight.transpose(2, 3, 0, 1), bias])
        else:
            layer = layers.Conv2D(weight.shape[0], k, stride, padding="same", name=name)
            layer.build(x.shape)
            layer.set_weights([weight.transpose(2, 3, 1, 0), bias])
        return activation(layer(x), act, name)

    def squeeze_excite(x: Any, se: SqueezeExcite, name: str) -> Any:
        s = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}.pool")(x)
        for part, act in (("reduce", "relu"), ("expand", "sigmoid")):
            torch_conv = getattr(se, part)
            layer = layers.Conv2D(torch_conv.out_channels, 1, activation=act, name=f"{name}.{part}")
            layer.build(s.shape)
            layer.set_weights(
                [torch_conv.weight.detach().numpy().transpose(2, 3, 1, 0), torch_conv.bias.detach().numpy()]
            )
            s = layer(s)
        return layers.Multiply(name=f"{name}.scale")([x, s])

    inputs = keras.Input((spec.resolution, spec.resolution, spec.in_channels), batch_size=1, name="image")
    x = conv(inputs, model.stem, "stem", spec.stem.activation)
    for b, block in zip(spec.blocks(), (m for m in model.stages.modules() if isinstance(m, MobileBlock)), strict=True):
        p = f"s{b.stage}b{b.index}"
        block_in = x
        if isinstance(block.expand, ConvBNAct):
            x = conv(x, block.expand, f"{p}.expand", b.activation)
        x = conv(x, block.depthwise, f"{p}.depthwise", b.activation)
        if isinstance(block.se, SqueezeExcite):
            x = squeeze_excite(x, block.se, f"{p}.se")
        x = conv(x, block.project, f"{p}.project", None)
        if block.residual:
            x = layers.Add(name=f"{p}.add")([x, block_in])
    if isinstance(model.head, ConvBNAct):
        x = conv(x, model.head, "head", spec.head.activation)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    classifier: nn.Linear = model.classifier
    dense = layers.Dense(classifier.out_features, name="classifier")
    dense.build(x.shape)
    dense.set_weights([classifier.weight.detach().numpy().T, classifier.bias.detach().numpy()])
    return keras.Model(inputs, dense(x), name=f"tinyarch_{spec.id}")


def convert_int8(keras_model: Any, representative: np.ndarray) -> bytes:
    """Full-integer TFLite (int8 weights, activations, input and output), calibrated on `representative` (NHWC)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([sample[None].astype(np.float32)] for sample in representative)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    with _quiet_fd2(), contextlib.redirect_stdout(io.StringIO()):
        return bytes(converter.convert())


@contextlib.contextmanager
def _quiet_fd2() -> Any:
    """Silence C++ logging on fd 2 (the converter and TFLM print through it, not through Python)."""
    saved = os.dup(2)
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class Tflm:
    """TensorFlow Lite Micro's interpreter on one int8 model: the bit-exact reference for our C.

    `arena` is TFLM's whole arena for the model and `activations` its planned activation part (the
    "head"), read from `print_allocations()`: the Python runtime has no getter, and probing arena
    sizes is unsafe because some allocation failures crash TFLM instead of returning an error."""

    def __init__(self, model: bytes, arena: int = 16 << 20):
        from tflite_micro.python.tflite_micro import runtime

        try:
            with _quiet_fd2():
                self.interpreter = runtime.Interpreter.from_bytes(model, arena_size=arena)
        except RuntimeError as e:
            raise ExportError(f"TFLM cannot load the model: {e}") from None
        report = self._allocations()
        total = re.search(r"Arena allocation total (\d+)", report)
        head = re.search(r"Arena allocation head (\d+)", report)
        if total is None or head is None:
            raise ExportError(f"TFLM printed no arena allocation totals:\n{report}")
        self.arena = int(total[1])
        self.activations = int(head[1])

    def _allocations(self) -> str:
        with tempfile.TemporaryFile() as captured:
            saved = os.dup(2)
            os.dup2(captured.fileno(), 2)
            try:
                self.interpreter.print_allocations()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            captured.seek(0)
            return captured.read().decode(errors="replace")

    def run(self, images: np.ndarray) -> np.ndarray:
        """int8 NHWC images (N, H, W, C) -> int8 outputs (N, classes)."""
        outputs = []
        for image in images:
            self.interpreter.set_input(image[None], 0)
            self.interpreter.invoke()
            outputs.append(self.interpreter.get_output(0).reshape(-1).copy())
        return np.stack(outputs)


def nhwc_inputs(images: torch.Tensor, spec: ArchSpec, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """uint8 NCHW images -> the float NHWC inputs the Keras twin and the converter see."""
    from tinyarch.tools.data import to_model_input

    return to_model_input(images, mean, std, spec.resolution, spec.in_channels).permute(0, 2, 3, 1).numpy()


def quantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Float -> int8 with TFLite's input quantisation (round half away from zero, then clamp)."""
    q = np.sign(x / scale) * np.floor(np.abs(x / scale) + 0.5) + zero_point
    return np.clip(q, -128, 127).astype(np.int8)
