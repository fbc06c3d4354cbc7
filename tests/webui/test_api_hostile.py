"""Hostile values the API must answer with a 4xx and a JSON code, never a 500 (issue 17):
a page number beyond any integer, a record at 0001-01-01T00:00, JSON nested 100,000 deep,
a 50 MB body, a 400-digit quantity, a NUL in a path (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures
from tests.webui.reviewkit import publish_first, reg_built_for

HUGE = "99999999999999999999"


# Published once per session and backend (reviewkit.reg_built_for); each test of `api` gets a copy.
reg = reg_built_for("api", "webui-published", publish_first)


@pytest.fixture
def api(web):
    headers = web.api(web.token())
    return web.app.test_client(), headers


def ride(**extra):
    return {"id": "a", "account": "b", "mode": "metro", "distance": "1 km",
            "boarded": "2024-05-20T08:00", "alighted": "2024-05-20T08:10", **extra}


@pytest.mark.parametrize("path", [f"/api/v1/methodologies?page={HUGE}",
                                  f"/api/v1/methodologies?per_page={HUGE}",
                                  f"/api/v1/accounts?page={HUGE}"])
def test_a_page_beyond_any_integer_is_bad_pagination(api, path):
    client, headers = api
    response = client.get(path, headers=headers)
    assert response.status_code == 400 and response.get_json()["code"] == "bad_pagination"


@pytest.mark.parametrize("record, code", [
    (ride(boarded="0001-01-01T00:00", alighted="0001-01-01T00:10"), "invalid_record"),
    (ride(distance="1" + "0" * 400 + " km"), "invalid_record")])
def test_a_record_out_of_range_is_an_error_of_its_record(api, record, code):
    client, headers = api
    for path in ("/api/v1/evaluate", "/api/v1/credits"):
        response = client.post(path, headers=headers, json={
            "methodology": "test.transit", "records": [record, ride(id="fine")]})
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        assert [(e["index"], e["code"]) for e in body["errors"]] == [(0, code)]
        assert [r["id"] for r in body["results"]] == ["fine"]


def test_a_body_nested_too_deep_or_too_large_is_refused_with_its_code(api):
    client, headers = api
    json_headers = {**headers, "Content-Type": "application/json"}
    deep = client.post("/api/v1/evaluate", headers=json_headers, data="[" * 100_000 + "]" * 100_000)
    assert deep.status_code == 400 and deep.get_json()["code"] == "bad_request"
    big = client.post("/api/v1/evaluate", headers=json_headers, data=b"x" * (50 * 1024 * 1024))
    assert big.status_code == 413 and big.get_json()["code"] == "payload_too_large"


@pytest.mark.parametrize("path", ["/api/v1/methodologies/te\x00st/schema",
                                  "/api/v1/accounts?kind=unit\x00", "/api/v1/credits/r\x001"])
def test_a_nul_in_a_path_or_a_query_is_a_bad_request(api, path):
    client, headers = api
    response = client.get(path, headers=headers)
    assert response.status_code == 400 and response.get_json()["code"] == "bad_request"
