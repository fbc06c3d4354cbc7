"""The JSON API /api/v1: token authentication, published methodologies and their schema,
evaluation by the version applicable at each record's time, idempotent credits (also under
concurrent requests), and JSON errors (Flask test client, SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from registry import accounts, ledger, tokens, users, workflow
from registry.errors import Forbidden, Invalid
from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures
from tests.webui.reviewkit import METHODOLOGY, faster_metro, source, text_of


def ride(record_id, day="2024-06-20", mode="metro", km=10, account="acct-1", hour=8):
    return {"id": record_id, "account": account, "mode": mode, "distance": f"{km} km",
            "boarded": f"{day}T{hour:02d}:00", "alighted": f"{day}T{hour:02d}:30"}


@pytest.fixture
def two_versions(web):
    """1.0.0 from 2024-01-01; 1.1.0 (metro 50.1 g/km instead of 46.7) from 2024-06-01,
    with a grace period for 1.0.0 that has not ended; and an integrator's token."""
    web.published("1.0.0", dt.date(2024, 1, 1))
    web.published("1.1.0", dt.date(2024, 6, 1), faster_metro(source(METHODOLOGY, "1.1.0")),
                  grace_days=100_000)
    return web, web.token()


def test_requests_need_an_integrators_token(web):
    reg = web.reg
    web.published("1.0.0")
    response = web.client.get("/api/v1/methodologies")
    assert response.status_code == 401
    assert response.get_json()["code"] == "unauthenticated"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    bad = web.client.get("/api/v1/methodologies", headers=web.api("tanpu_not-a-token"))
    assert bad.status_code == 401 and bad.get_json()["code"] == "invalid_token"
    # a signed-in browser session is not an API credential
    assert web.login(reg.admin).get("/api/v1/methodologies").status_code == 401
    token = web.token()
    web.login(None)
    assert web.client.get("/api/v1/methodologies", headers=web.api(token)).status_code == 200
    # the user loses the role: the token stops working
    with reg.uow() as s:
        users.revoke_role(s, reg.admin, reg.integrator, "integrator")
    assert web.client.get("/api/v1/methodologies", headers=web.api(token)).status_code == 401
    with reg.uow() as s:
        users.grant_role(s, reg.admin, reg.integrator, "integrator")
    assert web.client.get("/api/v1/methodologies", headers=web.api(token)).status_code == 200
    # revoked: no more
    with reg.uow() as s:
        [row] = tokens.of_user(s, reg.integrator)
        tokens.revoke(s, reg.integrator, row.id)
    assert web.client.get("/api/v1/methodologies", headers=web.api(token)).status_code == 401
    # tokens are for integrators, made by themselves or an administrator
    with reg.uow() as s, pytest.raises(Invalid, match="not an active integrator"):
        tokens.create(s, reg.admin, reg.expert, "x")
    with reg.uow() as s, pytest.raises(Forbidden):
        tokens.create(s, reg.expert, reg.integrator, "x")


def test_published_methodologies_a_page_at_a_time(web):
    reg = web.reg
    web.published("1.0.0")
    with reg.uow() as s:
        workflow.create_methodology(s, reg.author, id="test.another", title="Another",
                                    domain="transport")
        workflow.create_methodology(s, reg.author, id="test.drafts-only", title="Drafts",
                                    domain="transport")
        workflow.create_version(s, reg.author, "test.drafts-only", "1.0.0",
                                source("test.drafts-only"))
    web.published("1.0.0", methodology_id="test.another", text=source("test.another"))
    headers = web.api(web.token())
    first = web.client.get("/api/v1/methodologies?per_page=1", headers=headers).get_json()
    assert (first["total"], first["pages"], first["page"]) == (2, 2, 1)
    [item] = first["items"]
    assert item["id"] == "test.another" and item["domain"] == "transport"
    second = web.client.get("/api/v1/methodologies?per_page=1&page=2", headers=headers).get_json()
    [item] = second["items"]
    assert item["id"] == METHODOLOGY and item["current_version"] == "1.0.0"
    assert item["versions"][0]["state"] == "published"
    assert item["versions"][0]["content_hash"] == reg.version(1).content_hash
    bad = web.client.get("/api/v1/methodologies?per_page=1000", headers=headers)
    assert bad.status_code == 400 and bad.get_json()["code"] == "bad_pagination"


