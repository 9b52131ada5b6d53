"""A search run's configuration: one pydantic model, read from RUN.yaml and overridable by flags."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from tinyarch.budget import Bytes, Count


def parse_duration(text: str | float | int | None) -> float | None:
    """'8h' -> 28800.0 seconds; '90m', '45s' and bare seconds work too."""
    if text is None or isinstance(text, int | float):
        return None if text is None else float(text)
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    try:
        return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except ValueError:
        raise ValueError(f"cannot read {text!r} as a duration; write e.g. 8h, 90m or 45s") from None


def error_lines(error: ValueError) -> list[str]:
    """One "field: problem" line per problem of a configuration that failed validation."""
    problems = error.errors() if isinstance(error, ValidationError) else [{"loc": (), "msg": str(error)}]
    return [f"{'.'.join(map(str, p['loc'])) or 'config'}: {p['msg']}" for p in problems]


class RunConfig(BaseModel):
    """Everything that defines a search; saved as `runs/NAME/config.yaml`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    space: str = "nats-tss"
    dataset: str = "cifar100"
    strategy: Literal["llm", "screened", "local", "rea", "bo", "nsga2", "random"] = Field(
        default="llm",
        description="llm: the Designer agent; screened: its loop with random edits in place of the LLM (the "
        "ablation); local, rea, bo, nsga2, random: classic searches",
    )
    llm: str = "llamacpp:qwen2.5-coder-0.5b"
    llm_url: str | None = None
    evaluator: Literal["nats", "proxy"] = "nats"
    nats_table: Path | None = None
    data_dir: Path | None = None
    proxy_epochs: int | None = None
    proxy_images: int | None = Field(default=None, ge=1, description="train proxies on this many images")
    batch: int = Field(default=4, ge=1, le=16, description="candidates proposed per iteration")
    budget_evals: int = Field(default=20, ge=1)
    budget_time: float | None = None
    max_iterations: int | None = Field(
        default=None,
        ge=1,
        description="stop after this many iterations (default: none; the run stops at its budgets, or when "
        "no new candidate was evaluated for 50 iterations in a row)",
    )
    sram: Bytes = None
    flash: Bytes = None
    macs: Count = None
    final_top_k: int = 0
    final_epochs: int | None = None
    deploy_board: str | None = Field(
        default="mps2-an500", description="finalize deploys each trained winner to this board (null: no firmware)"
    )
    teacher: Path | None = None
    seed: int = 0
    memory_path: Path | None = None
    memory_url: str | None = None
    use_explanations: bool = True
    executor: Literal["local", "ray"] = Field(default="local", description="where candidate evaluations run")
    ray_address: str | None = Field(
        default=None, description="auto | ray://HOST:PORT | HOST:PORT (none: a Ray instance on this machine)"
    )
    cpus_per_trial: float = Field(default=1.0, gt=0, description="CPUs Ray reserves for each evaluation")
    gpus_per_trial: float = Field(default=0.0, ge=0, description="GPUs Ray reserves for each evaluation")
    max_retries: int = Field(default=3, ge=0, description="reruns of an evaluation whose Ray worker died")

    @field_validator("deploy_board")
    @classmethod
    def _board(cls, v: str | None) -> str | None:
        from tinyarch.tools.deploy.emulator import BOARDS

        if v is not None and v not in BOARDS:
            raise ValueError(f"deploy_board must be one of {', '.join(BOARDS)} or null, not {v!r}")
        return v

    @field_validator("ray_address")
    @classmethod
    def _ray_address(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and info.data.get("executor") != "ray":
            raise ValueError("a Ray address needs executor ray (--executor ray)")
        if v is not None and v != "auto" and not re.fullmatch(r"(ray://)?[\w.-]+:\d{1,5}", v):
            raise ValueError(f"must be auto, ray://HOST:PORT or HOST:PORT, not {v!r}")
        return v

    @field_validator("budget_time", mode="before")
    @classmethod
    def _duration(cls, v: object) -> object:
        return parse_duration(v) if isinstance(v, str) else v

    def limits(self, tightened: Mapping[str, float] | None = None) -> dict[str, float | None]:
        """Budget limits keyed by the cost names of `SearchSpace.cost`, each tightened by the user's
        directives where `tightened` (a state's or a chat's `limits`) has a lower one."""
        configured = {"macs": self.macs, "peak_sram": self.sram, "flash": self.flash}
        tightened = tightened or {}
        return {
            k: min((v for v in (limit, tightened.get(k)) if v is not None), default=None)
            for k, limit in configured.items()
        }

    @classmethod
    def load(cls, path: Path, **overrides: object) -> RunConfig:
        data = yaml.safe_load(path.read_text()) or {}
        return cls.model_validate({**data, **{k: v for k, v in overrides.items() if v is not None}})

    def save(self, path: Path) -> None:
        path.write_text(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))
