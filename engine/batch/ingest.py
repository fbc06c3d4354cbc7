"""Raw columns (a Polars frame of what a file holds) -> the run-time columns formulas use.

The same accept/reject rules as engine/records.py, column by column: each field is read
by a fast path (text.py for text cells, casts for typed columns) that is exact where it
answers; a row any fast path is not sure about is read by engine/records.ingest itself,
so invalid rows get the scalar path's `field: reason` (first failing field in schema
order) and unusual but valid cells get the scalar path's value.

Run-time columns: quantity float64, integer int64, boolean bool, date int64 days,
datetime int64 µs UTC, choice `Cat` (codes into the choices), text a String Series.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any, Mapping, Optional

import numpy as np
import polars as pl

from dsl.types import Kind

from .. import records
from ..records import RecordError, Schema
from . import text as tx
from .legs import legs_column
from .timezones import zone_table
from .values import Cat

_NUMERIC = (pl.Float64, pl.Float32, pl.Int64, pl.Int32, pl.Int16, pl.Int8,
            pl.UInt64, pl.UInt32, pl.UInt16, pl.UInt8)
_BOOL_TEXT = ("true", "false", "1", "0", "True", "False", "TRUE", "FALSE", "yes", "no",
              "Yes", "No", "YES", "NO", "y", "n", "t", "f", "Y", "N", "T", "F")


@dataclass
class Ingested:
    """One chunk of rows, read. Invalid rows keep garbage in the value columns."""

    n: int
    rows: np.ndarray                 # int64 row numbers
    columns: dict[str, Any]          # input name (and `time`, `activity`) -> values
    ids: pl.Series                   # String: each row's result id
    accounts: pl.Series              # String
    invalid: np.ndarray              # bool
    messages: dict[int, str] = field(default_factory=dict)  # position -> "field: reason"


class ReadDatetimes:
    """Datetime text columns as one ingest_frame read them, for another ingest_frame of
    the same rows (the same frame, or `gather` of both) to take instead of reading them
    again: the API reads each record's activity time to choose its version, then the
    batch engine reads the whole record (the same text, the same reader): the second
    reading was 1-2 ms of CPU of a 10,000-record request (docs/api.md). Keyed by column
    and time zone (a naive time is local); the values are copied out, as the reader
    writes into its columns."""

    def __init__(self, height: int, read: Optional[dict] = None):
        self.height = height
        self.read: dict[tuple[str, Optional[str]], tuple[np.ndarray, np.ndarray, np.ndarray]] = read or {}

    def gather(self, positions) -> "ReadDatetimes":
        """The same columns for the rows at `positions`."""
        at = np.asarray(positions, dtype=np.int64)
        return ReadDatetimes(at.size, {key: tuple(a[at] for a in arrays)
                                       for key, arrays in self.read.items()})


def _is_string(dtype) -> bool:
    return dtype == pl.String


def _is_numeric(dtype) -> bool:
    return any(dtype == t for t in _NUMERIC)


def _is_categorical(dtype) -> bool:
    return isinstance(dtype, (pl.Categorical, pl.Enum)) or dtype == pl.Categorical


class _Reader:
    def __init__(self, frame: pl.DataFrame, schema: Schema, units: Mapping[str, str], native=None,
                 datetimes: Optional[ReadDatetimes] = None):
        self.frame = frame
        # another reading's datetime text columns, for the same rows only
        self.datetimes = datetimes if datetimes is not None and datetimes.height == frame.height else None
        self.schema = schema
        self.units = units
        self.parse = native if native is not None else tx  # text readers: in C, or text.py's
        self.n = frame.height
        self.zone = zone_table(schema.timezone)
        self._bytes: dict[str, tx.Bytes] = {}

    def series(self, name: str) -> Optional[pl.Series]:
        return self.frame.get_column(name) if name in self.frame.columns else None

    def text(self, name: str, series: pl.Series) -> tx.Bytes:
        if name not in self._bytes:
            self._bytes[name] = tx.Bytes.of(series)
        return self._bytes[name]

    def datetime_text(self, spec, series: pl.Series):
        """_from_text() of a datetime text column and its absent cells: (µs UTC, ok,
        absent), as self.datetimes holds it when given (then put there when not yet)."""
        key = (spec.name, self.schema.timezone)
        kept = self.datetimes.read.get(key) if self.datetimes is not None else None
        if kept is None:
            b = self.text(spec.name, series)
            values, ok = self._from_text(spec, series, b, None)
            absent = ~b.valid | (b.length == 0)
            if self.datetimes is None:
                return values, ok, absent
            kept = self.datetimes.read[key] = (values, ok, absent)
        return tuple(a.copy() for a in kept)

    # ------------------------------------------------------------ one field
    def field(self, spec: records.FieldSpec):
        """(values, ok): ok False where the row must be read by engine/records.py."""
        n = self.n
        series = self.series(spec.name)
        if series is None or series.dtype == pl.Null:
            return self._default_fill(spec, self._empty(spec), np.ones(n, dtype=bool),
                                      np.zeros(n, dtype=bool))
        values, ok, _ = self._parse(spec, series)
        return values, ok

    def _empty(self, spec):
        n = self.n
        kind = spec.kind
        if kind == Kind.QUANTITY:
            return np.zeros(n)
        if kind in (Kind.INTEGER, Kind.DATE, Kind.DATETIME):
            return np.zeros(n, dtype=np.int64)
        if kind == Kind.BOOLEAN:
            return np.zeros(n, dtype=bool)
        if kind == Kind.CHOICE:
            return Cat(np.full(n, -1, dtype=np.int32), tuple(spec.choices))
        return pl.repeat("", n, dtype=pl.String, eager=True).alias(spec.name)

    def _default_fill(self, spec, values, absent: np.ndarray, ok: np.ndarray):
        """Absent cells: the default when the input is optional, else the slow path."""
        if not absent.any():
            return values, ok
        if spec.required:
            return values, ok & ~absent
        default = spec.default
        kind = spec.kind
        if kind == Kind.CHOICE:
            values.codes[absent] = spec.choices.index(default)
        elif kind == Kind.TEXT:
            values = values.zip_with(pl.Series(~absent),
                                     pl.repeat(default, self.n, dtype=pl.String, eager=True))
        else:
            values[absent] = default
        return values, ok | absent

    def _parse(self, spec, series: pl.Series):
        kind = spec.kind
        n = self.n
        dtype = series.dtype
        unit = self.units.get(spec.name)
        if _is_string(dtype):
            if kind == Kind.DATETIME:
                values, ok, absent = self.datetime_text(spec, series)
            else:
                b = self.text(spec.name, series)
                absent = ~b.valid | (b.length == 0)
                values, ok = self._from_text(spec, series, b, unit)
            ok &= ~absent
            values, ok = self._default_fill(spec, values, absent, ok)
            return values, ok, ~absent
        nulls = series.is_null().to_numpy() if series.null_count() else np.zeros(n, dtype=bool)
        values, ok = self._from_typed(spec, series, unit)
        ok &= ~nulls
        values, ok = self._default_fill(spec, values, nulls, ok)
        return values, ok, ~nulls

    def _from_text(self, spec, series, b: tx.Bytes, unit):
        kind = spec.kind
        n = self.n
        parse = self.parse
        if kind == Kind.QUANTITY:
            d = parse.decimals(b)
            codes, texts = parse.unit_codes(b, d.unit_start, d.ok)
            factors = np.zeros(len(texts) + 1)
            good = np.zeros(len(texts) + 1, dtype=bool)
            for i, text in enumerate(texts):
                factor = _unit_check(text, unit, spec.dimension)
                if factor is not None:
                    factors[i], good[i] = factor, True
            ok = d.ok & good[codes]  # code -1 -> the last (not good) slot
            factor = factors[codes]
            value = np.where(factor != 1.0, d.value * factor, d.value)
            return value, ok
        if kind == Kind.INTEGER:
            return tx.whole_numbers(b, parse.decimals(b))
        if kind == Kind.BOOLEAN:
            index = parse.match_strings(b, _BOOL_TEXT)
            truth = np.array([t.lower() in records._TRUE for t in _BOOL_TEXT] + [False])
            return truth[index], index >= 0
        if kind == Kind.CHOICE:
            index = parse.match_strings(b, spec.choices)
            return Cat(index, tuple(spec.choices)), index >= 0
        if kind == Kind.DATETIME:
            local, offset, has_offset, ok = parse.iso_datetimes(b)
            return self._to_utc(local, offset, has_offset, ok), ok
        if kind == Kind.DATE:
            return tx.iso_dates(b)
        # text: the cell as written; one that might be only spaces is absent to records.py
        return series.rename(spec.name), ~tx.maybe_padded(series)

    def _to_utc(self, local, offset, has_offset, ok):
        naive = ok & ~has_offset
        out = local - offset
        if naive.any():
            if naive.all():
                return self.zone.local_to_utc(local)
            out[naive] = self.zone.local_to_utc(local[naive])
        return out

    def _from_typed(self, spec, series: pl.Series, unit):
        kind = spec.kind
        n = self.n
        dtype = series.dtype
        none = np.zeros(n, dtype=bool)
        if kind == Kind.QUANTITY and _is_numeric(dtype):
            if series.null_count():
                series = series.fill_null(0)
            number = (series if dtype == pl.Float64 else series.cast(pl.Float64)).to_numpy()
            if dtype == pl.UInt64 or dtype == pl.Int64:
                pass  # float(int) rounds to nearest, as the cast does
            factor = _unit_check("", unit, spec.dimension)
            if factor is None:
                return np.zeros(n), none
            if unit:
                finite = np.isfinite(number)
                value = number * factor if factor != 1.0 else number
                return value, finite
            return number, np.ones(n, dtype=bool)
        if kind == Kind.INTEGER and _is_numeric(dtype):
            if dtype == pl.UInt64:
                raw = series.to_numpy()
                return raw.astype(np.int64), raw < 2 ** 63
            if dtype in (pl.Float64, pl.Float32):
                number = series.cast(pl.Float64).to_numpy()
                with np.errstate(invalid="ignore"):
                    ok = np.isfinite(number) & (np.floor(number) == number) & (np.abs(number) < 2.0 ** 63)
                return np.where(ok, number, 0).astype(np.int64), ok
            return series.cast(pl.Int64).to_numpy(), np.ones(n, dtype=bool)
        if kind == Kind.BOOLEAN and dtype == pl.Boolean:
            return series.fill_null(False).to_numpy(), np.ones(n, dtype=bool)
        if kind == Kind.CHOICE and _is_categorical(dtype):
            series, categories = _enum(series)
            physical = series.to_physical()
            if tuple(categories) == tuple(spec.choices) and not series.null_count():
                # the column's own Enum is the choice (a typed file, the usual case): its
                # codes are the choice's
                return Cat(physical.cast(pl.Int32).to_numpy(), tuple(spec.choices)), np.ones(n, dtype=bool)
            mapping = np.array([spec.choices.index(c) if c in spec.choices else -1 for c in categories] + [-1],
                               dtype=np.int32)
            codes = physical.fill_null(len(categories)).cast(pl.Int64).to_numpy()
            index = mapping[np.minimum(codes, len(categories))]
            return Cat(index, tuple(spec.choices)), index >= 0
        if kind == Kind.DATETIME and isinstance(dtype, pl.Datetime):
            us, ok = _datetime_us(series)
            if dtype.time_zone is None:
                return self.zone.local_to_utc(us), ok
            return us, ok
        if kind == Kind.DATE and dtype == pl.Date:
            return series.to_physical().cast(pl.Int64).fill_null(0).to_numpy(), np.ones(n, dtype=bool)
        if kind == Kind.TEXT and _is_categorical(dtype):
            return series.cast(pl.String).rename(spec.name), np.ones(n, dtype=bool)
        return self._empty(spec), none  # anything else: engine/records.py decides


def _enum(series: pl.Series) -> tuple[pl.Series, list[str]]:
    """A Categorical or Enum column as an Enum and its categories (codes index them)."""
    dtype = series.dtype
    if isinstance(dtype, pl.Enum):
        return series, list(dtype.categories)
    categories = series.drop_nulls().unique().cast(pl.String).to_list()
    return series.cast(pl.String).cast(pl.Enum(categories)), categories


def _datetime_us(series: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    unit = series.dtype.time_unit
    if series.null_count():
        raw = series.to_physical().fill_null(0).to_numpy().astype(np.int64, copy=False)
    else:
        raw = series.to_numpy().view(np.int64)
    n = raw.size
    if unit == "us":
        return raw, np.ones(n, dtype=bool)
    if unit == "ms":
        return raw * 1000, np.ones(n, dtype=bool)
    return raw // 1000, raw % 1000 == 0  # nanoseconds: exact ones only


def _unit_check(text: str, column_unit: Optional[str], dimension) -> Optional[float]:
    """The factor engine/records.parse_quantity uses for this unit text, or None when it
    would reject it (the row is then read by records.py for the message)."""
    if text != text.strip() or any(c.isspace() for c in text[:1] + text[-1:]):
        return None
    unit_text = text or (column_unit or "")
    if not unit_text:
        return None if dimension else 1.0
    try:
        factor, unit_dimension = records._unit_factor(unit_text)
    except Exception:
        return None
    if unit_dimension != dimension:
        return None
    return factor


def text_series(column) -> pl.Series:
    """A text column (a String Series, or a Cat) as a String Series."""
    if isinstance(column, Cat):
        labels = pl.Series(list(column.labels) + [""], dtype=pl.String)
        if len(column.labels) == 1 and not column.codes.any():
            # one label in every row (an input the file does not have, as `activity`
            # mostly): repeated, not gathered row by row (6% of a carried run's chunk
            # threads, 50M capped rides, 2026-12-07)
            return labels.new_from_index(0, column.codes.size)
        return labels.gather(np.where(column.codes >= 0, column.codes, len(column.labels)))
    return column


def _scatter(series: pl.Series, positions: np.ndarray, values: list) -> pl.Series:
    if positions.size == 0:
        return series
    series = series.clone()
    series.scatter(positions, pl.Series(values, dtype=series.dtype))
    return series


# ---------------------------------------------------------------- builtins
def _stripped(reader: _Reader, name: str):
    """A builtin text column stripped as str.strip() does: (values, present)."""
    series = reader.series(name)
    n = reader.n
    if series is None or series.dtype == pl.Null:
        return pl.repeat("", n, dtype=pl.String, eager=True).alias(name), np.zeros(n, dtype=bool)
    if not _is_string(series.dtype):
        if _is_categorical(series.dtype):
            series = series.cast(pl.String)
        else:
            raw = series.to_list()
            out = [str(v).strip() if records._present(v) else "" for v in raw]
            return pl.Series(name, out, dtype=pl.String), np.array([records._present(v) for v in raw], dtype=bool)
    suspect, present = reader.parse.padded(series)
    values = series.fill_null("") if series.null_count() else series
    if suspect.any():
        positions = np.flatnonzero(suspect)
        cells = values.gather(positions).to_list()
        stripped = [c.strip() for c in cells]
        values = _scatter(values, positions, stripped)
        present[positions] = np.array([s != "" for s in stripped], dtype=bool)
    return values.rename(name), present


def _ids(reader: _Reader, first_row: int) -> pl.Series:
    """Each row's result id: the `id` cell stripped, `row-N` where there is none."""
    ids, id_present = _stripped(reader, "id")
    if not id_present.all():
        n = reader.n
        numbered = pl.select(pl.format("row-{}", pl.int_range(first_row, first_row + n))).to_series()
        ids = ids.zip_with(pl.Series(id_present), numbered)
    return ids


