"""`tanpu eval` of a small file runs without NumPy and Polars (startup; to Parquet, without
Polars), and writes the bytes the batch path writes: recordfiles.result_lines and
recordfiles.result_table against ResultWriter."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from dsl import compile_source
from engine.batch import BatchEngine, results_frame
from engine.native.build import build
from engine.recordfiles import (ResultWriter, format_float, parquet_writer, result_lines, result_table,
                                write_result_table)
from engine.result import MethodologyRef, Result

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "methodologies" / "samples").glob("*.csv"))


def test_floats_are_written_as_polars_writes_them():
    rng = random.Random(7)
    values = [0.0, -0.0, 1.0, 1e-06, 1.5e-05, 0.000123, 1e15, 1e16, 1.5e16, 1e22, 2.5e-7,
              5e-324, 1.7976931348623157e308, -3.25, 1234567.0]
    for _ in range(20_000):
        values.append(rng.randint(-10 ** 12, 10 ** 12) / 1e6)  # milligrams as kilograms
        values.append(rng.random() * 10 ** rng.randint(-30, 30))
        values.append(float(rng.randint(0, 10 ** 18)))
    written = pl.DataFrame({"x": values}).write_csv(include_header=False).splitlines()
    assert [format_float(v) for v in values] == written


def test_times_are_written_to_parquet_as_polars_strftime_writes_them():
    """recordfiles._iso_seconds (NumPy, the Parquet writer's) against Polars' strftime and
    Python's isoformat: leap days, before 1970, the ends of the years it takes, nulls."""
    from datetime import datetime, timezone

    from engine.recordfiles import _iso_seconds

    rng = random.Random(11)
    ends = [datetime(1000, 1, 1, tzinfo=timezone.utc), datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc),
            datetime(1969, 12, 31, 23, 59, 59, tzinfo=timezone.utc), datetime(2024, 2, 29, 12, tzinfo=timezone.utc),
            datetime(1900, 3, 1, tzinfo=timezone.utc), datetime(2000, 2, 29, 23, 59, 59, tzinfo=timezone.utc)]
    seconds = [int(d.timestamp()) for d in ends]
    seconds += [rng.randint(seconds[0], seconds[1]) for _ in range(20_000)]
    seconds += [rng.randint(-10 ** 9, 4 * 10 ** 9) for _ in range(20_000)]
    times = pl.Series("time", [s * 1_000_000 for s in seconds] + [None], dtype=pl.Int64)
    expected = pl.from_epoch(times, time_unit="us").dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    got = pl.from_arrow(_iso_seconds(times))
    assert got.to_list() == expected.to_list()
    assert got.to_list()[:2] == [d.isoformat().replace("+00:00", "Z") for d in ends[:2]]


def _polars_bytes(results, ref, fmt: str, tmp_path: Path) -> bytes:
    import io

    if fmt == "stdout":
        stream = io.StringIO()
        writer = ResultWriter(None, ref, stream=stream)
    else:
        target = tmp_path / f"polars.{fmt}"
        writer = ResultWriter(target, ref)
    writer.write(results_frame(results))
    writer.close()
    return stream.getvalue().encode() if fmt == "stdout" else target.read_bytes()


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "stdout"])
def test_awkward_results_are_written_byte_for_byte_as_the_batch_path_writes_them(fmt, tmp_path):
    ref = MethodologyRef("x.y", "1.0.0", "sha256:" + "ab" * 32)
    results = [
        Result("a,1", "acct \"q\"", 1_700_000_000_000_000, "credited", reduction_mg=1,
               points=0, baseline_mg=5, project_mg=4, leakage_mg=0, row=1),
        Result("b", "ü账户", 1_700_000_000_123_456, "capped", "CAP_REACHED", "第二\n行, \"quoted\"",
               reduction_mg=15, points=15, bonus=2, flags=("A", "B"), counters=("rides=1",), row=2),
        Result("c", "", None, "invalid", "INVALID_RECORD", "distance: not a number\r", row=3),
        Result("d", "x", -86_400_000_000, "rejected", "NOT_COVERED", "", reduction_mg=10 ** 15, row=4),
    ]
    lines = "".join(result_lines(results, ref, fmt)).encode()
    assert lines == _polars_bytes(results, ref, fmt, tmp_path)


