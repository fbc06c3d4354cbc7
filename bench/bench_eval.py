"""`tanpu eval` end to end, as a user runs it, beside a hand-written program in the same run.

    .venv/bin/python bench/bench_eval.py [--n 1000000 5000000 50000000] [--startup-runs 10]
        [--cold-runs 3] [--repeat 2] [--dataset-up-to 5000000] [--only per-record|capped]
        [--records-dir DIR]

Each figure is a whole process, wall clock, its peak RSS from wait4(2):
1. startup: `tanpu eval` of a 10-record CSV (warm: the methodology's compilation cached,
   bytecode written), beside `python -c pass` and `python -c "import polars"` (best and
   median of --startup-runs), to CSV, the terminal and Parquet, and `tanpu check
   methodologies/`; with --cold-runs (as root: it drops the page cache, for every process
   on the machine), the same cases cold, the page cache dropped before each process
   (`sync; echo 3 > /proc/sys/vm/drop_caches`);
2. for each --n, Shenzhen rides (bench_engine.typed_frame, generated, not stored; above
   5M in pieces of 5M, the accounts drawn over the whole file), Parquet in and Parquet
   out, `tanpu eval --compact` (id, account, status, code, reduction_mg, points; the
   methodology in the file's metadata) beside a hand-written program that writes the
   same columns and the same metadata, alternating --repeat times:
   - per record (the overlap rule dropped): a hand-written Polars program that streams
     the same file (scan, factor × distance, status, code, sink);
   - with the overlap rule and a 2 kg daily cap: a hand-written Polars + NumPy program
     (bench_engine.handwritten_cap, in memory; no overlap rule);
   - up to --dataset-up-to records, the same records as a dataset of 8 hive partitions
     (`tanpu eval FOLDER -o FOLDER --compact`).
`--only` runs one of the two methodologies; `--records-dir` keeps the generated files
there (rides-N.parquet) and reuses those found (200M rides take a quarter of an hour to
generate on 2 cores), instead of a temporary folder removed at the end. `--order time`
takes the same kind of rides in boarding order (rides-time-N.parquet: each piece boards in
its own slice of the 30 days, the accounts drawn over the whole file), as a day's feed
comes: the capped case is then judged chunk by chunk with each account's state carried
(engine/batch/carried.py). The capped hand-written program holds the file in memory (11
GiB at 50M): above --reference-up-to records only tanpu's figure is printed.
The load average is printed: on a shared machine every figure moves with it.
"""

from __future__ import annotations

import argparse
import json
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
import json, sys
import polars as pl
factor = (pl.when(pl.col("mode") == "ebus").then(26.9e-6)
          .when(pl.col("mode") == "metro").then(46.7e-6).otherwise(None))
kg = factor * (pl.col("distance[km]") * 1000.0)
ok = (factor.is_not_null() & (pl.col("alighted") > pl.col("boarded"))
      & (pl.col("distance[km]") >= 0) & (pl.col("distance[km]") <= 200))
mg = (kg * 1e6).round(mode="half_away_from_zero")
code = (pl.when(factor.is_null()).then(pl.lit("NOT_COVERED"))
        .when(pl.col("alighted") <= pl.col("boarded")).then(pl.lit("BAD_TIMES")).otherwise(pl.lit("")))
pl.scan_parquet(sys.argv[1]).select(
    pl.col("id"), pl.col("account"),
    pl.when(ok).then(pl.lit("credited")).otherwise(pl.lit("rejected")).alias("status"), code.alias("code"),
    pl.when(ok).then(mg).otherwise(0).cast(pl.Int64).alias("reduction_mg"),
    pl.when(ok).then((mg / 1000.0).floor()).otherwise(0).cast(pl.Int64).alias("points"),
).sink_parquet(sys.argv[2], metadata=json.loads(sys.argv[4]))
"""
CAPPED = """
import json, sys
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
credited = out.get_column("credited").to_numpy()
cut = credited & (capped < mg)
status = np.where(~credited, "rejected", np.where(cut, "capped", "credited"))
covered = frame.get_column("mode").cast(pl.String).is_in(["ebus", "metro"]).to_numpy()
code = np.where(~covered, "NOT_COVERED", np.where(~credited, "BAD_TIMES", np.where(cut, "CAP_REACHED", "")))
out.select(pl.col("id"), pl.col("account"), pl.Series("status", status), pl.Series("code", code),
           pl.Series("reduction_mg", capped), pl.Series("points", capped // 1000)
           ).write_parquet(sys.argv[2], metadata=json.loads(sys.argv[4]))
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

    cases = startup_cases(work)
    measured(*cases["tanpu eval, 10 records -> CSV"])  # warm: compilation cached
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):  # interleaved, so that a change of load touches every case alike
        for name, args in cases.items():
            times[name].append(measured(*args)[0])
    print(f"startup, {runs} runs each, load average {os.getloadavg()[0]:.1f}")
    for name, got in times.items():
        print(f"  {name:<36} best {min(got):6.3f} s  median {statistics.median(got):6.3f} s")
    del pl


