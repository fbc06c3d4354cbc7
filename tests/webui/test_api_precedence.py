"""Issue 13, item 4: one real activity reported under two methodologies that cover it (the
same ride credited by a metro methodology and by a city's generic transit one) is
credited once, by the `precedes` order between them, enforced in the ledger
(registry/precedence.py; Flask test client, SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import re
import threading

import pytest
import sqlalchemy as sa

from registry import accounts, reversals, verify
from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures
from tests.webui.reviewkit import METHODOLOGY, reg_built_for, source

PREFERRED = "test.metro-first"  # says `precedes test.transit`
KM_MG = 46_700


@pytest.fixture(autouse=True)
def _the_ledger_verifies(reg):
    yield
    with reg.db.read() as s:
        report = verify.verify(s)
    assert report.ok, str(report)


def preferred_source() -> str:
    text = source(PREFERRED, "1.0.0")
    assert "  covers transit_trip\n" in text
    return text.replace("  covers transit_trip\n", f"  covers transit_trip\n  precedes {METHODOLOGY}\n", 1)


def _publish_two(web) -> None:
    web.published("1.0.0", dt.date(2024, 1, 1))
    web.reg.new_version("0.0.1", PREFERRED)  # makes the methodology (a draft left aside)
    web.published("1.0.0", dt.date(2024, 1, 1), preferred_source(), methodology_id=PREFERRED)


# Published once per session and backend (reviewkit.reg_built_for); each test of `two` gets
# a copy.
reg = reg_built_for("two", "webui-precedence", _publish_two)


@pytest.fixture
def two(web):
    return web, web.token()


def ride(record_id, minute=0, km=10, account="p-1", **extra):
    start = dt.datetime(2024, 6, 20, 6, 0) + dt.timedelta(minutes=minute)
    return {"id": record_id, "account": account, "mode": "metro", "distance": f"{km} km",
            "boarded": start.isoformat(timespec="minutes"),
            "alighted": (start + dt.timedelta(minutes=30)).isoformat(timespec="minutes"), **extra}


def post(web, token, methodology, records):
    response = web.app.test_client().post("/api/v1/credits", headers=web.api(token), json={
        "methodology": methodology, "records": records})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["results"]


def live(web) -> list[tuple]:
    """(methodology, record id, mg) of the credits not reversed."""
    with web.reg.db.engine.connect() as c:
        return [tuple(row) for row in c.execute(sa.text(
            "SELECT methodology_id, record_id, reduction_mg FROM credit_entries e WHERE NOT EXISTS "
            "(SELECT 1 FROM reversals r WHERE r.entry_id = e.id) ORDER BY methodology_id, record_id"))]


def test_the_preceded_methodology_credits_nothing_the_preceding_one_credited(two):
    web, token = two
    first = post(web, token, PREFERRED, [ride("m-1", km=4)])[0]
    assert first["credit"] == "credited"
    second = post(web, token, METHODOLOGY, [ride("t-1", km=4), ride("t-2", minute=90, km=2)])
    assert [(r["id"], r["status"], r["code"], r["credit"]) for r in second] == [
        ("t-1", "duplicate", "PRECEDED", "not_creditable"),
        ("t-2", "credited", "", "credited")]
    assert PREFERRED in second[0]["message"] and "m-1" in second[0]["message"]
    assert live(web) == [(PREFERRED, "m-1", 4 * KM_MG), (METHODOLOGY, "t-2", 2 * KM_MG)]


def test_the_preceding_methodology_arriving_second_takes_the_activity_over(two, reg):
    """The other credit is reversed (a compensating row, with the reason), so the ride
    ends credited once, by the methodology that takes precedence."""
    web, token = two
    assert post(web, token, METHODOLOGY, [ride("t-1", km=4)])[0]["credit"] == "credited"
    taken = post(web, token, PREFERRED, [ride("m-1", km=4)])[0]
    assert (taken["status"], taken["credit"]) == ("credited", "credited")
    assert live(web) == [(PREFERRED, "m-1", 4 * KM_MG)]
    with reg.db.read() as s:
        entry = reversals.find_entry(s, integrator_id=reg.integrator, methodology_id=METHODOLOGY,
                                     record_id="t-1")
        reversal = reversals.reversal_of(s, entry.id)
        assert "preceded" in reversal.reason and PREFERRED in reversal.reason
        person = accounts.resolve(s, reg.integrator, "p-1", create=False)
        own = accounts.balances(s, person.id).own
        assert (own.reduction_mg, own.credited_mg, own.reversed_mg) == (4 * KM_MG, 8 * KM_MG, 4 * KM_MG)


def test_other_accounts_times_and_activity_types_are_other_activities(two):
    web, token = two
    post(web, token, PREFERRED, [ride("m-1", km=4)])
    answers = post(web, token, METHODOLOGY, [
        ride("t-other-account", km=4, account="p-2"),
        ride("t-other-time", minute=1, km=4, account="p-3"),
        ride("t-same", km=4)])
    assert [(r["id"], r["code"]) for r in answers] == [
        ("t-other-account", ""), ("t-other-time", ""), ("t-same", "PRECEDED")]


def test_one_person_linked_across_integrators_is_one_activity(two, reg):
    """A bus operator credits the ride under the city methodology, a metro app under the
    preferred one with its own id for the same person: the app's credit takes over."""
    from registry import users
    web, token = two
    post(web, token, METHODOLOGY, [ride("bus-1", km=4, account="p-42")])
    with reg.uow() as s:
        app = users.create_user(s, None, email="app@tanpu.test", name="app", roles=("integrator",)).id
        person = accounts.resolve(s, reg.integrator, "p-42", create=False)
        accounts.link(s, reg.admin, app, "citizen-9", person.id)
    assert post(web, web.token(app), PREFERRED, [ride("app-7", km=4, account="citizen-9")])[0][
        "credit"] == "credited"
    assert live(web) == [(PREFERRED, "app-7", 4 * KM_MG)]


def test_concurrent_credits_under_both_methodologies_credit_each_ride_once(two):
    """16 clients, half under each methodology, the same 8 rides of 4 people: each ride
    ends credited once, and by the preferred methodology whenever it sent it."""
    web, token = two
    rides = [ride(f"r{i}", minute=40 * (i // 4), km=1 + i, account=f"p-{i % 4}") for i in range(8)]
    barrier = threading.Barrier(16)
    errors = []

    def send(c):
        try:
            methodology = PREFERRED if c % 2 else METHODOLOGY
            batch = [{**r, "id": f"{methodology}-{r['id']}-{c}"} for r in rides[c % 8:] + rides[:c % 8]][:3]
            barrier.wait()
            post(web, token, methodology, batch)
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=send, args=(c,)) for c in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    held = {}
    for methodology, record_id, _mg in live(web):
        ride_index = int(re.search(r"-r(\d+)-\d+$", record_id).group(1))
        assert ride_index not in held, f"ride {ride_index} credited twice"
        held[ride_index] = methodology
    assert sorted(held) == list(range(8))  # every ride sent, each once
    sent_preferred = {(c % 8 + k) % 8 for c in range(1, 16, 2) for k in range(3)}
    assert {i for i, m in held.items() if m == PREFERRED} == sent_preferred
