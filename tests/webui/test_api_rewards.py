"""Spending, reversal and retirement through /api/v1, the rewards catalogue page and the
public certificate page (Flask test client, SQLite and PostgreSQL): a reversal lowers a
cap's total so a later ride of the same day is credited up to the cap again, freezes an
account it drives negative; redemptions are idempotent; a certificate verifies without
signing in, in Chinese and English, and shows tampering."""

from __future__ import annotations

import sqlalchemy as sa

from registry import users, verify
from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures
from tests.webui.test_api_state import capped, post, reg, ride  # noqa: F401 - the capped fixture (and its reg)


def admin_token(web) -> str:
    """A token of a user who is an integrator and an administrator (tokens are
    integrators'; the administrator endpoints want the role too)."""
    with web.reg.uow() as s:
        boss = users.create_user(s, None, email="boss@tanpu.test", name="boss",
                                 roles=["administrator", "integrator"]).id
    return web.token(boss)


def platform_id(web, external: str = "acct-1") -> int:
    with web.reg.db.engine.connect() as c:
        return c.execute(sa.text("SELECT account_id FROM account_identities WHERE external_id = :e"),
                         {"e": external}).scalar_one()


def entry_id(web, record_id: str) -> int:
    with web.reg.db.engine.connect() as c:
        return c.execute(sa.text("SELECT id FROM credit_entries WHERE record_id = :r"),
                         {"r": record_id}).scalar_one()


def call(web, method, path, token=None, **kwargs):
    headers = {**(web.api(token) if token else {}), **kwargs.pop("headers", {})}
    return getattr(web.app.test_client(), method)(path, headers=headers, **kwargs)


def test_a_reversal_gives_the_cap_back_to_a_later_ride_of_that_day(capped):
    web, token = capped
    rides = [ride(f"r{i}", 60 * i) for i in range(3)]  # 467 + 467 + 66 (capped): 1 kg
    for r in rides:
        post(web, token, [r])
    boss = admin_token(web)
    assert call(web, "post", f"/api/v1/credits/{entry_id(web, 'r1')}/reversal", token,
                json={"reason": "fraud"}).status_code == 403  # an integrator only
    answer = call(web, "post", f"/api/v1/credits/{entry_id(web, 'r1')}/reversal", boss,
                  json={"reason": "GPS track faked"})
    assert answer.status_code == 201, answer.get_data(as_text=True)
    body = answer.get_json()
    assert body["reversal"]["reduction_mg"] == 467_000
    assert [(c["before"], c["after"]) for c in body["caps"]] == [(1_000_000, 533_000)]
    again = call(web, "post", f"/api/v1/credits/{entry_id(web, 'r1')}/reversal", boss,
                 json={"reason": "again"})
    assert again.status_code == 409 and again.get_json()["code"] == "conflict"
    later = post(web, token, [ride("r3", 240)])["results"][0]  # the same day: the cap again
    assert (later["status"], later["reduction_mg"]) == ("credited", 467_000)
    last = post(web, token, [ride("r4", 300)])["results"][0]
    assert (last["status"], last["reduction_mg"]) == ("capped", 0)
    with web.reg.db.engine.connect() as c:
        credited = c.execute(sa.text("SELECT SUM(reduction_mg) FROM credit_entries")).scalar_one()
        reversed_ = c.execute(sa.text("SELECT SUM(reduction_mg) FROM reversals")).scalar_one()
    assert credited - reversed_ == 1_000_000  # the day's cap, after the reversal
    with web.reg.db.read() as s:  # verify replays the reversal between the batches
        report = verify.verify(s)
    assert report.ok, str(report)


