"""Reading text cells without a compiler: text.py's readers, and the Polars ones measured
against them (bench/bench_text.py), give engine/records.py's bits wherever they answer.

Issue 11 asked to replace text.py's NumPy readers by Polars expressions where Polars
gives the same bits and is faster. The Polars readers do give the same bits (checked
here, on adversarial cells) but are not faster (bench/bench_text.py), so text.py's stay;
these tests keep both halves of that decision true:

- every reader, text.py's or Polars', gives on each row it accepts exactly what
  engine/records.py gives (the float's bits, whole microseconds), and ingest reads the
  rows it does not accept with engine/records.py itself;
- the Polars readers accept exactly text.py's cells, so the benchmark compares like
  with like;
- the differences of the bare Polars parsers named in docs/engine.md (why a regular
  expression must guard them) are still there: if Polars changes, these say so.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import struct
from pathlib import Path

import numpy as np
import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl.types import Kind
from engine import records
from engine.batch import text as tx
from engine.batch.ingest import ReadDatetimes, ingest_frame
from engine.records import FieldSpec, RecordError, Schema

# the Polars readers the benchmark measures live with it, in bench/ (not a package)
_spec = importlib.util.spec_from_file_location(
    "bench_text", Path(__file__).resolve().parents[2] / "bench" / "bench_text.py")
bench_text = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_text)

ZONE = "Asia/Shanghai"
LENGTH = (("[length]", 1),)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


# ---------------------------------------------------------------- generated cells
_DIGITS = st.text(alphabet="0123456789", min_size=0, max_size=26)


@st.composite
def number_cells(draw):
    """Numbers as written and as mistyped: many digits, exponents, signs, dots, spaces of
    every kind, Unicode digits, underscores, words float() knows, units."""
    sign = draw(st.sampled_from(["", "", "-", "+", "--", "+-"]))
    whole, frac = draw(_DIGITS), draw(_DIGITS)
    dot = draw(st.sampled_from(["", ".", ".", ".."]))
    exponent = draw(st.sampled_from(["", "", "e3", "E-2", "e+400", "e-330", "e", "E5"]))
    number = sign + whole + dot + frac + exponent
    number = draw(st.sampled_from([number, number, number, "inf", "-nan", "Infinity", "1_0", "1_000.5",
                                   "１２.５", "٣.٥", "0x10", "½", ".", "", "0" * 30 + "1.5"]))
    space = draw(st.sampled_from(["", " ", " ", "  ", "\t", "\u00a0", "\u3000", "\n"]))
    unit = draw(st.sampled_from(["", "", "km", "m", "mi", "km ", "e", "E3", "k m", "公里", ".5", "km\n"]))
    lead = draw(st.sampled_from(["", "", "", " ", "\u2003", "\t"]))
    return lead + number + space + unit


# the usual cells too, so that many rows are accepted (the readers answer for them)
_USUAL_QUANTITY = st.tuples(st.sampled_from(["", "-", "+"]), st.text("0123456789", min_size=1, max_size=20),
                            st.text("0123456789", max_size=8), st.sampled_from(["", " km", " m", "km", "  mi"])) \
    .map(lambda p: f"{p[0]}{p[1]}.{p[2]}{p[3]}")
_NUMBER_CELL = st.one_of(_USUAL_QUANTITY, number_cells(), st.text(max_size=30), st.none())


@st.composite
def datetime_cells(draw):
    """ISO datetimes with the odd corners: years before 1970 and at the ends, fractions of
    1 to 7 digits, T, t or space, Z/z, ±HH:MM, ±HHMM, ±HH, leap seconds, 24:00, Unicode
    digits, padding, a one-digit field."""
    year = draw(st.sampled_from([f"{y:04d}" for y in (1, 9, 1899, 1900, 1969, 1970, 2000, 2024, 9999)]
                                + ["0000", "+2024", "202", "２０２４"]))
    month = draw(st.sampled_from(["01", "02", "12", "13", "00", "2"]))
    day = draw(st.sampled_from(["01", "28", "29", "30", "31", "00", "32", "9"]))
    cell = f"{year}-{month}-{day}"
    if draw(st.booleans()):
        sep = draw(st.sampled_from(["T", "T", " ", "t", "  ", "_"]))
        hour = draw(st.sampled_from(["00", "07", "23", "24", "7", " 7"]))
        minute = draw(st.sampled_from(["00", "41", "59", "60"]))
        cell += f"{sep}{hour}:{minute}"
        if draw(st.booleans()):
            cell += ":" + draw(st.sampled_from(["00", "30", "59", "60", "5"]))
            cell += draw(st.sampled_from(["", "", ".5", ".123456", ".000001", ".1234567", ".", ",5"]))
        cell += draw(st.sampled_from(["", "", "Z", "z", "+08:00", "-05:30", "+00:00", "-00:00", "+0800",
                                      "+08", "+24:00", "+23:59", "Z ", "+08:00:30"]))
    return draw(st.sampled_from(["", "", " ", "\u3000"])) + cell + draw(st.sampled_from(["", "", " "]))


_USUAL_DATETIME = st.tuples(st.datetimes(), st.sampled_from("T "),
                            st.sampled_from(["minutes", "seconds", "milliseconds", "microseconds"]),
                            st.sampled_from(["", "Z", "+08:00", "-05:30"])) \
    .map(lambda p: p[0].isoformat(sep=p[1], timespec=p[2]) + p[3])
_DATETIME_CELL = st.one_of(_USUAL_DATETIME, datetime_cells(), st.text(max_size=34), st.none())


# ---------------------------------------------------------------- what records.py gives
def _records_number(cell: str):
    """(number, unit text) as engine/records.parse_quantity reads the cell, or None."""
    match = records._NUMBER_UNIT.match(cell)
    if match is None:
        return None
    return float(match.group(1)), match.group(2)


def _records_datetime(cell: str):
    try:
        return records.parse_datetime_us("t", cell, ZONE)
    except RecordError:
        return None


def _column(cells) -> tuple[pl.Series, tx.Bytes]:
    series = pl.Series("c", cells, dtype=pl.String)
    return series, tx.Bytes.of(series)


def _check_decimals(cells, d: tx.Decimals, text: tx.Bytes):
    for i, cell in enumerate(cells):
        if not d.ok[i]:
            continue
        written = cell.encode()[d.unit_start[i] - text.start[i]:].decode()
        read = _records_number(cell)
        if read is None:  # records.py's `.*` stops at a line break; no unit has one
            assert "\n" in written, cell
            continue
        number, unit = read
        assert bits(d.value[i]) == bits(number), cell
        if written == written.strip():  # else ingest's unit check sends the row to records.py
            assert written == unit, cell
        if d.dots[i] == 0 and written == "":
            assert (-1 if d.negative[i] else 1) * int(d.mantissa[i]) == int(number), cell


# ---------------------------------------------------------------- the readers
@SETTINGS
@given(st.lists(_NUMBER_CELL, max_size=60))
def test_decimals_give_records_bits_where_they_answer(cells):
    _, text = _column(cells)
    _check_decimals(cells, tx.decimals(text), text)
    values, ok = tx.whole_numbers(text)
    for cell, value, fine in zip(cells, values.tolist(), ok.tolist()):
        if fine:
            assert records.parse_value(FieldSpec("n", Kind.INTEGER), cell, ZONE) == value, cell


@SETTINGS
@given(st.lists(_NUMBER_CELL, max_size=60))
def test_polars_decimals_are_text_pys(cells):
    series, text = _column(cells)
    expected, got = tx.decimals(text), bench_text.decimals_polars(series, text)
    assert got.ok.tolist() == expected.ok.tolist()
    ok = expected.ok
    assert got.value[ok].tobytes() == expected.value[ok].tobytes()  # bits: -0.0 is not 0.0
    for name in ("mantissa", "negative", "dots", "unit_start"):
        assert getattr(got, name)[ok].astype(np.int64).tolist() == \
            getattr(expected, name)[ok].astype(np.int64).tolist(), name
    _check_decimals(cells, got, text)


@SETTINGS
@given(st.lists(_DATETIME_CELL, max_size=60))
def test_iso_datetimes_give_records_bits_where_they_answer(cells):
    from engine.batch.timezones import zone_table

    _, text = _column(cells)
    local, offset, has_offset, ok = tx.iso_datetimes(text)
    utc = np.where(has_offset, local - offset, zone_table(ZONE).local_to_utc(local))
    for cell, value, fine in zip(cells, utc.tolist(), ok.tolist()):
        if fine:
            assert _records_datetime(cell) == value, cell
    days, ok = tx.iso_dates(text)
    for cell, value, fine in zip(cells, days.tolist(), ok.tolist()):
        if fine:
            assert records.parse_date_days("d", cell) == value, cell


@SETTINGS
@given(st.lists(_DATETIME_CELL, max_size=60))
def test_polars_iso_datetimes_are_text_pys(cells):
    series, text = _column(cells)
    expected, got = tx.iso_datetimes(text), bench_text.iso_polars(series, text)
    ok = expected[3]
    assert got[3].tolist() == ok.tolist()
    assert [a[ok].tolist() for a in got[:3]] == [b[ok].tolist() for b in expected[:3]]


# ---------------------------------------------------------------- through ingest
_FIELDS = {
    Kind.QUANTITY: (FieldSpec("distance", Kind.QUANTITY, LENGTH, "km"), _NUMBER_CELL),
    Kind.INTEGER: (FieldSpec("count", Kind.INTEGER, required=False, default=0),
                   st.one_of(st.integers(-10 ** 16, 10 ** 16).map(str), _NUMBER_CELL)),
    Kind.DATETIME: (FieldSpec("boarded", Kind.DATETIME), _DATETIME_CELL),
    Kind.DATE: (FieldSpec("day", Kind.DATE, required=False, default=0),
                st.one_of(st.dates().map(str), _DATETIME_CELL)),
}


@st.composite
def _one_field(draw):
    spec, cells = _FIELDS[draw(st.sampled_from(list(_FIELDS)))]
    return spec, draw(st.lists(cells, min_size=1, max_size=40))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(_one_field())
def test_ingest_reads_each_row_as_records_does(field):
    """The fast paths' rows and the rows they leave to records.py, together: each row is
    what records.ingest makes of it, bit for bit, or its error (one input a schema, with
    a `time` column that is always right, so that most rows are valid)."""
    spec, cells = field
    schema = Schema((spec,), ZONE, ())
    times = ["2024-05-20T08:00"] * len(cells)
    frame = pl.DataFrame({spec.name: pl.Series(spec.name, cells, dtype=pl.String), "time": times})
    units = {"distance": "km"}
    got = ingest_frame(frame, schema, units, first_row=1)
    for i, cell in enumerate(cells):
        raw = {spec.name: cell, "time": times[i]}
        try:
            expected = records.ingest(raw, schema, default_id=f"row-{i + 1}", column_units=units)
        except RecordError as error:
            assert got.invalid[i], raw
            assert got.messages[i] == f"{error.field}: {error.reason}", raw
            continue
        assert not got.invalid[i], (raw, got.messages.get(i))
        read, value = got.columns[spec.name][i], expected[spec.name]
        if spec.kind == Kind.QUANTITY:
            assert bits(float(read)) == bits(value), raw
        else:
            assert int(read) == value, raw


def _same_reading(a, b) -> None:
    assert a.invalid.tolist() == b.invalid.tolist() and a.messages == b.messages
    assert a.ids.to_list() == b.ids.to_list() and a.accounts.to_list() == b.accounts.to_list()
    assert a.columns.keys() == b.columns.keys()
    for name, column in a.columns.items():
        other = b.columns[name]
        if isinstance(column, np.ndarray):
            assert [bits(float(v)) if column.dtype.kind == "f" else v for v in column.tolist()] == \
                [bits(float(v)) if other.dtype.kind == "f" else v for v in other.tolist()], name
        elif hasattr(column, "codes"):  # a choice (Cat)
            assert column.codes.tolist() == other.codes.tolist(), name
            assert tuple(column.labels) == tuple(other.labels), name
        else:
            assert column.to_list() == other.to_list(), name


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(_DATETIME_CELL, _DATETIME_CELL, _NUMBER_CELL), min_size=1, max_size=30),
       st.booleans(), st.data())
def test_datetime_columns_read_once_are_what_a_second_reading_gives(rows, with_time, data):
    """The API reads the activity times (`time`, else the datetime inputs standing in for
    it) to find each record's version, then the batch engine reads the whole records,
    taking the datetime columns from that first reading (ReadDatetimes), for all the rows
    or a version's rows (gather): every column, invalid row and message is what reading
    them afresh gives, in the methodology's zone or another's."""
    cells = {"boarded": [r[0] for r in rows], "distance": [r[2] for r in rows]}
    if with_time:
        cells["time"] = [r[1] for r in rows]
    frame = pl.DataFrame({k: pl.Series(k, v, dtype=pl.String) for k, v in cells.items()})
    times = Schema((FieldSpec("boarded", Kind.DATETIME),), ZONE, ("boarded",))
    read = ReadDatetimes(frame.height)
    _same_reading(ingest_frame(frame, times, None, 1, None, read), ingest_frame(frame, times, None, 1))
    assert set(read.read) == {("boarded", ZONE)} | ({("time", ZONE)} if with_time else set())
    positions = sorted(data.draw(st.sets(st.integers(0, frame.height - 1), min_size=1)))
    part = frame.select(pl.all().gather(positions))
    zone = data.draw(st.sampled_from([ZONE, "America/New_York"]))
    whole = Schema((FieldSpec("boarded", Kind.DATETIME, required=False, default=0),
                    FieldSpec("distance", Kind.QUANTITY, LENGTH, "km")), zone, ("boarded",))
    units = {"distance": "km"}
    for rows_read, taken in ((frame, read), (part, read.gather(positions))):
        _same_reading(ingest_frame(rows_read, whole, units, 1, None, taken),
                      ingest_frame(rows_read, whole, units, 1))


# ---------------------------------------------------------------- the bare Polars parsers
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.sampled_from(["", "-", "+"]), st.text("0123456789", min_size=1, max_size=25),
                          st.text("0123456789", max_size=25), st.sampled_from(["", "e", "E-", "e+"]),
                          st.integers(0, 400)), min_size=1, max_size=50))
def test_polars_cast_is_correctly_rounded_like_float(parts):
    """Where Polars' cast gives a number it is float()'s, to the bit: many digits,
    exponents, overflow and underflow included."""
    cells = [f"{sign}{whole}.{frac}" + (f"{e}{power}" if e else "") for sign, whole, frac, e, power in parts]
    for cell, value in zip(cells, pl.Series(cells).cast(pl.Float64, strict=False).to_list()):
        assert value is not None, cell
        assert bits(value) == bits(float(cell)), cell


def test_the_differences_named_in_the_docs_are_there():
    """Why the readers guard Polars' parsers by a regular expression (docs/engine.md)."""
    cast = pl.Series(["1_0", " 8.2", "１２.５", "1.5 km"]).cast(pl.Float64, strict=False).to_list()
    assert cast == [None] * 4  # float() takes the first three, records.py the fourth
    assert [float("1_0"), float(" 8.2"), float("１２.５")] == [10.0, 8.2, 12.5]
    loose = ["2024-05-06T7:41", "2024-05-06T 7:41", "2024-5-06T07:41", "+202-05-06T07:41"]
    parsed = pl.Series(loose).str.to_datetime("%Y-%m-%dT%H:%M", strict=False, time_unit="us").to_list()
    assert parsed[:3] == [dt.datetime(2024, 5, 6, 7, 41)] * 3 and parsed[3] == dt.datetime(202, 5, 6, 7, 41)
    assert all(_records_datetime(cell) is None for cell in loose)  # fromisoformat rejects them
    leap = pl.Series(["2016-12-31T23:59:60"]).str.to_datetime("%Y-%m-%dT%H:%M:%S", strict=False, time_unit="us")
    assert leap.to_list() == [dt.datetime(2017, 1, 1)]
    assert _records_datetime("2016-12-31T23:59:60") is None
    year_zero = pl.Series(["0000-01-01"]).str.to_date("%Y-%m-%d", strict=False)
    assert year_zero.is_not_null().all() and _records_datetime("0000-01-01") is None
