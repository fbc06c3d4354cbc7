"""Issue 13, items 6 and 9: reading the ledger back (statements, balances per period,
credits by record and by batch; API and CLI) and verifying it (registry/verify.py: every
balance and every credit recomputed from the entries, the stored state replayed, the
audit chain), on a varied stream credited through the API: caps, overlaps, duplicate
keys, bonuses, two versions, two integrators, a linked identity, a frozen account and a
hierarchy. Tampering with an entry is found, with the record id and the field."""

from __future__ import annotations

import datetime as dt
import json
import random
import re

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

import tests.registry.conftest as _registry_fixtures
from registry import accounts, verify
from registry.models import CreditEntry
from tanpu.cli import main
from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures
from tests.webui.reviewkit import METHODOLOGY, built_copy, source
from tests.webui.test_api_state import _second_integrator, post, ride

RULES = """
cap reduction at 1 kg per account per day
cap points at 1500 per account per week
forbid duplicate mode, boarded per account else DUP_RIDE "duplicate ride"
bonus 5 points on the 3rd record per account within 1 d
flag more than 4 records per account within 1 d as BUSY "busy"
"""
NEXT_RULES = """
cap reduction at 2 kg per account per day
forbid duplicate mode, boarded per account else DUP_RIDE "duplicate ride"
bonus 5 points on the 3rd record per account within 1 d
"""


def _build_world(web, reg) -> tuple[str, str, int, int]:
    """Two versions (the second from July, another cap), a bus operator and a bike app,
    a unit with a person below it, and a varied stream credited in requests of 1 to 6:
    (bus token, app token, person id, unit id)."""
    web.published("1.0.0", dt.date(2024, 1, 1), source(METHODOLOGY, "1.0.0") + RULES)
    web.published("1.1.0", dt.date(2024, 7, 1), source(METHODOLOGY, "1.1.0") + NEXT_RULES,
                  grace_days=36500)  # 1.0.0 still credits June (the grace runs from now)
    bikes = _second_integrator(reg)
    bus, app = web.token(), web.token(bikes)
    rng = random.Random(613)
    stream = []
    for n in range(70):
        day = rng.choice(["2024-06-20", "2024-06-21", "2024-07-02"])
        token = rng.choice([bus, bus, app])
        prefix = "a-" if token == app else ""
        stream.append((token, ride(f"s{n}", rng.randrange(0, 900, 15), km=rng.randint(1, 25),
                                   account=f"{prefix}p{rng.randrange(4)}", day=day,
                                   mode=rng.choice(["metro", "ebus"]))))
    stream.sort(key=lambda pair: pair[1]["boarded"])
    # the bike app's a-p0 is the bus operator's p0: one person, linked, below a unit
    post(web, bus, [ride("first", 0, km=1, account="p0", day="2024-06-19")])
    with reg.uow() as s:
        person = accounts.resolve(s, reg.integrator, "p0", create=False)
        unit = accounts.create(s, reg.admin, "unit", name="metro staff")
        accounts.set_parent(s, reg.admin, person.id, unit.id)
        accounts.link(s, reg.admin, bikes, "a-p0", person.id)
    post(web, app, [ride("first-app", 0, km=1, account="a-p0", day="2024-06-19")])  # overlaps
    at = 0
    while at < len(stream):
        size = rng.randint(1, 6)
        for token in (bus, app):
            chunk = [r for t, r in stream[at:at + size] if t == token]
            if chunk:
                post(web, token, chunk)
        at += size
    post(web, bus, [r for t, r in stream[:10] if t == bus])  # sent again: nothing twice
    return bus, app, person.id, unit.id


# The world is built once per test session and backend, through the API as above
# (reviewkit.built_copy); each test gets a copy of that database as `reg`, and `web` on it.
# The tests without `world` get the usual seeded `reg`.
@pytest.fixture
def world_db(request, backend, tmp_path):
    """(the world's Registry on a copy of its database, what _build_world returned)."""
    yield from built_copy(request, backend, tmp_path, "webui-ledger-world",
                          lambda web: _build_world(web, web.reg))


