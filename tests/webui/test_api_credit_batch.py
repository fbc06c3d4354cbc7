"""`POST /api/v1/credits` evaluates a request's records with the batch engine also for a
methodology with cross-record rules (engine/batch/per_record.py: its results carry what
the ledger's rules read), where it took the scalar Engine's results before. Both routes
must leave the same ledger: the same stream credited by two integrators (each its own
record ids and accounts, so their ledgers are apart), one through each route, in the same
requests, gives the same answers (statuses, codes, messages, reductions, points, bonuses,
flags, counters, what was credited) and the same entries, stored states and duplicate
keys, for streams Hypothesis makes (late records, repeated ids and orders, keys sent as
numbers, booleans, padded texts, nulls; broken cells) and for every bundled methodology's
sample; then `tanpu ledger verify` finds nothing (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl import compile_source
from registry import verify
from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures
from tests.webui.reviewkit import METHODOLOGY, source
from webui import records as webrecords
from webui.api import service

from .test_api_batch import as_test_methodology
from .test_api_state import _second_integrator, platform_of

ROOT = Path(__file__).resolve().parents[2]

# the test methodology (transit rides: mode, distance, boarded, alighted; an overlap rule)
# with two inputs to key on, and rules of every kind the ledger judges
INPUTS = """
input order: text optional
input seats: integer between 0 and 9 = 0
"""
RULES = {
    # a reduction cap (points recomputed), plain duplicate keys of text, integer,
    # datetime, choice and quantity inputs, a flag and a bonus window
    "keys": """
cap reduction at 1 kg per account per day
forbid duplicate order, seats, alighted per account else SAME_ORDER "the same order"
forbid duplicate mode, distance per account else SAME "the same ride"
flag more than 3 records per account within 2 h as BUSY "busy"
bonus 50 points on the 3rd record per account within 7 days
""",
    # one event through several channels, counters and rewards, a points cap beside a
    # reduction cap
    "channels": """
forbid duplicate mode, boarded within 5 min per account where mode != ebus keep first by alighted
  else SAME_RIDE "the same ride reported again"
