"""`tinyarch deploy`: a trained model directory -> a firmware project, built, run and checked.

Steps: Keras twin and int8 TFLite (calibrated on training images), TFLM reference outputs and
arena, generated C, the board's build, a run on the host or the emulated Cortex-M7, a byte-for-
byte comparison with TFLM on K validation images, and float against int8 accuracy on the
validation split. The report is `deploy.json` in the project directory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from pydantic import BaseModel
from torch import nn

from tinyarch.core.config import BOARDS
from tinyarch.core.spec import ArchSpec
from tinyarch.tools.deploy import DeployError, emulator
from tinyarch.tools.deploy.codegen import GeneratedModel, generate
from tinyarch.tools.deploy.export import Tflm, convert_int8, keras_twin, nhwc_inputs, quantize

if TYPE_CHECKING:
    from tinyarch.tools.builder import TinyNet


class DeployReport(BaseModel):
    spec_id: str
    board: str
    kernels: str
    project: str
    macs: int
    arena: int
    profiler_peak_sram: int
    tflm_arena: int
    tflm_activations: int
    flash_text: int | None = None
    ram_data_bss: int | None = None
    weight_bytes: int
    profiler_flash: int
    instructions_per_inference: int | None = None
    estimated_latency_ms: float | None = None
    bit_exact_images: int
    bit_exact_matches: int | None = None
    float_val_acc: float
    int8_val_acc: float
    val_images: int


def write_project(out: Path, board: str, kernels: str) -> None:
    """Copy the kernels, main and every board's support next to the generated model, with a Makefile
    defaulting to `board` (`make BOARD=...` builds the same project for another)."""
    emulator.copy_firmware(out, "kernels", "common", "boards", "project.mk")
    (out / "Makefile").write_text(f"BOARD ?= {board}\nKERNELS ?= {kernels}\ninclude project.mk\n")


def write_test_data(out: Path, images: np.ndarray) -> None:
    """K int8 images embedded in flash for main.c to run through ta_invoke."""
    flat = images.reshape(len(images), -1)
    rows = ",\n".join("  {" + ", ".join(str(int(v)) for v in row) + "}" for row in flat)
    (out / "test_data.h").write_text(
        '#ifndef TA_TEST_DATA_H\n#define TA_TEST_DATA_H\n#include <stdint.h>\n#include "model.h"\n'
        f"#define TA_TEST_COUNT {len(images)}\n"
        "extern const int8_t ta_test_inputs[TA_TEST_COUNT][TA_INPUT_SIZE];\n#endif\n"
    )
    (out / "test_data.c").write_text(
        f'#include "test_data.h"\nconst int8_t ta_test_inputs[TA_TEST_COUNT][TA_INPUT_SIZE] = {{\n{rows}\n}};\n'
    )


@dataclass(slots=True)
class Project:
    """A generated firmware project and its TFLM reference."""

    dir: Path
    model: GeneratedModel
    tflm: Tflm
    test_inputs: np.ndarray
    expected: np.ndarray


def make_project(
    spec: ArchSpec, model: TinyNet, calibration: np.ndarray, checks: np.ndarray, out: Path, board: str, kernels: str
) -> Project:
    """Int8 TFLite calibrated on `calibration` (float NHWC), generated C, K check images and TFLM's outputs for them."""
    tflite = convert_int8(keras_twin(spec, model), calibration)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.tflite").write_bytes(tflite)
    (out / "spec.json").write_text(spec.model_dump_json(indent=2))  # MACs for `tinyarch read-uart`
    tflm = Tflm(tflite)
    generated = generate(spec, tflite, out)
    test_inputs = quantize(checks, generated.input_scale, generated.input_zero_point)
    write_test_data(out, test_inputs)
    write_project(out, board, kernels)
    expected = tflm.run(test_inputs)
    # What a correct board prints (main.c's `out` lines), to diff against a real board's UART.
    lines = [f"out {i} {row.tobytes().hex()}" for i, row in enumerate(expected)]
    (out / "expected.txt").write_text("\n".join([*lines, f"done {len(expected)}"]) + "\n")
    return Project(out, generated, tflm, test_inputs, expected)