@pytest.fixture
def reg(request, backend, tmp_path):
    """The world's database for the tests of the world, else the seeded one of tests/registry."""
    if "world" in request.fixturenames:
        yield request.getfixturevalue("world_db")[0]
        return
    yield from _registry_fixtures.reg.__wrapped__(request, backend, tmp_path)


@pytest.fixture
def world(web, world_db):
    """(web, bus token, app token, person id, unit id) on the world's database (`reg`)."""
    assert web.reg.db is world_db[0].db
    return (web, *world_db[1])


def report_of(reg, **kwargs):
    with reg.db.read() as s:
        return verify.verify(s, **kwargs)


def test_the_ledger_of_a_varied_stream_verifies(world, reg):
    web, *_ = world
    with reg.db.engine.connect() as c:
        statuses = dict(c.execute(sa.text(
            "SELECT status, COUNT(*) FROM credit_entries GROUP BY status")).all())
        bonus = c.execute(sa.text("SELECT SUM(bonus) FROM credit_entries")).scalar_one()
        integrators = c.execute(sa.text(
            "SELECT COUNT(DISTINCT integrator_id) FROM credit_entries")).scalar_one()
    assert statuses.get("capped", 0) > 0 and statuses.get("credited", 0) > 0 and bonus > 0
    assert integrators == 2
    report = report_of(reg)
    assert report.ok, str(report)
    assert report.entries == sum(statuses.values()) and report.states > 0
    assert report.accounts >= 5 and report.unverifiable == 0
    sampled = report_of(reg, sample=2)
    assert sampled.ok and sampled.accounts <= 2


def _raw(reg, *statements, **params):
    with reg.db.engine.begin() as c:
        for statement in statements:
            c.execute(sa.text(statement), params)


def _unguard(reg):
    """What an attacker with DDL rights would do first."""
    if reg.db.dialect == "postgresql":
        _raw(reg, "ALTER TABLE credit_entries DISABLE TRIGGER USER")
    else:
        _raw(reg, "DROP TRIGGER credit_entries_no_update")


def test_an_entry_changed_behind_the_ledgers_back_is_reported(world, reg):
    _unguard(reg)
    with reg.db.engine.connect() as c:
        entry_id, record_id, account, mg = c.execute(sa.text(
            "SELECT id, record_id, account, reduction_mg FROM credit_entries "
            "WHERE status = 'credited' ORDER BY id LIMIT 1")).one()
    _raw(reg, "UPDATE credit_entries SET reduction_mg = reduction_mg + 1000 WHERE id = :i", i=entry_id)
    report = report_of(reg)
    assert not report.ok
    credit = [d for d in report.differences if d.kind == "credit"]
    assert [(d.record_id, d.field, d.stored, d.recomputed) for d in credit] == [
        (record_id, "reduction_mg", mg + 1000, mg)]
    assert credit[0].account == account
    assert "record " + record_id in str(report)
    # the balances are the entries' (both ways agree), so only the credit differs;
    # the rule state no longer matches a ledger where that ride weighed more only when a
    # cap counted it, which the recomputed state shows
    assert not [d for d in report.differences if d.kind == "balance"]


def test_a_changed_rule_state_is_reported(world, reg):
    with reg.db.engine.connect() as c:
        account = c.execute(sa.text("SELECT account FROM rule_states WHERE state <> '' "
                                    "ORDER BY account LIMIT 1")).scalar_one()
    _raw(reg, "UPDATE rule_states SET state = '' WHERE account = :a", a=account)
    report = report_of(reg)
    assert [(d.kind, d.account, d.field) for d in report.differences] == [
        ("state", account, "rule_state")]


# ---------------------------------------------------------------- the API
def get(web, token, url, status=200):
    response = web.app.test_client().get(url, headers=web.api(token))
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_json()


