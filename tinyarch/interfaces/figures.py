"""The one renderer of a deployment's figures: `tinyarch deploy`, the end of `tinyarch search`, the HTML
report and the web app all show these rows, with these labels."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tinyarch.core.budget import format_bytes as _b
from tinyarch.core.budget import format_count

_FIGURES: tuple[tuple[str, tuple[str, ...], Callable[..., str]], ...] = (
    ("board / kernels", ("board", "kernels"), lambda board, kernels: f"{board} / {kernels}"),
    ("MACs", ("macs",), format_count),
    ("arena (= profiler peak SRAM)", ("arena", "profiler_peak_sram"), lambda a, p: f"{_b(a)} (profiler {_b(p)})"),
    (
        "TFLM arena, same model: activations / all",
        ("tflm_activations", "tflm_arena"),
        lambda a, t: f"{_b(a)} / {_b(t)}",
    ),
    (
        "weights and tables (= profiler flash)",
        ("weight_bytes", "profiler_flash"),
        lambda w, p: f"{_b(w)} (profiler {_b(p)})",
    ),
    ("flash (text + data, arm-none-eabi-size)", ("flash_text",), _b),
    ("RAM (data + bss)", ("ram_data_bss",), _b),
    ("instructions per inference (QEMU)", ("instructions_per_inference",), lambda n: f"{n:,}"),
    ("estimated latency at 480 MHz, 1 instr/cycle", ("estimated_latency_ms",), lambda ms: f"{ms:.1f} ms"),
    ("bit-exact vs TFLM", ("bit_exact_matches", "bit_exact_images"), lambda m, n: f"{m}/{n} images"),
    (
        "val top-1 float / int8 (TFLM)",
        ("float_val_acc", "int8_val_acc", "val_images"),
        lambda f, i, n: f"{f:.2f} / {i:.2f} % on {n}",
    ),
)
"""Label, the DeployReport fields it reads, and how it writes them."""


def firmware_figures(fw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A deployment's figures as (label, value) rows, from a DeployReport's fields (deploy.json, or a finalized
    candidate's `firmware`); a figure the board does not give (no QEMU count on hardware, no bit-exact check
    before a UART read) is left out."""
    return [
        (label, write(*(fw[k] for k in keys)))
        for label, keys, write in _FIGURES
        if all(fw.get(k) is not None for k in keys)
    ]
