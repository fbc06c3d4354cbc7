"""The batch (columnar) evaluator against the scalar one: the same results, bit for bit.

For every methodology in methodologies/ and for small synthetic ones that exercise caps
(day/week/month, reduction and points, negative values, points recomputed after a cap),
overlaps, duplicates, bonuses, flags, lookups with `otherwise reject`, lazy `if`/`case`
lookups, division by zero, date parts and a time zone with daylight saving time:
`Result.key()` and the message of every record agree, invalid rows included, through
`BatchEngine.evaluate`, through `evaluate_file` (CSV, JSON Lines, Parquet; in memory and
spilled to disk partitions) and through `tanpu eval --engine batch|scalar`.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import random
import tempfile
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl import compile_source
from engine import Engine, records
from engine.batch import BatchEngine, to_results
from engine.batch import text as tx
from engine.batch.ingest import raw_frame
from engine.batch.timezones import zone_table
from engine.native.build import build, compiler
from engine.recordfiles import open_records

from .strategies import record_stream

ROOT = Path(__file__).resolve().parents[2]
METHODOLOGIES = sorted((ROOT / "methodologies").glob("*.tanpu"))


# the example counts follow the profile: `make fuzz` runs this file with four times `make test`'s
pytestmark = pytest.mark.fuzz


def _examples(n: int) -> int:
    """n examples under the default and ci profiles (`make test`), 4n under fuzz (`make fuzz`)."""
    return max(5, min(n * settings.default.max_examples // 100, 4 * n))


def _settings(n: int):
    return settings(max_examples=_examples(n), deadline=None,
                    suppress_health_check=list(HealthCheck))


HEADER = '''methodology test.{id} "{id}" version 1.0.0 {{
  covers thing
  effective from 2024-01-01{until}
  timezone {zone}
}}
'''

SYNTHETIC = {
    # caps of reduction (day) and points (month); negative values; points from reduction
    "caps": ("Asia/Shanghai", "", '''
input mode: choice { ebus, metro, walk }
input distance: quantity [km] between 0 km and 30 km
input adjust: quantity [g] between -400 g and 300 g
parameter factor [g/km] by mode from 2024-01-01 source "test" [ASM] { ebus: 26.9, metro: 46.7, walk: 0 }
reduction = factor[mode] * distance + adjust
points = floor(reduction / 1 g) + 1
cap reduction at 1 kg per account per day
cap points at 1500 per account per month
'''),
    # duplicates, overlaps, two bonuses, two flags, a weekly points cap
    "rules": ("Asia/Shanghai", "", '''
input route: choice { r1, r2, r3 }
input started: datetime
input ended: datetime
input fare: integer between 0 and 50
reduction = 10 g * fare
points = floor(reduction / 1 g)
forbid duplicate route, started per account else DUP_TRIP "duplicate trip"
forbid overlap between started and ended per account else OVERLAP "overlap"
bonus 50 points on the 3rd record per account within 1 d
bonus 7 points on the 2nd record per account within 2 h
flag more than 2 records per account within 3 h as BUSY "busy"
flag more than 4 records per account within 1 d as TOO_MANY "too many"
cap points at 700 per account per week
'''),
    # lookups that reject (choice, integer keys; a second period), lazy if/case/and/or,
    # a text key with a default, a boolean key, a scalar parameter, division by zero,
    # date parts, dates, an end date (not applicable after it)
    "lazy": ("Asia/Shanghai", " until 2024-05-22", '''
input kind: choice { a, b, c, d }
input size: integer between 0 and 50
input amount: quantity [kWh] at least 0 kWh
input flagged: boolean
input note: text optional
input day: date
input at: datetime
parameter f [kg/kWh] by kind otherwise reject NO_F "no factor for this kind" {
  from 2024-01-01 source "t" [ASM]: a: 0.5, b: 0.25
  from 2024-05-21 source "t" [ASM]: a: 0.6, c: 0.1
}
parameter g [kg/kWh] by size from 2024-01-01 source "t" [ASM] otherwise reject NO_G "no factor for this size" { 0: 1.0, 1: 2.0, 2: 0.5, 10: 3.0, 33: 0.125 }
parameter h [kg] by flagged from 2024-01-01 source "t" [ASM] { true: 1, false: 2 }
parameter t [kg] by note from 2024-01-01 source "t" [ASM] otherwise 0.5 { "abc": 1.5, "a": 0.25, "": 0.75 }
parameter k [kg/kWh] = 0.3 from 2024-01-01 source "t" [ASM]
let r = amount / (size * 1 kWh)
let late = hour(at) >= 12 and f[kind] > 0.2 kg/kWh
require weekday(at) != 2 or hour(at) >= 8 else TUESDAY_EARLY "not early on Tuesdays"
require t[note] < 1.4 kg or flagged else NOTE_BAD "bad note"
baseline = if kind == a or kind == b then f[kind] * amount else (case kind when c then g[size] * amount else k * amount end)
project = h[flagged] * (amount / (amount + 1 kWh)) + (if late then 1 g else 0 g)
leakage = if size > 5 then min(r, 3) * 1 kg else max(0 kg, (day - 2024-05-20) / 1 d * 1 g) + month(day) * 1 mg + day(at) * 1 mg
points = round(reduction / 1 g) + year(day) - 2024
'''),
    # a capped reduction re-runs the formulas: a require on the reduction can then fail
    # (points 0), a let divides by the distance
    "recompute": ("Asia/Shanghai", "", '''
input distance: quantity [km] between 0 km and 30 km
input mode: choice { bus, metro }
reduction = (if mode == bus then 40 g/km else 25 g/km) * distance
let per_km = reduction / distance
require reduction > 100 g else SMALL "small ride"
points = floor(per_km * 1 km / 1 g) + round(ceil(reduction, 10 g) / 10 g)
cap reduction at 700 g per account per day
cap points at 120 per account per day
'''),
    # counters (one from a lookup, one from a rounding of a float), their caps (one in a
    # zone of its own), rewards from points after a points cap and bonus, and from counters
    "counters": ("Asia/Shanghai", "", '''
input mode: choice { ebus, metro, walk }
input distance: quantity [km] between 0 km and 30 km
parameter fare [fen] by mode from 2024-01-01 source "test" [ASM] { ebus: 200, metro: 300, walk: 0 }
reduction = distance * 25 g/km
points = floor(reduction / 10 g)
cap points at 120 per account per day
bonus 5 points on the 2nd record per account within 1 d
counter rides [ride] = if mode == walk then 0 else 1
counter km = floor(distance / 1 km)
counter paid [fen] = round(fare[mode] / 1 fen)
cap counter rides at 3 ride per account per day
cap counter km at 40 per account per week in UTC
reward voucher every 50 points worth 5 CNY
reward ticket every 4 rides worth 2 CNY
reward refund every 1000 paid worth 1 ride
'''),
}

DST = '''methodology test.dst "dst" version 1.0.0 {
  covers walk
  effective from 2024-01-01
  timezone America/New_York
}
input steps: integer between 0 and 50000
input at: datetime
let h = hour(at)
reduction = if h < 3 then 1 g * steps / 100 else 2 g * steps / 100
points = floor(reduction / 1 g) + weekday(at) * 100 + day(at)
cap reduction at 500 g per account per day
cap points at 900 per account per week in UTC
'''


def _compile(text: str):
    compiled = compile_source(text, "test.tanpu")
    assert compiled.ok, compiled.render()
    return compiled.methodology


def _synthetic(name: str):
    zone, until, body = SYNTHETIC[name]
    return _compile(HEADER.format(id=name, until=until, zone=zone) + body)


def _keys(results) -> list:
    return [r.key() + (r.message,) for r in results]


def _batches(methodology) -> tuple[BatchEngine, ...]:
    """The batch engine with its formulas in NumPy, and in a C kernel (which must build
    where there is a C compiler: else the NumPy path would hide it)."""
    if compiler() is None:
        return (BatchEngine(methodology),)
    in_c = BatchEngine(methodology, kernels=build)
    assert in_c.formulas.compiles(), "the kernel did not build"
    return BatchEngine(methodology), in_c


def _agree(methodology, stream, **kwargs):
    expected = _keys(Engine(methodology).evaluate(stream, **kwargs))
    for batch in _batches(methodology):
        assert _keys(batch.evaluate(stream, **kwargs)) == expected


# ---------------------------------------------------------------- record streams
@pytest.mark.parametrize("path", METHODOLOGIES, ids=lambda p: p.stem)
def test_every_methodology_gives_the_same_results(path):
    compiled = compile_source(path.read_text(encoding="utf-8"), str(path))
    assert compiled.ok, compiled.render()
    methodology = compiled.methodology
    scalar, batches = Engine(methodology), _batches(methodology)

    @_settings(12)
    @given(record_stream(methodology))
    def check(stream):
        expected = _keys(scalar.evaluate(stream))
        for batch in batches:
            assert _keys(batch.evaluate(stream)) == expected
    check()


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_synthetic_methodologies_give_the_same_results(name):
    methodology = _synthetic(name)
    scalar, batches = Engine(methodology), _batches(methodology)
    if name == "rules":
        batches[0].rules.rounds = 1  # duplicates/overlaps: also replay accounts record by record

    @_settings(25)
    @given(record_stream(methodology, max_size=50))
    def check(stream):
        expected = _keys(scalar.evaluate(stream))
        for batch in batches:
            assert _keys(batch.evaluate(stream)) == expected
    check()


@st.composite
def _dst_stream(draw):
    """Walks around the 2024 DST changes of New York: gaps, repeated hours, offsets."""
    size = draw(st.integers(min_value=0, max_value=40))
    out = []
    for i in range(size):
        base = draw(st.sampled_from([dt.datetime(2024, 3, 9, 22), dt.datetime(2024, 11, 2, 22)]))
        moment = base + dt.timedelta(minutes=draw(st.integers(min_value=0, max_value=8 * 60)))
        text = moment.isoformat(timespec="minutes")
        text += draw(st.sampled_from(["", "", "", "-04:00", "-05:00", "Z", ":30"]))
        out.append({"id": f"w{draw(st.integers(min_value=0, max_value=size))}",
                    "account": draw(st.sampled_from(["a", "b"])),
                    "steps": str(draw(st.integers(min_value=0, max_value=50000))), "at": text})
    return out


def test_daylight_saving_time_days_hours_and_caps():
    methodology = _compile(DST)
    scalar, batches = Engine(methodology), _batches(methodology)

    @_settings(25)
    @given(_dst_stream())
    def check(stream):
        expected = _keys(scalar.evaluate(stream))
        for batch in batches:
            assert _keys(batch.evaluate(stream)) == expected
    check()


BUILTINS = '''methodology test.builtins "builtins" version 1.0.0 {
  covers walk, run
  effective from 2024-01-01
  timezone Europe/London
}
input steps: integer between 0 and 50000
input kind: text optional
input at: datetime optional = 2024-05-20T00:00
require account != "" else NO_ACCOUNT "an account is needed"
let per_step = if activity == "run" then 2 g else 1 g
reduction = steps * per_step / 1000 + (if id == "r1" then 5 g else 0 g) + (if kind == "x" then 1 g else 0 g)
points = floor(reduction / 1 g) + hour(time) + (if at > time then 1 else 0)
forbid duplicate activity, kind per account else SAME "same kind"
cap points at 30 per account per day in Asia/Tokyo
'''


@st.composite
def _builtin_record(draw, i: int):
    """Cells as people write them: padded, blank, Unicode spaces, missing columns."""
    record = {
        "id": draw(st.sampled_from([f"r{i}", "r1", " r1", "", None])),
        "account": draw(st.sampled_from(["a", "b", "", " a", None, "张三", "张三\u3000"])),
        "activity": draw(st.sampled_from(["", "walk", "run", " run", "swim", None, "walk\t"])),
        "steps": draw(st.sampled_from(["100", "2500", " 30", "-1", "50001", "1e3", "7.0", ""])),
        "kind": draw(st.sampled_from(["", " ", "x", " x", "x ", "y", "\u3000x", "x\xa0", None])),
        "time": draw(st.sampled_from(["2024-05-20T08:00", "2024-05-20T23:30", "2024-05-21T00:10+09:00",
                                      "", None, "2024-05-20 12:00:00Z"])),
        "at": draw(st.sampled_from(["", "2024-05-20T09:00", None, "2024-05-20T07:00"])),
    }
    return {k: v for k, v in record.items() if v is not None or draw(st.booleans())}


def test_builtins_in_formulas_activities_and_padded_cells():
    methodology = _compile(BUILTINS)
    scalar, batches = Engine(methodology), _batches(methodology)

    @_settings(30)
    @given(st.integers(min_value=0, max_value=30).flatmap(
        lambda n: st.tuples(*[_builtin_record(i) for i in range(n)])))
    def check(stream):
        stream = list(stream)
        expected = _keys(scalar.evaluate(stream))
        for batch in batches:
            assert _keys(batch.evaluate(stream)) == expected
    check()


def test_an_empty_stream_and_an_all_invalid_stream():
    methodology = _synthetic("rules")
    _agree(methodology, [])
    _agree(methodology, [{"id": "x"}, {"account": "a", "fare": "3"}, {}])


def test_unusual_but_valid_cells_are_read_as_the_scalar_path_reads_them():
    methodology = _synthetic("caps")
    cells = [" 8.2 km", "8.2km", "1e1 km", "８ km", "+.5 km", "5. km", "8.2\tkm", "3 km ",
             "12345678901234567 m", "0.000001 km", "-0 km", "8200 m", "8.2 mi", "1e999 km"]
    stream = [{"id": f"r{i}", "account": " a ", "mode": " ebus" if i % 3 else "metro",
               "distance": cell, "adjust": "-0.5 g", "time": "2024-05-20T08:00"}
              for i, cell in enumerate(cells)]
    _agree(methodology, stream)


# ---------------------------------------------------------------- files
def _write(path: Path, stream: list[dict]) -> None:
    names = sorted({k for r in stream for k in r}) or ["id"]
    if path.suffix == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as out:
            writer = csv.writer(out)
            writer.writerow(names)
            for i, r in enumerate(stream):
                writer.writerow([r.get(n, "") for n in names])
                if i % 7 == 3:
                    writer.writerow([])  # blank lines are skipped, not counted
    else:
        with open(path, "w", encoding="utf-8") as out:
            for r in stream:
                out.write(json.dumps(r, ensure_ascii=False) + "\n")


def _file_agrees(methodology, path: Path, chunk_rows: int, memory_rows: int, tmp_path: Path):
    source = open_records(path)
    expected = _keys(Engine(methodology).evaluate(source.rows, column_units=source.column_units))
    frames = list(BatchEngine(methodology, chunk_rows=chunk_rows).evaluate_file(
        path, memory_rows=memory_rows, spill_dir=tmp_path / "spill"))
    got = _keys(to_results(pl.concat(frames))) if frames else []
    assert got == expected


@pytest.mark.parametrize("name", ["rules", "caps"])
def test_files_streamed_in_chunks_and_spilled_to_disk(name, tmp_path_factory):
    methodology = _synthetic(name)

    @_settings(8)
    @given(record_stream(methodology, max_size=40), st.integers(min_value=2, max_value=16),
           st.integers(min_value=1, max_value=60), st.sampled_from([".csv", ".jsonl"]))
    def check(stream, chunk_rows, memory_rows, suffix):
        folder = tmp_path_factory.mktemp("files")
        path = folder / f"records{suffix}"
        _write(path, stream)
        _file_agrees(methodology, path, chunk_rows, memory_rows, folder)
    check()


def test_csv_blocks_are_cut_between_records_as_the_csv_module_reads_them(tmp_path):
    from engine.recordfiles import open_chunks
    from engine.records import INVALID

    rng = random.Random(4)
    cells = ["a", "", " ", "x,y", 'q"r', "line\nbreak", "é", "张三", "  pad ", '"', "crlf\r\n", "8.2 km"]
    for trial in range(30):
        header = ["id", "b", "c[km]", "d"]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator=rng.choice(["\n", "\r\n"]))
        writer.writerow(header)
        for _ in range(rng.randrange(0, 30)):
            if rng.random() < 0.1:
                buffer.write("\n")
            # up to three cells beyond the header: empty ones are ignored, others make
            # the row invalid (records.INVALID), on both readers
            writer.writerow([rng.choice(cells) for _ in range(rng.randrange(1, 8))])
        path = tmp_path / f"t{trial}.csv"
        path.write_text(buffer.getvalue(), encoding="utf-8")
        keys = ["id", "b", "c", "d", INVALID]

        def norm(rows):
            return [{k: r.get(k) if r.get(k) != "" else None for k in keys} for r in rows]
        expected = norm(open_records(path).rows)
        got = [r for frame, _ in open_chunks(path, rng.randrange(1, 7), block_bytes=rng.randrange(1, 40)).frames
               for r in frame.to_dicts()]
        assert norm(got) == expected, buffer.getvalue()


def test_parquet_with_typed_columns_and_header_units(tmp_path):
    methodology = _compile((ROOT / "methodologies" / "shenzhen-public-transit.tanpu").read_text())
    rng = random.Random(7)
    start = dt.datetime(2024, 5, 20, 6, 0)
    rows = []
    for i in range(300):
        boarded = start + dt.timedelta(minutes=rng.randrange(0, 3000))
        rows.append({"id": f"r{rng.randrange(0, 280)}", "account": rng.choice("abc"),
                     "mode": rng.choice(["ebus", "metro", "diesel_bus"]),
                     "distance[km]": rng.choice([rng.uniform(0, 210), float("nan"), None, 8.2]),
                     "boarded": boarded, "alighted": boarded + dt.timedelta(minutes=rng.randrange(-5, 90))})
    frame = pl.DataFrame(rows).with_columns(pl.col("mode").cast(pl.Categorical))
    path = tmp_path / "rides.parquet"
    frame.write_parquet(path)
    _file_agrees(methodology, path, 64, 1000, tmp_path)
    _file_agrees(methodology, path, 64, 50, tmp_path)


# ---------------------------------------------------------------- the fast paths
def test_decimal_cells_parse_to_pythons_floats():
    rng = random.Random(3)
    cells = []
    for _ in range(5000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randrange(1, 17)))
        cut = rng.randrange(0, len(digits) + 1)
        number = digits[:cut] + "." + digits[cut:] if rng.random() < 0.7 else digits
        cells.append(rng.choice(["", "-", "+"]) + number + rng.choice(["", " km", "km", "  g"]))
    b = tx.Bytes.of(pl.Series(cells))
    d = tx.decimals(b)
    for i, cell in enumerate(cells):
        if d.ok[i]:
            match = records._NUMBER_UNIT.match(cell)
            assert str(float(match.group(1))) == str(d.value[i]), cell
            assert cell.encode()[d.unit_start[i] - b.start[i]:].decode() == match.group(2), cell


def test_iso_datetime_cells_parse_as_fromisoformat():
    rng = random.Random(5)
    cells = []
    for _ in range(3000):
        moment = dt.datetime(2024, 1, 1) + dt.timedelta(seconds=rng.randrange(0, 400 * 86400),
                                                        microseconds=rng.randrange(0, 10 ** 6))
        text = moment.isoformat(sep=rng.choice("T "), timespec=rng.choice(
            ["minutes", "seconds", "milliseconds", "microseconds"]))
        cells.append(text + rng.choice(["", "", "Z", "+08:00", "-03:30", "+0800", " "]))
    cells += ["2024-02-30T10:00", "2024-13-01T00:00", "2024-05-20T24:00", "2024-05-20", "2024-05-20T08"]
    b = tx.Bytes.of(pl.Series(cells))
    local, offset, has_offset, ok = tx.iso_datetimes(b)
    zone = zone_table("Asia/Shanghai")
    utc = np.where(has_offset, local - offset, zone.local_to_utc(local))
    for cell, value, fine in zip(cells, utc, ok):
        if fine:
            assert records.parse_datetime_us("t", cell, "Asia/Shanghai") == value, cell


@pytest.mark.parametrize("name", ["America/New_York", "Europe/London", "Australia/Lord_Howe",
                                  "Africa/Monrovia", "Asia/Shanghai"])
def test_zone_tables_agree_with_zoneinfo(name):
    table = zone_table(name)
    zone = records.zone(name)
    rng = np.random.default_rng(11)
    seconds = rng.integers(-2_208_988_800, 4_102_444_800, 1500)
    near = table._t[(table._t > -2_208_988_800) & (table._t < 4_102_444_800)][:200]
    seconds = np.concatenate([seconds, near - 1, near, near + 1, near + 1800])
    utc = seconds * 1_000_000 + rng.integers(0, 1_000_000, seconds.size)
    offsets = np.broadcast_to(table.utc_offsets(utc), utc.shape)
    for us, off in zip(utc.tolist(), offsets.tolist()):
        moment = records.us_to_datetime(us).astimezone(zone)
        assert int(moment.utcoffset().total_seconds()) * 1_000_000 == off
    local = utc + offsets + rng.integers(-5400, 5400, utc.size) * 1_000_000
    for wall, got in zip(local.tolist(), table.local_to_utc(local).tolist()):
        naive = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=wall)
        assert records.datetime_to_us(naive.replace(tzinfo=zone)) == got


# ---------------------------------------------------------------- tanpu eval
BROKEN = """id,account,mode,distance,boarded,alighted
r1,alice,ebus,8.2 km,2024-05-20T08:00,2024-05-20T08:30
r2,alice,metro,12.5 km,2024-05-20T08:20,2024-05-20T08:45
r3,bob,metro,abc,2024-05-20T09:00,2024-05-20T09:30
r4,bob,diesel_bus,3 km,2024-05-20T09:00,2024-05-20T09:30

