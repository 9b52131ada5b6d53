"""Search spaces as data: allowed choices per field plus structural rules, loaded from YAML.

A space validates specs (every violation with its field path), exports a JSON Schema for
constrained LLM decoding, samples at random, and encodes a spec as a vector of choice indices
(for pymoo and for memory embeddings) and back.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from tinyarch.spec import ArchSpec, BlockType, Head, Stage, Stem

SECTIONS: dict[str, type[BaseModel]] = {"stem": Stem, "stage": Stage, "head": Head}
"""Each choice section of a space and the spec model whose fields it constrains."""


@dataclass(frozen=True)
class Violation:
    """One problem with a spec, located by its field path such as `stages[2].kernel`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SpecError(ValueError):
    """A spec that does not parse or does not belong to the space; carries every violation."""

    def __init__(self, violations: list[Violation]):
        self.violations = violations
        super().__init__("; ".join(map(str, violations)))


class SpaceRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_total_stride: int
    min_final_resolution: int = 1


class SearchSpace(BaseModel):
    """Allowed values for every spec field; `stage` applies to each of the `stage_count` stages."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    resolution: list[int]
    in_channels: list[int]
    stem: dict[str, list[Any]]
    stage_count: list[int]
    stage: dict[str, list[Any]]
    head: dict[str, list[Any]]
    rules: SpaceRules

    @model_validator(mode="after")
    def _choices_cover_fields(self) -> SearchSpace:
        """Every field of stem, stage and head needs a non-empty list of choices, and nothing else."""
        for section, model in SECTIONS.items():
            choices = getattr(self, section)
            expected = set(model.model_fields)
            if set(choices) != expected:
                raise ValueError(f"{section} must list choices for exactly {sorted(expected)}, got {sorted(choices)}")
            empty = [field for field, values in choices.items() if not values]
            if empty:
                raise ValueError(f"{section}: no choices for {empty}")
        return self

    # ------------------------------------------------------------------ validation

    def parse(self, data: str | dict[str, Any] | ArchSpec) -> ArchSpec:
        """A spec that belongs to this space, or SpecError listing every violation."""
        spec, violations = self._parse(data)
        if spec is not None:
            violations = self.violations(spec)
        if violations:
            raise SpecError(violations)
        assert spec is not None
        return spec

    def validate_spec(self, data: str | dict[str, Any] | ArchSpec) -> list[Violation]:
        """Every violation of `data` (JSON text, a dict or a spec); empty when it belongs to the space."""
        try:
            self.parse(data)
        except SpecError as err:
            return err.violations
        return []

    @staticmethod
    def _parse(data: str | dict[str, Any] | ArchSpec) -> tuple[ArchSpec | None, list[Violation]]:
        if isinstance(data, ArchSpec):
            return data, []
        try:
            if isinstance(data, str):
                return ArchSpec.model_validate_json(data), []
            return ArchSpec.model_validate(data), []
        except ValidationError as err:
            return None, [_violation_from_pydantic(e) for e in err.errors()]

    def violations(self, spec: ArchSpec) -> list[Violation]:
        """Choices and structural rules; assumes `spec` already parsed."""
        found: list[Violation] = []

        def check(path: str, value: Any, allowed: list[Any]) -> None:
            if value not in allowed:
                shown = value.value if hasattr(value, "value") else value
                found.append(Violation(path, f"{shown!r} is not one of {allowed}"))

        check("resolution", spec.resolution, self.resolution)
        check("in_channels", spec.in_channels, self.in_channels)
        for field in self.stem:
            check(f"stem.{field}", getattr(spec.stem, field), self.stem[field])
        for field in self.head:
            check(f"head.{field}", getattr(spec.head, field), self.head[field])
        if len(spec.stages) not in self.stage_count:
            found.append(Violation("stages", f"has {len(spec.stages)} stages, allowed counts are {self.stage_count}"))
        for i, stage in enumerate(spec.stages):
            for field, allowed in self.stage_choices(stage.block).items():
                check(f"stages[{i}].{field}", getattr(stage, field), allowed)

        total = spec.stem.stride * math.prod(st.stride for st in spec.stages)
        if total > self.rules.max_total_stride:
            found.append(Violation("stages", f"total stride {total} exceeds {self.rules.max_total_stride}"))
        final = final_resolution(spec)
        if final < self.rules.min_final_resolution:
            found.append(
                Violation("resolution", f"last feature map is {final}px, below {self.rules.min_final_resolution}px")
            )
        return found

    def stage_choices(self, block: BlockType | str) -> dict[str, list[Any]]:
        """The stage choices for one block type; depthwise-separable blocks have no expansion (always 1)."""
        block = BlockType(block)
        return {
            **self.stage,
            "block": [block.value],
            "expansion": [1] if block is BlockType.dsconv else self.stage["expansion"],
        }

    # ------------------------------------------------------------------ LLM schema

    def json_schema(self, num_classes: int | None = None, in_channels: int | None = None) -> dict[str, Any]:
        """JSON Schema whose enums are this space's choices; fixes the task-given fields when passed."""

        def section(choices: dict[str, list[Any]]) -> dict[str, Any]:
            return {
                "type": "object",
                "properties": {field: {"enum": values} for field, values in choices.items()},
                "required": list(choices),
                "additionalProperties": False,
            }

        return {
            "title": f"ArchSpec in space {self.name}",
            "type": "object",
            "properties": {
                "resolution": {"enum": self.resolution},
                "in_channels": {"enum": [in_channels] if in_channels else self.in_channels},
                "num_classes": {"enum": [num_classes]} if num_classes else {"type": "integer", "minimum": 2},
                "stem": section(self.stem),
                "stages": {
                    "type": "array",
                    "items": {"anyOf": [section(self.stage_choices(b)) for b in self.stage["block"]]},
                    "minItems": min(self.stage_count),
                    "maxItems": max(self.stage_count),
                },
                "head": section(self.head),
            },
            "required": ["resolution", "in_channels", "num_classes", "stem", "stages", "head"],
            "additionalProperties": False,
        }

    # ------------------------------------------------------------------ sampling

    def sample(
        self, rng: random.Random, num_classes: int, in_channels: int | None = None, max_tries: int = 10_000
    ) -> ArchSpec:
        """A uniformly drawn spec that satisfies the rules (rejection sampling)."""
        for _ in range(max_tries):
            vector = [rng.randrange(len(choices)) for _, choices in self.slots()]
            spec = self.decode(vector, num_classes)
            if in_channels is not None:
                spec = spec.model_copy(update={"in_channels": in_channels})
            if not self.violations(spec):
                return spec
        raise RuntimeError(f"space {self.name}: no valid spec in {max_tries} draws; are its rules satisfiable?")

    # ------------------------------------------------------------------ numeric encoding

    def slots(self) -> list[tuple[str, list[Any]]]:
        """The encoding's positions in order: a field path and its choices (stages padded to the max count)."""
        out: list[tuple[str, list[Any]]] = [("resolution", self.resolution), ("in_channels", self.in_channels)]
        out += [(f"stem.{f}", v) for f, v in self.stem.items()]
        out.append(("stage_count", self.stage_count))
        for i in range(max(self.stage_count)):
            out += [(f"stages[{i}].{f}", v) for f, v in self.stage.items()]
        out += [(f"head.{f}", v) for f, v in self.head.items()]
        return out

    def encode(self, spec: ArchSpec) -> list[int]:
        """Choice indices, one per slot; unused stage slots and dsconv's expansion encode as 0."""
        values: dict[str, Any] = {
            "resolution": spec.resolution,
            "in_channels": spec.in_channels,
            "stage_count": len(spec.stages),
        }
        values.update({f"stem.{f}": getattr(spec.stem, f) for f in self.stem})
        values.update({f"head.{f}": getattr(spec.head, f) for f in self.head})
        for i, stage in enumerate(spec.stages):
            values.update({f"stages[{i}].{f}": getattr(stage, f) for f in self.stage})
        vector = []
        for path, choices in self.slots():
            value = values.get(path, choices[0])
            if value not in choices and value == 1 and path.endswith(".expansion"):  # dsconv has none
                value = choices[0]
            if value not in choices:
                raise SpecError([Violation(path, f"{value!r} is not one of {choices}")])
            vector.append(choices.index(value))
        return vector

    def decode(self, vector: list[int], num_classes: int) -> ArchSpec:
        """The spec whose choice indices are `vector` (any ints; each is clipped into its slot's range)."""
        slots = self.slots()
        if len(vector) != len(slots):
            raise ValueError(f"space {self.name} encodes {len(slots)} slots, got a vector of {len(vector)}")
        value = {
            path: choices[min(max(int(i), 0), len(choices) - 1)]
            for (path, choices), i in zip(slots, vector, strict=True)
        }
        sub = {s: {f: value[f"{s}.{f}"] for f in getattr(self, s)} for s in ("stem", "head")}
        stages = [{f: value[f"stages[{i}].{f}"] for f in self.stage} for i in range(value["stage_count"])]
        return ArchSpec(
            resolution=value["resolution"],
            in_channels=value["in_channels"],
            num_classes=num_classes,
            stem=Stem(**sub["stem"]),
            stages=tuple(Stage(**s) for s in stages),
            head=Head(**sub["head"]),
        )

    def embedding(self, spec: ArchSpec) -> list[float]:
        """The encoding scaled into [0, 1] per slot: a model-free vector for nearest-neighbour memory."""
        return [i / max(len(c) - 1, 1) for i, (_, c) in zip(self.encode(spec), self.slots(), strict=True)]

    def describe(self) -> str:
        """The space as YAML, for prompts and `tinyarch space show`."""
        return yaml.safe_dump(self.model_dump(), sort_keys=False)


