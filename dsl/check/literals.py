"""Literal values (defaults, bounds, caps, windows, example records) against a type.

One function turns a written value into its run-time representation (see dsl/ir/ast.py)
or reports why it cannot be one, so that an input's default, a cap's limit and an
example's field all follow the same rules, including "a distance needs a unit".
"""

from __future__ import annotations

import datetime as dt
import math
import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Optional

from .. import zones
from ..messages import Reporter
from ..suggestions import did_you_mean
from ..surface import ast
from ..types import Kind, Type
from ..units import ONE, UnitError, parse_unit


class Invalid:
    """The value was reported as wrong; callers skip it without a second message."""

    def __repr__(self) -> str:
        return "INVALID"


INVALID = Invalid()


def decimal_of(number: str, sign=None) -> Decimal:
    value = Decimal(str(number))
    return -value if sign else value


# Past this decimal exponent no unit brings a number into the range of a binary64 float;
# checking it first also keeps exact arithmetic on `1e999999999` from running forever.
_EXPONENT_LIMIT = 400
INT64 = 2 ** 63


def _written(node) -> str:
    sign = "-" if getattr(node, "sign", None) else ""
    unit = getattr(node, "unit", None)
    return f"`{sign}{node.number}{' ' + str(unit) if unit is not None else ''}`"


def si_float(unit, magnitude: Decimal, node, report: Reporter):
    """An exact decimal in ``unit`` as the nearest binary64 in SI, or INVALID (E0310) when
    that is not a finite float, or is 0 for a number that is not."""
    value = None
    if not magnitude or abs(magnitude.adjusted()) <= _EXPONENT_LIMIT:
        try:
            value = unit.to_si(magnitude)
        except OverflowError:
            value = None
    if value is None or math.isinf(value) or (value == 0 and magnitude != 0):
        report.report("E0310", node, what=_written(node),
                      kind="number: it is out of the range of a binary64 float in SI units")
        return INVALID
    return value


def whole_token(token, report: Reporter, digits=None):
    """A written whole number (a NUMBER token, or ``digits`` of it) within 64 bits, or
    INVALID (E0310). Decimal first: int() refuses more than 4300 digits."""
    value = Decimal(str(token) if digits is None else digits)
    if value.adjusted() > _EXPONENT_LIMIT or not -INT64 <= value < INT64:
        report.report("E0310", token, what=f"`{token}`",
                      kind="whole number: it needs more than 64 bits")
        return INVALID
    return int(value)


def whole_value(value, node, report: Reporter):
    """A whole number (int, or an integral Decimal) within 64 bits, the run-time integer,
    or INVALID (E0310)."""
    if not (isinstance(value, Decimal) and value.adjusted() > _EXPONENT_LIMIT) \
            and -INT64 <= value < INT64:
        return int(value)
    report.report("E0310", node, what=_written(node), kind="whole number: it needs more than 64 bits")
    return INVALID


def parse_date(text: str) -> Optional[dt.date]:
    try:
        return dt.date.fromisoformat(str(text))
    except ValueError:
        return None


def parse_datetime(text: str, zone: str) -> Optional[dt.datetime]:
    """An instant in UTC; a time written without an offset is in ``zone``."""
    raw = str(text)
    if raw.endswith("Z"):
        raw = raw[:-1] + "+00:00"
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zones.zone(zone))
    return value.astimezone(dt.timezone.utc)


def unit_of(token, report: Reporter):
    """A unit token -> Unit, or None after reporting E0301/E0309."""
    try:
        return parse_unit(str(token))
    except UnitError as error:
        if error.reason == "offset unit":
            report.report("E0309", token, unit=str(token))
        else:
            text = str(token)
            shown = text if len(text) <= 60 else text[:60] + "…"
            long = error.reason.startswith("a unit is at most")
            report.report("E0301", token, unit=shown,
                          help=(error.reason + "; " if long else "")
                          + "units are written like km, kg, g/km, kWh, km/h, L, mile, gallon")
        return None


def describe_literal(node) -> str:
    if isinstance(node, ast.QuantityLiteral):
        try:
            return f"a quantity in {node.unit} ({_dimension_text(node.unit)})"
        except UnitError:
            return f"a quantity in {node.unit}"
    return {
        ast.NumberLiteral: "a number without a unit",
        ast.TextLiteral: "text",
        ast.DateLiteral: "a date",
        ast.DatetimeLiteral: "a datetime",
        ast.BoolLiteral: "true or false",
        ast.NameLiteral: "a name",
    }.get(type(node), "a value")


