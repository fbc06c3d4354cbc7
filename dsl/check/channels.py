"""Duplicate rules for one event reported through several channels.

`forbid duplicate mode, started within 5 min per account where mode != walk
 keep first by arrived else SAME_RIDE "..."`: the last key, a datetime input, may differ
by the window; `where` limits the rule to records whose input is (or is not) one of some
values (a test every path evaluates on the record's values, without the formulas);
`keep first by` names a datetime input saying when the record arrived.
"""

from __future__ import annotations

from typing import Optional

from ..ir import ast as ir
from ..messages import Reporter
from ..suggestions import did_you_mean
from ..surface import ast
from ..types import Kind
from .expressions import ExpressionChecker
from .literals import INVALID, check_code, describe_literal, si_float, unit_of
from .scope import Scope


def check(items, scope: Scope, report: Reporter) -> tuple[list[ir.NearDuplicate], set[str]]:
    """The near-duplicate rules, and the inputs they read (for the unused warnings)."""
    rules, used = [], set()
    for item in items:
        if not isinstance(item, (ast.NearDuplicateRule, ast.ConditionalDuplicateRule)):
            continue
        ok = True
        for key in item.keys:
            name = str(key)
            t = scope.input_type(name)
            if t is None or name in ("id", "account", "time", "activity"):
                if name not in scope.failed:
                    report.report("E0207", key, name=name, help=did_you_mean(name, scope.inputs))
                ok = False
            used.add(name)
        near, window = None, 0
        if item.window is not None and ok:
            near = str(item.keys[-1])
            if scope.input_type(near).kind != Kind.DATETIME:
                report.report("E0335", item.keys[-1], name=near,
                              found=scope.input_type(near).describe())
                ok = False
            else:
                window = _window_us(item.window, report)
                ok &= window is not None
        when = _when(item.where, scope, report) if item.where is not None else None
        if item.where is not None:
            ok &= when is not None
            if when is not None:
                used.add(when[0])
        arrival = None
        if item.arrival is not None:
            arrival = str(item.arrival.name)
            t = scope.input_type(arrival)
            if t is None or t.kind != Kind.DATETIME or arrival == "time":
                if arrival not in scope.failed:
                    report.report("E0336", item.arrival.name, name=arrival,
                                  help=did_you_mean(arrival, [n for n, s in scope.inputs.items()
                                                              if s.type.kind == Kind.DATETIME]))
                ok = False
            used.add(arrival)
        code = check_code(item.code, report)
        if ok:
            keys = tuple(str(k) for k in item.keys)
            rules.append(ir.NearDuplicate(keys[:-1] if near else keys, near, window or 0, when,
                                          arrival, code, str(item.message)))
    return rules, used


def _window_us(node, report: Reporter) -> Optional[int]:
    """A duration of whole microseconds, 0 or more."""
    if isinstance(node, ast.QuantityLiteral):
        unit = unit_of(node.unit, report)
        if unit is None:
            return None
        if unit.dimension == (("[time]", 1),):
            from .literals import decimal_of
            seconds = si_float(unit, decimal_of(node.number, node.sign), node, report)
            if seconds is not INVALID and seconds >= 0:
                micro = seconds * 1_000_000
                if micro == int(micro) and micro < 2 ** 62:
                    return int(micro)
    report.report("E0605", node, found=describe_literal(node))
    return None


def _when(where: ast.DupWhere, scope: Scope, report: Reporter) -> Optional[tuple[str, tuple, bool]]:
    """`input == v`, `input != v`, `input in {…}`, `input not in {…}` -> (input, values, allowed)."""
    checker = ExpressionChecker(scope, report)
    cond = checker._boolean(where.cond, None)
    if cond is None:
        return None
    allowed = True
    if isinstance(cond, ir.Not):
        cond, allowed = cond.operand, False
    if isinstance(cond, ir.Compare) and cond.op in ("==", "!=") and isinstance(cond.left, ir.Input) \
            and isinstance(cond.right, ir.Const):
        return cond.left.name, (cond.right.value,), allowed == (cond.op == "==")
    if isinstance(cond, ir.InSet) and isinstance(cond.operand, ir.Input) and \
            all(isinstance(v, ir.Const) for v in cond.values):
        return cond.operand.name, tuple(v.value for v in cond.values), allowed
    report.report("E0337", where.cond,
                  help="e.g. `where mode != walk` or `where mode in { bus, metro }`")
    return None
