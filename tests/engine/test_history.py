"""History windows (docs/language.md §9.6, engine/history.py): the values the reference
gives are those the definition says (an oracle written from the definition, with the
zone's calendar days from zoneinfo); the batch path (NumPy and C kernel) and the rules
path give the same results as the reference; a stream evaluated in pieces, in time
order, the account state stored as JSON between them, gives the results of the stream
evaluated whole. Generated histories: several accounts, gaps of days, records on both
sides of midnight in Asia/Shanghai, windows longer than the history."""

from __future__ import annotations

import datetime as dt
import json
from functools import lru_cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl import compile_source
from engine import history
from engine.batch import BatchEngine
from engine.evaluate import Engine
from engine.native.build import build, compiler
from engine.plan.history import EMPTY, OK, SHORT, status_name
from engine.state import AccountState

ZONE = ZoneInfo("Asia/Shanghai")
START = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)

POLICIES = {"reject": 'otherwise reject SHORT_HISTORY "too short"', "partial": "otherwise partial",
            "value": None}


def source(aggregate: str, side: str, size: int, unit: str, policy: str, subject: str = "input") -> str:
    """A methodology with one history over a quantity and one over an integer, each
    given to an output, so that every path's result shows their values. With `subject`
    "definition", the histories aggregate two `let`s instead of the inputs: `per_n`
    (used / n, which no record with n = 0 has: its formula gives no finite number) and
    `n3` (n * 3)."""
    if policy == "value":
        quantity_short = "otherwise 2.5 kWh" if aggregate != "count" else "otherwise 3"
        integer_short = "otherwise 3" if aggregate != "mean" else "otherwise 0.5"
    else:
        quantity_short = integer_short = POLICIES[policy]
    window = f"over the {side} {size} {unit}"
    reduction = "h_used * 1 g" if aggregate == "count" else "h_used * 1 kg/kWh"
    points = "round(h_n * 1000)" if aggregate == "mean" else "h_n"
    used, n, lets = "used", "n", ""
    if subject == "definition":
        used, n, lets = "per_n", "n3", "let per_n = used / n\nlet n3 = n * 3\n"
    return f"""
methodology t.history "history" version 1.0.0 {{
  covers electricity
  effective from 2020-01-01
  timezone Asia/Shanghai
}}
input used: quantity [kWh] at least 0 kWh
input n: integer
{lets}history h_used = {aggregate} {used} {window} {quantity_short}
history h_n = {aggregate} {n} {window} {integer_short}
reduction = {reduction}
points = {points}
"""


@lru_cache(maxsize=None)
def methodology(*shape):
    compiled = compile_source(source(*shape))
    assert compiled.methodology is not None, compiled.diagnostics
    return compiled.methodology


@lru_cache(maxsize=None)
def engines(*shape):
    m = methodology(*shape)
    batches = [BatchEngine(m)]
    if compiler() is not None:
        in_c = BatchEngine(m, kernels=build)
        assert in_c.formulas.compiles()
        batches.append(in_c)
    return Engine(m), batches


shapes = st.tuples(st.sampled_from(["mean", "sum", "count", "min", "max"]),
                   st.sampled_from(["previous", "last"]), st.integers(1, 9),
                   st.sampled_from(["days", "records"]), st.sampled_from(list(POLICIES)),
                   st.sampled_from(["input", "definition"]))


@st.composite
def streams(draw, max_size=40):
    """Records of a few accounts over about three weeks, some hours either side of
    midnight in Shanghai (16:00 UTC), some accounts with gaps of days."""
    n = draw(st.integers(0, max_size))
    out = []
    for i in range(n):
        day = draw(st.integers(0, 20))
        minute = draw(st.one_of(st.integers(15 * 60, 17 * 60), st.integers(0, 24 * 60 - 1)))
        time = START + dt.timedelta(days=day, minutes=minute)
        out.append({"id": f"r{i}", "account": draw(st.sampled_from(["a", "b", "c", "账户"])),
                    "time": time.isoformat(), "used": f"{draw(st.integers(0, 400)) / 4} kWh",
                    "n": str(draw(st.integers(-50, 50)))})
    return out


