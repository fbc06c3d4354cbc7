"""`tanpu eval` end to end, as a user runs it, beside a hand-written program in the same run.

    .venv/bin/python bench/bench_eval.py [--n 1000000 5000000] [--startup-runs 10]

Each figure is a whole process, wall clock, its peak RSS from wait4(2):
1. startup: `tanpu eval` of a 10-record CSV (warm: the methodology's compilation cached,
   bytecode written), beside `python -c pass` and `python -c "import polars"` (best and
   median of --startup-runs);
2. for each --n, Shenzhen rides (bench_engine.typed_frame, generated, not stored),
   Parquet in and Parquet out:
   - per record (the overlap rule dropped): `tanpu eval` beside a hand-written Polars
     program that streams the same file (scan, factor × distance, sink) and writes id,
     account, reduction and points;
   - with the overlap rule and a 2 kg daily cap: `tanpu eval` beside a hand-written
     Polars + NumPy program (bench_engine.handwritten_cap, in memory; no overlap rule);
   - the same records as a dataset of 8 hive partitions (`tanpu eval FOLDER -o FOLDER`).
The load average is printed: on a shared machine every figure moves with it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SOURCE = (ROOT / "methodologies" / "shenzhen-public-transit.tanpu").read_text(encoding="utf-8")
PER_RECORD = SOURCE[:SOURCE.index("forbid overlap")]
CAP = "\ncap reduction at 2 kg per account per day\n"
TANPU = str(Path(sys.executable).with_name("tanpu"))

# the hand-written programs, each run as its own process (its start counted, as tanpu's)
STREAMING = """
import sys
import polars as pl
factor = (pl.when(pl.col("mode") == "ebus").then(26.9e-6)
          .when(pl.col("mode") == "metro").then(46.7e-6).otherwise(None))
kg = factor * (pl.col("distance[km]") * 1000.0)
ok = (factor.is_not_null() & (pl.col("alighted") > pl.col("boarded"))
      & (pl.col("distance[km]") >= 0) & (pl.col("distance[km]") <= 200))
mg = (kg * 1e6).round(mode="half_away_from_zero")
pl.scan_parquet(sys.argv[1]).select(
    pl.col("id"), pl.col("account"),
    pl.when(ok).then(mg).otherwise(0).cast(pl.Int64).alias("reduction_mg"),
    pl.when(ok).then((mg / 1000.0).floor()).otherwise(0).cast(pl.Int64).alias("points"),
).sink_parquet(sys.argv[2])
"""
CAPPED = """
import sys
sys.path.insert(0, sys.argv[3])
import numpy as np
import polars as pl
from bench_engine import handwritten_cap, handwritten_polars
frame = pl.read_parquet(sys.argv[1]).rename({"distance[km]": "distance"})
out = handwritten_polars(frame)
account = frame.get_column("account").cast(pl.Categorical).to_physical().cast(pl.Int64).to_numpy()
time_us = frame.get_column("boarded").dt.epoch("us").to_numpy() - 8 * 3_600_000_000
mg = out.get_column("reduction_mg").to_numpy()
capped = handwritten_cap(account, time_us, mg)
out.with_columns(pl.Series("reduction_mg", capped),
                 pl.Series("points", capped // 1000)).drop("credited").write_parquet(sys.argv[2])
"""


# Each measured process is started by this small one, itself a fresh process: Linux gives a
# forked child its parent's resident size as the start of its peak (ru_maxrss, kept across
# exec), so a command started by the bench itself, holding a frame of 5M rides, would show
# at least the bench's size.
LAUNCHER = """
import os, subprocess, sys, time
start = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
wall = time.perf_counter() - start
sys.stderr.write(f"\\nlaunched {os.waitstatus_to_exitcode(status)} {wall} {usage.ru_maxrss}\\n")
"""


def measured(*args: str, env=None) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one process."""
    child = subprocess.run([sys.executable, "-c", LAUNCHER, *args], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, env=env)
    err = child.stderr.decode(errors="replace")
    _, code, wall, rss = err.rstrip().rsplit("\n", 1)[-1].split()
    if int(code) != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{err[-3000:]}")
    return float(wall), int(rss) / 1024


def startup(work: Path, runs: int) -> None:
    import polars as pl

    sample = ROOT / "methodologies" / "samples" / "shenzhen-public-transit.csv"
    ten = work / "ten.csv"
    ten.write_text("".join(sample.read_text(encoding="utf-8").splitlines(keepends=True)[:11]),
                   encoding="utf-8")
    methodology = ROOT / "methodologies" / "shenzhen-public-transit.tanpu"
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import polars'": [sys.executable, "-c", "import polars"],
        "tanpu eval, 10 records -> CSV": [TANPU, "eval", str(methodology), str(ten), "-o", str(work / "ten.out.csv")],
        "tanpu eval, 10 records -> stdout": [TANPU, "eval", str(methodology), str(ten)],
        "tanpu eval, 10 records -> Parquet": [TANPU, "eval", str(methodology), str(ten), "-o",
                                              str(work / "ten.out.parquet")],
    }
    measured(*cases["tanpu eval, 10 records -> CSV"])  # warm: compilation cached
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):  # interleaved, so that a change of load touches every case alike
        for name, args in cases.items():
            times[name].append(measured(*args)[0])
    print(f"startup, {runs} runs each, load average {os.getloadavg()[0]:.1f}")
    for name, got in times.items():
        print(f"  {name:<36} best {min(got):6.3f} s  median {statistics.median(got):6.3f} s")
    del pl


