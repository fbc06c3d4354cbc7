"""Legs (a record's repeated group): the same results on every path, from every format.

The scalar engine is the reference; the batch engine with its formulas in a C kernel
and row by row (no compiler) and the rules path (durable_rules, a cap recomputing the
points of capped records from their legs) must agree with it result for result, and a
bad leg is refused with its row and field (`legs[1].distance`) everywhere.
"""

from __future__ import annotations

import json

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import Engine, cross_record
from engine.batch.engine import BatchEngine
from engine.native.build import build, compiler
from engine.recordfiles import open_records
from engine.rules import RulesEngine

from .conftest import compile_text

# the legs input both bodies below declare
LEGS = '''
input legs: list {
  mode: choice { walk, metro, bike, bus },
  distance: quantity [km] between 0 km and 100 km,
  riders: integer = 1 at least 0,
} at most 6 label "行程段 / legs"
'''

BODY = LEGS + """
parameter factor [g/km] by mode from 2024-01-01 source "test" [ASM] {
  walk: 0, metro: 33.3, bike: 0, bus: 55.1
}
let green [km] = sum(leg.distance for leg in legs where leg.mode in { walk, bike })
let riders = sum(leg.riders for leg in legs)
reduction = sum((150 g/km - factor[leg.mode]) * leg.distance for leg in legs where leg.mode != walk)
  + green * 1 g/km
points = floor(reduction / 1 g) + count(leg for leg in legs where leg.mode == bike) * 10 + riders
cap reduction at 3 kg per account per day
"""
METHODOLOGY = compile_text(BODY)
ENGINE = Engine(METHODOLOGY)


def _keys(results) -> list:
    return [r.key() + (r.message,) for r in results]


def _batches():
    if compiler() is None:
        return (BatchEngine(METHODOLOGY),)
    in_c = BatchEngine(METHODOLOGY, kernels=build)
    assert in_c.formulas.compiles(), "the kernel did not build"
    return BatchEngine(METHODOLOGY), in_c


BATCHES = _batches()


# ---------------------------------------------------------------- the values
def test_a_walk_metro_bike_trip():
    [result] = ENGINE.evaluate([{"id": "t", "account": "a", "time": "2024-05-06T08:00",
                                 "legs": [{"mode": "walk", "distance": "0.8 km"},
                                          {"mode": "metro", "distance": "12.4 km"},
                                          {"mode": "bike", "distance": "1500 m", "riders": 2}]}])
    # metro (150 - 33.3) g/km × 12.4 km + bike 150 g/km × 1.5 km + green (0.8 + 1.5 km) × 1 g/km
    assert result.status == "credited", result.message
    assert result.reduction_mg == round((116.7 * 12.4 + 225 + 2.3) * 1000)
    assert result.points == 1674 + 10 + 4


def test_no_legs_is_an_empty_sum():
    [result] = ENGINE.evaluate([{"id": "t", "time": "2024-05-06T08:00"}])
    assert (result.status, result.reduction_mg, result.points) == ("credited", 0, 0)


@pytest.mark.parametrize("legs, field, reason", [
    ([{"mode": "walk", "distance": "1 km"}, {"mode": "metro", "distance": "101 km"}],
     "legs[1].distance", "must be between 0 km and 100 km"),
    ([{"mode": "car", "distance": "1 km"}], "legs[0].mode", "`car` is not one of walk, metro, bike, bus"),
    ([{"mode": "bus"}], "legs[0].distance", "missing"),
    ([{"mode": "bus", "distance": "2"}], "legs[0].distance", "has no unit"),
    ([{"mode": "bus", "distance": "2 km", "speed": "fast"}], "legs[0].speed", "is not a field of a leg"),
    (["bus"], "legs[0]", "is not a leg"),
    ("[{\"mode\": ", "legs", "is not a JSON list of legs"),
    ([{"mode": "bus", "distance": "1 km"}] * 7, "legs", "at most 6 leg(s), found 7"),
])
def test_a_bad_leg_is_refused_with_its_field_on_every_path(legs, field, reason):
    records = [{"id": "ok", "time": "2024-05-06T08:00", "legs": [{"mode": "bus", "distance": "1 km"}]},
               {"id": "bad", "time": "2024-05-06T09:00", "legs": legs}]
    expected = ENGINE.evaluate(records)
    assert expected[0].status == "credited"
    bad = expected[1]
    assert (bad.status, bad.row) == ("invalid", 2)
    assert bad.message.startswith(f"{field}: ") and reason in bad.message, bad.message
    for batch in BATCHES:
        assert _keys(batch.evaluate(records)) == _keys(expected)


