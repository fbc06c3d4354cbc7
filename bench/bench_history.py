"""Throughput of a methodology with a 7-day history window (docs/language.md §9.6).

    .venv/bin/python bench/bench_history.py [--n 5000000] [--accounts 100000] [--repeat 3]

Daily electricity readings of `accounts` households (about n / accounts days each, a
few days missing), evaluated by the batch path (C kernel) with a baseline that is the
household's mean reading over the 7 days before the record's day; beside it, in the
same run, a hand-written Polars/NumPy reference of the same computation (sort by account
and time, the local day, a rolling 7-day mean per account, the reduction in mg), and
how many of its results equal the engine's. The two alternate (engine, reference, engine,
...), each with its best wall and CPU time. Figures only: nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tanpu.memory import keep_freed_memory  # noqa: E402
from alternating import alternate  # noqa: E402

keep_freed_memory()

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from dsl import compile_source  # noqa: E402
from engine.batch import BatchEngine  # noqa: E402
from engine.native.build import build  # noqa: E402

SOURCE = """
methodology bench.history "7-day history window" version 1.0.0 {
  covers household_electricity
  effective from 2024-01-01
  timezone Asia/Shanghai
}
input used: quantity [kWh] at least 0 kWh
history usual = mean used over the previous 7 days
  otherwise reject SHORT_HISTORY "fewer than 7 days of readings"