def end_to_end(work: Path, n: int) -> None:
    import polars as pl

    from bench_engine import typed_frame

    records = work / f"rides-{n}.parquet"
    frame = typed_frame(n).rename({"distance": "distance[km]"})
    frame.write_parquet(records)
    dataset = work / f"rides-{n}"
    day = frame.get_column("boarded").dt.day() % 8
    for k in range(8):
        (dataset / f"part={k}").mkdir(parents=True)
        frame.filter(day == k).write_parquet(dataset / f"part={k}" / "rides.parquet")
    del frame, day
    print(f"\n{n:,} records, Parquet in and out, load average {os.getloadavg()[0]:.1f}")
    for label, text, reference in (("per record", PER_RECORD, STREAMING),
                                   ("overlap rule + 2 kg daily cap", SOURCE + CAP, CAPPED)):
        methodology = work / "m.tanpu"
        methodology.write_text(text, encoding="utf-8")
        measured(TANPU, "check", str(methodology))  # compiled once (cached), as a second run
        hand, hand_rss = measured(sys.executable, "-c", reference, str(records), str(work / "hand.parquet"),
                                  str(ROOT / "bench"))
        cli, cli_rss = measured(TANPU, "eval", str(methodology), str(records), "-o", str(work / "eval.parquet"))
        out = work / "eval-dataset"
        shutil.rmtree(out, ignore_errors=True)
        folder, folder_rss = measured(TANPU, "eval", str(methodology), str(dataset), "-o", str(out))
        by_hand = pl.read_parquet(work / "hand.parquet")
        ours = pl.read_parquet(work / "eval.parquet")
        assert ours.get_column("id").equals(by_hand.get_column("id"))
        off = (ours.get_column("reduction_mg") - by_hand.get_column("reduction_mg")).abs()
        points = int((ours.get_column("points") != by_hand.get_column("points")).sum())
        print(f"  {label}")
        print(f"    {'hand-written':<30} {hand:7.2f} s {n / hand / 1e6:6.2f} M rec/s  peak {hand_rss:6.0f} MiB")
        print(f"    {'tanpu eval (one file)':<30} {cli:7.2f} s {n / cli / 1e6:6.2f} M rec/s  peak {cli_rss:6.0f} MiB"
              f"  {cli / hand:5.1f}x hand-written")
        print(f"    {'tanpu eval (8 partitions)':<30} {folder:7.2f} s {n / folder / 1e6:6.2f} M rec/s  "
              f"peak {folder_rss:6.0f} MiB  {folder / hand:5.1f}x hand-written")
        # the hand-written float product rounds differently by 1 mg on some rows, and the
        # capped one has no overlap rule (the rides it would reject stay credited there)
        print(f"    against the hand-written program: reduction within {off.max()} mg, "
              f"{int((off > 0).sum())} rows differ; points differ on {points} rows"
              + (" (it has no overlap rule)" if reference is CAPPED else ""))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, nargs="*", default=[1_000_000])
    parser.add_argument("--startup-runs", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tanpu-bench-eval-"))
    try:
        startup(work, args.startup_runs)
        for n in args.n:
            end_to_end(work, n)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