r5,bob,ebus,3,2024-05-20T10:00,2024-05-20T10:30
r6,carol,ebus,300 km,2024-05-20T10:00,2024-05-20T10:30
r7,carol,tram,3 km,2024-05-20T10:00,2024-05-20T10:30
r8,carol,ebus,3 km,2024-13-45,2024-05-20T10:30
r1,dave,ebus,1 km,2024-05-20T07:00,2024-05-20T07:10
r9,dave,metro,"1,5 km",2024-05-20T11:00,2024-05-20T11:10
r10,dave,ebus,2.5 km,2024-05-20T12:00,2024-05-20T12:30
"""
BAD_ROWS = {3: "distance: `abc` is not a number with a unit",
            5: "distance: `3` has no unit (write e.g. `3 km`)",
            7: "mode: `tram` is not one of ebus, metro, diesel_bus",
            8: "boarded: `2024-13-45` is not a date and time",
            10: "distance: unknown unit `,5 km`"}


def _tanpu(*args):
    from click.testing import CliRunner

    from tanpu.cli import main
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_tanpu_eval_batch_and_scalar_report_the_same_rows(tmp_path):
    (tmp_path / "rides.csv").write_text(BROKEN, encoding="utf-8")
    methodology = "methodologies/shenzhen-public-transit.tanpu"
    runs = {}
    for engine in ("batch", "scalar"):
        out = tmp_path / f"{engine}.csv"
        done = _tanpu("eval", str(ROOT / methodology), str(tmp_path / "rides.csv"), "--engine", engine,
                      "-o", str(out))
        assert done.exit_code == 0, done.stderr
        stdout = _tanpu("eval", str(ROOT / methodology), str(tmp_path / "rides.csv"), "--engine", engine)
        assert stdout.exit_code == 0, stdout.stderr
        runs[engine] = (out.read_bytes(), done.stderr, stdout.stdout)
    assert runs["batch"] == runs["scalar"]
    content, summary, _ = runs["batch"]
    rows = list(csv.DictReader(content.decode("utf-8").splitlines()))
    assert [int(r["row"]) for r in rows] == list(range(1, 12))
    for r in rows:
        row = int(r["row"])
        if row in BAD_ROWS:
            assert r["status"] == "invalid" and r["message"].startswith(BAD_ROWS[row])
            assert f"  row {row}: {BAD_ROWS[row]}" in summary
        else:
            assert r["status"] in ("credited", "rejected", "duplicate") and r["time"]
    assert "invalid         5" in summary and "11 record(s)" in summary


def test_written_kilograms_are_the_milligrams_divided_exactly(tmp_path):
    """reduction_kg is mg / 10**6 as Python divides; long columns once came out as
    mg × 10**-6 (0.9241929999999999 for 924193 mg)."""
    distances = [f"{1 + (i * 7919) % 29_000 / 1000} km" for i in range(5000)]
    lines = ["id,account,mode,distance,boarded,alighted"]
    lines += [f"r{i},a{i},metro,{d},2024-05-20T08:00,2024-05-20T08:30" for i, d in enumerate(distances)]
    (tmp_path / "rides.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    methodology = str(ROOT / "methodologies/shenzhen-public-transit.tanpu")
    for fmt in ("csv", "jsonl"):
        out = tmp_path / f"out.{fmt}"
        done = _tanpu("eval", methodology, str(tmp_path / "rides.csv"), "-o", str(out))
        assert done.exit_code == 0, done.stderr
        text = out.read_text(encoding="utf-8")
        rows = list(csv.DictReader(text.splitlines())) if fmt == "csv" else \
            [json.loads(line) for line in text.splitlines()]
        assert len(rows) == 5000
        for r in rows:
            assert float(r["reduction_kg"]) == int(r["reduction_mg"]) / 1_000_000
            if fmt == "csv":
                assert r["reduction_kg"] == repr(int(r["reduction_mg"]) / 1_000_000)


def test_counters_of_records_at_one_time_follow_the_canonical_order():
    """Records of one account at one time are counted in (id, row) order on the batch path
    too (it sorts by account hash and time, then orders such runs by id): the reward and
    the counter cap fall on the same records as on the scalar path."""
    methodology = _synthetic("counters")
    ids = ["r9", "r3", "r7", "r1", "r5", "r2", "r8", "r4", "r6"]
    stream = [{"id": i, "account": "a" if n % 3 else "b", "time": "2024-06-01T08:00",
               "mode": ["ebus", "metro"][n % 2], "distance": f"{3 + n} km"}
              for n, i in enumerate(ids)]
    _agree(methodology, stream)
    results = Engine(methodology).evaluate(stream)
    assert {r.code for r in results} == {"", "CAP_REACHED"}  # the cap falls inside a run


def _write_parquet(path: Path, stream: list[dict]) -> None:
    """Every cell as text (a Parquet file's typed columns are read by other tests), a
    missing one null."""
    names = sorted({k for r in stream for k in r}) or ["id"]
    pl.DataFrame({n: [None if r.get(n) is None else str(r[n]) if not isinstance(r[n], str) else r[n]
                      for r in stream] for n in names},
                 schema={n: pl.String for n in names}).write_parquet(path)


@pytest.mark.parametrize("name,hash_rows", [("lazy", 1 << 20), ("lazy", 3), ("caps", 1 << 20), ("rules", 3)])
def test_a_parquet_file_streamed_or_spilled_with_the_whole_files_duplicate_ids(name, hash_rows, tmp_path_factory):
    """A Parquet file's repeated ids are found from its hashed `id` column first
    (duplicate_rows; with hash_rows 3 the hashes go through files): a per-record
    methodology's file is then streamed chunk by chunk (or, with more repeated records
    than half the budget, stored as before), a file of more rows than the budget spills
    only its account partitions. Either way the results are the scalar path's."""
    methodology = _synthetic(name)
    assert BatchEngine(methodology).per_record_only == (name == "lazy")

    @_settings(8)
    @given(record_stream(methodology, max_size=40), st.integers(min_value=2, max_value=16),
           st.integers(min_value=1, max_value=60))
    def check(stream, chunk_rows, memory_rows):
        folder = tmp_path_factory.mktemp("parquet")
        path, expected = _parquet_and_scalar_keys(methodology, stream, folder)
        engine = BatchEngine(methodology, chunk_rows=chunk_rows)
        engine.hash_rows = hash_rows
        frames = list(engine.evaluate_file(path, memory_rows=memory_rows, spill_dir=folder / "spill"))
        assert (_keys(to_results(pl.concat(frames))) if frames else []) == expected
    check()


