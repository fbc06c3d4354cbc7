"""`tanpu test`, `tanpu inspect` and `tanpu eval`'s output as a user runs them."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def tanpu(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "tanpu.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_tanpu_test_reports_every_example_and_a_closing_line():
    done = tanpu("test", "methodologies/")
    assert done.returncode == 0, done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    passed, failed = last.split(", ")
    assert passed.endswith("passed") and failed == "0 failed"
    assert int(passed.split()[0]) >= 16


def test_tanpu_test_fails_on_a_wrong_example(tmp_path):
    source = (ROOT / "methodologies" / "shenzhen-public-transit.tanpu").read_text()
    (tmp_path / "m.tanpu").write_text(source.replace("reduction 583.75 g", "reduction 583.76 g"))
    done = tanpu("test", str(tmp_path))
    assert done.returncode == 1
    assert "FAILED" in done.stdout and "expected reduction 583.76 g, got 583.75 g" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "3 passed, 1 failed"


def test_inspect_json_gives_the_input_schema():
    done = tanpu("inspect", "--json", "methodologies/shenzhen-public-transit.tanpu")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    schema = info["input_schema"]
    assert schema["properties"]["mode"]["enum"] == ["ebus", "metro", "diesel_bus"]
    assert schema["properties"]["distance"]["x-unit"] == "km"
    assert "distance" in schema["required"]
    (factor,) = info["parameters"]
    assert factor["periods"][0]["values"] == {"ebus": "26.9", "metro": "46.7"}


def test_inspect_plan_shows_the_steps_in_their_order_and_the_c_source_compiles(tmp_path):
    done = tanpu("inspect", "--plan", "methodologies/shenzhen-public-transit.tanpu")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    steps = [line.split()[1] if line.startswith("  check") else line.split()[0]
             for line in lines if line.startswith(("  check", "  output", "  let"))]
    assert steps == ["period", "activity", "bound", "require", "require", "output", "output"]
    assert any("unlisted: NO_VALUE" in line for line in lines)  # the lookup that can reject
    c = tanpu("inspect", "--c", "methodologies/shenzhen-public-transit.tanpu")
    assert c.returncode == 0 and "void tanpu_kernel(int64_t n, void **a)" in c.stdout
    (tmp_path / "k.c").write_text(c.stdout)
    built = subprocess.run(["cc", "-std=gnu11", "-fsyntax-only", str(tmp_path / "k.c")],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr


def test_inspect_json_describes_every_input_exactly(tmp_path):
    """Issue 12: integrators build forms and validation from the schema: integer and number
    bounds and defaults, a quantity's in its unit, and a number is a number."""
    (tmp_path / "m.tanpu").write_text('''methodology test.schema "schema" version 1.0.0 {
  covers ride
  effective from 2024-01-01
}
input n: integer between 0 and 100 = 3
input x: number between 0 and 5 = 1.5
input d: quantity [km] between 0 km and 10 km = 2.5 km
reduction = n * x * d * 1 g/km
points = n
''', encoding="utf-8")
    done = tanpu("inspect", "--json", str(tmp_path / "m.tanpu"))
    assert done.returncode == 0, done.stdout + done.stderr
    props = json.loads(done.stdout)["input_schema"]["properties"]
    assert {k: props["n"][k] for k in ("x-tanpu-type", "type", "minimum", "maximum", "default")} == {
        "x-tanpu-type": "integer", "type": "integer", "minimum": 0, "maximum": 100, "default": 3}
    assert {k: props["x"][k] for k in ("x-tanpu-type", "type", "minimum", "maximum", "default")} == {
        "x-tanpu-type": "number", "type": "number", "minimum": 0, "maximum": 5, "default": 1.5}
    assert (props["d"]["x-minimum"], props["d"]["x-maximum"], props["d"]["default"]) == (
        "0 km", "10 km", "2.5 km")


SAMPLE = "methodologies/samples/shenzhen-public-transit.csv"
SHENZHEN = "methodologies/shenzhen-public-transit.tanpu"


def test_eval_to_a_missing_folder_fails_before_reading_the_records(tmp_path):
    done = tanpu("eval", SHENZHEN, SAMPLE, "-o", str(tmp_path / "missing" / "out.csv"))
    assert done.returncode == 2 and "does not exist" in done.stderr
    assert "Traceback" not in done.stderr


def test_eval_to_a_full_disk_fails_and_leaves_no_partial_file(tmp_path):
    """Issue 17: `> full-disk/out.csv` exited 0 after writing part of the rows, and `-o` on a
    full disk left a partial file at the final path."""
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "tanpu.cli", "eval", SHENZHEN, SAMPLE],
                              cwd=ROOT, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert done.returncode == 1 and "writing the results failed" in done.stderr
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(small)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("no tmpfs to fill here (not root, or in a container without mount)")
    try:
        done = tanpu("eval", SHENZHEN, SAMPLE, "-o", str(small / "out.csv"))
        assert done.returncode == 1 and "writing the results failed" in done.stderr
        assert list(small.iterdir()) == []  # neither the final file nor a partial one
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)


