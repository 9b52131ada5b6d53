"""The declarative architecture spec: the single source of truth for every derived artefact.

The torch model (`tinyarch.tools.builder`), the int8 operator graph and profiler (`tinyarch.tools`),
and later the TFLite export and the C code are all derived from an `ArchSpec`. LLM output is
parsed into this model and validated against a search space; it is never executed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator


class BlockType(StrEnum):
    """MBConv is the inverted residual (1x1 expand, depthwise, 1x1 project);
    dsconv is depthwise-separable (depthwise, 1x1 project), i.e. MBConv without the expansion."""

    mbconv = "mbconv"
    dsconv = "dsconv"


class Activation(StrEnum):
    relu6 = "relu6"
    leaky_relu = "leaky_relu"
    swish = "swish"


LEAKY_RELU_SLOPE = 0.1
"""Negative slope of `leaky_relu`; 0.1 keeps the int8 lookup table well conditioned."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Stem(_Frozen):
    """A plain convolution applied to the input image."""

    width: int = Field(ge=1)
    kernel: int = Field(default=3, ge=1)
    stride: int = Field(default=2, ge=1)
    activation: Activation = Activation.relu6


class Stage(_Frozen):
    """`depth` identical blocks; only the first one has `stride` and changes the width.

    `expansion` only applies to MBConv and is canonicalised to 1 for dsconv. `se_ratio` 0 means
    no squeeze-and-excitation. `skip` asks for residuals, which only blocks whose input and output
    shapes match (stride 1, same width) can have.
    """

    block: BlockType
    width: int = Field(ge=1)
    depth: int = Field(ge=1)
    stride: int = Field(ge=1)
    kernel: int = Field(ge=1)
    expansion: int = Field(default=1, ge=1)
    se_ratio: float = Field(default=0.0, ge=0.0, lt=1.0)
    activation: Activation = Activation.relu6
    skip: bool = True


class Head(_Frozen):
    """An optional 1x1 conv to `width` channels (0: none), then global average pool and a linear layer."""

    width: int = Field(default=0, ge=0)
    activation: Activation = Activation.relu6


@dataclass(frozen=True, slots=True)
class Block:
    """One resolved block: the geometry every derived artefact agrees on."""

    stage: int
    index: int
    kind: BlockType
    in_channels: int
    out_channels: int
    mid_channels: int
    se_channels: int
    kernel: int
    stride: int
    activation: Activation
    residual: bool


class SpecBase(_Frozen):
    """What every candidate of every space has: a label, a canonical form and a content id.

    `name` is a label only; it is not part of the canonical form or the id.
    """

    name: str | None = None

    def canonical_json(self) -> str:
        """Sorted, compact JSON of the architecture alone; the basis of the id."""
        data = self.model_dump(mode="json", exclude={"name"})
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @property
    def id(self) -> str:
        """Stable content hash: equal architectures get equal ids whatever their name or key order."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:12]

    def summary(self) -> str:
        raise NotImplementedError


class ArchSpec(SpecBase):
    """A hierarchical network: input, stem, stages of blocks, head."""

    resolution: int = Field(ge=1)
    in_channels: int = Field(default=3, ge=1)
    num_classes: int = Field(ge=2)
    stem: Stem
    stages: tuple[Stage, ...] = Field(min_length=1)
    head: Head = Head()

    @model_validator(mode="after")
    def _canonicalise(self) -> ArchSpec:
        """Make equal networks equal specs, so the id deduplicates: drop fields a stage ignores."""
        stages, in_ch = [], self.stem.width
        for st in self.stages:
            updates: dict[str, object] = {}
            if st.block is BlockType.dsconv and st.expansion != 1:
                updates["expansion"] = 1
            can_skip = st.depth > 1 or (st.stride == 1 and in_ch == st.width)
            if st.skip and not can_skip:
                updates["skip"] = False
            stages.append(st.model_copy(update=updates) if updates else st)
            in_ch = st.width
        if any(a is not b for a, b in zip(stages, self.stages, strict=True)):
            object.__setattr__(self, "stages", tuple(stages))
        return self

    def blocks(self) -> list[Block]:
        """Resolve stages into blocks: channel counts, strides and where residuals are allowed."""
        out, in_ch = [], self.stem.width
        for s, st in enumerate(self.stages):
            for i in range(st.depth):
                stride = st.stride if i == 0 else 1
                mid = in_ch * st.expansion if st.block is BlockType.mbconv else in_ch
                se = max(1, int(mid * st.se_ratio)) if st.se_ratio > 0 else 0
                residual = st.skip and stride == 1 and in_ch == st.width
                out.append(Block(s, i, st.block, in_ch, st.width, mid, se, st.kernel, stride, st.activation, residual))
                in_ch = st.width
        return out

    def summary(self) -> str:
        """One human line, e.g. `160px/3ch stem16s2 | MBe3k3 16x2s2 | DSk5 32x1s2 se.25 res | head0 | 100cls`."""
        parts = [f"{self.resolution}px/{self.in_channels}ch stem{self.stem.width}s{self.stem.stride}"]
        for st in self.stages:
            kind = f"MBe{st.expansion}" if st.block is BlockType.mbconv else "DS"
            text = f"{kind}k{st.kernel} {st.width}x{st.depth}s{st.stride} {st.activation.value}"
            if st.se_ratio:
                text += f" se{st.se_ratio:g}"
            if st.skip:
                text += " res"
            parts.append(text)
        parts.append(f"head{self.head.width}")
        parts.append(f"{self.num_classes}cls")
        return " | ".join(parts)