def _capped_shenzhen():
    """The Shenzhen rides with a 2 kg daily cap, as bench/bench_eval.py's capped case runs
    them (some rides rejected, some capped)."""
    source = (ROOT / "methodologies" / "shenzhen-public-transit.tanpu").read_text(encoding="utf-8")
    return _compile(source + "\ncap reduction at 2 kg per account per day\n")


@pytest.mark.parametrize("name", ["shenzhen", "caps", "counters"])
def test_a_spilled_parquet_files_uncredited_records_are_judged_as_their_run_is_spilled(name, tmp_path_factory):
    """With a Parquet file's repeated ids known and no counters, the records the formulas
    did not credit get their outcome as their run is spilled (DiskStore.early) and skip
    the account partitions; with counters every record goes through them. Either way the
    frames are the in-memory run's, column for column, and the results the scalar path's
    (the records include invalid, rejected and repeated ones, over several runs; the
    Shenzhen rides with a daily cap, as bench/bench_eval.py runs them, reject some)."""
    from engine.batch.store import DiskStore

    methodology = _capped_shenzhen() if name == "shenzhen" else _synthetic(name)
    probe = BatchEngine(methodology)
    store = DiskStore(probe, 2, tmp_path_factory.mktemp("probe"), duplicates=np.zeros(0, dtype=np.int64))
    try:
        assert store.early == (name != "counters")
    finally:
        store.close()

    @_settings(10)
    @given(record_stream(methodology, max_size=60), st.integers(min_value=2, max_value=7),
           st.integers(min_value=16, max_value=40))
    def check(stream, chunk_rows, memory_rows):
        # a few repeated ids: with more than half the budget's the store finds them itself
        stream = [dict(r, id=r.get("id") if i % 8 == 0 else f"u{i}") for i, r in enumerate(stream)]
        folder = tmp_path_factory.mktemp("early")
        path, expected = _parquet_and_scalar_keys(methodology, stream, folder)
        engine = BatchEngine(methodology, chunk_rows=chunk_rows)
        spilled = list(engine.evaluate_file(path, memory_rows=memory_rows, spill_dir=folder / "s"))
        whole = list(engine.evaluate_file(path, memory_rows=10_000))
        if not whole:
            assert not spilled and not expected
            return
        assert pl.concat(spilled).equals(pl.concat(whole))
        assert _keys(to_results(pl.concat(spilled))) == expected
    check()


