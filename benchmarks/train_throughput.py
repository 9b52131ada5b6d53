"""Training images/s: tinyarch's loop against a plain torch loop over the same model and data.

Run: .venv/bin/python benchmarks/train_throughput.py [--images 8192 --repeats 3]

Both loops get the same spec (examples/cpu_small.json), the same Fashion-MNIST images, the same
seeded augmentation and DataLoader, batch size, SGD settings and channels_last memory format.
The plain loop is forward, cross-entropy, backward, step. Ours adds what a user gets: the LR
schedule, the NaN guard, the progress bar. Validation runs after the timed part in both. Runs
alternate so that any other load on the machine falls on both; the table gives the median of
the repeats.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from tinyarch.core.spaces import load_space
from tinyarch.tools.builder import build_model
from tinyarch.tools.data import AugmentedView, Data, SeededAugment, load_data, to_model_input
from tinyarch.tools.train import RECIPES, train_model


def plain_loop(model: torch.nn.Module, data: Data, batch_size: int, resolution: int, channels: int, seed: int) -> float:
    """images/s of a textbook training epoch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(seed * 100_003))
    loader = torch.utils.data.DataLoader(
        AugmentedView(data.train, SeededAugment(seed, data.info.hflip, True), 0),
        batch_size=batch_size,
        sampler=order.tolist(),
        drop_last=True,
    )
    model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    model.train()
    start = time.perf_counter()
    seen = 0
    for images, labels, _ in loader:
        x = to_model_input(images, data.info.mean, data.info.std, resolution, channels, channels_last=True)
        loss = F.cross_entropy(model(x), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(labels)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--spec", type=Path, default=Path("examples/cpu_small.json"))
    args = parser.parse_args()

    spec = load_space("mcu").parse(args.spec.read_text())
    full = load_data(args.dataset)
    data = Data(
        full.info,
        full.train.subset(torch.arange(args.images)),
        full.val.subset(torch.arange(min(512, len(full.val)))),
        None,
    )
    recipe = RECIPES["proxy"].model_copy(update={"epochs": 1})
    warmup = Data(data.info, data.train.subset(torch.arange(4 * recipe.batch_size)), data.val, None)
    plain_loop(build_model(spec), warmup, recipe.batch_size, spec.resolution, spec.in_channels, 0)  # not timed
    ours, plain = [], []
    for repeat in range(args.repeats):
        torch.manual_seed(repeat)
        plain.append(plain_loop(build_model(spec), data, recipe.batch_size, spec.resolution, spec.in_channels, repeat))
        torch.manual_seed(repeat)
        result = train_model(
            build_model(spec),
            data,
            recipe,
            resolution=spec.resolution,
            channels=spec.in_channels,
            seed=repeat,
            device="cpu",
            progress=True,
        )
        ours.append(result.history[-1]["images_per_s"])

    table = Table(
        title=f"training throughput, {args.dataset} ({args.images} images), CPU, "
        f"{torch.get_num_threads()} threads, batch {recipe.batch_size}, median of {args.repeats}"
    )
    for col in ("loop", "images/s", "runs"):
        table.add_column(col, justify="left" if col == "loop" else "right")
    table.add_row("plain torch", f"{statistics.median(plain):,.0f}", ", ".join(f"{v:,.0f}" for v in plain))
    table.add_row("tinyarch train", f"{statistics.median(ours):,.0f}", ", ".join(f"{v:,.0f}" for v in ours))
    Console(width=160).print(table)
    Console(width=160).print(f"tinyarch / plain = {statistics.median(ours) / statistics.median(plain):.3f}")


if __name__ == "__main__":
    main()
