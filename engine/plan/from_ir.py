"""The typed IR (dsl/ir/ast.py) lowered to the evaluation plan (engine/plan/ast.py).

Everything both backends must agree on is decided here: the order of the steps, the
reasons, the representations, which nodes can reject. See ast.py's docstring.
"""

from __future__ import annotations

from dsl.ir import ast as ir
from dsl.types import Kind
from dsl.zones import zone

from .. import records
from ..result import (ACTIVITY_NOT_COVERED, NEGATIVE_COUNTER, NO_VALUE, NOT_APPLICABLE, NOT_FINITE,
                      OUT_OF_PERIOD, OUT_OF_RANGE, REJECTED)
from . import ast as p
from . import history

_REPS = {Kind.QUANTITY: p.F, Kind.INTEGER: p.I, Kind.BOOLEAN: p.B, Kind.TEXT: p.T,
         Kind.CHOICE: p.T, Kind.DATE: p.DAY, Kind.DATETIME: p.DT}


def rep_of(kind: Kind) -> str:
    return _REPS[kind]


def too_large(name: str) -> str:
    """The message of a value beyond 64-bit whole numbers (mg for a mass): every path
    rejects it, since the columnar ones hold such numbers in int64."""
    return f"`{name}` is too large to count (beyond ±9.2e18 whole units)"


def bound_text(spec: ir.InputSpec) -> str:
    """`name` must be between/at least/at most ..., in the input's own unit."""
    def show(value):
        if spec.type.kind == Kind.QUANTITY:
            return f"{spec.type.unit.from_si(value):g} {spec.type.unit.text}".replace(" 1", "")
        return str(value)
    if spec.low is not None and spec.high is not None:
        return f"`{spec.name}` must be between {show(spec.low)} and {show(spec.high)}"
    if spec.low is not None:
        return f"`{spec.name}` must be at least {show(spec.low)}"
    return f"`{spec.name}` must be at most {show(spec.high)}"


def const(value, kind: Kind, timezone: str = "UTC") -> p.Const:
    """A constant in its run-time representation; an instant with its local time."""
    value = records.runtime_value(value)
    if isinstance(value, bool):
        return p.Const(p.B, value)
    if kind == Kind.DATETIME:
        offset = records.us_to_datetime(value).astimezone(zone(timezone)).utcoffset()
        return p.Const(p.DT, value, local=value + int(offset.total_seconds()) * 1_000_000)
    if kind == Kind.DATE:
        return p.Const(p.DAY, value)
    if isinstance(value, int):
        return p.Const(p.I, value)
    if isinstance(value, float):
        return p.Const(p.F, value)
    return p.Const(p.T, value)


def refs(e) -> set[str]:
    """The definitions an IR expression refers to."""
    found, stack = set(), [e]
    while stack:
        node = stack.pop()
        if isinstance(node, ir.Ref):
            found.add(node.name)
        for value in getattr(node, "__dict__", {}).values():
            if isinstance(value, tuple):
                stack.extend(v for v in value if hasattr(v, "type"))
            elif hasattr(value, "type") and not isinstance(value, type):
                stack.append(value)
    return found


def step_order(m: ir.Methodology) -> list:
    """Each require preceded by the definitions it needs not yet computed (in the
    methodology's order, dependencies first), then the remaining definitions."""
    deps = {d.name: refs(d.expr) for d in m.definitions}
    order = [d.name for d in m.definitions]
    out, done = [], set()
    for require in m.requires:
        wanted, stack = set(), list(refs(require.cond))
        while stack:
            name = stack.pop()
            if name not in wanted:
                wanted.add(name)
                stack.extend(deps.get(name, ()))
        for name in order:
            if name in wanted and name not in done:
                out.append(m.definition(name))
                done.add(name)
        out.append(require)
    out.extend(d for d in m.definitions if d.name not in done)
    return out