@pytest.mark.parametrize("name", ["shenzhen", "rules", "counters"])
def test_the_memory_store_fills_its_arrays_as_the_concatenated_parts(name):
    """store.MemoryStore copies each chunk's columns into arrays sized for the expected
    rows as the chunks come (grown when a file holds more than expected, as a CSV file's
    estimate may): its results are those of the parts concatenated at the end
    (BatchEngine.finish), and the scalar path's."""
    from engine.batch.store import MemoryStore

    methodology = _capped_shenzhen() if name == "shenzhen" else _synthetic(name)
    scalar = Engine(methodology)

    @_settings(10)
    @given(record_stream(methodology, max_size=40), st.integers(min_value=1, max_value=9),
           st.integers(min_value=0, max_value=50))
    def check(stream, chunk_rows, expected):
        engine = BatchEngine(methodology, chunk_rows=chunk_rows)
        frame = raw_frame(stream)
        chunks = list(engine.frame_chunks(frame)) if stream else []
        store = MemoryStore(engine, expected)
        for chunk, first_row in chunks:
            store.add(engine.per_record(chunk, None, first_row))
        filled = list(store.results())
        parts = [engine.per_record(chunk, None, first_row) for chunk, first_row in chunks]
        if not parts:
            assert filled == []
            return
        whole = engine.finish(parts)
        assert pl.concat(filled).equals(whole)
        assert _keys(to_results(whole)) == _keys(scalar.evaluate(stream))
    check()


