from __future__ import annotations

import json
import random

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import EXAMPLES
from tinyarch.core.spaces import SearchSpace, SpecError, Violation, load_space


def _data() -> dict:
    return json.loads((EXAMPLES / "cpu_small.json").read_text())


def test_examples_belong_to_mcu(mcu: SearchSpace) -> None:
    for path in EXAMPLES.glob("*.json"):
        assert mcu.validate_spec(path.read_text()) == [], path


def test_every_violation_is_reported_with_its_path(mcu: SearchSpace) -> None:
    data = _data()
    data["stages"][2]["kernel"] = 9
    data["stages"][0]["width"] = 20
    data["resolution"] = 33
    found = {v.path: v.message for v in mcu.validate_spec(data)}
    assert found == {
        "stages[2].kernel": "9 is not one of [3, 5, 7]",
        "stages[0].width": "20 is not one of [16, 24, 32, 48, 64, 96, 128, 160]",
        "resolution": "33 is not one of [32, 48, 64, 96, 128, 144, 160, 176]",
    }


def test_parse_errors_carry_paths(mcu: SearchSpace) -> None:
    data = _data()
    data["stages"][1]["colour"] = "red"
    data["stages"][3]["activation"] = "gelu"
    del data["stem"]["width"]
    paths = {v.path for v in mcu.validate_spec(data)}
    assert paths == {"stages[1].colour", "stages[3].activation", "stem.width"}
    assert mcu.validate_spec("{not json")[0].path == "(spec)"


def test_structural_rules(mcu: SearchSpace) -> None:
    data = _data()
    for stage in data["stages"]:
        stage["stride"] = 2  # stem 2 x 2^5 = 64 > 32, and 32px / 64 < 1px
    violations = mcu.validate_spec(data)
    assert Violation("stages", "total stride 64 exceeds 32") in violations
    data["stages"] = data["stages"][:3]
    assert any(v.path == "stages" and "allowed counts are [5]" in v.message for v in mcu.validate_spec(data))


def test_parse_raises_spec_error_listing_all(mcu: SearchSpace) -> None:
    data = _data()
    data["stages"][2]["kernel"] = 9
    data["stages"][3]["depth"] = 7
    with pytest.raises(SpecError) as info:
        mcu.parse(data)
    assert len(info.value.violations) == 2


def test_samples_are_valid_and_seeded(mcu: SearchSpace) -> None:
    a = [mcu.sample(random.Random(3), 10) for _ in range(2)]
    assert a[0] == a[1]
    for seed in range(50):
        spec = mcu.sample(random.Random(seed), 100)
        assert mcu.violations(spec) == []


def test_json_schema_accepts_samples_and_rejects_outsiders(mcu: SearchSpace) -> None:
    schema = mcu.json_schema(num_classes=100, in_channels=3)
    jsonschema.Draft202012Validator.check_schema(schema)
    for seed in range(20):
        spec = mcu.sample(random.Random(seed), 100, in_channels=3)
        jsonschema.validate(spec.model_dump(mode="json", exclude={"name"}), schema)
    bad = mcu.sample(random.Random(0), 100, in_channels=3).model_dump(mode="json", exclude={"name"})
    bad["stages"][0]["kernel"] = 9
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_encode_decode_round_trip(seed: int) -> None:
    mcu = load_space("mcu")
    spec = mcu.sample(random.Random(seed), 100)
    vector = mcu.encode(spec)
    assert len(vector) == len(mcu.slots())
    assert mcu.decode(vector, 100) == spec
    emb = mcu.embedding(spec)
    assert all(0.0 <= x <= 1.0 for x in emb)


def test_decode_clips_out_of_range_indices(mcu: SearchSpace) -> None:
    spec = mcu.decode([99] * len(mcu.slots()), 10)
    assert spec.resolution == mcu.resolution[-1] and len(spec.stages) == max(mcu.stage_count)


def test_unknown_space_names_the_builtins() -> None:
    with pytest.raises(ValueError, match="built in: mcu"):
        load_space("nope")


def test_space_file_must_cover_every_field(tmp_path) -> None:
    text = (EXAMPLES.parent / "tinyarch" / "core" / "spaces" / "mcu.yaml").read_text()
    text = text.replace("  kernel: [3, 5, 7]\n", "")
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match="stage must list choices"):
        load_space(str(path))
