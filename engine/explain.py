"""Explanations for people: each step of a record's evaluation in the units the
methodology was written in (the trace itself holds SI values)."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction
from functools import lru_cache

from .records import EPOCH_DAY, us_to_datetime, zone


def _number(value: float) -> str:
    return f"{value:.12g}"


def shown(step: dict, timezone: str = "") -> str:
    """A step's value as written: 8.2 km, 26.9 g/km, 220.58 g, 2024-05-20T08:00+08:00."""
    value = step.get("value")
    unit = step.get("unit") or ""
    factor = step.get("factor") or 1.0
    if step.get("mg") is not None:
        return f"{_number(step['mg'] / 1_000_000 / factor)} {unit}".strip()
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, float):
        return f"{_number(value / factor)} {unit}".strip() if unit and unit != "1" else _number(value)
    if step.get("type") == "datetime" and isinstance(value, int):
        moment = us_to_datetime(value)
        return (moment.astimezone(zone(timezone)) if timezone else moment).isoformat()
    if step.get("type") == "date" and isinstance(value, int):
        return dt.date.fromordinal(value + EPOCH_DAY).isoformat()
    return str(value)


def humanize(trace: list[dict], timezone: str = "") -> list[dict]:
    """Adds `shown` to each step (in place) and returns the trace."""
    for step in trace:
        if "value" in step or "mg" in step:
            step["shown"] = shown(step, timezone)
    return trace


# kind -> the line's text in English; engine/explain_zh.py has the same in Chinese
LINES = {
    "input": "  input      {name} = {shown}",
    "parameter": "  parameter  {name}{key} = {shown}   in force from {from_}; source: {source}{tag}",
    "let": "  let        {name} = {shown}{note}   line {line}",
    "output": "  output     {name} = {shown}{note}   line {line}",
    "counter": "  counter    {name} = {shown}{note}   line {line}",
    "history": "  history    {name} = {value}   {window}, line {line}",
    "require": "  require    {code} {verdict}   line {line}",
    "rule": "  rule       {status} {code}: {message}",
    "counted": "  counted    {name} + {amount}{unit}   account total {total}",
    "reward": "  reward     {name} × {count} = {value}   every {every} {source}; {remainder} kept",
}


def render(trace: list[dict], timezone: str = "", lang: str = "en") -> list[str]:
    """The explanation as lines of text, in English or (lang "zh") Chinese: the words are
    translated, the names, values, units and codes are not."""
    if lang == "zh":
        from . import explain_zh
        lines_of, word, message = explain_zh.LINES, explain_zh.WORDS.get, explain_zh.message
    else:
        lines_of, word, message = LINES, None, None

    def w(text: str) -> str:
        return (word(text) or text) if word else text

    lines = []
    for step in humanize(trace, timezone):
        kind = step["kind"]
        if kind not in lines_of:
            continue
        fields = {k: v for k, v in step.items() if k != "kind"}
        if kind == "parameter":
            fields["key"] = f"[{', '.join(map(str, step['key']))}]" if step["key"] else ""
            fields["tag"] = f" [{step['tag']}]" if step.get("tag") else ""
            fields["from_"] = step["from"]
        elif kind in ("let", "output", "counter"):
            fields["note"] = f" ({w(step['note'])})" if step.get("note") else ""
        elif kind == "history":
            fields["value"] = step["shown"] if step.get("status") == 0 else w("none (short or empty)")
        elif kind == "require":
            fields["verdict"] = w("passed" if step["passed"] else "FAILED")
        elif kind == "rule":
            fields["status"] = w(str(step["status"]))
            fields["message"] = message(step["message"]) if message else step["message"]
        elif kind == "counted":
            fields["unit"] = f" {step['unit']}" if step.get("unit") else ""
        lines.append(lines_of[kind].format(**fields))
    return lines


_SI_BASE = {"[mass]": "kg", "[length]": "m", "[time]": "s", "[temperature]": "K",
            "[current]": "A", "[substance]": "mol", "[luminosity]": "cd"}


def si_unit(dimension) -> str:
    """The SI unit of a dimension as text: kg, m, kg/m, kg·m^2/s^2."""
    def part(name, exp):
        base = _SI_BASE.get(name, name.strip("[]"))
        return base if abs(exp) == 1 else f"{base}^{abs(exp)}"
    top = [part(n, e) for n, e in dimension if e > 0]
    bottom = [part(n, e) for n, e in dimension if e < 0]
    text = "·".join(top) or "1"
    return text + ("/" + "·".join(bottom) if bottom else "")


@lru_cache(maxsize=256)
def _unit(text: str):
    from dsl.units import parse_unit
    return parse_unit(text)


def written_number(si_value: float, unit_text: str, *, as_record: bool = True) -> float:
    """`si_value` in the unit `unit_text`: the shortest decimal that, read back, gives
    `si_value` again bit for bit, else the float nearest the exact quotient. Read back as
    a record's `<number> <unit>` is (number × the unit's factor, engine/records.py) when
    `as_record`; as the methodology's text is (the exact decimal × factor) otherwise."""
    unit = _unit(unit_text)
    factor = float(unit.factor)
    exact = float(Fraction(si_value) / unit.factor)
    for digits in range(1, 18):
        text = f"{exact:.{digits}g}"
        candidate = float(text)
        back = (candidate * factor if factor != 1.0 else candidate) if as_record \
            else unit.to_si(Fraction(text))
        if back == si_value:
            return candidate
    return exact


def as_written(step: dict, timezone: str = "") -> dict:
    """A step with its value as the methodology wrote it (3 km, 35 g/km; a time as ISO
    text), and the internal value beside it (`si_value`, `si_unit`) when they differ.
    Input values given back as records (`"3 km"`) are read to the same SI values."""
    out = dict(step)
    value, unit = step.get("value"), step.get("unit") or ""
    if step.get("type") in ("datetime", "date") and isinstance(value, int) \
            and not isinstance(value, bool):
        out["value"] = shown(step, timezone)
        out["si_value"] = value
        out["si_unit"] = "µs since 1970-01-01T00:00Z" if step["type"] == "datetime" \
            else "days since 1970-01-01"
        return out
    if not unit or unit == "1" or isinstance(value, bool) or \
            not isinstance(value, (int, float)) and step.get("mg") is None:
        return out
    try:
        parsed = _unit(unit)
    except ValueError:  # not a unit the reader knows: as it was
        return out
    if step.get("mg") is not None:  # a mass kept in whole milligrams
        si = step["mg"] / 1_000_000
        out["value"] = float(Fraction(step["mg"], 1_000_000) / parsed.factor)
    else:
        si = float(value)
        out["value"] = written_number(si, unit, as_record=step.get("kind") == "input") \
            if parsed.factor != 1 else value
    if parsed.factor != 1:
        out["si_value"] = si
        out["si_unit"] = si_unit(parsed.dimension)
    return out
