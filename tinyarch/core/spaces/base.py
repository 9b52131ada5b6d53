"""What every search space has in common (`SearchSpace`), and how a spec breaks one (`Violation`,
`SpecError`). The space kinds build on this module; `tinyarch.core.spaces` loads them from YAML."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from tinyarch.core.errors import TinyarchError
from tinyarch.core.spec import SpecBase


@dataclass(frozen=True)
class Violation:
    """One problem with a spec, located by its field path such as `stages[2].kernel`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SpecError(TinyarchError, ValueError):
    """A spec that does not parse or does not belong to the space; carries every violation."""

    def __init__(self, violations: list[Violation]):
        self.violations = violations
        super().__init__("; ".join(map(str, violations)))


class SearchSpace(BaseModel):
    """The common machinery; subclasses define the slots, the schema and the structural rules."""

    model_config = ConfigDict(extra="forbid")
    spec_model: ClassVar[type[SpecBase]]

    kind: str
    name: str
    description: str = ""

    # ------------------------------------------------------------------ to define per kind

    def violations(self, spec: Any) -> list[Violation]:
        """Choices and structural rules; assumes `spec` already parsed."""
        raise NotImplementedError

    def json_schema(self, num_classes: int | None = None, in_channels: int | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def slots(self) -> list[tuple[str, list[Any]]]:
        """The encoding's positions in order: a field path and its choices."""
        raise NotImplementedError

    def values(self, spec: Any) -> dict[str, Any]:
        """The value of every slot path that `spec` uses (missing paths encode as choice 0)."""
        raise NotImplementedError

    def build(self, values: dict[str, Any], num_classes: int) -> Any:
        """The spec whose slots hold `values`."""
        raise NotImplementedError

    def cost(self, spec: Any) -> dict[str, int | float]:
        """Closed-form costs (at least `macs` and `params`) of candidates that the profiler does not
        lower, such as NATS cells; `tinyarch.tools.profile.candidate_cost` costs any candidate."""
        raise NotImplementedError

    # ------------------------------------------------------------------ validation

    def parse(self, data: str | dict[str, Any] | SpecBase) -> Any:
        """A spec that belongs to this space, or SpecError listing every violation."""
        if isinstance(data, self.spec_model):
            spec = data
        else:
            try:
                model = self.spec_model
                spec = model.model_validate_json(data) if isinstance(data, str) else model.model_validate(data)
            except ValidationError as err:
                raise SpecError([_violation_from_pydantic(e) for e in err.errors()]) from None
        violations = self.violations(spec)
        if violations:
            raise SpecError(violations)
        return spec

    def validate_spec(self, data: str | dict[str, Any] | SpecBase) -> list[Violation]:
        """Every violation of `data` (JSON text, a dict or a spec); empty when it belongs to the space."""
        try:
            self.parse(data)
        except SpecError as err:
            return err.violations
        return []

    # ------------------------------------------------------------------ sampling and encoding

    def sample(self, rng: random.Random, num_classes: int, max_tries: int = 10_000, **fixed: Any) -> Any:
        """A uniformly drawn spec that satisfies the rules (rejection sampling); `fixed` fields are set."""
        for _ in range(max_tries):
            spec = self.decode([rng.randrange(len(choices)) for _, choices in self.slots()], num_classes)
            if fixed:
                spec = spec.model_validate({**spec.model_dump(), **fixed})
            if not self.violations(spec):
                return spec
        raise RuntimeError(f"space {self.name}: no valid spec in {max_tries} draws; are its rules satisfiable?")

    def encode(self, spec: Any) -> list[int]:
        """Choice indices, one per slot."""
        values = self.values(spec)
        vector = []
        for path, choices in self.slots():
            value = values.get(path, choices[0])
            if value not in choices:
                raise SpecError([Violation(path, f"{value!r} is not one of {choices}")])
            vector.append(choices.index(value))
        return vector

    def decode(self, vector: list[int], num_classes: int) -> Any:
        """The spec whose choice indices are `vector` (any ints; each is clipped into its slot's range)."""
        slots = self.slots()
        if len(vector) != len(slots):
            raise ValueError(f"space {self.name} encodes {len(slots)} slots, got a vector of {len(vector)}")
        values = {
            path: choices[min(max(int(i), 0), len(choices) - 1)]
            for (path, choices), i in zip(slots, vector, strict=True)
        }
        return self.build(values, num_classes)

    def embedding(self, spec: Any) -> list[float]:
        """The encoding scaled into [0, 1] per slot: a model-free vector for nearest-neighbour memory."""
        return [i / max(len(c) - 1, 1) for i, (_, c) in zip(self.encode(spec), self.slots(), strict=True)]

    def describe(self) -> str:
        """The space as YAML, for prompts and `tinyarch space show`."""
        return yaml.safe_dump(self.model_dump(), sort_keys=False)


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