class _Lower:
    def __init__(self, m: ir.Methodology):
        self.m = m
        self.reasons: list[tuple[str, str, str]] = []
        self.reps: dict[str, str] = {}
        self.param_index = {prm.name: i for i, prm in enumerate(m.parameters)}
        self.context = ""  # what the expression being lowered computes, for messages

    def overflow(self) -> int:
        """The reason of a whole number beyond int64 in the expression being lowered."""
        return self.reason(REJECTED, NOT_FINITE, too_large(self.context))

    def reason(self, status: str, code: str, message: str) -> int:
        item = (status, code, message)
        if item not in self.reasons:
            self.reasons.append(item)
        return self.reasons.index(item)

    # ------------------------------------------------------------ expressions
    def expr(self, e) -> p.Expr:
        t = type(e)
        if t is ir.Const:
            return const(e.value, e.type.kind, self.m.metadata.timezone)
        if t is ir.Input:
            return p.Input(_REPS[e.type.kind], e.name)
        if t is ir.Ref:
            return p.Ref(self.reps[e.name], e.name)
        if t in (ir.Negate, ir.Abs):
            x = self.expr(e.operand)
            op = "neg" if t is ir.Negate else "abs"
            if x.rep == p.I:  # -(-2**63) is beyond int64
                return p.Unary(x.rep, op, x, True, self.overflow())
            return p.Unary(x.rep, op, x, x.rejects)
        if t is ir.Not:
            x = self.expr(e.operand)
            return p.Unary(p.B, "not", x, x.rejects)
        if t is ir.Arith and e.type.kind == Kind.DATE:  # a date moved by a duration
            a, b = self.expr(e.left), self.expr(e.right)
            return p.DateShift(p.DAY, e.op, a, b, True, self.reason(
                REJECTED, NOT_FINITE, f"`{self.context}`: a date moved beyond 0001-01-01 … 9999-12-31"))
        if t is ir.Arith and e.type.kind == Kind.DATETIME:  # an instant moved by a duration
            a, b = self.expr(e.left), self.expr(e.right)
            return p.DateShift(p.DT, e.op, a, b, True, self.reason(
                REJECTED, NOT_FINITE,
                f"`{self.context}`: a datetime moved beyond 0001-01-03 … 2199-12-31 (UTC)"))
        if t is ir.Arith:
            a, b = self.expr(e.left), self.expr(e.right)
            rep = p.F if e.op == "/" or p.F in (a.rep, b.rep) else p.I
            if rep == p.I:
                return p.Arith(rep, e.op, a, b, True, self.overflow())
            return p.Arith(rep, e.op, a, b, a.rejects or b.rejects)
        if t is ir.Compare:
            a, b = self.expr(e.left), self.expr(e.right)
            return p.Compare(p.B, e.op, a, b, a.rejects or b.rejects)
        if t is ir.Logic:
            a, b = self.expr(e.left), self.expr(e.right)
            return p.Logic(p.B, e.op, a, b, a.rejects or b.rejects)
        if t is ir.InSet:
            x = self.expr(e.operand)
            values = tuple(self.expr(v) for v in e.values)
            return p.InSet(p.B, x, values, x.rejects or any(v.rejects for v in values))
        if t is ir.If:
            c, a, b = self.expr(e.cond), self.expr(e.then), self.expr(e.otherwise)
            rep = a.rep if a.rep == b.rep else p.F
            return p.If(rep, c, a, b, c.rejects or a.rejects or b.rejects)
        if t is ir.MinMax:
            args = tuple(self.expr(a) for a in e.args)
            rep = p.F if any(a.rep == p.F for a in args) else p.I
            return p.MinMax(rep, e.op, args, any(a.rejects for a in args))
        if t is ir.Round:
            x = self.expr(e.operand)
            return p.Round(p.F, e.mode, x, float(e.precision), x.rejects)
        if t is ir.Elapsed:
            a, b = self.expr(e.end), self.expr(e.start)
            return p.Elapsed(p.F, a, b, a.rejects or b.rejects)
        if t is ir.DatePart:
            x = self.expr(e.operand)
            return p.DatePart(p.DAY if e.part == "date" else p.I, e.part, x, x.rejects)
        if t is ir.Lookup:
            return self.lookup(e)
        if t is ir.LegField:
            return p.LegField(_REPS[e.type.kind], e.group, e.name)
        if t is ir.LegAggregate:
            where = self.expr(e.where) if e.where is not None else None
            body = self.expr(e.body) if e.body is not None else None
            inner = any(x.rejects for x in (where, body) if x is not None)
            if e.op == "count":
                return p.LegAggregate(p.I, "count", e.group, None, where, inner)
            if body.rep == p.I:
                return p.LegAggregate(p.I, "sum", e.group, body, where, True, self.overflow())
            return p.LegAggregate(p.F, "sum", e.group, body, where, inner)
        raise TypeError(f"unknown IR node {t.__name__}")  # pragma: no cover

    def lookup(self, e: ir.Lookup) -> p.Lookup:
        i = self.param_index[e.parameter]
        keys = tuple(self.expr(k) for k in e.keys)
        if not keys:
            return p.Lookup(p.F, i, ())
        param = self.m.parameters[i]
        policy = param.missing
        in_force = self.reason(REJECTED, NO_VALUE, f"`{param.name}` has no value in force at this date")
        if policy.kind == "value":
            return p.Lookup(p.F, i, keys, in_force, default=float(policy.value), rejects=True)
        if policy.kind == "reject":
            return p.Lookup(p.F, i, keys, in_force, self.reason(REJECTED, policy.code, policy.message),
                            rejects=True)
        return p.Lookup(p.F, i, keys, in_force, impossible=True, rejects=True)

    # ------------------------------------------------------------ steps
    def checks(self) -> list[p.Check]:
        meta = self.m.metadata
        out = []
        if meta.effective_from is not None:
            start = meta.effective_from.toordinal() - records.EPOCH_DAY
            out.append(p.Check("period", p.Compare(p.B, ">=", p.Day(), p.Const(p.I, start)), self.reason(
                NOT_APPLICABLE, OUT_OF_PERIOD,
                f"the activity is before the methodology applies ({meta.effective_from})")))
        if meta.effective_until is not None:
            until = meta.effective_until.toordinal() - records.EPOCH_DAY
            out.append(p.Check("period", p.Compare(p.B, "<=", p.Day(), p.Const(p.I, until)), self.reason(
                NOT_APPLICABLE, OUT_OF_PERIOD,
                f"the activity is after the methodology ends ({meta.effective_until})")))
        if meta.covers:
            activity = p.Input(p.T, "activity")
            covered = p.Logic(p.B, "or", p.Compare(p.B, "==", activity, p.Const(p.T, "")),
                              p.InSet(p.B, activity, tuple(p.Const(p.T, c) for c in meta.covers)))
            out.append(p.Check("activity", covered, self.reason(
                NOT_APPLICABLE, ACTIVITY_NOT_COVERED, "this methodology covers " + ", ".join(meta.covers))))
        for spec in self.m.inputs:
            if spec.low is None and spec.high is None:
                continue
            x = p.Input(_REPS[spec.type.kind], spec.name)
            tests = [p.Compare(p.B, op, x, const(bound, spec.type.kind, self.m.metadata.timezone))
                     for op, bound in (("<", spec.low), (">", spec.high)) if bound is not None]
            outside = tests[0] if len(tests) == 1 else p.Logic(p.B, "or", tests[0], tests[1])
            out.append(p.Check("bound", p.Unary(p.B, "not", outside),
                               self.reason(REJECTED, OUT_OF_RANGE, bound_text(spec))))
        return out

    def define(self, d: ir.Definition) -> p.Define:
        self.context = d.name
        x = self.expr(d.expr)
        kind = d.type.kind
        numeric = kind in (Kind.QUANTITY, Kind.INTEGER)
        not_finite = (self.reason(REJECTED, NOT_FINITE, f"`{d.name}` is not a finite number")
                      if numeric and x.rep == p.F else None)
        quantize = d.quantized
        whole = not quantize and kind == Kind.INTEGER and x.rep == p.F
        big = self.reason(REJECTED, NOT_FINITE, too_large(d.name)) if quantize or whole else None
        rep = p.F if quantize else (p.I if whole else x.rep)
        self.reps[d.name] = rep
        return p.Define(d.name, d.kind, rep, x, d.type, not_finite, quantize, whole, big,
                        overridable=d.name == "reduction", line=d.line)

    def counter(self, c: ir.Counter) -> list:
        """A counter's amount, a whole number; a negative one rejects the record (a
        counter only grows: what it has counted, converted or capped stays)."""
        self.context = c.name
        x = self.expr(c.expr)
        whole = x.rep == p.F
        big = self.reason(REJECTED, NOT_FINITE, too_large(c.name)) if whole else None
        not_finite = self.reason(REJECTED, NOT_FINITE, f"`{c.name}` is not a finite number") if whole else None
        from dsl.types import INTEGER
        define = p.Define(c.name, "counter", p.I, x, INTEGER, not_finite, False, whole, big, line=c.line)
        negative = self.reason(REJECTED, NEGATIVE_COUNTER, f"the counter `{c.name}` cannot be negative")
        check = p.Check("counter", p.Compare(p.B, ">=", p.Ref(p.I, c.name), p.Const(p.I, 0)), negative)
        self.reps[c.name] = p.I
        return [define, check]

    def plan(self) -> p.Plan:
        m = self.m
        steps: list = self.checks()
        # the definitions history windows aggregate, and what they use, come before the
        # windows are judged (engine/plan/history.py's subject_plan says why)
        early = history.subject_closure(m) if m.histories else set()
        steps += [self.define(d) for d in m.definitions if d.name in early]
        steps += history.checks(m.histories, self.reason)
        for item in step_order(m):
            if isinstance(item, ir.Definition) and item.name in early:
                continue
            if isinstance(item, ir.Require):
                self.context = f"a whole number in the require on line {item.line}"
                steps.append(p.Check("require", self.expr(item.cond),
                                     self.reason(REJECTED, item.code, item.message), item.code, item.line))
            else:
                steps.append(self.define(item))
        for counter in m.counters:  # after every definition: they never change an amount
            steps.extend(self.counter(counter))
        read: dict[str, str] = {"time": p.DT}
        for step in steps:
            for node in p.nodes(step.expr if isinstance(step, p.Define) else step.cond):
                if isinstance(node, p.Input):
                    read.setdefault(node.name, node.rep)
                elif isinstance(node, p.LegAggregate):
                    read.setdefault(node.group, p.LEGS)
        defined = {s.name for s in steps if isinstance(s, p.Define)}
        masses = tuple(n for n in ir.MASS_OUTPUTS if n in defined and m.definition(n).quantized)
        return p.Plan(m.metadata.id, m.metadata.timezone, tuple(read.items()),
                      tuple(parameter(prm) for prm in m.parameters), tuple(steps), masses,
                      tuple(self.reasons), cross_record(m),
                      m, tuple(c.name for c in m.counters))


def cross_record(m: ir.Methodology) -> p.CrossRecord:
    """The rules applied after the per-record steps, counters and rewards included."""
    return p.CrossRecord(m.duplicates, m.overlaps, m.flags, m.bonuses, m.caps, m.near_duplicates,
                         histories=m.histories, counters=tuple(c.name for c in m.counters),
                         counter_units=tuple(c.unit for c in m.counters),
                         counter_caps=m.counter_caps, rewards=m.rewards)


def parameter(prm: ir.Parameter) -> p.Parameter:
    starts = tuple(period.start.toordinal() - records.EPOCH_DAY for period in prm.periods)
    if not prm.keys:
        return p.Parameter(prm.name, starts, False, scalars=tuple(per.scalar for per in prm.periods),
                           source=prm)
    tables = tuple(tuple((tuple(records.runtime_value(k) for k in key), value)
                         for key, value in per.entries) for per in prm.periods)
    return p.Parameter(prm.name, starts, True, tables=tables, source=prm)


def from_ir(methodology: ir.Methodology) -> p.Plan:
    """The plan of a checked methodology. Pure."""
    return _Lower(methodology).plan()
