"""Throughput of counters and a reward conversion (issue 12) on the batch path.

    .venv/bin/python bench/bench_rewards.py [--n 5000000] [--accounts 100000] [--repeat 3]

A 碳易行-like methodology (methodologies/zhengzhou-tanyixing-bus.tanpu, simplified): 10
points a bus ride and 15 a metro ride, a `rides` counter capped at 4 a day per account,
every 50 points one 5 CNY voucher with the remainder kept. Prints records/s of
BatchEngine.evaluate_frame (formulas in C, the counter cap and the conversion on columns)
beside a hand-written Polars/NumPy computation of the same results (points, the capped
rides, the vouchers: a sort by (account, time), segmented cumulative sums), checks that
the two agree record by record, and gives the ratio. The two alternate (engine, reference,
engine, ...), each with its best wall and CPU time. Figures only: nothing here asserts
a timing.
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

KEPT = keep_freed_memory()

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from dsl import compile_source  # noqa: E402
from engine.batch import BatchEngine  # noqa: E402
from engine.native.build import build  # noqa: E402

SOURCE = """methodology bench.rewards "rewards" version 1.0.0 {
  covers bus_ride
  effective from 2024-01-01
  timezone Asia/Shanghai
}
input mode: choice { bus, metro }
points = if mode == bus then 10 else 15
counter rides [ride] = 1
cap counter rides at 4 ride per account per day
reward voucher every 50 points worth 5 CNY
"""
START_US = 1_714_492_800_000_000  # 2024-05-01T00:00+08:00 as UTC µs
DAY_US = 86_400_000_000
SHANGHAI_US = 8 * 3_600_000_000


def frame_of(n: int, accounts: int, seed: int = 0) -> pl.DataFrame:
    """n rides of `accounts` accounts over 30 days, times to the second."""
    rng = np.random.default_rng(seed)
    time_us = START_US + rng.integers(0, 30 * 86_400, n) * 1_000_000
    return pl.DataFrame({
        "id": pl.int_range(0, n, eager=True).cast(pl.String),
        "account": pl.Series(rng.integers(0, accounts, n)).cast(pl.String),
        "time": pl.Series(time_us).cast(pl.Datetime("us", "UTC")),
        "mode": pl.Series(np.array(["bus", "metro"])[rng.integers(0, 2, n)]).cast(pl.Enum(["bus", "metro"])),
    })


def by_hand(frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(points, rides, vouchers) of each record in row order, written directly."""
    t = (frame.select(pl.col("account"), pl.col("time").dt.epoch("us").alias("t"), pl.col("id"),
                      (pl.col("mode") == "bus").alias("bus"))
         .with_row_index("row"))
    ordered = t.sort(["account", "t", "id", "row"])
    row = ordered.get_column("row").to_numpy()
    account = ordered.get_column("account")
    new_account = (account != account.shift(1)).fill_null(True).to_numpy()
    tt = ordered.get_column("t").to_numpy()
    points = np.where(ordered.get_column("bus").to_numpy(), 10, 15).astype(np.int64)
    day = (tt + SHANGHAI_US) // DAY_US
    new_day = new_account | np.r_[True, day[1:] != day[:-1]]
    ones = np.ones(tt.size, dtype=np.int64)
    within = segmented_cumsum(ones, new_day)
    rides = np.minimum(within, 4) - np.minimum(within - 1, 4)
    cs = segmented_cumsum(points, new_account)
    vouchers = cs // 50 - (cs - points) // 50
    out = [np.empty(tt.size, dtype=np.int64) for _ in range(3)]
    for target, values in zip(out, (points, rides, vouchers)):
        target[row] = values
    return tuple(out)


def segmented_cumsum(values: np.ndarray, new: np.ndarray) -> np.ndarray:
    cs = np.cumsum(values)
    starts = np.flatnonzero(new)
    base = np.repeat(np.r_[0, cs[starts[1:] - 1]], np.diff(np.r_[starts, values.size]))
    return cs - base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5_000_000)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    compiled = compile_source(SOURCE, "bench.tanpu")
    assert compiled.ok, compiled.render()
    n = args.n
    print(f"machine: {os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.2f}; "
          f"polars {pl.__version__}, numpy {np.__version__}")
    frame = frame_of(n, args.accounts)
    print(f"generated {n:,} records over {args.accounts:,} accounts")
    batch = BatchEngine(compiled.methodology, kernels=build)
    assert batch.formulas.compiles(), "no C compiler: the figures would be the row-by-row fallback's"
    ours, theirs = alternate(lambda: batch.evaluate_frame(frame), lambda: by_hand(frame), args.repeat)
    results, (points, rides, vouchers) = ours["value"], theirs["value"]
    engine_s, hand_s = ours["wall"], theirs["wall"]
    moved = results.get_column("counters").list.join(";").str.extract_groups(
        r"rides=(\d+);voucher=(\d+)").struct.unnest()
    agree = (np.array_equal(results.get_column("points").to_numpy(), points)
             and np.array_equal(moved.get_column("1").cast(pl.Int64).to_numpy(), rides)
             and np.array_equal(moved.get_column("2").cast(pl.Int64).to_numpy(), vouchers))
    print(f"batch    evaluate_frame, counter cap + reward   {n / engine_s / 1e6:6.2f} M records/s ({engine_s:.2f} s wall), "
          f"{n / ours['cpu'] / 1e6:6.2f} M records/CPU-s ({ours['cpu']:.2f} s CPU)")
    print(f"by hand  Polars sort + NumPy segmented sums     {n / hand_s / 1e6:6.2f} M records/s ({hand_s:.2f} s wall), "
          f"{n / theirs['cpu'] / 1e6:6.2f} M records/CPU-s ({theirs['cpu']:.2f} s CPU)")
    print(f"ratio    batch / by hand = {engine_s / hand_s:.2f}x wall time, {ours['cpu'] / theirs['cpu']:.2f}x CPU "
          f"time; same results: {agree}; vouchers {int(vouchers.sum()):,}, rides cut by the cap "
          f"{int(n - rides.sum()):,}; load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
