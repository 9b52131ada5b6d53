"""Chroma memory, in a local folder and on a real `chroma run` server on loopback."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_for_port
from tinyarch.core.spaces import load_space
from tinyarch.memory.store import Evaluated, Memory

NATS = load_space("nats-tss")


def _exercise(memory: Memory) -> None:
    rng = random.Random(0)
    cells = [NATS.sample(rng, 100) for _ in range(12)]
    evaluated = [Evaluated(cell, {"accuracy": 50.0 + i}, {"macs": 1e6 * i}) for i, cell in enumerate(cells)]
    memory.remember(NATS, "nats-a", "cifar100", "run-a", evaluated)
    memory.remember(NATS, "nats-b", "cifar100", "run-b", [Evaluated(cells[0], {"accuracy": 1.0}, {}, "failed")])
    # an evaluation is recalled only under the evaluator settings it was made with
    recalled = memory.recall(NATS, cells[5].id, "nats-a")
    assert recalled is not None and recalled.spec == cells[5].model_dump(mode="json", exclude={"name"})
    assert (recalled.metrics, recalled.cost, recalled.run, recalled.status) == (
        {"accuracy": 55.0},
        {"macs": 5e6},
        "run-a",
        "ok",
    )
    assert memory.recall(NATS, cells[5].id, "nats-b") is None
    assert [k.status for k in memory.known(NATS, "nats-b")] == ["failed"]
    memory.add_lesson("squeeze-and-excitation in the last stages helped accuracy", "run-a", 1)
    memory.add_lesson("7x7 kernels in the first stage cost too many MACs", "run-a", 2)
    assert memory.relevant_lessons("large kernels early", k=1) == ["7x7 kernels in the first stage cost too many MACs"]
    # lessons are recalled for their space and dataset, from other runs than the asking one
    memory.add_lesson("nor_conv_3x3 on every edge helped", "run-b", 1, "nats-tss", "cifar100")
    memory.add_lesson("none on edge_3_0 hurt", "run-b", 2, "nats-tss", "imagenet16-120")
    memory.add_lesson("our own advice", "run-c", 1, "nats-tss", "cifar100")
    mine = memory.relevant_lessons("edges", k=5, space="nats-tss", dataset="cifar100", exclude_run="run-c")
    assert mine == ["nor_conv_3x3 on every edge helped"]
    assert memory.relevant_lessons("edges", space="mcu", dataset="cifar100") == []


def test_persistent_memory_survives_a_new_client(tmp_path: Path) -> None:
    _exercise(Memory(tmp_path))
    again = Memory(tmp_path)
    assert len(again.known(NATS, "nats-a")) == 12
    assert len(again.relevant_lessons("anything", k=5)) == 5


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    chroma = shutil.which("chroma", path=str(Path(sys.executable).parent))
    assert chroma, "the chroma CLI comes with chromadb"
    proc = subprocess.Popen(
        [chroma, "run", "--path", str(tmp_path / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, 60)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_memory_on_a_real_chroma_server(chroma_server: str) -> None:
    _exercise(Memory(url=chroma_server))
