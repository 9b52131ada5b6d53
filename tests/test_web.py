"""`tinyarch serve`'s API on a real finished NATS run: reading, steering, starting runs, and its guards."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import finished_nats_run, free_port, wait_for_port
from tinyarch.agents.runner import run_search
from tinyarch.core.config import RunConfig
from tinyarch.core.rundir import RunDir
from tinyarch.interfaces.web.app import create_app

NAME = "web"
TOKEN = "s3cret-token-for-tests-0123456789"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished random search on the NATS table (seconds)."""
    return finished_nats_run(tmp_path_factory.mktemp("web"), NAME, budget_evals=12, batch=4)


@pytest.fixture
def client(runs: Path) -> TestClient:
    return TestClient(create_app(runs), base_url="http://127.0.0.1")


def test_the_live_view_matches_the_run(client: TestClient, runs: Path) -> None:
    [summary] = client.get("/api/runs").json()
    assert summary["name"] == NAME and summary["status"] == "finished" and summary["evaluated"] == 12
    live = client.get(f"/api/runs/{NAME}").json()
    evaluations = RunDir(runs / NAME).finished_evaluations()
    assert {p["id"] for p in live["points"]} == set(evaluations)
    assert live["best_accuracy"] == max(r["metrics"]["accuracy"] for r in evaluations.values())
    assert [a["key"] for a in live["axes"]] == ["macs"] and live["optimum"] > live["best_accuracy"]
    assert len(live["hypervolume"]) == live["iteration"] and any(p["front"] for p in live["points"])
    assert {a["agent"] for a in live["agents"]} >= {"design", "evaluate", "analyse", "critique"}
    assert live["now"].startswith("finished: evaluation budget spent")


def test_traces_filter_like_the_terminal(client: TestClient) -> None:
    everything = client.get(f"/api/runs/{NAME}/traces").json()
    assert everything["total"] == len(everything["steps"]) and everything["iterations"][0] == 0
    evaluate = client.get(f"/api/runs/{NAME}/traces", params={"agent": "evaluate", "iteration": 1}).json()
    assert evaluate["total"] == 4 and all(s["agent"] == "evaluate" and s["iteration"] == 1 for s in evaluate["steps"])
    assert "accuracy" in evaluate["steps"][0]["title"]
    page = client.get(f"/api/runs/{NAME}/traces", params={"offset": 2, "limit": 3}).json()
    assert [s["index"] for s in page["steps"]] == [s["index"] for s in everything["steps"][2:5]]


def test_candidate_pages_and_downloads_stay_inside_the_run(client: TestClient, runs: Path) -> None:
    best = client.get(f"/api/runs/{NAME}").json()["best_id"]
    page = client.get(f"/api/runs/{NAME}/candidates/{best}").json()
    assert (
        page["status"] == "evaluated"
        and page["spec"]["edge_1_0"]
        and page["layers"] == []
        and page["costs"][0][0] == "MACs"
    )
    assert client.get(f"/api/runs/{NAME}/candidates/ffffffffffff").status_code == 404
    assert client.get(f"/api/runs/{NAME}/candidates/not-an-id").status_code == 422
    (runs / "secret.txt").write_text("no")
    for path in ("../../secret.txt", "..%2F..%2Fsecret.txt", "%2E%2E/%2E%2E/secret.txt", "/etc/passwd"):
        assert client.get(f"/api/runs/{NAME}/files/{path}").status_code == 404, path
    assert client.get("/api/runs/nope").status_code == 404


def test_chat_and_buttons_post_to_the_inbox(client: TestClient, runs: Path) -> None:
    reply = client.post(f"/api/runs/{NAME}/chat", json={"line": "stay under 20 M MACs"}).json()["reply"]
    assert "MACs <= 20.00 M" in reply and "not running" in reply
    assert client.post(f"/api/runs/{NAME}/control", json={"action": "pause"}).json()["reply"].startswith("pause sent")
    assert "/pause" in client.post(f"/api/runs/{NAME}/chat", json={"line": "/help"}).json()["reply"]
    inbox = RunDir(runs / NAME).read_inbox()
    assert [m["kind"] for m in inbox[-2:]] == ["directive", "pause"] and inbox[-2]["limits"] == {"macs": 20e6}
    live = client.get(f"/api/runs/{NAME}").json()
    assert live["waiting"][-2:] == ["stay under 20 M MACs", "pause"] and "MACs <= 20.00 M" in live["limits"]
    assert client.post(f"/api/runs/{NAME}/control", json={"action": "explode"}).status_code == 422
    assert client.post(f"/api/runs/{NAME}/continue").status_code == 409  # finished: nothing to resume


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("name: [unclosed", "config is not YAML"),
        ("- a list", "config must be a YAML mapping"),
        (
            "name: ok\nstrategy: genius",
            "strategy: Input should be 'llm', 'screened', 'local', 'rea', 'bo', 'nsga2' or 'random'",
        ),
        ("name: ../escape", "name: String should match pattern"),
        ("name: ok\nbatch: 0\nwings: 2", "batch: Input should be greater than or equal to 1"),
        (f"name: {NAME}", f"run '{NAME}' exists"),
    ],
)
def test_a_bad_config_is_a_clear_message(client: TestClient, runs: Path, config: str, message: str) -> None:
    response = client.post("/api/runs", json={"config": config})
    assert response.status_code in (409, 422) and message in json.dumps(response.json()["detail"])
    assert not (runs / "ok").exists() and not (runs.parent / "escape").exists()