def test_eval_writes_the_whole_file_under_its_name(tmp_path):
    out = tmp_path / "out.csv"
    done = tanpu("eval", SHENZHEN, SAMPLE, "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]
    assert out.read_text().count("\n") > 300


def test_eval_compact_writes_the_full_files_columns_and_the_methodology_once(tmp_path):
    """`--compact`: the full Parquet file's id, account, status, code, reduction_mg and
    points, row for row, and the methodology, version and content hash in the file's
    metadata (as each full row says them); refused for any other output."""
    import polars as pl

    from engine.recordfiles import compact_metadata
    from engine.result import COMPACT_COLUMNS, REF_COLUMNS

    records = tmp_path / "rides.parquet"
    pl.read_csv(ROOT / SAMPLE, infer_schema=False).write_parquet(records)  # text cells, as in the CSV
    full, compact = tmp_path / "full.parquet", tmp_path / "compact.parquet"
    for out, flags in ((full, ()), (compact, ("--compact",))):
        done = tanpu("eval", SHENZHEN, str(records), "-o", str(out), *flags)
        assert done.returncode == 0, done.stderr
    whole, small = pl.read_parquet(full), pl.read_parquet(compact)
    assert small.columns == list(COMPACT_COLUMNS) and small.height > 300
    assert small.equals(whole.select(COMPACT_COLUMNS))
    assert compact_metadata(compact) == dict(zip(REF_COLUMNS, whole.select(REF_COLUMNS).row(0)))
    assert set(whole.get_column("status")) >= {"credited", "rejected"}
    # min/max statistics on the numbers only (recordfiles.COMPACT_STATISTICS), right ones
    import pyarrow.parquet as pq

    group = pq.ParquetFile(compact).metadata.row_group(0)
    stats = {group.column(i).path_in_schema: group.column(i).statistics for i in range(group.num_columns)}
    assert {name for name, s in stats.items() if s is not None and s.has_min_max} == {"reduction_mg", "points"}
    assert (stats["points"].min, stats["points"].max) == (small["points"].min(), small["points"].max())
    # the numbers packed (DELTA_BINARY_PACKED) and not compressed, the text by Snappy
    # (recordfiles.COMPACT_ENCODINGS); read back above by Polars, here by PyArrow too
    chunks = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    for name in ("reduction_mg", "points"):
        assert "DELTA_BINARY_PACKED" in chunks[name].encodings and chunks[name].compression == "UNCOMPRESSED"
    assert {chunks[name].compression for name in ("id", "account", "status", "code")} == {"SNAPPY"}
    assert pl.from_arrow(pq.read_table(compact)).equals(small)
    done = tanpu("eval", SHENZHEN, str(records), "-o", str(tmp_path / "out.csv"), "--compact")
    assert done.returncode == 2 and "--compact writes Parquet" in done.stderr


# ---------------------------------------------------------------- malformed record files
HEADER = b"id,account,mode,distance[km],boarded,alighted\n"
GOOD = b"r1,a,metro,27.3,2024-05-06T07:41,2024-05-06T08:37\n"  # 50 bytes
LATER = b"r3,a,metro,5,2024-05-07T07:41,2024-05-07T08:37\n"
MALFORMED = {
    # the file cannot be read on: an error naming line and byte, and no output
    "unclosed-quote": (HEADER + GOOD + b'r2,a,"metro,7.4,2024-05-06T18:06,2024-05-06T18:20\n' + LATER,
                       'line 3 (byte 101): a quoted cell opens here and is never closed'),
    "not-utf8": (HEADER + GOOD + b"r2,a\xff,metro,5,2024-05-07T07:41,2024-05-07T08:37\n",
                 "line 3 (byte 100): not UTF-8 text (byte 0xff)"),
    "named-twice": (HEADER.replace(b"alighted", b"alighted,mode") + GOOD.replace(b"\n", b",bus\n"),
                    "line 1: the header names column `mode` twice (columns 3 and 7)"),
}


@pytest.mark.parametrize("engine", ["batch", "scalar", "rules"])
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_file_that_cannot_be_read_on_is_refused_the_same_way_on_every_engine(tmp_path, case, engine):
    """Issue 17: an unclosed quote gave a Polars traceback on the batch path while the
    scalar path swallowed the rest of the file into one record and exited 0; bytes that
    are not UTF-8 gave a traceback without a place; a column named twice took the last."""
    data, message = MALFORMED[case]
    records = tmp_path / "in.csv"
    records.write_bytes(data)
    done = tanpu("eval", SHENZHEN, str(records), "-o", str(tmp_path / "out.csv"), "--engine", engine)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"Error: {records}: {message}" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]  # nothing passed off