def cold_startup(work: Path, runs: int) -> None:
    """As startup, each process after the page cache was dropped: the interpreter, the
    libraries and the methodology read from the disk again (the compilation cache is kept:
    it is on the disk too, read cold)."""
    cases = startup_cases(work)
    measured(*cases["tanpu eval, 10 records -> CSV"])  # the compilation cached, as a user's second run
    times: dict[str, list[float]] = {name: [] for name in cases}
    loads = [os.getloadavg()[0]]
    for _ in range(runs):
        for name, args in cases.items():
            subprocess.run(["sync"], check=True)
            Path("/proc/sys/vm/drop_caches").write_text("3\n")
            times[name].append(measured(*args)[0])
    loads.append(os.getloadavg()[0])
    print(f"cold startup (page cache dropped before each), {runs} runs each, "
          f"load average {min(loads):.1f}-{max(loads):.1f}")
    for name, got in times.items():
        print(f"  {name:<36} best {min(got):6.3f} s  median {statistics.median(got):6.3f} s")


def startup_cases(work: Path) -> dict[str, list[str]]:
    sample = ROOT / "methodologies" / "samples" / "shenzhen-public-transit.csv"
    ten = work / "ten.csv"
    ten.write_text("".join(sample.read_text(encoding="utf-8").splitlines(keepends=True)[:11]),
                   encoding="utf-8")
    methodology = ROOT / "methodologies" / "shenzhen-public-transit.tanpu"
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import polars'": [sys.executable, "-c", "import polars"],
        "tanpu eval, 10 records -> CSV": [TANPU, "eval", str(methodology), str(ten), "-o", str(work / "ten.out.csv")],
        "tanpu eval, 10 records -> stdout": [TANPU, "eval", str(methodology), str(ten)],
        "tanpu eval, 10 records -> Parquet": [TANPU, "eval", str(methodology), str(ten), "-o",
                                              str(work / "ten.out.parquet")],
        "tanpu check methodologies/": [TANPU, "check", str(ROOT / "methodologies")],
    }


PIECE = 5_000_000  # rows generated at once: a file of more is written in pieces


