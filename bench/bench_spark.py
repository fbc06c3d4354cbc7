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

With --executors, the scaling with executors instead (docs/spark.md, "Scaling with
executors"): a Spark standalone cluster started here (a master and a worker JVM from
PySpark's own Spark, 2 cores), the same jobs run from this process as an application of
1 executor x 1 core, then of 2 executors x 1 core (each executor its own JVM and Python
workers), then on local[1] and local[2] for comparison, in turn --rounds times (1, 2, 1,
2, ...: the load of the shared machine falls on all); each run in wall time, CPU seconds
(this process, the driver's JVM and, on the cluster, the worker's tree: the executors'
JVMs and their Python workers) and records a second, its results compared with `tanpu
eval`'s; then the speed-up from 1 to 2 executors (cores) and its efficiency, per round.

    .venv/bin/python bench/bench_spark.py --executors --records /work/bench-records/rides-5000000.parquet [--rules]
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
    parser.add_argument("--executors", action="store_true",
                        help="the scaling with executors: a standalone cluster, 1 then 2 executors x "
                             "1 core, and local[1] / local[2], alternated --rounds times")
    parser.add_argument("--rounds", type=int, default=2, help="with --executors: the alternations")
    parser.add_argument("--cluster-only", action="store_true",
                        help="with --executors: the standalone cluster's two only (no local[1], local[2])")
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
        if args.executors:
            return scaling(args, text, methodology, records, work)

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


SPLIT = "8m"  # spark.sql.files.maxPartitionBytes: ~10 input tasks of a 5 M file, whatever the cores


def standalone(work: Path, port: int, started: list) -> None:
    """A Spark standalone master and a worker of 2 cores on 127.0.0.1 (PySpark's own Spark,
    as bench/spark_standalone.sh starts them), once they are registered; their processes
    (spark-class execs the JVM) put in `started` as they start, for the caller to stop
    whatever happens."""
    import pyspark
    home = os.path.dirname(pyspark.__file__)
    env = dict(os.environ, SPARK_HOME=home, SPARK_LOCAL_IP="127.0.0.1",
               SPARK_LOCAL_DIRS=str(work / "local"), SPARK_WORKER_DIR=str(work / "worker"),
               SPARK_LOG_DIR=str(work / "logs"),
               SPARK_DAEMON_JAVA_OPTS=f"-Djava.io.tmpdir={work}")
    for name, argv, ready in [
            ("master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                        "--port", str(port), "--webui-port", str(port + 1)], "I have been elected leader"),
            ("worker", ["org.apache.spark.deploy.worker.Worker", f"spark://127.0.0.1:{port}",
                        "--host", "127.0.0.1", "--cores", "2", "--memory", "6g",
                        "--webui-port", str(port + 2), "--work-dir", str(work / "worker")],
             "Successfully registered with master")]:
        log = work / f"{name}.out"
        with open(log, "w") as out:
            started.append(subprocess.Popen([f"{home}/bin/spark-class", *argv], env=env,
                                            stdout=out, stderr=subprocess.STDOUT))
        for _ in range(120):
            if ready in log.read_text():
                break
            time.sleep(0.5)
        else:
            raise SystemExit(f"the {name} did not start:\n{log.read_text()[-3000:]}")


def scaling(args, text: str, methodology: Path, records: Path, work: Path) -> None:
    """The same jobs on 1 and 2 executors of 1 core (a standalone cluster) and on local[1]
    and local[2], alternated; figures printed (see the module's docstring)."""
    from pyspark.sql import SparkSession

    from engine.spark import evaluate
    cli_out = work / "eval.parquet"
    wall, cpu, load = timed(lambda: run(TANPU, "eval", str(methodology), str(records), "-o", str(cli_out)))
    want = fingerprint(str(cli_out))
    print(f"  {'tanpu eval':<30} {wall:8.2f} s wall {cpu:8.2f} s CPU  load {load:.1f}", flush=True)
    port = int(os.environ.get("PORT", "7177"))
    daemons: list[subprocess.Popen] = []
    configs = [("standalone 1 executor x 1 core", f"spark://127.0.0.1:{port}", 1),
               ("standalone 2 executors x 1 core", f"spark://127.0.0.1:{port}", 2),
               ("local[1]", "local[1]", 1), ("local[2]", "local[2]", 2)][:2 if args.cluster_only else 4]
    figures: dict[str, list] = {}
    try:
        standalone(work, port, daemons)
        worker = daemons[1].pid
        for round_ in range(args.rounds):
            for name, master, cores in configs:
                builder = (SparkSession.builder.master(master).appName(f"tanpu-scaling-{cores}")
                           .config("spark.ui.enabled", "false")
                           .config("spark.ui.showConsoleProgress", "false")
                           .config("spark.driver.memory", args.driver_memory)
                           .config("spark.sql.shuffle.partitions", str(args.partitions))
                           .config("spark.sql.files.maxPartitionBytes", SPLIT)
                           .config("spark.sql.execution.arrow.maxRecordsPerBatch", "65536"))
                if master.startswith("spark://"):
                    builder = (builder.config("spark.cores.max", str(cores))
                               .config("spark.executor.cores", "1")
                               .config("spark.executor.memory", "2g")
                               .config("spark.pyspark.python", sys.executable)
                               .config("spark.executorEnv.POLARS_MAX_THREADS", "1")
                               .config("spark.executor.extraJavaOptions", f"-Djava.io.tmpdir={work}")
                               .config("spark.scheduler.minRegisteredResourcesRatio", "1.0")
                               .config("spark.scheduler.maxRegisteredResourcesWaitingTime", "120s"))
                spark = builder.getOrCreate()
                spark.sparkContext.setLogLevel("ERROR")
                jvm = spark.sparkContext._gateway.proc.pid
                # the executors registered, their Python workers started and the methodology
                # compiled: small jobs of several tasks first
                small = spark.read.parquet(str(records)).limit(20000).repartition(4 * cores)
                evaluate(small, text).count()
                evaluate(small, text).count()
                roots = [jvm, worker] if master.startswith("spark://") else [jvm]
                before = sum(tree_cpu(r) for r in roots)
                out = work / f"spark-{round_}-{cores}-{master[:5]}"
                wall, own, load = timed(lambda: evaluate(spark.read.parquet(str(records)), text)
                                        .write.parquet(str(out)))
                cpu = own + sum(tree_cpu(r) for r in roots) - before
                spark.stop()
                same = fingerprint(str(out / "*.parquet")) == want
                shutil.rmtree(out, ignore_errors=True)
                figures.setdefault(name, []).append((wall, cpu))
                print(f"  round {round_ + 1} {name:<32} {wall:8.2f} s wall {cpu:8.2f} s CPU "
                      f"{args.n / wall / 1000:8,.0f} k rec/s  load {load:.1f} "
                      f"({os.getloadavg()[0]:.1f} after)  results = tanpu eval's: {same}", flush=True)
                if not same:
                    raise SystemExit(f"{name}: results differ from tanpu eval's")
    finally:
        for daemon in reversed(daemons):
            daemon.terminate()
            daemon.wait(60)
    print(f"speed-up 1 -> 2 ({args.n} records, {'overlap rule + daily cap' if args.rules else 'per record'}):")
    for one, two in [(configs[k][0], configs[k + 1][0]) for k in range(0, len(configs), 2)]:
        for k, ((w1, c1), (w2, c2)) in enumerate(zip(figures[one], figures[two])):
            print(f"  round {k + 1} {two:<32} {w1 / w2:5.2f}x wall (efficiency {w1 / w2 / 2:4.0%}), "
                  f"CPU {c2 / c1:5.2f}x the 1-core run's; cores kept busy (CPU / wall) "
                  f"{c1 / w1:.2f} and {c2 / w2:.2f}")


if __name__ == "__main__":
    main()
