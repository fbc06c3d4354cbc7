"""tanpu/memory.py: a process that asked glibc to keep freed memory reuses it.

Run in subprocesses: the setting is process-wide and must not leak into the test run.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pathlib import Path

from tanpu.memory import POLARS_ALLOCATOR

ROOT_M = Path(__file__).resolve().parents[1] / "methodologies" / "chongqing-shared-ebike.tanpu"

PROBE = """
import resource, sys
import numpy as np
from tanpu.memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
for _ in range(3):
    a = np.ones(5_000_000); del a  # 40 MB, written, freed
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    a = np.ones(5_000_000); del a
print(kept, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


# Polars' allocator (jemalloc) returns freed pages after its decay time, when it is next
# called: freed and reallocated after a pause, a column faults again unless the decay
# was lengthened before Polars loaded
POLARS_PROBE = """
import resource, sys, time
from tanpu.memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
import polars as pl
s = pl.int_range(0, 5_000_000, eager=True)  # 40 MB
for _ in range(3):
    t = s * 2; del t
time.sleep(1.6)  # longer than Polars' own decay (0.5 s dirty, then 1 s muzzy)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(2):
    t = s * 2; del t
    time.sleep(0.6)
print(kept, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 2)
"""


def _probe(mode: str, probe: str = PROBE) -> tuple[str, float]:
    env = {k: v for k, v in os.environ.items() if k != POLARS_ALLOCATOR}  # as a user's shell has it
    done = subprocess.run([sys.executable, "-c", probe, mode], capture_output=True, text=True, check=True,
                          env=env)
    kept, faults = done.stdout.split()
    return kept, float(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_arrays_are_reused_without_page_faults():
    kept, faults = _probe("keep")
    assert kept == "True"
    # 40 MB written is 9,766 pages of 4 kB (20 of 2 MB): a reused block faults on none
    assert faults < 5
    _, default_faults = _probe("default")
    assert default_faults > faults


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Polars links jemalloc on Linux")
def test_freed_polars_columns_are_reused_after_a_pause():
    kept, faults = _probe("keep", POLARS_PROBE)
    assert kept == "True"
    assert faults < 100  # of 9,766 pages of 4 kB
    _, default_faults = _probe("default", POLARS_PROBE)
    assert default_faults > 1000


def test_polars_setting_is_not_claimed_once_polars_is_loaded():
    done = subprocess.run([sys.executable, "-c", "import polars, tanpu.memory as m; "
                           "print(m.keep_polars_memory())"], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


# ---------------------------------------------------------------- spilling to disk (issue 16, item 6)
SPILL = """
import resource, sys, tempfile
import polars as pl
from dsl import compile_source
from engine.batch import BatchEngine
from engine.native.build import build

limit = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
methodology = compile_source(open(sys.argv[1]).read(), sys.argv[1]).methodology
engine = BatchEngine(methodology, chunk_rows=500, kernels=build)
memory_rows = int(sys.argv[4])
frames = engine.evaluate_file(sys.argv[2], memory_rows=memory_rows)
out = pl.concat(list(frames))
print(out.height, out.get_column("reduction_mg").sum(), out.get_column("status").value_counts().sort("status").rows())
"""


def _rides(path, rows: int) -> None:
    import polars as pl

    n = pl.int_range(0, rows, eager=True)
    start = pl.datetime(2024, 6, 1) + pl.duration(seconds=n * 37 % 200_000)
    pl.DataFrame({"n": n}).select(
        id=pl.format("r{}", pl.col("n") % (rows - 50)),  # 50 ids repeated
        account=pl.format("a{}", pl.col("n") * 7919 % 97),
        started=start, ended=start + pl.duration(minutes=12),
        distance=(pl.col("n") % 50 / 10 + 0.5)).rename({"distance": "distance[km]"}).write_parquet(path)


def _spill_run(path, open_files: int, memory_rows: int, **kwargs):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    return subprocess.run([sys.executable, "-c", SPILL, str(root / "methodologies" / "chongqing-shared-ebike.tanpu"),
                           str(path), str(open_files), str(memory_rows)], capture_output=True, text=True,
                          cwd=root, **kwargs)


def test_a_spill_of_many_partitions_runs_under_a_small_open_file_limit(tmp_path):
    """101 partitions under `ulimit -n 64`: one appender per partition held 202 files
    open at once ("Too many open files"); the runs hold one. Results as in memory."""
    _rides(tmp_path / "rides.parquet", 4_000)
    spilled = _spill_run(tmp_path / "rides.parquet", 64, 80)
    assert spilled.returncode == 0, spilled.stderr
    in_memory = _spill_run(tmp_path / "rides.parquet", 1024, 10_000_000)
    assert in_memory.returncode == 0, in_memory.stderr
    assert spilled.stdout == in_memory.stdout
    assert "'duplicate', 50" in spilled.stdout and "'capped'" in spilled.stdout


def _spill_files(pid: int, folder) -> list[str]:
    """The files process `pid` holds open in `folder` (its spill files: unlinked)."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder) + "/") and not target.endswith(".parquet"):
            found.append(target)
    return found


def test_a_killed_spilling_run_leaves_nothing_on_the_disk(tmp_path):
    """The spill files are unlinked from the start: a SIGKILL (no time to clean up)
    leaves no file behind, and the disk they used is given back with the process."""
    import signal
    import time

    _rides(tmp_path / "rides.parquet", 200_000)
    env = dict(os.environ, TMPDIR=str(tmp_path))  # tempfile.gettempdir() of both runs
    run = subprocess.Popen([sys.executable, "-c", SPILL, str(ROOT_M), str(tmp_path / "rides.parquet"),
                            "1024", "4000"], env=env, cwd=ROOT_M.parents[1],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    held = []
    while time.monotonic() < deadline and run.poll() is None and not held:
        try:
            held = _spill_files(run.pid, tmp_path)
        except FileNotFoundError:
            break
        time.sleep(0.005)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert held, "the run ended before it spilled"
    assert all(name.endswith("(deleted)") for name in held), held  # never named in the folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rides.parquet"]
    _rides(tmp_path / "small.parquet", 2_000)
    again = _spill_run(tmp_path / "small.parquet", 1024, 200, env=env)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rides.parquet", "small.parquet"]


@pytest.mark.parametrize("codec", [("lz4", None), ("zstd", 1), None])
def test_spilled_segments_with_and_without_messages_give_the_in_memory_results(codec, tmp_path, monkeypatch):
    """A CSV file (its ids spilled too) with invalid rows in the middle: the segments
    of those runs carry the `message` column, the others leave it out (null in every
    row) and get it back when read; compressed or not, every column of every
    result is the in-memory run's."""
    import polars as pl

    from dsl import compile_source
    from engine.batch import BatchEngine
    from engine.batch import store
    from engine.native.build import build

    monkeypatch.setattr(store, "SPILL_CODEC", codec)
    store._codec.cache_clear()
    _rides(tmp_path / "rides.parquet", 3_000)
    frame = pl.read_parquet(tmp_path / "rides.parquet").with_columns(pl.col("distance[km]").cast(pl.String))
    frame = frame.with_columns(pl.when(pl.int_range(pl.len()).is_between(1_000, 1_119)).then(pl.lit("far"))
                               .otherwise(pl.col("distance[km]")).alias("distance[km]"))
    frame.write_csv(tmp_path / "rides.csv")
    methodology = compile_source(ROOT_M.read_text(encoding="utf-8"), str(ROOT_M)).methodology

    def run(memory_rows):
        engine = BatchEngine(methodology, chunk_rows=64, kernels=build)
        return pl.concat(list(engine.evaluate_file(tmp_path / "rides.csv", memory_rows=memory_rows,
                                                   spill_dir=tmp_path / "spill")))
    try:
        spilled, in_memory = run(400), run(10_000_000)
    finally:
        store._codec.cache_clear()
    assert spilled.height == 3_000
    assert {"invalid", "capped", "duplicate"} <= set(spilled.get_column("status"))
    assert spilled.filter(pl.col("message").str.contains("far")).height == 120
    assert spilled.equals(in_memory)
    assert list((tmp_path / "spill").iterdir()) == []  # the spill files were never named


def test_spilled_steps_and_differences_read_back_exactly(tmp_path):
    """`_Segments` writes the row numbers as steps along each segment and a datetime as
    its difference from the time, each in the narrowest integer type that holds them:
    every value comes back as it was given, extremes whose differences wrap included,
    segment by segment (a segment's first row is written whole), a column with nulls
    as it is; and ascending row numbers take fewer bytes than written whole."""
    import numpy as np
    import polars as pl

    from engine.batch import store

    rng = np.random.default_rng(16)
    n, partitions = 5_000, 7
    extremes = np.array([np.iinfo(np.int64).min, np.iinfo(np.int64).max, 0, -1], dtype=np.int64)
    time = rng.integers(-2**62, 2**62, n, dtype=np.int64)
    time[:4] = extremes
    end = time + rng.integers(0, 3_600_000_000, n, dtype=np.int64)
    end[4:8] = extremes[::-1]  # differences from the time that wrap
    frame = pl.DataFrame({
        "row": np.sort(rng.integers(1, 10**12, n, dtype=np.int64)),
        "time": time,
        "k:end": end,
        "k:start": time,
        "k:gaps": pl.Series(rng.integers(0, 5, n, dtype=np.int64)).set(pl.Series(np.arange(n) % 3 == 0), None),
        "id": [f"r{i}" for i in range(n)],
    })
    partition = rng.integers(0, partitions, n)
    partition[-100:] = partitions - 1
    coded = store._Segments(tmp_path, along=("row", "k:gaps"),
                            against={"k:end": "time", "k:start": "time", "k:gaps": "time"})
    plain = store._Segments(tmp_path)
    try:
        for segments in (coded, plain):
            segments.write(frame, partition, partitions, lambda i: (i, 0))
            segments.write(frame.head(1), np.zeros(1, dtype=np.int64), 1, lambda _: (0, 1))
            for i in range(partitions):
                got = pl.from_arrow(segments.get((i, 0)))
                assert got.equals(frame.filter(pl.Series(partition == i)))
            assert pl.from_arrow(segments.get((0, 1))).equals(frame.head(1))
            assert segments.frame([(i, 0) for i in range(partitions)]).height == n
        assert coded.size < plain.size
    finally:
        coded.close()
        plain.close()


def test_spilled_constants_and_narrowed_columns_read_back_exactly(tmp_path):
    """`_Segments` leaves out a column of one value in every row of a write (the reason and
    `credited` of the credited records, an input the file does not have, a datetime input
    that is the time itself), writes an integer column as its difference from its least
    value divided by their greatest common divisor (times in whole minutes) in the
    narrowest unsigned type, and text with 32-bit offsets: every value of every type comes
    back as given, extremes that wrap included, in writes whose columns are all constant
    too; the segment's stored columns are the narrow ones. A float column of whole
    numbers (a distance in metres) is narrowed as integers and given back bit for bit, as
    is one of nearly whole numbers (km times 1,000: 16047.999999999998), with each value's
    bits less its whole number's beside; one with a fraction, -0.0, NaN, an infinity or a
    value beyond int64 is written as it is."""
    import numpy as np
    import polars as pl
    import pyarrow as pa

    from engine.batch import store

    rng = np.random.default_rng(61)
    n, partitions = 4_000, 5
    minute = 60_000_000
    time = 1_714_485_600_000_000 + rng.integers(0, 43_200, n, dtype=np.int64) * minute
    wide = rng.integers(-2**62, 2**62, n, dtype=np.int64)
    wide[:2] = (np.iinfo(np.int64).min, np.iinfo(np.int64).max)  # differences that wrap
    frame = pl.DataFrame({
        "row": np.arange(10, 10 + n, dtype=np.int64),
        "time": time,
        "reason": pl.Series(np.zeros(n, dtype=np.int32)),
        "credited": np.ones(n, dtype=bool),
        "k:activity": [""] * n,
        "k:label": ["帐户"] * n,
        "k:boarded": time,
        "k:alighted": time + rng.integers(5, 90, n, dtype=np.int64) * minute,
        "k:wide": wide,
        "k:mode": pl.Series(rng.integers(-3, 3, n).astype(np.int32)),
        "k:small": pl.Series(rng.integers(0, 200, n).astype(np.int16)),
        "k:flag": rng.integers(0, 2, n).astype(bool),
        "k:distance": rng.random(n) * 30_000,
        "k:same": np.full(n, -0.0),
        "k:metres": rng.integers(100, 30_000, n).astype(np.float64),  # whole numbers: narrowed
        "k:far": np.where(np.arange(n) % 2 == 0, -2.0**63, 2.0**53),  # the extremes int64 holds
        "k:single": pl.Series(rng.integers(-500, 500, n).astype(np.float32)),
        "k:near": rng.integers(100, 30_000, n) / 1000 * 1000,  # km in metres: some 1 bit off whole
        "k:zero": np.where(np.arange(n) == 5, -0.0, rng.integers(0, 9, n).astype(np.float64)),  # as given
        "k:nan": np.where(np.arange(n) == n - 1, np.nan, np.arange(n, dtype=np.float64)),
        "k:inf": np.where(np.arange(n) == n - 1, np.inf, np.arange(n, dtype=np.float64)),
        "k:beyond": np.where(np.arange(n) == n - 1, 2.0**63, np.arange(n, dtype=np.float64)),
        "id": [f"r{i}" for i in range(n)],
        "points": pl.Series(rng.integers(-5, 5, n)).set(pl.Series(np.arange(n) % 7 == 0), None),
        "message": pl.Series([None if i % 9 else "far" for i in range(n)], dtype=pl.String),
    })
    partition = rng.integers(0, partitions, n)
    segments = store._Segments(tmp_path, along=("row",), against={"k:boarded": "time", "k:alighted": "time"})
    try:
        segments.write(frame, partition, partitions, lambda i: (i, 0))
        segments.write(frame.head(1), np.zeros(1, dtype=np.int64), 1, lambda _: (0, 1))  # one row
        segments.write(frame.select("reason", "credited", "k:activity").head(3), np.zeros(3, dtype=np.int64), 1,
                       lambda _: (0, 2))
        for i in range(partitions):
            got = pl.from_arrow(segments.get((i, 0)))
            assert got.equals(frame.filter(pl.Series(partition == i)))
            assert got.get_column("k:same").cast(pl.String).to_list()[0] == "-0.0"
            for name, kind in got.schema.items():  # floats bit for bit (-0.0, NaN)
                if kind.is_float():
                    want = frame.filter(pl.Series(partition == i)).get_column(name).to_numpy()
                    assert got.get_column(name).to_numpy().tobytes() == want.tobytes(), name
        assert pl.from_arrow(segments.get((0, 1))).equals(frame.head(1))
        assert pl.from_arrow(segments.get((0, 2))).select("reason", "credited", "k:activity").equals(
            frame.select("reason", "credited", "k:activity").head(3))
        stored = segments.index[(0, 0)][3]  # the schema the segment was written with
        for name in ("reason", "credited", "k:activity", "k:label", "k:boarded", "k:same"):
            assert name not in stored.names
        assert stored.field("time").type == pa.uint16()  # 43,200 minutes
        assert stored.field("k:alighted").type == pa.uint8()  # whole minutes, 5 to 89
        assert stored.field("k:wide").type == pa.uint64()
        assert stored.field("k:mode").type == pa.uint8()
        assert stored.field("id").type == pa.string()
        assert stored.field("points").type == pa.int64()  # nulls: as it is
        assert stored.field("k:metres").type == pa.uint16()  # whole numbers as integers
        assert stored.field("k:far").type == pa.uint8()  # two values: their difference's divisor
        assert stored.field("k:single").type == pa.uint16()
        near = frame.get_column("k:near").to_numpy()
        assert (near != np.rint(near)).any()  # nearly whole: the whole numbers and each one's bits off
        assert stored.field("k:near").type == pa.uint16() and stored.field("k:near\x00ulps").type == pa.uint8()
        for name in ("k:distance", "k:zero", "k:nan", "k:inf", "k:beyond"):  # fractions, -0.0, NaN, ...
            assert stored.field(name).type == pa.float64(), name
        # nothing to code (no steps, fractions, 64-bit unsigned, Booleans of both values):
        # the numbers still put in partition order after the others (`later`)
        plain = frame.select("k:distance", "k:nan", "k:flag").with_columns(
            pl.Series("k:huge", rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2)))
        uncoded = store._Segments(tmp_path)
        uncoded.write(plain, partition, partitions, lambda i: (i, 0))
        for i in range(partitions):
            assert uncoded.index[(i, 0)][4] == ()  # not coded
            got = pl.from_arrow(uncoded.get((i, 0)))
            assert got.equals(plain.filter(pl.Series(partition == i)))
        uncoded.close()
    finally:
        segments.close()


@pytest.mark.parametrize("codec", [("zstd", 1), ("lz4", None), None])
def test_many_small_segments_each_compressed_whole_read_back_exactly(codec, tmp_path, monkeypatch):
    """A billion rows spill about 3k rows a (run, partition) segment, and each segment is
    compressed as one buffer (one call, not one per column buffer: store.SPILL_CODEC).
    Segments of 0 to a few dozen rows, over several writes (runs) of one file, text with
    empty and non-ASCII values, nulls, coded row numbers: each comes back as it was
    given, at the offset the index says, and the file holds exactly the bytes the index
    counts (a compressed Arrow buffer exports its capacity, not its size: written as
    such, every later segment was read from the wrong place)."""
    import numpy as np
    import polars as pl

    from engine.batch import store

    monkeypatch.setattr(store, "SPILL_CODEC", codec)
    store._codec.cache_clear()
    rng = np.random.default_rng(6)
    partitions, runs = 211, 5
    segments = store._Segments(tmp_path, along=("row",), against={"k:end": "time"})
    try:
        expected = {}
        row = 1
        for run in range(runs):
            n = int(rng.integers(500, 3_000))
            rows = np.arange(row, row + n, dtype=np.int64)
            row += n
            time = rng.integers(0, 2**40, n, dtype=np.int64)
            frame = pl.DataFrame({
                "row": rows, "time": time, "k:end": time + rng.integers(0, 10**9, n, dtype=np.int64),
                "account": pl.Series([["", "帐户", "a" * 40, "b"][i % 4] + str(i % 97) for i in range(n)]),
                "message": pl.Series([None if i % 5 else "far" for i in range(n)], dtype=pl.String),
                "points": pl.Series(rng.integers(-5, 5, n)).set(pl.Series(np.arange(n) % 7 == 0), None),
            })
            if run == 2:  # one segment, as DiskStore.early writes a run's early outcomes
                segments.write(frame, np.zeros(n, dtype=np.int64), 1, lambda _: (partitions, 2))
                expected[(partitions, 2)] = frame
            partition = rng.integers(0, partitions, n)
            partition[partition == run] = run + 1  # a partition without rows in this run
            segments.write(frame, partition, partitions, lambda i, run=run: (i, run))
            for i in range(partitions):
                chosen = frame.filter(pl.Series(partition == i))
                if chosen.height:
                    expected[(i, run)] = chosen
        assert segments.size == sum(length for _, length, *_ in segments.index.values())
        assert os.fstat(segments.file.fileno()).st_size == segments.size
        for key, frame in expected.items():
            assert pl.from_arrow(segments.get(key)).equals(frame)
        for run in range(runs):
            assert segments.get((run, run)) is None
        assert segments.frame([(i, r) for r in range(runs) for i in range(partitions)]).height == row - 1
        assert segments.frame([(partitions, 2)]).equals(expected[(partitions, 2)])
    finally:
        segments.close()
        store._codec.cache_clear()


def test_a_spilled_parquet_files_ids_and_accounts_read_again_give_the_in_memory_results(tmp_path):
    """A Parquet file spilled: its outcomes keep the id and account of the invalid records
    only, and the others are read again from the file as each run is shown
    (DiskStore's `recall`). Padded, missing and repeated ids, padded and missing accounts,
    invalid rows whose padded id and account the slow reading keeps as written, times in
    two zones; a second file whose account is a categorical column and whose id is a
    number, a third without ids (`row-N`): every column of every result is the in-memory
    run's, and the scalar engine's."""
    import polars as pl

    from dsl import compile_source
    from engine import Engine
    from engine.batch import BatchEngine, results_frame
    from engine.native.build import build

    rows = 2_000
    n = pl.int_range(0, rows, eager=True)
    start = pl.datetime(2024, 6, 1) + pl.duration(seconds=n * 37 % 200_000)
    frame = pl.DataFrame({"n": n}).select(
        id=pl.when(pl.col("n") % 97 == 5).then(None)
        .when(pl.col("n") % 13 == 0).then(pl.format("  r{} ", pl.col("n") % (rows - 40)))
        .otherwise(pl.format("r{}", pl.col("n") % (rows - 40))),  # 40 ids repeated
        account=pl.when(pl.col("n") % 89 == 3).then(None)
        .when(pl.col("n") % 7 == 0).then(pl.format(" a{}  ", pl.col("n") * 7919 % 31))
        .otherwise(pl.format("a{}", pl.col("n") * 7919 % 31)),
        started=pl.when(pl.col("n") % 2 == 0).then(start.dt.strftime("%Y-%m-%dT%H:%M:%S+08:00"))
        .otherwise((start - pl.duration(hours=8)).dt.strftime("%Y-%m-%dT%H:%M:%SZ")),
        ended=(start + pl.duration(minutes=12)).dt.strftime("%Y-%m-%dT%H:%M:%S+08:00"),
        distance=pl.when(pl.col("n").is_between(700, 760) | (pl.col("n") % 13 == 0) & (pl.col("n") > 1500))
        .then(pl.lit("far")).otherwise((pl.col("n") % 50 / 10 + 0.5).cast(pl.String)),
    ).rename({"distance": "distance[km]"})
    frame.write_parquet(tmp_path / "rides.parquet", row_group_size=300)
    other = frame.with_columns(id=pl.int_range(0, rows) % (rows - 40),
                               account=pl.col("account").str.strip_chars().cast(pl.Categorical))
    other.write_parquet(tmp_path / "numbered.parquet", row_group_size=300)
    frame.drop("id").write_parquet(tmp_path / "unnamed.parquet", row_group_size=300)  # ids row-N
    methodology = compile_source(ROOT_M.read_text(encoding="utf-8"), str(ROOT_M)).methodology

    for name in ("rides.parquet", "numbered.parquet", "unnamed.parquet"):
        def run(memory_rows):
            engine = BatchEngine(methodology, chunk_rows=64, kernels=build)
            return pl.concat(list(engine.evaluate_file(tmp_path / name, memory_rows=memory_rows,
                                                       spill_dir=tmp_path / "spill")))
        spilled, in_memory = run(300), run(10_000_000)
        assert spilled.height == rows
        assert {"invalid", "capped", "credited"} <= set(spilled.get_column("status"))
        assert spilled.equals(in_memory)
        scalar = results_frame(Engine(methodology).evaluate(pl.read_parquet(tmp_path / name).rename(
            {"distance[km]": "distance"}).to_dicts(), column_units={"distance": "km"}))
        assert spilled.equals(scalar.select(spilled.columns))
        assert name == "unnamed.parquet" or "duplicate" in set(spilled.get_column("status"))
        if name == "rides.parquet":  # invalid rows' ids as written (the slow reading's), others stripped
            invalid = pl.col("status") == "invalid"
            assert spilled.filter(invalid & pl.col("id").str.starts_with(" ")).height > 0
            assert spilled.filter(~invalid & pl.col("id").str.starts_with(" ")).height == 0
    assert list((tmp_path / "spill").iterdir()) == []


def test_segments_written_by_several_threads_at_once_read_back_exactly(tmp_path):
    """DiskStore's spill writers (store.SPILL_WRITERS) call `_Segments.write` for
    different runs at once: each segment comes back as it was given, whichever thread
    appended first, and the file holds exactly the bytes the index counts. The same
    writes one after the other give the same segments (the index's offsets differ)."""
    import time as clock
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import polars as pl

    from engine.batch import store

    rng = np.random.default_rng(61)
    partitions, runs = 13, 24
    frames, placed = [], []
    for run in range(runs):
        n = int(rng.integers(1, 4_000))
        time = rng.integers(0, 2**40, n, dtype=np.int64)
        frames.append(pl.DataFrame({
            "row": np.arange(run * 10_000, run * 10_000 + n, dtype=np.int64), "time": time,
            "k:end": time + rng.integers(0, 10**9, n, dtype=np.int64),
            "account": [f"a{i % 31}-{run}" for i in range(n)],
            "message": pl.Series([None if (i + run) % 3 else "far" for i in range(n)], dtype=pl.String),
        }))
        placed.append(rng.integers(0, partitions, n))
    class Slow:
        """The spill file, each append counted a little later: another thread's write
        comes meanwhile (without the lock, its index took a stale offset)"""
        def __init__(self, file):
            self.raw = file

        def write(self, data):
            written = self.raw.write(data)
            clock.sleep(0.002)  # written, not yet counted
            return written

        def fileno(self):
            return self.raw.fileno()

        def close(self):
            self.raw.close()

    at_once = store._Segments(tmp_path, along=("row",), against={"k:end": "time"})
    at_once.file = Slow(at_once.file)
    in_turn = store._Segments(tmp_path, along=("row",), against={"k:end": "time"})
    try:
        def write(segments, run):
            segments.write(frames[run], placed[run], partitions, lambda i, run=run: (i, run))
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda run: write(at_once, run), range(runs)))
        for run in range(runs):
            write(in_turn, run)
        assert at_once.size == sum(length for _, length, *_ in at_once.index.values())
        assert os.fstat(at_once.file.fileno()).st_size == at_once.size == in_turn.size
        assert at_once.index.keys() == in_turn.index.keys()
        for run in range(runs):
            for i in range(partitions):
                expected = frames[run].filter(pl.Series(placed[run] == i))
                got = at_once.get((i, run))
                assert (got is None) == (expected.height == 0)
                if got is not None:
                    assert pl.from_arrow(got).equals(expected)
                    assert pl.from_arrow(in_turn.get((i, run))).equals(expected)
    finally:
        at_once.close()
        in_turn.close()