# ---------------------------------------------------------------- every path agrees
_LEG = st.fixed_dictionaries(
    {"mode": st.sampled_from(["walk", "metro", "bike", "bus"]),
     "distance": st.one_of(st.floats(0, 100, allow_nan=False).map(lambda x: f"{x} km"),
                           st.integers(0, 100_000).map(lambda m: f"{m} m"))},
    optional={"riders": st.one_of(st.integers(0, 5), st.sampled_from([2 ** 62, 2 ** 63 - 1]))})


@st.composite
def _stream(draw):
    records = []
    for k in range(draw(st.integers(1, 12))):
        legs = draw(st.lists(_LEG, max_size=4))
        record = {"id": f"r{k}", "account": draw(st.sampled_from(["a", "b"])),
                  "time": f"2024-05-{draw(st.integers(6, 7)):02d}T{draw(st.integers(0, 23)):02d}:00"}
        how = draw(st.sampled_from(["list", "json", "columns"]))
        if how == "list":
            record["legs"] = legs
        elif how == "json":
            record["legs"] = json.dumps(legs)
        else:
            for i, leg in enumerate(legs):
                for name, value in leg.items():
                    record[f"legs[{i}].{name}"] = str(value)
        records.append(record)
    return records


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_stream())
def test_batch_in_c_and_row_by_row_agree_with_the_scalar_path(stream):
    expected = _keys(ENGINE.evaluate(stream))
    for batch in BATCHES:
        assert _keys(batch.evaluate(stream)) == expected


RULES = RulesEngine(METHODOLOGY, engine=ENGINE, retries=0)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_stream())
def test_the_rules_path_agrees_with_the_reference(stream):
    def per_record():
        return ENGINE.evaluate(stream, per_record_only=True)
    reference, mine = per_record(), per_record()
    cross_record.apply(reference, METHODOLOGY, ENGINE.recompute_points)
    RULES.apply(mine)
    assert _keys(mine) == _keys(reference)


def test_an_int64_overflow_over_legs_is_rejected_alike():
    stream = [{"id": "x", "time": "2024-05-06T08:00",
               "legs": [{"mode": "bus", "distance": "1 km", "riders": 2 ** 63 - 1},
                        {"mode": "bus", "distance": "1 km", "riders": 1}]}]
    [result] = ENGINE.evaluate(stream)
    assert (result.status, result.code) == ("rejected", "NOT_FINITE")
    for batch in BATCHES:
        assert _keys(batch.evaluate(stream)) == _keys([result])


def test_capped_points_are_recomputed_from_the_legs_in_batches():
    """A reduction cap keeps the legs column for the points of capped records."""
    trip = [{"mode": "bus", "distance": "20 km"}, {"mode": "bike", "distance": "2 km"}]
    stream = [{"id": f"r{k}", "account": "a", "time": f"2024-05-06T0{k}:00", "legs": trip}
              for k in range(3)]
    expected = ENGINE.evaluate(stream)
    assert [r.status for r in expected] == ["credited", "capped", "capped"]
    for batch in BATCHES:
        assert _keys(batch.evaluate(stream)) == _keys(expected)