reduction = max(usual - used, 0 kWh) * 581 g/kWh
points = floor(reduction / 1 g)
"""
DAY_US = 86_400_000_000
START_US = 1_717_200_000_000_000  # 2024-06-01T00:00 UTC


def frame_of(n: int, accounts: int, seed: int = 0) -> pl.DataFrame:
    """n daily readings: account k reads on consecutive days from its own first day,
    at a random time of the evening (local), about 1 day in 20 missing (a gap)."""
    rng = np.random.default_rng(seed)
    account = rng.integers(0, accounts, n)
    order = np.argsort(account, kind="stable")
    account = account[order]
    first = np.r_[True, account[1:] != account[:-1]]
    rank = np.arange(n) - np.maximum.accumulate(np.where(first, np.arange(n), 0))
    missed = np.cumsum(rng.random(n) < 0.05)  # a day without a reading, now and then
    gaps = missed - np.maximum.accumulate(np.where(first, missed, 0))
    day = rank + gaps + rng.integers(0, 5, accounts)[account]
    local = START_US + day * DAY_US + rng.integers(18 * 3600, 24 * 3600, n) * 1_000_000
    shuffle = rng.permutation(n)
    return pl.DataFrame({
        "id": pl.Series(np.arange(n)[shuffle]).cast(pl.String),
        "account": pl.Series(account[shuffle]).cast(pl.String),
        "time": pl.Series(local[shuffle]).cast(pl.Datetime("us")),  # naive local wall time
        "used": np.round(rng.gamma(4.0, 2.5, n), 2)[shuffle],
    }).with_columns(("r" + pl.col("id")).alias("id"), ("h" + pl.col("account")).alias("account"))


def reference(frame: pl.DataFrame) -> pl.DataFrame:
    """The same computation written by hand: Shanghai is +08:00 (no DST since 1991), so
    the local day is the naive time's day; the mean of the previous 7 days per account
    by a rolling window over the account's days; short when the account's first day is
    after the window's first; the reduction in whole mg, half away from zero."""
    day = (pl.col("time").dt.epoch("us") // DAY_US).alias("day")
    window = {"by": "date", "window_size": "7d", "closed": "left"}  # days d-7 .. d-1
    usual = pl.col("s") / pl.col("c")
    mg = ((usual - pl.col("joules")).clip(lower_bound=0.0) * (581e-3 / 3.6e6) * 1e6)
    out = (frame.lazy()
           .with_columns(day, (pl.col("used") * 3.6e6).alias("joules"), pl.lit(1.0).alias("one"))
           .sort("account", "time", "id")
           .with_columns(pl.col("day").cast(pl.Int32).cast(pl.Date).alias("date"),
                         pl.col("day").min().over("account").alias("first"))
           .with_columns(pl.col("joules").rolling_sum_by(**window).over("account").alias("s"),
                         pl.col("one").rolling_sum_by(**window).over("account").alias("c"))
           .select("id",
                   pl.when(pl.col("first") > pl.col("day") - 7).then(pl.lit("SHORT_HISTORY"))
                   .when(pl.col("c").fill_null(0) == 0).then(pl.lit("NO_HISTORY"))
                   .otherwise(pl.lit("")).alias("code"),
                   pl.when((pl.col("first") > pl.col("day") - 7) | (pl.col("c").fill_null(0) == 0)).then(0)
                   .otherwise((mg + 0.5).floor()).cast(pl.Int64).alias("reduction_mg"))
           .collect())
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5_000_000)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    methodology = compile_source(SOURCE, "bench.tanpu").methodology
    engine = BatchEngine(methodology, kernels=build)
    assert engine.formulas.compiles(), "no C compiler: the kernel did not build"
    frame = frame_of(args.n, args.accounts)
    n = frame.height
    print(f"history window: {n:,} daily readings of {args.accounts:,} accounts, "
          f"mean of the previous 7 days; {os.cpu_count()} CPU(s), load average "
          f"{os.getloadavg()[0]:.2f}; polars {pl.__version__}, numpy {np.__version__}")
    units = {"used": "kWh"}
    engine.evaluate_frame(frame.head(1000), units)  # the kernel built and loaded
    ours, theirs = alternate(lambda: engine.evaluate_frame(frame, units), lambda: reference(frame),
                             args.repeat)
    results, by_hand = ours["value"], theirs["value"]
    for label, got in (("batch path (C kernel, whole frame)", ours), ("hand-written Polars reference", theirs)):
        print(f"  {label:36s} {n / got['wall'] / 1e6:6.2f} M records/s ({got['wall']:.2f} s wall), "
              f"{n / got['cpu'] / 1e6:6.2f} M records/CPU-s ({got['cpu']:.2f} s CPU)")
    print(f"  ratio engine / reference: {theirs['wall'] / ours['wall']:.2f}x the speed (wall), "
          f"{theirs['cpu'] / ours['cpu']:.2f}x (CPU); load average after {os.getloadavg()[0]:.2f}")
    # the sort pack_sort uses (engine/batch/rules.py: NumPy's where its AVX-512 kernel
    # runs, else Polars'), both measured here on the packed (time, position) keys
    from engine.batch.rules import NUMPY_SORTS_FAST
    t = frame.get_column("time").cast(pl.Int64).to_numpy()
    bits = (n - 1).bit_length()
    packed = (((t - t.min()) // 60_000_000).astype(np.uint64) << np.uint64(bits)) | np.arange(n, dtype=np.uint64)
    by_numpy, by_polars = alternate(lambda: np.sort(packed),
                                    lambda: pl.Series(packed).sort(multithreaded=False).to_numpy(), args.repeat)
    assert np.array_equal(by_numpy["value"], by_polars["value"])
    print(f"  sort of {n:,} packed uint64 keys: NumPy {by_numpy['cpu']:.3f} s CPU ({by_numpy['wall']:.3f} s wall), "
          f"Polars {by_polars['cpu']:.3f} s CPU ({by_polars['wall']:.3f} s wall); "
          f"pack_sort uses {'NumPy' if NUMPY_SORTS_FAST else 'Polars'}")
    joined = results.select("id", "code", "reduction_mg").join(by_hand, on="id", suffix="_ref")
    same_code = (joined["code"] == joined["code_ref"]).sum()
    same_mg = (joined["reduction_mg"] == joined["reduction_mg_ref"]).sum()
    within = ((joined["reduction_mg"] - joined["reduction_mg_ref"]).abs() <= 1).sum()
    credited = (results["status"] == "credited").sum()
    print(f"  results: {credited:,} credited, {n - credited:,} short of history; "
          f"reference agrees on {same_code:,} codes, {same_mg:,} exact mg, {within:,} within 1 mg "
          f"(its rolling sum adds in another order)")


if __name__ == "__main__":
    main()
