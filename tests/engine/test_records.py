"""Reading records: the shortcuts of RecordReader give what the general parsers give.

RecordReader reads `8.2 km`, a listed choice and an ISO datetime without an offset by
shorter ways than parse_value (a factor kept per unit text, offsets kept per local
quarter hour). Whatever the text, the value or the error must be parse_value's.
"""

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl.types import Kind
from engine import records
from engine.records import FieldSpec, RecordError, RecordReader, Schema

from .conftest import compile_text

LENGTH = (("[length]", 1),)
ZONES = ["Asia/Shanghai", "America/New_York", "Europe/London", "Australia/Lord_Howe",
         "Africa/Monrovia", "America/St_Johns", "UTC", "Pacific/Apia"]


def outcome(fn, *args):
    """The value, or the error as (field, reason), or the type of another exception."""
    try:
        return ("value", fn(*args))
    except RecordError as error:
        return ("error", error.field, error.reason)
    except Exception as error:  # the shortcut must not turn one exception into another
        return ("exception", type(error).__name__)


def read_field(spec: FieldSpec, raw, units=None, tz="Asia/Shanghai"):
    schema = Schema((spec,), tz, ())
    reader = RecordReader(schema)
    return reader.read({spec.name: raw, "id": "r1", "time": "2024-05-20T08:00"}, None, units)[spec.name]


def parse_field(spec: FieldSpec, raw, units=None, tz="Asia/Shanghai"):
    return records.parse_value(spec, raw, tz, (units or {}).get(spec.name))


numbers = st.one_of(
    st.decimals(min_value=-1000, max_value=1000, places=4, allow_nan=False).map(str),
    st.sampled_from(["8.2", "5.", ".5", ".", "", "1e3", "1E-2", "+3", "-0", "00012", "1_000",
                     "inf", "nan", "1" * 400, "٣.٥", "١٢", "8,2", "0x10", "½", "²"]),
)
units = st.sampled_from(["km", "m", "mile", "KM", "kWh", "g", "", " km", "km ", "k m", "km\n",
                         "km\nkm", "passenger km", "m/s", "%", "1", "km²", "\u00a0km"])
separators = st.sampled_from([" ", "  ", "", "\t", "\u00a0", " \n"])


@settings(max_examples=400, deadline=None)
@given(numbers, separators, units, st.sampled_from([None, "km", "m", "kWh", "bogus"]),
       st.sampled_from([LENGTH, ()]))
def test_quantity_text_reads_as_parse_value_reads_it(number, separator, unit, column_unit, dimension):
    spec = FieldSpec("distance", Kind.QUANTITY, dimension, "km")
    raw = f"{number}{separator}{unit}"
    column = {"distance": column_unit} if column_unit else None
    expected = outcome(parse_field, spec, raw, column) if records._present(raw) else ("error", "distance", "missing")
    assert outcome(read_field, spec, raw, column) == expected


def test_the_factor_kept_for_a_unit_is_the_input_s_own():
    length = FieldSpec("distance", Kind.QUANTITY, LENGTH, "km")
    energy = FieldSpec("energy", Kind.QUANTITY, (("[length]", 2), ("[mass]", 1), ("[time]", -2)), "kWh")
    reader = RecordReader(Schema((length, energy), "Asia/Shanghai", ()))
    row = {"id": "r", "time": "2024-05-20T08:00", "distance": "2 km", "energy": "2 kWh"}
    values = reader.read(row)
    assert (values["distance"], values["energy"]) == (2000.0, 7_200_000.0)
    with pytest.raises(RecordError, match="not the right kind of unit"):
        reader.read(dict(row, distance="2 kWh"))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["ebus", "metro", " ebus", "ebus ", "EBUS", "", " ", "tram", "e bus"]))
def test_choices_read_as_parse_value_reads_them(raw):
    spec = FieldSpec("mode", Kind.CHOICE, (), "", ("ebus", "metro", "e bus"))
    expected = outcome(parse_field, spec, raw) if records._present(raw) else ("error", "mode", "missing")
    assert outcome(read_field, spec, raw) == expected


naive_moments = st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 1, 1))


