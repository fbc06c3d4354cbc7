"""Explanations for people: each step of a record's evaluation in the units the
methodology was written in (the trace itself holds SI values)."""

from __future__ import annotations

import datetime as dt

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


def render(trace: list[dict], timezone: str = "") -> list[str]:
    lines = []
    for step in humanize(trace, timezone):
        kind = step["kind"]
        if kind == "input":
            lines.append(f"  input      {step['name']} = {step['shown']}")
        elif kind == "parameter":
            key = f"[{', '.join(map(str, step['key']))}]" if step["key"] else ""
            tag = f" [{step['tag']}]" if step.get("tag") else ""
            lines.append(f"  parameter  {step['name']}{key} = {step['shown']}   "
                         f"in force from {step['from']}; source: {step['source']}{tag}")
        elif kind in ("let", "output"):
            note = f" ({step['note']})" if step.get("note") else ""
            lines.append(f"  {kind:<10} {step['name']} = {step['shown']}{note}   line {step['line']}")
        elif kind == "history":
            value = step["shown"] if step.get("status") == 0 else "none (short or empty)"
            lines.append(f"  history    {step['name']} = {value}   {step['window']}, line {step['line']}")
        elif kind == "require":
            verdict = "passed" if step["passed"] else "FAILED"
            lines.append(f"  require    {step['code']} {verdict}   line {step['line']}")
        elif kind == "rule":
            lines.append(f"  rule       {step['status']} {step['code']}: {step['message']}")
    return lines
