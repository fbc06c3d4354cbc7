"""The API's contract (issue 14): bodies declared and checked by their models (unknown
fields and wrong types named), the OpenAPI document generated from them and a reference
page served from a package, problem details with JSON pointers and a request id that is
also in the log, explanations in the methodology's units that read back to the same
result, token scopes and expiry, rate limits with RateLimit-* headers, ETags and Link
headers (Flask test client; SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from registry import tokens
from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures
from tests.webui.reviewkit import METHODOLOGY, publish_first, reg_built_for

RIDE = {"id": "r1", "account": "a1", "mode": "metro", "distance": "3 km",
        "boarded": "2024-06-20T08:00", "alighted": "2024-06-20T08:30"}


# Published once per session and backend (reviewkit.reg_built_for); each test of `api` gets a copy.
reg = reg_built_for("api", "webui-published", publish_first)


@pytest.fixture
def api(web):
    return web, web.api(web.token())


def _problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert (body["status"], body["code"], body["type"]) == (status, code, f"/api/v1/problems/{code}")
    assert body["title"] and body["detail"] and body["instance"] == response.request.path
    assert body["request_id"] == response.headers["X-Request-Id"]
    return body


def test_unknown_fields_and_wrong_types_are_named(api):
    web, headers = api
    post = lambda body: web.client.post("/api/v1/evaluate", headers=headers, json=body)  # noqa: E731
    body = _problem(post({"methodology": METHODOLOGY, "records": [RIDE], "explain": "yes"}),
                    400, "bad_request")
    assert body["errors"] == [{"pointer": "/explain", "code": "bool_type",
                               "detail": '/explain: expected a valid boolean, got "yes"'}]
    body = _problem(post({"methodology": METHODOLOGY, "records": [RIDE], "explian": True}),
                    400, "bad_request")
    assert body["errors"] == [{"pointer": "/explian", "code": "extra_forbidden",
                               "detail": "/explian: unknown field `explian`"}]
    body = _problem(post({"methodology": 7, "records": "x"}), 400, "bad_request")
    assert {e["pointer"]: e["detail"] for e in body["errors"]} == {
        "/methodology": "/methodology: expected a valid string, got 7",
        "/records": '/records: expected a valid array, got "x"'}
    body = _problem(post({"records": []}), 400, "bad_request")
    assert body["errors"][0]["pointer"] == "/methodology" and "required" in body["detail"]
    # in the other endpoints too
    accounts = web.client.post("/api/v1/accounts", headers=headers,
                               json={"kind": "unit", "parent": "1", "colour": "red"})
    body = _problem(accounts, 400, "bad_request")
    assert [e["pointer"] for e in body["errors"]] == ["/parent", "/colour"]


def test_records_are_checked_by_their_methodology_with_a_pointer_each(api):
    web, headers = api
    records = [RIDE, {**RIDE, "id": "r2", "distance": "3 kg"}, "not a record"]
    body = web.client.post("/api/v1/evaluate", headers=headers,
                           json={"methodology": METHODOLOGY, "records": records}).get_json()
    assert [r["id"] for r in body["results"]] == ["r1"]
    errors = {e["pointer"]: e for e in body["errors"]}
    assert errors["/records/2"]["code"] == "not_an_object"
    # the unit error says the dimension expected and the units accepted
    reason = errors["/records/1"]["reason"]
    assert reason.startswith("distance: `kg` is not the right kind of unit here: distance is "
                             "a length, `kg` a mass (units accepted: km, m,")


def test_every_error_is_problem_details_with_the_request_id(api):
    web, headers = api
    _problem(web.client.get("/api/v1/methodologies"), 401, "unauthenticated")
    _problem(web.client.get("/api/v1/nowhere", headers=headers), 404, "not_found")
    _problem(web.client.delete("/api/v1/evaluate", headers=headers), 405, "method_not_allowed")
    _problem(web.client.get("/api/v1/methodologies/none/schema", headers=headers), 404,
             "methodology_not_found")
    _problem(web.client.post("/api/v1/evaluate", headers=headers, data="{"), 400, "bad_request")
    # the client's request id is kept; a bad one is replaced
    mine = web.client.get("/api/v1/", headers={**headers, "X-Request-Id": "abc-123"})
    assert mine.headers["X-Request-Id"] == "abc-123"
    odd = web.client.get("/api/v1/", headers={**headers, "X-Request-Id": "a b\x7f"})
    assert len(odd.headers["X-Request-Id"]) == 32 and odd.headers["X-Request-Id"] != "a b\x7f"
    two = [web.client.get("/api/v1/", headers=headers).headers["X-Request-Id"] for _ in range(2)]
    assert two[0] != two[1]


def test_the_log_line_of_a_request_has_its_id(api, caplog):
    web, headers = api
    with caplog.at_level(logging.INFO, logger="webui.api"):
        web.client.get("/api/v1/methodologies", headers={**headers, "X-Request-Id": "trace-77"})
    [line] = [r.getMessage() for r in caplog.records if "trace-77" in r.getMessage()]
    assert line.startswith("GET /api/v1/methodologies 200 ")


def test_the_openapi_document_and_its_reference_page(api):
    web, headers = api
    response = web.client.get("/api/v1/openapi.json")  # public: no token
    assert response.status_code == 200
    doc = response.get_json()
    assert doc["openapi"] == "3.1.0"
    post = doc["paths"]["/evaluate"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EvaluateRequest"}
    request_schema = doc["components"]["schemas"]["EvaluateRequest"]
    assert request_schema["additionalProperties"] is False
    assert request_schema["properties"]["explain"]["type"] == "boolean"
    assert post["responses"]["400"]["content"]["application/problem+json"]
    assert post["security"] == [{"bearer": ["evaluate"]}]
    # every route of the API is in the document (jobs and webhooks too)
    rules = {rule.rule for rule in web.app.url_map.iter_rules()
             if rule.rule.startswith("/api/v1/") and "<path:rest>" not in rule.rule
             and not rule.rule.startswith(("/api/v1/openapi", "/api/v1/docs", "/api/v1/problems"))}
    import re
    declared = {"/api/v1" + re.sub(r"\{(\w+)\}", r"<\1>", p) for p in doc["paths"]}
    assert {re.sub(r"<(?:\w+:)?(\w+)>", r"<\1>", r) for r in rules} == declared
    # conditional: the same document is a 304
    again = web.client.get("/api/v1/openapi.json",
                           headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304
    # the reference page, its Swagger UI from the package, linked from the menu
    page = web.login(web.reg.integrator).get("/api/v1/docs")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'data-openapi="/api/v1/openapi.json"' in html
    assert "//cdn" not in html and "unpkg" not in html
    for asset in ("js/swagger-ui-bundle.js", "css/swagger-ui.css"):
        assert web.client.get(f"/api/v1/docs/assets/{asset}").status_code == 200
    menu = web.client.get("/integrations/tokens").get_data(as_text=True)
    assert 'href="/api/v1/docs"' in menu and 'href="/integrations/tokens"' in menu


def test_explanations_are_in_the_methodologys_units_and_read_back(api):
    web, headers = api
    post = lambda records: web.client.post(  # noqa: E731
        "/api/v1/evaluate", headers=headers,
        json={"methodology": METHODOLOGY, "records": records, "explain": True}).get_json()
    ride = {**RIDE, "distance": "3.7 km"}
    [first] = post([ride])["results"]
    steps = {s["name"]: s for s in first["explanation"] if s.get("name")}
    assert (steps["distance"]["value"], steps["distance"]["unit"]) == (3.7, "km")
    assert (steps["distance"]["si_value"], steps["distance"]["si_unit"]) == (3700.0, "m")
    assert (steps["reduction_factor"]["value"], steps["reduction_factor"]["unit"]) == (46.7, "g/km")
    assert steps["reduction_factor"]["si_unit"] == "kg/m"
    assert (steps["reduction"]["value"], steps["reduction"]["unit"]) == (
        first["reduction_mg"] / 1000, "g")
    assert steps["boarded"]["value"] == "2024-06-20T08:00:00+08:00"
    assert isinstance(first["explanation_text"], str)
    assert "  input      distance = 3.7 km" in first["explanation_text"].splitlines()
    # the inputs as the explanation gives them, sent again: the same result
    again = {"id": "again", "account": RIDE["account"]}
    for step in first["explanation"]:
        if step["kind"] == "input":
            unit = step.get("unit")
            again[step["name"]] = f"{step['value']} {unit}" if unit and unit != "1" else step["value"]
    [second] = post([again])["results"]
    assert {k: second[k] for k in ("status", "reduction_mg", "points")} == \
        {k: first[k] for k in ("status", "reduction_mg", "points")}


def test_tokens_have_scopes_and_an_expiry(api):
    web, headers = api
    reg = web.reg
    with reg.uow() as s:
        _row, evaluate_only = tokens.create(s, reg.integrator, reg.integrator, "eval",
                                            scopes=["evaluate"])
    only = web.api(evaluate_only)
    assert web.client.post("/api/v1/evaluate", headers=only,
                           json={"methodology": METHODOLOGY, "records": [RIDE]}).status_code == 200
    body = _problem(web.client.post("/api/v1/credits", headers=only,
                                    json={"methodology": METHODOLOGY, "records": [RIDE]}),
                    403, "insufficient_scope")
    assert "`credit` scope" in body["detail"]
    _problem(web.client.get("/api/v1/accounts", headers=only), 403, "insufficient_scope")
    assert web.client.get("/api/v1/", headers=only).get_json()["scopes"] == ["evaluate"]
    # expired: refused as a revoked token is
    with reg.uow() as s:
        row, soon = tokens.create(s, reg.integrator, reg.integrator, "trial",
                                  expires_at=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1))
        token_id = row.id
    assert web.client.get("/api/v1/", headers=web.api(soon)).status_code == 200
    with reg.uow() as s:
        from registry.models import ApiToken
        s.get(ApiToken, token_id).expires_at = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    _problem(web.client.get("/api/v1/", headers=web.api(soon)), 401, "invalid_token")
    with reg.uow() as s, pytest.raises(Exception, match="no scope"):
        tokens.create(s, reg.integrator, reg.integrator, "x", scopes=["everything"])


def test_the_tokens_page_makes_scoped_tokens_and_shows_the_header(api):
    web, _headers = api
    client = web.login(web.reg.integrator)
    page = client.get("/integrations/tokens").get_data(as_text=True)
    assert "<code>Authorization: Bearer &lt;token&gt;</code>" in page
    made = client.post("/integrations/tokens", data={"name": "nightly", "scopes_given": "1",
                                                      "scope": ["evaluate", "credit"],
                                                      "expires": "2099-01-01"})
    html = made.get_data(as_text=True)
    token = html.split('id="new-token-value">')[1].split("<")[0]
    assert f"<code>Authorization: Bearer {token}</code>" in html
    grant_headers = web.api(token)
    assert web.client.get("/api/v1/", headers=grant_headers).get_json()["scopes"] == [
        "credit", "evaluate"]
    none = client.post("/integrations/tokens", data={"name": "x", "scopes_given": "1"})
    assert none.status_code == 422


def test_rate_limits_per_token_and_per_address(web):
    from webui import create_app
    web.published("1.0.0")
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "DATABASE_URL": web.reg.db.url,
                      "API_RATE_LIMIT_TOKEN": "3 per minute",
                      "API_RATE_LIMIT_ADDRESS": "5 per minute"}, database=web.reg.db)
    client = app.test_client()
    first, second = web.api(web.token()), web.api(web.token())
    answers = [client.get("/api/v1/", headers=first) for _ in range(4)]
    assert [r.status_code for r in answers] == [200, 200, 200, 429]
    assert [r.headers["RateLimit-Remaining"] for r in answers[:3]] == ["2", "1", "0"]
    assert answers[0].headers["RateLimit-Limit"] == "3"
    assert 0 < int(answers[0].headers["RateLimit-Reset"]) <= 61  # seconds, not a time
    body = _problem(answers[3], 429, "too_many_requests")
    assert "rate limit" in body["detail"] and int(answers[3].headers["Retry-After"]) > 0
    # another token has its own budget, until the address's is spent (5 in all)
    answers = [client.get("/api/v1/", headers=second) for _ in range(3)]
    assert answers[0].status_code == 200 and answers[-1].status_code == 429
    # the headers speak of the limit nearest to being spent: the address's (1 of 5 left)
    assert (answers[0].headers["RateLimit-Limit"], answers[0].headers["RateLimit-Remaining"]) == ("5", "1")
    assert "5 per 1 minute" in _problem(answers[-1], 429, "too_many_requests")["detail"]


def test_schema_etag_and_link_headers(api):
    web, headers = api
    url = f"/api/v1/methodologies/{METHODOLOGY}/schema"
    first = web.client.get(url, headers=headers)
    assert first.status_code == 200 and first.headers["ETag"]
    again = web.client.get(url, headers={**headers, "If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    # cursor pages: Link rel=next is the next page's URL
    for i in range(3):
        web.client.post("/api/v1/accounts", headers=headers, json={"kind": "unit"})
    page = web.client.get("/api/v1/accounts?per_page=2", headers=headers)
    assert page.headers["Link"] == '</api/v1/accounts?per_page=2&page=2>; rel="next"'
    last = web.client.get("/api/v1/accounts?per_page=2&page=2", headers=headers)
    assert "Link" not in last.headers


def test_creating_an_account_and_retiring_are_idempotent_by_key(api):
    web, headers = api
    post = lambda path, body, key: web.client.post(  # noqa: E731
        path, headers={**headers, "Idempotency-Key": key}, json=body)
    first = post("/api/v1/accounts", {"kind": "individual", "name": "p"}, "acct-1")
    again = post("/api/v1/accounts", {"kind": "individual", "name": "p"}, "acct-1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.get_json() == again.get_json() and again.headers["Idempotent-Replayed"] == "true"
    listed = web.client.get("/api/v1/accounts", headers=headers).get_json()
    assert listed["total"] == 1
    other = post("/api/v1/accounts", {"kind": "individual", "name": "q"}, "acct-1")
    _problem(other, 409, "conflict")
    _problem(post("/api/v1/accounts", {"kind": "unit"}, " padded "), 400, "bad_idempotency_key")
    # a retirement retried after a lost answer retires once
    account = first.get_json()["id"]
    assert web.client.put(f"/api/v1/accounts/{account}/identities/rider-k",
                          headers=headers).status_code == 200
    rides = [{**RIDE, "id": f"k{i}", "account": "rider-k",
              "boarded": f"2024-06-20T{8 + i:02d}:00", "alighted": f"2024-06-20T{8 + i:02d}:30"}
             for i in range(2)]
    credited = web.client.post("/api/v1/credits", headers=headers,
                               json={"methodology": METHODOLOGY, "records": rides}).get_json()
    assert credited["summary"]["credited"] == 2
    body = {"reduction_mg": 1000, "purpose": "test"}
    one = post(f"/api/v1/accounts/{account}/retirements", body, "retire-1")
    two = post(f"/api/v1/accounts/{account}/retirements", body, "retire-1")
    assert (one.status_code, two.status_code) == (201, 201), one.get_json()
    assert one.get_json()["certificate"] == two.get_json()["certificate"]
    wallet = web.client.get(f"/api/v1/accounts/{account}/wallet", headers=headers).get_json()
    total = sum(r["reduction_mg"] for r in credited["results"])
    assert wallet["retirable_mg"] == total - 1000