def _near_changes():
    """Local times around the offset changes of the zones tested (DST, odd offsets)."""
    moments = [dt.datetime(2024, 3, 10, 2, 30), dt.datetime(2024, 11, 3, 1, 30),
               dt.datetime(2024, 3, 31, 1, 30), dt.datetime(2024, 10, 27, 1, 30),
               dt.datetime(2024, 4, 7, 1, 45), dt.datetime(2024, 10, 6, 2, 15),
               dt.datetime(1972, 1, 7, 0, 0), dt.datetime(1972, 1, 6, 23, 50),
               dt.datetime(2011, 12, 30, 0, 30), dt.datetime(2011, 12, 29, 23, 59, 59, 999_999)]
    return st.sampled_from(moments).flatmap(
        lambda m: st.integers(min_value=-3 * 3600, max_value=3 * 3600).map(lambda s: m + dt.timedelta(seconds=s)))


@settings(max_examples=600, deadline=None)
@given(st.one_of(naive_moments, _near_changes()), st.sampled_from(ZONES), st.sampled_from([0, 1]))
def test_local_clock_gives_zoneinfo_s_instant(moment, zone_name, fold):
    moment = moment.replace(fold=fold)
    clock = records.LocalClock(zone_name)
    expected = records.datetime_to_us(moment.replace(tzinfo=records.zone(zone_name)))
    assert clock.to_us(moment) == expected
    assert clock.to_us(moment) == expected  # from what it kept, the second time


@settings(max_examples=300, deadline=None)
@given(st.one_of(naive_moments.map(lambda m: m.isoformat(timespec="minutes")),
                 _near_changes().map(lambda m: m.isoformat()),
                 st.sampled_from(["2024-05-20T08:00Z", "2024-05-20T08:00z", " 2024-05-20T08:00 ",
                                  "2024-05-20T08:00+05:45", "2024-05-20 08:00", "20240520T0800",
                                  "2024-05-20", "2024-13-45", "yesterday", "", " ", "2024-05-20T24:00",
                                  "2024-05-20T08:00:00.5", "2024-05-20T08:00\n"])),
       st.sampled_from(ZONES))
def test_datetime_text_reads_as_parse_value_reads_it(text, zone_name):
    spec = FieldSpec("at", Kind.DATETIME)
    expected = outcome(parse_field, spec, text, None, zone_name) if records._present(text) \
        else ("error", "at", "missing")
    assert outcome(read_field, spec, text, None, zone_name) == expected


def test_ingest_reads_every_kind_of_input():
    methodology = compile_text('''
input n: integer between 0 and 50
input ok: boolean
input note: text optional
input day: date
input at: datetime
input d: quantity [km] optional
reduction = 1 g * n
points = floor(reduction / 1 g)
''')
    schema = Schema.of(methodology)
    values = records.ingest({"id": " r1 ", "account": 7, "n": " 7 ", "ok": "是", "day": "2024-05-20",
                             "at": "2024-05-20T08:00+08:00"}, schema)
    assert values == {"n": 7, "ok": True, "note": "", "day": 19863, "at": 1716163200000000,
                      "d": 0.0, "id": "r1", "account": "7", "activity": "", "time": 1716163200000000}
    with pytest.raises(RecordError, match="missing"):
        records.ingest({"id": "r1", "n": "1", "ok": "true", "day": "2024-05-20", "at": " "}, schema)


@pytest.mark.parametrize("raw, value", [("1500", 1500), (" -7 ", -7), ("+3", 3), (1500, 1500),
                                        (1500.0, 1500), ("1.5e3", None), ("7.0", None),
                                        ("١٥", None), (1.5, None), (True, None), (2 ** 63, None)])
def test_a_whole_number_is_written_as_digits(raw, value):
    """Issue 12: an integer input accepted `1.5e3`. Text is digits with a sign; a JSON
    number or a typed column may be a float that is whole; on every path (the batch path
    leaves every cell that is not plain digits to this reader)."""
    from engine import Engine
    from engine.batch import BatchEngine

    methodology = compile_text("input n: integer\nreduction = n * 1 g\npoints = n\n")
    record = [{"id": "r", "account": "a", "time": "2024-05-20T08:00", "n": raw}]
    results = [Engine(methodology).evaluate(record)[0], BatchEngine(methodology).evaluate(record)[0]]
    if value is None:
        assert [r.status for r in results] == ["invalid", "invalid"]
        assert "whole number" in results[0].message or "too large" in results[0].message
    else:
        assert [(r.status, r.points) for r in results] == [("credited", value)] * 2
