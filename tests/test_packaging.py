"""tinyarch as a package: extras that match the code, a light core, and a built wheel that works from
anywhere, with the firmware, the latency calibration, spaces, prompts and templates as package data.

The wheel tests build from the files a clone would have (git's tracked and unignored ones), install into
fresh venvs outside the checkout and run the `tinyarch` they install from a directory outside it.
`test_wheel_with_deploy_extra_deploys_bit_exact` installs torch and TensorFlow (about 8 GB, a few minutes).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, ROOT
from tinyarch.core.extras import INCLUDES, MODULES

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS: dict[str, list[str]] = PYPROJECT["project"]["optional-dependencies"]
TOOL_EXTRAS = ("dev", "all")
"""Extras that bring no module of their own: the developer's tools, and everything together."""

# A hand-made spec for the deployment: every block kind and activation, SE, residuals, at 32 px.
HAND_MADE = {
    "name": "hand-made",
    "resolution": 32,
    "in_channels": 3,
    "num_classes": 10,
    "stem": {"width": 8, "kernel": 3, "stride": 2, "activation": "relu6"},
    "stages": [
        {"block": "dsconv", "width": 16, "depth": 1, "stride": 1, "kernel": 3, "expansion": 1, "se_ratio": 0.25,
         "activation": "swish", "skip": False},
        {"block": "mbconv", "width": 16, "depth": 2, "stride": 2, "kernel": 5, "expansion": 3, "se_ratio": 0.0,
         "activation": "leaky_relu", "skip": True},
        {"block": "mbconv", "width": 24, "depth": 1, "stride": 2, "kernel": 3, "expansion": 3, "se_ratio": 0.0,
         "activation": "relu6", "skip": False},
        {"block": "dsconv", "width": 24, "depth": 1, "stride": 1, "kernel": 3, "expansion": 1, "se_ratio": 0.0,
         "activation": "relu6", "skip": True},
        {"block": "mbconv", "width": 32, "depth": 1, "stride": 2, "kernel": 3, "expansion": 3, "se_ratio": 0.0,
         "activation": "relu6", "skip": False},
    ],
    "head": {"width": 0, "activation": "relu6"},
}  # fmt: skip


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement(spec: str) -> tuple[str, list[str]]:
    """('tinyarch', ['train']) for 'tinyarch[train]'; ('torch', []) for 'torch'."""
    match = re.fullmatch(r"([A-Za-z0-9._-]+)(?:\[([^\]]*)\])?.*", spec)
    assert match, spec
    return canonical(match[1]), [e.strip() for e in (match[2] or "").split(",") if e.strip()]


def test_extras_table_matches_pyproject() -> None:
    """tinyarch/extras.py names, for each optional module, the extra whose requirements bring it; every
    requirement of an extra brings a module of that table; the includes are pyproject's self-references."""
    providers = metadata.packages_distributions()
    own = {extra: {requirement(r)[0] for r in reqs} - {"tinyarch"} for extra, reqs in EXTRAS.items()}
    includes = {
        extra: tuple(e for r in reqs if requirement(r)[0] == "tinyarch" for e in requirement(r)[1])
        for extra, reqs in EXTRAS.items()
        if extra not in TOOL_EXTRAS
    }
    assert {k: v for k, v in includes.items() if v} == INCLUDES
    assert set(MODULES.values()) == set(EXTRAS) - set(TOOL_EXTRAS)
    everything = sorted(set(MODULES.values()), key=list(EXTRAS).index)
    assert [requirement(r) for r in EXTRAS["all"]] == [("tinyarch", everything)]
    for module, extra in MODULES.items():
        dists = {canonical(d) for d in providers.get(module.split(".")[0], [])}
        assert dists & own[extra], f"{module}: no requirement of [{extra}] provides it (installed by {dists})"
    for extra, names in own.items():
        if extra in TOOL_EXTRAS:
            continue
        for name in names:
            modules = {m for m, dists in providers.items() if name in {canonical(d) for d in dists}}
            assert modules & {m.split(".")[0] for m in MODULES}, f"[{extra}] {name}: none of {modules} in extras.py"
    core = {requirement(r)[0] for r in PYPROJECT["project"]["dependencies"]}
    assert core == {"pydantic", "pyyaml", "numpy", "typer", "rich"}