def test_streamed_duplicate_ids_padded_numbered_and_invalid(tmp_path):
    """The ids duplicate_rows hashes are the ids the records get: a padded id is the
    stripped one, a row without an id is `row-N` (and a record may say `row-N` itself),
    an invalid record's id repeats nothing; spread over chunks."""
    methodology = _synthetic("lazy")
    good = {"kind": "a", "size": "3", "amount": "2 kWh", "flagged": "true", "note": "a",
            "day": "2024-05-20", "at": "2024-05-20T09:00"}
    stream = [dict(good, id=i) for i in ("x", " y ", "y", None, "row-4", "z", "x")]
    stream += [dict(good, id="z", size="nine"), dict(good, id="w", size="nine"), dict(good, id="w")]
    path = tmp_path / "records.parquet"
    _write_parquet(path, stream)
    source = open_records(path)
    expected = _keys(Engine(methodology).evaluate(source.rows, column_units=source.column_units))
    assert [k[3] for k in expected].count("duplicate") == 3  # y, row-4, x
    for chunk_rows in (2, 3, 100):
        engine = BatchEngine(methodology, chunk_rows=chunk_rows)
        assert _keys(to_results(pl.concat(list(engine.evaluate_file(path))))) == expected


def _parquet_and_scalar_keys(methodology, stream, folder: Path) -> tuple[Path, list]:
    """The stream written as `folder`/records.parquet, and the scalar path's results of
    that file (the reference the batch engine's file paths are compared with)."""
    path = folder / "records.parquet"
    _write_parquet(path, stream)
    source = open_records(path)
    return path, _keys(Engine(methodology).evaluate(source.rows, column_units=source.column_units))


