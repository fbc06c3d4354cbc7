"""Activity records: from what integrators send to the run-time values formulas use.

A bad value is a RecordError naming the field and the reason: the caller reports it
with its row number and goes on with the next record. It is never guessed at: a
distance without a unit is an error, not kilometres.

Run-time representation (shared with the columnar evaluator):
- quantity: float(number as written) * float(unit factor to SI), both binary64;
- datetime: whole microseconds since 1970-01-01T00:00Z; a time written without an
  offset is in the methodology's time zone;
- date: whole days since 1970-01-01; integer: int; boolean: bool; text, choice: str.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, Optional
from zoneinfo import ZoneInfo

from dsl.ir import ast as ir
from dsl.types import Kind
from dsl.units import UnitError, parse_unit

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
EPOCH_DAY = dt.date(1970, 1, 1).toordinal()

_NUMBER_UNIT = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(.*?)\s*$")
_TRUE = {"true", "1", "yes", "y", "t", "是", "真"}
_FALSE = {"false", "0", "no", "n", "f", "否", "假"}


class RecordError(ValueError):
    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: Kind
    dimension: tuple = ()
    unit_text: str = ""
    choices: tuple = ()
    required: bool = True
    default: Any = None


@dataclass(frozen=True)
class Schema:
    """What a record of one methodology must contain."""

    fields: tuple[FieldSpec, ...]
    timezone: str
    time_default_from: tuple[str, ...]  # datetime inputs that stand in for a missing `time`

    @staticmethod
    def of(methodology: ir.Methodology) -> "Schema":
        fields = []
        for spec in methodology.inputs:
            t = spec.type
            default = spec.default
            if not spec.required and default is None:
                default = {Kind.TEXT: "", Kind.BOOLEAN: False, Kind.INTEGER: 0,
                           Kind.QUANTITY: 0.0}.get(t.kind)
            fields.append(FieldSpec(spec.name, t.kind, t.dimension, t.unit.text, t.choices,
                                    spec.required, runtime_value(default)))
        dt_inputs = tuple(s.name for s in methodology.inputs if s.type.kind == Kind.DATETIME)
        return Schema(tuple(fields), methodology.metadata.timezone, dt_inputs)


def runtime_value(value):
    """An IR constant (dates as date objects) -> its run-time representation."""
    if isinstance(value, dt.datetime):
        return datetime_to_us(value)
    if isinstance(value, dt.date):
        return value.toordinal() - EPOCH_DAY
    return value


def datetime_to_us(value: dt.datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def us_to_datetime(us: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=us)


@lru_cache(maxsize=256)
def _unit_factor(unit_text: str):
    unit = parse_unit(unit_text)
    return float(unit.factor), unit.dimension


@lru_cache(maxsize=16)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def parse_quantity(field: str, raw: Any, dimension: tuple, column_unit: Optional[str]) -> float:
    if isinstance(raw, Mapping) and "value" in raw:
        return parse_quantity(field, raw["value"], dimension, str(raw.get("unit", "")) or None)
    if isinstance(raw, bool):
        raise RecordError(field, f"expected a quantity, found {raw!r}")
    if isinstance(raw, (int, float)):
        number, unit_text = float(raw), ""
    else:
        match = _NUMBER_UNIT.match(str(raw))
        if not match:
            raise RecordError(field, f"`{raw}` is not a number with a unit")
        number, unit_text = float(match.group(1)), match.group(2)
    if not unit_text:
        unit_text = column_unit or ""
        if not unit_text and dimension:
            raise RecordError(field, f"`{raw}` has no unit (write e.g. `{raw} {_example_unit(dimension)}`)")
    if not unit_text:
        return number
    try:
        factor, unit_dimension = _unit_factor(unit_text)
    except UnitError:
        raise RecordError(field, f"unknown unit `{unit_text}`") from None
    if unit_dimension != dimension:
        raise RecordError(field, f"`{unit_text}` is not the right kind of unit here")
    if number != number or number in (float("inf"), float("-inf")):
        raise RecordError(field, f"`{raw}` is not a finite number")
    return number * factor if factor != 1.0 else number


def _example_unit(dimension) -> str:
    return {(("[length]", 1),): "km", (("[mass]", 1),): "kg", (("[time]", 1),): "min",
            (("[length]", 3),): "L"}.get(dimension, "<unit>")


def parse_datetime_us(field: str, raw: Any, tz: str) -> int:
    if isinstance(raw, dt.datetime):
        value = raw
    else:
        text = str(raw).strip()
        if text.endswith("Z") or text.endswith("z"):
            text = text[:-1] + "+00:00"
        try:
            value = dt.datetime.fromisoformat(text)
        except ValueError:
            raise RecordError(field, f"`{raw}` is not a date and time (2024-05-20T08:30 or with +08:00)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone(tz))
    return datetime_to_us(value)


def parse_date_days(field: str, raw: Any) -> int:
    if isinstance(raw, dt.date) and not isinstance(raw, dt.datetime):
        return raw.toordinal() - EPOCH_DAY
    try:
        return dt.date.fromisoformat(str(raw).strip()).toordinal() - EPOCH_DAY
    except ValueError:
        raise RecordError(field, f"`{raw}` is not a date (2024-05-20)") from None


def parse_value(spec: FieldSpec, raw: Any, tz: str, column_unit: Optional[str] = None):
    kind = spec.kind
    if kind == Kind.QUANTITY:
        return parse_quantity(spec.name, raw, spec.dimension, column_unit)
    if kind == Kind.INTEGER:
        if isinstance(raw, bool):
            raise RecordError(spec.name, f"expected a whole number, found {raw!r}")
        if isinstance(raw, int):
            return raw
        try:
            number = float(str(raw).strip())
        except ValueError:
            raise RecordError(spec.name, f"`{raw}` is not a whole number") from None
        if not math.isfinite(number) or number != int(number):
            raise RecordError(spec.name, f"`{raw}` is not a whole number")
        if abs(number) >= 2 ** 63:
            raise RecordError(spec.name, f"`{raw}` is too large")
        return int(number)
    if kind == Kind.BOOLEAN:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise RecordError(spec.name, f"`{raw}` is not true or false")
    if kind == Kind.CHOICE:
        text = str(raw).strip()
        if text not in spec.choices:
            raise RecordError(spec.name, f"`{raw}` is not one of {', '.join(spec.choices)}")
        return text
    if kind == Kind.DATETIME:
        return parse_datetime_us(spec.name, raw, tz)
    if kind == Kind.DATE:
        return parse_date_days(spec.name, raw)
    return str(raw)


def _present(raw) -> bool:
    return raw is not None and not (isinstance(raw, str) and raw.strip() == "")


def ingest(raw: Mapping[str, Any], schema: Schema, *, default_id: Optional[str] = None,
           column_units: Optional[Mapping[str, str]] = None) -> dict:
    """A raw record (CSV row, JSON object) -> run-time values. Raises RecordError."""
    if "__invalid__" in raw:  # the file reader could not make a record of this line
        raise RecordError("record", str(raw["__invalid__"]))
    units = column_units or {}
    tz = schema.timezone
    values: dict[str, Any] = {}
    for spec in (schema.fields if schema else ()):
        raw_value = raw.get(spec.name)
        if _present(raw_value):
            values[spec.name] = parse_value(spec, raw_value, tz, units.get(spec.name))
        elif spec.required:
            raise RecordError(spec.name, "missing")
        else:
            values[spec.name] = spec.default
    record_id = raw.get("id")
    if _present(record_id):
        values["id"] = str(record_id).strip()
    elif default_id is not None:
        values["id"] = default_id
    else:
        raise RecordError("id", "missing")
    account = raw.get("account")
    values["account"] = str(account).strip() if _present(account) else ""
    activity = raw.get("activity")
    values["activity"] = str(activity).strip() if _present(activity) else ""
    time = raw.get("time")
    if _present(time):
        values["time"] = parse_datetime_us("time", time, tz)
    else:
        stamps = [values[n] for n in schema.time_default_from if values.get(n) is not None]
        if not stamps:
            raise RecordError("time", "missing")
        values["time"] = min(stamps)
    return values


def from_example(record: tuple, schema: Optional[Schema] = None) -> dict:
    """An embedded example's record (IR values) -> run-time values; an optional input
    the example leaves out takes its default, as it would in a file."""
    values = {name: runtime_value(value) for name, value in record}
    for spec in (schema.fields if schema else ()):
        values.setdefault(spec.name, spec.default)
    values.setdefault("activity", "")
    return values