# Runs the CLI with every optional module unimportable, as in a core-only install.
_WITHOUT_EXTRAS = """
import importlib.abc, sys
from tinyarch.core.extras import MODULES
blocked = {m.split(".")[0] for m in MODULES}
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Absent())
sys.argv = ["tinyarch", *sys.argv[1:]]
from tinyarch.interfaces.cli import main
main()
"""


def run_core(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"COLUMNS": "200", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT_EXTRAS, *args], capture_output=True, text=True, timeout=120, env=env, cwd=cwd
    )


def test_core_commands_import_no_extra(tmp_path: Path) -> None:
    res = run_core("profile", str(EXAMPLES / "lmanet_elite.json"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "MACs 86.81 M" in res.stdout and "calibrated on QEMU" in res.stdout
    res = run_core("space", "show", "mcu", cwd=tmp_path)
    assert res.returncode == 0 and "stages[i].block" in res.stdout, res.stderr
    res = run_core("space", "sample", "nats-tss", "-n", "2", cwd=tmp_path)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (("deploy", "model"), "error: this needs torch: pip install 'tinyarch[deploy]'"),
        (("train", "spec.json"), "error: this needs torch: pip install 'tinyarch[train]'"),
        (("search", "--name", "x"), "error: this needs langgraph: pip install 'tinyarch[llm]'"),
        (("report", "x"), "error: this needs langgraph: pip install 'tinyarch[web]'"),
        (("chat", "x"), "error: this needs langgraph: pip install 'tinyarch[llm]'"),
    ],
)
def test_a_missing_extra_is_one_line_naming_its_install(args: tuple[str, ...], line: str, tmp_path: Path) -> None:
    res = run_core(*args, cwd=tmp_path)
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [line], (res.stdout, res.stderr)


def test_an_import_inside_a_command_names_its_extra(tmp_path: Path) -> None:
    """A command that asks for no extra still gets the line, from main() and the module's own extra."""
    from tinyarch.core.extras import MissingExtra, install_line

    assert install_line(ModuleNotFoundError("No module named 'jinja2'", name="jinja2")) == (
        "this needs jinja2: pip install 'tinyarch[web]'"
    )
    assert install_line(MissingExtra("torch", "deploy")) == "this needs torch: pip install 'tinyarch[deploy]'"
    broken = ModuleNotFoundError("No module named 'torch._C'", name="torch._C")  # a broken install, not a missing one
    assert install_line(broken) is None
    assert install_line(ModuleNotFoundError("No module named 'nothing'", name="nothing")) is None


# The built wheel in fresh venvs.