def test_a_statement_pages_through_the_accounts_entries_in_order(world, reg):
    web, bus, app, person, unit = world
    seen, after = [], None
    while True:
        page = get(web, bus, f"/api/v1/accounts/{person}/statement?limit=4"
                   + (f"&after={after}" if after else ""))
        seen += page["items"]
        after = page["next"]
        if after is None:
            break
    with reg.db.engine.connect() as c:
        ids = [r[0] for r in c.execute(sa.text(
            "SELECT id FROM credit_entries WHERE account = :a AND integrator_id = :i ORDER BY id"),
            {"a": str(person), "i": reg.integrator})]
    assert [e["id"] for e in seen] == ids and len(ids) > 4
    first = seen[0]
    assert first["record_id"] == "first" and first["sent_account"] == "p0"
    assert first["methodology"] == METHODOLOGY and first["version"] == "1.0.0"
    assert first["content_hash"] and first["status"] == "credited" and first["code"] == ""
    capped = [e for e in seen if e["status"] == "capped"]
    for e in capped:
        assert e["code"] == "CAP_REACHED" and "cap" in e["message"]
    # the bike app sees its own entries of that person, not the bus operator's
    theirs = get(web, app, f"/api/v1/accounts/{person}/statement?limit=1000")["items"]
    assert theirs and {e["integrator"] for e in theirs} == {_second_integrator(reg)}
    # time bounds, and the unit's statement with what is below it
    july = get(web, bus, f"/api/v1/accounts/{person}/statement?from=2024-07-01&limit=1000")["items"]
    assert july and all(e["time"] >= "2024-06-30T16:00" for e in july)
    with reg.uow() as s:
        accounts.link(s, reg.admin, reg.integrator, "staff", unit)
    below = get(web, bus, f"/api/v1/accounts/{unit}/statement?subtree=1&limit=1000")["items"]
    assert [e["id"] for e in below] == ids
    assert get(web, bus, f"/api/v1/accounts/{unit}/statement")["items"] == []


def test_balances_per_period_add_up_to_the_accounts_balance(world, reg):
    web, bus, app, person, unit = world
    months = get(web, bus, f"/api/v1/accounts/{person}/balances?period=month")
    assert months["timezone"] == "Asia/Shanghai"
    assert {t["period"] for t in months["totals"]} == {"2024-06", "2024-07"}
    assert {i["methodology"] for i in months["items"]} == {METHODOLOGY}
    with reg.db.engine.connect() as c:
        mg, points, bonus = c.execute(sa.text(
            "SELECT SUM(reduction_mg), SUM(points), SUM(bonus) FROM credit_entries "
            "WHERE account = :a AND integrator_id = :i"), {"a": str(person), "i": reg.integrator}).one()
    assert sum(t["reduction_mg"] for t in months["totals"]) == mg
    assert sum(t["points"] for t in months["totals"]) == points
    assert sum(t["bonus"] for t in months["totals"]) == bonus
    days = get(web, bus, f"/api/v1/accounts/{person}/balances?period=day&from=2024-06-20&to=2024-06-21")
    assert [t["period"] for t in days["totals"]] == ["2024-06-20"]
    assert days["totals"][0]["reduction_mg"] <= 1_000_000  # the daily cap
    weeks = get(web, bus, f"/api/v1/accounts/{person}/balances?period=week")
    assert all(t["period"].startswith("2024-W") for t in weeks["totals"])
    bad = get(web, bus, f"/api/v1/accounts/{person}/balances?period=hour", status=422)
    assert bad["code"] == "invalid"


