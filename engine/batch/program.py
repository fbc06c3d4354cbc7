"""The per-record formulas of a methodology, evaluated on columns.

The same operations as engine/scalar.py in the same order, on arrays:
- numbers: the IEEE operations engine/numeric.py mirrors (np.divide, np.minimum and
  np.maximum, floor/ceil/half away from zero after the 2**-40 snap, mg quantization);
- order: not applicable (period, activity), input bounds, each `require` in source order
  preceded by the definitions it needs, then the other definitions; the first failure
  of a row is its outcome (a reason index is written only where none is yet);
- laziness: `if`/`case` and `and`/`or` compute both sides (pure arithmetic cannot
  fail), but a lookup that can reject records its rejection only in the rows where the
  scalar path would evaluate it: the `active` mask threaded through the expression.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from dsl.ir import ast as ir
from dsl.types import Kind

from .. import records
from ..result import (ACTIVITY_NOT_COVERED, NO_VALUE, NOT_APPLICABLE, NOT_FINITE,
                      OUT_OF_PERIOD, OUT_OF_RANGE, REJECTED)
from ..scalar import _bound_text, _definition_needs, too_large
from .lookups import Table
from .timezones import DAY_US, day_part, zone_table
from .values import Cat, Reasons, as_cat, full, union

_MG = float(ir.MG_PER_KG)


# ---------------------------------------------------------------- the numeric contract
def snap(q: np.ndarray) -> np.ndarray:
    """engine.numeric.snap on arrays: q, or the multiple of 0.5 within a relative 2**-40.

    np.rint keeps the sign of a zero (as copysign(round(h), h) does), and for a
    non-finite q the comparison is false, so q passes unchanged.
    """
    q = np.asarray(q, dtype=np.float64)
    h = q * 2.0
    n = np.rint(h)
    gap = np.abs(h - n)
    np.abs(h, out=h)
    np.maximum(h, 1.0, out=h)
    h *= ir.SNAP_TOLERANCE
    n *= 0.5
    return np.where(gap <= h, n, q)


def _floor(q):
    return np.where(np.isfinite(q), np.copysign(np.floor(q), q), q)


def _ceil(q):
    return np.where(np.isfinite(q), np.copysign(np.ceil(q), q), q)


def half_away(q):
    """copysign(floor(|q| + 0.5), q); non-finite values pass (floor keeps them)."""
    r = np.abs(q)
    r += 0.5
    np.floor(r, out=r)
    return np.copysign(r, q, out=r)


_MODES = {"floor": _floor, "ceil": _ceil, "round": half_away}


def round_to(x, precision: float, mode: str):
    x = np.asarray(x, dtype=np.float64)
    q = x / precision if precision != 1.0 else x
    r = _MODES[mode](snap(q))
    return r * precision if precision != 1.0 else r


def to_mg(kilograms) -> np.ndarray:
    return half_away(snap(np.asarray(kilograms, dtype=np.float64) * _MG))


# ---------------------------------------------------------------- effects
def _may_reject(e, parameters: dict[str, ir.Parameter]) -> bool:
    """Whether evaluating e can reject a record (a keyed lookup without a value default)."""
    if isinstance(e, ir.Lookup):
        if e.keys and parameters[e.parameter].missing.kind != "value":
            return True
        return any(_may_reject(k, parameters) for k in e.keys)
    for value in getattr(e, "__dict__", {}).values():
        if isinstance(value, tuple):
            if any(hasattr(v, "type") and _may_reject(v, parameters) for v in value):
                return True
        elif hasattr(value, "type") and not isinstance(value, type) and _may_reject(value, parameters):
            return True
    return False


class Outcome:
    """Per-record results of one chunk: reason index, masses (mg), points."""

    def __init__(self, reason: np.ndarray, masses: dict[str, np.ndarray], points: np.ndarray):
        self.reason = reason
        self.masses = masses
        self.points = points


class Program:
    """A methodology compiled for columns. Holds no per-run state but `reasons`."""

    def __init__(self, methodology: ir.Methodology, reasons: Reasons):
        self.m = methodology
        self.reasons = reasons
        meta = methodology.metadata
        self.zone = zone_table(meta.timezone)
        self.parameters = {p.name: p for p in methodology.parameters}
        self.tables = {p.name: Table(p) for p in methodology.parameters}
        self.effectful: dict[int, bool] = {}
        # the statement list, in the scalar path's order
        steps: list[tuple[str, Any]] = []
        done: set[str] = set()
        needs = _definition_needs(methodology)
        for index, require in enumerate(methodology.requires):
            for name in needs.require_order(index):
                if name not in done:
                    steps.append(("define", methodology.definition(name)))
                    done.add(name)
            steps.append(("require", require))
        for d in methodology.definitions:
            if d.name not in done:
                steps.append(("define", d))
                done.add(d.name)
        self.steps = steps
        self.defined = done
        add = reasons.add
        self.before = self.after = None
        if meta.effective_from is not None:
            self.start_day = meta.effective_from.toordinal() - records.EPOCH_DAY
            self.before = add(NOT_APPLICABLE, OUT_OF_PERIOD,
                              f"the activity is before the methodology applies ({meta.effective_from})")
        if meta.effective_until is not None:
            self.until_day = meta.effective_until.toordinal() - records.EPOCH_DAY
            self.after = add(NOT_APPLICABLE, OUT_OF_PERIOD,
                             f"the activity is after the methodology ends ({meta.effective_until})")
        self.not_covered = add(NOT_APPLICABLE, ACTIVITY_NOT_COVERED,
                               "this methodology covers " + ", ".join(meta.covers)) if meta.covers else None
        self.bounds = []
        for spec in methodology.inputs:
            low, high = records.runtime_value(spec.low), records.runtime_value(spec.high)
            if low is None and high is None:
                continue
            self.bounds.append((spec.name, low, high, add(REJECTED, OUT_OF_RANGE, _bound_text(spec))))
        self.require_reason = {id(r): add(REJECTED, r.code, r.message) for r in methodology.requires}
        self.not_finite = {d.name: add(REJECTED, NOT_FINITE, f"`{d.name}` is not a finite number")
                           for d in methodology.definitions}
        self.too_large = {d.name: add(REJECTED, NOT_FINITE, too_large(d.name))
                          for d in methodology.definitions
                          if d.quantized or d.type.kind == Kind.INTEGER}
        self.in_force = {p.name: add(REJECTED, NO_VALUE, f"`{p.name}` has no value in force at this date")
                         for p in methodology.parameters}
        self.policy = {p.name: add(REJECTED, p.missing.code, p.missing.message)
                       for p in methodology.parameters if p.missing.kind == "reject"}

    def may_reject(self, e) -> bool:
        key = id(e)
        found = self.effectful.get(key)
        if found is None:
            found = self.effectful[key] = _may_reject(e, self.parameters)
        return found

    # ------------------------------------------------------------ running
    def run(self, columns: dict, n: int, reason: np.ndarray,
            override_mg: Optional[np.ndarray] = None) -> Outcome:
        """Evaluates every row whose reason is 0 (credited so far); writes reasons."""
        with np.errstate(all="ignore"):
            return _Run(self, columns, n, reason, override_mg).go()


class _Run:
    def __init__(self, program: Program, columns: dict, n: int, reason: np.ndarray,
                 override_mg: Optional[np.ndarray]):
        self.p = program
        self.columns = columns
        self.n = n
        self.reason = reason
        self.override = override_mg
        self.defs: dict[str, Any] = {}
        self.mg: dict[str, np.ndarray] = {}
        self._cats: dict[str, Cat] = {}
        self._periods: dict[str, np.ndarray] = {}
        self._local_us = None

    # ------------------------------------------------------------ helpers
    def reject(self, mask, index: int):
        sel = mask & (self.reason == 0)
        if sel.any():
            self.reason[sel] = index

    def local_us(self) -> np.ndarray:
        if self._local_us is None:
            self._local_us = self.p.zone.local_us(self.columns["time"])
        return self._local_us

    def day(self) -> np.ndarray:
        return self.local_us() // DAY_US

    def period(self, name: str):
        found = self._periods.get(name)
        if found is None:
            found = self._periods[name] = self.p.tables[name].period(self.day())
        return found

    # ------------------------------------------------------------ the statements
    def go(self) -> Outcome:
        p, m = self.p, self.p.m
        columns = self.columns
        if p.before is not None or p.after is not None:
            day = self.day()
            if p.before is not None:
                self.reject(day < p.start_day, p.before)
            if p.after is not None:
                self.reject(day > p.until_day, p.after)
        if p.not_covered is not None:
            activity = self.cat("activity")
            covered = np.zeros(len(activity.labels) + 1, dtype=bool)
            for i, label in enumerate(activity.labels):
                covered[i] = label == "" or label in m.metadata.covers
            self.reject(~covered[np.where(activity.codes >= 0, activity.codes, len(activity.labels))],
                        p.not_covered)
        for name, low, high, index in p.bounds:
            value = columns[name]
            bad = np.zeros(self.n, dtype=bool)
            if low is not None:
                bad |= value < low
            if high is not None:
                bad |= value > high
            self.reject(bad, index)
        for kind, item in p.steps:
            if kind == "define":
                self.define(item)
            else:
                cond = self.ev(item.cond, None)
                self.reject(~full(cond, self.n).astype(bool), p.require_reason[id(item)])
        masses = {name: self.mg[name] for name in ir.MASS_OUTPUTS if name in self.mg}
        points = full(self.defs["points"], self.n)
        if points.dtype != np.int64:
            points = np.where(np.isfinite(points), points, 0).astype(np.int64)
        return Outcome(self.reason, masses, points)

    def define(self, d: ir.Definition):
        n = self.n
        if d.name == "reduction" and self.override is not None:
            mg = np.asarray(self.override, dtype=np.int64)
            self.mg["reduction"] = mg
            self.defs["reduction"] = mg / 1000000.0
            return
        value = self.ev(d.expr, None)
        kind = d.type.kind
        if kind in (Kind.QUANTITY, Kind.INTEGER):
            array = full(value, n)
            if array.dtype.kind == "f":
                finite = np.isfinite(array)
                if not finite.all():
                    self.reject(~finite, self.p.not_finite[d.name])
            else:
                finite = None
            if d.quantized:
                mg = to_mg(array)
                if finite is not None:
                    mg = np.where(finite, mg, 0.0)
                self._fits(mg, d.name)
                mg = mg.astype(np.int64)
                self.mg[d.name] = mg
                value = mg / 1000000.0
            elif kind == Kind.INTEGER and array.dtype.kind == "f":
                whole = np.where(finite, array, 0.0) if finite is not None else array
                self._fits(whole, d.name)
                value = whole.astype(np.int64)
            else:
                value = array
        self.defs[d.name] = value

    def _fits(self, whole: np.ndarray, name: str) -> None:
        """Rejects the rows whose whole number is beyond int64 (scalar.too_large)."""
        beyond = ~((whole >= -2.0 ** 63) & (whole < 2.0 ** 63))
        if beyond.any():
            self.reject(beyond, self.p.too_large[name])

    # ------------------------------------------------------------ expressions
    def cat(self, name: str) -> Cat:
        found = self._cats.get(name)
        if found is None:
            column = self.columns[name]
            found = column if isinstance(column, Cat) else Cat.of_series(column)
            self._cats[name] = found
        return found

    def ev(self, e, active):
        t = type(e)
        if t is ir.Const:
            value = records.runtime_value(e.value)
            return value
        if t is ir.Input:
            kind = e.type.kind
            if kind in (Kind.CHOICE, Kind.TEXT):
                return self.cat(e.name)
            return self.columns[e.name]
        if t is ir.Ref:
            return self.defs[e.name]
        if t is ir.Arith:
            a = self.ev(e.left, active)
            b = self.ev(e.right, active)
            op = e.op
            if op == "+":
                return np.add(a, b) if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) else a + b
            if op == "-":
                return np.subtract(a, b) if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) else a - b
            if op == "*":
                return np.multiply(a, b) if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) else a * b
            return np.divide(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
        if t is ir.Negate:
            return np.negative(self.ev(e.operand, active))
        if t is ir.Compare:
            return self.compare(e.op, self.ev(e.left, active), self.ev(e.right, active))
        if t is ir.Logic:
            left = self.ev(e.left, active)
            right_active = active
            if self.p.may_reject(e.right):
                gate = full(left, self.n).astype(bool)
                gate = gate if e.op == "and" else ~gate
                right_active = gate if active is None else active & gate
            right = self.ev(e.right, right_active)
            return np.logical_and(left, right) if e.op == "and" else np.logical_or(left, right)
        if t is ir.Not:
            return np.logical_not(self.ev(e.operand, active))
        if t is ir.InSet:
            operand = self.ev(e.operand, active)
            result = None
            for v in e.values:
                hit = self.compare("==", operand, self.ev(v, active))
                result = hit if result is None else np.logical_or(result, hit)
            return result
        if t is ir.If:
            cond = self.ev(e.cond, active)
            then_active = other_active = active
            if self.p.may_reject(e.then) or self.p.may_reject(e.otherwise):
                gate = full(cond, self.n).astype(bool)
                then_active = gate if active is None else active & gate
                other_active = ~gate if active is None else active & ~gate
            a = self.ev(e.then, then_active)
            b = self.ev(e.otherwise, other_active)
            return self.choose(cond, a, b)
        if t is ir.MinMax:
            fn = np.minimum if e.op == "min" else np.maximum
            out = self.ev(e.args[0], active)
            for arg in e.args[1:]:
                out = fn(out, self.ev(arg, active))
            return out
        if t is ir.Abs:
            return np.abs(self.ev(e.operand, active))
        if t is ir.Round:
            return round_to(self.ev(e.operand, active), e.precision, e.mode)
        if t is ir.Elapsed:
            end = self.ev(e.end, active)
            start = self.ev(e.start, active)
            if e.end.type.kind == Kind.DATE:
                return np.subtract(end, start) * 86400.0
            return np.subtract(end, start) / 1000000.0
        if t is ir.DatePart:
            value = self.ev(e.operand, active)
            if e.operand.type.kind == Kind.DATE:
                return day_part(value, e.part)
            local = np.asarray(value, dtype=np.int64) + self.p.zone.utc_offsets(np.atleast_1d(value))
            if e.part == "hour":
                return (local // 3_600_000_000) % 24
            return day_part(local // DAY_US, e.part)
        if t is ir.Lookup:
            return self.lookup(e, active)
        raise TypeError(f"unknown IR node {t.__name__}")  # pragma: no cover

    def compare(self, op: str, a, b):
        if isinstance(a, (Cat, str)) or isinstance(b, (Cat, str)):
            if isinstance(a, str) and isinstance(b, str):
                equal = a == b
            elif isinstance(b, str):
                equal = a.codes == a.index(b)
            elif isinstance(a, str):
                equal = b.codes == b.index(a)
            else:
                _, ca, cb = union(a, b)
                equal = ca == cb
            return equal if op == "==" else np.logical_not(equal)
        return {"<": np.less, "<=": np.less_equal, "==": np.equal, "!=": np.not_equal,
                ">=": np.greater_equal, ">": np.greater}[op](a, b)

    def choose(self, cond, a, b):
        if isinstance(a, (Cat, str)) or isinstance(b, (Cat, str)):
            if isinstance(a, str) and isinstance(b, str) and a == b:
                return a
            ca, cb = as_cat(a, self.n), as_cat(b, self.n)
            labels, codes_a, codes_b = union(ca, cb)
            return Cat(np.where(cond, codes_a, codes_b).astype(np.int32), labels)
        return np.where(cond, a, b)

    def lookup(self, e: ir.Lookup, active):
        n = self.n
        keys = [self.ev(k, active) for k in e.keys]
        table = self.p.tables[e.parameter]
        period = self.period(e.parameter)
        values, missing = table.lookup(period, keys, n)
        if not e.keys or not missing.any():
            return values
        parameter = table.parameter
        alive = (self.reason == 0) if active is None else active & (self.reason == 0)
        no_period = np.broadcast_to(np.asarray(period) < 0, (n,))
        self.reject(no_period & alive, self.p.in_force[e.parameter])
        keyed_missing = missing & ~no_period
        policy = parameter.missing
        if policy.kind == "value":
            return np.where(keyed_missing, policy.value, values)
        if policy.kind == "reject":
            self.reject(keyed_missing & alive, self.p.policy[e.parameter])
            return values
        # "impossible": the checker proved it cannot happen; if it does, say which key
        rows = np.flatnonzero(keyed_missing & alive & (self.reason == 0))
        for row in rows.tolist():
            parts = []
            for k in keys:
                if isinstance(k, Cat):
                    parts.append(k.labels[k.codes[row]] if k.codes[row] >= 0 else "")
                elif isinstance(k, np.ndarray):
                    parts.append(k[row].item())
                else:
                    parts.append(k)
            message = f"`{parameter.name}` has no value for {', '.join(map(str, parts))}"
            self.reason[row] = self.p.reasons.add(REJECTED, NO_VALUE, message)
        return values
