"""schemathesis fuzzes every operation of `tinyarch serve`'s OpenAPI schema: no input may cause a 500.

The app serves a copy of a finished NATS run. Questions go to a scripted LLM and started searches are
only recorded: the fuzzer sends thousands of requests, and the real model and real searches are
exercised by tests/test_web.py and tests/test_web_browser.py.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from tests.test_llm import ScriptedBackend
from tests.test_web import NAME
from tests.test_web import runs as finished_runs  # noqa: F401  (the module's fixture)
from tinyarch.agents.llm import StructuredLLM
from tinyarch.core.rundir import RunDir
from tinyarch.interfaces.web.app import Searches, create_app

ANSWER = json.dumps({"answer": "scripted", "cites": []})


class RecordedSearches(Searches):
    def start(self, name: str, *args: str) -> None:
        self.processes.pop(name, None)


class EndlessScript(ScriptedBackend):
    def complete(self, messages, schema, temperature, seed=None):  # type: ignore[no-untyped-def]
        self.answers = [ANSWER]
        return super().complete(messages, schema, temperature, seed)


RUNS = Path(tempfile.mkdtemp(prefix="tinyarch-fuzz-")) / "runs"
# schemathesis calls the ASGI app as "testserver"; the Host and token guards are tested in test_web.py.
APP = create_app(RUNS, host="testserver", chat_llm=StructuredLLM(EndlessScript([])), searches=RecordedSearches(RUNS))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


REAL_IDS: list[str] = []


@schema.hook
def flatmap_path_parameters(context: schemathesis.HookContext, path_parameters: dict | None) -> st.SearchStrategy:
    """Half the cases address the real run and its candidates, so the fuzz reaches past the 404s."""
    if not isinstance(path_parameters, dict) or "name" not in path_parameters:
        return st.just(path_parameters)
    real = st.sampled_from(REAL_IDS).map(
        lambda i: {**path_parameters, "name": NAME} | ({"candidate_id": i} if "candidate_id" in path_parameters else {})
    )
    return st.one_of(st.just(path_parameters), real)


@pytest.fixture(scope="module")
def served(finished_runs: Path) -> Iterator[Path]:  # noqa: F811
    """The app's runs directory, filled with a copy of the finished run (the schema was loaded at import)."""
    shutil.rmtree(RUNS)
    shutil.copytree(finished_runs, RUNS)
    REAL_IDS.extend(RunDir(RUNS / NAME).finished_evaluations())
    yield RUNS
    shutil.rmtree(RUNS.parent)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_causes_a_server_error(served: Path, case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error])