def _read_once(engine: BatchEngine, path: Path, **options) -> tuple[list[pl.DataFrame], int]:
    """evaluate_file with `rewind` (a per-record methodology's Parquet file read once): the
    frames that stand (those yielded since the last rewind) and how many rewinds there were."""
    frames: list[pl.DataFrame] = []
    rewinds = []

    def rewind():
        rewinds.append(len(frames))
        frames.clear()
    for frame in engine.evaluate_file(path, rewind=rewind, **options):
        frames.append(frame)
    return frames, len(rewinds)


@pytest.mark.parametrize("hash_rows", [1 << 20, 3])
def test_a_parquet_file_read_once_agrees_with_reading_its_ids_first(hash_rows, tmp_path_factory):
    """Read once (evaluate_file's `rewind`; with hash_rows 3 the hashes go through files):
    the frames that stand are, bit for bit, those of the two readings (the id column
    first, duplicate_rows), and their results the scalar path's; a rewind happens exactly
    when some record is a duplicate, and then only once."""
    methodology = _synthetic("lazy")

    @_settings(10)
    @given(record_stream(methodology, max_size=40), st.integers(min_value=2, max_value=16),
           st.integers(min_value=1, max_value=60), st.booleans())
    def check(stream, chunk_rows, memory_rows, repeat):
        if repeat and stream:  # a repeated id, late: the last record's id is the first's
            stream = stream + [dict(stream[-1], id=stream[0].get("id"))]
        folder = tmp_path_factory.mktemp("parquet")
        path, expected = _parquet_and_scalar_keys(methodology, stream, folder)
        engine = BatchEngine(methodology, chunk_rows=chunk_rows)
        engine.hash_rows = hash_rows
        twice = list(engine.evaluate_file(path, memory_rows=memory_rows))
        once, rewinds = _read_once(engine, path, memory_rows=memory_rows)
        assert len(once) == len(twice) and all(a.equals(b) for a, b in zip(once, twice))
        assert (_keys(to_results(pl.concat(once))) if once else []) == expected
        duplicate = any(k[3] == "duplicate" for k in expected)
        # None: more records share a hash than duplicate_rows takes (memory_rows // 2), the
        # store decides: rewound too, even when none is a duplicate (an invalid record)
        rows = engine.duplicate_rows(path, memory_rows=memory_rows)
        assert rows is None or (rows.size > 0) == duplicate
        assert rewinds == (1 if duplicate or rows is None else 0)
        assert not list(Path(tempfile.gettempdir()).glob(f"tanpu-batch-{os.getpid()}-ids-*"))
    check()