AWKWARD = [
    Result("a,1", "acct \"q\"", 1_700_000_000_000_000, "credited", reduction_mg=1,
           points=0, baseline_mg=5, project_mg=4, leakage_mg=0, row=1),
    Result("b", "ü账户", 1_700_000_000_000_001, "capped", "CAP_REACHED", "第二\n行",
           reduction_mg=15, points=15, bonus=2, flags=("A", "B"), counters=("rides=1",), row=2),
    Result("c", "", None, "invalid", "INVALID_RECORD", "distance: not a number", row=3),
    Result("d", "x", -86_400_000_000, "rejected", "NOT_COVERED", "", reduction_mg=924193, row=4),
]


@pytest.mark.parametrize("compact", [False, True], ids=["full", "compact"])
@pytest.mark.parametrize("results", [AWKWARD, AWKWARD[:1] + AWKWARD[2:], AWKWARD[2:3], []],
                         ids=["flags-fraction", "whole-seconds", "no-time", "none"])
def test_awkward_results_are_written_to_parquet_as_the_batch_path_writes_them(results, compact, tmp_path):
    """Flags on some rows (the others "") or on none (null), times with a fraction, none,
    no result at all: result_table (PyArrow alone) against the batch path's frame."""
    ref = MethodologyRef("x.y", "1.0.0", "sha256:" + "ab" * 32)
    write_result_table(results, ref, tmp_path / "small.parquet", compact=compact)
    writer = ResultWriter(tmp_path / "batch.parquet", ref, compact=compact)
    writer.write(results_frame(results))
    writer.close()
    _assert_same_parquet(tmp_path / "small.parquet", tmp_path / "batch.parquet")


@pytest.mark.parametrize("options", [{}, {"use_dictionary": ["status", "code"], "store_schema": False},
                                     {"use_dictionary": False, "compression": "zstd"}],
                         ids=["defaults", "as-results", "plain"])
@pytest.mark.parametrize("compact", [False, True], ids=["full", "compact"])
def test_the_parquet_writer_writes_the_bytes_of_pyarrow_parquets(options, compact, tmp_path):
    """parquet_writer (PyArrow's writer class made without importing pyarrow.parquet)
    against pyarrow.parquet.ParquetWriter given the same options: the same file, byte for
    byte, in two row groups, with key-value metadata added."""
    import pyarrow.parquet as pq

    ref = MethodologyRef("x.y", "1.0.0", "sha256:" + "ab" * 32)
    table = result_table(AWKWARD, ref, compact)
    for name, make in (("ours", parquet_writer), ("public", pq.ParquetWriter)):
        writer = make(str(tmp_path / f"{name}.parquet"), table.schema, **options)
        writer.write_table(table)
        writer.write_table(table.slice(1))
        writer.add_key_value_metadata({"k": "v"})
        writer.close()
    assert (tmp_path / "ours.parquet").read_bytes() == (tmp_path / "public.parquet").read_bytes()
    assert pq.read_table(tmp_path / "ours.parquet").num_rows == 2 * len(AWKWARD) - 1


def _assert_same_parquet(small: Path, batch: Path) -> None:
    """The same table read back, the same metadata and Parquet schema, the same bytes."""
    import pyarrow.parquet as pq

    got, expected = pq.read_table(small), pq.read_table(batch)
    assert got.schema.equals(expected.schema, check_metadata=True)
    assert got.equals(expected)
    assert pq.read_metadata(small).schema.equals(pq.read_metadata(batch).schema)
    assert small.read_bytes() == batch.read_bytes()


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_every_bundled_sample_small_path_equals_the_batch_path(sample, small_runs, tmp_path):
    source = ROOT / "methodologies" / f"{sample.stem}.tanpu"
    methodology = compile_source(source.read_text(encoding="utf-8"), str(source)).methodology
    batch = BatchEngine(methodology, kernels=build)
    for fmt in ("csv", "jsonl"):
        writer = ResultWriter(tmp_path / f"batch.{fmt}", batch.ref)
        for frame in batch.evaluate_file(sample):
            writer.write(frame)
        writer.close()
    # JSON Lines: the small path's lines in this process; CSV: the command, in a process of
    # its own (one for every sample), which must not load NumPy, Polars or PyArrow
    from engine import Engine
    from engine.recordfiles import open_records

    engine = Engine(methodology)
    source = open_records(sample)
    results = engine.evaluate(source.rows, column_units=source.column_units)
    assert "".join(result_lines(results, engine.ref, "jsonl")).encode() == \
        (tmp_path / "batch.jsonl").read_bytes()
    small = small_runs["csv"]
    assert small.codes[sample.stem] == 0, small.stderr
    assert small.loaded == [], small.stderr  # none of them loaded
    assert small.output(sample.stem).read_bytes() == (tmp_path / "batch.csv").read_bytes()


