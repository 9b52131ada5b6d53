"""A search run's configuration: one pydantic model, read from RUN.yaml and overridable by flags."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from tinyarch.core.budget import COST_BUDGETS, Bytes, Count, limit_field

BOARDS = ("host", "mps2-an500", "stm32h743")
"""The boards a firmware project builds for (firmware/boards/)."""


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

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", description="Run name (runs/NAME)")
    space: str = Field(default="nats-tss", description="Search space: mcu | nats-tss | a YAML path")
    dataset: str = Field(default="cifar100", description="Dataset (nats: cifar10 | cifar100 | imagenet16-120)")
    strategy: Literal["llm", "screened", "local", "rea", "bo", "nsga2", "random"] = Field(
        default="llm",
        description="llm: the Designer agent; screened: its loop with random edits in place of the LLM (the "
        "ablation); local, rea, bo, nsga2, random: classic searches",
    )
    llm: str = Field(
        default="llamacpp:qwen2.5-coder-0.5b", description="llamacpp:[NAME|PATH] | ollama:MODEL | openai:MODEL"
    )
    llm_url: str | None = Field(default=None, description="The LLM server's URL")
    evaluator: Literal["nats", "proxy"] = Field(
        default="nats", description="nats: NATS-Bench table lookups; proxy: short training runs"
    )
    nats_table: Path | None = Field(
        default=None, description="nats_tss_accuracy.csv (default: $TINYARCH_NATS_TABLE, then ../shared/data/)"
    )
    data_dir: Path | None = Field(default=None, description="Data root (default: $TINYARCH_DATA)")
    proxy_epochs: int | None = Field(default=None, description="Epochs of the proxy recipe")
    proxy_images: int | None = Field(default=None, ge=1, description="Train proxies on this many images")
    batch: int = Field(default=4, ge=1, le=16, description="Candidates proposed per iteration")
    budget_evals: int = Field(default=20, ge=1, description="Evaluations before stopping")
    budget_time: float | None = Field(
        default=None, description="Wall time before stopping, e.g. 8h, 90m or 45s (seconds in a config file)"
    )
    max_iterations: int | None = Field(
        default=None,
        ge=1,
        description="Stop after this many iterations (default: none; the run stops at its budgets, or when "
        "no new candidate was evaluated for 50 iterations in a row)",
    )
    sram: Bytes = limit_field("peak_sram")
    flash: Bytes = limit_field("flash")
    macs: Count = limit_field("macs")
    final_top_k: int = Field(default=0, description="Front members trained in full at the end")
    final_epochs: int | None = Field(default=None, description="Epochs of the full recipe at the end")
    deploy_board: str | None = Field(
        default="mps2-an500",
        description=f"Finalize deploys each trained winner to this board: {' | '.join(BOARDS)} (none: no firmware)",
    )
    teacher: Path | None = Field(default=None, description="Teacher checkpoint for knowledge distillation")
    distill: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="With a teacher, finalize distils: auto: only when the teacher's validation top-1 leads the "
        "student trained alone by a point (keeping the better of the two); always; never",
    )
    kd_temperature: float = Field(default=10.0, gt=0, description="Distillation temperature T")
    kd_alpha_start: float = Field(default=0.4, ge=0, le=1, description="Weight of the teacher's loss at epoch 1")
    kd_alpha_end: float = Field(
        default=0.8, ge=0, le=1, description="Weight of the teacher's loss at the last epoch (a linear ramp)"
    )
    seed: int = Field(default=0, description="Seed of the strategy, the LLM and training")
    memory: Literal["on", "off"] = Field(
        default="on",
        description="on: recall architectures earlier runs evaluated with the same evaluator settings, at no budget "
        "cost, and store this run's; off: an independent run (what benchmarks use)",
    )
    memory_path: Path | None = Field(default=None, description="Chroma folder (default: $TINYARCH_CACHE/memory)")
    memory_url: str | None = Field(default=None, description="Chroma server URL (default: a local folder)")
    use_explanations: bool = Field(default=True, description="Give the agents the design-effect explanations")
    executor: Literal["local", "ray"] = Field(default="local", description="Where candidate evaluations run")
    ray_address: str | None = Field(
        default=None, description="auto | ray://HOST:PORT | HOST:PORT (none: a Ray instance on this machine)"
    )
    cpus_per_trial: float = Field(default=1.0, gt=0, description="CPUs Ray reserves for each evaluation")
    gpus_per_trial: float = Field(default=0.0, ge=0, description="GPUs Ray reserves for each evaluation")
    max_retries: int = Field(default=3, ge=0, description="Reruns of an evaluation whose Ray worker died")
    outage_wait: float = Field(
        default=600.0,
        ge=0,
        description="How long the run waits for an unreachable LLM or Chroma server before it stops, resumable "
        "(e.g. 10m or 90s; seconds in a config file)",
    )

    @field_validator("deploy_board", mode="before")
    @classmethod
    def _board(cls, v: object) -> object:
        if v == "none":
            return None
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

    @field_validator("budget_time", "outage_wait", mode="before")
    @classmethod
    def _duration(cls, v: object) -> object:
        return parse_duration(v) if isinstance(v, str) else v

    def limits(self, tightened: Mapping[str, float] | None = None) -> dict[str, float | None]:
        """Budget limits keyed by the cost names of `SearchSpace.cost`, each tightened by the user's
        directives where `tightened` (a state's or a chat's `limits`) has a lower one."""
        configured = {key: getattr(self, budget) for key, budget in COST_BUDGETS.items()}
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
