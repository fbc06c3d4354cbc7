"""The plan (engine/plan/) as the Python source of one function per methodology.

Generating source instead of walking a tree for every record makes a record cost one
function call. The explaining variant is generated from the same code with trace
statements added, so the two can never compute differently. engine/scalar.py compiles
the source and supplies the names it uses (the numeric contract of engine/numeric.py,
the local time, the parameter tables).

The generated `run(v, T=None, override=None)` returns a verdict tuple (scalar.VERDICT):
`R[k]` for the plan's reason k; a lookup that fails raises `Reject` (it happens inside an
expression), which the function turns into a verdict.
"""

from __future__ import annotations

import math
from typing import Any

from dsl.types import Kind

from .plan import ast as p
from .plan.history import status_name
from .plan.ast import ident

_ROUNDING = {"floor": "_floor", "ceil": "_ceil", "round": "_half_away"}


class Source:
    """The source of `run` and the constants it indexes (`K`)."""

    def __init__(self, plan: p.Plan, explain: bool):
        self.plan = plan
        self.explain = explain
        self.consts: list[Any] = []
        self.lines: list[str] = []
        self.quantized = {s.name for s in plan.steps if isinstance(s, p.Define) and s.quantize}
        self.lookups = 0  # lookups written so far: each gets its own temporaries
        self.text = self._build()

    def const(self, value) -> str:
        self.consts.append(value)
        return f"K[{len(self.consts) - 1}]"

    def emit(self, line: str, depth: int = 1):
        self.lines.append("    " * depth + line)

    # ---------------------------------------------------------- expressions
    def expr(self, e: p.Expr) -> str:
        t = type(e)
        if t is p.Const:
            value = e.value
            if isinstance(value, float) and not math.isfinite(value):
                return self.const(value)
            return repr(value)
        if t is p.Input:
            return f"v[{e.name!r}]"
        if t is p.Ref:
            return f"d_{ident(e.name)}"
        if t is p.Day:
            return "day"
        if t is p.Unary:
            x = self.expr(e.operand)
            out = {"neg": f"(-{x})", "abs": f"abs({x})", "not": f"(not {x})"}[e.op]
            return f"_int64({out}, {e.overflow})" if e.overflow is not None else out
        if t is p.Arith:
            left, right = self.expr(e.left), self.expr(e.right)
            if e.op == "/":
                divisor = _plain_divisor(e.right)
                if divisor is not None:
                    return f"({left} / {divisor!r})"
                return f"_div({left}, {right})"
            if e.overflow is not None:  # a whole number: it must fit in int64
                return f"_int64(({left} {e.op} {right}), {e.overflow})"
            return f"({left} {e.op} {right})"
        if t in (p.Compare, p.Logic):
            return f"({self.expr(e.left)} {e.op} {self.expr(e.right)})"
        if t is p.InSet:
            values = ", ".join(self.expr(v) for v in e.values)
            return f"({self.expr(e.operand)} in ({values},))"
        if t is p.If:
            return f"({self.expr(e.then)} if {self.expr(e.cond)} else {self.expr(e.otherwise)})"
        if t is p.MinMax:
            fn = "_min" if e.op == "min" else "_max"
            out = self.expr(e.args[0])
            for arg in e.args[1:]:
                out = f"{fn}({out}, {self.expr(arg)})"
            return out
        if t is p.Round:
            return self.rounding(e)
        if t is p.Elapsed:
            end, start = self.expr(e.end), self.expr(e.start)
            if e.end.rep == p.DAY:
                return f"(({end} - {start}) * 86400.0)"
            return f"(({end} - {start}) / 1000000.0)"
        if t is p.DateShift and e.rep == p.DT:
            return f"_shift_us({self.expr(e.date)}, {e.op!r}, {self.expr(e.duration)}, {e.overflow})"
        if t is p.DateShift:
            return f"_shift_days({self.expr(e.date)}, {e.op!r}, {self.expr(e.duration)}, {e.overflow})"
        if t is p.DatePart:
            if e.part == "date":
                return f"LT_day({self.expr(e.operand)})"
            if e.operand.rep == p.DAY:
                return f"_day_part({self.expr(e.operand)}, {e.part!r})"
            return f"LT.part({self.expr(e.operand)}, {e.part!r})"
        if t is p.Lookup:
            return self.lookup(e)
        if t is p.LegField:
            return f"L[{e.name!r}]"
        if t is p.LegAggregate:
            legs = f"v[{e.group!r}]"
            where = f" if {self.expr(e.where)}" if e.where is not None else ""
            if e.op == "count":
                return f"sum(1 for L in {legs}{where})"
            body = self.expr(e.body)
            if e.rep == p.I:
                return f"_isum(({body} for L in {legs}{where}), {e.overflow})"
            return f"_fsum({body} for L in {legs}{where})"
        raise TypeError(f"unknown plan node {t.__name__}")  # pragma: no cover

    def rounding(self, e: p.Round) -> str:
        """numeric.round_to written out: the same operations without its dispatch."""
        prec = e.precision
        if not (math.isfinite(prec) and prec != 0.0):
            return f"_round({self.expr(e.operand)}, {prec!r}, {e.mode!r})"
        x = self.expr(e.operand)
        if not self.floating(e.operand):
            x = f"float({x})"
        fn = _ROUNDING[e.mode]
        if prec == 1.0:
            return f"{fn}(_snap({x}))"
        return f"({fn}(_snap({x} / {prec!r})) * {prec!r})"

    def floating(self, e: p.Expr) -> bool:
        """Whether a value is certainly a Python float (so float() of it is the value
        itself): an input may hold an int where its rep is f, a float constant, a
        division, rounding or duration may not, nor what + - * min max abs if make of
        those alone."""
        t = type(e)
        if t is p.Const:
            return type(e.value) is float
        if t in (p.Round, p.Elapsed):
            return True
        if t is p.Ref:
            return e.name in self.quantized  # whole mg / 1000000.0
        if t is p.Arith:
            return e.op == "/" or (self.floating(e.left) and self.floating(e.right))
        if t is p.Unary:
            return e.op != "not" and self.floating(e.operand)
        if t is p.MinMax:
            return all(self.floating(arg) for arg in e.args)
        if t is p.LegAggregate:
            return e.rep == p.F
        if t is p.If:
            return self.floating(e.then) and self.floating(e.otherwise)
        return False

    def lookup(self, e: p.Lookup) -> str:
        """A parameter's value; `p{i}` (the period in force) is computed once per record.

        A table without the key calls `_missing`, which applies the lookup's policy (or
        says that no period is in force: `tab{i}` is then an empty table)."""
        i = e.parameter
        keys = ", ".join(self.expr(k) for k in e.keys)
        if self.explain:
            return f"_lookup_traced(T, {i}, p{i}, ({keys}{',' if keys else ''}))"
        if not e.keys:
            values = self.plan.parameters[i].scalars
            if len(values) == 1 and isinstance(values[0], float) and math.isfinite(values[0]):
                return repr(values[0])  # one period: its value whatever the index
            return f"P[{i}][p{i}]"
        n = self.lookups
        self.lookups += 1
        return (f"(_l{n} if (_l{n} := tab{i}.get(_k{n} := ({keys},))) is not None "
                f"else _missing({i}, p{i}, _k{n}))")

    # ---------------------------------------------------------- steps
    def define(self, d: p.Define, depth: int = 1):
        name = f"d_{ident(d.name)}"
        if d.overridable:
            self.emit("if override is None:", depth)
            self.emit(f"{name} = {self.expr(d.expr)}", depth + 1)
            self._finish(d, name, depth + 1)
            self.emit("else:", depth)
            self.emit(f"m_{ident(d.name)} = override", depth + 1)
            self.emit(f"{name} = override / 1000000.0", depth + 1)
            if self.explain:
                self.emit(f"T.append({{'kind': 'output', 'name': {d.name!r}, 'value': {name}, 'mg': override, "
                          f"'line': {d.line}, 'note': 'capped'}})", depth + 1)
            return
        self.emit(f"{name} = {self.expr(d.expr)}", depth)
        self._finish(d, name, depth)

    def _finish(self, d: p.Define, name: str, depth: int):
        if d.not_finite is not None:
            self.emit(f"if {name} != {name} or {name} - {name} != 0:", depth)
            self.emit(f"return R[{d.not_finite}]", depth + 1)
        mg = f"m_{ident(d.name)}"
        if d.quantize:
            self.emit(f"{mg} = _whole_mg({name})", depth)
            self.emit(f"if not -9223372036854775808 <= {mg} <= 9223372036854775807:", depth)
            self.emit(f"return R[{d.too_large}]", depth + 1)
            self.emit(f"{name} = {mg} / 1000000.0", depth)
        elif d.whole:
            self.emit(f"if {name}.__class__ is float and not -9.223372036854776e18 <= {name} < 9.223372036854776e18:", depth)
            self.emit(f"return R[{d.too_large}]", depth + 1)
            self.emit(f"{name} = int({name})", depth)
        if self.explain:
            quantity = d.type.kind == Kind.QUANTITY
            self.emit(f"T.append({{'kind': {d.kind!r}, 'name': {d.name!r}, 'value': {name}, "
                      f"'mg': {mg if d.quantize else 'None'}, "
                      f"'unit': {d.type.unit.text if quantity else ''!r}, "
                      f"'factor': {float(d.type.unit.factor) if quantity else 1.0!r}, "
                      f"'line': {d.line}}})", depth)

    def check(self, c: p.Check):
        self.emit(f"if not {self.expr(c.cond)}:")
        if self.explain and c.kind == "require":
            self.emit(f"T.append({{'kind': 'require', 'code': {c.code!r}, 'passed': False, 'line': {c.line}}})", 2)
        self.emit(f"return R[{c.reason}]", 2)
        if self.explain and c.kind == "require":
            self.emit(f"T.append({{'kind': 'require', 'code': {c.code!r}, 'passed': True, 'line': {c.line}}})")

    def periods(self):
        """The period in force of each parameter looked up, at the record's local day:
        its index (-1 before the first), and for a table the table itself."""
        for i in self.plan.used_parameters:
            prm = self.plan.parameters[i]
            if len(prm.starts) == 1:
                self.emit(f"p{i} = 0 if day >= {prm.starts[0]} else -1")
            else:
                self.emit(f"p{i} = _bisect(S[{i}], day) - 1")
            if prm.keyed and not self.explain:
                self.emit(f"tab{i} = P[{i}][p{i}]")

    def trace_inputs(self):
        for spec in self.plan.methodology.inputs:
            quantity = spec.type.kind == Kind.QUANTITY
            self.emit(f"T.append({{'kind': 'input', 'name': {spec.name!r}, 'value': v[{spec.name!r}], "
                      f"'type': {spec.type.kind.value!r}, "
                      f"'unit': {spec.type.unit.text if quantity else ''!r}, "
                      f"'factor': {float(spec.type.unit.factor) if quantity else 1.0!r}}})")
        for h in self.plan.rules.histories:  # the windows, as the formulas saw them
            quantity = h.type.kind == Kind.QUANTITY
            window = f"{h.aggregate} of {h.subject} over the {h.side} {h.size} {h.unit}"
            self.emit(f"T.append({{'kind': 'history', 'name': {h.name!r}, 'value': v[{h.name!r}], "
                      f"'status': v[{status_name(h)!r}], 'window': {window!r}, "
                      f"'unit': {h.type.unit.text if quantity else ''!r}, "
                      f"'factor': {float(h.type.unit.factor) if quantity else 1.0!r}, 'line': {h.line}}})")
        for i, group in enumerate(self.plan.methodology.groups):  # legs, each field in its unit
            self.emit(f"T.append({{'kind': 'input', 'name': {group.name!r}, "
                      f"'value': _legs_shown(v[{group.name!r}], G[{i}]), 'type': 'list', 'unit': '', "
                      f"'factor': 1.0}})")

    def _build(self) -> str:
        plan = self.plan
        self.emit("def run(v, T=None, override=None):", 0)
        self.emit("day = LT_day(v['time'])")
        steps = list(plan.steps)
        first = [s for s in steps if isinstance(s, p.Check) and s.kind in ("period", "activity")]
        for step in first:  # before the periods: a record outside them looks nothing up
            self.check(step)
        self.periods()
        traced = False
        for step in steps[len(first):]:
            if self.explain and not traced and not (isinstance(step, p.Check) and step.kind == "bound"):
                self.trace_inputs()
                traced = True
            if isinstance(step, p.Check):
                self.check(step)
            else:
                self.define(step)
        if self.explain and not traced:
            self.trace_inputs()
        masses = {n: f"m_{n}" if n in plan.masses else ("0" if n == "reduction" else "None")
                  for n in ("baseline", "project", "leakage", "reduction")}
        amounts = "".join(f"d_{ident(name)}, " for name in plan.counters)
        self.emit(f"return ('credited', '', '', {masses['reduction']}, d_points, "
                  f"{masses['baseline']}, {masses['project']}, {masses['leakage']}, ({amounts}))")
        header, body = self.lines[0], self.lines[1:]
        return "\n".join([header, "    try:"] + ["    " + line for line in body] + [
            "    except Reject as reject:  # a lookup that has no value",
            "        return _rejected(reject.code, reject.message, reject.status)"])


def _plain_divisor(e: p.Expr):
    """A constant divisor that is a finite non-zero number, as numeric.div would convert
    it: `a / b` then gives div's bits (div only differs for a zero divisor)."""
    if not isinstance(e, p.Const) or e.rep not in p.NUMBERS:
        return None
    divisor = float(e.value)
    return divisor if math.isfinite(divisor) and divisor != 0.0 else None