def _keys(results):
    return [(r.id, r.status, r.code, r.reduction_mg, r.points) for r in results]


# ---------------------------------------------------------------- the oracle
def _local_day(us: int) -> dt.date:
    return (dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=us)).astimezone(ZONE).date()


def subject_value(r: dict, subject: str):
    """A record's value of what a history aggregates: an input's, or a `let`'s from its
    formula (None where one of those the windows aggregate gives no finite number)."""
    if subject in ("per_n", "n3") and r["n"] == 0:
        return None  # one definition a window aggregates rejects it: in none of them
    if subject == "per_n":
        return r["used"] / r["n"]
    if subject == "n3":
        return r["n"] * 3
    return r[subject]


def oracle(h, records: list[dict], i: int):
    """(status, value) of record i, from the definition: the account's records in
    canonical order (those with a value of the subject), the window chosen by calendar
    dates; the account's first day is that of all its records."""
    me = records[i]
    everyone = sorted((r for r in records if r["account"] == me["account"]),
                      key=lambda r: (r["time"], r["id"]))
    first = _local_day(everyone[0]["time"])
    mine = [r for r in everyone if subject_value(r, h.subject) is not None]
    position = next(k for k, r in enumerate(mine) if r is me)
    day = _local_day(me["time"])
    if h.unit == "days":
        if h.side == "previous":
            start, end = day - dt.timedelta(days=h.size), day - dt.timedelta(days=1)
            chosen = [r for r in mine[:position] if start <= _local_day(r["time"]) <= end]
        else:
            start = day - dt.timedelta(days=h.size - 1)
            chosen = [r for r in mine[:position + 1] if start <= _local_day(r["time"])]
        short = first > start
    else:
        lo = position - h.size if h.side == "previous" else position - h.size + 1
        chosen = mine[max(0, lo):position + (h.side == "last")]
        short = len(chosen) < h.size
    values = [subject_value(r, h.subject) for r in chosen]
    if short and h.short == "reject":
        return SHORT, None
    if short and h.short == "value":
        return OK, h.value
    if not values and h.aggregate in ("mean", "min", "max"):
        return (OK, h.value) if h.short == "value" else (EMPTY, None)
    if h.aggregate == "count":
        return OK, len(values)
    if h.aggregate == "min":
        return OK, min(values)
    if h.aggregate == "max":
        return OK, max(values)
    total = 0 if h.subject in ("n", "n3") else 0.0  # an integer's sum is whole
    for v in values:
        total = total + v
    return OK, total if h.aggregate == "sum" else float(total) / len(values)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(shape=shapes, raws=streams())
def test_the_reference_gives_what_the_definition_says(shape, raws):
    engine = Engine(methodology(*shape))
    records = [engine.reader.read(raw, raw["id"], None) for raw in raws]
    history.apply(records, engine.histories, None, engine.program.subjects)
    for h in engine.histories:
        for i, values in enumerate(records):
            if subject_value(values, h.subject) is None:
                continue  # rejected by `per_n` before its windows are looked at
            status, value = oracle(h, records, i)
            assert values[status_name(h)] == status, (h, i)
            if status == OK:
                assert values[h.name] == value and type(values[h.name]) is type(value), (h, i)


