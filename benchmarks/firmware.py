"""Firmware on QEMU's Cortex-M7 (mps2-an500): instructions, flash and SRAM per model, instructions per
operator kind, and the calibration of the profiler's latency model.

Run: .venv/bin/python benchmarks/firmware.py [--random 24] [--held-out 12] [--calibrate]

Every model gets random weights (instruction counts do not depend on trained values), is
converted to int8, generated as C, built with the reference and the optimised kernels, run in
QEMU and checked byte for byte against TFLM; a second build of each kernel set marks every
operator (-DTA_PROFILE_OPS) for per-operator counts. Latency is instructions / 480 MHz, i.e. one
instruction per cycle: the Cortex-M7 can dual-issue, flash wait states cost extra, so treat it as
an estimate.

The models: the examples, `--random` specs drawn with `--specs-seed` at every resolution of the
mcu space up to 144 px with 2, 10 or 100 classes (the fit set), and `--held-out` specs drawn with
`--held-out-seed` at 96-144 px with 2 and 100 classes. Specs over `--max-macs` or the QEMU board's
4 MB of flash or RAM are redrawn. `--calibrate` fits the latency model to the fit set's
per-operator counts (optimised kernels), reports its whole-inference error on the examples and
the held-out set, which the fit never sees, and writes tools/latency_m7.json. Every measurement
lands in `--out`/results.json, rewritten by each run.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections import defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tinyarch.core.budget import format_bytes, format_count
from tinyarch.core.spaces import load_space
from tinyarch.core.spec import ArchSpec
from tinyarch.tools.deploy import emulator
from tinyarch.tools.deploy.deploy import random_project
from tinyarch.tools.opgraph import Op, lower
from tinyarch.tools.profile import CALIBRATION_FILE, CLOCK_HZ, LatencyModel, op_key, profile

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
KERNELS = ("reference", "optimized")

FIT_RESOLUTIONS = (32, 48, 64, 96, 128, 144)
"""The mcu space's resolutions up to 144 px (it has no 112)."""
FIT_CLASSES = (2, 10, 100)
HELD_OUT_RESOLUTIONS = (96, 128, 144)
HELD_OUT_CLASSES = (2, 100)
BOARD_BYTES = 3_500_000
"""mps2-an500 has 4 MB of code/const memory and 4 MB of RAM; keep clear of both."""


def op_elements(op: Op) -> int:
    """What an elementwise operator's cost grows with: the elements it reads (for mean) or writes."""
    h, w, c = op.in_shape if op.kind == "mean" else op.out_shape
    return h * w * c


def measure(spec: ArchSpec, out: Path) -> dict:
    """Both kernel sets, each built twice: whole inference, and (-DTA_PROFILE_OPS) per operator."""
    project = random_project(spec, out / spec.id, "mps2-an500", "optimized", checks=1)
    expected = [r.tobytes() for r in project.expected]
    ops = lower(spec).ops
    row: dict = {"id": spec.id, "spec": spec.model_dump(mode="json"), "summary": spec.summary()}
    row |= {"resolution": spec.resolution, "classes": spec.num_classes, "macs": profile(spec).macs}
    row["arena"] = project.model.arena
    row["ops"] = [
        {"name": op.name, "key": op_key(op), "kind": op.kind, "macs": op.macs, "elements": op_elements(op)}
        for op in ops
    ]
    exact = True
    for kernels in KERNELS:
        elf = emulator.build_project(project.dir, "mps2-an500", kernels, profile_ops=True)
        result = emulator.run_qemu(elf, timeout=900)
        exact &= emulator.parse_outputs(result.stdout) == expected
        for op, n in zip(row["ops"], result.operator_instructions(len(ops))[0], strict=True):
            op[kernels] = n
        elf = emulator.build_project(project.dir, "mps2-an500", kernels)
        result = emulator.run_qemu(elf, timeout=900)
        exact &= emulator.parse_outputs(result.stdout) == expected
        row[f"{kernels}_instructions"] = result.instructions_per_inference
    size = emulator.firmware_size(elf)  # the optimised build, last above
    row["flash"], row["ram"] = size.text + size.data, size.data + size.bss
    row["tflm_arena"], row["tflm_activations"] = project.tflm.arena, project.tflm.activations
    row["exact"] = exact
    return row


