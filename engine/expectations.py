"""Checking an example's named values and totals (dsl/check/expectations.py wrote them).

Computed values come from the record's explanation (every `let` and output as the
engine computed it: SI floats, whole mg for the mass outputs) and, for a total, from the
sum of the account's results so far in the example. Comparison is in decimal
arithmetic in the written unit, so nothing is lost to a float on the way:
- `to N decimals`: the computed value rounded half away from zero to N decimals equals
  the written value;
- without: exactly, as the engine holds it: whole mg for a mass output or total, the
  float nearest the written value for any other quantity, the value itself otherwise.
A failure prints the written value, the computed one with every digit, and the difference.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, localcontext
from fractions import Fraction
from typing import Optional

from dsl.ir import ast as ir
from dsl.units import parse_unit

MG_PER_KG = Decimal(1_000_000)


def _factor(unit: str) -> Fraction:
    return parse_unit(unit).factor if unit else Fraction(1)


def _in_unit(si: Decimal, unit: str) -> Decimal:
    factor = _factor(unit)
    return si * Decimal(factor.denominator) / Decimal(factor.numerator)


def _show(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text if "." not in text else text.rstrip("0").rstrip(".")


def computed(check: ir.ValueCheck, result, total: Optional[dict]):
    """(the computed value: an SI Decimal, or a plain value; how the engine holds it:
    mg, int, float or plain), or None when the engine computed no such value."""
    if check.kind == "total":
        if check.name == "points":
            return Decimal(total["points"]), "int"
        if check.name != "reduction":  # a counter's or a reward's (engine/examples.py)
            return Decimal(total.get("counters", {}).get(check.name, 0)), "int"
        return Decimal(total["reduction_mg"]) / MG_PER_KG, "mg"
    found = None
    for step in result.explanation or ():
        if step.get("kind") in ("let", "output") and step.get("name") == check.name:
            found = step  # the last: a capped reduction is written again
    if found is None:
        return None
    if found.get("mg") is not None:
        return Decimal(found["mg"]) / MG_PER_KG, "mg"
    value = found.get("value")
    if isinstance(value, bool) or isinstance(value, str) or value is None:
        return value, "plain"
    return Decimal(value), "int" if isinstance(value, int) else "float"


def compare(check: ir.ValueCheck, result, total: Optional[dict]) -> Optional[str]:
    """None when the expectation holds, else what a failed example prints."""
    label = ("total " if check.kind == "total" else "") + check.name
    unit = f" {check.unit}" if check.unit else ""
    written = f"{check.value}{unit}" + (f" to {check.decimals} decimals" if check.decimals is not None else "")
    got = computed(check, result, total)
    if got is None:
        return f"expected {label} {written}, got nothing ({result.status} {result.code}".rstrip() + \
            (f": {result.message})" if result.message else ")")
    value, held = got
    if held == "plain":
        return None if str(value).lower() == str(check.value).lower() else \
            f"expected {label} {written}, got {str(value).lower()}"
    with localcontext() as context:
        context.prec = 60
        shown = _in_unit(value, check.unit)
        want = Decimal(check.value)
        if check.decimals is not None:
            rounded = shown.quantize(Decimal(1).scaleb(-check.decimals), rounding=ROUND_HALF_UP)
            if rounded == want:
                return None
            return (f"expected {label} {written}, got {_show(shown)}{unit} "
                    f"(to {check.decimals} decimals {_show(rounded)}{unit}, "
                    f"difference {_show(rounded - want)}{unit})")
        factor = _factor(check.unit)
        want_si = want * Decimal(factor.numerator) / Decimal(factor.denominator)
        if held in ("mg", "int"):
            same = want_si == value
        else:  # the float nearest the written value
            same = float(want_si) == float(value)
        if same:
            return None
        return (f"expected {label} {written}, got {_show(shown)}{unit} "
                f"(difference {_show(shown - want)}{unit})")