@pytest.mark.parametrize("engine", ["batch", "scalar", "rules"])
def test_cells_beyond_the_header_make_their_row_invalid_and_the_rest_goes_on(tmp_path, engine):
    """Issue 17: extra cells in a row were ignored. Empty ones (a trailing comma) still are."""
    records = tmp_path / "in.csv"
    records.write_bytes(HEADER + GOOD.replace(b"\n", b",,\n") + LATER.replace(b"\n", b",9 km\n")
                        + LATER.replace(b"r3", b"r4").replace(b"-07", b"-08"))
    out = tmp_path / "out.csv"
    done = tanpu("eval", SHENZHEN, str(records), "-o", str(out), "--engine", engine)
    assert done.returncode == 0, done.stderr
    rows = [line.split(",")[:5] for line in out.read_text().splitlines()[1:]]
    assert rows == [["1", "r1", "a", "2024-05-05T23:41:00Z", "credited"],
                    ["2", "r3", "a", "", "invalid"],
                    ["3", "r4", "a", "2024-05-07T23:41:00Z", "credited"]]
    assert ("row 2: record: the row has 7 cells and the header 6 columns: cells beyond the "
            "header's must be empty") in done.stderr


@pytest.mark.parametrize("engine", ["batch", "scalar"])
def test_a_json_line_that_is_not_utf8_is_an_invalid_row_and_the_rest_goes_on(tmp_path, engine):
    records = tmp_path / "in.jsonl"
    line = {"id": "r1", "account": "a", "mode": "metro", "distance": "5 km",
            "boarded": "2024-05-06T07:41", "alighted": "2024-05-06T08:37"}
    records.write_bytes(json.dumps(line).encode() + b"\n"
                        + json.dumps({**line, "id": "r2"}).encode().replace(b"metro", b"metr\xff")
                        + b"\n" + json.dumps({**line, "id": "r3", "boarded": "2024-05-07T07:41",
                                               "alighted": "2024-05-07T08:37"}).encode() + b"\n")
    out = tmp_path / "out.csv"
    done = tanpu("eval", SHENZHEN, str(records), "-o", str(out), "--engine", engine)
    assert done.returncode == 0, done.stderr
    statuses = [line.split(",")[4] for line in out.read_text().splitlines()[1:]]
    assert statuses == ["credited", "invalid", "credited"]
    assert "row 2: record: not UTF-8 text (byte 0xff at column" in done.stderr


def test_inspect_json_describes_counters_rewards_histories_and_definitions(tmp_path):
    """Issue 12: what the methodology counts and converts (counters with their units, their
    caps, rewards with their worth), its history windows (over an input or a definition),
    the order of the `counters` result column, and every definition with its unit."""
    (tmp_path / "m.tanpu").write_text('''methodology test.counted "counted" version 1.0.0 {
  covers ride in CN-HA
  effective from 2024-01-01
  timezone Asia/Shanghai
}
input distance: quantity [km]
let per_ride [km] = distance * 1
history usual = mean per_ride over the previous 7 days otherwise 3 km
history rides_before = count distance over the last 10 records otherwise partial
counter rides [ride] = 1
cap counter rides at 4 ride per account per day
reward ticket every 20 points worth 2 CNY
points = if per_ride > usual and rides_before > 1 then 10 else 5
''', encoding="utf-8")
    done = tanpu("inspect", "--json", str(tmp_path / "m.tanpu"))
    assert done.returncode == 0, done.stdout + done.stderr
    info = json.loads(done.stdout)
    rules = info["cross_record_rules"]
    assert rules["counters"] == [{"name": "rides", "unit": "ride"}]
    assert rules["counter_caps"] == [{"counter": "rides", "limit": 4, "period": "day",
                                      "timezone": "Asia/Shanghai"}]
    assert rules["rewards"] == [{"name": "ticket", "every": 20, "source": "points", "worth": "2",
                                 "unit": "CNY"}]
    windows = {h["name"]: h for h in rules["histories"]}
    usual, count = windows["usual"], windows["rides_before"]
    assert {k: usual[k] for k in ("aggregate", "subject", "subject_kind", "side", "size", "unit",
                                  "value_type", "value_unit", "short", "short_value")} == {
        "aggregate": "mean", "subject": "per_ride", "subject_kind": "definition", "side": "previous",
        "size": 7, "unit": "days", "value_type": "quantity", "value_unit": "km", "short": "value",
        "short_value": 3.0}
    assert (count["subject_kind"], count["value_type"], count["short"]) == ("input", "integer", "partial")
    assert info["moved"] == ["rides", "ticket"]
    assert info["metadata"]["regions"] == ["CN-HA"]
    shown = {d["name"]: d for d in info["definitions"]}
    assert (shown["per_ride"]["kind"], shown["per_ride"]["unit"]) == ("let", "km")
    assert shown["points"]["type"] == "integer" and shown["reduction"]["unit"] == "g"


