"""The batch engine on Spark local[2] beside `tanpu eval` and a hand-written Polars program.

    .venv/bin/python bench/bench_spark.py [--n 1000000] [--rules]

One generated Parquet file of Shenzhen rides (bench_engine.typed_frame, not stored),
evaluated three ways, each Parquet in, Parquet out, wall clock in the same run:
- `tanpu eval` (a subprocess, as a user runs it);
- `tanpu spark-eval --master local[2]` (a subprocess: JVM start, session, the jobs);
- the same `engine.spark.evaluate` in this process, timed from an open session (the
  jobs only, what a long-running Spark application pays per run);
- the hand-written Polars program of bench_engine (reads the file, writes id, account,
  reduction and points).
Without --rules the methodology is per record (its overlap rule dropped: mapInArrow and
the id check only); with it, the overlap rule and a 2 kg daily cap (groupBy(account) +
applyInArrow). Figures only; nothing here asserts a timing. The load average is printed
because the machine may be shared.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import polars as pl  # noqa: E402

from bench_engine import CAP, handwritten_polars, typed_frame  # noqa: E402

SOURCE = (ROOT / "methodologies" / "shenzhen-public-transit.tanpu").read_text(encoding="utf-8")
PER_RECORD = SOURCE[:SOURCE.index("forbid overlap")]
RULES = SOURCE + CAP
TANPU = str(Path(sys.executable).with_name("tanpu"))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-3000:]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--rules", action="store_true", help="the overlap rule and a daily cap")
    args = parser.parse_args()
    import importlib.util
    if importlib.util.find_spec("pyspark") is None or shutil.which("java") is None:
        print("skipped: needs PySpark (pip install -e '.[test]') and a Java runtime")
        return
    text = RULES if args.rules else PER_RECORD
    work = Path(tempfile.mkdtemp(prefix="tanpu-bench-spark-"))
    try:
        methodology = work / "m.tanpu"
        methodology.write_text(text, encoding="utf-8")
        records = work / "records.parquet"
        typed_frame(args.n).rename({"distance": "distance[km]"}).write_parquet(records)
        print(f"{args.n} records, {'overlap rule + daily cap' if args.rules else 'per record'}, "
              f"load average {os.getloadavg()[0]:.1f}")

        hand = timed(lambda: handwritten_polars(pl.read_parquet(records).rename(
            {"distance[km]": "distance"})).write_parquet(work / "hand.parquet"))
        cli = timed(lambda: run(TANPU, "eval", str(methodology), str(records), "-o",
                                str(work / "eval.parquet")))
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        submit = timed(lambda: run(TANPU, "spark-eval", str(methodology), str(records), "-o",
                                   str(work / "spark-cli"), "--master", "local[2]",
                                   "--partitions", "2"))

        from pyspark.sql import SparkSession

        from engine.spark import evaluate
        spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
                 .config("spark.sql.shuffle.partitions", "2")
                 .config("spark.sql.execution.arrow.maxRecordsPerBatch", "65536").getOrCreate())
        spark.sparkContext.setLogLevel("ERROR")
        # one small run first: the Python workers start and compile the methodology
        evaluate(spark.read.parquet(str(records)).limit(1000), text).count()
        jobs = timed(lambda: evaluate(spark.read.parquet(str(records)), text)
                     .write.parquet(str(work / "spark-api")))
        spark.stop()

        compared = ["row", "id", "account", "status", "code", "points", "bonus"]
        same = pl.read_parquet(work / "eval.parquet").select(compared).equals(
            pl.read_parquet(work / "spark-cli" / "*.parquet").sort("row").select(compared))
        rate = lambda s: f"{args.n / s / 1000:,.0f} k/s"  # noqa: E731
        label = "hand-written Polars (no rules)" if args.rules else "hand-written Polars"
        print(f"{label:<32} {hand:8.2f} s  {rate(hand):>10}")
        print(f"{'tanpu eval':<32} {cli:8.2f} s  {rate(cli):>10}  {cli / hand:5.1f}x hand-written")
        print(f"{'tanpu spark-eval local[2]':<32} {submit:8.2f} s  {rate(submit):>10}  "
              f"{submit / cli:5.1f}x tanpu eval")
        print(f"{'engine.spark.evaluate (jobs)':<32} {jobs:8.2f} s  {rate(jobs):>10}  "
              f"{jobs / cli:5.1f}x tanpu eval")
        print(f"spark-eval's results equal tanpu eval's ({', '.join(compared)}): {same}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
