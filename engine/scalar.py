"""The scalar evaluator: one record at a time, with explanations on request.

The methodology's plan (engine/plan/, where the order of evaluation and every reason
are decided) is written as Python source by engine/to_python.py; this module compiles
it and gives it what it calls at run time: the numeric contract (engine/numeric.py),
the local time of the methodology's zone and the parameters' tables.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from typing import Callable, Optional

from dsl.ir import ast as ir
from dsl.zones import zone

from . import numeric, records
from .plan import from_ir
from .plan.ast import END_US, FIRST_DAY, FIRST_US, LAST_DAY
from .result import NO_VALUE
from .legs import shown as legs_shown
from .to_python import Source


class Reject(Exception):
    """A record is rejected (raised inside generated code, caught by the caller)."""

    def __init__(self, code: str, message: str, status: str = "rejected"):
        self.code = code
        self.message = message
        self.status = status


# What `ScalarProgram.run` gives for a record: a plain tuple with these fields (a tuple
# because building one costs next to nothing, and this happens once per record).
VERDICT = ("status", "code", "message", "reduction_mg", "points",
           "baseline_mg", "project_mg", "leakage_mg", "counters")


def _rejected(code: str, message: str, status: str = "rejected") -> tuple:
    """The verdict of a record that is not credited: no amounts."""
    return (status, code, message, 0, 0, None, None, None, ())


class LocalTime:
    """UTC microseconds -> local civil time in one zone, cached per quarter hour.

    A quarter hour is cached only when the offset is the same at its first and last
    microsecond: some historical changes (Africa/Monrovia 1972-01-07T00:44:30Z, local
    mean times before 1901) fall inside a quarter hour, and there the offset is computed
    for each instant, so that it never depends on which record was seen first.
    """

    def __init__(self, zone_name: str):
        self.zone = zone(zone_name)
        self._offsets: dict[int, int] = {}

    def _exact(self, us: int) -> int:
        moment = records.us_to_datetime(us).astimezone(self.zone)
        return int(moment.utcoffset().total_seconds()) * 1_000_000

    def offset_us(self, us: int) -> int:
        bucket = us // 900_000_000
        offset = self._offsets.get(bucket)
        if offset is None:
            if len(self._offsets) > 200_000:
                self._offsets.clear()
            start = bucket * 900_000_000
            offset = self._exact(start)
            if self._exact(start + 899_999_999) != offset:
                return self._exact(us)  # a change within this quarter hour
            self._offsets[bucket] = offset
        return offset

    def day(self, us: int) -> int:
        offset = self._offsets.get(us // 900_000_000)  # the usual case, without a call
        if offset is None:
            offset = self.offset_us(us)
        return (us + offset) // 86_400_000_000

    def part(self, us: int, part: str) -> int:
        local = us + self.offset_us(us)
        if part == "hour":
            return (local // 3_600_000_000) % 24
        return day_part(local // 86_400_000_000, part)


def fsum_legs(values) -> float:
    """A sum of floats over legs: binary64 additions from 0.0, left to right, as the C
    kernel adds them (not math.fsum, nor a compensated sum)."""
    total = 0.0
    for value in values:
        total += value
    return total


def day_part(days: int, part: str) -> int:
    date = dt.date.fromordinal(days + records.EPOCH_DAY)
    if part == "weekday":
        return date.isoweekday()
    if part == "days_in_year":
        y = date.year
        return 366 if y % 4 == 0 and (y % 100 != 0 or y % 400 == 0) else 365
    return getattr(date, part)


# ---------------------------------------------------------------- the compiled program
class ScalarProgram:
    """A methodology compiled for one record at a time. Immutable and thread-safe."""

    def __init__(self, methodology: ir.Methodology, plan=None):
        """`plan`: another plan of the methodology than its own (engine/plan/history.py's
        `subject_plan`); by default `from_ir(methodology)`."""
        self.methodology = methodology
        self.plan = plan if plan is not None else from_ir(methodology)
        # the generated functions, `(values, trace, override_reduction_mg) -> verdict`
        self.run_plain = self._compile(explain=False)
        self.run_traced = self._compile(explain=True)
        # the values of the definitions history windows aggregate, per record (None: no
        # history aggregates a definition)
        self.subjects = None
        if plan is None:
            from .plan.history import subject_plan
            cut = subject_plan(methodology)
            if cut is not None:
                self.subjects = ScalarProgram(cut.methodology, cut)

    def _compile(self, explain: bool) -> Callable:
        gen = Source(self.plan, explain)
        source = gen.text
        params = self.methodology.parameters
        starts = [list(prm.starts) for prm in self.plan.parameters]
        tables = [[dict(entries) for entries in prm.tables] if prm.keyed else list(prm.scalars)
                  for prm in self.plan.parameters]
        # the generated code indexes a table by its period index: -1 (no period in force)
        # finds the empty table at the end, and `missing` reports it
        in_force = [periods + [{}] if param.keys else periods
                    for param, periods in zip(params, tables)]
        local_time = LocalTime(self.methodology.metadata.timezone)

        reasons = self.plan.reasons

        def int64(value, reason):
            """A whole number as the columnar paths hold it, or the plan's reason."""
            if -9223372036854775808 <= value <= 9223372036854775807:
                return value
            status, code, message = reasons[reason]
            raise Reject(code, message, status)

        def shift_days(day, op, seconds, reason):
            """plan.ast.DateShift: day ± floor(seconds / 86400), checked as C checks it."""
            q = (-seconds if op == "-" else seconds) / 86400.0
            if not -1e8 <= q <= 1e8:
                status, code, message = reasons[reason]
                raise Reject(code, message, status)
            out = day + math.floor(q)
            if not FIRST_DAY <= out <= LAST_DAY:
                status, code, message = reasons[reason]
                raise Reject(code, message, status)
            return out
        def shift_us(us, op, seconds, reason):
            """plan.ast.DateShift of an instant: us ± floor(seconds × 10⁶), checked as C
            checks it."""
            q = (-seconds if op == "-" else seconds) * 1000000.0
            if not -1e17 <= q <= 1e17:
                status, code, message = reasons[reason]
                raise Reject(code, message, status)
            out = us + math.floor(q)
            if not FIRST_US <= out < END_US:
                status, code, message = reasons[reason]
                raise Reject(code, message, status)
            return out

        def isum(values, reason):
            """A sum of whole numbers over legs, each partial sum within int64 (as C's)."""
            total = 0
            for value in values:
                total = int64(total + value, reason)
            return total

        def missing(i, p, key):
            if p < 0:
                raise Reject(NO_VALUE, f"`{params[i].name}` has no value in force at this date")
            policy = params[i].missing
            if policy.kind == "value":
                return policy.value
            if policy.kind == "reject":
                raise Reject(policy.code, policy.message)
            raise Reject(NO_VALUE, f"`{params[i].name}` has no value for {', '.join(map(str, key))}")

        def lookup_traced(trace, i, p, key):
            param = params[i]
            if p < 0:
                raise Reject(NO_VALUE, f"`{param.name}` has no value in force at this date")
            if param.keys:
                value = tables[i][p].get(key)
                found = value is not None
                if not found:
                    value = missing(i, p, key)
            else:
                value, found = tables[i][p], True
            period_ = param.periods[p]
            trace.append({"kind": "parameter", "name": param.name, "key": list(key),
                          "value": value, "unit": param.type.unit.text,
                          "factor": float(param.type.unit.factor),
                          "from": period_.start.isoformat(), "source": period_.source.text,
                          "tag": period_.source.tag, "listed": found})
            return value

        namespace = {
            "K": gen.consts, "R": [_rejected(code, message, status) for status, code, message in self.plan.reasons],
            "P": in_force, "S": starts,
            "Reject": Reject, "_rejected": _rejected,
            "LT": local_time, "LT_day": local_time.day,
            "_div": numeric.div, "_min": numeric.minimum, "_max": numeric.maximum,
            "_round": numeric.round_to, "_snap": numeric.snap, "_floor": numeric.floor,
            "_ceil": numeric.ceil, "_half_away": numeric.half_away, "_whole_mg": numeric.whole_mg,
            "_day_part": day_part, "_bisect": bisect.bisect_right, "_missing": missing,
            "_lookup_traced": lookup_traced, "_int64": int64, "_shift_days": shift_days,
            "_shift_us": shift_us,
            "_isum": isum, "_fsum": fsum_legs,
            "_legs_shown": legs_shown, "G": self.methodology.groups,
        }
        exec(compile(source, f"<tanpu:{self.methodology.metadata.id}>", "exec"), namespace)
        if not explain:
            self.source = source  # the generated code, for reading and debugging
        return namespace["run"]

    def run(self, values: dict, trace: Optional[list] = None,
            override_reduction_mg: Optional[int] = None) -> tuple:
        """The record's verdict (a tuple laid out as VERDICT). With a `trace` list, the
        explaining variant runs and appends each step to it."""
        if trace is None:
            return self.run_plain(values, None, override_reduction_mg)
        return self.run_traced(values, trace, override_reduction_mg)
