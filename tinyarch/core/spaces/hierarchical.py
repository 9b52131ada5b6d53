"""Hierarchical spaces (`kind: hierarchical`, e.g. `mcu`): choices for the stem, every stage and the head."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

from tinyarch.core.spaces.base import SearchSpace, Violation
from tinyarch.core.spec import ArchSpec, BlockType, Head, SpecBase, Stage, Stem

SECTIONS: dict[str, type[BaseModel]] = {"stem": Stem, "stage": Stage, "head": Head}
"""Each choice section of a space and the spec model whose fields it constrains."""


class SpaceRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_total_stride: int
    min_final_resolution: int = 1


class HierarchicalSpace(SearchSpace):
    """Allowed values for every ArchSpec field; `stage` applies to each of the `stage_count` stages."""

    spec_model: ClassVar[type[SpecBase]] = ArchSpec

    resolution: list[int]
    in_channels: list[int]
    stem: dict[str, list[Any]]
    stage_count: list[int]
    stage: dict[str, list[Any]]
    head: dict[str, list[Any]]
    rules: SpaceRules

    @model_validator(mode="after")
    def _choices_cover_fields(self) -> HierarchicalSpace:
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

    def stage_choices(self, block: BlockType | str) -> dict[str, list[Any]]:
        """The stage choices for one block type; depthwise-separable blocks have no expansion (always 1)."""
        block = BlockType(block)
        expansion = [1] if block is BlockType.dsconv else self.stage["expansion"]
        return {**self.stage, "block": [block.value], "expansion": expansion}

    def violations(self, spec: ArchSpec) -> list[Violation]:
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

    def slots(self) -> list[tuple[str, list[Any]]]:
        """Stages are padded to the largest count; unused stage slots encode as 0."""
        out: list[tuple[str, list[Any]]] = [("resolution", self.resolution), ("in_channels", self.in_channels)]
        out += [(f"stem.{f}", v) for f, v in self.stem.items()]
        out.append(("stage_count", self.stage_count))
        for i in range(max(self.stage_count)):
            out += [(f"stages[{i}].{f}", v) for f, v in self.stage.items()]
        out += [(f"head.{f}", v) for f, v in self.head.items()]
        return out

    def values(self, spec: ArchSpec) -> dict[str, Any]:
        values: dict[str, Any] = {
            "resolution": spec.resolution,
            "in_channels": spec.in_channels,
            "stage_count": len(spec.stages),
        }
        values.update({f"stem.{f}": getattr(spec.stem, f) for f in self.stem})
        values.update({f"head.{f}": getattr(spec.head, f) for f in self.head})
        for i, stage in enumerate(spec.stages):
            values.update({f"stages[{i}].{f}": getattr(stage, f) for f in self.stage})
            if stage.block is BlockType.dsconv:
                del values[f"stages[{i}].expansion"]  # dsconv has none
        return values

    def build(self, values: dict[str, Any], num_classes: int) -> ArchSpec:
        sub = {s: {f: values[f"{s}.{f}"] for f in getattr(self, s)} for s in ("stem", "head")}
        stages = [{f: values[f"stages[{i}].{f}"] for f in self.stage} for i in range(values["stage_count"])]
        return ArchSpec(
            resolution=values["resolution"],
            in_channels=values["in_channels"],
            num_classes=num_classes,
            stem=Stem(**sub["stem"]),
            stages=tuple(Stage(**s) for s in stages),
            head=Head(**sub["head"]),
        )


def final_resolution(spec: ArchSpec) -> int:
    """Side of the last feature map under TFLite "SAME" padding (ceil division per stride)."""
    side = -(-spec.resolution // spec.stem.stride)
    for stage in spec.stages:
        side = -(-side // stage.stride)
    return side
