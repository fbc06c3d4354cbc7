"""Date arithmetic (docs/language.md §7.7): a date moved by a duration, the local date of
an instant, the days between two dates, the day of the week and the days of the year,
and comparisons of dates, the same on the scalar path and in the C kernel (a
differential property test), and what the calendar says (an oracle from Python's
datetime and zoneinfo)."""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl import compile_source
from engine.batch import BatchEngine
from engine.evaluate import Engine
from engine.native.build import build, compiler

SOURCE = """
methodology t.dates "dates" version 1.0.0 {
  covers ride
  effective from 0001-01-01
  timezone Asia/Shanghai
}
input started: datetime
input joined: date
input shift: duration
let local = date(started)
let due = joined + shift
let before = joined - shift
let between = (local - joined) / 1 day
let code = weekday(due) * 1000 + days_in_year(local) + (if due <= local then 10000 else 0)
  + (if before != joined then 100000 else 0)
reduction = 1 g * between
points = code
"""

METHODOLOGY = compile_source(SOURCE).methodology
SCALAR = Engine(METHODOLOGY)
KERNEL = BatchEngine(METHODOLOGY, kernels=build) if compiler() is not None else BatchEngine(METHODOLOGY)
ZONE = ZoneInfo("Asia/Shanghai")


def _keys(results):
    return [(r.id, r.status, r.code, r.message, r.reduction_mg, r.points) for r in results]


records = st.builds(
    lambda i, started, joined, hours: {
        "id": f"r{i}", "account": "a", "time": started.isoformat(), "started": started.isoformat(),
        "joined": joined.isoformat(), "shift": f"{hours} h"},
    st.integers(0, 10**6),
    st.datetimes(min_value=dt.datetime(1900, 1, 2), max_value=dt.datetime(2200, 1, 1),
                 timezones=st.just(dt.timezone.utc)),
    st.dates(),
    st.one_of(st.integers(-10**6, 10**6), st.floats(-1e9, 1e9, allow_nan=False),
              st.sampled_from([0, 23.999999, 24, -24, -0.5, 1e300, 2.4e9])))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(records, max_size=20, unique_by=lambda r: r["id"]))
def test_the_kernel_computes_dates_as_the_scalar_path(raws):
    assert _keys(KERNEL.evaluate(raws)) == _keys(SCALAR.evaluate(raws))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(records)
def test_dates_are_what_the_calendar_says(raw):
    result = SCALAR.evaluate([raw])[0]
    started = dt.datetime.fromisoformat(raw["started"])
    joined = dt.date.fromisoformat(raw["joined"])
    seconds = float(raw["shift"].split()[0]) * 3600
    local = started.astimezone(ZONE).date()
    try:
        due = joined + dt.timedelta(days=math.floor(seconds / 86400.0))
        before = joined + dt.timedelta(days=math.floor(-seconds / 86400.0))
    except OverflowError:
        assert (result.status, result.code) == ("rejected", "NOT_FINITE")
        assert "0001-01-01" in result.message
        return
    assert result.status == "credited", result.message
    assert result.reduction_mg == (local - joined).days * 1000
    leap = local.year % 4 == 0 and (local.year % 100 != 0 or local.year % 400 == 0)
    assert result.points == (due.isoweekday() * 1000 + (366 if leap else 365)
                             + (10000 if due <= local else 0) + (100000 if before != joined else 0))


def test_by_hand():
    """A ride at 00:30 in Shanghai on 1 March 2024 is on that date (29 February in UTC);
    2024 has 366 days; 1 January 2024 + 59 days is 29 February, a Thursday."""
    raw = {"id": "x", "account": "a", "time": "2024-02-29T16:30Z", "started": "2024-02-29T16:30Z",
           "joined": "2024-01-01", "shift": "1416 h"}  # 59 days
    for engine in (SCALAR, KERNEL):
        result = engine.evaluate([raw])[0]
        assert result.reduction_mg == 60_000  # 1 January to 1 March: 60 days
        assert result.points == 100000 + 10000 + 4 * 1000 + 366


