from __future__ import annotations

import pytest

from tinyarch.tools.pareto import analyse


def test_front_and_hypervolume_by_hand() -> None:
    points = [
        {"accuracy": 50.0, "macs": 50.0},  # error 0.5, cost 0.5 of the budget: volume 0.25
        {"accuracy": 40.0, "macs": 60.0},  # dominated by the first
        {"accuracy": 80.0, "macs": 90.0},  # error 0.2, cost 0.9: adds 0.3 x 0.1 = 0.03
        {"accuracy": 99.0, "macs": 150.0},  # over the budget: infeasible
    ]
    result = analyse(points, {"macs": 100.0})
    assert result.front == [2, 0] and result.infeasible == [3]
    assert result.hypervolume == pytest.approx(0.25 + 0.03)
    assert result.objectives == ["accuracy", "macs"]


def test_costs_without_a_limit_use_the_observed_range() -> None:
    points = [{"accuracy": 60.0, "macs": 10.0, "params": 5.0}, {"accuracy": 70.0, "macs": 20.0, "params": 1.0}]
    result = analyse(points)
    assert sorted(result.front) == [0, 1] and 0.0 < result.hypervolume < 1.0


def test_empty_and_all_infeasible() -> None:
    assert analyse([]).front == []
    result = analyse([{"accuracy": 90.0, "macs": 200.0}], {"macs": 100.0})
    assert result.front == [] and result.hypervolume == 0.0
