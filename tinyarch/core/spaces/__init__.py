"""Search spaces as data: allowed choices per field plus rules, loaded from YAML.

Every space validates candidates (every violation with its field path), exports a JSON Schema
for constrained LLM decoding, samples at random, and encodes a candidate as a vector of choice
indices (for pymoo and for memory embeddings) and back. `base.SearchSpace` holds what is common;
each YAML file here (package data) names its `kind`: `hierarchical` (`mcu`, see `hierarchical`) or
`cell` (`nats-tss`, see `nats`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from tinyarch.core.spaces.base import SearchSpace, SpecError, Violation
from tinyarch.core.spaces.hierarchical import HierarchicalSpace
from tinyarch.core.spaces.nats import CellSpace

__all__ = ["SearchSpace", "SpecError", "Violation", "builtin_spaces", "load_space"]


def builtin_spaces() -> list[str]:
    files = resources.files("tinyarch.core.spaces").iterdir()
    return sorted(p.name.removesuffix(".yaml") for p in files if p.name.endswith(".yaml"))


def load_space(name_or_path: str) -> SearchSpace:
    """A built-in space by name (`mcu`, `nats-tss`) or a YAML file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise FileNotFoundError(f"no space file at {path}")
        text = path.read_text()
    elif name_or_path in builtin_spaces():
        text = resources.files("tinyarch.core.spaces").joinpath(f"{name_or_path}.yaml").read_text()
    else:
        raise ValueError(f"unknown space {name_or_path!r}; built in: {', '.join(builtin_spaces())}, or a .yaml path")
    data = yaml.safe_load(text)
    kinds: dict[str, type[SearchSpace]] = {"hierarchical": HierarchicalSpace, "cell": CellSpace}
    if not isinstance(data, dict) or data.get("kind") not in kinds:
        raise ValueError(f"space file {name_or_path} needs `kind:` one of {', '.join(kinds)}")
    return kinds[data["kind"]].model_validate(data)
