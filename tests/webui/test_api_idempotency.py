"""Idempotency-Key on the API's remaining state-changing POSTs (issue 14, item 3): reversing
a credit, adding a reward, subscribing a webhook. A retry with the same key and body gets
the first answer (Idempotent-Replayed: true) and changes nothing; the same key with another
body is a 409; without a key, as before (SQLite and PostgreSQL)."""

from __future__ import annotations

import sqlalchemy as sa

from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures
from tests.webui.test_api_rewards import admin_token, call, entry_id
from tests.webui.test_api_state import capped, post, reg, ride  # noqa: F401 - the capped fixture (and its reg)


def count(web, table: str) -> int:
    with web.reg.db.engine.connect() as c:
        return c.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one()


def twice(web, token, path, body, key, other_body):
    """The first answer, its replay (the same), and the same key with another body (409)."""
    first = call(web, "post", path, token, json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 201, first.get_data(as_text=True)
    assert "Idempotent-Replayed" not in first.headers
    again = call(web, "post", path, token, json=body, headers={"Idempotency-Key": key})
    assert again.status_code == 201, again.get_data(as_text=True)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    other = call(web, "post", path, token, json=other_body, headers={"Idempotency-Key": key})
    assert other.status_code == 409 and other.get_json()["code"] == "conflict", other.get_json()
    return first.get_json()


def test_a_reversal_retried_with_its_key_is_replayed_not_refused(capped):
    web, token = capped
    post(web, token, [ride("r0", 0), ride("r1", 60)])
    boss = admin_token(web)
    path = f"/api/v1/credits/{entry_id(web, 'r0')}/reversal"
    first = twice(web, boss, path, {"reason": "GPS track faked"}, "rev-1", {"reason": "another"})
    assert first["reversal"]["entry"] == entry_id(web, "r0")
    assert count(web, "reversals") == 1
    # without a key a second reversal of the entry is the conflict it always was
    again = call(web, "post", path, boss, json={"reason": "GPS track faked"})
    assert again.status_code == 409
    # a bad key is a 400 naming the header
    bad = call(web, "post", f"/api/v1/credits/{entry_id(web, 'r1')}/reversal", boss,
               json={"reason": "x"}, headers={"Idempotency-Key": " padded "})
    assert bad.status_code == 400 and bad.get_json()["code"] == "bad_idempotency_key"
    assert bad.get_json()["errors"][0]["pointer"] == "#/header/Idempotency-Key"
    assert count(web, "reversals") == 1


def test_a_reward_added_twice_with_one_key_is_one_reward(web):
    boss = admin_token(web)
    body = {"name": "地铁券", "name_en": "Metro ticket", "price_points": 500}
    first = twice(web, boss, "/api/v1/rewards", body, "reward-1", {**body, "price_points": 600})
    assert first["price_points"] == 500
    assert count(web, "rewards") == 1
    # the same key from another integrator is that integrator's own key
    other = admin_token_of(web, "other@tanpu.test")
    fresh = call(web, "post", "/api/v1/rewards", other, json={**body, "name": "公交券"},
                 headers={"Idempotency-Key": "reward-1"})
    assert fresh.status_code == 201 and "Idempotent-Replayed" not in fresh.headers
    assert count(web, "rewards") == 2


def admin_token_of(web, email: str) -> str:
    from registry import users
    with web.reg.uow() as s:
        user = users.create_user(s, None, email=email, name=email.split("@")[0],
                                 roles=["administrator", "integrator"]).id
    return web.token(user)


def test_a_webhook_subscribed_twice_with_one_key_is_one_subscription(web, monkeypatch):
    monkeypatch.setenv("TANPU_WEBHOOK_ALLOW_PRIVATE", "1")
    token = web.token()
    body = {"url": "http://127.0.0.1:9/hook", "events": ["job.finished"]}
    first = twice(web, token, "/api/v1/webhooks", body, "hook-1",
                  {**body, "events": ["credit.reversed"]})
    assert first["secret"]  # the replay gave the same secret: the one the receiver checks
    listed = call(web, "get", "/api/v1/webhooks", token).get_json()["items"]
    assert [s["id"] for s in listed] == [first["id"]]