def record_ids(frame: pl.DataFrame, schema: Schema, first_row: int = 1, native=None) -> pl.Series:
    """The ids ingest_frame gives the rows of `frame` (the same code), from the `id` column
    alone: what the duplicate-id check reads before the records are evaluated
    (BatchEngine.duplicate_rows). A row the fast path is not sure of may be read another way
    by ingest_frame, but only for an invalid row (which no duplicate check counts) does its
    id come out otherwise (the cell unstripped)."""
    return _ids(_Reader(frame, schema, {}, native), first_row)


def record_accounts(frame: pl.DataFrame, schema: Schema, native=None) -> pl.Series:
    """The accounts ingest_frame gives the rows of `frame` (the same code), from the
    `account` column alone: what a spilled run's results are shown with (store.DiskStore's
    `recall`). As for record_ids, only an invalid row, read the slow way, may come out
    otherwise (the cell unstripped)."""
    return _stripped(_Reader(frame, schema, {}, native), "account")[0]


def ingest_frame(frame: pl.DataFrame, schema: Schema, column_units: Optional[Mapping[str, str]] = None,
                 first_row: int = 1, native=None, datetimes: Optional[ReadDatetimes] = None) -> Ingested:
    """`native`: a native_text.NativeText, to read text cells in C (else text.py's NumPy);
    `datetimes`: the datetime text columns of these rows as read before (ReadDatetimes),
    filled with those read here."""
    units = dict(column_units or {})
    reader = _Reader(frame, schema, units, native, datetimes)
    n = reader.n
    rows = np.arange(first_row, first_row + n, dtype=np.int64)
    columns: dict[str, Any] = {}
    ok = np.ones(n, dtype=bool)
    if records.INVALID in frame.columns:  # rows the file reader refused: read slowly, refused
        ok &= frame[records.INVALID].is_null().to_numpy()
    for spec in schema.fields:
        values, field_ok = reader.field(spec)
        columns[spec.name] = values
        ok &= field_ok
    for group in schema.groups:  # repeated groups (legs): row by row, engine/legs.py's reader
        columns[group.name], legs_ok = legs_column(frame, group, units, schema.timezone, reader)
        ok &= legs_ok
    # id, account, activity
    ids = _ids(reader, first_row)
    accounts, _ = _stripped(reader, "account")
    if reader.series("activity") is None:
        columns["activity"] = Cat(np.zeros(n, dtype=np.int32), ("",))
    else:
        columns["activity"], _ = _stripped(reader, "activity")
    # time: written, or the earliest datetime input
    time_series = reader.series("time")
    stamps = [columns[name] for name in schema.time_default_from]
    fallback_time = None
    if stamps:
        fallback_time = stamps[0]
        for s in stamps[1:]:
            fallback_time = np.minimum(fallback_time, s)
    if time_series is None or time_series.dtype == pl.Null:
        if fallback_time is None:
            ok[:] = False
            time = np.zeros(n, dtype=np.int64)
        else:
            time = fallback_time
    else:
        spec = records.FieldSpec("time", Kind.DATETIME, required=fallback_time is None)
        if _is_string(time_series.dtype):
            written, time_ok, absent = reader.datetime_text(spec, time_series)
        else:
            written, time_ok = reader._from_typed(spec, time_series, None)
            absent = time_series.is_null().to_numpy()
        if fallback_time is None:
            ok &= time_ok & ~absent
            time = written
        else:
            ok &= (time_ok & ~absent) | absent
            time = np.where(absent, fallback_time, written)
    columns["time"] = np.asarray(time, dtype=np.int64)
    invalid = np.zeros(n, dtype=bool)
    messages: dict[int, str] = {}
    slow = np.flatnonzero(~ok)
    if slow.size:
        ids, accounts = _read_slowly(frame, schema, units, rows, slow, columns, ids, accounts,
                                     invalid, messages)
    return Ingested(n, rows, columns, ids, accounts, invalid, messages)


