"""engine/spark.py on Spark local[2] against `tanpu eval`'s engine on the same Parquet file:
the same results row for row, for a per-record methodology (mapInArrow only), one with an
overlap rule and one with a daily cap besides (groupBy(account) + applyInArrow), with
repeated ids across accounts and batches, records without ids and unreadable records; and
a stream evaluated in two pieces with the account states carried between them equals the
stream evaluated whole. History windows (with a reward and a cap) over accounts whose days
are spread over Arrow batches and partitions, whole and in pieces with states. One SparkSession for the module, a few thousand records."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

# Skipped with the reason where PySpark (the test extras) or Java is missing, except under
# CI (env CI set), where they fail: .ci/run installs a JRE where there is none.
_MISSING = ("PySpark is not installed" if importlib.util.find_spec("pyspark") is None
            else "no Java runtime (java) for Spark" if shutil.which("java") is None else None)
if _MISSING:
    if os.environ.get("CI"):
        pytest.fail(f"the Spark tests cannot run under CI: {_MISSING}", pytrace=False)
    pytest.skip(_MISSING, allow_module_level=True)

from dsl import compile_source  # noqa: E402
from engine.batch import BatchEngine  # noqa: E402
from engine.native.build import build  # noqa: E402
from engine.spark import evaluate, evaluate_with_states  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SHENZHEN = (ROOT / "methodologies" / "shenzhen-public-transit.tanpu").read_text(encoding="utf-8")
OVERLAP = SHENZHEN.index("forbid overlap")
PER_RECORD = SHENZHEN[:OVERLAP]  # the overlap rule and the examples that test it dropped
CAPPED = SHENZHEN + "\ncap reduction at 500 g per account per day\n"
START_US = 1_714_514_400_000_000


@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable  # the workers import the engine
    session = (SparkSession.builder.master("local[2]").appName("tanpu-test")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.sql.adaptive.enabled", "false")
               # small Arrow batches: a repeated id and an account span several batches
               .config("spark.sql.execution.arrow.maxRecordsPerBatch", "700")
               .config("spark.sql.session.timeZone", "UTC")
               .getOrCreate())
    yield session
    session.stop()


def records(n: int, seed: int) -> pl.DataFrame:
    """Rides of ~60 accounts over 3 days, some overlapping, a third diesel (rejected); some
    ids repeated (within and across accounts), some missing, some rows unreadable."""
    rng = np.random.default_rng(seed)
    boarded = START_US + rng.integers(0, 3 * 24 * 60, n) * 60_000_000
    alighted = boarded + rng.integers(5, 90, n) * 60_000_000
    ids = np.array([f"r{seed}-{i}" for i in range(n)], dtype=object)
    again = rng.choice(n, n // 50, replace=False)
    ids[again] = ids[rng.integers(0, n, again.size)]
    ids[rng.choice(n, n // 100, replace=False)] = None
    distance = np.round(rng.integers(100, 30_000, n) / 1000.0, 3).astype(object)
    to_text = lambda us: pl.Series(us).cast(pl.Datetime("us")).dt.strftime("%Y-%m-%dT%H:%M")  # noqa: E731
    boarded_text = to_text(boarded).scatter(rng.choice(n, n // 200, replace=False), "yesterday")
    return pl.DataFrame({
        "id": pl.Series(list(ids), dtype=pl.String),
        "account": pl.Series([f"a{k}" for k in rng.integers(0, 60, n)]),
        "mode": pl.Series(np.array(["ebus", "metro", "diesel_bus"])[rng.integers(0, 3, n)]),
        "distance[km]": pl.Series(list(distance), dtype=pl.Float64),
        "boarded": boarded_text,  # some unreadable: invalid
        "alighted": to_text(alighted),
    })


def expected(source: str, path: Path) -> pl.DataFrame:
    """What `tanpu eval` computes for the file (its engine, as it runs it)."""
    compiled = compile_source(source, "test.tanpu")
    assert compiled.ok, compiled.render()
    engine = BatchEngine(compiled.methodology, kernels=build)
    return pl.concat(list(engine.evaluate_file(path)))


def collected(df) -> pl.DataFrame:
    return pl.from_arrow(df.toArrow()).sort("row")


@pytest.mark.parametrize("source", [PER_RECORD, SHENZHEN, CAPPED], ids=["per-record", "overlap", "cap"])
def test_spark_gives_the_results_of_tanpu_eval(spark, tmp_path, source):
    path = tmp_path / "records.parquet"
    records(2000, seed=len(source)).write_parquet(path)
    want = expected(source, path)
    got = collected(evaluate(spark.read.parquet(str(path)), source))
    assert got.columns == want.columns
    assert got.height == want.height == 2000
    # the cases the comparison is about are there
    statuses = set(want.get_column("status"))
    assert {"credited", "rejected", "duplicate", "invalid"} <= statuses
    assert want.filter(pl.col("id").str.starts_with("row-")).height > 0
    if source is not PER_RECORD:
        assert want.filter(pl.col("code").is_in(["OVERLAP", "CAP_REACHED"])).height > 0
    assert got.equals(want), got.join(want, on="row", suffix="_want").filter(
        pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}_want")) for c in want.columns if c != "row")
    ).head(5)


def test_rows_numbered_by_a_column_and_records_in_any_partition(spark, tmp_path):
    """With `row=`, the records can be spread over partitions in any order."""
    path = tmp_path / "records.parquet"
    frame = records(1500, seed=7)
    frame.with_row_index("line", offset=1).write_parquet(path)
    want = expected(CAPPED, path)
    df = spark.read.parquet(str(path)).repartition(3)
    got = collected(evaluate(df, CAPPED, row="line"))
    assert got.equals(want)


def test_states_carried_between_two_pieces_give_the_stream_whole(spark, tmp_path):
    """Records up to a day evaluated, their states kept, then the later records with those
    states: the later records get the results they get when all are evaluated at once."""
    frame = records(1000, seed=11).with_row_index("line", offset=1)
    # time order across the pieces, and every id its own (a repeated id across pieces is
    # the ledger's to refuse, not the rules')
    frame = frame.sort("boarded").with_columns(
        pl.format("r{}", pl.col("line")).alias("id"), pl.int_range(1, 1001).alias("line"))
    cut = frame.height // 2
    df = spark.createDataFrame(frame.to_arrow())
    whole = collected(evaluate(df, CAPPED, row="line"))
    first = spark.createDataFrame(frame.head(cut).to_arrow())
    second = spark.createDataFrame(frame.tail(frame.height - cut).to_arrow())
    empty = spark.createDataFrame([], "account string, state string")
    got_first, states = evaluate_with_states(first, CAPPED, empty, row="line")
    states = spark.createDataFrame(states.toArrow())  # stored and read back, as the ledger would
    got_second, after = evaluate_with_states(second, CAPPED, states, row="line")
    pieces = pl.concat([collected(got_first), collected(got_second)]).sort("row")
    assert pieces.equals(whole)
    assert whole.filter(pl.col("status") == "capped").height > 0
    # every account with a record has a state after, and it remembers its daily totals
    accounts = set(frame.get_column("account"))
    kept = dict(after.toArrow().to_pylist() and [(r["account"], r["state"]) for r in after.toArrow().to_pylist()])
    assert set(kept) == accounts
    assert all("cap" in state for state in kept.values())


def test_the_spark_eval_command_writes_the_results_of_tanpu_eval(spark, tmp_path):
    """`tanpu spark-eval` (in the test's Spark session): a folder of Parquet results with
    the methodology that gave them, the same as `tanpu eval`'s engine gives."""
    from click.testing import CliRunner

    from tanpu.cli import main

    methodology = tmp_path / "capped.tanpu"
    methodology.write_text(CAPPED, encoding="utf-8")
    path = tmp_path / "records.parquet"
    records(1500, seed=3).write_parquet(path)
    out = tmp_path / "results"
    run = CliRunner().invoke(main, ["spark-eval", str(methodology), str(path), "-o", str(out),
                                    "--batch-rows", "700", "--partitions", "2"])
    assert run.exit_code == 0, run.output
    assert "1500 record(s)" in run.output
    got = pl.read_parquet(out / "*.parquet").sort("row")
    want = expected(CAPPED, path)
    assert got.select(want.columns).equals(want)
    assert got.get_column("content_hash").unique().to_list()[0].startswith("sha256:")
    again = CliRunner().invoke(main, ["spark-eval", str(methodology), str(path), "-o", str(out)])
    assert again.exit_code != 0  # an existing output is never overwritten


# ---------------------------------------------------------------- history windows
HOUSEHOLD = (ROOT / "methodologies" / "shenzhen-household-electricity.tanpu").read_text(encoding="utf-8")
# a window, a reward's carried remainder and a daily cap on one account's stream
HOUSEHOLD_REWARD = HOUSEHOLD + ("\nreward voucher every 2000 points worth 1 CNY\n"
                                "cap reduction at 900 g per account per day\n")
HOUSEHOLD_START_US = 1_682_953_200_000_000  # 2023-05-01T15:00Z, 23:00 in Shanghai


def readings(accounts: int, days: int, seed: int) -> pl.DataFrame:
    """A reading an account and a day (sometimes two, sometimes none), in random row order:
    every account's days are spread over every Arrow batch and partition, so a window
    computed per batch instead of per account over the whole stream sees other days.
    Some ids repeated, some readings unreadable."""
    rng = np.random.default_rng(seed)
    account = np.repeat(np.arange(accounts), days)
    day = np.tile(np.arange(days), accounts)
    keep = rng.random(account.size) > 0.1
    twice = rng.random(account.size) < 0.05
    account = np.concatenate([account[keep], account[twice]])
    day = np.concatenate([day[keep], day[twice]])
    n = account.size
    order = rng.permutation(n)
    account, day = account[order], day[order]
    time = HOUSEHOLD_START_US + day * 86_400_000_000 + rng.integers(0, 50, n) * 60_000_000
    members = rng.integers(1, 4, n)
    used = np.round(members * 2.5 * rng.uniform(0.6, 1.8, n), 2).astype(object)
    used[rng.choice(n, n // 100, replace=False)] = "lots"  # unreadable: invalid
    ids = np.array([f"k{seed}-{i}" for i in range(n)], dtype=object)
    again = rng.choice(n, n // 100, replace=False)
    ids[again] = ids[rng.integers(0, n, again.size)]
    to_text = lambda us: pl.Series(us).cast(pl.Datetime("us")).dt.strftime("%Y-%m-%dT%H:%M")  # noqa: E731
    return pl.DataFrame({
        "id": pl.Series(list(ids), dtype=pl.String),
        "account": pl.Series([f"h{k}" for k in account]),
        "time": to_text(time),
        "used[kWh]": pl.Series([str(u) for u in used], dtype=pl.String),
        "members": pl.Series(members),
    })


@pytest.mark.parametrize("source", [HOUSEHOLD, HOUSEHOLD_REWARD], ids=["history", "history-reward-cap"])
def test_history_windows_are_each_accounts_whole_stream(spark, tmp_path, source):
    """Windows over an account's earlier days reach across Arrow batches and partitions:
    Spark gives what `tanpu eval` gives, which computes them per account over the file."""
    path = tmp_path / "readings.parquet"
    readings(20, 45, seed=len(source)).with_row_index("line", offset=1).write_parquet(path)
    want = expected(source, path)
    assert want.height > 700  # more than an Arrow batch
    # rows spread over three partitions in any order, numbered by their column
    df = spark.read.parquet(str(path)).repartition(3)
    got = collected(evaluate(df, source, row="line"))
    assert {"credited", "duplicate", "invalid"} <= set(want.get_column("status"))
    # records above the baseline credited through their 7-day mean: the window matters
    assert want.filter((pl.col("status") == "credited") & (pl.col("reduction_mg") > 0)).height > 100
    if source is HOUSEHOLD_REWARD:
        assert want.filter(pl.col("status") == "capped").height > 0
        assert want.filter(pl.col("counters").list.len() > 0).height > 0
    assert got.equals(want), got.join(want, on="row", suffix="_want").filter(
        pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}_want")) for c in want.columns if c != "row")
    ).head(5)


def test_history_states_carried_between_pieces_give_the_stream_whole(spark):
    """A history methodology (with a reward and a cap) in three pieces in time order, the
    states carried: each piece's records get what they get in the stream evaluated whole,
    and the states after hold each account's window."""
    frame = readings(8, 30, seed=5).filter(pl.col("used[kWh]") != "lots")
    frame = frame.sort("time").with_columns(
        pl.format("k{}", pl.int_range(1, frame.height + 1)).alias("id"),
        pl.int_range(1, frame.height + 1).alias("line"))
    # an id repeated within a piece (across accounts or not): a duplicate whose reading
    # the windows still hold
    ids = frame.get_column("id").to_list()
    ids[10], ids[100], ids[101] = ids[5], ids[80], ids[90]
    frame = frame.with_columns(pl.Series("id", ids))
    whole = collected(evaluate(spark.createDataFrame(frame.to_arrow()), HOUSEHOLD_REWARD, row="line"))
    states = spark.createDataFrame([], "account string, state string")
    pieces = []
    for piece in (frame.slice(0, 70), frame.slice(70, 60), frame.slice(130)):
        got, states = evaluate_with_states(spark.createDataFrame(piece.to_arrow()), HOUSEHOLD_REWARD,
                                           states, row="line")
        pieces.append(collected(got))
        states = spark.createDataFrame(states.toArrow())  # stored and read back
    assert pl.concat(pieces).sort("row").equals(whole)
    assert whole.filter(pl.col("status") == "credited").filter(pl.col("reduction_mg") > 0).height > 20
    assert whole.filter(pl.col("code") == "DUPLICATE_ID").height == 3
    kept = {r["account"]: r["state"] for r in states.toArrow().to_pylist()}
    assert set(kept) == set(frame.get_column("account"))
    assert all("history:" in state for state in kept.values())


# ---------------------------------------------------------------- repeated ids
@pytest.mark.parametrize("source", [PER_RECORD, CAPPED], ids=["per-record", "cap"])
def test_the_id_window_when_too_many_ids_repeat_gives_the_same(spark, tmp_path, monkeypatch, source):
    """Beyond MAX_REPEATED repeated id hashes the repeated ids are found by a window over
    the results instead of on the driver: the same results."""
    import engine.spark as module

    path = tmp_path / "records.parquet"
    records(1500, seed=21).write_parquet(path)
    want = expected(source, path)
    assert want.filter(pl.col("code") == "DUPLICATE_ID").height > 0
    monkeypatch.setattr(module, "MAX_REPEATED", 0)
    assert module._later_rows(module._prepared(spark.read.parquet(str(path)), None)[0],
                              module.Source.of(source), {"distance": "km"}) is None
    got = collected(evaluate(spark.read.parquet(str(path)), source))
    assert got.equals(want)


@pytest.mark.parametrize("source", [PER_RECORD, SHENZHEN], ids=["per-record", "overlap"])
def test_ids_the_engine_strips_are_the_same_id(spark, tmp_path, source):
    """Ids with whitespace around them (ASCII, ideographic) are the id without it, and a
    blank id is no id (`row-N`), as `tanpu eval` reads them: the hashed ids Spark groups
    by and the row numbers of blank ids agree with the engine's reading."""
    frame = records(1200, seed=9)
    ids = frame.get_column("id").to_list()
    for i in range(0, 300, 3):
        ids[i + 600] = f" {ids[i]}\u3000" if ids[i] else "\t"  # the same id, padded
    for i in range(900, 960):
        ids[i] = " \u3000 "  # blank: no id
    path = tmp_path / "records.parquet"
    frame.with_columns(pl.Series("id", ids, dtype=pl.String)).write_parquet(path)
    want = expected(source, path)
    assert want.filter(pl.col("id").str.starts_with("row-9")).height >= 60
    assert want.filter(pl.col("code") == "DUPLICATE_ID").height > 100
    got = collected(evaluate(spark.read.parquet(str(path)), source))
    assert got.equals(want), got.join(want, on="row", suffix="_want").filter(
        pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}_want")) for c in want.columns if c != "row")
    ).head(5)


def test_each_python_worker_compiles_the_methodology_once(spark, tmp_path):
    """After a run, the next job's tasks find the methodology compiled in their Python
    worker (reused between tasks and jobs: spark.python.worker.reuse), by the text's hash."""
    from engine.spark import Source

    path = tmp_path / "records.parquet"
    records(800, seed=4).write_parquet(path)
    evaluate(spark.read.parquet(str(path)), CAPPED).count()
    key = Source.of(CAPPED).key

    def probe(batches):
        import pyarrow as pa

        from engine import spark as module
        for _ in batches:
            pass
        yield pa.RecordBatch.from_pydict({"pid": [os.getpid()], "cached": [key in module._ENGINES]})

    seen = spark.range(0, 8, numPartitions=4).mapInArrow(probe, "pid long, cached boolean").collect()
    assert len(seen) == 4
    assert all(row["cached"] for row in seen)
    assert len({row["pid"] for row in seen}) <= 2  # local[2]: two workers, reused
