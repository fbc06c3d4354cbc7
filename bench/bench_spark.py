"""The batch engine on Spark local[2] beside `tanpu eval` and a hand-written Polars program.

    .venv/bin/python bench/bench_spark.py [--n 1000000] [--rules] [--command] [--once]

One generated Parquet file of Shenzhen rides (bench_engine.typed_frame, not stored),
evaluated, Parquet in, Parquet out, in turn in the same minutes (hand-written, `tanpu
eval`, Spark, `tanpu eval`, hand-written: the load of the shared machine falls on all):
- the hand-written Polars program of bench_engine (reads the file, writes id, account,
  reduction and points);
- `tanpu eval` (a subprocess, as a user runs it);
- `engine.spark.evaluate` on local[2] in this process, timed from an open session whose
  Python workers have compiled the methodology (the jobs only: what a long-running
  Spark application pays per run);
- with --command, `tanpu spark-eval --master local[2]` too (a subprocess: JVM start,
  session, the jobs).
Each is given in wall time and in CPU time (user + system: of this process, of the
subprocess, of Spark's JVM and its Python workers, read from /proc), which says what the
work costs whatever else runs. Without --rules the methodology is per record (its overlap
rule dropped); with it, the overlap rule and a 2 kg daily cap. The results of Spark and
of `tanpu eval` are compared (a hash of the compared columns of every row, and the
totals). Figures only; nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import os
import resource
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
COMPARED = ["row", "id", "account", "status", "code", "reduction_mg", "points"]
TICK = os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    both = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return sum(r.ru_utime + r.ru_stime for r in both)


def tree_cpu(root: int) -> float:
    """CPU seconds of a process and its descendants (Spark's JVM, its Python daemon and
    workers), the reaped children's included."""
    parent, cpu = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parent[int(entry)] = int(fields[1])
            cpu[int(entry)] = sum(int(f) for f in fields[11:15]) / TICK
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo.extend(p for p, pp in parent.items() if pp == pid)
    return total