def _read_slowly(frame, schema: Schema, units, rows, positions, columns, ids, accounts,
                 invalid, messages):
    """Rows the fast paths were not sure of, read by engine/records.py one at a time."""
    fix_id, fix_account = [], []
    text_fixes: dict[str, list] = {}
    for position in positions.tolist():
        raw = frame.row(position, named=True)
        row = int(rows[position])
        try:
            values = records.ingest(raw, schema, default_id=f"row-{row}", column_units=units)
        except RecordError as error:
            invalid[position] = True
            messages[position] = f"{error.field}: {error.reason}"
            fix_id.append(str(raw.get("id") or f"row-{row}"))
            fix_account.append(str(raw.get("account") or ""))
            continue
        fix_id.append(values["id"])
        fix_account.append(values["account"])
        for spec in schema.fields:
            value = values[spec.name]
            column = columns[spec.name]
            if spec.kind == Kind.CHOICE:
                column.codes[position] = spec.choices.index(value)
            elif spec.kind == Kind.TEXT:
                text_fixes.setdefault(spec.name, []).append((position, value))
            else:
                column[position] = value
        text_fixes.setdefault("activity", []).append((position, values["activity"]))
        columns["time"][position] = values["time"]
    for name, fixes in text_fixes.items():
        columns[name] = _scatter(text_series(columns[name]), np.array([p for p, _ in fixes], dtype=np.int64),
                                 [v for _, v in fixes])
    ids = _scatter(ids, positions, fix_id)
    accounts = _scatter(accounts, positions, fix_account)
    return ids, accounts


def raw_frame(raw_records) -> pl.DataFrame:
    """Records as dicts (what Engine.evaluate takes) -> a frame of their raw values.

    A column whose values are all text (or missing) becomes a String column; any other
    column keeps the Python values (Object) and is read by engine/records.py.
    """
    rows = raw_records if isinstance(raw_records, list) else list(raw_records)
    plain = set(map(type, rows)) <= {dict}  # dicts only (JSON objects): C-speed calls below
    if not plain:
        rows = [r if isinstance(r, Mapping) else {} for r in rows]
    names = dict.fromkeys(chain.from_iterable(rows))  # in the order records first show them
    data = {}
    text_only = {str, type(None)}
    get = dict.get if plain else (lambda r, name: r.get(name))
    for name in names:
        values = list(map(get, rows, repeat(name, len(rows))))
        # a set of the values' types, not isinstance per value: a third of an API request
        # of 10,000 records went to that check
        if set(map(type, values)) <= text_only:
            data[name] = pl.Series(name, values, dtype=pl.String)
        else:
            data[name] = pl.Series(name, values, dtype=pl.Object)
    return pl.DataFrame(data, height=len(rows)) if data else pl.DataFrame(height=len(rows))
