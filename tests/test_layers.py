"""The layers (README, "Layout") on an installed copy of the package: import-linter's contracts in
pyproject.toml, and mypy on the core and the tools.

The repository maps agents/, tools/, memory/, prompts/ and firmware/ into the package through
pyproject's package-dir, which neither tool follows in an editable install; a copy installed with
`pip --target` is one tree, as a wheel is.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_packaging import clone_files


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = clone_files(tmp_path_factory.mktemp("source"))
    site = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q", "--target"]
    subprocess.run([*command, str(site), str(source)], check=True, capture_output=True)
    return site


def run_on(installed: Path, *command: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(installed), "MYPYPATH": str(installed)}
    return subprocess.run(command, cwd=installed, env=env, capture_output=True, text=True)


def test_each_layer_imports_only_the_layers_below(installed: Path) -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = run_on(installed, str(lint), str(ROOT / "pyproject.toml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_the_core_and_the_tools_type_check(installed: Path) -> None:
    config = str(ROOT / "pyproject.toml")
    result = run_on(
        installed, sys.executable, "-m", "mypy", "--config-file", config, "-p", "tinyarch.core", "-p", "tinyarch.tools"
    )
    assert result.returncode == 0, result.stdout[-4000:]
