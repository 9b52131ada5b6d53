from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest

from tinyarch.core.spaces import SearchSpace, load_space
from tinyarch.core.spaces.nats import EDGES, NatsCell
from tinyarch.tools.evaluators import EvaluatorError, NatsTableEvaluator, find_nats_table

ALL_3X3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def nats() -> SearchSpace:
    return load_space("nats-tss")


def test_cost_matches_nas_bench_201(nats: SearchSpace) -> None:
    """NAS-Bench-201 reports 220.11 M FLOPs (multiply-adds) and 1.53 M parameters for the all-3x3 cell on CIFAR-10."""
    cost = nats.cost(NatsCell.from_arch_string(ALL_3X3, 10))
    assert round(cost["macs"] / 1e6, 2) == 220.12 and round(cost["params"] / 1e6, 2) == 1.53
    empty = nats.cost(NatsCell(num_classes=10, **dict.fromkeys(EDGES, "none")))
    assert empty["macs"] < cost["macs"] / 20


def test_arch_string_round_trip_and_encoding(nats: SearchSpace) -> None:
    cell = NatsCell.from_arch_string(ALL_3X3, 100)
    assert cell.arch_string() == ALL_3X3
    for seed in range(30):
        c = nats.sample(random.Random(seed), 100)
        assert NatsCell.from_arch_string(c.arch_string(), 100) == c
        assert nats.decode(nats.encode(c), 100) == c
    schema = nats.json_schema(num_classes=100)
    assert schema["properties"]["edge_3_2"]["enum"][0] == "none"


def test_invalid_cells_report_their_edge(nats: SearchSpace) -> None:
    violations = nats.validate_spec({"num_classes": 100, **dict.fromkeys(EDGES, "none"), "edge_2_1": "conv_5x5"})
    assert [v.path for v in violations] == ["edge_2_1"]


@pytest.mark.nats_table
def test_table_lookup_covers_every_cell() -> None:
    evaluator = NatsTableEvaluator("cifar100")
    assert len(evaluator.accuracy) == 15625 and evaluator.optimum == pytest.approx(73.51, abs=0.01)
    with evaluator.path.open(newline="") as f:
        best = max(csv.DictReader(f), key=lambda r: float(r["CIFAR100TestAccuracy200Epochs"]))
    cell = NatsCell.from_arch_string(best["ArchitectureString"], 100)
    assert evaluator.evaluate(cell).metrics["accuracy"] == pytest.approx(73.51, abs=0.01)


@pytest.mark.nats_table
def test_missing_table_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TINYARCH_NATS_TABLE", str(tmp_path / "absent.csv"))
    assert find_nats_table().name == "nats_tss_accuracy.csv"  # falls through to ../shared/data
    monkeypatch.setattr("tinyarch.tools.evaluators.SHARED_NATS_TABLE", tmp_path / "shared" / "absent.csv")
    with pytest.raises(EvaluatorError) as info:
        find_nats_table(tmp_path / "x.csv")
    assert "\n" not in str(info.value) and "pass --nats-table PATH or set TINYARCH_NATS_TABLE" in str(info.value)
