"""The scalar evaluator: the IR compiled to one Python function per methodology.

Generating Python source (instead of walking the IR for every record) makes a record
cost a function call, not a tree walk. The explaining variant is generated from the
same code with trace statements added, so the two can never compute differently.

Evaluation order (the contract the checker's narrowing relies on): a record outside
the methodology's period or activity is not applicable; then input bounds; then each
`require` in source order, each preceded by the definitions it needs that are not yet
computed; then the remaining definitions. The first failure rejects the record.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from typing import Any, Callable, Optional

from dsl.ir import ast as ir
from dsl.types import Kind

from . import numeric, records
from .result import (NO_VALUE, NOT_FINITE, OUT_OF_PERIOD, OUT_OF_RANGE,
                     ACTIVITY_NOT_COVERED)


class Reject(Exception):
    """A record is rejected (raised inside generated code, caught by the caller)."""

    def __init__(self, code: str, message: str, status: str = "rejected"):
        self.code = code
        self.message = message
        self.status = status


# What `ScalarProgram.run` gives for a record: a plain tuple with these fields (a tuple
# because building one costs next to nothing, and this happens once per record).
VERDICT = ("status", "code", "message", "reduction_mg", "points",
           "baseline_mg", "project_mg", "leakage_mg")


def too_large(name: str) -> str:
    """The message of a value beyond 64-bit whole numbers (mg for a mass): every path
    rejects it, since the columnar ones hold such numbers in int64."""
    return f"`{name}` is too large to count (beyond ±9.2e18 whole units)"


def _rejected(code: str, message: str, status: str = "rejected") -> tuple:
    """The verdict of a record that is not credited: no amounts."""
    return (status, code, message, 0, 0, None, None, None)


class LocalTime:
    """UTC microseconds -> local civil time in one zone, cached per quarter hour.

    A quarter hour is cached only when the offset is the same at its first and last
    microsecond: some historical changes (Africa/Monrovia 1972-01-07T00:44:30Z, local
    mean times before 1901) fall inside a quarter hour, and there the offset is computed
    for each instant, so that it never depends on which record was seen first.
    """

    def __init__(self, zone_name: str):
        self.zone = records.zone(zone_name)
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


def day_part(days: int, part: str) -> int:
    date = dt.date.fromordinal(days + records.EPOCH_DAY)
    if part == "weekday":
        return date.isoweekday()
    return getattr(date, part)


# ---------------------------------------------------------------- code generation
_ROUNDING = {"floor": "_floor", "ceil": "_ceil", "round": "_half_away"}


class _Gen:
    """Writes the Python source of `run(v, T=None, override=None)` for one methodology.

    The function returns a verdict tuple (see VERDICT): a constant one (R[n]) for a record
    that is not applicable or rejected by a bound, a `require` or a value that is not
    finite. A lookup that fails raises Reject (it happens inside an expression), which
    the function itself turns into a verdict.
    """

    def __init__(self, methodology: ir.Methodology, explain: bool):
        self.m = methodology
        self.explain = explain
        self.consts: list[Any] = []
        self.rejects: list[tuple] = []
        self.lines: list[str] = []
        self.param_index = {p.name: i for i, p in enumerate(methodology.parameters)}
        self.lookups = 0  # lookups written so far: each gets its own temporaries

    def const(self, value) -> str:
        self.consts.append(value)
        return f"K[{len(self.consts) - 1}]"

    def reject(self, code: str, message: str, status: str = "rejected") -> str:
        """The constant verdict for a failed check, as an expression."""
        verdict = _rejected(code, message, status)
        if verdict not in self.rejects:
            self.rejects.append(verdict)
        return f"R[{self.rejects.index(verdict)}]"

    def emit(self, line: str, depth: int = 1):
        self.lines.append("    " * depth + line)

    # ---------------------------------------------------------- expressions
    def expr(self, e: ir.Expr) -> str:
        if isinstance(e, ir.Const):
            value = records.runtime_value(e.value)
            if isinstance(value, float):
                return repr(value) if math.isfinite(value) else self.const(value)
            if isinstance(value, (bool, int)) or type(value) is str:
                return repr(value)
            return self.const(value)
        if isinstance(e, ir.Input):
            return f"v[{e.name!r}]"
        if isinstance(e, ir.Ref):
            return f"d_{_ident(e.name)}"
        if isinstance(e, ir.Negate):
            return f"(-{self.expr(e.operand)})"
        if isinstance(e, ir.Arith):
            left, right = self.expr(e.left), self.expr(e.right)
            if e.op == "/":
                divisor = _plain_divisor(e.right)
                if divisor is not None:
                    return f"({left} / {divisor!r})"
                return f"_div({left}, {right})"
            return f"({left} {e.op} {right})"
        if isinstance(e, ir.Elapsed):
            end, start = self.expr(e.end), self.expr(e.start)
            if e.end.type.kind == Kind.DATE:
                return f"(({end} - {start}) * 86400.0)"
            return f"(({end} - {start}) / 1000000.0)"
        if isinstance(e, ir.Compare):
            return f"({self.expr(e.left)} {e.op} {self.expr(e.right)})"
        if isinstance(e, ir.Logic):
            return f"({self.expr(e.left)} {e.op} {self.expr(e.right)})"
        if isinstance(e, ir.Not):
            return f"(not {self.expr(e.operand)})"
        if isinstance(e, ir.InSet):
            values = ", ".join(self.expr(v) for v in e.values)
            return f"({self.expr(e.operand)} in ({values},))"
        if isinstance(e, ir.If):
            return f"({self.expr(e.then)} if {self.expr(e.cond)} else {self.expr(e.otherwise)})"
        if isinstance(e, ir.MinMax):
            fn = "_min" if e.op == "min" else "_max"
            out = self.expr(e.args[0])
            for arg in e.args[1:]:
                out = f"{fn}({out}, {self.expr(arg)})"
            return out
        if isinstance(e, ir.Abs):
            return f"abs({self.expr(e.operand)})"
        if isinstance(e, ir.Round):
            return self.rounding(e)
        if isinstance(e, ir.DatePart):
            if e.operand.type.kind == Kind.DATE:
                return f"_day_part({self.expr(e.operand)}, {e.part!r})"
            return f"LT.part({self.expr(e.operand)}, {e.part!r})"
        if isinstance(e, ir.Lookup):
            return self.lookup(e)
        raise TypeError(f"unknown IR node {type(e).__name__}")  # pragma: no cover

    def rounding(self, e: ir.Round) -> str:
        """numeric.round_to written out: the same operations without its dispatch."""
        p = e.precision
        if not (isinstance(p, float) and math.isfinite(p) and p != 0.0):
            return f"_round({self.expr(e.operand)}, {p!r}, {e.mode!r})"
        x = self.expr(e.operand)
        if not self.floating(e.operand):
            x = f"float({x})"
        fn = _ROUNDING[e.mode]
        if p == 1.0:
            return f"{fn}(_snap({x}))"
        return f"({fn}(_snap({x} / {p!r})) * {p!r})"

    def floating(self, e: ir.Expr) -> bool:
        """Whether an expression's value is certainly a Python float (so float() of it is
        the value itself): divisions, roundings, durations, quantized outputs and float
        constants, and what + - * min max abs if/case make of those alone."""
        if isinstance(e, ir.Const):
            return type(records.runtime_value(e.value)) is float
        if isinstance(e, (ir.Round, ir.Elapsed)):
            return True
        if isinstance(e, ir.Ref):
            return self.m.definition(e.name).quantized  # whole mg / 1000000.0
        if isinstance(e, ir.Arith):
            return e.op == "/" or (self.floating(e.left) and self.floating(e.right))
        if isinstance(e, (ir.Negate, ir.Abs)):
            return self.floating(e.operand)
        if isinstance(e, ir.MinMax):
            return all(self.floating(arg) for arg in e.args)
        if isinstance(e, ir.If):
            return self.floating(e.then) and self.floating(e.otherwise)
        return False

    def lookup(self, e: ir.Lookup) -> str:
        """A parameter's value; `p{i}` (the period in force) is computed once per record.

        A table without the key calls `_missing`, which applies the parameter's policy
        (or says that no period is in force: `tab{i}` is then an empty table)."""
        i = self.param_index[e.parameter]
        keys = ", ".join(self.expr(k) for k in e.keys)
        if self.explain:
            return f"_lookup_traced(T, {i}, p{i}, ({keys}{',' if keys else ''}))"
        if not e.keys:
            periods = self.m.parameters[i].periods
            value = periods[0].scalar
            if len(periods) == 1 and isinstance(value, float) and math.isfinite(value):
                # one period: its value whatever the index (-1, none in force, is the last)
                return repr(value)
            return f"P[{i}][p{i}]"
        n = self.lookups
        self.lookups += 1
        return (f"(_l{n} if (_l{n} := tab{i}.get(_k{n} := ({keys},))) is not None "
                f"else _missing({i}, p{i}, _k{n}))")

    # ---------------------------------------------------------- statements
    def definition(self, d: ir.Definition, depth: int = 1):
        name = f"d_{_ident(d.name)}"
        if d.name == "reduction":
            self.emit(f"if override is None:", depth)
            self.emit(f"{name} = {self.expr(d.expr)}", depth + 1)
            self._finish_definition(d, name, depth + 1)
            self.emit("else:", depth)
            self.emit(f"m_reduction = override", depth + 1)
            self.emit(f"{name} = override / 1000000.0", depth + 1)
            if self.explain:
                self.emit(f"T.append({{'kind': 'output', 'name': 'reduction', 'value': {name}, 'mg': override, 'line': {d.line}, 'note': 'capped'}})", depth + 1)
            return
        self.emit(f"{name} = {self.expr(d.expr)}", depth)
        self._finish_definition(d, name, depth)

    def _finish_definition(self, d: ir.Definition, name: str, depth: int):
        if d.type.kind in (Kind.QUANTITY, Kind.INTEGER):
            self.emit(f"if {name} != {name} or {name} - {name} != 0:", depth)
            self.emit(f"return {self.reject(NOT_FINITE, '`' + d.name + '` is not a finite number')}", depth + 1)
        if d.quantized:
            # numeric.to_mg written out (the value is finite here)
            mg = f"m_{_ident(d.name)}"
            self.emit(f"{mg} = _whole_mg({name})", depth)
            self.emit(f"if not -9223372036854775808 <= {mg} <= 9223372036854775807:", depth)
            self.emit(f"return {self.reject(NOT_FINITE, too_large(d.name))}", depth + 1)
            self.emit(f"{name} = {mg} / 1000000.0", depth)
        elif d.type.kind == Kind.INTEGER:
            # a whole number from a float must fit in 64 bits, as the columnar paths hold it
            self.emit(f"if {name}.__class__ is float and not -9.223372036854776e18 <= {name} < 9.223372036854776e18:", depth)
            self.emit(f"return {self.reject(NOT_FINITE, too_large(d.name))}", depth + 1)
            self.emit(f"{name} = int({name})", depth)
        if self.explain:
            mg = f"m_{_ident(d.name)}" if d.quantized else "None"
            self.emit(f"T.append({{'kind': {d.kind!r}, 'name': {d.name!r}, 'value': {name}, 'mg': {mg}, "
                      f"'unit': {d.type.unit.text if d.type.kind == Kind.QUANTITY else ''!r}, "
                      f"'factor': {float(d.type.unit.factor) if d.type.kind == Kind.QUANTITY else 1.0!r}, "
                      f"'line': {d.line}}})", depth)

    def periods(self):
        """The period in force of each parameter the formulas look up, at the record's
        local day: its index (-1 before the first), and for a table the table itself."""
        used = _parameters_used(self.m)
        for i, param in enumerate(self.m.parameters):
            if param.name not in used:
                continue
            starts = [p.start.toordinal() - records.EPOCH_DAY for p in param.periods]
            if len(starts) == 1:
                self.emit(f"p{i} = 0 if day >= {starts[0]} else -1")
            else:
                self.emit(f"p{i} = _bisect(S[{i}], day) - 1")
            if param.keys and not self.explain:
                self.emit(f"tab{i} = P[{i}][p{i}]")

    def build(self) -> str:
        m = self.m
        meta = m.metadata
        self.emit("def run(v, T=None, override=None):", 0)
        self.emit("t = v['time']")
        self.emit("day = LT_day(t)")
        if meta.effective_from is not None:
            start = meta.effective_from.toordinal() - records.EPOCH_DAY
            self.emit(f"if day < {start}:")
            self.emit(f"return {self.reject(OUT_OF_PERIOD, f'the activity is before the methodology applies ({meta.effective_from})', 'not_applicable')}", 2)
        if meta.effective_until is not None:
            until = meta.effective_until.toordinal() - records.EPOCH_DAY
            self.emit(f"if day > {until}:")
            self.emit(f"return {self.reject(OUT_OF_PERIOD, f'the activity is after the methodology ends ({meta.effective_until})', 'not_applicable')}", 2)
        if meta.covers:
            self.emit(f"if v['activity'] and v['activity'] not in {tuple(meta.covers)!r}:")
            self.emit(f"return {self.reject(ACTIVITY_NOT_COVERED, 'this methodology covers ' + ', '.join(meta.covers), 'not_applicable')}", 2)
        self.periods()
        for spec in m.inputs:
            self._bounds(spec)
        if self.explain:
            for spec in m.inputs:
                self.emit(f"T.append({{'kind': 'input', 'name': {spec.name!r}, 'value': v[{spec.name!r}], 'type': {spec.type.kind.value!r}, "
                          f"'unit': {spec.type.unit.text if spec.type.kind == Kind.QUANTITY else ''!r}, "
                          f"'factor': {float(spec.type.unit.factor) if spec.type.kind == Kind.QUANTITY else 1.0!r}}})")
        done: set[str] = set()
        needs = _definition_needs(m)
        for index, require in enumerate(m.requires):
            for name in needs.require_order(index):
                if name not in done:
                    self.definition(m.definition(name))
                    done.add(name)
            self.emit(f"if not {self.expr(require.cond)}:")
            if self.explain:
                self.emit(f"T.append({{'kind': 'require', 'code': {require.code!r}, 'passed': False, 'line': {require.line}}})", 2)
            self.emit(f"return {self.reject(require.code, require.message)}", 2)
            if self.explain:
                self.emit(f"T.append({{'kind': 'require', 'code': {require.code!r}, 'passed': True, 'line': {require.line}}})")
        for d in m.definitions:
            if d.name not in done:
                self.definition(d)
                done.add(d.name)
        masses = {n: f"m_{n}" if n in done else ("0" if n == "reduction" else "None")
                  for n in ir.MASS_OUTPUTS}
        self.emit(f"return ('credited', '', '', {masses['reduction']}, d_points, "
                  f"{masses['baseline']}, {masses['project']}, {masses['leakage']})")
        header, body = self.lines[0], self.lines[1:]
        return "\n".join([header, "    try:"] + ["    " + line for line in body] + [
            "    except Reject as reject:  # a lookup that has no value",
            "        return _rejected(reject.code, reject.message, reject.status)"])

    def _bounds(self, spec: ir.InputSpec):
        low, high = records.runtime_value(spec.low), records.runtime_value(spec.high)
        if low is None and high is None:
            return
        name = spec.name
        shown = _bound_text(spec)
        checks = []
        if low is not None:
            checks.append(f"v[{name!r}] < {self.expr_value(low)}")
        if high is not None:
            checks.append(f"v[{name!r}] > {self.expr_value(high)}")
        self.emit(f"if {' or '.join(checks)}:")
        self.emit(f"return {self.reject(OUT_OF_RANGE, shown)}", 2)

    def expr_value(self, value) -> str:
        return repr(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else self.const(value)


def _plain_divisor(e: ir.Expr) -> Optional[float]:
    """A constant divisor that is a finite non-zero number, as numeric.div would convert
    it: `a / b` then gives div's bits (div only differs for a zero divisor)."""
    if not isinstance(e, ir.Const):
        return None
    value = records.runtime_value(e.value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    divisor = float(value)
    return divisor if math.isfinite(divisor) and divisor != 0.0 else None


def _bound_text(spec: ir.InputSpec) -> str:
    def show(value):
        if spec.type.kind == Kind.QUANTITY:
            return f"{spec.type.unit.from_si(value):g} {spec.type.unit.text}".replace(" 1", "")
        return str(value)
    if spec.low is not None and spec.high is not None:
        return f"`{spec.name}` must be between {show(spec.low)} and {show(spec.high)}"
    if spec.low is not None:
        return f"`{spec.name}` must be at least {show(spec.low)}"
    return f"`{spec.name}` must be at most {show(spec.high)}"


def _ident(name: str) -> str:
    """A Python identifier for any methodology name (Chinese names included)."""
    if name.isidentifier() and name.isascii():
        return name
    return "u" + "".join(c if c.isalnum() and c.isascii() else f"_{ord(c):x}" for c in name)


class _Needs:
    def __init__(self, methodology: ir.Methodology):
        self.m = methodology
        self.deps = {d.name: _refs(d.expr) for d in methodology.definitions}
        self.order = [d.name for d in methodology.definitions]

    def closure(self, names: set[str]) -> set[str]:
        seen, stack = set(), list(names)
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(self.deps.get(n, ()))
        return seen

    def require_order(self, index: int) -> list[str]:
        wanted = self.closure(_refs(self.m.requires[index].cond))
        return [n for n in self.order if n in wanted]


def _definition_needs(methodology):
    return _Needs(methodology)


def _nodes(e):
    """Every node of an expression tree."""
    stack = [e]
    while stack:
        node = stack.pop()
        yield node
        for value in getattr(node, "__dict__", {}).values():
            if isinstance(value, tuple):
                stack.extend(v for v in value if hasattr(v, "type"))
            elif hasattr(value, "type") and not isinstance(value, type):
                stack.append(value)


def _refs(e) -> set[str]:
    return {node.name for node in _nodes(e) if isinstance(node, ir.Ref)}


def _parameters_used(methodology: ir.Methodology) -> set[str]:
    exprs = [d.expr for d in methodology.definitions] + [r.cond for r in methodology.requires]
    return {node.parameter for e in exprs for node in _nodes(e) if isinstance(node, ir.Lookup)}


# ---------------------------------------------------------------- the compiled program
class ScalarProgram:
    """A methodology compiled for one record at a time. Immutable and thread-safe."""

    def __init__(self, methodology: ir.Methodology):
        self.methodology = methodology
        # the generated functions, `(values, trace, override_reduction_mg) -> verdict`
        self.run_plain = self._compile(explain=False)
        self.run_traced = self._compile(explain=True)

    def _compile(self, explain: bool) -> Callable:
        gen = _Gen(self.methodology, explain)
        source = gen.build()
        params = self.methodology.parameters
        starts = [[p.start.toordinal() - records.EPOCH_DAY for p in param.periods] for param in params]
        tables = []
        for param in params:
            if param.keys:
                tables.append([{tuple(records.runtime_value(k) for k in key): value
                                for key, value in period.entries} for period in param.periods])
            else:
                tables.append([period.scalar for period in param.periods])
        # the generated code indexes a table by its period index: -1 (no period in force)
        # finds the empty table at the end, and `missing` reports it
        in_force = [periods + [{}] if param.keys else periods
                    for param, periods in zip(params, tables)]
        local_time = LocalTime(self.methodology.metadata.timezone)

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
            "K": gen.consts, "R": gen.rejects, "P": in_force, "S": starts,
            "Reject": Reject, "_rejected": _rejected,
            "LT": local_time, "LT_day": local_time.day,
            "_div": numeric.div, "_min": numeric.minimum, "_max": numeric.maximum,
            "_round": numeric.round_to, "_snap": numeric.snap, "_floor": numeric.floor,
            "_ceil": numeric.ceil, "_half_away": numeric.half_away, "_whole_mg": numeric.whole_mg,
            "_day_part": day_part, "_bisect": bisect.bisect_right, "_missing": missing,
            "_lookup_traced": lookup_traced,
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
