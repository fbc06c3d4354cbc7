"""Schemathesis runs the OpenAPI document of /api/v1 against a live `tanpu serve`
(waitress; SQLite and PostgreSQL): every operation with generated requests, valid (positive) and
invalid (negative: wrong types, missing fields, values out of range); no
answer is a 5xx, every answer matches its declared status, content type, headers and
schema. A few examples per operation in the suite; many more under `make fuzz`."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from hypothesis import HealthCheck, Phase, given, settings

from schemathesis.specs.openapi.checks import (content_type_conformance,
                                               response_schema_conformance,
                                               status_code_conformance)
from schemathesis.checks import not_a_server_error
from tests.webui import livekit
from tests.webui.reviewkit import postgres_server  # noqa: F401 - fixture


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    drop = None
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'tanpu.db'}"
    else:
        url, drop = request.getfixturevalue("postgres_server").empty()
    server = livekit.start(url, folder / "server.log",
                           TANPU_API_RATE_LIMIT_TOKEN="1000000 per minute",
                           TANPU_API_RATE_LIMIT_ADDRESS="1000000 per minute")
    yield server
    server.stop()
    if drop:
        drop()


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


def fuzz(live, examples: int) -> list[str]:
    """Every operation of the document, `examples` generated cases each (positive and
    negative); the failures, by operation."""
    schema = schemathesis.openapi.from_url(live.url + "/api/v1/openapi.json")
    schema.config.update(base_url=live.url + "/api/v1")
    headers = {"Authorization": f"Bearer {live.token}"}
    failures = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:
        @given(case=st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                              operation.as_strategy(GenerationMode.NEGATIVE)))
        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck), phases=[Phase.generate])
        def run(case):
            case.call_and_validate(headers=headers, checks=CHECKS)
        try:
            run()
        except Exception as error:  # noqa: BLE001 - collected, reported together
            failures.append(f"{operation.label}: {type(error).__name__}: {str(error)[:1500]}")
    return failures


def test_the_api_keeps_its_declared_contract(live):
    failures = fuzz(live, int(os.environ.get("TANPU_FUZZ_EXAMPLES", 3)))
    assert not failures, "\n\n".join(failures)


@pytest.mark.slow
@pytest.mark.fuzz
def test_the_api_keeps_its_declared_contract_long(live):
    failures = fuzz(live, int(os.environ.get("TANPU_FUZZ_EXAMPLES", 150)))
    assert not failures, "\n\n".join(failures)