def test_balances_per_period_are_net_of_reversals_as_the_accounts_balance(world, reg):
    """A reversal counts in its entry's period: each period loses what its entry gave,
    the other periods are unchanged, and the periods still add up to accounts.balances
    (one balance computation, accounts.with_reversals)."""
    web, bus, app, person, unit = world
    from registry import reversals, statements
    with reg.db.read() as s:
        before = statements.period_balances(s, None, person, "month").totals()
        entry = max((e for e in s.scalars(sa.select(CreditEntry).where(
            CreditEntry.account == str(person), CreditEntry.reduction_mg > 0))),
            key=lambda e: (e.points + e.bonus, e.id))
        month = statements.period_label(entry.activity_time, "month",
                                        statements.zone_of("Asia/Shanghai"))
    with reg.uow() as s:
        reversals.reverse(s, reg.admin, entry.id, reason="fraud (test)")
    with reg.db.read() as s:
        after = statements.period_balances(s, None, person, "month").totals()
        own = accounts.balances(s, person).own
        subtree = statements.period_balances(s, None, unit, "month", subtree=True).totals()
    assert after[month]["reduction_mg"] == before[month]["reduction_mg"] - entry.reduction_mg
    assert after[month]["points"] == before[month]["points"] - entry.points
    assert after[month]["bonus"] == before[month]["bonus"] - entry.bonus
    assert after[month]["reversed_entries"] == 1
    assert after[month]["reversed_mg"] == entry.reduction_mg
    assert after[month]["reversed_points"] == entry.points + entry.bonus
    assert after[month]["entries"] == before[month]["entries"]  # the entry is still there
    assert {p: t for p, t in after.items() if p != month} == \
        {p: t for p, t in before.items() if p != month}
    assert sum(t["reduction_mg"] for t in after.values()) == own.reduction_mg
    assert sum(t["points"] + t["bonus"] for t in after.values()) == own.points
    assert subtree == after  # the unit has nothing but the person below it
    months = get(web, bus, f"/api/v1/accounts/{person}/balances?period=month")
    mine = [i for i in months["items"] if i["period"] == month]
    assert sum(i["reversed_entries"] for i in mine) == (1 if entry.integrator_id == reg.integrator else 0)


def test_credits_are_read_back_by_record_and_by_batch_by_their_integrator_only(world, reg):
    web, bus, app, person, unit = world
    found = get(web, bus, "/api/v1/credits/first")["items"]
    assert [(e["record_id"], e["account"]) for e in found] == [("first", str(person))]
    assert get(web, bus, f"/api/v1/credits/first?methodology={METHODOLOGY}")["items"] == found
    get(web, app, "/api/v1/credits/first", status=404)  # the bus operator's record id
    batch = get(web, bus, f"/api/v1/batches/{found[0]['batch_id']}")
    assert batch["methodology"] == METHODOLOGY and batch["version"] == "1.0.0"
    assert [e["record_id"] for e in batch["entries"]["items"]] == ["first"]
    assert batch["totals"]["entries"] == 1
    get(web, app, f"/api/v1/batches/{found[0]['batch_id']}", status=404)
    get(web, bus, "/api/v1/batches/999999", status=404)


def test_an_account_the_integrator_does_not_see_has_no_statement(web, reg):
    web.published("1.0.0", dt.date(2024, 1, 1), source(METHODOLOGY, "1.0.0") + RULES)
    bus = web.token()
    post(web, bus, [ride("r1", 0, account="p9")])
    with reg.db.read() as s:
        person = accounts.resolve(s, reg.integrator, "p9", create=False).id
    other = web.token(_second_integrator(reg))
    for url in (f"/api/v1/accounts/{person}/statement", f"/api/v1/accounts/{person}/balances"):
        assert get(web, other, url, status=404)["code"] == "not_found"
    assert get(web, bus, f"/api/v1/accounts/{person}/statement?limit=0", status=400)["code"] == "bad_pagination"


# ---------------------------------------------------------------- the CLI
def cli(reg, *args):
    result = CliRunner().invoke(main, [*args, "--database-url", reg.db.url])
    return result