def jvm_cpu(pid: int) -> float:
    """CPU seconds of Spark's JVM alone (its Python daemon and workers are the rest of
    its tree: tree_cpu)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:13]) / TICK


def timed(fn, jvm: int | None = None) -> tuple[float, float, float]:
    """(wall s, CPU s, load average) of fn(); with `jvm`, the Python workers' share of
    the CPU in PYTHON_CPU[0]."""
    cpu, start = own_cpu(), time.perf_counter()
    spark_cpu, jvm_alone = (tree_cpu(jvm), jvm_cpu(jvm)) if jvm else (0.0, 0.0)
    TREE_CPU[0] = 0.0
    fn()
    wall = time.perf_counter() - start
    # a subprocess's own CPU (reaped) or, where more, its tree's as sampled
    cpu = max(own_cpu() - cpu, TREE_CPU[0]) + ((tree_cpu(jvm) - spark_cpu) if jvm else 0.0)
    if jvm:
        PYTHON_CPU[0] = (tree_cpu(jvm) - spark_cpu) - (jvm_cpu(jvm) - jvm_alone)
    return wall, cpu, os.getloadavg()[0]


PYTHON_CPU = [0.0]  # the last timed Spark run's Python workers' CPU seconds


TREE_CPU = [0.0]  # the last run()'s process tree's CPU seconds, sampled while it ran


def run(*args: str) -> None:
    """A command, its process tree's CPU time sampled every 0.2 s (the JVM that
    `tanpu spark-eval` starts is not reaped by it, so RUSAGE_CHILDREN misses it)."""
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)
        seen = 0.0
        while process.poll() is None:
            seen = max(seen, tree_cpu(process.pid))
            time.sleep(0.2)
        TREE_CPU[0] = seen
        if process.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{' '.join(args)} failed:\n{err.read().decode()[-3000:]}")


def fingerprint(pattern: str) -> tuple:
    """Rows, a hash of every row's compared columns (summed: any order) and the totals."""
    frame = pl.scan_parquet(pattern).select(
        pl.col("row").cast(pl.Int64), *[pl.col(c).cast(pl.String) for c in COMPARED[1:5]],
        pl.col("reduction_mg").cast(pl.Int64), pl.col("points").cast(pl.Int64))
    got = frame.select(pl.len(), pl.struct(COMPARED).hash().cast(pl.Int128).sum(),
                       pl.col("reduction_mg").sum(), pl.col("points").sum()).collect()
    return tuple(got.row(0))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--rules", action="store_true", help="the overlap rule and a daily cap")
    parser.add_argument("--command", action="store_true",
                        help="also time `tanpu spark-eval --master local[2]` (JVM start included)")
    parser.add_argument("--once", action="store_true",
                        help="tanpu eval once (hand-written, tanpu eval, Spark, hand-written): for "
                             "the large cases")
    parser.add_argument("--records", metavar="PARQUET",
                        help="a file bench_engine.typed_frame wrote before (kept), instead of generating one")
    parser.add_argument("--driver-memory", default="4g", help="spark.driver.memory (local mode)")
    parser.add_argument("--partitions", type=int, default=2,
                        help="spark.sql.shuffle.partitions: with --rules, the tasks the accounts are "
                             "spread over (each holds all its accounts' records: more for large n)")
    args = parser.parse_args()
    import importlib.util
    if importlib.util.find_spec("pyspark") is None or shutil.which("java") is None:
        print("skipped: needs PySpark (pip install -e '.[test]') and a Java runtime")
        return
    text = RULES if args.rules else PER_RECORD
    work = Path(tempfile.mkdtemp(prefix="tanpu-bench-spark-", dir=os.environ.get("BENCH_TMP")))
    try:
        methodology = work / "m.tanpu"
        methodology.write_text(text, encoding="utf-8")
        if args.records:
            records = Path(args.records).resolve()
            args.n = pl.scan_parquet(records).select(pl.len()).collect().item()
        else:
            records = work / "records.parquet"
            typed_frame(args.n).rename({"distance": "distance[km]"}).write_parquet(records)
        print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {args.n} records, "
              f"{'overlap rule + daily cap' if args.rules else 'per record'}, "
              f"{args.partitions} shuffle partitions, "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

        def hand():
            handwritten_polars(pl.read_parquet(records).rename({"distance[km]": "distance"})) \
                .write_parquet(work / "hand.parquet")

        def cli():
            shutil.rmtree(work / "eval.parquet", ignore_errors=True)
            run(TANPU, "eval", str(methodology), str(records), "-o", str(work / "eval.parquet"))

        from pyspark.sql import SparkSession

        from engine.spark import evaluate
        spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
                 .config("spark.ui.showConsoleProgress", "false")
                 .config("spark.driver.memory", args.driver_memory)
                 .config("spark.sql.shuffle.partitions", str(args.partitions))
                 .config("spark.sql.execution.arrow.maxRecordsPerBatch", "65536").getOrCreate())
        spark.sparkContext.setLogLevel("ERROR")
        jvm = spark.sparkContext._gateway.proc.pid
        # one small run first: the Python workers start and compile the methodology
        evaluate(spark.read.parquet(str(records)).limit(1000), text).count()

        def jobs():
            evaluate(spark.read.parquet(str(records)), text).write.parquet(str(work / "spark-api"))

        figures = {}

        def note(name, got):
            figures.setdefault(name, []).append(got)
            print(f"  {name:<30} {got[0]:8.2f} s wall {got[1]:8.2f} s CPU  load {got[2]:.1f}", flush=True)

        note("hand-written Polars", timed(hand))
        note("tanpu eval", timed(cli))
        note("engine.spark.evaluate (jobs)", timed(jobs, jvm))
        print(f"  {'  of which Python workers':<30} {'':>15} {PYTHON_CPU[0]:8.2f} s CPU (the engine, "
              "Arrow to Polars and back; the rest is the JVM's)", flush=True)
        spark.stop()
        if not args.once:
            note("tanpu eval", timed(cli))
        note("hand-written Polars", timed(hand))
        if args.command:
            note("tanpu spark-eval local[2]", timed(lambda: run(
                TANPU, "spark-eval", str(methodology), str(records), "-o", str(work / "spark-cli"),
                "--master", "local[2]", "--partitions", str(args.partitions))))

        want = fingerprint(str(work / "eval.parquet"))
        same = fingerprint(str(work / "spark-api" / "*.parquet")) == want
        if args.command:
            same = same and fingerprint(str(work / "spark-cli" / "*.parquet")) == want
        best = {name: (min(g[0] for g in got), min(g[1] for g in got)) for name, got in figures.items()}
        hand_wall, hand_cpu = best["hand-written Polars"]
        eval_wall, eval_cpu = best["tanpu eval"]
        label = "hand-written Polars (no rules)" if args.rules else "hand-written Polars"
        print(f"best of each ({args.n} records):")
        for name, (wall, cpu) in best.items():
            rate = f"{args.n / wall / 1000:,.0f} k/s"
            print(f"{label if name.startswith('hand') else name:<32} {wall:8.2f} s {rate:>10} "
                  f"{cpu:8.2f} s CPU  {wall / eval_wall:5.1f}x / {cpu / eval_cpu:5.1f}x tanpu eval "
                  f"(wall / CPU), {wall / hand_wall:5.1f}x / {cpu / hand_cpu:5.1f}x hand-written")
        print(f"Spark's results equal tanpu eval's ({', '.join(COMPARED)}): {same}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