def final_resolution(spec: ArchSpec) -> int:
    """Side of the last feature map under TFLite "SAME" padding (ceil division per stride)."""
    side = -(-spec.resolution // spec.stem.stride)
    for stage in spec.stages:
        side = -(-side // stage.stride)
    return side


def builtin_spaces() -> list[str]:
    return sorted(
        p.name.removesuffix(".yaml") for p in resources.files("tinyarch.spaces").iterdir() if p.name.endswith(".yaml")
    )


def load_space(name_or_path: str) -> SearchSpace:
    """A built-in space by name (`mcu`) or a YAML file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise FileNotFoundError(f"no space file at {path}")
        text = path.read_text()
    elif name_or_path in builtin_spaces():
        text = resources.files("tinyarch.spaces").joinpath(f"{name_or_path}.yaml").read_text()
    else:
        raise ValueError(f"unknown space {name_or_path!r}; built in: {', '.join(builtin_spaces())}, or a .yaml path")
    return SearchSpace.model_validate(yaml.safe_load(text))


def _violation_from_pydantic(error: Any) -> Violation:
    path = ""
    for part in error["loc"]:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    elif error["type"] not in ("missing", "json_invalid") and "input" in error:
        message += f" (got {json.dumps(error['input'], default=str)[:60]})"
    return Violation(path or "(spec)", message)
