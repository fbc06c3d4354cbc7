"""Examples that say what methodologies print: a named definition's value, an account's
total after a sequence of records, a value to a stated number of decimals.

    => car_factor 271.82 g/km to 2 decimals, reduction 3.23 kg to 2 decimals
    => total points 935, total reduction 9.26 kg, total rides 3, total voucher 2

The written value is kept as written (its decimal text and unit); engine/expectations.py
compares it with what the engine computed.
"""

from __future__ import annotations

from ..ir import ast as ir
from ..messages import Reporter
from ..suggestions import did_you_mean
from ..surface import ast
from ..types import INTEGER, Kind
from .literals import INVALID, describe_literal, unit_of, whole_token
from .scope import Scope

NODES = (ast.ExpectRounded, ast.ExpectNamed, ast.ExpectTotal)


def check(node, scope: Scope, report: Reporter):
    """The ValueCheck of one expectation, or INVALID (reported)."""
    decimals = None
    if node.decimals is not None:
        decimals = whole_token(node.decimals.count, report)
        if decimals is INVALID:
            return INVALID
        if decimals > 12:
            report.report("E0705", node.decimals, output="number of decimals",
                          expected="at most 12", found=str(decimals))
            return INVALID
    if isinstance(node, ast.ExpectTotal):
        name = str(node.output)
        if name in scope.counted:  # a counter's or a reward's total: a whole number
            t = INTEGER
        elif name not in ("reduction", "points"):
            report.report("E0708", node.output, name=name,
                          help=did_you_mean(name, scope.counted) if scope.counted else "")
            return INVALID
        else:
            t = scope.definitions.get(name)
        kind = "total"
    else:
        name = str(node.output if isinstance(node, ast.ExpectRounded) else node.name)
        t = scope.definitions.get(name)
        if t is None:
            if name not in scope.failed:
                report.report("E0707", node.output if isinstance(node, ast.ExpectRounded) else node.name,
                              name=name, help=did_you_mean(name, scope.definitions))
            return INVALID
        kind = "definition"
    if t is None:  # its definition did not compile (reported there)
        return INVALID
    value = _written(node.value, t, name, report)
    if value is INVALID:
        return INVALID
    number, unit = value
    return ir.ValueCheck(kind, name, number, unit, decimals)


def _written(node, t, name: str, report: Reporter):
    """(value as written, unit text) for a value of type `t`."""
    if t.is_numeric:
        if isinstance(node, ast.QuantityLiteral):
            unit = unit_of(node.unit, report)
            if unit is None:
                return INVALID
            if unit.dimension != t.dimension:
                report.report("E0705", node, output=name, expected=t.describe(),
                              found=describe_literal(node))
                return INVALID
            return _number(node), str(node.unit)
        if isinstance(node, ast.NumberLiteral) and not t.dimension:
            return _number(node), ""
        report.report("E0705", node, output=name, expected=t.describe(), found=describe_literal(node))
        return INVALID
    if t.kind == Kind.BOOLEAN and isinstance(node, ast.BoolLiteral):
        return str(node.value), ""
    if t.kind in (Kind.CHOICE, Kind.TEXT) and isinstance(node, (ast.NameLiteral, ast.TextLiteral)):
        text = str(node.name if isinstance(node, ast.NameLiteral) else node.text)
        if t.kind == Kind.CHOICE and text not in t.choices:
            report.report("E0705", node, output=name, expected=t.describe(), found=f"`{text}`")
            return INVALID
        return text, ""
    report.report("E0705", node, output=name, expected=t.describe(), found=describe_literal(node))
    return INVALID


def _number(node) -> str:
    return ("-" if node.sign else "") + str(node.number)


__all__ = ["check", "NODES"]