# ---------------------------------------------------------------- files
CSV_COLUMNS = """id,account,time,legs[0].mode,legs[0].distance[km],legs[1].mode,legs[1].distance[km]
t1,a,2024-05-06T08:00,walk,0.8,metro,12.4
t2,a,2024-05-06T09:00,bike,3,,
t3,a,2024-05-06T10:00,bus,2,metro,abc
"""


def _files(tmp_path):
    legs = [[{"mode": "walk", "distance": "0.8 km"}, {"mode": "metro", "distance": "12.4 km"}],
            [{"mode": "bike", "distance": "3 km"}],
            [{"mode": "bus", "distance": "2 km"}, {"mode": "metro", "distance": "abc"}]]
    rows = [{"id": f"t{k + 1}", "account": "a", "time": f"2024-05-06T{8 + k:02d}:00", "legs": trip}
            for k, trip in enumerate(legs)]
    columns = tmp_path / "columns.csv"
    columns.write_text(CSV_COLUMNS, encoding="utf-8")
    cell = tmp_path / "cell.csv"
    pl.DataFrame({"id": [r["id"] for r in rows], "account": ["a"] * 3, "time": [r["time"] for r in rows],
                  "legs": [json.dumps(r["legs"]) for r in rows]}).write_csv(cell)
    jsonl = tmp_path / "lines.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    parquet = tmp_path / "table.parquet"
    pl.DataFrame(rows).write_parquet(parquet)
    return [columns, cell, jsonl, parquet]


def test_every_file_format_gives_the_same_results(tmp_path):
    results = []
    for path in _files(tmp_path):
        source = open_records(path)
        scalar = ENGINE.evaluate(source.rows, column_units=source.column_units)
        for batch in BATCHES:
            got = pl.concat(list(batch.evaluate_file(path)))
            assert got.get_column("reduction_mg").to_list() == [r.reduction_mg for r in scalar], path
            assert got.get_column("message").to_list()[2] == scalar[2].message, path
        results.append([(r.status, r.reduction_mg, r.points, r.row) for r in scalar])
        assert scalar[2].message.startswith("legs[1].distance: "), (path, scalar[2].message)
    assert all(r == results[0] for r in results), results
    assert results[0][:2] == [("credited", round((116.7 * 12.4 + 0.8) * 1000), 1447 + 2, 1),
                              ("credited", 453000, 453 + 10 + 1, 2)]
    assert results[0][2][0] == "invalid" and results[0][2][3] == 3


def test_the_record_schema_describes_the_legs():
    from engine.schema import input_schema
    legs = input_schema(METHODOLOGY)["properties"]["legs"]
    assert (legs["type"], legs["maxItems"], legs["description"]) == ("array", 6, "行程段 / legs")
    fields = legs["items"]["properties"]
    assert fields["mode"]["enum"] == ["walk", "metro", "bike", "bus"]
    assert (fields["distance"]["x-minimum"], fields["distance"]["x-maximum"]) == ("0 km", "100 km")
    assert legs["items"]["required"] == ["mode", "distance"]
    assert "legs" not in input_schema(METHODOLOGY)["required"]


_CELL = st.one_of(st.floats(0, 120, allow_nan=False).map(lambda x: f"{x:.3f}"),  # header unit: km
                  st.integers(0, 150_000).map(lambda m: f"{m} m"), st.sampled_from(["", " 2 ", "x", "-1"]))


