"""Design-effect surrogate on nats-tss CIFAR-100: held-out Spearman and the operations' effects.

Run: .venv/bin/python benchmarks/explain_nats.py [--cells 200 --seeds 5]

Each history is `--cells` random cells with their accuracies from the NATS table.
"""

from __future__ import annotations

import argparse
import random

from rich.console import Console
from rich.table import Table

from tinyarch.core.spaces import load_space
from tinyarch.tools.evaluators import NatsTableEvaluator
from tinyarch.tools.explain import design_effects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cells", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    nats, table = load_space("nats-tss"), NatsTableEvaluator("cifar100")
    result = Table(title=f"Design effects on {args.cells} random nats-tss cells (CIFAR-100)")
    for col in ("seed", "Spearman accuracy", "Spearman MACs", "nor_conv_3x3", "none"):
        result.add_column(col, justify="right")
    for seed in range(args.seeds):
        rng = random.Random(seed)
        cells = [nats.sample(rng, num_classes=100) for _ in range(args.cells)]
        history = [
            {"spec": c.model_dump(mode="json"), "metrics": table.evaluate(c).metrics, "cost": nats.cost(c)}
            for c in cells
        ]
        effects = design_effects(nats, history, seed=seed)
        fits = {f.target: f.spearman for f in effects.fits}
        conv, none = (effects.effect("accuracy", f"edge_*={op}") for op in ("nor_conv_3x3", "none"))
        result.add_row(
            str(seed),
            f"{fits['accuracy']:.2f}",
            f"{fits['macs']:.2f}",
            f"{conv.mean:+.2f} ± {conv.std:.2f}",
            f"{none.mean:+.2f} ± {none.std:.2f}",
        )
    Console().print(result)


if __name__ == "__main__":
    main()