def generate(records: Path, n: int) -> None:
    """n Shenzhen rides as one Parquet file; above PIECE in pieces (ids running on, the
    accounts drawn over the whole file: ~40 rides each), never all in memory."""
    import numpy as np
    import polars as pl

    from bench_engine import typed_frame

    if n <= PIECE:
        typed_frame(n).rename({"distance": "distance[km]"}).write_parquet(records)
        return
    pieces = []
    for k, start in enumerate(range(0, n, PIECE)):
        m = min(PIECE, n - start)
        rng = np.random.default_rng(1000 + k)
        piece = typed_frame(m, seed=k).rename({"distance": "distance[km]"}).with_columns(
            ("r" + pl.int_range(start, start + m, eager=True).cast(pl.String)).alias("id"),
            ("a" + pl.Series(rng.integers(0, max(1, n // 40), m)).cast(pl.String)).alias("account"))
        pieces.append(records.with_name(f"{records.stem}-{k}.parquet"))
        piece.write_parquet(pieces[-1])
        del piece
    pl.concat([pl.scan_parquet(p) for p in pieces]).sink_parquet(records)
    for p in pieces:
        p.unlink()


def generate_in_time_order(records: Path, n: int) -> None:
    """n Shenzhen rides as one Parquet file in boarding order, as a day's feed comes: the
    rides of generate(), each piece of PIECE rows boarding in its own slice of the 30 days
    (sorted within it, the slices one after the other), so the file is in time order
    without a global sort; the accounts drawn over the whole file, the ids running on."""
    import numpy as np
    import polars as pl

    from bench_engine import START_US, typed_frame

    minutes = 30 * 24 * 60
    pieces = []
    for k, start in enumerate(range(0, n, PIECE)):
        m = min(PIECE, n - start)
        rng = np.random.default_rng(2000 + k)
        frame = typed_frame(m, seed=k)
        lo, hi = minutes * start // n, max(minutes * (start + m) // n, minutes * start // n + 1)
        boarded = START_US + np.sort(rng.integers(lo, hi, m)) * 60_000_000  # naive local wall time
        length = (frame.get_column("alighted") - frame.get_column("boarded")).dt.total_microseconds().to_numpy()
        piece = frame.rename({"distance": "distance[km]"}).with_columns(
            ("r" + pl.int_range(start, start + m, eager=True).cast(pl.String)).alias("id"),
            ("a" + pl.Series(rng.integers(0, max(1, n // 40), m)).cast(pl.String)).alias("account"),
            pl.Series("boarded", boarded).cast(pl.Datetime("us")),
            pl.Series("alighted", boarded + length).cast(pl.Datetime("us")))
        pieces.append(records.with_name(f"{records.stem}-{k}.parquet"))
        piece.write_parquet(pieces[-1])
        del piece, frame
    pl.concat([pl.scan_parquet(p) for p in pieces]).sink_parquet(records)
    for p in pieces:
        p.unlink()


def end_to_end(work: Path, n: int, repeat: int, dataset_up_to: int, only: str = "",
               records_dir: Path = None, order: str = "random", reference_up_to: int = 50_000_000) -> None:
    import polars as pl

    from dsl import compile_source
    from dsl.ir.printer import content_hash

    if order == "time":
        records = (records_dir or work) / f"rides-time-{n}.parquet"
        if not records.exists():
            generate_in_time_order(records, n)
    else:
        records = (records_dir or work) / f"rides-{n}.parquet"
        if not records.exists():
            generate(records, n)
    dataset = None
    if n <= dataset_up_to:
        dataset = work / f"rides-{n}"
        frame = pl.read_parquet(records)
        day = frame.get_column("boarded").dt.day() % 8
        for k in range(8):
            (dataset / f"part={k}").mkdir(parents=True)
            frame.filter(day == k).write_parquet(dataset / f"part={k}" / "rides.parquet")
        del frame, day
    print(f"\n{n:,} records{' in time order' if order == 'time' else ''}, Parquet in and out "
          f"({records.stat().st_size / 2**20:.0f} MiB in), load average {os.getloadavg()[0]:.1f}")
    for label, text, reference in (("per record", PER_RECORD, STREAMING),
                                   ("overlap rule + 2 kg daily cap", SOURCE + CAP, CAPPED)):
        if only and only != ("per-record" if reference is STREAMING else "capped"):
            continue
        methodology = work / "m.tanpu"
        methodology.write_text(text, encoding="utf-8")
        compiled = compile_source(text, "m.tanpu").methodology
        meta = compiled.metadata
        stamp = json.dumps({"tanpu.methodology": meta.id, "tanpu.version": meta.version,
                            "tanpu.content_hash": content_hash(compiled)})
        measured(TANPU, "check", str(methodology))  # compiled once (cached), as a second run
        print(f"  {label}, load average {os.getloadavg()[0]:.1f}")
        hands, clis = [], []
        # the capped reference holds the whole file in memory: 11 GiB at 50M rides
        by_hand_too = reference is STREAMING or n <= reference_up_to
        if not by_hand_too:
            print(f"    (the hand-written program is not run: above {reference_up_to:,} records it does not fit "
                  f"in memory)")
        for _ in range(repeat):  # alternating: a change of load touches both alike
            if by_hand_too:
                hand, hand_rss = measured(sys.executable, "-c", reference, str(records), str(work / "hand.parquet"),
                                          str(ROOT / "bench"), stamp)
                hands.append(hand)
                print(f"    {'hand-written':<30} {hand:7.2f} s {n / hand / 1e6:6.2f} M rec/s  peak {hand_rss:6.0f} MiB"
                      f"  load {os.getloadavg()[0]:.1f}")
            cli, cli_rss = measured(TANPU, "eval", str(methodology), str(records), "-o", str(work / "eval.parquet"),
                                    "--compact")
            clis.append(cli)
            print(f"    {'tanpu eval --compact':<30} {cli:7.2f} s {n / cli / 1e6:6.2f} M rec/s  peak {cli_rss:6.0f} MiB"
                  + (f"  {cli / hand:5.2f}x hand-written" if by_hand_too else "")
                  + f"  load {os.getloadavg()[0]:.1f}", flush=True)
        if not by_hand_too:
            continue
        if repeat > 1:
            print(f"    best of {repeat}: hand-written {min(hands):.2f} s, tanpu eval {min(clis):.2f} s, "
                  f"{min(clis) / min(hands):.2f}x")
        if dataset is not None:
            out = work / "eval-dataset"
            shutil.rmtree(out, ignore_errors=True)
            folder, folder_rss = measured(TANPU, "eval", str(methodology), str(dataset), "-o", str(out), "--compact")
            print(f"    {'tanpu eval (8 partitions)':<30} {folder:7.2f} s {n / folder / 1e6:6.2f} M rec/s  "
                  f"peak {folder_rss:6.0f} MiB  {folder / min(hands):5.2f}x hand-written (best)")
        by_hand = pl.scan_parquet(work / "hand.parquet")
        ours = pl.scan_parquet(work / "eval.parquet")
        both = pl.concat([ours.select(pl.all().name.suffix("_t")), by_hand], how="horizontal")
        ids, off, rows, points, status = both.select(
            (pl.col("id_t") != pl.col("id")).sum().alias("ids"),
            (pl.col("reduction_mg_t") - pl.col("reduction_mg")).abs().max().alias("off"),
            (pl.col("reduction_mg_t") != pl.col("reduction_mg")).sum().alias("rows"),
            (pl.col("points_t") != pl.col("points")).sum().alias("points"),
            ((pl.col("status_t") != pl.col("status")) | (pl.col("code_t") != pl.col("code"))).sum()
            .alias("status"),
        ).collect().row(0)
        assert ids == 0
        # the hand-written float product rounds differently by 1 mg on some rows, and the
        # capped one has no overlap rule (the rides it would reject stay credited there)
        print(f"    against the hand-written program: reduction within {off} mg, "
              f"{rows} rows differ; points differ on {points} rows, status or code on {status}"
              + (" (it has no overlap rule)" if reference is CAPPED else ""))
    if records_dir is None:
        records.unlink()
    if dataset is not None:
        shutil.rmtree(dataset, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, nargs="*", default=[1_000_000])
    parser.add_argument("--startup-runs", type=int, default=10, help="0: no startup figures")
    parser.add_argument("--cold-runs", type=int, default=0,
                        help="startup with the page cache dropped before each process (root)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each pair, alternating")
    parser.add_argument("--dataset-up-to", type=int, default=5_000_000,
                        help="the 8-partition dataset case for files of at most this many records")
    parser.add_argument("--only", choices=["per-record", "capped"], default="",
                        help="one methodology only: per record, or the overlap rule and a cap")
    parser.add_argument("--records-dir", type=Path, default=None,
                        help="generated files kept here, and reused when there")
    parser.add_argument("--order", choices=["random", "time"], default="random",
                        help="time: the rides in boarding order (rides-time-N.parquet), as a day's feed comes")
    parser.add_argument("--reference-up-to", type=int, default=50_000_000,
                        help="the capped hand-written program (in memory) for at most this many records")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tanpu-bench-eval-"))
    try:
        if args.startup_runs:
            startup(work, args.startup_runs)
        if args.cold_runs:
            cold_startup(work, args.cold_runs)
        for n in args.n:
            end_to_end(work, n, args.repeat, args.dataset_up_to, args.only, args.records_dir, args.order,
                       args.reference_up_to)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
