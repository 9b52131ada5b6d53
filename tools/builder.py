"""`build_model(spec)`: the torch network of a spec (one declarative spec, one builder, as in timm).

Convolutions pad like TFLite's "SAME" (extra row and column at the bottom and right at stride 2),
so trained weights transfer to the int8 deployment without shifting the sampling grid.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tinyarch.core.spec import LEAKY_RELU_SLOPE, Activation, ArchSpec, Block, BlockType


def make_activation(kind: Activation) -> nn.Module:
    if kind is Activation.relu6:
        return nn.ReLU6(inplace=True)
    if kind is Activation.leaky_relu:
        return nn.LeakyReLU(LEAKY_RELU_SLOPE, inplace=True)
    return nn.SiLU(inplace=True)


class SameConv2d(nn.Conv2d):
    """Conv2d with TFLite "SAME" padding, computed from the input size at run time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class ConvBNAct(nn.Sequential):
    """Convolution without bias, batch norm, optional activation: one fused int8 conv after export."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: Activation | None = None
    ):
        layers: list[nn.Module] = [
            SameConv2d(cin, cout, kernel, stride, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act is not None:
            layers.append(make_activation(act))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Global average pool, 1x1 reduce with ReLU, 1x1 expand with sigmoid, channel-wise scale."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = torch.sigmoid(self.expand(F.relu(self.reduce(s))))
        return x * s


class MobileBlock(nn.Module):
    """MBConv (expand, depthwise, [SE], project) or depthwise-separable (no expand); linear projection."""

    def __init__(self, b: Block):
        super().__init__()
        self.residual = b.residual
        self.expand = (
            ConvBNAct(b.in_channels, b.mid_channels, 1, act=b.activation)
            if b.kind is BlockType.mbconv
            else nn.Identity()
        )
        self.depthwise = ConvBNAct(b.mid_channels, b.mid_channels, b.kernel, b.stride, b.mid_channels, b.activation)
        self.se = SqueezeExcite(b.mid_channels, b.se_channels) if b.se_channels else nn.Identity()
        self.project = ConvBNAct(b.mid_channels, b.out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.residual else y


class TinyNet(nn.Module):
    """stem -> stages (nn.Sequential of blocks each) -> [head conv] -> global pool -> dropout -> linear."""

    def __init__(self, spec: ArchSpec, dropout: float = 0.0):
        super().__init__()
        self.spec = spec
        self.stem = ConvBNAct(
            spec.in_channels, spec.stem.width, spec.stem.kernel, spec.stem.stride, act=spec.stem.activation
        )
        blocks = spec.blocks()
        self.stages = nn.Sequential(
            *(nn.Sequential(*(MobileBlock(b) for b in blocks if b.stage == s)) for s in range(len(spec.stages)))
        )
        last = spec.stages[-1].width
        if spec.head.width:
            self.head: nn.Module = ConvBNAct(last, spec.head.width, 1, act=spec.head.activation)
            last = spec.head.width
        else:
            self.head = nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(last, spec.num_classes)
        _init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x).mean((2, 3))
        return self.classifier(self.dropout(x))


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    for block in model.modules():
        if isinstance(block, MobileBlock) and block.residual:
            bn = block.project[1]
            assert isinstance(bn, nn.BatchNorm2d)
            nn.init.zeros_(bn.weight)  # residual blocks start as identity


def build_model(spec: ArchSpec, dropout: float = 0.0) -> TinyNet:
    """The torch network of `spec`; `dropout` before the classifier is a training choice, not architecture."""
    return TinyNet(spec, dropout)