def test_a_parquet_file_read_once_rewinds_for_duplicates_only(tmp_path):
    """The ids hashed while the file is read once are the ids the records get: a padded id
    repeating a stripped one, a missing id repeating a written `row-N`, found in the last
    chunk, rewind the results; an invalid record sharing a valid one's id (its hash
    repeated, no record rejected) and distinct ids do not."""
    methodology = _synthetic("lazy")
    good = {"kind": "a", "size": "3", "amount": "2 kWh", "flagged": "true", "note": "a",
            "day": "2024-05-20", "at": "2024-05-20T09:00"}
    cases = {
        "padded": ([dict(good, id=i) for i in ("x", "y", "z", "v", " x ")], 1),
        "numbered": ([dict(good, id=i) for i in ("row-3", "y", None, "z")], 1),
        "invalid": ([dict(good, id="w"), dict(good, id="q"), dict(good, id="w", size="nine")], 0),
        "distinct": ([dict(good, id=i) for i in ("a", "b", "c", "d", "e")], 0),
    }
    for name, (stream, rewinds) in cases.items():
        path = tmp_path / f"{name}.parquet"
        _write_parquet(path, stream)
        source = open_records(path)
        expected = _keys(Engine(methodology).evaluate(source.rows, column_units=source.column_units))
        assert [k[3] for k in expected].count("duplicate") == rewinds, name
        for chunk_rows in (2, 100):
            frames, got = _read_once(BatchEngine(methodology, chunk_rows=chunk_rows), path)
            assert got == rewinds, name
            assert _keys(to_results(pl.concat(frames))) == expected, name


