"""The plan as text, one step a line: for reading what a backend is given, in tests and
in `tanpu inspect --plan`."""

from __future__ import annotations

from . import ast as p


def expr(e: p.Expr) -> str:
    t = type(e)
    if t is p.Const:
        return repr(e.value)
    if t is p.Input:
        return e.name
    if t is p.Ref:
        return f"${e.name}"
    if t is p.Day:
        return "day(time)"
    if t is p.Unary:
        return f"{e.op}({expr(e.operand)})"
    if t in (p.Arith, p.Compare, p.Logic):
        return f"({expr(e.left)} {e.op} {expr(e.right)})"
    if t is p.InSet:
        return f"({expr(e.operand)} in {{{', '.join(expr(v) for v in e.values)}}})"
    if t is p.If:
        return f"(if {expr(e.cond)} then {expr(e.then)} else {expr(e.otherwise)})"
    if t is p.MinMax:
        return f"{e.op}({', '.join(expr(a) for a in e.args)})"
    if t is p.Round:
        return f"{e.mode}({expr(e.operand)}, {e.precision!r})"
    if t is p.Elapsed:
        return f"seconds({expr(e.end)} - {expr(e.start)})"
    if t is p.DateShift:
        unit = "days" if e.rep == p.DAY else "us"
        return f"({expr(e.date)} {e.op} {unit}({expr(e.duration)}))"
    if t is p.DatePart:
        return f"{e.part}({expr(e.operand)})"
    if t is p.Lookup:
        tail = []
        if e.in_force is not None:
            tail.append(f"none in force: R{e.in_force}")
        if e.missing is not None:
            tail.append(f"unlisted: R{e.missing}")
        if e.default is not None:
            tail.append(f"unlisted: {e.default!r}")
        if e.impossible:
            tail.append("unlisted: NO_VALUE")
        keys = f"[{', '.join(expr(k) for k in e.keys)}]" if e.keys else ""
        return f"P{e.parameter}{keys}" + (f"{{{'; '.join(tail)}}}" if tail else "")
    raise TypeError(t.__name__)  # pragma: no cover


def plan_text(plan: p.Plan) -> str:
    lines = [f"plan {plan.id} (zone {plan.timezone})"]
    for i, prm in enumerate(plan.parameters):
        lines.append(f"  P{i} = {prm.name}: {len(prm.starts)} period(s){', keyed' if prm.keyed else ''}")
    for i, (status, code, message) in enumerate(plan.reasons):
        lines.append(f"  R{i} = {status} {code}: {message}")
    for step in plan.steps:
        if isinstance(step, p.Check):
            lines.append(f"  check {step.kind} {expr(step.cond)} else R{step.reason}")
        else:
            marks = [m for m, on in (("finite", step.not_finite is not None), ("mg", step.quantize),
                                     ("whole", step.whole), ("overridable", step.overridable)) if on]
            lines.append(f"  {step.kind} {step.name}: {step.rep} = {expr(step.expr)}"
                         + (f"  [{', '.join(marks)}]" if marks else ""))
    lines.append(f"  masses {', '.join(plan.masses) or '-'}")
    rules = plan.rules
    for d in rules.duplicates:
        lines.append(f"  rule duplicate ({', '.join(d.keys)}) per account else {d.code}")
    for o in rules.overlaps:
        lines.append(f"  rule overlap [{o.start}, {o.end}) per account else {o.code}")
    for f in rules.flags:
        lines.append(f"  rule flag > {f.count} within {f.window_seconds} s: {f.code}")
    for b in rules.bonuses:
        lines.append(f"  rule bonus {b.points} on record {b.ordinal} within {b.window_seconds} s")
    for c in rules.caps:
        lines.append(f"  rule cap {c.target} at {c.limit} per {c.period} in {c.timezone}")
    return "\n".join(lines) + "\n"
