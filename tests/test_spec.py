from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from tests.conftest import EXAMPLES
from tinyarch.core.spec import ArchSpec, BlockType


def _data() -> dict:
    return json.loads((EXAMPLES / "cpu_small.json").read_text())


def test_id_ignores_key_order_and_name() -> None:
    data = _data()
    shuffled = {k: data[k] for k in reversed(list(data))}
    a = ArchSpec.model_validate(data)
    b = ArchSpec.model_validate({**shuffled, "name": "other"})
    assert a.canonical_json() == b.canonical_json()
    assert a.id == b.id and len(a.id) == 12


def test_id_changes_with_architecture() -> None:
    data = _data()
    data["stages"][0]["kernel"] = 5
    assert ArchSpec.model_validate(data).id != ArchSpec.model_validate(_data()).id


def test_canonical_form_drops_ignored_fields() -> None:
    data = _data()
    data["stages"][0]["expansion"] = 6  # dsconv has no expansion
    data["stages"][4]["skip"] = True  # one block, width changes: no residual possible
    spec = ArchSpec.model_validate(data)
    assert spec.stages[0].expansion == 1
    assert spec.stages[4].skip is False
    assert spec.id == ArchSpec.model_validate(_data()).id


def test_blocks_resolve_strides_channels_and_residuals() -> None:
    spec = ArchSpec.model_validate(_data())
    blocks = spec.blocks()
    assert len(blocks) == sum(s.depth for s in spec.stages)
    stage2 = [b for b in blocks if b.stage == 2]
    assert [b.stride for b in stage2] == [2, 1]
    assert [b.residual for b in stage2] == [False, True]  # the stride-2 block cannot add its input
    assert stage2[0].mid_channels == 24 * 3 and stage2[0].se_channels == int(72 * 0.25)
    ds = blocks[0]
    assert ds.kind is BlockType.dsconv and ds.mid_channels == ds.in_channels and ds.residual


def test_summary_is_one_line() -> None:
    text = ArchSpec.model_validate(_data()).summary()
    assert "\n" not in text and text.startswith("32px/1ch stem16s2") and "MBe3k3 32x2s2 swish se0.25 res" in text


def test_unknown_field_is_rejected() -> None:
    data = _data()
    data["stages"][1]["color"] = "red"
    with pytest.raises(ValidationError, match="color"):
        ArchSpec.model_validate(data)