def test_tanpu_eval_rewinds_its_result_file_and_summary(tmp_path):
    """`tanpu eval -o FILE.parquet` reads a per-record methodology's Parquet file once; a
    duplicate found at the end takes back the file written so far and the summary: the
    file and the counts are the scalar engine's, each record once."""
    methodology = ROOT / "methodologies" / "shenzhen-public-transit.tanpu"
    per_record = tmp_path / "m.tanpu"
    source = methodology.read_text(encoding="utf-8")
    per_record.write_text(source[:source.index("forbid overlap")], encoding="utf-8")
    rides = pl.read_csv(ROOT / "methodologies" / "samples" / "shenzhen-public-transit.csv",
                        infer_schema=False)
    rides = pl.concat([rides] * 30).with_columns(id=pl.format("r{}", pl.int_range(pl.len())))
    rides = pl.concat([rides, rides.head(1)])  # the first ride again, last
    records = tmp_path / "rides.parquet"
    rides.write_parquet(records)
    outputs = {}
    for engine in ("batch", "scalar"):
        out = tmp_path / f"{engine}.parquet"
        done = _tanpu("eval", str(per_record), str(records), "--engine", engine, "-o", str(out), "--compact")
        assert done.exit_code == 0, done.stderr
        outputs[engine] = (pl.read_parquet(out), done.stderr)
    (batch, said), (scalar, told) = outputs["batch"], outputs["scalar"]
    assert batch.equals(scalar) and batch.height == rides.height
    assert batch.get_column("status").value_counts().sort("status").rows() == \
        scalar.get_column("status").value_counts().sort("status").rows()
    assert "duplicate" in said and said == told
    assert not list(tmp_path.glob(".*partial*"))