def test_a_started_search_runs_in_its_own_process(client: TestClient, runs: Path) -> None:
    config = f"name: started\nstrategy: random\nbudget_evals: 4\nbatch: 2\nmemory_path: {runs.parent / 'mem2'}\n"
    response = client.post("/api/runs", json={"config": config})
    assert response.status_code == 201 and response.json() == {"name": "started", "status": "starting"}
    deadline = time.monotonic() + 180
    while (status := client.get("/api/runs/started").json()["status"]) != "finished":
        assert status in ("starting", "running") and time.monotonic() < deadline, status
        time.sleep(0.5)
    assert client.get("/api/runs/started").json()["evaluated"] == 4
    assert (runs / "started" / "search.log").is_file() and (runs / "started" / "report.html").is_file()


def test_a_search_that_cannot_start_shows_why(client: TestClient, runs: Path) -> None:
    missing = runs.parent / "no-cifar"
    config = f"name: doomed\nspace: mcu\nevaluator: proxy\ndataset: cifar10\nstrategy: random\ndata_dir: {missing}\n"
    assert client.post("/api/runs", json={"config": config}).status_code == 201
    deadline = time.monotonic() + 120
    while (live := client.get("/api/runs/doomed").json())["status"] == "starting":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert live["status"] == "not running" and any("error:" in line for line in live["log_tail"])
    assert f"cifar10 not found: expected torchvision's layout at {missing}" in "".join(live["log_tail"])


def test_the_token_guards_the_api_but_not_the_page_shell(runs: Path) -> None:
    client = TestClient(create_app(runs, token=TOKEN, host="0.0.0.0"), base_url="http://192.0.2.1")
    assert client.get("/api/runs").status_code == 401
    assert client.get("/api/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/runs", params={"token": TOKEN[:-1]}).status_code == 401
    assert client.post(f"/api/runs/{NAME}/control", json={"action": "stop"}).status_code == 401
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert client.get(f"/api/runs/{NAME}", params={"token": TOKEN}).status_code == 200
    assert client.get("/").status_code == 200 and client.get("/static/app.js").status_code == 200


def test_loopback_refuses_other_hosts_and_cross_site_posts(client: TestClient) -> None:
    assert client.get("/api/runs", headers={"Host": "attacker.example"}).status_code == 403  # DNS rebinding
    hostile = {"Origin": "http://attacker.example"}
    assert client.post(f"/api/runs/{NAME}/control", json={"action": "stop"}, headers=hostile).status_code == 403
    same = {"Origin": "http://127.0.0.1"}
    assert client.post(f"/api/runs/{NAME}/control", json={"action": "resume"}, headers=same).status_code == 200


def test_serve_off_loopback_prints_a_token_and_refuses_without_it(runs: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tinyarch.interfaces.cli",
            "serve",
            "--host",
            "0.0.0.0",
            "--port",
            str(port),
            "--runs-dir",
            str(runs),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline() if server.stdout else ""
        token = line.split("?token=")[1].split()[0]
        wait_for_port(port)
        import httpx

        assert httpx.get(f"http://127.0.0.1:{port}/api/runs").status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/api/runs", params={"token": "x" * 32}).status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/api/runs", params={"token": token}).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serve_rejects_a_short_token(runs: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tinyarch.interfaces.cli", "serve", "--token", "short", "--runs-dir", str(runs)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "--token: use at least 16 characters" in result.stderr


def test_a_trained_candidate_page_has_curves_layers_firmware_and_downloads(tmp_path: Path) -> None:
    """A real proxy run on synthetic data whose winner is trained again and deployed to the host board."""
    config = RunConfig(
        name="trained",
        space="mcu",
        dataset="synthetic",
        evaluator="proxy",
        strategy="random",
        budget_evals=1,
        macs="10M",
        proxy_epochs=1,
        final_top_k=1,
        final_epochs=1,
        deploy_board="host",
        memory_path=tmp_path / "mem",
    )
    state = run_search(config, tmp_path / "runs")
    client = TestClient(create_app(tmp_path / "runs"), base_url="http://127.0.0.1")
    winner = state["final"][0]["id"]
    page = client.get(f"/api/runs/trained/candidates/{winner}").json()
    assert page["front"] and page["layers"][0]["name"] == "stem" and sum(x["macs"] for x in page["layers"]) > 0
    assert set(page["curves"]) == {winner, f"{winner}-full"} and page["curves"][winner][0]["epoch"] == 1
    assert f"{winner}/curve.png" in page["images"]
    [firmware] = page["firmware"]
    assert firmware["ok"], firmware
    assert dict(firmware["figures"])["bit-exact vs TFLM"] == "8/8 images"
    files = {f["path"] for f in page["files"]}
    assert f"{winner}/weights.safetensors" in files and any(p.endswith("model.c") for p in files)
    assert not any(p.endswith(("optimizer.safetensors", "state.json")) for p in files)
    weights = client.get(f"/api/runs/trained/files/{winner}/weights.safetensors")
    assert (
        weights.status_code == 200
        and weights.content == (tmp_path / "runs/trained/candidates" / winner / "weights.safetensors").read_bytes()
    )
    archive = client.get(f"/api/runs/trained/candidates/{winner}/archive")
    assert set(zipfile.ZipFile(io.BytesIO(archive.content)).namelist()) == files
