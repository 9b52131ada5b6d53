"""Deployment: the generated C equals TensorFlow Lite Micro byte for byte, on the host and on QEMU's
Cortex-M7, and the firmware arena is the profiler's peak SRAM.

`make test` checks a fast subset that still covers every block type, SE, activation and skip;
TINYARCH_FIRMWARE_SPECS=20 adds that many random `mcu` specs (all at 32 px to keep C small).
"""

from __future__ import annotations

import os
import random
import shutil

import pytest

from tinyarch.core.spaces import SearchSpace
from tinyarch.core.spec import ArchSpec
from tinyarch.tools.data import FASHION_MNIST_DIR, load_data
from tinyarch.tools.deploy.deploy import deploy, random_project, run_project
from tinyarch.tools.deploy.tflite_graph import read_tflite
from tinyarch.tools.profile import profile
from tinyarch.tools.train import RECIPES, train

pytestmark = pytest.mark.slow

QEMU = shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")
RANDOM_SPECS = int(os.environ.get("TINYARCH_FIRMWARE_SPECS", "0"))


def stage(block: str, width: int, depth: int, stride: int, kernel: int, se: float, act: str, skip: bool) -> dict:
    return {
        "block": block,
        "width": width,
        "depth": depth,
        "stride": stride,
        "kernel": kernel,
        "expansion": 3,
        "se_ratio": se,
        "activation": act,
        "skip": skip,
    }


# Together: mbconv and dsconv, kernels 3/5/7, strides 1/2 on odd and even sizes, SE 0.25/0.5, every
# activation, residuals, a head or none, and SE and a residual over a 1x1 map (where TFLite drops
# the pooling and reshapes the residual's input).
COVERAGE = [
    {
        "resolution": 32,
        "in_channels": 1,
        "num_classes": 10,
        "stem": {"width": 8, "kernel": 3, "stride": 2, "activation": "swish"},
        "stages": [
            stage("dsconv", 16, 2, 1, 3, 0.25, "leaky_relu", True),
            stage("mbconv", 16, 2, 2, 5, 0.5, "swish", True),
            stage("mbconv", 24, 1, 2, 7, 0.0, "relu6", False),
            stage("dsconv", 24, 2, 2, 3, 0.5, "relu6", True),
            stage("mbconv", 32, 2, 2, 3, 0.25, "leaky_relu", True),
        ],
        "head": {"width": 256, "activation": "leaky_relu"},
    },
    {
        "resolution": 48,
        "in_channels": 3,
        "num_classes": 7,
        "stem": {"width": 16, "kernel": 3, "stride": 1, "activation": "relu6"},
        "stages": [
            stage("mbconv", 16, 1, 2, 3, 0.0, "relu6", True),
            stage("mbconv", 24, 2, 2, 7, 0.0, "swish", True),
            stage("dsconv", 32, 1, 2, 5, 0.25, "swish", False),
            stage("mbconv", 32, 2, 1, 5, 0.0, "leaky_relu", True),
            stage("dsconv", 48, 1, 2, 7, 0.0, "relu6", False),
        ],
        "head": {"width": 0, "activation": "relu6"},
    },
]


def specs(mcu: SearchSpace) -> list[ArchSpec]:
    chosen = [mcu.parse(s) for s in COVERAGE]
    rng = random.Random(0)
    while len(chosen) < len(COVERAGE) + RANDOM_SPECS:
        chosen.append(mcu.sample(rng, rng.choice([10, 100]), resolution=32))
    return chosen


def project_for(spec: ArchSpec, tmp_path, board: str, kernels: str):
    return random_project(spec, tmp_path / spec.id, board, kernels)


@pytest.fixture(scope="module")
def mcu_specs(mcu: SearchSpace) -> list[ArchSpec]:
    return specs(mcu)


def test_coverage_specs_cover_the_space(mcu: SearchSpace) -> None:
    blocks = [b for s in specs(mcu)[: len(COVERAGE)] for b in s.blocks()]
    assert {b.kind.value for b in blocks} == {"mbconv", "dsconv"}
    assert {b.activation.value for b in blocks} == {"relu6", "leaky_relu", "swish"}
    assert {b.kernel for b in blocks} == {3, 5, 7}
    assert any(b.se_channels for b in blocks) and any(b.residual for b in blocks)


@pytest.mark.parametrize("index", range(len(COVERAGE) + RANDOM_SPECS))
def test_host_firmware_is_bit_exact_with_tflm(index: int, mcu_specs: list[ArchSpec], tmp_path) -> None:
    spec = mcu_specs[index]
    project = project_for(spec, tmp_path, "host", "reference")
    assert project.model.arena == profile(spec).peak_sram  # the arena is the profiler's figure
    assert project.model.weight_bytes == profile(spec).flash  # and so are the constant bytes
    # TFLM's arena holds its activations and its kernels' state; ours the activations (several ops
    # in place) and our kernels' scratch, a few hundred bytes, so it may pass TFLM's activations alone
    assert project.model.arena <= project.tflm.arena and project.tflm.activations <= project.tflm.arena
    for kernels in ("reference", "optimized"):
        matches, _ = run_project(project, "host", kernels)
        assert matches == len(project.expected), f"{kernels} kernels differ from TFLM on {spec.summary()}"


@pytest.mark.skipif(not QEMU, reason="needs arm-none-eabi-gcc and qemu-system-arm (Debian packages)")
@pytest.mark.parametrize("index", [0, *range(len(COVERAGE), len(COVERAGE) + RANDOM_SPECS)])
def test_cortex_m7_firmware_is_bit_exact_and_optimised_kernels_run_fewer_instructions(
    index: int, mcu_specs: list[ArchSpec], tmp_path
) -> None:
    project = project_for(mcu_specs[index], tmp_path, "mps2-an500", "reference")
    counts = {}
    for kernels in ("reference", "optimized"):
        matches, counts[kernels] = run_project(project, "mps2-an500", kernels)
        assert matches == len(project.expected)
    assert counts["optimized"] * 2 <= counts["reference"], counts


def test_every_activation_table_is_tflms(mcu_specs: list[ArchSpec], tmp_path) -> None:
    """The tables come from TFLM; the generated file holds one per LEAKY_RELU / LOGISTIC chain."""
    project = project_for(mcu_specs[0], tmp_path, "host", "reference")
    tfl = read_tflite((project.dir / "model.tflite").read_bytes())
    assert tfl.aliases  # the 1x1 residual's reshape, which binding sees through
    unary = sum(op.opcode in ("LEAKY_RELU", "LOGISTIC") for op in tfl.ops)
    assert (project.dir / "model.c").read_text().count("_lut[256]") == unary


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_int8_firmware_loses_at_most_a_point_on_real_fashion_mnist(small_spec: ArchSpec, tmp_path) -> None:
    """Train briefly on real data, then `tinyarch deploy` (host board): float vs int8 on 2,000 validation images."""
    data = load_data("fashion-mnist").with_train_subset(6000)
    model_dir = tmp_path / "model"
    train(small_spec, data, RECIPES["proxy"].model_copy(update={"epochs": 2}), model_dir, progress=False)
    report = deploy(model_dir, "host", tmp_path / "firmware", images=4, val_images=2000)
    assert report.float_val_acc > 70, "the model should have learned something for the comparison to mean anything"
    assert report.float_val_acc - report.int8_val_acc <= 1.0
    assert report.bit_exact_matches == 4 and report.arena == profile(small_spec).peak_sram