def sample_specs(
    seed: int, count: int, resolutions: tuple[int, ...], classes: tuple[int, ...], max_macs: float
) -> list[ArchSpec]:
    """`count` mcu specs, the i-th at resolutions[i % len]; classes cycle after each pass over resolutions."""
    mcu = load_space("mcu")
    rng = random.Random(seed)
    specs = []
    for i in range(count):
        resolution, num_classes = resolutions[i % len(resolutions)], classes[i // len(resolutions) % len(classes)]
        while True:
            spec = mcu.sample(rng, num_classes, resolution=resolution)
            prof = profile(spec)
            if prof.macs <= max_macs and prof.flash <= BOARD_BYTES and prof.peak_sram <= BOARD_BYTES:
                break
        specs.append(spec)
    return specs


def models(args: argparse.Namespace) -> list[tuple[str, ArchSpec, str]]:
    """(name, spec, role) with role example, fit or held-out."""
    if args.held_out and args.held_out_seed == args.specs_seed:
        raise SystemExit("--held-out-seed must differ from --specs-seed")
    mcu = load_space("mcu")
    entries = [(path.stem, mcu.parse(path.read_text()), "example") for path in sorted(EXAMPLES.glob("*.json"))]
    fit = sample_specs(args.specs_seed, args.random, FIT_RESOLUTIONS, FIT_CLASSES, args.max_macs)
    entries += [(f"random-{i}", spec, "fit") for i, spec in enumerate(fit)]
    held = sample_specs(args.held_out_seed, args.held_out, HELD_OUT_RESOLUTIONS, HELD_OUT_CLASSES, args.max_macs)
    entries += [(f"held-out-{i}", spec, "held-out") for i, spec in enumerate(held)]
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--random", type=int, default=24, help="random mcu specs to fit the latency model on")
    parser.add_argument("--specs-seed", type=int, default=0, help="seed of the random (fit) specs")
    parser.add_argument("--held-out", type=int, default=12, help="held-out specs at 96-144 px, 2 and 100 classes")
    parser.add_argument("--held-out-seed", type=int, default=1, help="seed of the held-out specs")
    parser.add_argument("--max-macs", type=float, default=400e6, help="redraw random specs with more MACs")
    parser.add_argument("--calibrate", action="store_true", help="fit and write tools/latency_m7.json")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/firmware"))
    args = parser.parse_args()
    console = Console(width=170)

    entries = models(args)
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "results.json"
    results.unlink(missing_ok=True)
    rows = []
    for name, spec, role in entries:
        start = time.perf_counter()
        rows.append({"name": name, "role": role, **measure(spec, args.out)})
        results.write_text(json.dumps(rows, indent=1))
        took = time.perf_counter() - start
        console.print(f"{name} ({role}, {took:.0f} s): {spec.summary()}", highlight=False)

    network_table(rows, console)
    kind_table(rows, console)
    if args.calibrate:
        calibrate(rows, console)


def network_table(rows: list[dict], console: Console) -> None:
    table = Table(title="Firmware on QEMU mps2-an500 (Cortex-M7): one inference, random weights")
    columns = ("model", "px", "classes", "MACs", "instr ref", "instr opt", "ref/opt", "instr/MAC", "est. ms @480MHz")
    for col in (*columns, "flash", "SRAM arena", "TFLM activations / all", "bit-exact"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        ref, opt = r["reference_instructions"], r["optimized_instructions"]
        table.add_row(
            r["name"],
            str(r["resolution"]),
            str(r["classes"]),
            format_count(r["macs"]),
            f"{ref / 1e6:.2f} M",
            f"{opt / 1e6:.2f} M",
            f"{ref / opt:.2f}x",
            f"{opt / r['macs']:.2f}",
            f"{1e3 * opt / CLOCK_HZ:.1f}",
            format_bytes(r["flash"]),
            format_bytes(r["arena"]),
            f"{format_bytes(r['tflm_activations'])} / {format_bytes(r['tflm_arena'])}",
            "yes" if r["exact"] else "NO",
        )
    console.print(table)
    ratios = [r["reference_instructions"] / r["optimized_instructions"] for r in rows]
    console.print(f"reference/optimised instructions: median {statistics.median(ratios):.2f}x, min {min(ratios):.2f}x")


def kind_order(key: str) -> tuple[int, str]:
    order = ("stem", "conv", "pointwise", "depthwise", "fully_connected", "add", "mul", "mean")
    return next((i for i, k in enumerate(order) if key.startswith(k)), len(order)), key


def kind_table(rows: list[dict], console: Console) -> None:
    """Per operator kind over every measured model: instructions per MAC (per element for add, mul
    and mean), and the kind's share of all instructions, for both kernel sets."""
    totals = {k: sum(op[k] for r in rows for op in r["ops"]) for k in KERNELS}
    agg: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        for op in r["ops"]:
            a = agg[op["key"]]
            a["ops"] += 1
            a["work"] += op["elements"] if op["kind"] in ("add", "mul", "mean") else op["macs"]
            for k in KERNELS:
                a[k] += op[k]
    table = Table(title=f"Instructions per operator kind, {len(rows)} models (sums over all their operators)")
    columns = ("kind", "ops", "per", "MACs / elements", "ref per unit", "ref share", "opt per unit", "opt share")
    for col in (*columns, "ref/opt"):
        table.add_column(col, justify="left" if col in ("kind", "per") else "right")
    for key in sorted(agg, key=kind_order):
        a = agg[key]
        unit = {"add": "element", "mul": "element", "mean": "input element"}.get(key, "MAC")
        table.add_row(
            key,
            str(a["ops"]),
            unit,
            format_count(a["work"]),
            f"{a['reference'] / max(a['work'], 1):.2f}",
            f"{100 * a['reference'] / totals['reference']:.1f} %",
            f"{a['optimized'] / max(a['work'], 1):.2f}",
            f"{100 * a['optimized'] / totals['optimized']:.1f} %",
            f"{a['reference'] / max(a['optimized'], 1):.2f}x",
        )
    console.print(table)


def calibrate(rows: list[dict], console: Console) -> None:
    """Fit on the 'fit' specs' operators; report whole-inference error on all the others."""
    load = load_space("mcu").parse

    def graph(r: dict) -> list[Op]:
        return lower(load(json.dumps(r["spec"]))).ops

    samples, totals = [], []
    for r in rows:
        if r["role"] == "fit":
            for op, measured in zip(graph(r), r["ops"], strict=True):
                samples.append((op, measured["optimized"]))
                totals.append(r["optimized_instructions"])
    fitted = sum(r["role"] == "fit" for r in rows)
    if not fitted:
        console.print("no random specs to fit (--random 0): nothing calibrated")
        return
    model = LatencyModel.fit(
        samples,
        source=f"fitted to {len(samples)} operators' instruction counts ({fitted} random specs) on QEMU"
        " mps2-an500, optimised kernels",
        totals=totals,
    )
    CALIBRATION_FILE.write_text(model.model_dump_json(indent=2) + "\n")
    table = Table(title="Calibrated latency model: whole inference, models the fit did not see")
    for col in ("model", "role", "px", "classes", "MACs", "measured instr", "predicted instr", "error"):
        table.add_column(col, justify="left" if col in ("model", "role") else "right")
    errors: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        predicted = sum(model.cycles(op) for op in graph(r))
        error = predicted / r["optimized_instructions"] - 1
        errors[r["role"]].append(abs(error))
        if r["role"] == "fit":
            continue
        table.add_row(
            r["name"],
            r["role"],
            str(r["resolution"]),
            str(r["classes"]),
            format_count(r["macs"]),
            f"{r['optimized_instructions']:,}",
            f"{predicted:,.0f}",
            f"{100 * error:+.1f} %",
        )
    console.print(table)
    for role, label in (("held-out", "held-out"), ("example", "examples"), ("fit", "fit specs (in sample)")):
        if errs := errors.get(role):
            console.print(
                f"{label} |error| ({len(errs)} models): median {100 * statistics.median(errs):.1f} %,"
                f" max {100 * max(errs):.1f} %"
            )
    console.print(f"wrote {CALIBRATION_FILE}")


if __name__ == "__main__":
    main()