# ---------------------------------------------------------------- the paths agree
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(shape=shapes, raws=streams())
def test_the_batch_path_gives_the_reference_results(shape, raws):
    reference, batches = engines(*shape)
    expected = _keys(reference.evaluate(raws))
    for batch in batches:
        assert _keys(batch.evaluate(raws)) == expected


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(shape=shapes, raws=streams(), data=st.data())
def test_a_stream_in_pieces_with_its_state_is_the_stream_whole(shape, raws, data):
    engine, _ = engines(*shape)
    raws.sort(key=lambda r: (r["time"], r["id"]))  # arrival in time order
    whole = _keys(engine.evaluate(raws))
    cuts = sorted(data.draw(st.sets(st.integers(0, len(raws)), max_size=5)))
    state: dict = {}
    out = []
    for a, b in zip([0] + cuts, cuts + [len(raws)]):
        out += _keys(engine.evaluate(raws[a:b], state=state))
        state = {account: AccountState.from_json(engine.rules, s.to_json(engine.rules))
                 for account, s in state.items()}  # stored and read back, as the ledger does
    assert sorted(out) == sorted(whole)


@pytest.mark.slow
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(shape=shapes, raws=streams(max_size=20))
def test_the_rules_path_gives_the_reference_results(shape, raws):
    from engine.rules import RulesPathEngine
    m = methodology(*shape)
    assert _keys(RulesPathEngine(m).evaluate(raws)) == _keys(Engine(m).evaluate(raws))


def test_the_rules_path_with_a_cap_and_a_window():
    """The durable_rules path applies the cross-record rules to what the formulas gave
    with the windows: the same results as the reference."""
    from engine.rules import RulesPathEngine
    m = compile_source(source("sum", "previous", 2, "days", "partial")
                       + "cap reduction at 30 kg per account per day\n").methodology
    raws = [{"id": f"r{i}", "account": "a", "time": (START + dt.timedelta(hours=8 * i)).isoformat(),
             "used": "10 kWh", "n": "1"} for i in range(12)]
    expected = _keys(Engine(m).evaluate(raws))
    assert [k[1] for k in expected].count("capped") > 0
    assert _keys(RulesPathEngine(m).evaluate(raws)) == expected
    for batch in (BatchEngine(m), BatchEngine(m, kernels=build)):
        assert _keys(batch.evaluate(raws)) == expected


def test_a_sum_of_whole_numbers_beyond_int64_is_rejected_on_every_path():
    m = compile_source(source("sum", "last", 3, "records", "partial")).methodology
    big = str(2 ** 62)
    raws = [{"id": f"r{i}", "account": "a", "time": f"2024-03-0{i + 1}T12:00+08:00", "used": "1 kWh",
             "n": big} for i in range(3)]
    expected = _keys(Engine(m).evaluate(raws))
    assert [(k[1], k[2]) for k in expected] == [("credited", ""), ("rejected", "NOT_FINITE"),
                                                ("rejected", "NOT_FINITE")]
    for batch in (BatchEngine(m), BatchEngine(m, kernels=build)):
        assert _keys(batch.evaluate(raws)) == expected


# ---------------------------------------------------------------- by hand
def test_the_mean_of_the_seven_days_before():
    """An account's mean daily reading over the 7 days ending the day before: the
    first seven days are short; then each day compares with the week before it."""
    m = compile_source(source("mean", "previous", 7, "days", "reject")).methodology
    raws = [{"id": f"d{d}", "account": "a", "time": f"2024-03-{d:02d}T20:00+08:00",
             "used": f"{d} kWh", "n": "0"} for d in range(1, 11)]
    results = Engine(m).evaluate(raws)
    assert [r.code for r in results[:7]] == ["SHORT_HISTORY"] * 7
    # day 8: mean of days 1..7 = 4 kWh -> 4 kg; day 9: 5 kg; day 10: 6 kg
    assert [r.reduction_mg for r in results[7:]] == [4_000_000, 5_000_000, 6_000_000]


def test_a_day_is_the_local_day_in_the_methodology_zone():
    """23:30 and 00:30 in Shanghai (15:30 and 16:30 UTC) are two days: the second
    record's previous day holds the first."""
    m = compile_source(source("sum", "previous", 1, "days", "partial")).methodology
    raws = [{"id": "x", "account": "a", "time": "2024-03-01T15:30Z", "used": "2 kWh", "n": "1"},
            {"id": "y", "account": "a", "time": "2024-03-01T16:30Z", "used": "3 kWh", "n": "1"},
            {"id": "z", "account": "a", "time": "2024-03-01T17:30Z", "used": "4 kWh", "n": "1"}]
    results = {r.id: r for r in Engine(m).evaluate(raws)}
    assert results["y"].reduction_mg == 2_000_000  # 23:30 was the day before
    assert results["z"].reduction_mg == 2_000_000  # y is on its own day, not the previous one


