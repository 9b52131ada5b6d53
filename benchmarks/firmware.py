"""Firmware on QEMU's Cortex-M7 (mps2-an500): instructions, flash and SRAM per model, and the
calibration of the profiler's latency model.

Run: .venv/bin/python benchmarks/firmware.py [--random 24] [--calibrate]

Every model gets random weights (instruction counts do not depend on trained values), is
converted to int8, generated as C, built with the reference and the optimised kernels, run in
QEMU and checked byte for byte against TFLM. Latency is instructions / 480 MHz, i.e. one
instruction per cycle: the Cortex-M7 can dual-issue, flash wait states cost extra, so treat it as
an estimate. `--calibrate` fits the latency model to per-operator counts of two thirds of the
random specs and reports its error on the other third; it writes tools/latency_m7.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tinyarch.budget import format_bytes, format_count
from tinyarch.space import load_space
from tinyarch.spec import ArchSpec
from tinyarch.tools.deploy import emulator
from tinyarch.tools.deploy.deploy import random_project
from tinyarch.tools.opgraph import lower
from tinyarch.tools.profile import CALIBRATION_FILE, CLOCK_HZ, LatencyModel, profile

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def measure(spec: ArchSpec, out: Path, per_op: bool) -> dict:
    """Instructions with both kernel sets, sizes, bit-exactness, and (optionally) per-operator counts."""
    project = random_project(spec, out / spec.id, "mps2-an500", "optimized", checks=1)
    row: dict = {"id": spec.id, "summary": spec.summary(), "macs": profile(spec).macs, "arena": project.model.arena}
    for kernels in ("reference", "optimized"):
        elf = emulator.build_project(project.dir, "mps2-an500", kernels)
        result = emulator.run_qemu(elf, timeout=600)
        row[f"{kernels}_instructions"] = result.instructions_per_inference
        row[f"{kernels}_exact"] = emulator.parse_outputs(result.stdout) == [r.tobytes() for r in project.expected]
    size = emulator.firmware_size(emulator.build_project(project.dir, "mps2-an500", "optimized"))
    row["flash"], row["ram"] = size.text + size.data, size.data + size.bss
    row["tflm_arena"], row["tflm_activations"] = project.tflm.arena, project.tflm.activations
    if per_op:
        elf = emulator.build_project(project.dir, "mps2-an500", "optimized", profile_ops=True)
        ops = lower(spec).ops
        row["op_instructions"] = emulator.run_qemu(elf, timeout=600).operator_instructions(len(ops))[0]
    return row


def models(random_specs: int) -> list[tuple[str, ArchSpec, str]]:
    mcu = load_space("mcu")
    named = [(path.stem, mcu.parse(path.read_text()), "example") for path in sorted(EXAMPLES.glob("*.json"))]
    rng = random.Random(0)
    sampled = []
    for i in range(random_specs):
        spec = mcu.sample(rng, rng.choice([10, 100]), resolution=rng.choice([32, 48, 64]))
        sampled.append((f"random-{i}", spec, "fit" if i % 3 else "held-out"))
    return named + sampled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--random", type=int, default=24, help="random mcu specs (for calibration)")
    parser.add_argument("--calibrate", action="store_true", help="fit and write tools/latency_m7.json")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/firmware"))
    args = parser.parse_args()
    console = Console(width=170)

    entries = models(args.random)
    rows = []
    for name, spec, role in entries:
        console.print(f"{name}: {spec.summary()}", highlight=False)
        rows.append({"name": name, "role": role, **measure(spec, args.out, per_op=args.calibrate)})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))

    table = Table(title="Firmware on QEMU mps2-an500 (Cortex-M7): one inference, random weights")
    columns = ("model", "MACs", "instr ref", "instr opt", "ref/opt", "instr/MAC", "est. ms @480MHz")
    for col in (*columns, "flash", "SRAM arena", "TFLM activations / all", "bit-exact"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        ref, opt = r["reference_instructions"], r["optimized_instructions"]
        table.add_row(
            r["name"],
            format_count(r["macs"]),
            f"{ref / 1e6:.2f} M",
            f"{opt / 1e6:.2f} M",
            f"{ref / opt:.2f}x",
            f"{opt / r['macs']:.2f}",
            f"{1e3 * opt / CLOCK_HZ:.1f}",
            format_bytes(r["flash"]),
            format_bytes(r["arena"]),
            f"{format_bytes(r['tflm_activations'])} / {format_bytes(r['tflm_arena'])}",
            "yes" if r["reference_exact"] and r["optimized_exact"] else "NO",
        )
    console.print(table)
    ratios = [r["reference_instructions"] / r["optimized_instructions"] for r in rows]
    console.print(f"reference/optimised instructions: median {statistics.median(ratios):.2f}x, min {min(ratios):.2f}x")

    if args.calibrate:
        calibrate(rows, {spec.id: spec for _, spec, _ in entries}, console)


def calibrate(rows: list[dict], specs: dict[str, ArchSpec], console: Console) -> None:
    """Fit on the 'fit' specs' operators; report whole-inference error on the others (held out)."""
    samples = []
    for r in rows:
        if r["role"] == "fit":
            samples += list(zip(lower(specs[r["id"]]).ops, r["op_instructions"], strict=True))
    model = LatencyModel.fit(
        samples, source=f"fitted to {len(samples)} operators' instruction counts on QEMU mps2-an500, optimised kernels"
    )
    CALIBRATION_FILE.write_text(model.model_dump_json(indent=2))
    table = Table(title="Calibrated latency model on held-out specs (whole inference)")
    for col in ("model", "MACs", "measured instr", "predicted instr", "error"):
        table.add_column(col, justify="left" if col == "model" else "right")
    errors = []
    for r in rows:
        if r["role"] == "fit":
            continue
        predicted = sum(model.cycles(op) for op in lower(specs[r["id"]]).ops)
        error = predicted / r["optimized_instructions"] - 1
        errors.append(abs(error))
        table.add_row(
            r["name"],
            format_count(r["macs"]),
            f"{r['optimized_instructions']:,}",
            f"{predicted:,.0f}",
            f"{100 * error:+.1f} %",
        )
    console.print(table)
    console.print(f"held-out |error|: median {100 * statistics.median(errors):.1f} %, max {100 * max(errors):.1f} %")
    console.print(f"wrote {CALIBRATION_FILE}")


if __name__ == "__main__":
    main()