counter rides [ride] = 1
cap counter rides at 3 ride per account per day
reward voucher every 1000 points worth 5 CNY
reward ticket every 2 rides worth 2 CNY
cap points at 1500 per account per day
cap reduction at 1 kg per account per day
""",
}


def _text(rules: str) -> str:
    return source(METHODOLOGY, "1.0.0") + INPUTS + RULES[rules]


# ---------------------------------------------------------------- the two routes
class Routes:
    """Credits requests through the scalar route (the batch engine never used) as one
    integrator and through the batch route (the batch engine from one record on) as
    another, checking which engine evaluated them."""

    def __init__(self, web, reg, monkeypatch):
        self.web, self.monkeypatch = web, monkeypatch
        self.integrators = (reg.integrator, _second_integrator(reg))
        self.tokens = tuple(web.token(i) for i in self.integrators)
        self.batch_groups = 0
        real = service._evaluate_batch

        def spy(group, *args, **kwargs):
            real(group, *args, **kwargs)
            self.used.append(group)
        self.used: list = []
        monkeypatch.setattr(service, "_evaluate_batch", spy)

    def post(self, batch: bool, records: list) -> dict:
        self.monkeypatch.setattr(service, "BATCH_FROM", 1 if batch else 10 ** 9)
        self.used.clear()
        response = self.web.app.test_client().post(
            "/api/v1/credits", headers=self.web.api(self.tokens[batch]),
            json={"methodology": METHODOLOGY, "records": records})
        assert response.status_code == 200, response.get_data(as_text=True)
        assert not self.used if not batch else all(g.judging is not None for g in self.used)
        self.batch_groups += len(self.used)
        return _comparable(response.get_json())

    def ledgers(self, prefix: str = "") -> tuple:
        return tuple(_ledger(self.web, integrator, prefix) for integrator in self.integrators)


def _comparable(answer: dict) -> dict:
    """An answer without what differs between two integrators' batches: their ids and
    the times they were credited at."""
    for batch in answer["batches"]:
        batch.pop("batch_id")
    for row in answer["results"]:
        if "credited" in row:
            row["credited"].pop("batch_id")
            row["credited"].pop("credited_at")
    return answer


def _ledger(web, integrator: int, prefix: str) -> tuple:
    """The integrator's entries, stored states and duplicate keys, its platform accounts
    named by its own account ids (of the accounts starting with `prefix`)."""
    named = platform_of(web, integrator)
    ours = [a for a, external in named.items() if str(external).startswith(prefix)]
    with web.reg.db.engine.connect() as c:
        entries = sorted((r[0], named[r[1]], *r[2:]) for r in c.execute(sa.text(
            "SELECT record_id, account, status, code, message, reduction_mg, points, bonus, "
            "counters, version, activity_time, record FROM credit_entries WHERE integrator_id = :i "
            "AND record_id LIKE :p"), {"i": integrator, "p": prefix + "%"}).all())
        states = sorted((named[a], state) for a, state in c.execute(sa.text(
            "SELECT account, state FROM rule_states WHERE account IN :accounts").bindparams(
                sa.bindparam("accounts", expanding=True)), {"accounts": ours}).all()) if ours else []
        keys = sorted((named[r[0]], *r[1:]) for r in c.execute(sa.text(
            "SELECT account, rule, key, near, ordinal, record_id FROM duplicate_keys "
            "WHERE account IN :accounts").bindparams(sa.bindparam("accounts", expanding=True)),
            {"accounts": ours}).all()) if ours else []
    return entries, states, keys


def _verified(web) -> None:
    with web.reg.db.read() as s:
        report = verify.verify(s)
    assert report.ok, str(report)


# ---------------------------------------------------------------- streams Hypothesis makes
ORDERS = st.sampled_from(["o1", "o2", " o1 ", "o3", 7, 7.0, 7.5, "碳", "a\\b\"c", None, "", True])
SEATS = st.sampled_from([0, 1, 2, "1", " 2 ", 1.0, None])
BROKEN = st.sampled_from(["", "abc", "3 kg", "-1 km", "2024-13-45", None, 3.5, "  "])


@st.composite
def requests(draw, prefix: str) -> list[list[dict]]:
    """A stream of rides (few accounts, two days, some late, some repeating an id, an
    order, a ride reported again two minutes later) cut into requests."""
    rides = []
    for k in range(draw(st.integers(1, 36))):
        start = dt.datetime(2024, 6, 20, 6) + dt.timedelta(minutes=draw(st.integers(0, 60 * 40)))
        ride = {"id": f"{prefix}r{k}", "account": prefix + draw(st.sampled_from("abc")),
                "mode": draw(st.sampled_from(["metro", "ebus", "metro", "diesel_bus"])),
                "distance": f"{draw(st.integers(1, 30))} km",
                "boarded": start.isoformat(timespec="minutes"),
                "alighted": (start + dt.timedelta(minutes=draw(st.integers(1, 50)))).isoformat(timespec="minutes"),
                "order": draw(ORDERS), "seats": draw(SEATS)}
        for name in ("order", "seats"):
            if ride[name] is None:
                del ride[name]
        if rides and draw(st.integers(0, 5)) == 0:
            again = dict(draw(st.sampled_from(rides)))
            how = draw(st.sampled_from(["id", "moved", "same"]))
            if how != "same":  # the same ride reported again, under another id
                again["id"] = ride["id"]
            if how == "moved":  # ... two minutes later
                try:
                    moved = dt.datetime.fromisoformat(again["boarded"]) + dt.timedelta(minutes=2)
                    again["boarded"] = moved.isoformat(timespec="minutes")
                except (TypeError, ValueError):
                    pass
            ride = again  # else the same record sent again
        if draw(st.integers(0, 9)) == 0:
            ride[draw(st.sampled_from(["mode", "distance", "boarded", "order", "seats"]))] = draw(BROKEN)
        rides.append(ride)
    if draw(st.booleans()):
        rides.sort(key=lambda r: str(r.get("boarded")))  # in time order, as usually sent
    sizes = draw(st.lists(st.integers(1, 20), max_size=4))
    out, at = [], 0
    for size in sizes + [len(rides)]:
        if rides[at:at + size]:
            out.append(rides[at:at + size])
        at += size
    return out


@pytest.mark.parametrize("rules", sorted(RULES))
def test_the_batch_and_the_scalar_route_leave_the_same_ledger(web, reg, monkeypatch, rules):
    web.published("1.0.0", dt.date(2024, 1, 1), _text(rules))
    routes = Routes(web, reg, monkeypatch)
    numbers = itertools.count()
    seen: set = set()

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def check(data):
        prefix = f"x{next(numbers)}-"
        stream = data.draw(requests(prefix))
        for records in stream:
            assert routes.post(True, records) == routes.post(False, records)
        batch, scalar = routes.ledgers(prefix)
        assert batch == scalar
        seen.update((status, code) for _, _, status, code, *_ in batch[0])
    check()
    _verified(web)
    assert routes.batch_groups > 0
    # the rules did judge: caps cut, and (kept) duplicates and overlaps never credited
    assert ("capped", "CAP_REACHED") in seen and ("credited", "") in seen


# ---------------------------------------------------------------- the bundled samples
def _bundled() -> list[Path]:
    """The bundled methodologies whose records the ledger judges by cross-record rules and
    evaluates once (no history window)."""
    found = []
    for path in sorted((ROOT / "methodologies").glob("*.tanpu")):
        rules = compile_source(path.read_text(encoding="utf-8"), str(path)).methodology
        if (rules.caps or rules.overlaps or rules.duplicates or rules.counters or rules.rewards
                or rules.bonuses or rules.flags) and not rules.histories:
            found.append(path)
    return found


@pytest.mark.parametrize("path", _bundled(), ids=lambda p: p.stem)
def test_every_bundled_sample_leaves_the_same_ledger_by_either_route(web, reg, monkeypatch, path):
    web.published("1.0.0", None, as_test_methodology(path))  # from its own `effective from`
    got = webrecords.from_path(ROOT / "methodologies" / "samples" / f"{path.stem}.csv")
    rows = []
    for row in got.rows[:300]:  # the units of the file's headers written in the cells, as
        # the API's records carry them (and `tanpu ledger verify` reads the entries' records)
        rows.append({name: f"{value} {got.column_units[name]}" if value and name in got.column_units
                     else value for name, value in row.items()})
    rng = random.Random(path.stem)
    rows = rows + [dict(rng.choice(rows), id=f"again-{k}") for k in range(20)]  # reported twice
    rng.shuffle(rows)
    routes = Routes(web, reg, monkeypatch)
    at = 0
    while at < len(rows):
        size = rng.choice([1, 7, 40, 120])
        assert routes.post(True, rows[at:at + size]) == routes.post(False, rows[at:at + size])
        at += size
    batch, scalar = routes.ledgers()
    assert batch == scalar
    assert batch[0]  # something was credited
    assert routes.batch_groups > 0
    _verified(web)