def test_tanpu_ledger_reads_and_verifies(world, reg):
    web, bus, app, person, unit = world
    out = cli(reg, "ledger", "statement", str(person), "--json", "--limit", "3")
    assert out.exit_code == 0, out.output
    page = json.loads(out.output)
    assert len(page["items"]) == 3 and page["next"] == page["items"][-1]["id"]
    text = cli(reg, "ledger", "statement", str(person))
    assert text.exit_code == 0 and "first" in text.output
    months = cli(reg, "ledger", "balances", str(person), "--period", "month", "--json")
    assert {t["period"] for t in json.loads(months.output)["totals"]} == {"2024-06", "2024-07"}
    entries = cli(reg, "ledger", "entries", "--record", "first", "--methodology", METHODOLOGY, "--json")
    assert [e["record_id"] for e in json.loads(entries.output)["items"]] == ["first"]
    ok = cli(reg, "ledger", "verify")
    assert ok.exit_code == 0 and "ledger ok" in ok.output, ok.output
    sampled = cli(reg, "ledger", "verify", "--sample", "2", "--json")
    assert sampled.exit_code == 0 and json.loads(sampled.output)["ok"] is True
    _unguard(reg)
    _raw(reg, "UPDATE credit_entries SET points = points + 1 WHERE record_id = 'first'")
    broken = cli(reg, "ledger", "verify")
    assert broken.exit_code == 1 and "record first" in broken.output and "points" in broken.output


def test_a_late_record_of_the_previous_version_leaves_the_new_versions_cap(web, reg):
    """1.0.0 in its grace period beside 1.1.0: a June ride arriving after July rides
    must not wipe the July cap totals (the state keeps the other version's parts)."""
    web.published("1.0.0", dt.date(2024, 1, 1), source(METHODOLOGY, "1.0.0") + RULES)
    web.published("1.1.0", dt.date(2024, 7, 1), source(METHODOLOGY, "1.1.0") + NEXT_RULES,
                  grace_days=36500)
    bus = web.token()
    july = [ride(f"j{i}", 60 * i, km=25, day="2024-07-02") for i in range(2)]  # 2 × 1,167.5 g
    post(web, bus, july)
    post(web, bus, [ride("late-june", 0, km=1, day="2024-06-20")])
    more = post(web, bus, [ride("j9", 600, km=25, day="2024-07-02")])["results"][0]
    assert (more["status"], more["reduction_mg"]) == ("capped", 0)  # the 2 kg day is full
    assert report_of(reg).ok


# ---------------------------------------------------------------- the admin page
def test_the_admin_account_page_shows_the_statement_and_the_months(world, reg, monkeypatch):
    from webui.views import admin
    monkeypatch.setattr(admin, "STATEMENT_PER_PAGE", 4)
    web, bus, app, person, unit = world
    with reg.db.engine.connect() as c:
        ids = [r[0] for r in c.execute(sa.text(
            "SELECT id FROM credit_entries WHERE account = :a ORDER BY id DESC"), {"a": str(person)})]
    assert len(ids) > 8
    en = web.new_client(reg.admin, lang="en")
    page = en.get(f"/admin/accounts/{person}").get_data(as_text=True)
    shown = [int(i) for i in re.findall(r'data-entry="(\d+)"', page)]
    assert shown == ids[:4]  # newest first, a page at a time
    assert "Statement" in page and 'data-month="2024-06"' in page and 'data-month="2024-07"' in page
    older = en.get(f"/admin/accounts/{person}?before={shown[-1]}").get_data(as_text=True)
    assert [int(i) for i in re.findall(r'data-entry="(\d+)"', older)] == ids[4:8]
    zh = web.new_client(reg.admin, lang="zh").get(f"/admin/accounts/{person}").get_data(as_text=True)
    assert "账单" in zh and "按月" in zh
    empty = web.new_client(reg.admin, lang="zh").get(f"/admin/accounts/{unit}").get_data(as_text=True)
    assert "data-empty-statement" in empty and "尚无记账" in empty