def test_schema_of_the_version_in_force(two_versions):
    web, token = two_versions
    body = web.client.get(f"/api/v1/methodologies/{METHODOLOGY}/schema",
                          headers=web.api(token)).get_json()
    assert body["version"]["version"] == "1.1.0" and body["metadata"]["version"] == "1.1.0"
    assert body["content_hash"] == body["version"]["content_hash"]
    schema = body["input_schema"]
    assert schema["properties"]["mode"]["enum"] == ["ebus", "metro", "diesel_bus"]
    assert schema["properties"]["distance"]["x-unit"] == "km"
    assert {"id", "account", "mode", "distance", "boarded", "alighted"} <= set(schema["required"])
    metro = next(p for p in body["parameters"] if p["name"] == "reduction_factor")
    assert metro["periods"][0]["values"]["metro"] == "50.1"
    old = web.client.get(f"/api/v1/methodologies/{METHODOLOGY}/schema?version=1.0.0",
                         headers=web.api(token)).get_json()
    assert old["version"]["state"] == "superseded" and old["metadata"]["version"] == "1.0.0"
    missing = web.client.get(f"/api/v1/methodologies/{METHODOLOGY}/schema?version=9.9.9",
                             headers=web.api(token))
    assert missing.status_code == 404 and missing.get_json()["code"] == "version_not_found"
    nothing = web.client.get("/api/v1/methodologies/no.such/schema", headers=web.api(token))
    assert nothing.status_code == 404 and nothing.get_json()["code"] == "methodology_not_found"


def test_each_record_is_evaluated_by_the_version_applicable_at_its_time(two_versions):
    web, token = two_versions
    records = [ride("may", "2024-05-20"), ride("june", "2024-06-20"), "not a record",
               {**ride("no-distance"), "distance": None}, {"id": "no-time", "account": "a",
                                                         "mode": "metro", "distance": "1 km"},
               ride("diesel", mode="diesel_bus"), ride("way-back", "2023-05-20")]
    response = web.client.post("/api/v1/evaluate", headers=web.api(token),
                               json={"methodology": METHODOLOGY, "records": records,
                                     "as_of": "2024-06-25"})
    assert response.status_code == 200
    body = response.get_json()
    by_id = {r["id"]: r for r in body["results"]}
    may, june = by_id["may"], by_id["june"]
    assert (may["index"], may["version"], may["reduction_mg"]) == (0, "1.0.0", 467_000)
    assert may["applicability"].startswith("1.0.0 under the 100000-day grace period of 1.1.0")
    assert (june["index"], june["version"], june["reduction_mg"], june["points"]) == (
        1, "1.1.0", 501_000, 501)
    assert june["applicability"] == "1.1.0 in force since 2024-06-01"
    assert june["content_hash"] != may["content_hash"]
    assert (by_id["diesel"]["status"], by_id["diesel"]["code"]) == ("rejected", "NOT_COVERED")
    assert "explanation" not in june
    errors = {e["index"]: e for e in body["errors"]}
    assert errors[2]["code"] == "not_an_object"
    assert errors[3] == {"index": 3, "pointer": "/records/3", "id": "no-distance", "code": "invalid_record",
                         "reason": "distance: missing"}
    assert errors[4]["code"] == "invalid_record" and errors[4]["reason"].startswith("time: missing")
    assert errors[6]["code"] == "no_applicable_version"
    assert "the first, 1.0.0, takes effect on 2024-01-01" in errors[6]["reason"]
    assert body["summary"] == {"records": 7, "evaluated": 3, "errors": 4,
                               "by_status": {"credited": 2, "rejected": 1},
                               "reduction_mg": 968_000, "points": 968,
                               "versions": ["1.0.0", "1.1.0"]}
    # the explanation, on request
    explained = web.client.post("/api/v1/evaluate", headers=web.api(token), json={
        "methodology": METHODOLOGY, "records": [ride("june")], "explain": True}).get_json()
    [r] = explained["results"]
    assert "parameter  reduction_factor[metro] = 50.1 g/km" in r["explanation_text"]
    assert any(step["kind"] == "output" and step["name"] == "reduction" for step in r["explanation"])


