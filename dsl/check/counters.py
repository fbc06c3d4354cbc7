"""Counters and rewards: `counter`, `cap counter`, `reward` (docs/language.md §9.7).

A counter is what a credited record adds to a named per-account total, a whole number of
a count unit (ride, person ...) or of money (CNY); a reward converts every N accumulated
units of `points` or of a counter into one reward, the remainder staying on the account.
The engine's side is engine/counters.py.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import Optional

from ..ir import ast as ir
from ..messages import Reporter
from ..suggestions import did_you_mean
from ..surface import ast
from ..types import Kind
from ..units import COUNT_DIMENSIONS, CURRENCY, Unit
from .expressions import ExpressionChecker, Uses, within_depth
from .literals import INVALID, decimal_of, describe_literal, unit_of, whole_token
from .scope import BUILTIN_TYPES, Scope, calendar_zone


def counting(unit: Unit) -> bool:
    """Whether a unit counts things or money: what counters and rewards are written in."""
    return unit.dimension in COUNT_DIMENSIONS or unit.dimension == CURRENCY


def check_counters(items, scope: Scope, report: Reporter, declared: dict, zone_given: bool
                   ) -> tuple[dict, list[Uses]]:
    """The counters, their caps and the rewards of a file -> IR, and what the counters'
    formulas use (for the unused-name warnings)."""
    counters: dict[str, ir.Counter] = {}
    units: dict[str, Optional[Unit]] = {}
    nodes: dict[str, ast.CounterDef] = {}
    uses: list[Uses] = []
    for item in items:
        if not isinstance(item, ast.CounterDef):
            continue
        name = str(item.name)
        if name in BUILTIN_TYPES or name in ir.OUTPUT_NAMES:
            report.report("E0206" if name in BUILTIN_TYPES else "E0202", item.name, name=name)
            continue
        if name in declared:
            report.report("E0202", item.name, name=name,
                          notes=[report.note("first defined here", declared[name])])
            continue
        declared[name] = item.name
        nodes[name] = item
        unit = None
        if item.unit is not None:
            unit = unit_of(item.unit.text, report)
            if unit is None:
                continue
            if not counting(unit):
                report.report("E0317", item.unit, unit=str(item.unit.text),
                              help="write a count unit such as `[ride]`, `[person]`, `[device]`, or `[CNY]`")
                continue
        checker = ExpressionChecker(scope, report)
        expr = within_depth(checker.check(item.expr), item.expr, report)
        uses.append(checker.uses)
        if expr is None:
            continue
        if expr.type.kind != Kind.INTEGER:
            report.report("E0609", item.expr, name=name, found=expr.type.describe(),
                          help="a counter adds whole units, e.g. `counter rides [ride] = 1` "
                               "or `= floor(distance / 1 km)`")
            continue
        counters[name] = ir.Counter(name, str(item.unit.text) if item.unit is not None else "",
                                    expr, item.meta.line)
        units[name] = unit

    caps: list[ir.CounterCap] = []
    rewards: list[ir.Reward] = []
    converted: dict[str, str] = {}
    for item in items:
        if isinstance(item, ast.CounterCapRule):
            cap = _cap(item, counters, units, nodes, scope, report, zone_given)
            if cap is not None:
                caps.append(cap)
        elif isinstance(item, ast.RewardRule):
            reward = _reward(item, counters, nodes, scope, report, declared)
            if reward is None:
                continue
            if reward.source in converted:
                report.report("E0612", item.source, source=reward.source, other=converted[reward.source])
                continue
            converted[reward.source] = reward.name
            rewards.append(reward)
    scope.counted |= set(counters) | {r.name for r in rewards}  # an example's totals name them
    return {"counters": tuple(counters.values()), "counter_caps": tuple(caps),
            "rewards": tuple(rewards)}, uses


def _unknown_counter(token, nodes: dict, report: Reporter, extra=()) -> None:
    name = str(token)
    if name not in nodes:  # a counter that did not check was reported already
        report.report("E0608", token, name=name, help=did_you_mean(name, list(nodes) + list(extra)))


def _cap(item, counters, units, nodes, scope: Scope, report: Reporter, zone_given: bool
         ) -> Optional[ir.CounterCap]:
    name = str(item.counter)
    if name not in counters:
        _unknown_counter(item.counter, nodes, report)
        return None
    zone = calendar_zone(item, scope, report, zone_given)
    if zone is None:
        return None
    limit = _whole_in(item.limit, units[name], report)
    if limit is None:
        unit = units[name]
        report.report("E0610", item.limit, name=name,
                      expected=f"a whole number of {unit.text}" if unit is not None else "a whole number",
                      found=describe_literal(item.limit))
        return None
    return ir.CounterCap(name, limit, str(item.period), zone)


def _whole_in(node, unit: Optional[Unit], report: Reporter) -> Optional[int]:
    """A literal as a whole number ≥ 0 of `unit` (a plain number when there is none)."""
    if unit is None:
        if not isinstance(node, ast.NumberLiteral):
            return None
        value = Fraction(decimal_of(node.number, node.sign))
    else:
        if not isinstance(node, ast.QuantityLiteral):
            return None
        written = unit_of(node.unit, report)
        if written is None or written.dimension != unit.dimension:
            return None
        value = Fraction(decimal_of(node.number, node.sign)) * written.factor / unit.factor
    if value.denominator != 1 or value < 0 or value >= 2 ** 63:
        return None
    return int(value)


def _reward(item, counters, nodes, scope: Scope, report: Reporter, declared: dict
            ) -> Optional[ir.Reward]:
    name = str(item.name)
    if name in declared or name in BUILTIN_TYPES or name in ir.OUTPUT_NAMES:
        report.report("E0202", item.name, name=name,
                      notes=[report.note("first defined here", declared[name])] if name in declared else [])
        return None
    declared[name] = item.name
    source = str(item.source)
    if source != "points" and source not in counters:
        _unknown_counter(item.source, nodes, report, extra=("points",))
        return None
    every_text = Decimal(str(item.every))
    if every_text != every_text.to_integral_value():  # (not `% 1`: past 28 digits it raises)
        report.report("E0611", item.every, found=str(item.every))
        return None
    every = whole_token(item.every, report)
    if every is INVALID:
        return None
    if every < 1:
        report.report("E0611", item.every, found=str(item.every))
        return None
    worth = item.worth
    unit = unit_of(worth.unit, report) if isinstance(worth, ast.QuantityLiteral) else None
    if unit is None or not counting(unit) or worth.sign:
        if not (isinstance(worth, ast.QuantityLiteral) and unit is None):  # else reported
            report.report("E0613", worth, found=describe_literal(worth),
                          help="write what one reward is worth, e.g. `worth 5 CNY` or `worth 1 ride`")
        return None
    text = str(Decimal(str(worth.number)).normalize())
    if "E" in text:
        text = format(Decimal(str(worth.number)), "f")
    return ir.Reward(name, every, source, text, str(worth.unit))
