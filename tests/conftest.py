"""Shared fixtures: the built-in space and the example specs."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import pytest

from tinyarch.core.spaces import SearchSpace, load_space
from tinyarch.core.spec import ArchSpec
from tinyarch.tools.data import Data, load_data
from tinyarch.tools.train import RECIPES

ROOT = Path(__file__).resolve().parent.parent


def own_home(home: Path) -> dict[str, str]:
    """The environment of a CLI process with a home and a cache (so a memory) of its own."""
    return {**os.environ, "HOME": str(home), "TINYARCH_CACHE": str(home / "cache")}


def resume_command(runs: Path, name: str) -> list[str]:
    """`tinyarch search --resume NAME` as a subprocess command line."""
    return [sys.executable, "-m", "tinyarch.interfaces.cli", "search", "--resume", name, "--runs-dir", str(runs)]


EXAMPLES = ROOT / "examples"
QUICK = RECIPES["proxy"].model_copy(update={"epochs": 1, "batch_size": 32})
"""One short epoch: enough steps for the synthetic data to be learnt."""


@pytest.fixture(scope="session")
def mcu() -> SearchSpace:
    return load_space("mcu")


@pytest.fixture(scope="session")
def small_spec(mcu: SearchSpace) -> ArchSpec:
    return mcu.parse((EXAMPLES / "cpu_small.json").read_text())


@pytest.fixture(scope="session")
def rgb_spec(mcu: SearchSpace) -> ArchSpec:
    """The small example with 3 input channels, for the RGB synthetic data."""
    return mcu.parse({**json.loads((EXAMPLES / "cpu_small.json").read_text()), "in_channels": 3})


@pytest.fixture(scope="session")
def synthetic() -> Data:
    return load_data("synthetic")


@pytest.fixture(autouse=True)
def _skip_without_nats_table(request: pytest.FixtureRequest) -> None:
    """Tests marked `nats_table` need ../shared/data/nats_tss_accuracy.csv (third-party data, never in the
    repository): without it they skip, saying where it was looked for."""
    if request.node.get_closest_marker("nats_table"):
        needs_nats_table()


def needs_nats_table() -> None:
    from tinyarch.tools.evaluators import EvaluatorError, find_nats_table

    try:
        find_nats_table()
    except EvaluatorError as e:
        pytest.skip(f"no NATS table: {e}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout_s: float = 120.0) -> None:
    """Block until a server accepts connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:.0f} s")


def finished_nats_run(root: Path, name: str, budget_evals: int, batch: int) -> Path:
    """The runs directory of a finished random search on the NATS table (seconds), with its report, as
    `tinyarch search` leaves it; skips without the table."""
    from tinyarch.agents.runner import run_search
    from tinyarch.core.config import RunConfig
    from tinyarch.core.rundir import RunDir
    from tinyarch.interfaces.report import write_run_report

    needs_nats_table()
    config = RunConfig(name=name, strategy="random", budget_evals=budget_evals, batch=batch, memory_path=root / "mem")
    state = run_search(config, root / "runs")
    write_run_report(RunDir(root / "runs" / name), state["iteration"])
    return root / "runs"
