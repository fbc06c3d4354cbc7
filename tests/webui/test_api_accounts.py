"""The carbon-account endpoints of /api/v1 with real tokens: create, list a page at a time,
show (only the caller's identities), change (status, parent, name, domains), link and
unlink an account id, the rolled-up balance; and what one integrator may not see or do
with another's accounts (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from registry import accounts, audit, users
from registry.models import CreditBatch, CreditEntry
from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures


def second(web) -> tuple[int, str]:
    with web.reg.uow() as s:
        bikes = users.create_user(s, web.reg.admin, email="bikes@tanpu.test", name="Bikes",
                                  roles=["integrator"]).id
    return bikes, web.token(bikes)


def test_create_show_change_and_list_accounts(web):
    headers = web.api(web.token())
    post = lambda body: web.client.post("/api/v1/accounts", headers=headers, json=body)  # noqa: E731
    region = post({"kind": "region", "name": "Quzhou", "domains": ["transport", "energy"]})
    assert region.status_code == 201, region.get_json()
    region = region.get_json()
    assert (region["kind"], region["name"], region["domains"], region["status"]) == (
        "region", "Quzhou", ["energy", "transport"], "active")
    assert region["parent"] is None and region["children"] == 0 and region["created_by_you"]
    unit = post({"kind": "unit", "parent": region["id"], "name": "Bus company",
                 "external_id": "depot-1"}).get_json()
    assert unit["parent"] == {"id": region["id"], "kind": "region", "name": "Quzhou"}
    assert [i["external_id"] for i in unit["identities"]] == ["depot-1"]
    person = post({"kind": "individual", "parent": unit["id"]}).get_json()
    shown = web.client.get(f"/api/v1/accounts/{unit['id']}", headers=headers).get_json()
    assert shown["children"] == 1 and shown["identities"][0]["external_id"] == "depot-1"

    # refused: with the reason, as JSON
    bad = post({"kind": "unit", "parent": person["id"]})
    assert bad.status_code == 422 and bad.get_json()["code"] == "invalid"
    assert "can be under" in bad.get_json()["detail"]
    assert post({"kind": "household"}).status_code == 422
    assert post({"kind": "unit", "domains": "transport"}).status_code == 400
    assert post({"kind": "unit", "parent": "1"}).status_code == 400
    assert post({}).get_json()["code"] == "bad_request"

    # change: name, domains, parent, status
    patch = web.client.patch(f"/api/v1/accounts/{person['id']}", headers=headers,
                             json={"parent": region["id"], "name": "rider 7",
                                   "domains": ["transport"], "status": "frozen"})
    assert patch.status_code == 200, patch.get_json()
    body = patch.get_json()
    assert (body["parent"]["id"], body["name"], body["domains"], body["status"]) == (
        region["id"], "rider 7", ["transport"], "frozen")
    to_top = web.client.patch(f"/api/v1/accounts/{person['id']}", headers=headers,
                              json={"parent": None, "status": "closed"}).get_json()
    assert to_top["parent"] is None and to_top["status"] == "closed"
    final = web.client.patch(f"/api/v1/accounts/{person['id']}", headers=headers,
                             json={"status": "active"})
    assert final.status_code == 409 and final.get_json()["code"] == "conflict"
    odd = web.client.patch(f"/api/v1/accounts/{person['id']}", headers=headers,
                           json={"kind": "unit"})
    assert odd.status_code == 400 and "unknown field `kind`" in odd.get_json()["detail"]
    assert odd.get_json()["errors"] == [{"pointer": "/kind", "code": "extra_forbidden",
                                         "detail": "/kind: unknown field `kind`"}]

    # a page at a time, filtered
    listed = web.client.get("/api/v1/accounts?per_page=2", headers=headers).get_json()
    assert (listed["total"], listed["pages"], len(listed["items"])) == (3, 2, 2)
    assert [a["id"] for a in listed["items"]] == [region["id"], unit["id"]]
    units = web.client.get("/api/v1/accounts?kind=unit", headers=headers).get_json()
    assert [a["id"] for a in units["items"]] == [unit["id"]]
    under = web.client.get(f"/api/v1/accounts?parent={region['id']}", headers=headers).get_json()
    assert [a["id"] for a in under["items"]] == [unit["id"]]
    closed = web.client.get("/api/v1/accounts?status=closed", headers=headers).get_json()
    assert [a["id"] for a in closed["items"]] == [person["id"]]
    too_many = web.client.get("/api/v1/accounts?per_page=1000", headers=headers)
    assert too_many.status_code == 400 and too_many.get_json()["code"] == "bad_pagination"
    assert web.client.get("/api/v1/accounts?kind=x", headers=headers).status_code == 422
    # every change is in the audit chain
    with web.reg.db.read() as s:
        assert [e.action for e in audit.entries_for(s, "account", person["id"])] == [
            "account.create", "account.update", "account.set_parent", "account.set_status",
            "account.set_parent", "account.set_status"]
        assert audit.verify(s).ok


def test_identities_are_the_callers_own_and_accounts_are_private(web):
    reg = web.reg
    mine = web.api(web.token())
    bikes, token = second(web)
    theirs = web.api(token)
    person = web.client.post("/api/v1/accounts", headers=mine,
                             json={"kind": "individual", "external_id": "bus-42"}).get_json()
    url = f"/api/v1/accounts/{person['id']}"
    # another integrator: as if it did not exist, for reading and for writing
    for method, path, body in [("GET", url, None), ("GET", url + "/balance", None),
                               ("PATCH", url, {"status": "frozen"}),
                               ("PUT", url + "/identities/bike-7", None)]:
        response = web.client.open(path, method=method, headers=theirs, json=body)
        assert response.status_code == 404, (method, path, response.get_json())
    assert web.client.get("/api/v1/accounts", headers=theirs).get_json()["total"] == 0
    # an administrator links the bike operator's id for the same person: now both see it,
    # each with its own id only
    with reg.uow() as s:
        accounts.link(s, reg.admin, bikes, "bike-7", person["id"])
    seen = web.client.get(url, headers=theirs).get_json()
    assert [i["external_id"] for i in seen["identities"]] == ["bike-7"]
    assert not seen["created_by_you"]
    assert "bus-42" not in str(seen)
    mine_seen = web.client.get(url, headers=mine).get_json()
    assert [i["external_id"] for i in mine_seen["identities"]] == ["bus-42"]
    # it sees the account but may not change it (it did not create it)
    frozen = web.client.patch(url, headers=theirs, json={"status": "frozen"})
    assert frozen.status_code == 403 and frozen.get_json()["code"] == "forbidden"
    # linking: idempotent, a second id, a clash, unlinking
    put = web.client.put(url + "/identities/bus-42", headers=mine)
    assert put.status_code == 200
    put = web.client.put(url + "/identities/bus-42%2Falt", headers=mine).get_json()
    assert [i["external_id"] for i in put["identities"]] == ["bus-42", "bus-42/alt"]
    other = web.client.post("/api/v1/accounts", headers=mine, json={"kind": "individual"}).get_json()
    clash = web.client.put(f"/api/v1/accounts/{other['id']}/identities/bus-42", headers=mine)
    assert clash.status_code == 409 and "unlink it first" in clash.get_json()["detail"]
    gone = web.client.delete(url + "/identities/bus-42%2Falt", headers=mine).get_json()
    assert [i["external_id"] for i in gone["identities"]] == ["bus-42"]
    assert web.client.delete(url + "/identities/bike-7", headers=mine).status_code == 404
    assert web.client.get("/api/v1/accounts/999999", headers=mine).status_code == 404
    wrong = web.client.post(url, headers=mine, json={})
    assert wrong.status_code == 405 and "PATCH" in wrong.headers["Allow"]


def test_the_balance_rolls_up(web):
    reg = web.reg
    headers = web.api(web.token())
    post = lambda body: web.client.post("/api/v1/accounts", headers=headers,  # noqa: E731
                                        json=body).get_json()
    region = post({"kind": "region"})
    unit = post({"kind": "unit", "parent": region["id"]})
    alice = post({"kind": "individual", "parent": unit["id"]})
    vid = reg.to_state("published")
    v = reg.version(vid)
    now = dt.datetime(2024, 5, 20, tzinfo=dt.timezone.utc)
    with reg.db.engine.begin() as c:
        batch = c.execute(sa.insert(CreditBatch.__table__).returning(CreditBatch.__table__.c.id),
                          {"idempotency_key": "k", "request_digest": "d",
                           "actor_id": reg.integrator, "methodology_id": v.methodology_id,
                           "version": v.version, "content_hash": v.content_hash,
                           "created_at": now}).scalar_one()
        c.execute(sa.insert(CreditEntry.__table__), [
            {"batch_id": batch, "integrator_id": reg.integrator, "account": str(account), "methodology_id": v.methodology_id,
             "version": v.version, "content_hash": v.content_hash, "record_id": f"r{account}",
             "activity_time": now, "reduction_mg": mg, "points": mg // 1000, "bonus": 1,
             "status": "credited", "reason": "", "credited_at": now}
            for account, mg in ((alice["id"], 1_500_000), (unit["id"], 500_000))])
    body = web.client.get(f"/api/v1/accounts/{region['id']}/balance", headers=headers).get_json()
    assert body["account"] == region["id"]
    assert (body["own"]["entries"], body["own"]["reduction_mg"]) == (0, 0)
    sub = body["subtree"]
    assert (sub["entries"], sub["reduction_mg"], sub["reduction_kg"], sub["points"]) == (
        2, 2_000_000, 2.0, 2002)
    assert sub["by_methodology"][v.methodology_id]["points"] == 2002
    mid = web.client.get(f"/api/v1/accounts/{unit['id']}/balance", headers=headers).get_json()
    assert (mid["own"]["reduction_kg"], mid["subtree"]["reduction_kg"]) == (0.5, 2.0)
