"""One real event, several reports (engine/channels.py): the same duplicates on every
path, the first report to arrive kept, the condition respected, the duplicate naming
the record it repeats, and a stream in batches with its state carried equal to the
stream whole."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Engine, cross_record
from engine.batch.engine import BatchEngine
from engine.native.build import build, compiler
from engine.rules import RulesEngine
from engine.state import AccountState

from .conftest import compile_text

BODY = """
input mode: choice { walk, bus, metro }
input started: datetime
input arrived: datetime
input distance: quantity [km] between 0 km and 50 km
reduction = 50 g/km * distance
points = floor(reduction / 1 g)
forbid duplicate mode, started within 5 min per account where mode != walk
  keep first by arrived else SAME_RIDE "同一行程的另一份报告 / the same ride reported again"
"""
WITH_OTHERS = BODY + """
forbid duplicate distance per account where mode in { metro } else SAME_KM "metro km seen"
flag more than 2 records per account within 1 h as BUSY "busy"
cap reduction at 600 g per account per day
"""
METHODOLOGIES = {"near": compile_text(BODY), "near+others": compile_text(WITH_OTHERS)}
ENGINES = {name: Engine(m) for name, m in METHODOLOGIES.items()}


def _batches(m):
    if compiler() is None:
        return (BatchEngine(m),)
    return BatchEngine(m), BatchEngine(m, kernels=build)


BATCHES = {name: _batches(m) for name, m in METHODOLOGIES.items()}
RULES = {name: RulesEngine(m, engine=ENGINES[name], retries=0) for name, m in METHODOLOGIES.items()}
T0 = dt.datetime(2024, 5, 6, 8, 0)


def _keys(results):
    return [(r.id, r.account, r.status, r.code, r.message, r.reduction_mg, r.points, r.flags)
            for r in results]


def report(rid, minute, arrived_after, mode="bus", km=4, account="a"):
    started = T0 + dt.timedelta(minutes=minute)
    return {"id": rid, "account": account, "mode": mode, "distance": f"{km} km",
            "started": started.isoformat(timespec="seconds"),
            "arrived": (started + dt.timedelta(minutes=arrived_after)).isoformat(timespec="seconds")}


def test_the_first_report_to_arrive_is_the_event():
    results = ENGINES["near"].evaluate([
        report("app", 0, arrived_after=90),    # the rider's screenshot, late
        report("feed", 2, arrived_after=30),   # the operator's feed, first
        report("walk-1", 1, 30, mode="walk"), report("walk-2", 1, 31, mode="walk"),
        report("next", 9, 40),                 # 7 min after the feed's ride: another ride
        report("metro", 1, 20, mode="metro"),  # another mode: another event
    ])
    got = {r.id: (r.status, r.code, r.reduction_mg) for r in results}
    assert got["app"] == ("duplicate", "SAME_RIDE", 0)
    assert "the same event as record feed" in next(r for r in results if r.id == "app").message
    assert got["feed"] == ("credited", "", 200_000)
    assert got["walk-1"] == got["walk-2"] == ("credited", "", 200_000)  # walking is not judged
    assert got["next"][0] == got["metro"][0] == "credited"


def test_only_kept_events_are_compared_with():
    """Reports 4 min apart in a chain: the third is 8 min from the kept one, a new ride."""
    results = ENGINES["near"].evaluate([report("r1", 0, 1), report("r2", 4, 1), report("r3", 8, 1)])
    assert [r.status for r in results] == ["credited", "duplicate", "credited"]


@st.composite
def _stream(draw):
    records = []
    for k in range(draw(st.integers(1, 14))):
        records.append(report(f"r{k}", draw(st.integers(0, 40)), draw(st.integers(0, 120)),
                              mode=draw(st.sampled_from(["walk", "bus", "metro"])),
                              km=draw(st.sampled_from([2, 4, 6])),
                              account=draw(st.sampled_from(["a", "b"]))))
    if draw(st.booleans()) and records:
        records.append(dict(records[0]))  # a repeated record id (DUPLICATE_ID first)
    return records


@pytest.mark.parametrize("name", sorted(METHODOLOGIES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=_stream())
def test_batch_and_rules_paths_agree_with_the_reference(name, stream):
    expected = ENGINES[name].evaluate(stream)
    for batch in BATCHES[name]:
        assert _keys(batch.evaluate(stream)) == _keys(expected)
    mine = ENGINES[name].evaluate(stream, per_record_only=True)
    RULES[name].apply(mine)
    assert _keys(mine) == _keys(expected)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=_stream(), data=st.data())
def test_batches_in_arrival_order_with_the_state_are_the_stream_whole(stream, data):
    engine = ENGINES["near"]
    for i, raw in enumerate(stream):
        raw["id"] = f"r{i}"
    results = engine.evaluate(stream, per_record_only=True)
    results.sort(key=lambda r: (r.values["arrived"], r.account, r.time, r.id))
    whole = copy.deepcopy(results)
    cross_record.apply(whole, engine.rules, engine.recompute_points)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(results)), max_size=5)))
    state: dict = {}
    out = []
    for a, b in zip([0] + cuts, cuts + [len(results)]):
        piece = copy.deepcopy(results[a:b])
        cross_record.apply(piece, engine.rules, engine.recompute_points, state=state)
        out.extend(piece)
        state = {account: AccountState.from_json(engine.rules, s.to_json(engine.rules))
                 for account, s in state.items()}
    assert sorted(_keys(out)) == sorted(_keys(whole))