def test_credits_are_idempotent_by_record_id(two_versions):
    web, token = two_versions
    reg = web.reg
    batch = [ride("r1"), ride("r2", hour=10), ride("r3", mode="diesel_bus", hour=12),
             {**ride("r4", hour=14), "id": None}]
    post = lambda records, **extra: web.client.post(  # noqa: E731
        "/api/v1/credits", headers=web.api(token),
        json={"methodology": METHODOLOGY, "records": records, **extra})
    first = post(batch).get_json()
    assert first["summary"] == {"records": 4, "evaluated": 3, "errors": 1, "credited": 2,
                                "already_credited": 0, "conflicts": 0, "not_creditable": 1,
                                "credited_reduction_mg": 1_002_000, "credited_points": 1002}
    assert {r["id"]: r["credit"] for r in first["results"]} == {
        "r1": "credited", "r2": "credited", "r3": "not_creditable"}
    assert first["errors"] == [{"index": 3, "pointer": "/records/3", "id": None, "code": "missing_id",
                                "reason": first["errors"][0]["reason"]}]
    # the same batch again: nothing is credited twice, and it says which were
    again = post(batch).get_json()
    assert again["summary"]["credited"] == 0 and again["summary"]["already_credited"] == 2
    r1 = next(r for r in again["results"] if r["id"] == "r1")
    assert r1["credit"] == "already_credited"
    assert r1["credited"]["reduction_mg"] == 501_000 and r1["credited"]["version"] == "1.1.0"
    # under an idempotency key, and mixed with a new record
    keyed = post([ride("r2", hour=10), ride("r5", hour=16)], idempotency_key="erp-0001").get_json()
    assert {r["id"]: r["credit"] for r in keyed["results"]} == {"r2": "already_credited",
                                                                "r5": "credited"}
    replay = web.client.post("/api/v1/credits", headers={**web.api(token), "Idempotency-Key": "erp-0001"},
                             json={"methodology": METHODOLOGY,
                                   "records": [ride("r2", hour=10), ride("r5", hour=16)]}).get_json()
    assert replay["summary"]["credited"] == 0 and replay["batches"][0]["replayed"] is True
    assert {r["id"]: r["credit"] for r in replay["results"]} == {"r2": "already_credited",
                                                                 "r5": "already_credited"}
    # the same key for other records is a conflict
    clash = post([ride("r9")], idempotency_key="erp-0001")
    assert clash.status_code == 409 and clash.get_json()["code"] == "conflict"
    assert reg.count("credit_entries") == 3
    with reg.db.read() as s:
        # the entries are the platform account's that the integrator's "acct-1" names
        platform = accounts.resolve(s, reg.integrator, "acct-1", create=False)
        assert ledger.balance(s, str(platform.id)) == {"reduction_mg": 1_503_000, "points": 1503}
    # an integrator's credits go through the ledger's rights: nothing bypasses them
    assert reg.count("credit_batches") == 2


def test_a_record_past_the_grace_period_is_not_credited(web):
    reg = web.reg
    web.published("1.0.0", dt.date(2024, 1, 1))
    web.published("1.1.0", dt.date(2024, 6, 1), faster_metro(source(METHODOLOGY, "1.1.0")))
    body = web.client.post("/api/v1/credits", headers=web.api(web.token()), json={
        "methodology": METHODOLOGY, "records": [ride("old", "2024-05-20"), ride("new")]}).get_json()
    assert [r["id"] for r in body["results"]] == ["new"]
    [error] = body["errors"]
    assert error["code"] == "no_applicable_version" and "grace period" in error["reason"]
    assert reg.count("credit_entries") == 1