def test_rewards_redemption_and_a_reversal_that_freezes(capped):
    web, token = capped
    post(web, token, [ride("r0", 0), ride("r1", 60)])  # 467 points each
    account = platform_id(web)
    boss = admin_token(web)
    assert call(web, "post", "/api/v1/rewards", token,
                json={"name": "券", "price_points": 1}).status_code == 403
    created = call(web, "post", "/api/v1/rewards", boss, json={
        "name": "公交乘车券", "name_en": "Bus voucher", "price_points": 500,
        "stock_per_period": 100, "period": "month", "limit_per_account_per_period": 2})
    assert created.status_code == 201, created.get_data(as_text=True)
    reward = created.get_json()["id"]
    assert call(web, "post", "/api/v1/rewards", boss,
                json={"name": "x", "price_points": 0}).status_code == 422
    assert call(web, "post", "/api/v1/rewards", boss,
                json={"name": "x", "price_points": 1, "session": 1}).status_code == 400
    listed = call(web, "get", "/api/v1/rewards", token).get_json()["items"]
    assert [(r["id"], r["stock_left"]) for r in listed] == [(reward, 100)]

    path = f"/api/v1/accounts/{account}/redemptions"
    assert call(web, "post", path, token, json={"reward": reward}).status_code == 400  # no key
    first = call(web, "post", path, token, json={"reward": reward},
                 headers={"Idempotency-Key": "order-1"})
    assert first.status_code == 201, first.get_data(as_text=True)
    assert first.get_json()["points"]["balance"] == 934 - 500
    replay = call(web, "post", path, token, json={"reward": reward},
                  headers={"Idempotency-Key": "order-1"})
    assert replay.status_code == 200 and replay.get_json()["replayed"]
    assert replay.get_json()["redemption"]["id"] == first.get_json()["redemption"]["id"]
    poor = call(web, "post", path, token, json={"reward": reward},
                headers={"Idempotency-Key": "order-2"})
    assert poor.status_code == 409 and "434 points" in poor.get_json()["detail"]
    wallet = call(web, "get", f"/api/v1/accounts/{account}/wallet", token).get_json()
    assert wallet["points"] == {"credited": 934, "redeemed": 500, "reversed": 0, "balance": 434}

    reversed_ = call(web, "post", f"/api/v1/credits/{entry_id(web, 'r0')}/reversal", boss,
                     json={"reason": "fraud"}).get_json()
    assert reversed_["points_balance"] == -33 and reversed_["account_frozen"]
    shown = call(web, "get", f"/api/v1/accounts/{account}", token).get_json()
    assert shown["status"] == "frozen"
    refused = call(web, "post", path, token, json={"reward": reward},
                   headers={"Idempotency-Key": "order-3"})
    assert refused.status_code == 409 and "frozen" in refused.get_json()["detail"]

    # /balance, /wallet and the account page agree: one computation (accounts.balances),
    # net of the reversal (/balance summed what was credited, issue 13)
    balance = call(web, "get", f"/api/v1/accounts/{account}/balance", token).get_json()
    wallet = call(web, "get", f"/api/v1/accounts/{account}/wallet", token).get_json()
    assert wallet["points"] == {"credited": 934, "redeemed": 500, "reversed": 467, "balance": -33}
    assert (balance["own"]["points"], balance["own"]["credited_points"],
            balance["own"]["reversed_points"]) == (467, 934, 467)
    assert (balance["own"]["reduction_mg"], balance["subtree"]["reduction_mg"]) == (467_000, 467_000)
    assert balance["points_balance"] == wallet["points"]["balance"] == -33
    assert balance["retirable_mg"] == wallet["retirable_mg"] == 467_000
    assert balance["own"]["by_methodology"]["test.transit"]["reversed_entries"] == 1
    page = web.new_client(web.reg.admin).get(f"/admin/accounts/{account}")
    assert page.status_code == 200
    assert 'data-balance="own"><th>This account</th><td>0.467 kg</td><td>467</td>' in page.get_data(as_text=True)


