"""An account's state carried between evaluations (engine/state.py): a stream evaluated
in pieces, the state stored as JSON between them, gives the results of the stream
evaluated whole, for every kind of cross-record rule (the synthetic methodologies of
test_rules_differential.py and the bundled ones with rules)."""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import cross_record
from engine.state import AccountState

from .strategies import record_stream
from .test_rules_differential import ENGINES, METHODOLOGIES

NAMES = [name for name, _ in METHODOLOGIES]


def _keys(results):
    return [(r.id, r.status, r.code, r.reduction_mg, r.points, r.bonus, r.flags, r.counters)
            for r in results]


def _arrival(engine, raws):
    """Per-record results of a stream in arrival order: by time, then account and id
    (within an account, the canonical order), every id its own."""
    for i, raw in enumerate(raws):
        raw["id"] = f"r{i}"
    results = [r for r in engine.evaluate(raws, per_record_only=True) if r.status != "invalid"]
    results.sort(key=lambda r: (r.time, r.account, r.id))
    return results


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_stream_in_pieces_with_its_state_is_the_stream_whole(name, data):
    engine = ENGINES[name]
    methodology = dict(METHODOLOGIES)[name]
    results = _arrival(engine, data.draw(record_stream(methodology, max_size=30, broken=False)))
    whole = copy.deepcopy(results)
    cross_record.apply(whole, engine.rules, engine.recompute_points)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(results)), max_size=5)))
    pieces = [results[a:b] for a, b in zip([0] + cuts, cuts + [len(results)])]
    state: dict = {}
    out = []
    for piece in pieces:
        piece = copy.deepcopy(piece)
        cross_record.apply(piece, engine.rules, engine.recompute_points, state=state)
        out.extend(piece)
        # stored and read back between requests, as the ledger does
        state = {account: AccountState.from_json(engine.rules, s.to_json(engine.rules))
                 for account, s in state.items()}
    assert _keys(out) == _keys(whole)


def test_a_daily_cap_holds_across_single_record_evaluations():
    """The integrator's story of issue 13: one ride per request, the same day."""
    name = "caps"
    engine = ENGINES[name]
    rides = [{"id": f"r{i}", "account": "a", "distance": "40 km", "mode": "fast",
              "time": f"2024-05-20T0{i}:00"} for i in range(1, 6)]
    state: dict = {}
    credited = 0
    for ride in rides:
        (result,) = engine.evaluate([ride], state=state)
        credited += result.reduction_mg
    assert credited == 1_500_000  # the 1.5 kg daily cap, not 5 × 1.2 kg
    whole = sum(r.reduction_mg for r in engine.evaluate(rides))
    assert whole == credited


def test_a_state_keeps_what_a_changed_rule_no_longer_fits_out():
    """A new version with a weekly cap instead of a daily one starts the cap afresh; the
    rules it keeps keep their state."""
    engine = ENGINES["everything"]
    state = AccountState.empty(engine.rules)
    state.caps[0][19863] = 900_000
    state.keys[0].add(("r1", 1716163200000000))
    text = state.to_json(engine.rules)
    again = AccountState.from_json(engine.rules, text)
    assert again.caps[0] == {19863: 900_000} and again.keys[0] == {("r1", 1716163200000000)}
    other = ENGINES["caps"].rules  # different caps, no duplicate rule
    moved = AccountState.from_json(other, text)
    assert all(periods == {} for periods in moved.caps) and moved.keys == []


def test_a_late_record_is_judged_against_the_intervals_on_both_sides():
    """Rides arrive out of order (two requests, the later ride first): one that fits in
    the gap is credited; one that overlaps the ride accepted before it is rejected, as is
    one that overlaps the later ride already accepted (the first accepted stands)."""
    engine = ENGINES["everything"]
    state: dict = {}

    def send(record_id, start, end, route="r1"):
        raw = {"id": record_id, "account": "a", "route": route, "distance": "1 km",
               "started": start, "ended": end}
        (result,) = engine.evaluate([raw], state=state)
        return result.status, result.code

    assert send("noon", "2024-05-20T12:00", "2024-05-20T12:30") == ("credited", "")
    assert send("morning", "2024-05-20T08:00", "2024-05-20T08:30", "r2") == ("credited", "")
    assert send("gap", "2024-05-20T10:00", "2024-05-20T10:20", "r3") == ("credited", "")
    assert send("into-noon", "2024-05-20T11:50", "2024-05-20T12:10", "r2")[1] == "OVERLAP"
    assert send("into-morning", "2024-05-20T08:20", "2024-05-20T09:00", "r3")[1] == "OVERLAP"
    text = state["a"].to_json(engine.rules)
    again = AccountState.from_json(engine.rules, text)
    assert [iv[0] for iv in again.intervals[0]] == sorted(iv[0] for iv in again.intervals[0])
    assert len(again.intervals[0]) == 3