def test_two_concurrent_requests_with_the_same_record_credit_it_once(two_versions):
    web, token = two_versions
    records = [ride(f"c{i}", hour=i) for i in range(1, 8)]
    barrier = threading.Barrier(4)
    answers = []

    def send(key):
        client = web.app.test_client()
        barrier.wait()
        response = client.post("/api/v1/credits", headers=web.api(token),
                               json={"methodology": METHODOLOGY, "records": records,
                                     **({"idempotency_key": key} if key else {})})
        answers.append((response.status_code, response.get_json()))

    threads = [threading.Thread(target=send, args=(key,)) for key in ("k-a", "k-b", None, None)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [status for status, _ in answers] == [200] * 4, answers
    assert web.reg.count("credit_entries") == len(records)
    credited = [r["id"] for _, body in answers for r in body["results"] if r["credit"] == "credited"]
    assert sorted(credited) == sorted(r["id"] for r in records)  # each once, by one request
    for _, body in answers:
        assert all(r["credit"] in ("credited", "already_credited") for r in body["results"])


def test_errors_are_json_with_codes_and_no_traceback(web, monkeypatch):
    web.published("1.0.0")
    headers = web.api(web.token())
    get, post = web.client.get, web.client.post
    assert get("/api/v1/nothing-here", headers=headers).get_json()["code"] == "not_found"
    wrong = get("/api/v1/evaluate", headers=headers)
    assert wrong.status_code == 405 and wrong.get_json()["code"] == "method_not_allowed"
    assert wrong.headers["Allow"] == "POST"
    assert post("/api/v1/methodologies", headers=headers).status_code == 405
    # there is no route that changes a version
    assert web.client.put(f"/api/v1/methodologies/{METHODOLOGY}", headers=headers,
                          json={"source": "x"}).status_code == 404
    garbled = post("/api/v1/evaluate", headers={**headers, "Content-Type": "application/json"},
                   data="{not json")
    assert garbled.status_code == 400 and garbled.get_json()["code"] == "bad_request"
    assert post("/api/v1/evaluate", headers=headers, json={"methodology": METHODOLOGY,
                                                           "records": {"a": 1}}).status_code == 400
    assert post("/api/v1/evaluate", headers=headers, json={"records": []}).status_code == 400
    unknown = post("/api/v1/evaluate", headers=headers, json={"methodology": "no.such",
                                                              "records": []})
    assert unknown.status_code == 404 and unknown.get_json()["code"] == "methodology_not_found"
    from webui.api import service
    monkeypatch.setattr(service, "MAX_RECORDS", 2)
    big = post("/api/v1/evaluate", headers=headers, json={"methodology": METHODOLOGY,
                                                          "records": [{}, {}, {}]})
    assert big.status_code == 413 and big.get_json()["code"] == "too_many_records"

    def boom(*args, **kwargs):
        raise RuntimeError("secret internals")
    monkeypatch.setattr(service, "evaluate", boom)
    crash = post("/api/v1/evaluate", headers=headers, json={"methodology": METHODOLOGY,
                                                            "records": []})
    assert crash.status_code == 500
    problem = crash.get_json()
    assert crash.mimetype == "application/problem+json"
    assert (problem["code"], problem["status"], problem["type"], problem["instance"]) == (
        "server_error", 500, "/api/v1/problems/server_error", "/api/v1/evaluate")
    assert problem["detail"] == ("an unexpected error occurred; it has been logged with "
                                 f"request id {crash.headers['X-Request-Id']}")
    assert b"Traceback" not in crash.data and b"secret" not in crash.data


def test_the_api_needs_no_csrf_token_but_the_editor_does(reg):
    from webui import create_app
    app = create_app({"TESTING": True, "SECRET_KEY": "s", "DATABASE_URL": reg.db.url},
                     database=reg.db)
    with reg.uow() as s:
        token = tokens.create(s, reg.admin, reg.integrator, "csrf")[1]
    client = app.test_client()
    response = client.post("/api/v1/evaluate", headers={"Authorization": f"Bearer {token}"},
                           json={"methodology": METHODOLOGY, "records": []})
    assert response.status_code == 404  # past the CSRF check: there is no published version
    assert response.get_json()["code"] == "methodology_not_found"
    editor = client.post("/editor/check", json={"source": "x"})
    assert editor.status_code == 400  # the CSRF check (signed out or not)


def test_integrators_manage_their_tokens_on_a_page(web):
    reg = web.reg
    web.published("1.0.0")
    client = web.login(reg.integrator)
    assert client.get("/integrations/tokens").status_code == 200
    page = client.post("/integrations/tokens", data={"name": "ERP connector"})
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="new-token-value"' in html
    token = html.split('id="new-token-value">')[1].split("<")[0]
    assert token.startswith("tanpu_")
    assert web.new_client().get("/api/v1/methodologies",
                                headers=web.api(token)).status_code == 200
    # shown once
    assert token not in client.get("/integrations/tokens").get_data(as_text=True)
    with reg.db.read() as s:
        [row] = tokens.of_user(s, reg.integrator)
    assert client.post(f"/integrations/tokens/{row.id}/revoke").status_code == 303
    assert web.new_client().get("/api/v1/methodologies",
                                headers=web.api(token)).status_code == 401
    # others cannot
    assert web.login(reg.expert).get("/integrations/tokens").status_code == 403
    assert web.login(reg.expert).post("/integrations/tokens",
                                      data={"name": "x", "user_id": reg.integrator}).status_code == 403
    admin = web.login(reg.admin)
    assert "integrator@tanpu.test" in admin.get("/integrations/tokens").get_data(as_text=True)
    made = admin.post("/integrations/tokens", data={"name": "for them", "user_id": reg.integrator})
    assert made.status_code == 200 and "new-token-value" in made.get_data(as_text=True)
    refused = admin.post("/integrations/tokens", data={"name": "x", "user_id": reg.expert})
    assert refused.status_code == 422 and "not an active integrator" in text_of(refused)


def test_a_version_published_between_two_requests_of_a_token_applies_to_the_second(web):
    """The versions' fingerprint is read with the token's check (the methodology the token
    used last, webui/api/views.py _fingerprint) and the kept versions are used only while
    it is unchanged: a version published after a token's request applies to its next one,
    by evaluate and by credits; and a request naming another methodology than the last
    one reads that methodology's own versions."""
    web.published("1.0.0", dt.date(2024, 1, 1))
    token = web.token()

    def version(path, record_id):
        response = web.client.post(f"/api/v1/{path}", headers=web.api(token), json={
            "methodology": METHODOLOGY, "records": [ride(record_id)], "as_of": "2024-06-25"}
            if path == "evaluate" else {"methodology": METHODOLOGY, "records": [ride(record_id)]})
        assert response.status_code == 200, response.get_data(as_text=True)
        [result] = response.get_json()["results"]
        return result["version"]

    assert version("evaluate", "a") == "1.0.0"
    assert version("credits", "b") == "1.0.0"
    web.published("1.1.0", dt.date(2024, 6, 1), faster_metro(source(METHODOLOGY, "1.1.0")),
                  grace_days=100_000)
    assert version("evaluate", "c") == "1.1.0"
    assert version("credits", "d") == "1.1.0"
    other = web.client.post("/api/v1/evaluate", headers=web.api(token), json={
        "methodology": "test.no-such-methodology", "records": [ride("e")]})
    assert other.status_code == 404
    assert version("credits", "f") == "1.1.0"