def test_a_spilled_parquet_files_repeated_ids_found_after_its_runs_were_written(tmp_path, monkeypatch):
    """A spilled Parquet file's ids are hashed as its runs are written, and its repeated
    ids found at the end of phase 1 (DiskStore's `later`, `settle`): the early outcomes
    (records the formulas did not credit) were written without them and are marked as
    their run is shown. Capped Shenzhen rides whose repeated ids fall on credited, not
    covered, badly timed and invalid rides, earlier and later copies in different runs:
    every column of every result is the in-memory run's and the scalar engine's. With
    more records sharing an id than duplicate_rows finds (memory_rows // 2), the file is
    spilled again with its ids: the same results. The ids are spilled only then."""
    import numpy as np
    import polars as pl

    from dsl import compile_source
    from engine import Engine
    from engine.batch import BatchEngine, results_frame
    from engine.batch import store
    from engine.native.build import build

    root = Path(__file__).resolve().parents[1]
    source = (root / "methodologies" / "shenzhen-public-transit.tanpu").read_text(encoding="utf-8")
    methodology = compile_source(source + "\ncap reduction at 2 kg per account per day\n", "capped").methodology
    rows = 3_000
    rng = np.random.default_rng(16)
    boarded = np.datetime64("2024-06-01T00:00", "us") + rng.integers(0, 3 * 24 * 60, rows) * np.timedelta64(1, "m")
    n = np.arange(rows)
    frame = pl.DataFrame({
        "id": [f"r{i % (rows - 60)}" for i in n],  # rows 2,940.. repeat the ids of rows 0..59
        "account": [f"a{i}" for i in rng.integers(0, 40, rows)],
        "mode": np.array(["ebus", "metro", "diesel_bus"])[n % 3],
        "distance[km]": [("far" if i % 41 == 7 else str(d)) for i, d in zip(n, rng.integers(1, 300, rows) / 10)],
        "boarded": boarded,
        "alighted": boarded + np.where(n % 17 == 4, -5, rng.integers(5, 60, rows)) * np.timedelta64(1, "m"),
    })
    frame.write_parquet(tmp_path / "rides.parquet", row_group_size=500)
    crowded = frame.with_columns(pl.format("r{}", pl.int_range(0, rows) % 1_000).alias("id"))
    crowded.write_parquet(tmp_path / "crowded.parquet", row_group_size=500)

    settled, got = [], {}
    settle = store.DiskStore.settle

    def counted(self):  # whether settled, and whether the ids were spilled
        settled.append((settle(self), self.ids.size > 0))
        return settled[-1][0]
    monkeypatch.setattr(store.DiskStore, "settle", counted)
    for name, attempts in (("rides.parquet", [(True, False)]),
                           ("crowded.parquet", [(False, False), (True, True)])):
        def run(memory_rows):
            engine = BatchEngine(methodology, chunk_rows=64, kernels=build)
            return pl.concat(list(engine.evaluate_file(tmp_path / name, memory_rows=memory_rows,
                                                       spill_dir=tmp_path / "spill")))
        settled.clear()
        spilled = run(300)
        assert settled[:len(attempts)] == attempts
        in_memory = run(10_000_000)
        statuses = set(spilled.get_column("code"))
        assert {"DUPLICATE_ID", "NOT_COVERED", "BAD_TIMES", "CAP_REACHED"} <= statuses
        assert spilled.equals(in_memory)
        records = pl.read_parquet(tmp_path / name).rename({"distance[km]": "distance"}).with_columns(
            pl.col("boarded").dt.strftime("%Y-%m-%dT%H:%M"), pl.col("alighted").dt.strftime("%Y-%m-%dT%H:%M"))
        scalar = results_frame(Engine(methodology).evaluate(records.to_dicts(), column_units={"distance": "km"}))
        assert spilled.equals(scalar.select(spilled.columns))
        got[name] = spilled
    # a not covered ride's id repeated: the later copy's early outcome said NOT_COVERED
    # and it is shown DUPLICATE_ID (the mark `settle` made possible)
    marked = got["rides.parquet"].with_columns(mode=frame.get_column("mode")).filter(pl.col("code") == "DUPLICATE_ID")
    assert marked.height >= 50 and marked.filter(pl.col("mode") == "diesel_bus").height >= 10
    assert list((tmp_path / "spill").iterdir()) == []

    # a CSV file has no id column to read alone: its ids are hashed as its runs are
    # written too (not spilled), and one with a repeated id is spilled again with them;
    # the invalid rows' ids are not hashed (the check never compares them), so a file
    # whose unparsable rows share one id is not. The same results as the Parquet file's.
    unique = frame.with_columns(pl.when(pl.col("distance[km]") == "far").then(pl.lit("bad"))
                                .otherwise(pl.format("u{}", pl.int_range(0, rows))).alias("id"))
    unique.write_parquet(tmp_path / "unique.parquet", row_group_size=500)
    for name, attempts, twin in (("rides", [(False, False), (True, True)], got["rides.parquet"]),
                                 ("unique", [(True, False)], None)):
        pl.read_parquet(tmp_path / f"{name}.parquet").write_csv(tmp_path / f"{name}.csv")
        settled.clear()
        engine = BatchEngine(methodology, chunk_rows=64, kernels=build)
        spilled = pl.concat(list(engine.evaluate_file(tmp_path / f"{name}.csv", memory_rows=300,
                                                      spill_dir=tmp_path / "spill")))
        assert settled[:len(attempts)] == attempts
        if twin is None:
            twin = pl.concat(list(engine.evaluate_file(tmp_path / f"{name}.parquet", memory_rows=10_000_000)))
        assert spilled.equals(twin)
    assert list((tmp_path / "spill").iterdir()) == []