# ---------------------------------------------------------------- instants moved
INSTANTS = """
methodology t.instants "instants" version 1.0.0 {
  covers ride
  effective from 0001-01-01
  timezone %s
}
input started: datetime
input shift: duration
let later = started + shift
let earlier = started - shift
let code = hour(later) * 100000000 + day(later) * 1000000 + month(later) * 10000
  + hour(earlier) * 100 + weekday(earlier) * 10 + (if date(later) > date(started) then 1 else 0)
reduction = 1 mg * ((later - earlier) / 1 min)
points = code
"""


def _instants(zone: str):
    m = compile_source(INSTANTS % zone).methodology
    assert m is not None
    return Engine(m), (BatchEngine(m, kernels=build) if compiler() is not None else BatchEngine(m))


ZONES = {zone: _instants(zone) for zone in ("Asia/Shanghai", "Europe/Berlin", "America/New_York")}

moved = st.builds(
    lambda i, started, seconds: {
        "id": f"r{i}", "account": "a", "time": started.isoformat(), "started": started.isoformat(),
        "shift": f"{seconds} s"},
    st.integers(0, 10**6),
    st.datetimes(min_value=dt.datetime(1900, 1, 2), max_value=dt.datetime(2199, 1, 1),
                 timezones=st.just(dt.timezone.utc)),
    st.one_of(st.integers(-10**9, 10**9), st.floats(-1e10, 1e10, allow_nan=False),
              st.sampled_from([0, 0.0000015, -0.0000015, 3600, 86400 * 180, 1e300, 5e12, 1e11])))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(zone=st.sampled_from(sorted(ZONES)), raws=st.lists(moved, max_size=20, unique_by=lambda r: r["id"]))
def test_the_kernel_moves_instants_as_the_scalar_path(zone, raws):
    scalar, kernel = ZONES[zone]
    assert _keys(kernel.evaluate(raws)) == _keys(scalar.evaluate(raws))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(zone=st.sampled_from(sorted(ZONES)), raw=moved)
def test_instants_moved_are_what_the_calendar_says(zone, raw):
    """started ± floor(seconds × 10⁶) µs, its hour, day, month and weekday in the zone."""
    result = ZONES[zone][0].evaluate([raw])[0]
    here = ZoneInfo(zone)
    started = dt.datetime.fromisoformat(raw["started"])
    seconds = float(raw["shift"].split()[0])
    try:
        later = started + dt.timedelta(microseconds=math.floor(seconds * 1e6))
        earlier = started + dt.timedelta(microseconds=math.floor(-seconds * 1e6))
        if not (dt.datetime(1, 1, 3, tzinfo=dt.timezone.utc) <= min(later, earlier)
                and max(later, earlier) < dt.datetime(2200, 1, 1, tzinfo=dt.timezone.utc)):
            raise OverflowError
    except OverflowError:
        assert (result.status, result.code) == ("rejected", "NOT_FINITE"), result
        assert "2199-12-31" in result.message
        return
    assert result.status == "credited", result.message
    a, b, s = later.astimezone(here), earlier.astimezone(here), started.astimezone(here)
    assert result.points == (a.hour * 100000000 + a.day * 1000000 + a.month * 10000 + b.hour * 100
                             + b.isoweekday() * 10 + (1 if a.date() > s.date() else 0))


def test_an_instant_moved_across_a_change_of_offset():
    """Berlin, 31 March 2024: 01:30 local (00:30 UTC) + 1 h is 03:30 local, the clocks
    having gone forward at 02:00; both paths say so."""
    raw = {"id": "x", "account": "a", "time": "2024-03-31T00:30Z", "started": "2024-03-31T00:30Z",
           "shift": "1 h"}
    for engine in ZONES["Europe/Berlin"]:
        result = engine.evaluate([raw])[0]
        assert result.points // 100000000 == 3  # hour(later)
        assert (result.points // 100) % 100 == 0  # hour(earlier): 00:30 local (23:30 UTC)
        assert result.reduction_mg == 120  # later - earlier: 2 h
