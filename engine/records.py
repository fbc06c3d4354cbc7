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

from dsl.ir import ast as ir
from dsl.types import Kind
from dsl.units import UnitError, parse_unit
from dsl.zones import zone  # the one cache of zones

# The key a file reader puts in a row it could not make a record of (a JSON line that is
# no object, a CSV row with cells beyond its header), with the reason: the engine reports
# that row as invalid with its row number, and the others go on.
INVALID = "__invalid__"

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
EPOCH_DAY = dt.date(1970, 1, 1).toordinal()
_NAIVE_EPOCH = dt.datetime(1970, 1, 1)
_ONE_US = dt.timedelta(microseconds=1)
_QUARTER_HOUR_US = 900_000_000
_INF = float("inf")

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
    groups: tuple = ()  # dsl.ir.ast.Group: repeated groups (legs), read by engine/legs.py

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
        return Schema(tuple(fields), methodology.metadata.timezone, dt_inputs, methodology.groups)


_WHOLE = re.compile(r"[+-]?[0-9]+")  # ASCII digits: what int() takes beyond them is no number


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


class LocalClock:
    """A zone's local times (naive datetimes) -> UTC microseconds, exactly as
    `datetime_to_us(naive.replace(tzinfo=zone))` gives them (fold=0: an ambiguous local
    time takes the earlier offset, one in a gap the offset before the gap).

    Asking zoneinfo costs more than the rest of reading a record, so the offset is kept
    per local quarter hour; a quarter hour whose first and last microsecond get different
    offsets is never kept: there each instant is asked (as LocalTime does for UTC -> local).
    """

    def __init__(self, name: str):
        self.zone = zone(name)
        self._offsets: dict[int, int] = {}

    def to_us(self, naive: dt.datetime) -> int:
        if type(naive) is not dt.datetime or naive.fold:  # subclasses, fold=1: as written
            return datetime_to_us(naive.replace(tzinfo=self.zone))
        local = (naive - _NAIVE_EPOCH) // _ONE_US
        offset = self._offsets.get(local // _QUARTER_HOUR_US)
        if offset is None:
            offset = self._offset(local)
        return local - offset

    def _offset(self, local: int) -> int:
        bucket = local // _QUARTER_HOUR_US
        start = bucket * _QUARTER_HOUR_US
        try:
            offset = self._exact(start)
            steady = self._exact(start + _QUARTER_HOUR_US - 1) == offset
        except (OverflowError, ValueError):  # at the ends of datetime's range
            steady = False
        if not steady:
            return self._exact(local)
        if len(self._offsets) > 200_000:
            self._offsets.clear()
        self._offsets[bucket] = offset
        return offset

    def _exact(self, local: int) -> int:
        naive = _NAIVE_EPOCH + dt.timedelta(microseconds=local)
        return local - datetime_to_us(naive.replace(tzinfo=self.zone))


@lru_cache(maxsize=16)
def local_clock(name: str) -> LocalClock:
    return LocalClock(name)


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
        from dsl.units import describe, units_of
        accepted = ", ".join(units_of(dimension))
        raise RecordError(field, f"`{unit_text}` is not the right kind of unit here: {field} is "
                          f"{describe(dimension)}, `{unit_text}` {describe(unit_dimension)}"
                          + (f" (units accepted: {accepted}, ...)" if accepted else ""))
    if number != number or number in (float("inf"), float("-inf")):
        raise RecordError(field, f"`{raw}` is not a finite number")
    return number * factor if factor != 1.0 else number


def _example_unit(dimension) -> str:
    return {(("[length]", 1),): "km", (("[mass]", 1),): "kg", (("[time]", 1),): "min",
            (("[length]", 3),): "L"}.get(dimension, "<unit>")


def parse_datetime_us(field: str, raw: Any, tz: str) -> int:
    return _datetime_us(field, raw, local_clock(tz))


def _datetime_us(field: str, raw: Any, clock: LocalClock) -> int:
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
        return clock.to_us(value)
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
            if not -2 ** 63 <= raw < 2 ** 63:
                raise RecordError(spec.name, f"`{raw}` is too large")
            return raw
        if isinstance(raw, float):  # a JSON number or a typed column: whole, or refused
            if not math.isfinite(raw) or raw != int(raw):
                raise RecordError(spec.name, f"`{raw}` is not a whole number")
            number = int(raw)
        else:  # text: digits only, as a whole number is written (not `1.5e3`, not `7.0`)
            text = str(raw).strip()
            if not _WHOLE.fullmatch(text):
                raise RecordError(spec.name, f"`{raw}` is not a whole number"
                                  + (": write its digits, e.g. 1500" if text[:1].isdigit() else ""))
            number = int(text)
        if abs(number) >= 2 ** 63:
            raise RecordError(spec.name, f"`{raw}` is too large")
        return number
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
    return reader(schema).read(raw, default_id, column_units)


@lru_cache(maxsize=64)
def reader(schema: Schema) -> "RecordReader":
    return RecordReader(schema)


class RecordReader:
    """Reads the records of one schema (what `ingest` does), with each input's way of
    reading chosen once instead of for every record."""

    def __init__(self, schema: Schema):
        tz = schema.timezone
        self.fields = tuple((spec.name, _field_reader(spec, tz), spec.required, spec.default)
                            for spec in schema.fields)
        self.read_time = _datetime_reader("time", local_clock(tz))
        self.time_default_from = schema.time_default_from
        self.tz = tz
        self.groups = ()
        if schema.groups:  # (name, reader) of each list of legs (engine/legs.py)
            from .legs import reader as leg_reader
            self.groups = tuple((group.name, leg_reader(group)) for group in schema.groups)

    def read(self, raw: Mapping[str, Any], default_id: Optional[str] = None,
             column_units: Optional[Mapping[str, str]] = None) -> dict:
        if raw.get(INVALID) is not None:  # the file reader could not make a record of this row
            raise RecordError("record", str(raw[INVALID]))
        units = column_units or {}
        values: dict[str, Any] = {}
        for name, read_field, required, default in self.fields:
            value = read_field(raw.get(name), units)
            if value is _ABSENT:
                if required:
                    raise RecordError(name, "missing")
                value = default
            values[name] = value
        for name, legs in self.groups:
            values[name] = legs.read(raw, self.tz, units)
        record_id = _text(raw.get("id"))
        if record_id is not None:
            values["id"] = record_id
        elif default_id is not None:
            values["id"] = default_id
        else:
            raise RecordError("id", "missing")
        values["account"] = _text(raw.get("account")) or ""
        values["activity"] = _text(raw.get("activity")) or ""
        time = self.read_time(raw.get("time"))
        if time is _ABSENT:
            time = _earliest(values, self.time_default_from)
        values["time"] = time
        return values


def _earliest(values: dict, names: tuple[str, ...]) -> int:
    """The earliest of the datetime inputs that are there (a record's default time)."""
    earliest = None
    for name in names:
        stamp = values.get(name)
        if stamp is not None and (earliest is None or stamp < earliest):
            earliest = stamp
    if earliest is None:
        raise RecordError("time", "missing")
    return earliest


_ABSENT = object()  # what a field reader gives for a value that is not there (None, blank)


def _text(raw) -> Optional[str]:
    """str(raw).strip(), or None when the value is not there."""
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw.strip() or None
    return str(raw).strip()


def _field_reader(spec: FieldSpec, tz: str):
    """`read(raw, column_units)` for one input: parse_value, or _ABSENT; with shortcuts
    for the usual quantities, choices and datetimes (they give the same values)."""
    name = spec.name
    if spec.kind == Kind.QUANTITY:
        return _quantity_reader(spec)
    if spec.kind == Kind.CHOICE:
        choices = frozenset(c for c in spec.choices if c and c == c.strip())

        def read_choice(raw, column_units):
            if type(raw) is str and raw in choices:  # as written: nothing to strip
                return raw
            return parse_value(spec, raw, tz) if _present(raw) else _ABSENT
        return read_choice
    if spec.kind == Kind.DATETIME:
        return _datetime_reader(name, local_clock(tz))

    def read_other(raw, column_units):
        return parse_value(spec, raw, tz, column_units.get(name)) if _present(raw) else _ABSENT
    return read_other


def _datetime_reader(field: str, clock: LocalClock):
    """parse_datetime_us for one field, or _ABSENT; text takes the shortest way."""
    def read_datetime(raw, column_units=None):
        if type(raw) is str:
            text = raw.strip()
            if not text:
                return _ABSENT
            if text[-1] == "Z" or text[-1] == "z":
                text = text[:-1] + "+00:00"
            try:
                value = dt.datetime.fromisoformat(text)
            except ValueError:
                raise RecordError(field, f"`{raw}` is not a date and time (2024-05-20T08:30 or with +08:00)") from None
            return clock.to_us(value) if value.tzinfo is None else datetime_to_us(value)
        return _datetime_us(field, raw, clock) if _present(raw) else _ABSENT
    return read_datetime


def _quantity_reader(spec: FieldSpec):
    """parse_quantity for one input, with a shortcut for text such as `8.2 km`: a plain
    decimal number, one space and a unit of the input's kind (its factor is kept per
    unit text); anything else goes to parse_quantity."""
    name, dimension = spec.name, spec.dimension
    factors: dict[str, float] = {}

    def read_quantity(raw, column_units):
        if type(raw) is str:
            number, _, unit = raw.partition(" ")
            if number.isascii() and number.replace(".", "", 1).isdigit():
                unit = unit or column_units.get(name)
                factor = factors.get(unit)
                if factor is None and isinstance(unit, str):
                    factor = _plain_unit_factor(unit, dimension, factors)
                value = float(number)  # the regular expression's number, and never nan
                if factor is not None and value != _INF:
                    return value * factor if factor != 1.0 else value
        if not _present(raw):
            return _ABSENT
        return parse_quantity(name, raw, dimension, column_units.get(name))
    return read_quantity


def _plain_unit_factor(unit: str, dimension: tuple, factors: dict) -> Optional[float]:
    """The factor of a unit text as parse_quantity would take it (no surrounding space,
    no line break, known, of the right dimension), remembered in `factors`; else None."""
    if not unit or unit != unit.strip() or "\n" in unit or len(factors) >= 64:
        return None
    try:
        factor, unit_dimension = _unit_factor(unit)
    except UnitError:
        return None
    if unit_dimension != dimension:
        return None
    factors[unit] = factor
    return factor


def from_example(record: tuple, schema: Optional[Schema] = None) -> dict:
    """An embedded example's record (IR values) -> run-time values; an optional input
    the example leaves out takes its default, as it would in a file."""
    values = {name: runtime_value(value) if not isinstance(value, tuple) else
              [{k: runtime_value(v) for k, v in leg} for leg in value]  # a list of legs
              for name, value in record}
    for spec in (schema.fields if schema else ()):
        values.setdefault(spec.name, spec.default)
    if schema is not None and schema.groups:
        from .legs import reader as leg_reader
        for group in schema.groups:
            legs = dict(record).get(group.name) or ()  # as the checker wrote them
            values[group.name] = leg_reader(group).from_example(legs)
    values.setdefault("activity", "")
    return values


# engine/legs.py reads a leg's fields as a record's: the same readers and the same test of
# a value that is there
field_reader = _field_reader
present = _present
