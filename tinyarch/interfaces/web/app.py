"""`tinyarch serve`: a browser front end on the run directories, with the terminal's state and agents.

Reading goes through the same readers as `report` and `trace`; chat lines, pause, resume and stop go
through `Chat`, whose directives and commands reach a search through its inbox; a search started here
is the same `tinyarch search` process the terminal runs, detached, so stopping the server never stops
a search. Off the loopback interface every API call needs the token (`--token`, or one generated and
printed at start).
"""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path
from typing import Annotated

import yaml
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError

from tinyarch.agents.llm import StructuredLLM
from tinyarch.core.config import RunConfig, error_lines
from tinyarch.interfaces.chat import Chat
from tinyarch.interfaces.web import views
from tinyarch.interfaces.web.models import (
    CANDIDATE_ID,
    RUN_NAME,
    CandidateDetail,
    ChatLine,
    ControlAction,
    Reply,
    RunLive,
    RunSummary,
    Started,
    StartRequest,
    TracePage,
)

STATIC = resources.files("tinyarch.interfaces.web") / "static"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
RunName = Annotated[str, PathParam(pattern=RUN_NAME, max_length=63)]
CandidateId = Annotated[str, PathParam(pattern=CANDIDATE_ID)]


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


class Searches:
    """`tinyarch search` processes this server started, detached into their own sessions."""

    def __init__(self, runs_root: Path):
        self.runs_root = runs_root
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> None:
        log = (self.runs_root / name / "search.log").open("ab")
        command = [sys.executable, "-m", "tinyarch.interfaces.cli", "search", *args, "--runs-dir", str(self.runs_root)]
        self.processes[name] = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "COLUMNS": "160", "TERM": "dumb"},
        )
        log.close()

    def starting(self, name: str) -> bool:
        """Started here and not exited yet (it locks search.lock once its evaluator and LLM are loaded)."""
        process = self.processes.get(name)
        return process is not None and process.poll() is None


