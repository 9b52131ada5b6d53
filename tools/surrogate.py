"""A surrogate of a metric over a search space: a bootstrap ensemble of small MLPs on one-hot specs.

`tools/explain.py` attributes its predictions to design choices; the `bo` and `llm` strategies
screen candidates by its mean and spread (`Surrogate.fit(...).predict(specs)`). Members are
trained in one batched run, each on its own bootstrap resample, so their spread is the uncertainty.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tinyarch.core.spaces import SearchSpace

HIDDEN = 16
FIT_STEPS = 200


class OneHot:
    """One column per slot choice; a slot a spec does not use (dsconv's expansion) is all zeros."""

    def __init__(self, space: SearchSpace):
        self.space = space
        self.slots = space.slots()
        self.labels: list[str] = []
        self.pooled: list[str | None] = []
        self.slot_of: list[int] = []
        kinds = [slot_kind(path) for path, _ in self.slots]
        for s, (path, choices) in enumerate(self.slots):
            shared = kinds.count(kinds[s]) > 1
            for choice in choices:
                self.labels.append(f"{path}={format_value(choice)}")
                self.pooled.append(f"{kinds[s]}={format_value(choice)}" if shared else None)
                self.slot_of.append(s)

    def encode(self, spec: Any) -> np.ndarray:
        values = self.space.values(spec)
        row = np.zeros(len(self.labels), dtype=np.float32)
        offset = 0
        for path, choices in self.slots:
            if path in values:
                row[offset + choices.index(values[path])] = 1.0
            offset += len(choices)
        return row


def slot_kind(path: str) -> str:
    """`edge_2_0` -> `edge_*`; `stages[3].se_ratio` and `head.activation` -> `*.se_ratio`, `*.activation`."""
    last = re.split(r"[.\]]", path)[-1]
    prefix = re.sub(r"(_\d+)+$", "", last)
    return f"{prefix}_*" if prefix != last else f"*.{last}"


def format_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def bootstrap_counts(allowed: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """How often each candidate is drawn when resampling the allowed ones with replacement."""
    pool = allowed.nonzero().squeeze(1)
    draws = pool[torch.randint(len(pool), (len(pool),), generator=g)]
    return torch.bincount(draws, minlength=len(allowed)).float()


class Ensemble(nn.Module):
    """Independent one-hidden-layer SiLU MLPs evaluated in one batched matmul; output (N, members)."""

    def __init__(self, inputs: int, members: int, g: torch.Generator):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(members, inputs, HIDDEN, generator=g) / math.sqrt(inputs))
        self.b1 = nn.Parameter(torch.zeros(members, 1, HIDDEN))
        self.w2 = nn.Parameter(torch.randn(members, HIDDEN, 1, generator=g) / math.sqrt(HIDDEN))
        self.b2 = nn.Parameter(torch.zeros(members, 1, 1))

    def forward(self, x: torch.Tensor, members: slice = slice(None)) -> torch.Tensor:
        w1, b1, w2, b2 = self.w1[members], self.b1[members], self.w2[members], self.b2[members]
        hidden = F.silu(torch.baddbmm(b1, x.unsqueeze(0).expand(len(w1), -1, -1), w1))
        return torch.baddbmm(b2, hidden, w2).squeeze(2).T


def fit_ensemble(x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, g: torch.Generator) -> Ensemble:
    """Full-batch AdamW on each member's bootstrap-weighted squared error (weight decay keeps 200 points sane)."""
    net = Ensemble(x.shape[1], len(weights), g)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0.1)
    total = weights.sum(1)
    for _ in range(FIT_STEPS):
        opt.zero_grad()
        loss = ((((net(x) - y[:, None]) ** 2) * weights.T).sum(0) / total).sum()
        loss.backward()
        opt.step()
    return net.eval()


@contextmanager
def single_thread() -> Iterator[None]:
    """Tiny batched MLPs run fastest on one thread; on a busy 2-core machine two threads were 20-40x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Surrogate:
    """Predicts a target (e.g. accuracy) of specs from the evaluated ones, with an ensemble spread."""

    def __init__(self, encoding: OneHot, net: Ensemble, mean: float, scale: float):
        self.encoding, self.net, self.mean, self.scale = encoding, net, mean, scale

    @classmethod
    def fit(
        cls, space: SearchSpace, specs: Sequence[Any], targets: Sequence[float], seed: int = 0, members: int = 8
    ) -> Surrogate:
        encoding = OneHot(space)
        x = torch.tensor(np.array([encoding.encode(s) for s in specs]).reshape(len(specs), len(encoding.labels)))
        y = torch.tensor(np.asarray(targets, dtype=np.float32))
        mean, scale = float(y.mean()), float(y.std().clamp(min=1e-8)) if len(y) > 1 else 1.0
        g = torch.Generator().manual_seed(seed)
        with single_thread():
            weights = torch.stack([bootstrap_counts(torch.ones(len(y), dtype=torch.bool), g) for _ in range(members)])
            net = fit_ensemble(x, (y - mean) / scale, weights, g)
        return cls(encoding, net, mean, scale)

    def predict(self, specs: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """(mean, standard deviation over members) of the target for each spec."""
        if not specs:
            return np.zeros(0), np.zeros(0)
        x = torch.tensor(np.array([self.encoding.encode(s) for s in specs]))
        with single_thread(), torch.no_grad():
            out = self.net(x) * self.scale + self.mean
        return out.mean(1).numpy(), out.std(1).numpy()