def random_model(spec: ArchSpec, seed: int = 0) -> TinyNet:
    """`spec`'s network with random weights and batch-norm statistics: firmware checks that need no
    training (bit-exactness, instruction counts) still exercise every folded scale and bias."""
    from tinyarch.tools.builder import build_model

    torch.manual_seed(seed)
    model = build_model(spec)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.running_mean is not None and m.running_var is not None  # tracked by default
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.2)
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
        elif isinstance(m, nn.Conv2d | nn.Linear) and m.bias is not None:
            m.bias.data.normal_(0, 0.2)
    return model.eval()


def random_project(spec: ArchSpec, out: Path, board: str, kernels: str, checks: int = 3, seed: int = 0) -> Project:
    """A project for a randomly initialised `spec`, calibrated and checked on random normal inputs."""
    rng = np.random.default_rng(seed)
    shape = (spec.resolution, spec.resolution, spec.in_channels)
    calibration = rng.normal(size=(24, *shape)).astype(np.float32)
    inputs = rng.normal(size=(checks, *shape)).astype(np.float32)
    return make_project(spec, random_model(spec, seed), calibration, inputs, out, board, kernels)


def run_project(project: Project, board: str, kernels: str) -> tuple[int, int | None]:
    """Build and run on `board`: (images whose output equals TFLM's byte for byte, instructions per inference)."""
    binary = emulator.build_project(project.dir, board, kernels)
    result = emulator.run_binary(binary, board)
    got = emulator.parse_outputs(result.stdout)
    matches = sum(i < len(got) and got[i] == row.tobytes() for i, row in enumerate(project.expected))
    return matches, result.instructions_per_inference


def deploy(
    model_dir: Path,
    board: str,
    out: Path,
    kernels: str = "optimized",
    images: int = 8,
    val_images: int | None = None,
    data_dir: Path | None = None,
    progress: Callable[[str], None] = lambda step: None,
) -> DeployReport:
    """The whole deployment of a trained model directory; the report also lands in `out`/deploy.json."""
    from tinyarch.tools.data import load_data
    from tinyarch.tools.profile import CLOCK_HZ, profile

    if board not in BOARDS:
        raise DeployError(f"unknown board {board!r}; choose from {', '.join(BOARDS)}")
    from tinyarch.tools.train import ModelDirError, load_trained

    progress("loading the trained model")
    try:
        trained = load_trained(model_dir)
    except ModelDirError as e:
        raise DeployError(str(e)) from None
    spec = trained.spec
    data = load_data(trained.dataset, data_dir, seed=0)
    info = data.info
    n_val = min(val_images or len(data.val), len(data.val))
    val_x = nhwc_inputs(data.val.images[:n_val], spec, info.mean, info.std)
    progress("converting to int8 TFLite and generating C")
    calibration = nhwc_inputs(data.train.images[:200], spec, info.mean, info.std)
    project = make_project(spec, trained.model, calibration, val_x[:images], out, board, kernels)
    progress(f"int8 accuracy in TFLM on {n_val} validation images")
    val_q = quantize(val_x, project.model.input_scale, project.model.input_zero_point)
    labels = data.val.labels[:n_val].numpy()
    with torch.no_grad():
        float_logits = trained.model(torch.from_numpy(val_x).permute(0, 3, 1, 2)).numpy()
    prof = profile(spec)
    report = DeployReport(
        spec_id=spec.id,
        board=board,
        kernels=kernels,
        project=str(out),
        macs=prof.macs,
        arena=project.model.arena,
        profiler_peak_sram=prof.peak_sram,
        tflm_arena=project.tflm.arena,
        tflm_activations=project.tflm.activations,
        weight_bytes=project.model.weight_bytes,
        profiler_flash=prof.flash,
        bit_exact_images=images,
        float_val_acc=100.0 * float((float_logits.argmax(1) == labels).mean()),
        int8_val_acc=100.0 * float((project.tflm.run(val_q).argmax(1) == labels).mean()),
        val_images=n_val,
    )
    progress(f"building and running on {board}")
    if board != "stm32h743":
        report.bit_exact_matches, report.instructions_per_inference = run_project(project, board, kernels)
        if report.instructions_per_inference:
            report.estimated_latency_ms = 1e3 * report.instructions_per_inference / CLOCK_HZ
    binary = emulator.build_project(out, board, kernels)
    if board != "host":
        report.flash_text, data_size, bss = emulator.firmware_size(binary)
        report.ram_data_bss = data_size + bss
    (out / "deploy.json").write_text(report.model_dump_json(indent=2))
    return report
