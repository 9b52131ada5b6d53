"""The web API's request and response bodies: the schema the page, the OpenAPI document and the fuzz test share."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

RUN_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
"""RunConfig's name pattern: a run name is also a directory name."""
CANDIDATE_ID = r"^[0-9a-f]{12}$"
RunStatus = Literal["starting", "running", "paused", "finished", "not running"]


class RunSummary(BaseModel):
    name: str
    status: RunStatus
    space: str = ""
    dataset: str = ""
    strategy: str = ""
    evaluator: str = ""
    iteration: int = 0
    evaluated: int = 0
    budget_evals: int = 0
    best_accuracy: float | None = None
    best_id: str | None = None
    error: str = ""
    """Why the run directory could not be read (a broken config.yaml), when it could not."""


class AgentActivity(BaseModel):
    agent: str
    line: str
    seconds_ago: float
    error: bool


class Point(BaseModel):
    """An evaluated candidate on the Pareto plot."""

    id: str
    accuracy: float
    costs: dict[str, float]
    front: bool
    iteration: int | None
    recalled: str = ""
    """The earlier run memory recalled it from (no budget spent); "" when evaluated in this run."""


class Axis(BaseModel):
    key: str
    label: str
    unit: str
    divisor: float
    limit: float | None


class RunLive(RunSummary):
    """Everything the live view shows; the page polls it."""

    settings: list[tuple[str, str]]
    failed: int
    rejected: int
    recalled: int
    hypervolume: list[float]
    now: str
    agents: list[AgentActivity]
    limits: str
    directives: list[str]
    waiting: list[str]
    evaluating: list[str]
    points: list[Point]
    axes: list[Axis]
    optimum: float | None
    stop_reason: str
    log_tail: list[str]
    notes: list[str]


class TraceStep(BaseModel):
    index: int
    iteration: int
    agent: str
    seconds: float
    """Since the run's first trace record."""
    error: bool
    llm: bool
    title: str
    detail: str = ""
    raw: str = ""
    errors: list[str] = []
    messages: list[dict[str, Any]] = []


class TracePage(BaseModel):
    total: int
    """Records that pass the filters; `steps` is the page of them from `offset`."""
    iterations: list[int]
    agents: list[str]
    steps: list[TraceStep]


class FileEntry(BaseModel):
    path: str
    """Relative to the run's candidates/ directory, as the download route takes it."""
    bytes: int


class Layer(BaseModel):
    name: str
    kind: str
    out_shape: tuple[int, int, int]
    macs: int
    params: int
    live_bytes: int
    latency_ms: float


class CandidateDetail(BaseModel):
    id: str
    status: str
    summary: str
    iteration: int | None
    source: str
    reason: str
    front: bool
    spec: dict[str, Any]
    metrics: dict[str, float]
    costs: list[tuple[str, str]]
    layers: list[Layer]
    curves: dict[str, list[dict[str, float]]]
    """Training history per model directory (the proxy and, once finalized, the full recipe)."""
    explanation: str
    images: list[str]
    firmware: list[dict[str, Any]]
    files: list[FileEntry]


class ChatLine(BaseModel):
    line: str = Field(min_length=1, max_length=2000)


class ControlAction(BaseModel):
    action: Literal["pause", "resume", "stop"]


class Reply(BaseModel):
    reply: str


class StartRequest(BaseModel):
    config: str = Field(min_length=1, max_length=20_000, description="A run configuration in YAML (RUN.yaml).")


class Started(BaseModel):
    name: str
    status: RunStatus
