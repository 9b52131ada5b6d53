"""NATS-Bench topology cells (`kind: cell`, the `nats-tss` space) and their analytic MACs and parameters.

The macro network is NAS-Bench-201's: a 3x3 stem conv with BN, three stages of `cells_per_stage`
cells at C, 2C, 4C channels separated by residual reduction blocks (3x3 stride-2 conv, 3x3 conv,
and an average-pool + 1x1 conv shortcut), a final BN + ReLU, global pooling and a linear layer.
Convolutions in cells are ReLU-Conv-BN. Every edge is computed, as the benchmark's network does.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from tinyarch.core.spaces.base import SearchSpace, Violation
from tinyarch.core.spec import SpecBase


class NatsOp(StrEnum):
    none = "none"
    skip_connect = "skip_connect"
    nor_conv_1x1 = "nor_conv_1x1"
    nor_conv_3x3 = "nor_conv_3x3"
    avg_pool_3x3 = "avg_pool_3x3"


EDGES = ("edge_1_0", "edge_2_0", "edge_2_1", "edge_3_0", "edge_3_1", "edge_3_2")
"""Edge `edge_j_i` carries node i into node j; node 0 is the cell input, node 3 its output."""


class NatsCell(SpecBase):
    num_classes: int = Field(ge=2)
    edge_1_0: NatsOp
    edge_2_0: NatsOp
    edge_2_1: NatsOp
    edge_3_0: NatsOp
    edge_3_1: NatsOp
    edge_3_2: NatsOp

    def ops(self) -> list[NatsOp]:
        return [getattr(self, e) for e in EDGES]

    def arch_string(self) -> str:
        """NAS-Bench-201 notation, e.g. `|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|...|`."""
        ops = [op.value for op in self.ops()]
        return f"|{ops[0]}~0|+|{ops[1]}~0|{ops[2]}~1|+|{ops[3]}~0|{ops[4]}~1|{ops[5]}~2|"

    @classmethod
    def from_arch_string(cls, text: str, num_classes: int) -> NatsCell:
        nodes = [part.strip("|").split("|") for part in text.strip().split("+")]
        ops = [token.split("~")[0] for node in nodes for token in node]
        if len(ops) != len(EDGES):
            raise ValueError(f"{text!r} is not a NAS-Bench-201 cell string")
        edges: dict[str, Any] = dict(zip(EDGES, ops, strict=True))  # pydantic coerces each str to a NatsOp
        return cls(num_classes=num_classes, **edges)

    def summary(self) -> str:
        return self.arch_string()


class NatsNetwork(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stem_channels: int = 16
    cells_per_stage: int = 5
    resolution: int = 32


class CellSpace(SearchSpace):
    """The allowed operation on each of a cell's six edges."""

    spec_model: ClassVar[type[SpecBase]] = NatsCell

    ops: list[str]
    network: NatsNetwork = NatsNetwork()

    def violations(self, spec: NatsCell) -> list[Violation]:
        return [
            Violation(edge, f"{op.value!r} is not one of {self.ops}")
            for edge, op in zip(EDGES, spec.ops(), strict=True)
            if op.value not in self.ops
        ]

    def json_schema(self, num_classes: int | None = None, in_channels: int | None = None) -> dict[str, Any]:
        properties: dict[str, Any] = {edge: {"enum": self.ops} for edge in EDGES}
        properties["num_classes"] = {"enum": [num_classes]} if num_classes else {"type": "integer", "minimum": 2}
        return {
            "title": f"cell in space {self.name} (edge_j_i feeds node i into node j)",
            "type": "object",
            "properties": properties,
            "required": list(properties),
            "additionalProperties": False,
        }

    def slots(self) -> list[tuple[str, list[Any]]]:
        return [(edge, self.ops) for edge in EDGES]

    def values(self, spec: NatsCell) -> dict[str, Any]:
        return {edge: op.value for edge, op in zip(EDGES, spec.ops(), strict=True)}

    def build(self, values: dict[str, Any], num_classes: int) -> NatsCell:
        return NatsCell(num_classes=num_classes, **values)

    def cost(self, cell: NatsCell) -> dict[str, int | float]:
        """MACs (convolutions and the linear layer) and trainable parameters of the whole network."""
        n = self.network
        c, side = n.stem_channels, n.resolution
        macs, params = 9 * 3 * c * side * side, 9 * 3 * c + 2 * c  # stem conv + BN
        for stage in range(3):
            if stage:
                cin, c, side = c, 2 * c, side // 2
                hw = side * side
                macs += 9 * cin * c * hw + 9 * c * c * hw + cin * c * hw  # conv a (stride 2), conv b, shortcut 1x1
                params += 9 * cin * c + 2 * c + 9 * c * c + 2 * c + cin * c
            for op in cell.ops():
                k = {NatsOp.nor_conv_1x1: 1, NatsOp.nor_conv_3x3: 3}.get(op)
                if k:
                    macs += n.cells_per_stage * k * k * c * c * side * side
                    params += n.cells_per_stage * (k * k * c * c + 2 * c)
        macs += c * cell.num_classes
        params += 2 * c + c * cell.num_classes + cell.num_classes  # last BN, classifier
        return {"macs": macs, "params": params}