@pytest.mark.parametrize("shown_runs", [1, 2, 5, 1_000])
def test_runs_shown_together_and_compact_columns_give_the_in_memory_results(shown_runs, tmp_path, monkeypatch):
    """Phase 3 shows a group of runs at once (DiskStore's `shown_runs`: phase 2 splits
    each partition's outcomes by group, cut without a gather as they come in row order,
    and the group's early outcomes are read by run), put in row order by one scatter;
    with `columns` (a `--compact` run's) the outcomes spill no time and no flags and
    only those columns are shown. Groups of one run, of two and five (the last one
    short), one of all: every column is the in-memory run's, with and without `columns`
    (the in-memory run given them too); fewer runs at once write more outcome segments."""
    import polars as pl

    from dsl import compile_source
    from engine.batch import BatchEngine
    from engine.batch import store
    from engine.native.build import build
    from engine.result import COMPACT_COLUMNS

    _rides(tmp_path / "rides.parquet", 3_000)
    n = pl.int_range(0, pl.len())
    pl.read_parquet(tmp_path / "rides.parquet").with_columns(  # rides the formulas reject (early
        # outcomes, a segment a run), out of range and overlapping
        ended=pl.when(n % 11 == 0).then(pl.col("started") - pl.duration(minutes=1))
        .when(n % 13 == 0).then(pl.col("ended") + pl.duration(hours=3)).otherwise(pl.col("ended")),
        distance=pl.when(n % 17 == 0).then(150.0).otherwise(pl.col("distance[km]")),
    ).drop("distance[km]").rename({"distance": "distance[km]"}).write_parquet(tmp_path / "rides.parquet")
    methodology = compile_source(ROOT_M.read_text(encoding="utf-8"), str(ROOT_M)).methodology
    seen = []
    results = store.DiskStore.results

    def kept(self):
        seen.append(self)
        self.shown_runs = shown_runs
        yield from results(self)
    monkeypatch.setattr(store.DiskStore, "results", kept)
    segments = []
    close = store._Segments.close

    def counted(self):
        if any(s.outcomes is self for s in seen):
            segments.append(len(self.index))
        close(self)
    monkeypatch.setattr(store._Segments, "close", counted)

    def run(memory_rows, columns=None):
        engine = BatchEngine(methodology, chunk_rows=64, kernels=build)
        return pl.concat(list(engine.evaluate_file(tmp_path / "rides.parquet", memory_rows=memory_rows,
                                                   spill_dir=tmp_path / "spill", columns=columns)))
    compact = (*COMPACT_COLUMNS, "row", "status", "bonus", "message")
    in_memory = run(10_000_000)
    assert {"capped", "duplicate", "credited", "rejected"} <= set(in_memory.get_column("status"))
    assert {"OVERLAP", "BAD_TIMES"} <= set(in_memory.get_column("code"))
    spilled = run(400)
    assert spilled.equals(in_memory)
    assert "time" in seen[-1].outcomes.schema.names and "flags" in seen[-1].outcomes.schema.names
    shown = run(400, compact)
    assert "time" not in seen[-1].outcomes.schema.names and "flags" not in seen[-1].outcomes.schema.names
    assert set(shown.columns) == set(compact)
    assert shown.equals(in_memory.select(shown.columns))
    assert run(10_000_000, compact).equals(shown)
    runs, partitions = len(seen[-1].run_starts), seen[-1].partitions
    assert runs >= 8 and partitions >= 10
    groups = -(-runs // shown_runs)
    assert segments[-1] <= groups * partitions + runs and (shown_runs == 1 or segments[-1] < runs * partitions)
    assert list((tmp_path / "spill").iterdir()) == []


def test_outcomes_put_in_row_order_by_their_rows_and_cut_in_order():
    """`_in_row_order` (a scatter by row number of segments' record batches) gives what
    concatenating them and sorting by row gives, column for column (numbers, text, a
    column with nulls, one null in every row), and refuses outcomes that miss a row, hold
    one twice or go past the run; `_Segments.write` of rows whose
    partition never goes down (`ordered`) writes the segments a sort and gather write."""
    import tempfile

    import numpy as np
    import polars as pl

    from engine.batch import store

    rng = np.random.default_rng(7)
    n, first = 5_000, 1_234
    rows = rng.permutation(n) + first
    points = rng.integers(0, 9, n)
    frame = pl.DataFrame({"row": rows, "points": points, "id": [f"r{i}" for i in rows],
                          "reason": points.astype(np.int32), "mg": points * 1.5,
                          "time": pl.Series(points).zip_with(pl.Series(points > 2), pl.Series([None] * n, dtype=pl.Int64)),
                          "message": pl.Series([None] * n, dtype=pl.String)})

    def pieces(frame, cuts=(0, 1, 1, 700, 3_000, n)):  # segments of 1 to a few thousand rows, one empty
        table = frame.to_arrow()
        return [b for a, b in zip(cuts, cuts[1:]) for b in table.slice(a, b - a).to_batches()], table.schema
    got = store._in_row_order(*[pieces(frame)[0], first, pieces(frame)[1]])
    assert got.equals(frame.sort("row")) and got.schema == frame.schema
    assert store._in_row_order([], first, pieces(frame)[1]) is None
    twice = frame.with_columns(row=pl.when(pl.col("row") == first).then(first + 1).otherwise(pl.col("row")))
    for broken in (frame.head(n - 1), twice, frame.with_columns(row=pl.col("row") + 1)):
        batches, schema = pieces(broken, (0, 10, broken.height))
        with pytest.raises(ValueError):
            store._in_row_order(batches, first, schema)
    ordered = frame.sort("row")
    partition = np.sort(rng.integers(0, 9, n))
    partition[partition == 4] = 5  # a partition without rows
    with tempfile.TemporaryDirectory() as folder:
        cut, gathered = store._Segments(folder, along=("row",)), store._Segments(folder, along=("row",))
        try:
            cut.write(ordered, partition, 9, lambda i: (i, 0), ordered=True)
            gathered.write(ordered, partition, 9, lambda i: (i, 0))
            assert cut.index.keys() == gathered.index.keys() and (4, 0) not in cut.index
            for key in cut.index:
                assert pl.from_arrow(cut.get(key)).equals(pl.from_arrow(gathered.get(key)))
                assert pl.from_arrow(cut.get(key)).equals(ordered.filter(pl.Series(partition == key[0])))
        finally:
            cut.close()
            gathered.close()