def _dimension_text(unit_text) -> str:
    from ..units import describe
    return describe(parse_unit(str(unit_text)).dimension)


def literal_value(node, expected: Type, report: Reporter, *, code: str, zone: str,
                  **fields):
    """The run-time value of a literal of type ``expected``, or INVALID (reported).

    ``code`` and ``fields`` say which diagnostic a mismatch is (an example field, a
    default, a bound ...), so the message names what the value was for.
    """
    def mismatch():
        report.report(code, node, expected=expected.describe(), found=describe_literal(node),
                      **fields)
        return INVALID

    kind = expected.kind
    if kind == Kind.QUANTITY:
        if isinstance(node, ast.QuantityLiteral):
            unit = unit_of(node.unit, report)
            if unit is None:
                return INVALID
            if unit.dimension != expected.dimension:
                return mismatch()
            return si_float(unit, decimal_of(node.number, node.sign), node, report)
        if isinstance(node, ast.NumberLiteral) and not expected.dimension:
            return si_float(ONE, decimal_of(node.number, node.sign), node, report)
        return mismatch()
    if kind == Kind.INTEGER:
        if isinstance(node, ast.NumberLiteral):
            value = decimal_of(node.number, node.sign)
            if value and value.adjusted() > _EXPONENT_LIMIT:
                return whole_value(value, node, report)
            if value == value.to_integral_value():
                return whole_value(value, node, report)
        return mismatch()
    if kind == Kind.BOOLEAN:
        if isinstance(node, ast.BoolLiteral):
            return str(node.value) == "true"
        return mismatch()
    if kind == Kind.TEXT:
        if isinstance(node, ast.TextLiteral):
            return str(node.text)
        if isinstance(node, (ast.NameLiteral, ast.NumberLiteral)):
            return str(getattr(node, "name", None) or node.number)
        return mismatch()
    if kind == Kind.CHOICE:
        if isinstance(node, ast.NameLiteral):
            name = str(node.name)
            if name in expected.choices:
                return name
            report.report("E0204", node, value=name, choice=expected.choice_of or "the choice",
                          help=did_you_mean(name, expected.choices)
                          or "the values are " + ", ".join(expected.choices))
            return INVALID
        return mismatch()
    if kind == Kind.DATE:
        if isinstance(node, ast.DateLiteral):
            value = parse_date(node.text)
            if value is None:
                report.report("E0504", node, text=str(node.text), kind="date")
                return INVALID
            return value
        return mismatch()
    if kind == Kind.DATETIME:
        if isinstance(node, (ast.DatetimeLiteral, ast.DateLiteral)):
            text = str(node.text)
            value = parse_datetime(text if "T" in text else text + "T00:00", zone)
            if value is None:
                report.report("E0504", node, text=text, kind="datetime")
                return INVALID
            return value
        return mismatch()
    return mismatch()  # pragma: no cover - every kind is handled above


def whole_milligrams(node: ast.QuantityLiteral, report: Reporter, name: str):
    """A mass literal as an exact whole number of milligrams, or INVALID (reported)."""
    unit = unit_of(node.unit, report)
    if unit is None:
        return INVALID
    magnitude = decimal_of(node.number, node.sign)
    if magnitude and magnitude.adjusted() > _EXPONENT_LIMIT:
        return whole_value(magnitude, node, report)
    exact = None  # a number too small to be whole milligrams in any unit
    if not magnitude or magnitude.adjusted() >= -_EXPONENT_LIMIT:
        exact = Fraction(magnitude) * unit.factor * 1_000_000
    if exact is None or exact.denominator != 1:
        report.report("E0314", node, name=name, found=f"{node.number} {node.unit}")
        return INVALID
    return whole_value(int(exact), node, report)


UPPER_SNAKE = re.compile(r"^[A-Z][A-Z0-9_]*$")


def check_code(token, report: Reporter) -> str:
    code = str(token)
    if not UPPER_SNAKE.match(code):
        report.report("W0302", token, code=code)
    return code


__all__ = ["INVALID", "Invalid", "literal_value", "parse_date", "parse_datetime",
           "decimal_of", "si_float", "whole_value", "whole_token", "unit_of", "whole_milligrams", "check_code", "InvalidOperation"]