def test_the_parts_of_another_versions_rules_are_written_back_unchanged():
    """Records of two versions arrive interleaved (one in its grace period beside its
    successor): crediting one version's record must not wipe what the other's rules
    remember, or the successor's cap could be exceeded (found by `tanpu ledger verify`)."""
    engine, other = ENGINES["everything"].rules, ENGINES["caps"].rules
    state = AccountState.empty(engine)
    state.caps[0][19863] = 900_000
    state.keys[0].add(("r1", 1716163200000000))
    text = state.to_json(engine)
    through = AccountState.from_json(other, text).to_json(other)  # a record of the other version
    back = AccountState.from_json(engine, through)
    assert back.caps[0] == {19863: 900_000} and back.keys[0] == {("r1", 1716163200000000)}


STATEFUL = [name for name, m in METHODOLOGIES
            if ENGINES[name].rules.duplicates or ENGINES[name].rules.overlaps or ENGINES[name].rules.flags
            or ENGINES[name].rules.bonuses or ENGINES[name].rules.near_duplicates]
_BATCH: dict = {}


def _batch(name):
    from engine.batch import BatchEngine
    if name not in _BATCH:
        _BATCH[name] = BatchEngine(dict(METHODOLOGIES)[name])
    return _BATCH[name]


def _stored(rules, states):
    """The states as data, an account's empty state left out (as good as none)."""
    import json
    empty = json.loads(AccountState.empty(rules).to_json(rules))
    return {a: v for a, v in ((a, json.loads(s.to_json(rules))) for a, s in states.items()) if v != empty}


@pytest.mark.parametrize("name", STATEFUL)
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_the_batch_engine_carries_every_rules_state_as_the_scalar_engine(name, data):
    """Duplicate keys, near duplicates, overlaps, flags and bonuses (caps and counters
    beside them where the methodology has them): the batch engine given each account's
    state, a stream cut at random points and each piece evaluated with the state of
    those before (stored as JSON between them), gives what the scalar engine gives on
    the stream whole and leaves the state it leaves."""
    engine, batch = ENGINES[name], _batch(name)
    methodology = dict(METHODOLOGIES)[name]
    raws = data.draw(record_stream(methodology, max_size=30, broken=False))
    for i, raw in enumerate(raws):
        raw["id"] = f"r{i}"
    order = {r.id: (r.time, r.account, r.id) for r in engine.evaluate(raws, per_record_only=True)
             if r.status != "invalid"}
    raws = sorted((raw for raw in raws if raw["id"] in order),  # in arrival order: time, account
                  key=lambda raw: order[raw["id"]])
    whole_state: dict = {}
    whole = _keys(engine.evaluate(raws, state=whole_state))
    cuts = sorted(data.draw(st.sets(st.integers(0, len(raws)), max_size=5)))
    rules = engine.rules
    state: dict = {}
    out = []
    for a, b in zip([0] + cuts, cuts + [len(raws)]):
        out += _keys(batch.evaluate(raws[a:b], state=state))
        state = {account: AccountState.from_json(rules, s.to_json(rules)) for account, s in state.items()}
    assert out == whole
    assert _stored(rules, state) == _stored(rules, whole_state)


def test_the_batch_engine_judges_a_ride_by_the_overlaps_of_an_earlier_piece():
    """Shenzhen's overlap rule, the batch engine one ride a piece with the state carried:
    a ride that starts before the previous piece's ride ended is rejected, and so is a
    ride arriving late that overlaps an accepted one, as on the scalar path."""
    from engine.batch import BatchEngine
    from engine import Engine
    from dsl import compile_source
    from pathlib import Path
    m = compile_source(Path(__file__).resolve().parents[2].joinpath(
        "methodologies", "shenzhen-public-transit.tanpu").read_text(encoding="utf-8")).methodology
    rides = [("08:00", "09:00"), ("08:30", "09:10"), ("09:30", "10:00"), ("07:40", "08:10"), ("07:00", "07:30")]
    raws = [{"id": f"r{i}", "account": "a", "mode": "metro", "distance": "5 km",
             "boarded": f"2024-05-01T{b}", "alighted": f"2024-05-01T{e}"} for i, (b, e) in enumerate(rides)]
    scalar_state: dict = {}
    expected = [k for raw in raws for k in _keys(Engine(m).evaluate([raw], state=scalar_state))]
    state: dict = {}
    batch = BatchEngine(m)
    got = []
    for raw in raws:
        got += _keys(batch.evaluate([raw], state=state))
        state = {a: AccountState.from_json(ENGINES["shenzhen-public-transit"].rules, s.to_json(
            ENGINES["shenzhen-public-transit"].rules)) for a, s in state.items()}
    assert got == expected
    assert [k[1] for k in got] == ["credited", "rejected", "credited", "rejected", "credited"]
