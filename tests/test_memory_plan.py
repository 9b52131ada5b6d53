"""The peak-SRAM rules on hand-worked examples, and the plan's soundness on random specs.

Each example is an 8x8 image with 3 channels, a stride-1 stem of 8 channels (512-byte tensors),
one depthwise-separable block, global pooling and 2 classes.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from tinyarch.core.spaces import load_space
from tinyarch.core.spec import ArchSpec
from tinyarch.tools.memory_plan import plan_memory
from tinyarch.tools.opgraph import lower


def _tiny(skip: bool = False, se_ratio: float = 0.0) -> ArchSpec:
    return ArchSpec.model_validate(
        {
            "resolution": 8,
            "in_channels": 3,
            "num_classes": 2,
            "stem": {"width": 8, "kernel": 3, "stride": 1},
            "stages": [
                {
                    "block": "dsconv",
                    "width": 8,
                    "depth": 1,
                    "stride": 1,
                    "kernel": 3,
                    "se_ratio": se_ratio,
                    "skip": skip,
                }
            ],
        }
    )


def test_plain_chain() -> None:
    """stem: image 192 + out 512 + its two-pixel int16 im2col 4 * 28 = 816; depthwise in place:
    512 + its ring of 3 int16 rows of 14 = 596; project: 512 + 512 = 1024 (peak); pool: 512 + 8;
    classifier: 8 + 2."""
    graph = lower(_tiny())
    assert [op.kind for op in graph.ops] == ["conv", "depthwise", "pointwise", "mean", "fully_connected"]
    plan = plan_memory(graph)
    assert plan.inplace_ops == {1}
    assert plan.live_bytes == [816, 596, 1024, 520, 10]
    assert plan.arena == plan.peak_live == 1024


def test_residual_block() -> None:
    """The block input is read again by the add, so the depthwise cannot overwrite it:
    stem 816; depthwise 512 + 512 + 84; project 3 x 512 = 1536 (peak); the add writes over the
    projection (512 + 512); pool 520; classifier 10."""
    graph = lower(_tiny(skip=True))
    assert [op.kind for op in graph.ops] == ["conv", "depthwise", "pointwise", "add", "mean", "fully_connected"]
    plan = plan_memory(graph)
    assert plan.inplace_ops == {3}
    assert plan.live_bytes == [816, 1108, 1536, 1024, 520, 10]
    assert plan.arena == plan.peak_live == 1536


def test_se_block() -> None:
    """SE (8 -> 2 -> 8 channels) only adds vectors while the depthwise output stays live:
    depthwise in place 596; pool 512 + 8; reduce 512 + 8 + 2; expand 512 + 2 + 8; scale in place
    512 + 8; project 1024 (peak)."""
    graph = lower(_tiny(se_ratio=0.25))
    kinds = [op.kind for op in graph.ops]
    assert kinds == [
        "conv",
        "depthwise",
        "mean",
        "pointwise",
        "pointwise",
        "mul",
        "pointwise",
        "mean",
        "fully_connected",
    ]
    plan = plan_memory(graph)
    assert plan.inplace_ops == {1, 5}
    assert plan.live_bytes == [816, 596, 520, 522, 522, 520, 1024, 520, 10]
    assert plan.arena == plan.peak_live == 1024


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_live_buffers_never_overlap(seed: int) -> None:
    spec = load_space("mcu").sample(random.Random(seed), 100)
    plan = plan_memory(lower(spec))
    n = len(plan.buffer_sizes)
    spans = [
        (plan.buffer_first[b], plan.buffer_last[b], plan.buffer_offsets[b], plan.buffer_sizes[b]) for b in range(n)
    ]
    for i in range(n):
        f1, l1, o1, s1 = spans[i]
        assert o1 >= 0 and o1 + s1 <= plan.arena and o1 % 4 == 0
        for f2, l2, o2, s2 in spans[i + 1 :]:
            if f1 <= l2 and f2 <= l1:
                assert o1 + s1 <= o2 or o2 + s2 <= o1
    assert plan.arena >= plan.peak_live