def test_retirement_and_its_public_certificate(capped):
    web, token = capped
    post(web, token, [ride("r0", 0), ride("r1", 60)])  # 467 g each
    account = platform_id(web)
    path = f"/api/v1/accounts/{account}/retirements"
    assert call(web, "post", path, token, json={"kg": 0.5}).status_code == 400  # no purpose
    too_much = call(web, "post", path, token, json={"kg": 1, "purpose": "x"})
    assert too_much.status_code == 409
    made = call(web, "post", path, token, json={"kg": "0.5", "purpose": "2024 衢州马拉松碳中和",
                                                "beneficiary": "Quzhou Marathon"})
    assert made.status_code == 201, made.get_data(as_text=True)
    cert = made.get_json()
    assert (cert["reduction_mg"], cert["reduction_t"], cert["verified"]) == (500_000, "0.0005", True)
    assert [(c["record_id"], c["reduction_mg"]) for c in cert["credits"]] == [("r0", 467_000),
                                                                             ("r1", 33_000)]
    second = call(web, "post", path, token, json={"reduction_mg": 434_000, "purpose": "y"})
    assert [(c["record_id"], c["reduction_mg"]) for c in second.get_json()["credits"]] == [
        ("r1", 434_000)]
    assert call(web, "post", path, token, json={"reduction_mg": 1, "purpose": "z"}).status_code == 409

    public = web.app.test_client()  # no token, no sign-in
    got = public.get(f"/api/v1/retirements/{cert['certificate']}")
    assert got.status_code == 200 and got.get_json()["verified"]
    assert got.get_json()["digest"] == cert["digest"]
    assert public.get("/api/v1/retirements/nope").status_code == 404
    english = web.new_client(lang="en").get(f"/certificates/{cert['certificate']}")
    text = english.get_data(as_text=True)
    assert english.status_code == 200 and 'data-verified="yes"' in text
    assert "Verified" in text and "0.0005 t" in text and "r0" in text and cert["digest"] in text
    chinese = web.new_client(lang="zh").get(f"/certificates/{cert['certificate']}")
    assert "已验证" in chinese.get_data(as_text=True)
    assert web.new_client().get("/certificates/nope").status_code == 404

    with web.reg.db.engine.begin() as c:  # a tampered digest shows
        if web.reg.db.dialect == "postgresql":
            c.execute(sa.text("SET LOCAL session_replication_role = replica"))
        else:
            c.execute(sa.text("DROP TRIGGER retirements_no_update"))
        c.execute(sa.text("UPDATE retirements SET digest = :d WHERE id = :i"),
                  {"d": "0" * 64, "i": cert["certificate"]})
    tampered = web.new_client(lang="en").get(f"/certificates/{cert['certificate']}")
    assert 'data-verified="no"' in tampered.get_data(as_text=True)
    assert not public.get(f"/api/v1/retirements/{cert['certificate']}").get_json()["verified"]


def test_the_rewards_catalogue_page(web):
    client = web.new_client(web.reg.admin)
    assert client.get("/admin/rewards").status_code == 200
    made = client.post("/admin/rewards", data={
        "name": "共享单车月卡", "name_en": "Bike month pass", "price_points": "800",
        "period": "month", "stock_per_period": "10000", "limit_per_account_per_period": "1"})
    assert made.status_code == 303
    page = client.get("/admin/rewards").get_data(as_text=True)
    assert "Bike month pass" in page and "10000 / month" in page and "Deactivate" in page
    with web.reg.db.engine.connect() as c:
        reward = c.execute(sa.text("SELECT id FROM rewards")).scalar_one()
    client.post(f"/admin/rewards/{reward}/active", data={"active": "0"})
    assert "Offer again" in client.get("/admin/rewards").get_data(as_text=True)
    bad = client.post("/admin/rewards", data={"name": "x", "price_points": "zero"},
                      follow_redirects=True)
    assert "not created" in bad.get_data(as_text=True)
    assert web.new_client(web.reg.integrator).get("/admin/rewards").status_code == 403