def test_an_empty_window_rejects_a_mean_with_no_history():
    m = compile_source(source("mean", "previous", 2, "days", "partial")).methodology
    raws = [{"id": "x", "account": "a", "time": "2024-03-01T12:00+08:00", "used": "2 kWh", "n": "1"},
            {"id": "y", "account": "a", "time": "2024-03-10T12:00+08:00", "used": "3 kWh", "n": "1"}]
    results = Engine(m).evaluate(raws)
    assert [(r.status, r.code) for r in results] == [("rejected", "NO_HISTORY")] * 2


def test_the_state_keeps_only_what_a_later_window_can_hold():
    m = compile_source(source("sum", "previous", 3, "records", "partial")).methodology
    engine = Engine(m)
    state: dict = {}
    raws = [{"id": f"r{i}", "account": "a", "time": f"2024-03-{i + 1:02d}T12:00+08:00",
             "used": "1 kWh", "n": "1"} for i in range(10)]
    engine.evaluate(raws, state=state)
    assert [len(w.entries) for w in state["a"].windows] == [3, 3]
    assert state["a"].windows[0].first is not None


def test_a_file_in_several_chunks_is_one_stream(tmp_path):
    """evaluate_file reads a history methodology's file whole before it evaluates it: a
    window reaches across the chunks the file is read in."""
    import csv

    import polars as pl

    from engine.batch.engine import to_results
    m = compile_source(source("mean", "previous", 3, "days", "reject")).methodology
    raws = [{"id": f"r{i}", "account": "ab"[i % 2], "time": f"2024-03-{1 + i // 2:02d}T12:00+08:00",
             "used": f"{i % 7} kWh", "n": str(i)} for i in range(40)]
    path = tmp_path / "readings.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(raws[0]))
        writer.writeheader()
        writer.writerows(raws)
    batch = BatchEngine(m, chunk_rows=7, kernels=build)
    frames = list(batch.evaluate_file(path))
    got = _keys(to_results(pl.concat(frames)))
    expected = _keys(Engine(m).evaluate(raws))
    assert got == expected
    assert sum(1 for k in expected if k[1] == "credited") > 20


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(shape=shapes, raws=streams(), data=st.data())
def test_the_batch_path_carries_the_state_as_the_scalar_path(shape, raws, data):
    """The batch engine given each account's state (engine/batch/history.py
    `compute_with_state`): a stream cut at random points, each piece evaluated with the
    state of the pieces before (stored as JSON between them), gives the results of the
    scalar engine on the stream whole, and leaves the state the scalar engine leaves."""
    reference, batches = engines(*shape)
    raws.sort(key=lambda r: (r["time"], r["id"]))
    whole_state: dict = {}
    whole = _keys(reference.evaluate(raws, state=whole_state))
    cuts = sorted(data.draw(st.sets(st.integers(0, len(raws)), max_size=4)))
    rules = reference.rules
    for batch in batches:
        state: dict = {}
        out = []
        for a, b in zip([0] + cuts, cuts + [len(raws)]):
            out += _keys(batch.evaluate(raws[a:b], state=state))
            state = {account: AccountState.from_json(rules, s.to_json(rules)) for account, s in state.items()}
        assert sorted(out) == sorted(whole)
        # equal as data (a reading the scalar path read as 0 is 0.0 in a float column)
        assert {a: json.loads(s.to_json(rules)) for a, s in state.items()} == \
            {a: json.loads(s.to_json(rules)) for a, s in whole_state.items()}