def clone_files(dest: Path) -> Path:
    """The files a clone of this checkout has (tracked, or new and not ignored), copied to `dest`."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout: a clone's files are git's tracked and unignored ones")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the work tree is not there
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = clone_files(tmp_path_factory.mktemp("source"))
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(source)],
        check=True,
        capture_output=True,
    )
    (built,) = dist.glob("tinyarch-*.whl")
    return built


def test_wheel_holds_the_package_data(wheel: Path) -> None:
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(["git", "ls-files", "firmware"], cwd=ROOT, capture_output=True, text=True, check=True)
    firmware = {f"tinyarch/{name}" for name in tracked.stdout.split()}
    assert firmware and firmware <= names, sorted(firmware - names)
    assert {"tinyarch/firmware/boards/stm32h743/stm32h743.ld", "tinyarch/firmware/boards/host/board.mk"} <= names
    data = {
        "tinyarch/tools/latency_m7.json",
        "tinyarch/core/spaces/mcu.yaml",
        "tinyarch/core/spaces/nats-tss.yaml",
        "tinyarch/prompts/designer_system.md",
        "tinyarch/interfaces/templates/report.html.j2",
        "tinyarch/interfaces/web/static/index.html",
    }
    assert data <= names, sorted(data - names)
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "tools/", "firmware/", "agents/"))]


def fresh_venv(root: Path, wheel: Path, extra: str = "") -> Path:
    """A venv at `root` with the wheel (and `extra`) installed at the versions constraints.txt pins."""
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    python = root / "bin" / "python"
    target = f"{wheel}[{extra}]" if extra else str(wheel)
    proc = subprocess.run(
        [python, "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), target],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "bin"


def run_in(bin_dir: Path, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """A command of the venv, run outside the checkout with nothing of it on the path."""
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", str(cwd)),
        "COLUMNS": "200",
        "TINYARCH_CACHE": str(cwd / "cache"),
    }
    return subprocess.run([*args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


@pytest.mark.slow
def test_wheel_core_install_profiles_from_anywhere(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    try:
        bin_dir = fresh_venv(venv, wheel)
        work = tmp_path / "elsewhere"
        work.mkdir()
        shutil.copy(EXAMPLES / "lmanet_elite.json", work)
        res = run_in(bin_dir, "tinyarch", "profile", "lmanet_elite.json", cwd=work)
        assert res.returncode == 0, res.stderr
        assert "MACs 86.81 M" in res.stdout and "calibrated on QEMU" in res.stdout  # the shipped calibration
        res = run_in(bin_dir, "tinyarch", "space", "show", "mcu", cwd=work)
        assert res.returncode == 0 and "stages[i].block" in res.stdout, res.stderr
        for module in ("torch", "tensorflow", "langgraph", "chromadb"):
            res = run_in(bin_dir, "python", "-c", f"import {module}", cwd=work)
            assert res.returncode != 0 and "ModuleNotFoundError" in res.stderr, f"{module} is in the core install"
        res = run_in(bin_dir, "tinyarch", "deploy", "model", "--board", "host", cwd=work)
        assert res.returncode == 2
        assert res.stderr.strip().splitlines() == ["error: this needs torch: pip install 'tinyarch[deploy]'"]
    finally:
        shutil.rmtree(venv, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("make") is None, reason="the host board needs gcc")
def test_wheel_with_deploy_extra_deploys_bit_exact(wheel: Path, tmp_path: Path) -> None:
    """`tinyarch[deploy]` trains a hand-made spec briefly and deploys it to the host board, from the
    firmware sources in the installed package: every output equals TFLM's byte for byte."""
    venv = tmp_path / "venv"
    try:
        bin_dir = fresh_venv(venv, wheel, "deploy")
        work = tmp_path / "elsewhere"
        work.mkdir()
        (work / "hand.json").write_text(json.dumps(HAND_MADE))
        train = ("tinyarch", "train", "hand.json", "--dataset", "synthetic", "--epochs", "1", "--out", "model")
        res = run_in(bin_dir, *train, cwd=work)
        assert res.returncode == 0, res.stderr[-3000:]
        deploy = ("tinyarch", "deploy", "model", "--board", "host", "--images", "4", "--val-images", "100")
        res = run_in(bin_dir, *deploy, "--out", "fw", cwd=work)
        assert res.returncode == 0, res.stderr[-3000:]
        report = json.loads((work / "fw" / "deploy.json").read_text())
        assert report["bit_exact_images"] == 4 and report["bit_exact_matches"] == 4, report
        assert report["arena"] == report["profiler_peak_sram"]
        assert (work / "fw" / "boards" / "stm32h743" / "stm32h743.ld").is_file()  # every board, for make BOARD=...
    finally:
        shutil.rmtree(venv, ignore_errors=True)