def test_eval_of_capped_rides_in_random_and_in_time_order_gives_each_ride_one_result(tmp_path):
    """The bench's capped methodology (an overlap rule, a 2 kg daily cap) over one set of
    rides written in random order (the store: each account's records judged by the C
    passes from a fresh state) and in time order (judged chunk by chunk, each account's
    state carried), and by the scalar engine: every ride the same status, code,
    reduction and points. Whole-minute times (ties), accounts with several rides a day
    (caps reached, overlaps), rides not covered, an invalid distance and a null account."""
    import numpy as np
    import polars as pl

    rng = np.random.default_rng(20)
    n = 3_000
    minute = np.sort(rng.integers(0, 3 * 24 * 60, n))
    start = pl.datetime(2024, 5, 20)
    rides = pl.DataFrame({"m": minute, "length": rng.integers(3, 90, n), "km": rng.integers(1, 60, n),
                          "account": rng.integers(0, 40, n), "mode": rng.integers(0, 3, n)}).select(
        id=pl.format("r{}", pl.int_range(pl.len())),
        account=pl.when(pl.int_range(pl.len()) % 997 == 5).then(None).otherwise(pl.format("a{}", "account")),
        mode=pl.col("mode").replace_strict([0, 1, 2], ["ebus", "metro", "diesel_bus"]),
        boarded=start + pl.duration(minutes="m"), alighted=start + pl.duration(minutes=pl.col("m") + pl.col("length")),
        distance=pl.when(pl.int_range(pl.len()) % 499 == 7).then(pl.lit("far"))
        .otherwise(pl.format("{} km", "km")))
    source = (ROOT / "methodologies" / "shenzhen-public-transit.tanpu").read_text() + \
        "\ncap reduction at 2 kg per account per day\n"
    (tmp_path / "capped.tanpu").write_text(source)
    results = {}
    for name, frame, engine in (("time", rides, "batch"), ("random", rides.sample(fraction=1.0, shuffle=True, seed=3),
                                                             "batch"), ("scalar", rides, "scalar")):
        path = tmp_path / f"{name}.parquet"
        frame.write_parquet(path)
        out = tmp_path / f"{name}-out.parquet"
        done = tanpu("eval", "--engine", engine, str(tmp_path / "capped.tanpu"), str(path), "-o", str(out),
                     "--compact")
        assert done.returncode == 0, done.stderr
        results[name] = pl.read_parquet(out).select("id", "status", "code", "reduction_mg", "points").sort("id")
    assert results["random"].equals(results["time"])
    assert results["random"].equals(results["scalar"])
    counts = dict(results["random"].group_by("code").len().rows())
    assert counts["CAP_REACHED"] > 50 and counts["OVERLAP"] > 50 and counts["NOT_COVERED"] > 100


def test_summary_counts_and_sums_every_status_over_frames():
    """`_Summary.add` (each status counted by comparison, the credited and capped records'
    reduction and points summed, nulls left out) gives what a grouping by status gives,
    over frames of every status; a status none of the engines gives is still counted."""
    import numpy as np
    import polars as pl

    from tanpu.cli import _Summary

    rng = np.random.default_rng(3)
    n = 20_000
    statuses = np.array(_Summary.STATUSES)[rng.integers(0, len(_Summary.STATUSES), n)]
    statuses[:5] = "another"
    frame = pl.DataFrame({
        "row": np.arange(1, n + 1), "status": statuses,
        "reduction_mg": pl.Series(rng.integers(0, 10_000, n)).zip_with(pl.Series(rng.random(n) > 0.1),
                                                                        pl.Series([None] * n, dtype=pl.Int64)),
        "points": rng.integers(0, 50, n), "bonus": rng.integers(0, 3, n),
        "message": [f"m{i}" for i in range(n)],
    })
    summary = _Summary()
    for start in range(0, n, 3_000):
        summary.add(frame.slice(start, 3_000))
    grouped = {status: (count, mg, points) for status, count, mg, points in frame.group_by("status").agg(
        pl.len(), pl.col("reduction_mg").sum(), (pl.col("points") + pl.col("bonus")).sum()).iter_rows()}
    assert summary.total == n
    assert dict(summary.counts) == {status: got[0] for status, got in grouped.items()}
    assert summary.mg == grouped["credited"][1] + grouped["capped"][1]
    assert summary.points == grouped["credited"][2] + grouped["capped"][2]
    invalid = frame.filter(pl.col("status") == "invalid").head(21)
    assert summary.invalid == [("", row, message) for row, message in invalid.select("row", "message").iter_rows()]
