"""The CLI as a user runs it: a subprocess, exit codes, and one clear line per problem."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import EXAMPLES


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tinyarch.interfaces.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )


def test_profile_prints_layers_and_totals() -> None:
    res = run(
        "profile",
        str(EXAMPLES / "lmanet_elite.json"),
        "--budget-sram",
        "320KB",
        "--budget-flash",
        "1MB",
        "--budget-macs",
        "100M",
    )
    assert res.returncode == 0, res.stderr
    assert "s3b2.se.scale" in res.stdout and "MACs 86.81 M" in res.stdout and "calibrated on QEMU" in res.stdout
    assert "within budget" in res.stdout


def test_profile_json_and_budget_breach() -> None:
    res = run("profile", str(EXAMPLES / "lmanet_elite.json"), "--budget-sram", "100KB", "--json")
    assert res.returncode == 1
    data = json.loads(res.stdout)
    assert data["peak_sram"] == 204800 and data["macs"] == 86808064
    assert data["breaches"] == ["peak SRAM 200.0 KB exceeds the budget of 100.0 KB by 100.0 KB (100.0 %)"]


def _problems(res: subprocess.CompletedProcess[str]) -> list[str]:
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    return res.stderr.strip().splitlines()


def test_malformed_json_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"resolution": 32,')
    lines = _problems(run("profile", str(bad)))
    assert len(lines) == 1 and lines[0].startswith(f"error: {bad}: (spec): Invalid JSON")


def test_each_problem_is_one_line(tmp_path: Path) -> None:
    data = json.loads((EXAMPLES / "cpu_small.json").read_text())
    data["stages"][1]["colour"] = "red"
    data["stages"][2]["kernel"] = 9
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(data))
    assert _problems(run("profile", str(spec))) == [f"error: {spec}: stages[1].colour: unknown field"]
    del data["stages"][1]["colour"]
    data["stages"][3]["width"] = 200
    spec.write_text(json.dumps(data))
    assert _problems(run("profile", str(spec))) == [
        f"error: {spec}: stages[2].kernel: 9 is not one of [3, 5, 7]",
        f"error: {spec}: stages[3].width: 200 is not one of [16, 24, 32, 48, 64, 96, 128, 160]",
    ]


def test_bad_arguments_are_one_line(tmp_path: Path) -> None:
    assert _problems(run("profile", str(tmp_path / "missing.json"))) == [
        f"error: {tmp_path / 'missing.json'}: no such file"
    ]
    lines = _problems(run("profile", str(EXAMPLES / "cpu_small.json"), "--budget-sram", "lots"))
    assert lines == ["error: --budget-sram: cannot read 'lots' as bytes; write e.g. 320KB"]
    assert _problems(run("space", "show", "nope")) == [
        "error: unknown space 'nope'; built in: mcu, nats-tss, or a .yaml path"
    ]


def test_space_show_and_sample() -> None:
    shown = run("space", "show", "mcu")
    assert shown.returncode == 0 and "stages[i].kernel" in shown.stdout and "max_total_stride" in shown.stdout
    schema = json.loads(run("space", "show", "mcu", "--schema").stdout)
    assert schema["properties"]["stages"]["maxItems"] == 5
    sampled = run("space", "sample", "mcu", "-n", "3", "--seed", "7", "--json")
    assert sampled.returncode == 0
    assert len(sampled.stdout.strip().splitlines()) == 3
    table = run("space", "sample", "mcu", "-n", "2")
    assert table.returncode == 0 and "peak SRAM" in table.stdout


def _rgb_spec_file(tmp_path: Path) -> Path:
    data = json.loads((EXAMPLES / "cpu_small.json").read_text())
    path = tmp_path / "rgb.json"
    path.write_text(json.dumps({**data, "in_channels": 3}))
    return path


def train_with_teacher(tmp_path: Path, checkpoint: Path, out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    """`tinyarch train` of the small example in RGB on synthetic data for one epoch, distilled from `checkpoint`."""
    spec = str(_rgb_spec_file(tmp_path))
    common = ["--dataset", "synthetic", "--epochs", "1", "--teacher-cache", str(tmp_path / "cache")]
    return run("train", spec, *common, "--teacher", str(checkpoint), "--out", str(out), *flags)


def test_train_and_teacher_commands(tmp_path: Path) -> None:
    teacher = run(
        "teacher",
        "train",
        "--dataset",
        "synthetic",
        "--model",
        "test_resnet",
        "--input-size",
        "16",  # at 64 px or less the ResNet keeps full resolution through its stem: small stays fast
        "--recipe",
        "proxy",
        "--epochs",
        "1",
        "--out",
        str(tmp_path / "teacher"),
    )
    assert teacher.returncode == 0, teacher.stderr
    checkpoint = tmp_path / "teacher" / "teacher.safetensors"
    assert checkpoint.is_file() and checkpoint.with_suffix(".json").is_file()

    res = train_with_teacher(tmp_path, checkpoint, tmp_path / "model", "--test")
    assert res.returncode == 0, res.stderr
    assert "validation top-1" in res.stdout and "test top-1" in res.stdout
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["status"] == "ok" and "test_acc" in metrics
    assert (tmp_path / "model" / "curve.png").is_file()


def test_train_errors_are_one_line(tmp_path: Path) -> None:
    spec = str(EXAMPLES / "cpu_small.json")
    lines = _problems(run("train", spec, "--dataset", "cifar10", "--data-dir", str(tmp_path)))
    assert len(lines) == 1 and lines[0].startswith(
        f"error: cifar10 not found: expected torchvision's layout at {tmp_path}"
    )
    assert _problems(run("train", spec, "--recipe", "long")) == ["error: --recipe: 'long' is not one of proxy, full"]
    missing = tmp_path / "vit.pth"
    lines = _problems(run("train", str(_rgb_spec_file(tmp_path)), "--dataset", "synthetic", "--teacher", str(missing)))
    assert len(lines) == 1 and f"teacher checkpoint {missing} not found" in lines[0]