def test_the_batch_engine_carries_a_duplicate_rules_state_beside_the_windows():
    """A duplicate key seen in an earlier piece is a duplicate in a later one, and the
    window still holds its reading, as on the scalar path."""
    m = compile_source(source("sum", "previous", 2, "days", "partial")
                       + "forbid duplicate n per account else DUP \"again\"\n").methodology
    raws = [{"id": f"r{i}", "account": "a", "time": f"2024-03-0{1 + i}T12:00+08:00",
             "used": f"{i + 1} kWh", "n": str(i % 2)} for i in range(4)]
    whole = _keys(Engine(m).evaluate(raws))
    state: dict = {}
    batch = BatchEngine(m)
    pieces = _keys(batch.evaluate(raws[:2], state=state)) + _keys(batch.evaluate(raws[2:], state=state))
    assert pieces == whole
    assert [k[1] for k in whole][2:] == ["duplicate", "duplicate"]


def test_windows_over_definitions_of_legs_and_tables_agree_on_every_path():
    """Two windows over `let`s that sum legs and look a table up (a missing key would
    reject in the definitions' own plan): the scalar, batch (NumPy and C) and rules paths
    give the same results."""
    import random

    from engine.rules import RulesPathEngine
    m = compile_source('''
methodology t.hl "legs history" version 1.0.0 { covers trip effective from 2024-01-01 timezone Asia/Shanghai }
input legs: list { mode: choice { walk, metro, bike }, distance: quantity [km] between 0 km and 100 km } at most 4
parameter f [g/km] by mode from 2024-01-01 source "t" [ASM] { walk: 0, metro: 33.3, bike: 0 }
let green [km] = sum(leg.distance for leg in legs where leg.mode != metro)
let emitted [g] = sum(f[leg.mode] * leg.distance for leg in legs)
history usual = mean green over the last 3 records otherwise partial
history most = max emitted over the previous 2 days otherwise 0 g
reduction = usual * 10 g/km + most
points = floor(reduction / 1 g)
''').methodology
    rng = random.Random(3)
    raws = [{"id": f"r{i}", "account": rng.choice("ab"), "time": f"2024-03-{1 + i // 6:02d}T{8 + i % 6:02d}:00+08:00",
             "legs": [{"mode": rng.choice(["walk", "metro", "bike"]), "distance": f"{rng.randint(0, 90) / 10} km"}
                      for _ in range(rng.randint(0, 3))]} for i in range(60)]
    expected = _keys(Engine(m).evaluate(raws))
    assert sum(1 for k in expected if k[1] == "credited") > 20
    for engine in (BatchEngine(m), BatchEngine(m, kernels=build), RulesPathEngine(m)):
        assert _keys(engine.evaluate(raws)) == expected


def test_repeated_ids_found_beside_the_windows_are_those_found_after_them():
    """With the frame one batch, BatchEngine looks for repeated ids on another core while
    the windows are computed (Part.duplicate_ids, from `Rules.ahead_rows` rows): the
    same DUPLICATE_ID records as the scalar engine, a repeated record still in the
    windows of later ones, an invalid record among them."""
    m = methodology("mean", "previous", 2, "days", "partial")
    raws = []
    for i in range(60):
        day = START + dt.timedelta(hours=7 * i)
        raws.append({"id": f"r{i % 45}", "account": "ab"[i % 2], "time": day.isoformat(),
                     "used": f"{(i * 7) % 11} kWh", "n": str(i % 5)})
    raws[9]["used"] = "lots"
    expected = [r.key() for r in Engine(m).evaluate(raws)]
    assert sum(key[4] == "DUPLICATE_ID" for key in expected) == 14  # r9 repeats the invalid one
    batches = [BatchEngine(m)] + ([BatchEngine(m, kernels=build)] if compiler() is not None else [])
    for batch in batches:
        batch.rules.ahead_rows = 0
        assert [r.key() for r in batch.evaluate(raws)] == expected