def create_app(
    runs_root: Path,
    token: str | None = None,
    host: str = "127.0.0.1",
    chat_llm: StructuredLLM | None = None,
    searches: Searches | None = None,
) -> FastAPI:
    """The app serving the runs under `runs_root`; `chat_llm` replaces each run's own LLM for questions."""
    runs_root.mkdir(parents=True, exist_ok=True)
    searches = searches or Searches(runs_root)
    chats: dict[str, Chat] = {}
    app = FastAPI(title="tinyarch", version="1", docs_url=None, redoc_url=None)
    allowed_hosts = {host, *LOOPBACK} if is_loopback(host) else None

    @app.middleware("http")
    async def guard(request: Request, call_next):  # type: ignore[no-untyped-def]
        """Token (when set), Host (on loopback: no DNS rebinding) and Origin (no cross-site posts) checks."""
        if allowed_hosts is not None and (request.url.hostname or "") not in allowed_hosts:
            return JSONResponse({"detail": "unknown Host header"}, status_code=403)
        origin = request.headers.get("origin")
        if origin and origin.split("://", 1)[-1] != request.headers.get("host"):
            return JSONResponse({"detail": "cross-origin requests are refused"}, status_code=403)
        # The page shell and its script carry no run data; the API needs the token when one is set.
        public = request.url.path == "/" or request.url.path.startswith("/static/")
        if token and not public:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            given = given or request.query_params.get("token", "")
            if not secrets.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"detail": "a valid token is required"}, status_code=401)
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    def root_of(name: str) -> Path:
        root = runs_root / name
        if not (root / "config.yaml").is_file():
            raise HTTPException(404, f"no run {name!r}")
        return root

    def readable(read, *args):  # type: ignore[no-untyped-def]
        """A run directory that cannot be read (a broken config or checkpoint) is a 409 with the reason."""
        try:
            return read(*args)
        except (ValueError, OSError, yaml.YAMLError) as e:
            raise HTTPException(409, f"run directory unreadable: {type(e).__name__}: {e}"[:500]) from None

    def chat_for(name: str) -> Chat:
        root = root_of(name)
        if name not in chats:
            chats[name] = readable(Chat, root, chat_llm)
        return chats[name]

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text())

    @app.get("/api/runs", response_model=list[RunSummary])
    def list_runs() -> list[RunSummary]:
        roots = sorted((d for d in runs_root.iterdir() if (d / "config.yaml").is_file()), key=lambda d: d.name)
        return [views.summary(root, searches.starting(root.name)) for root in roots]

    @app.post("/api/runs", response_model=Started, status_code=201, responses={409: {}, 422: {}})
    def start_run(body: StartRequest) -> Started:
        """Validate a RUN.yaml and start `tinyarch search --config` on it."""
        try:
            data = yaml.safe_load(body.config)
        except yaml.YAMLError as e:
            raise HTTPException(422, [f"config is not YAML: {str(e).splitlines()[0]}"]) from None
        if not isinstance(data, dict):
            raise HTTPException(422, ["config must be a YAML mapping of RunConfig keys (name: ..., space: ...)"])
        try:
            config = RunConfig.model_validate(data)
        except ValidationError as e:
            raise HTTPException(422, error_lines(e)) from None
        root = runs_root / config.name
        if (root / "config.yaml").is_file():
            raise HTTPException(409, f"run {config.name!r} exists; pick another name")
        root.mkdir(parents=True)
        config.save(root / "config.yaml")
        searches.start(config.name, "--config", str(root / "config.yaml"))
        return Started(name=config.name, status="starting")

    @app.post("/api/runs/{name}/continue", response_model=Started, responses={404: {}, 409: {}})
    def continue_run(name: RunName) -> Started:
        """Resume a run whose search process is gone (killed, or the machine restarted)."""
        status = readable(views.summary, root_of(name), searches.starting(name)).status
        if status != "not running":
            raise HTTPException(409, f"run {name!r} is {status}")
        searches.start(name, "--resume", name)
        return Started(name=name, status="starting")

    @app.get("/api/runs/{name}", response_model=RunLive, responses={404: {}, 409: {}})
    def run_live(name: RunName) -> RunLive:
        return readable(views.live, chat_for(name), searches.starting(name))

    @app.get("/api/runs/{name}/traces", response_model=TracePage, responses={404: {}})
    def run_traces(
        name: RunName,
        iteration: Annotated[int | None, Query(ge=0)] = None,
        agent: Annotated[list[str] | None, Query(max_length=20)] = None,
        errors: bool = False,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> TracePage:
        return views.traces(root_of(name), iteration, agent or [], errors, offset, limit)

    @app.get("/api/runs/{name}/candidates/{candidate_id}", response_model=CandidateDetail, responses={404: {}})
    def candidate(name: RunName, candidate_id: CandidateId) -> CandidateDetail:
        detail = readable(views.candidate, root_of(name), candidate_id)
        if detail is None:
            raise HTTPException(404, f"no candidate {candidate_id!r} in run {name!r}")
        return detail

    @app.get("/api/runs/{name}/files/{path:path}", responses={200: {"content": {"application/octet-stream": {}}}})
    def download(name: RunName, path: Annotated[str, PathParam(max_length=500)]) -> FileResponse:
        """One file of a candidate's model directories (weights, metrics, plots, firmware project)."""
        base = (root_of(name) / "candidates").resolve()
        target = (base / path).resolve()
        if not target.is_relative_to(base) or not target.is_file():
            raise HTTPException(404, f"no file {path!r} in run {name!r}")
        inline = target.suffix in (".png", ".json", ".txt")
        return FileResponse(target, filename=target.name, content_disposition_type="inline" if inline else "attachment")

    @app.get(
        "/api/runs/{name}/candidates/{candidate_id}/archive",
        responses={200: {"content": {"application/zip": {}}}, 404: {}},
    )
    def archive(name: RunName, candidate_id: CandidateId) -> Response:
        """All of a candidate's downloadable files as one zip (model directories, firmware projects)."""
        detail = candidate(name, candidate_id)
        base = root_of(name) / "candidates"
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for entry in detail.files:
                zf.write(base / entry.path, entry.path)
        headers = {"Content-Disposition": f'attachment; filename="{name}-{candidate_id}.zip"'}
        return Response(buffer.getvalue(), media_type="application/zip", headers=headers)

    @app.get("/api/runs/{name}/report", response_class=HTMLResponse, responses={404: {}})
    def report(name: RunName) -> HTMLResponse:
        """The run's self-contained HTML report, rendered now (its own CSP admits only its script)."""
        from tinyarch.core.rundir import load_run
        from tinyarch.interfaces.report import render

        return HTMLResponse(readable(lambda root: render(load_run(root)), root_of(name)))

    @app.post("/api/runs/{name}/chat", response_model=Reply, responses={404: {}, 503: {}})
    def chat(name: RunName, body: ChatLine) -> Reply:
        """What `tinyarch chat` answers to the line: a command, a directive, or a question for the LLM."""
        from tinyarch.agents.backends.base import LLMUnavailable
        from tinyarch.core.outage import ServiceDown

        session = chat_for(name)
        try:
            return Reply(reply=readable(session.handle, body.line))
        except EOFError:
            return Reply(reply="(nothing to quit here: close the tab; the search goes on)")
        except (LLMUnavailable, ServiceDown) as e:
            raise HTTPException(503, str(e)) from None

    @app.post("/api/runs/{name}/control", response_model=Reply, responses={404: {}})
    def control(name: RunName, body: ControlAction) -> Reply:
        """Pause, resume or stop: the chat's own commands."""
        return Reply(reply=chat_for(name).handle(f"/{body.action}"))

    app.mount("/static", StaticFiles(packages=[("tinyarch.interfaces.web", "static")]), name="static")
    return app


def serve(runs_root: Path, host: str, port: int, token: str | None) -> None:
    """Run the app with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(runs_root, token, host), host=host, port=port, log_level="warning")


def new_token() -> str:
    return secrets.token_urlsafe(24)
