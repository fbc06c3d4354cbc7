"""Applicability rules and the cross-record rules: caps, overlaps, duplicates, windows."""

from __future__ import annotations

from typing import Optional

from ..ir import ast as ir
from ..messages import Reporter
from ..suggestions import did_you_mean
from ..surface import ast
from ..types import INTEGER, Kind, is_duration
from ..units import MASS, SECOND
from .expressions import ExpressionChecker, Uses, within_depth
from .literals import (INVALID, check_code, describe_literal, literal_value, si_float, unit_of,
                       whole_milligrams, whole_token, whole_value)
from .scope import Scope, calendar_zone


def check_requires(items, scope: Scope, report: Reporter) -> tuple[list[ir.Require], list[Uses]]:
    requires, uses = [], []
    for item in items:
        if not isinstance(item, ast.RequireStmt):
            continue
        checker = ExpressionChecker(scope, report)
        cond = within_depth(checker.check(item.cond), item.cond, report)
        code = check_code(item.code, report)
        if cond is None:
            continue
        if cond.type.kind != Kind.BOOLEAN:
            report.report("E0303", item.cond, expected="a condition (true or false)",
                          found=cond.type.describe())
            continue
        if isinstance(cond, ir.Const):
            report.report("W0202", item.cond, value="true" if cond.value else "false")
        requires.append(ir.Require(cond, code, str(item.message), item.meta.line))
        uses.append(checker.uses)
    return requires, uses


def _window_seconds(node, report: Reporter) -> Optional[int]:
    if isinstance(node, ast.QuantityLiteral):
        unit = unit_of(node.unit, report)
        if unit is None:
            return None
        if unit.dimension == SECOND.dimension:
            seconds = si_float(unit, _decimal(node), node, report)
            if seconds is INVALID:
                return None
            if seconds > 0 and seconds == int(seconds):
                whole = whole_value(int(seconds), node, report)
                return None if whole is INVALID else whole
    report.report("E0605", node, found=describe_literal(node))
    return None


def _decimal(node):
    from .literals import decimal_of
    return decimal_of(node.number, node.sign)


def check_cross_record(items, scope: Scope, report: Reporter, zone_given: bool) -> dict:
    caps, overlaps, duplicates, bonuses, flags = [], [], [], [], []
    used_inputs: set[str] = set()
    for item in items:
        if isinstance(item, ast.CapRule):
            cap = _cap(item, scope, report, zone_given)
            if cap is not None:
                caps.append(cap)
        elif isinstance(item, ast.OverlapRule):
            ok = True
            for bound in (item.start, item.end):
                name = str(bound)
                t = scope.input_type(name)
                if t is None:
                    if name not in scope.failed:
                        report.report("E0207", bound, name=name, help=did_you_mean(name, scope.inputs))
                    ok = False
                elif t.kind not in (Kind.DATE, Kind.DATETIME):
                    report.report("E0604", bound, name=name, found=t.describe())
                    ok = False
                used_inputs.add(name)
            code = check_code(item.code, report)
            if ok:
                overlaps.append(ir.Overlap(str(item.start), str(item.end), code, str(item.message)))
        elif isinstance(item, ast.DuplicateRule):
            ok = True
            for key in item.keys:
                name = str(key)
                if scope.input_type(name) is None:
                    if name not in scope.failed:
                        report.report("E0207", key, name=name, help=did_you_mean(name, scope.inputs))
                    ok = False
                used_inputs.add(name)
            code = check_code(item.code, report)
            if ok:
                duplicates.append(ir.Duplicate(tuple(str(k) for k in item.keys), code, str(item.message)))
        elif isinstance(item, ast.BonusRule):
            ordinal = whole_token(item.ordinal, report, str(item.ordinal)[:-2])
            points = whole_token(item.points, report)
            window = _window_seconds(item.window, report)
            if ordinal is not INVALID and ordinal < 1:
                report.report("E0607", item.ordinal, ordinal=str(item.ordinal))
            elif INVALID not in (ordinal, points) and window is not None:
                bonuses.append(ir.Bonus(points, ordinal, window))
        elif isinstance(item, ast.FlagRule):
            count = whole_token(item.count, report)
            window = _window_seconds(item.window, report)
            code = check_code(item.code, report)
            if count is not INVALID and window is not None:
                flags.append(ir.Flag(count, window, code, str(item.message)))
    return {"caps": caps, "overlaps": overlaps, "duplicates": duplicates, "bonuses": bonuses,
            "flags": flags, "used_inputs": used_inputs}


def _cap(item: ast.CapRule, scope: Scope, report: Reporter, zone_given: bool) -> Optional[ir.Cap]:
    target = str(item.target)
    zone = calendar_zone(item, scope, report, zone_given)
    if zone is None:
        return None
    if target == "reduction":
        if not isinstance(item.limit, ast.QuantityLiteral):
            report.report("E0603", item.limit, target=target, expected="a mass such as `2 kg`",
                          found=describe_literal(item.limit))
            return None
        unit = unit_of(item.limit.unit, report)
        if unit is None:
            return None
        if unit.dimension != MASS:
            report.report("E0603", item.limit, target=target, expected="a mass such as `2 kg`",
                          found=describe_literal(item.limit))
            return None
        limit = whole_milligrams(item.limit, report, "the cap")
    else:
        limit = literal_value(item.limit, INTEGER, report, code="E0603", zone=zone, target=target)
    if limit is INVALID:
        return None
    return ir.Cap(target, int(limit), str(item.period), zone)
