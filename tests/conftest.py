"""Shared fixtures: the built-in space and the example specs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinyarch.space import SearchSpace, load_space
from tinyarch.spec import ArchSpec

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="session")
def mcu() -> SearchSpace:
    return load_space("mcu")


@pytest.fixture(scope="session")
def small_spec(mcu: SearchSpace) -> ArchSpec:
    return mcu.parse((EXAMPLES / "cpu_small.json").read_text())
