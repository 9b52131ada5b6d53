"""One cache root, `$TINYARCH_CACHE`, honoured by everything that caches between runs."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import EXAMPLES, QUICK
from tinyarch.core.paths import cache_root
from tinyarch.tools.data import Data


class Recorded(Exception):
    """Stops a command at the call the test inspects."""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("TINYARCH_CACHE", str(root))
    return root


def test_the_root_follows_the_environment(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache_root() == cache
    monkeypatch.delenv("TINYARCH_CACHE")
    assert cache_root() == Path("~/.cache/tinyarch").expanduser()
    monkeypatch.setenv("TINYARCH_CACHE", "")
    assert cache_root() == Path("~/.cache/tinyarch").expanduser()


def test_models_and_the_qemu_plugin_live_under_it(cache: Path) -> None:
    from tinyarch.agents.backends.llamacpp import cache_dir
    from tinyarch.tools.deploy.emulator import _cache_dir

    assert cache_dir() == cache / "models"
    assert _cache_dir() == cache / "qemu-plugin"


def test_the_default_memory_store_lives_under_it(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tinyarch.memory.store import Memory

    chromadb = types.ModuleType("chromadb")
    chromadb.PersistentClient = lambda path: SimpleNamespace(path=path)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "chromadb", chromadb)
    assert Memory().client.path == str(cache / "memory") and (cache / "memory").is_dir()
    assert Memory(cache.parent / "elsewhere").client.path == str(cache.parent / "elsewhere")


def test_the_search_caches_teacher_logits_under_it(
    cache: Path, synthetic: Data, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tinyarch.tools.distill
    from tinyarch.tools.evaluators import Evaluation, ProxyTrainingEvaluator

    teacher = SimpleNamespace(config=SimpleNamespace(val_acc=99.0))
    monkeypatch.setattr(tinyarch.tools.distill, "load_teacher", lambda path, num_classes: teacher)
    evaluator = ProxyTrainingEvaluator(synthetic, QUICK, QUICK, teacher=Path("teacher.safetensors"), distill="always")
    seen: dict[str, Any] = {}

    def train(spec: Any, data: Any, recipe: Any, suffix: str, **extra: Any) -> Any:
        seen.update(extra)
        return Evaluation("failed", reason="stopped by the test")

    monkeypatch.setattr(evaluator, "_train", train)
    evaluator.finalize(SimpleNamespace(id="x"))
    assert seen["teacher_cache_dir"] == cache / "teacher-logits"


def test_tinyarch_train_caches_teacher_logits_under_it(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tinyarch.tools.train
    from tinyarch.interfaces.cli import app

    seen: dict[str, Any] = {}

    def train(*args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        raise Recorded

    monkeypatch.setattr(tinyarch.tools.train, "train", train)
    spec = tmp_path / "rgb.json"
    spec.write_text(json.dumps({**json.loads((EXAMPLES / "cpu_small.json").read_text()), "in_channels": 3}))
    for flags, expected in (([], cache / "teacher-logits"), (["--teacher-cache", "~/tl"], Path("~/tl").expanduser())):
        seen.clear()
        result = CliRunner().invoke(app, ["train", str(spec), "--dataset", "synthetic", *flags])
        assert isinstance(result.exception, Recorded), result.output
        assert seen["teacher_cache_dir"] == expected
