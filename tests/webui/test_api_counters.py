"""Issue 12's counters and rewards through the ledger: what each credit moved is stored
on its entry and returned, the counters' caps and the rewards' remainders carried in the
accounts' state between requests, so that a stream credited one ride a request, or in
requests of random sizes, moves exactly what one request (and the batch engine on the
whole stream) moves (Flask test client, SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import random

import pytest
import sqlalchemy as sa

from dsl import compile_source
from engine.batch import BatchEngine
from registry import accounts, ledger, verify
from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures
from tests.webui.reviewkit import METHODOLOGY, reg_built_for, source

from .test_api_state import _second_integrator, platform_of, post, ride

COUNTERS = """
counter rides [ride] = 1
cap counter rides at 3 ride per account per day
reward voucher every 1000 points worth 5 CNY
reward ticket every 2 rides worth 2 CNY
"""


def counting_source() -> str:
    return source(METHODOLOGY, "1.0.0") + COUNTERS


def _publish_counting(web) -> None:
    web.published("1.0.0", dt.date(2024, 1, 1), counting_source())


# Published once per session and backend (reviewkit.reg_built_for); each test of `counting`
# gets a copy.
reg = reg_built_for("counting", "webui-counting", _publish_counting)


@pytest.fixture
def counting(web):
    return web, web.token()


@pytest.fixture(autouse=True)
def _the_ledger_verifies(reg):
    yield
    with reg.db.read() as s:
        report = verify.verify(s)
    assert report.ok, str(report)


def _moved(web, integrator) -> dict:
    """(record id, the integrator's account id) -> (status, points, counters) of its entries."""
    named = platform_of(web, integrator)
    with web.reg.db.engine.connect() as c:
        rows = c.execute(sa.text("SELECT record_id, account, status, points, counters "
                                 "FROM credit_entries WHERE integrator_id = :i"), {"i": integrator}).all()
    return {(r[0], named[r[1]]): (r[2], r[3], r[4]) for r in rows}


def _stream(rng: random.Random, n: int = 40) -> list[dict]:
    stream = [ride(f"s{i}", i * 50 + rng.randrange(40), km=rng.randint(1, 25),
                   account=f"acct-{rng.randrange(3)}", mode=rng.choice(["metro", "ebus"]))
              for i in range(n)]
    stream.sort(key=lambda r: r["boarded"])
    return stream


def test_one_ride_a_request_moves_what_one_request_moves(counting, reg):
    web, token = counting
    rides = _stream(random.Random(12), 24)
    answer = post(web, token, rides)
    whole = _moved(web, reg.integrator)
    # the API answers with what each record moved
    by_id = {row["id"]: row for row in answer["results"]}
    assert all(by_id[record_id]["counters"] == counters.split(";")
               for (record_id, _), (_, _, counters) in whole.items())
    other = _second_integrator(reg)
    bikes = web.token(other)
    for r in rides:
        post(web, bikes, [{**r, "account": r["account"] + "-b"}])
    one_by_one = {(record_id, account[:-2]): rest for (record_id, account), rest in
                  _moved(web, other).items()}
    assert one_by_one == whole
    # a ride cut by the counter cap, and vouchers and tickets given, are in the stream
    moved = [dict(c.split("=") for c in counters.split(";")) for _, _, counters in whole.values()]
    assert any(m["rides"] == "0" for m in moved)
    assert sum(int(m["voucher"]) for m in moved) > 0 and sum(int(m["ticket"]) for m in moved) > 0


def test_random_batches_move_what_the_batch_engine_moves_on_the_whole_stream(counting, reg):
    web, token = counting
    rng = random.Random(2026)
    stream = _stream(rng, 50)
    at = 0
    while at < len(stream):
        size = rng.randint(1, 9)
        post(web, token, stream[at:at + size])
        at += size
    methodology = compile_source(counting_source(), "counting.tanpu").methodology
    expected = {(r.id, r.account): (r.status, r.points, ";".join(r.counters))
                for r in BatchEngine(methodology).evaluate(stream) if r.status in ("credited", "capped")}
    assert _moved(web, reg.integrator) == expected
    with web.reg.db.read() as s:
        platform = accounts.resolve(s, reg.integrator, "acct-0", create=False)
        totals = ledger.counter_totals(s, str(platform.id))
    mine = [dict((k, int(v)) for k, v in (c.split("=") for c in counters.split(";")))
            for (_, account), (_, _, counters) in expected.items() if account == "acct-0"]
    assert totals == {name: sum(m[name] for m in mine) for name in ("rides", "voucher", "ticket")}


def test_a_reversal_gives_back_what_the_credit_moved_on_counters_and_rewards(counting, reg):
    """Three rides counted (the fourth capped by 3 rides a day), one ticket every 2 rides:
    reversing the second ride takes its ride off the day's cap and the counter's total,
    and takes its ticket back (the ticket balance holds r0's and r2's rides again), so a
    later ride of that day is counted and completes the ticket; `tanpu ledger verify`
    replays the reversal (the autouse fixture)."""
    from tests.webui.test_api_rewards import admin_token, call, entry_id
    web, token = counting
    moved = [post(web, token, [ride(f"r{i}", 40 * i)])["results"][0]["counters"] for i in range(4)]
    rides = [dict(c.split("=") for c in m) for m in moved]
    assert [(m["rides"], m["ticket"]) for m in rides] == [("1", "0"), ("1", "1"), ("1", "0"), ("0", "0")]
    answer = call(web, "post", f"/api/v1/credits/{entry_id(web, 'r1')}/reversal", admin_token(web),
                  json={"reason": "ride never happened"})
    assert answer.status_code == 201, answer.get_data(as_text=True)
    given_back = {(c.get("counter") or c.get("reward"), c.get("cap")): (c["before"], c["after"])
                  for c in answer.get_json()["counters"]}
    assert given_back[("rides", "per day")] == (3, 2)
    assert given_back[("rides", None)] == (3, 2)
    assert given_back[("ticket", None)] == (1, 2)  # r0's and r2's rides, not yet a ticket
    # the account's totals net of the reversal: r0's and r2's rides, no ticket
    with web.reg.db.read() as s:
        platform = accounts.resolve(s, reg.integrator, "acct-1", create=False)
        totals = ledger.counter_totals(s, str(platform.id))
    assert (totals["rides"], totals["ticket"]) == (2, 0)
    later = dict(c.split("=") for c in post(web, token, [ride("r4", 200)])["results"][0]["counters"])
    assert (later["rides"], later["ticket"]) == ("1", "1")
    last = dict(c.split("=") for c in post(web, token, [ride("r5", 240)])["results"][0]["counters"])
    assert (last["rides"], last["ticket"]) == ("0", "0")  # the day's 3 rides again