@pytest.mark.parametrize("compact", [False, True], ids=["full", "compact"])
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.stem)
def test_every_bundled_sample_small_path_to_parquet_equals_the_batch_path(sample, compact, small_runs,
                                                                          tmp_path):
    """`tanpu eval SAMPLE -o x.parquet [--compact]` (the small path: the scalar engine and
    PyArrow, without Polars or the batch engine) against the batch path's ResultWriter."""
    source = source_path(sample)
    methodology = compile_source(source.read_text(encoding="utf-8"), str(source)).methodology
    batch = BatchEngine(methodology, kernels=build)
    writer = ResultWriter(tmp_path / "batch.parquet", batch.ref, compact=compact)
    for frame in batch.evaluate_file(sample):
        writer.write(frame)
    writer.close()
    small = small_runs["compact" if compact else "parquet"]
    assert small.codes[sample.stem] == 0, small.stderr
    assert small.loaded == [], small.stderr  # none of them loaded
    _assert_same_parquet(small.output(sample.stem), tmp_path / "batch.parquet")


@pytest.mark.parametrize("compact", [False, True], ids=["full", "compact"])
def test_a_parquet_file_to_parquet_loads_no_pyarrow_parquet(compact, tmp_path):
    """The batch path, Parquet in and out, reads the footer by Polars and writes by
    recordfiles.parquet_writer: `pyarrow.parquet` (and with it `pyarrow.fs` and `ssl`) is
    never imported, and the results are those of the same records read from CSV."""
    sample = ROOT / "methodologies" / "samples" / "shenzhen-public-transit.csv"
    records = tmp_path / "rides.parquet"
    pl.read_csv(sample, infer_schema=False).write_parquet(records)
    outputs = {}
    for name, source in (("parquet", records), ("csv", sample)):
        done = subprocess.run(
            [sys.executable, "-c", "import atexit, sys; atexit.register(lambda: print(sorted(m for m in "
             "('pyarrow.parquet', 'pyarrow.fs', 'ssl') if m in sys.modules), file=sys.stderr)); "
             "from tanpu.cli import main; main()", "eval", str(source_path(sample)), str(source),
             "-o", str(tmp_path / f"{name}.parquet.out.parquet"), *(["--compact"] if compact else [])],
            capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert done.returncode == 0, done.stderr
        if name == "parquet":
            assert done.stderr.strip().endswith("[]"), done.stderr  # none of them loaded
        outputs[name] = pl.read_parquet(tmp_path / f"{name}.parquet.out.parquet")
    assert outputs["parquet"].height > 0 and outputs["parquet"].equals(outputs["csv"])



def source_path(sample: Path) -> Path:
    return ROOT / "methodologies" / f"{sample.stem}.tanpu"


# `tanpu eval` of every sample, by the command's own entry point, in one process per kind of
# output (not one per sample: a Python start per test was most of this file's time). Each
# process must not load the modules the small path avoids: none of them after every sample,
# so none after any one. Runs as `tanpu eval` does, exit codes and stderr kept per sample.
_SMALL_RUNNER = """
import json, sys
from tanpu.cli import main
jobs, watched, report = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
codes = {}
for name, args in jobs.items():
    try:
        main(args, prog_name="tanpu")
        codes[name] = 0
    except SystemExit as done:
        codes[name] = done.code if isinstance(done.code, int) else 1
with open(report, "w") as out:
    json.dump({"codes": codes, "loaded": sorted(m for m in watched if m in sys.modules)}, out)
"""
# what each kind's process must not load
_SMALL_KINDS = {
    "csv": ((".csv", ()), ("numpy", "polars", "pyarrow")),
    "parquet": ((".parquet", ()), ("polars", "pandas", "engine.batch", "pyarrow.compute",
                                   "pyarrow.fs", "ssl")),
    "compact": ((".parquet", ("--compact",)), ("polars", "pandas", "engine.batch", "pyarrow.compute",
                                               "pyarrow.fs", "ssl")),
}


@dataclass
class SmallRun:
    folder: Path
    suffix: str
    codes: dict
    loaded: list
    stderr: str

    def output(self, stem: str) -> Path:
        return self.folder / f"{stem}{self.suffix}"


def _warm_caches(sample: Path) -> None:
    """What each test did in this process before it started its command: the methodology
    compiled and its records evaluated, so the caches of dsl/cache.py hold the units of the
    sample's records (a unit text not in them, such as the samples' broken `,5`, is asked
    of Pint, which loads NumPy)."""
    from engine import Engine
    from engine.recordfiles import open_records

    source = source_path(sample)
    engine = Engine(compile_source(source.read_text(encoding="utf-8"), str(source)).methodology)
    records = open_records(sample)
    engine.evaluate(records.rows, column_units=records.column_units)


class SmallRuns(dict):
    """kind -> SmallRun, each kind's process started when a test first asks for it."""

    def __init__(self, tmp_path_factory):
        super().__init__()
        self.tmp_path_factory = tmp_path_factory

    def __missing__(self, kind: str) -> SmallRun:
        (suffix, options), watched = _SMALL_KINDS[kind]
        folder = self.tmp_path_factory.mktemp(f"small-{kind}")
        for sample in SAMPLES:  # the caches warm, as each test left them before
            _warm_caches(sample)
        jobs = {s.stem: ["eval", str(source_path(s)), str(s), "-o", str(folder / f"{s.stem}{suffix}"),
                         *options] for s in SAMPLES}
        done = subprocess.run([sys.executable, "-c", _SMALL_RUNNER, json.dumps(jobs),
                               json.dumps(watched), str(folder / "report.json")],
                              capture_output=True, text=True, cwd=ROOT, timeout=600)
        assert done.returncode == 0, done.stderr
        report = json.loads((folder / "report.json").read_text())
        self[kind] = SmallRun(folder, suffix, report["codes"], report["loaded"], done.stderr)
        return self[kind]


@pytest.fixture(scope="module")
def small_runs(tmp_path_factory) -> SmallRuns:
    return SmallRuns(tmp_path_factory)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_result_file_s_pages_are_let_go_behind_the_writer(fmt, tmp_path, monkeypatch):
    """ResultWriter asks the kernel to drop the pages of what it wrote (WrittenPages):
    each time the file grew by STEP, from where the call before began (the pages whose
    writing out that call started) up to what is written; the file is the one written
    without it; a file begun anew (`restart`) is advised from its start again."""
    import os

    from engine import recordfiles

    monkeypatch.setattr(recordfiles.WrittenPages, "STEP", 2000)
    ref = MethodologyRef("x.y", "1.0.0", "sha256:" + "ab" * 32)
    frames = [results_frame([Result(f"r{k}-{i}", f"a{i}", 1_700_000_000_000_000 + i, "credited", "", "",
                                    reduction_mg=i * 7919, points=i, row=k * 500 + i) for i in range(500)])
              for k in range(4)]
    calls = []

    def recorded(fd, offset, length, advice):
        calls.append((offset, offset + length, advice, os.fstat(fd).st_size))

    def written(name: str, advise) -> tuple[bytes, list]:
        monkeypatch.setattr(os, "posix_fadvise", advise)
        writer = ResultWriter(tmp_path / f"{name}.{fmt}", ref)
        for frame in frames:  # written, then begun anew (the engine's rewind)
            writer.write(frame)
        writer.restart()
        calls.clear()
        for frame in frames:
            writer.write(frame)
        writer.close()
        return (tmp_path / f"{name}.{fmt}").read_bytes(), list(calls)

    plain, _ = written("plain", lambda *args: None)
    advised, ranges = written("advised", recorded)
    assert advised == plain
    assert len(ranges) >= 3 and {advice for _, _, advice, _ in ranges} == {os.POSIX_FADV_DONTNEED}
    assert all(end == size for _, end, _, size in ranges)  # up to what is written
    ends = [end for _, end, _, _ in ranges]
    assert all(later - end >= 2000 for end, later in zip(ends, ends[1:]))  # a STEP at least between
    assert [start for start, *_ in ranges] == [0, 0] + ends[:-2]  # the range before's start kept
