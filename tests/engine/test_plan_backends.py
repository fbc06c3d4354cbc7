"""The plan (engine/plan/) and its two backends: every construct of the language through
the scalar function (engine/to_python.py), the C kernel (engine/to_c.py) and the batch
engine without a kernel (the scalar function row by row), on generated records.

tests/engine/data/constructs.tanpu uses each kind of plan node: text compared with text,
a text-valued `case` as a lookup key, keys that can reject (two in one sum, with
different codes: the left one must win), integer and boolean keys, `otherwise` values,
periods, a date and datetimes with their parts in a zone with daylight saving time,
durations, min/max, rounding, the methodology's end date.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl import compile_source
from engine import Engine
from engine.batch import BatchEngine
from engine.plan import ast as p
from engine.plan import from_ir, plan_text
from engine.native import build as kernels

SOURCE = (Path(__file__).parent / "data" / "constructs.tanpu").read_text(encoding="utf-8")
METHODOLOGY = compile_source(SOURCE, "constructs.tanpu").methodology
SCALAR = Engine(METHODOLOGY)
IN_C = BatchEngine(METHODOLOGY, kernels=kernels.build)
ROW_BY_ROW = BatchEngine(METHODOLOGY)

_texts = st.sampled_from(["重庆", "武汉", "x", "x", "y", "z z"])
_start = dt.datetime(2023, 12, 29)


@st.composite
def _record(draw, i: int = 0):
    days = draw(st.one_of(st.integers(0, 400), st.sampled_from([0, 3, 4, 186, 187, 398, 399])))
    started = _start + dt.timedelta(days=days, minutes=draw(st.integers(0, 24 * 60 - 1)))
    ended = started + dt.timedelta(seconds=draw(st.integers(-600, 7200)))
    registered = dt.date(2023, 12, 1) + dt.timedelta(days=draw(st.integers(0, 500)))
    return {"mode": draw(st.sampled_from(["bike", "ebike", "scooter"])), "city": draw(_texts),
            "other": draw(_texts), "seats": str(draw(st.integers(-1, 6))),
            "member": draw(st.sampled_from(["true", "false"])),
            "started": started.isoformat(), "ended": ended.isoformat(),
            "registered": registered.isoformat(),
            "distance": f"{draw(st.floats(0, 120, allow_nan=False)):.3f} km"}


def _keys(results) -> list:
    return [r.key() + (r.message,) for r in results]


@pytest.mark.skipif(kernels.compiler() is None, reason="no C compiler")
def test_every_construct_compiles_to_c():
    assert IN_C.formulas.compiles()


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_record(), min_size=1, max_size=30))
def test_the_backends_agree_on_every_construct(records):
    stream = [dict(r, id=f"r{i}", account=f"a{i % 3}") for i, r in enumerate(records)]
    expected = _keys(SCALAR.evaluate(stream))
    assert _keys(ROW_BY_ROW.evaluate(stream)) == expected
    if IN_C.formulas.compiles():
        assert _keys(IN_C.evaluate(stream)) == expected


def test_the_left_rejection_wins_in_every_backend():
    """`ef_a[kind] + ef_b[other]`: both keys missing rejects with the left one's code."""
    record = {"id": "r", "account": "a", "mode": "bike", "city": "北京", "other": "北京",
              "seats": "1", "member": "true", "started": "2024-05-20T08:00",
              "ended": "2024-05-20T08:30", "registered": "2024-03-01", "distance": "3 km"}
    codes = {SCALAR.evaluate([record])[0].code, ROW_BY_ROW.evaluate([record])[0].code,
             IN_C.evaluate([record])[0].code}
    assert codes == {"A_MISSING"}


def test_the_plan_orders_each_require_after_what_it_needs_and_before_the_rest():
    plan = from_ir(METHODOLOGY)
    order = [s.kind if isinstance(s, p.Check) else s.name for s in plan.steps]
    assert order[:2] == ["period", "period"] and order[2] == "activity"
    assert order[3:5] == ["bound", "bound"]  # seats, distance, in input order
    assert order.index("kind") < order.index("require") < order.index("both")
    text = plan_text(plan)
    assert "check require" in text and "R" in text
    # the lookups that can reject say so, and with which reason
    both = plan.define("both")
    assert both.expr.rejects and isinstance(both.expr, p.Arith)
    assert [plan.reasons[k.missing][1] for k in (both.expr.left, both.expr.right)] == ["A_MISSING", "B_MISSING"]


def test_the_plan_decides_representations():
    plan = from_ir(METHODOLOGY)
    assert plan.define("kind").rep == p.T
    assert plan.define("late").rep == p.B
    assert plan.define("points").rep == p.I and plan.define("points").whole
    assert plan.define("reduction").quantize and plan.define("reduction").overridable
    assert dict(plan.inputs)["registered"] == p.DAY and dict(plan.inputs)["started"] == p.DT


CALENDAR = compile_source('''methodology test.calendar "calendar" version 1.0.0 {
  covers thing
  effective from 1700-01-01
  timezone America/New_York
}
input d: date
input t: datetime
reduction = 1 g
points = year(d) * 100000 + month(d) * 1000 + day(d) * 10 + weekday(d) + hour(t) * 1000000000 + year(t) * 10000000000000
''', "calendar.tanpu").methodology


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.dates(dt.date(1, 1, 3), dt.date(9999, 12, 28)),
                          st.datetimes(dt.datetime(1800, 1, 1), dt.datetime(2300, 1, 1))),
                min_size=1, max_size=40))
def test_calendar_parts_agree_over_the_whole_calendar(rows):
    """Day numbers from year 1 to 9999 (the C calendar against Python's datetime.date),
    and local hours before, inside and beyond the zone's transition table."""
    stream = [{"id": f"r{i}", "account": "a", "d": d.isoformat(), "t": t.isoformat()}
              for i, (d, t) in enumerate(rows)]
    expected = _keys(Engine(CALENDAR).evaluate(stream))
    assert _keys(BatchEngine(CALENDAR, kernels=kernels.build).evaluate(stream)) == expected


CUBES = compile_source('''methodology test.cubes "cubes" version 1.0.0 {
  covers thing
  effective from 2024-01-01
}
input n: integer between -4000000 and 4000000
let cube = n * n * n
reduction = 1 g
points = cube - cube + (if n > 0 then -n else n)
''', "cubes.tanpu").methodology


@pytest.mark.parametrize("n, fits", [(2_000_000, True), (3_000_000, False), (-3_000_000, False)])
def test_a_whole_number_beyond_int64_rejects_the_record_on_every_path(n, fits):
    """Issue 12: n * n * n with n = 3,000,000 is 2.7e19: the scalar path used to crash in
    results_frame and the batch path to wrap; every path now rejects it, at the product."""
    from engine.batch import results_frame
    from engine.rules import RulesPathEngine

    stream = [{"id": "r", "account": "a", "time": "2024-05-20T08:00", "n": str(n)}]
    scalar = _keys(Engine(CUBES).evaluate(stream))
    assert _keys(BatchEngine(CUBES).evaluate(stream)) == scalar
    assert _keys(BatchEngine(CUBES, kernels=kernels.build).evaluate(stream)) == scalar
    assert _keys(RulesPathEngine(CUBES).evaluate(stream)) == scalar
    (status, code, message) = scalar[0][3], scalar[0][4], scalar[0][-1]
    if fits:
        assert status == "credited" and scalar[0][6] == -abs(n)
    else:
        assert (status, code) == ("rejected", "NOT_FINITE") and "`cube` is too large" in message
    assert results_frame(Engine(CUBES).evaluate(stream)).height == 1  # no crash writing it
