"""Reading text cells without a compiler: text.py's NumPy readers against Polars.

    .venv/bin/python bench/bench_text.py            # 1M-row columns
    .venv/bin/python bench/bench_text.py --n 256000 # one chunk of the batch engine

Issue 11: "If the NumPy text readers stay as the no-compiler fallback, replace them with
Polars expressions where Polars gives the same bits (measured faster than text.py on
plain decimals, "123.456 km" cells and ISO datetimes)". For columns of each, this prints
the best of several runs, wall clock and CPU time (all threads), of

- text.py's reader (decimals, + unit_codes for the quantity cells; iso_datetimes), and
- a Polars reader (decimals_polars, iso_polars below) that accepts exactly the same
  cells with the same bits (the `same bits` column checks it on these columns,
  tests/engine/test_text_polars.py on generated ones): the shape of the usual cells as
  one regular expression (no captures: the cheapest test Polars has), the values from
  Polars' own parsers, text.py's reader for every other cell,
- and, for reference, the bare Polars parser (`cast(Float64)`, `str.to_datetime`), which
  is not a reader: it takes cells Python rejects and rejects cells Python takes.

Both readers get the same tx.Bytes, made once per column as ingest does. Polars runs on
its thread pool (POLARS_MAX_THREADS, by default the machine's cores), NumPy on one core:
the batch engine already reads two chunks at once, so CPU time is the figure that
decides (docs/engine.md, "Reading text cells"). Figures only: nothing here asserts a
timing; the load average is printed because the machine may be shared.

What the bare Polars parsers do differently from engine/records.py, and why the regular
expressions are needed:

- `cast(pl.Float64, strict=False)` is correctly rounded like float() (same bits on every
  cell both take, checked up to 25 digits and with exponents), but rejects cells float()
  and records.py take: "1_0" (float gives 10.0), " 8.2", "１２.５" (Unicode digits),
  "1.5 km" (the number and unit records.py splits);
- `str.to_datetime(format, strict=False)` (chrono) takes cells fromisoformat rejects:
  one-digit fields and padding ("2024-05-06T7:41", "2024-05-06T 7:41", "2024-5-06T07:41"),
  a signed short year ("+202-05-06T07:41" is the year 202), year 0, and the leap second
  "2016-12-31T23:59:60", read as 2017-01-01T00:00:00.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.batch import text as tx  # noqa: E402


# `[+-]digits[.digits][ unit]`: at most 30 digits (15 are checked after), one space
# before a unit without spaces: "27.3", "123.456 km". Rust's regex: [0-9] is ASCII
# only, and `$` is the very end (no line break before it, unlike Python's).
PLAIN_DECIMAL = r"^[+-]?[0-9]{0,15}\.?[0-9]{0,15}(?: [^ ]+)?$"
_TENS = 10.0 ** np.arange(16)  # exact doubles


def decimals_polars(series: pl.Series, text: "tx.Bytes | None" = None, limit: int = 40) -> tx.Decimals:
    """text.decimals: the usual cells by Polars, the others by text.decimals itself."""
    text = text if text is not None else tx.Bytes.of(series)
    n = series.len()
    cell = pl.col("c")
    found = pl.DataFrame({"c": series}).select(
        shape=cell.str.contains(PLAIN_DECIMAL).fill_null(False),
        space=cell.str.find(" ", literal=True))
    space = found["space"]
    length = text.end - text.start
    if space.null_count() == n:  # no units: the cells are the numbers
        number, digits_end, unit_start = series, length, text.end.copy()
    else:
        # the number is the text before the first space (ASCII in the cells kept, so
        # the byte offset `find` gives is its length in characters too)
        number = pl.select(pl.lit(series).str.head(space.fill_null(limit + 1))).to_series()
        spaced = space.is_not_null().to_numpy()
        digits_end = np.where(spaced, space.fill_null(0).to_numpy(), length)
        unit_start = np.where(spaced, text.start + digits_end + 1, text.end)
    read = pl.DataFrame({"c": number}).select(
        value=cell.cast(pl.Float64, strict=False).fill_null(0.0),
        dot=cell.str.find(".", literal=True).fill_null(-1))
    value = read["value"].to_numpy(writable=True)
    dot = read["dot"].to_numpy().astype(np.int64)
    first = text.byte(0)
    negative = first == 45
    dots = (dot >= 0).astype(np.int64)
    digits = digits_end - ((first == 43) | negative) - dots
    ok = found["shape"].to_numpy() & (digits >= 1) & (digits <= 15) & (length <= limit) & text.valid
    # the digits without the dot: |value| * 10**k rounds back to them exactly, since they
    # are below 10**15 < 2**50 (value is within half an ulp of m / 10**k, the product
    # within 2**-2 of m)
    frac = np.where(dots > 0, digits_end - dot - 1, 0)
    with np.errstate(invalid="ignore", over="ignore"):
        scaled = np.abs(value) * _TENS[np.clip(frac, 0, 15)]
    mantissa = np.where(ok, np.rint(scaled), 0).astype(np.int64)
    rest = np.flatnonzero(~ok & text.valid)
    if rest.size:
        other = tx.decimals(tx.Bytes(text.data, text.start[rest], text.end[rest], text.valid[rest]), limit)
        value[rest], mantissa[rest], negative[rest] = other.value, other.mantissa, other.negative
        dots[rest], unit_start[rest], ok[rest] = other.dots, other.unit_start, other.ok
    return tx.Decimals(value, mantissa, negative, dots, unit_start, ok)


# the cells fromisoformat takes that text.iso_datetimes answers for, the field ranges
# included; only the day of the month is left to Polars (null for 2024-02-30)
ISO_SHAPE = (r"^(?:[0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)-(?:0[1-9]|1[0-2])"
             r"-(?:0[1-9]|[12][0-9]|3[01])(?:[T ](?:[01][0-9]|2[0-3]):[0-5][0-9]"
             r"(?::[0-5][0-9](?:\.[0-9]{1,6})?)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?)?$")


def _format(width: int, separator: str) -> str:
    if width == 10:
        return "%Y-%m-%d"
    layout = f"%Y-%m-%d{separator}%H:%M"
    if width == 16:
        return layout
    return layout + (":%S" if width == 19 else ":%S%.f")


def iso_polars(series: pl.Series, text: "tx.Bytes | None" = None):
    """text.iso_datetimes: (local µs, offset µs, has_offset, ok). The shape by ISO_SHAPE,
    the wall-clock time by `str.to_datetime` with the format of each layout present
    (its offset cut off), the offset from the last bytes."""
    text = text if text is not None else tx.Bytes.of(series)
    n = series.len()
    shape = series.str.contains(ISO_SHAPE).fill_null(False).to_numpy()
    length = text.end - text.start
    last, sixth = text.byte_from_end(1), text.byte_from_end(6)
    zulu = shape & ((last == 90) | (last == 122))
    signed = shape & ~zulu & (length > 10) & ((sixth == 43) | (sixth == 45))
    tail = np.where(zulu, 1, np.where(signed, 6, 0))
    width = length - tail
    key = np.where(shape, np.minimum(width, 20) * 2 + (text.byte(10) == 84), -1)
    local = np.zeros(n, dtype=np.int64)
    ok = shape.copy()
    for k in np.unique(key[shape]).tolist():
        w, t = divmod(k, 2)
        rows = np.flatnonzero(key == k)
        part = series if rows.size == n else series.gather(rows)
        if tail[rows].any():
            part = pl.DataFrame({"s": part, "t": tail[rows]}).select(
                pl.col("s").str.slice(0, pl.col("s").str.len_bytes() - pl.col("t"))).to_series()
        if w == 10:
            parsed = part.str.to_date("%Y-%m-%d", strict=False)
            local[rows] = parsed.to_physical().cast(pl.Int64).fill_null(0).to_numpy() * 86_400_000_000
        else:
            parsed = part.str.to_datetime(_format(w, "T" if t else " "), strict=False, time_unit="us")
            local[rows] = parsed.to_physical().fill_null(0).to_numpy()
        ok[rows] &= parsed.is_not_null().to_numpy()
    offset = np.zeros(n, dtype=np.int64)
    if signed.any():
        rows = np.flatnonzero(signed)

        def digit(k):
            return text.byte_from_end(k)[rows].astype(np.int64) - 48
        minutes = (digit(5) * 10 + digit(4)) * 60 + digit(2) * 10 + digit(1)
        offset[rows] = np.where(sixth[rows] == 45, -1, 1) * minutes * 60_000_000
    return local, offset, zulu | signed, ok


def _race(first, second, argument, repeat: int):
    """Best wall clock and CPU time (all threads) of each, run in turns so that both see
    the same load; and their results."""
    wall, cpu, results = [float("inf")] * 2, [float("inf")] * 2, [None, None]
    for _ in range(repeat):
        for i, function in enumerate((first, second)):
            w, c = time.perf_counter(), time.process_time()
            results[i] = function(argument)
            wall[i] = min(wall[i], time.perf_counter() - w)
            cpu[i] = min(cpu[i], time.process_time() - c)
    return wall, cpu, results


def _bare(function, column, repeat: int) -> float:
    return _race(function, function, column, repeat)[1][0]


def _same_decimals(a: tx.Decimals, b: tx.Decimals) -> bool:
    ok = a.ok
    fields = ("mantissa", "negative", "dots", "unit_start")
    return np.array_equal(ok, b.ok) and np.array_equal(a.value[ok].view(np.int64), b.value[ok].view(np.int64)) \
        and all(np.array_equal(np.asarray(getattr(a, f))[ok].astype(np.int64),
                               np.asarray(getattr(b, f))[ok].astype(np.int64)) for f in fields)


def _same_datetimes(a, b) -> bool:
    ok = a[3]
    return np.array_equal(ok, b[3]) and all(np.array_equal(x[ok], y[ok]) for x, y in zip(a[:3], b[:3]))


def _sample_column(name: str, n: int) -> pl.Series:
    """A column of the Shenzhen sample (methodologies/samples/generate.py), repeated to n
    (so its few hundred distinct cells favour str.to_datetime's cache of repeated cells)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "methodologies" / "samples"))
    import generate
    cells = [row.get(name, "") for row in generate.shenzhen_public_transit().rows]
    return pl.Series(name, (cells * (n // len(cells) + 1))[:n])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    n, repeat = args.n, args.repeat
    rng = np.random.default_rng(11)
    plain = pl.Series("distance", [f"{v:.{k}f}" for v, k in zip(rng.uniform(0, 300, n), rng.integers(0, 4, n))])
    quantity = pl.Series("distance", [f"{v:.3f} {u}" for v, u in
                                      zip(rng.uniform(0, 300, n), rng.choice(["km", "m", "mi"], n))])
    minutes = np.datetime64("2024-05-06T00:00") + rng.integers(0, 525_600, n).astype("timedelta64[m]")
    iso = pl.Series("boarded", minutes.astype(str).tolist())
    micros = minutes.astype("datetime64[s]") + rng.integers(0, 60_000_000, n).astype("timedelta64[us]")
    mixed = pl.Series("boarded", [str(t).replace("T", s) + z for t, s, z in
                                  zip(micros, rng.choice(["T", " "], n), rng.choice(["", "Z", "+08:00", "-05:30"], n))])

    rows = []
    for name, column in (("plain decimals  27.3", plain), ("quantity cells  123.456 km", quantity),
                         ("Shenzhen sample's distance  27.3", _sample_column("distance", n))):
        text = tx.Bytes.of(column)

        def numpy_reader(text):
            d = tx.decimals(text)
            return d, tx.unit_codes(text, d.unit_start, d.ok)

        def polars_reader(text, column=column):
            d = decimals_polars(column, text)
            return d, tx.unit_codes(text, d.unit_start, d.ok)
        wall, cpu, ((d_numpy, u_numpy), (d_polars, u_polars)) = _race(numpy_reader, polars_reader, text, repeat)
        same = _same_decimals(d_numpy, d_polars) and u_numpy[1] == u_polars[1] and \
            np.array_equal(u_numpy[0], u_polars[0])
        bare = _bare(lambda s: s.cast(pl.Float64, strict=False), column, repeat)
        rows.append((name, wall, cpu, same, bare, "cast(Float64)"))
    for name, column, fmt in (
            ("ISO datetimes  2024-05-06T07:41", iso, "%Y-%m-%dT%H:%M"),
            ("ISO datetimes  mixed (s, µs, T/space, Z/±HH:MM)", mixed, "%Y-%m-%dT%H:%M:%S%.f%:z"),
            ("Shenzhen sample's boarded  2024-05-06T07:41", _sample_column("boarded", n), "%Y-%m-%dT%H:%M")):
        text = tx.Bytes.of(column)
        wall, cpu, (r_numpy, r_polars) = _race(tx.iso_datetimes, lambda text, column=column: iso_polars(column, text),
                                               text, repeat)
        bare = _bare(lambda s, fmt=fmt: s.str.to_datetime(fmt, strict=False, time_unit="us"), column, repeat)
        rows.append((name, wall, cpu, _same_datetimes(r_numpy, r_polars), bare, "str.to_datetime"))

    print(f"{n:,} cells a column, best of {repeat}; load average {os.getloadavg()[0]:.1f}; "
          f"Polars threads {pl.thread_pool_size()}; quantities include unit_codes")
    print(f"{'':<50} {'wall ms':>17} {'':>5} {'CPU ms':>17} {'':>5}")
    print(f"{'reader':<50} {'text.py':>8} {'Polars':>8} {'ratio':>5} {'text.py':>8} {'Polars':>8} {'ratio':>5}"
          f" {'same bits':>9}   bare Polars CPU ms (not exact)")
    for name, wall, cpu, same, bare, what in rows:
        print(f"{name:<50} {wall[0] * 1e3:>8.1f} {wall[1] * 1e3:>8.1f} {wall[0] / wall[1]:>5.2f} "
              f"{cpu[0] * 1e3:>8.1f} {cpu[1] * 1e3:>8.1f} {cpu[0] / cpu[1]:>5.2f} {'yes' if same else 'NO':>9}"
              f"   {bare * 1e3:.1f} ({what})")
    print("ratio: text.py's time / Polars' time (above 1: Polars faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
