"""Values as a document shows them: numbers without binary noise, quantities in the
unit the methodology declared, instants in the methodology's time zone."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal

from dsl.ir import ast as ir
from dsl.types import Kind, Type
from dsl.units import Unit
from dsl.zones import zone


def number(value) -> str:
    """The shortest decimal that reads back as the same float, without an exponent."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return "∞" if value > 0 else ("−∞" if value < 0 else "NaN")
    text = format(Decimal(repr(float(value))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def in_unit(si_value: float, unit: Unit) -> str:
    return number(unit.from_si(si_value))


def quantity(si_value: float, unit: Unit) -> str:
    if unit.text == "1":
        return number(si_value)
    return f"{in_unit(si_value, unit)} {unit.text}"


def local(moment: dt.datetime, timezone: str) -> str:
    shown = moment.astimezone(zone(timezone))
    text = shown.strftime("%Y-%m-%d %H:%M")
    if shown.second or shown.microsecond:
        text = shown.strftime("%Y-%m-%d %H:%M:%S")
    return text


def value(v: ir.Value, t: Type, timezone: str) -> str:
    """A run-time value of type ``t`` (SI for quantities) as text."""
    if v is None:
        return "—"
    if t.kind == Kind.QUANTITY:
        return quantity(float(v), t.unit)
    if t.kind == Kind.INTEGER:
        return str(v)
    if t.kind == Kind.BOOLEAN:
        return "true" if v else "false"
    if isinstance(v, dt.datetime):
        return local(v, timezone)
    if isinstance(v, dt.date):
        return v.isoformat()
    return str(v)


def mass_mg(mg: int | None, unit: Unit) -> str:
    """A whole number of milligrams in the display unit of the output (g, kg, t ...)."""
    if mg is None:
        return "—"
    from fractions import Fraction
    shown = Fraction(mg, 1_000_000) / unit.factor
    if shown.denominator == 1:
        return f"{shown.numerator} {unit.text}"
    return f"{number(float(shown))} {unit.text}"