@st.composite
def _columns_stream(draw):
    """Repeated text columns only (the column-by-column path of engine/batch/legs.py),
    with cells it is not sure of: units in the cell, spaces, blanks, garbage."""
    records = []
    for k in range(draw(st.integers(1, 10))):
        record = {"id": f"r{k}", "account": "a", "time": f"2024-05-06T{k:02d}:00"}
        for i in range(draw(st.integers(0, 7))):
            record[f"legs[{i}].mode"] = draw(st.sampled_from(["walk", "metro", "bike", "bus", "", "car"]))
            record[f"legs[{i}].distance"] = draw(_CELL)
            if draw(st.booleans()):
                record[f"legs[{i}].riders"] = draw(st.sampled_from(["1", "3", "", "1.5", "9223372036854775807"]))
        records.append(record)
    return records


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_columns_stream())
def test_repeated_columns_read_column_by_column_agree_with_the_scalar_path(stream):
    units = {f"legs[{i}].distance": "km" for i in range(7)}
    expected = _keys(ENGINE.evaluate(stream, column_units=units))
    for batch in BATCHES:
        assert _keys(batch.evaluate(stream, column_units=units)) == expected


# ---------------------------------------------------------------- a table narrowed by `where`
# The table lists metro and bus only; the sums' `where`s keep only those legs, so the
# checker accepts it (no E0403) and no path may look up a walk or bike leg's factor: the
# body is evaluated only for the legs the `where` keeps (a lookup of an unlisted key
# would reject the record with NO_VALUE).
NARROWED_BODY = LEGS + """
parameter transit [g/km] by mode from 2024-01-01 source "test" [ASM] { metro: 78.4, bus: 55.1 }
parameter seats by mode from 2024-01-01 source "test" [ASM] { metro: 3, bus: 2 }
reduction = sum(leg.distance * transit[leg.mode] for leg in legs where leg.mode in { metro, bus })
  + sum(leg.distance * 1 g/km for leg in legs where not (leg.mode in { metro, bus }))
points = round(reduction / 1 g)
  + floor(sum(seats[leg.mode] * leg.riders for leg in legs where leg.mode != walk and leg.mode != bike))
cap reduction at 3 kg per account per day
"""
NARROWED = compile_text(NARROWED_BODY)
NARROWED_ENGINE = Engine(NARROWED)
NARROWED_BATCHES = (BatchEngine(NARROWED),) + \
    ((BatchEngine(NARROWED, kernels=build),) if compiler() is not None else ())
NARROWED_RULES = RulesEngine(NARROWED, engine=NARROWED_ENGINE, retries=0)


def test_a_narrowed_table_is_looked_up_only_for_the_legs_the_where_keeps():
    trip = [{"mode": "walk", "distance": "0.5 km"}, {"mode": "metro", "distance": "10 km", "riders": 2},
            {"mode": "bike", "distance": "2 km"}, {"mode": "bus", "distance": "4 km"}]
    stream = [{"id": "t", "account": "a", "time": "2024-05-06T08:00", "legs": trip}]
    [result] = NARROWED_ENGINE.evaluate(stream)
    assert result.status == "credited", result.message
    # metro 10 km × 78.4 + bus 4 km × 55.1 + (walk 0.5 + bike 2) km × 1 g/km
    assert result.reduction_mg == 784_000 + 220_400 + 2_500
    assert result.points == 1007 + 3 * 2 + 2 * 1
    for batch in NARROWED_BATCHES:
        assert _keys(batch.evaluate(stream)) == _keys([result])
    if compiler() is not None:
        assert NARROWED_BATCHES[-1].formulas.compiles(), "the kernel did not build"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_stream())
def test_a_narrowed_table_gives_the_same_results_on_every_path(stream):
    expected = NARROWED_ENGINE.evaluate(stream)
    # the where keeps the lookups to listed keys: nothing is rejected for a missing factor
    assert not any(r.status == "rejected" and r.code == "NO_VALUE" for r in expected)
    for batch in NARROWED_BATCHES:
        assert _keys(batch.evaluate(stream)) == _keys(expected)
    reference = NARROWED_ENGINE.evaluate(stream, per_record_only=True)
    mine = NARROWED_ENGINE.evaluate(stream, per_record_only=True)
    cross_record.apply(reference, NARROWED, NARROWED_ENGINE.recompute_points)
    NARROWED_RULES.apply(mine)
    assert _keys(mine) == _keys(reference)
