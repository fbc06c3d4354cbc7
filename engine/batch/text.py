"""Text cells read as arrays of bytes: the common shapes of numbers, dates and names.

Every parser here is a *fast path*: for each row it either gives exactly the value
engine/records.py gives for that text, or says "not sure" (ok = False), and the caller
then reads the row with engine/records.py itself. So a shape it does not know (leading
spaces, exponents, Unicode digits, 16+ digit numbers, week dates ...) costs speed, never
correctness, and every error message comes from engine/records.py.

Numbers: at most 15 significant digits and no exponent, so that m / 10**k (both exact
doubles) is the correctly rounded value Python's float() gives.

Why NumPy and not Polars expressions (issue 11 asked for Polars wherever it gives the same
bits and is faster; bench/bench_text.py measures both in one run). Polars' parsers give
the same bits where both answer: its Float64 cast is correctly rounded like float() (to
the bit on 25-digit numbers and exponents, tests/engine/test_text_polars.py), and
str.to_datetime reads a cell fromisoformat takes to the same microsecond. But they do not
take the same cells: the cast rejects "1_0", " 8.2", "１２.５" (float() takes them) and
"1.5 km"; str.to_datetime takes "2024-05-06T7:41", "2024-05-06T 7:41", "+202-05-06T07:41"
(the year 202), year 0 and "2016-12-31T23:59:60" (read as 2017-01-01T00:00), which
fromisoformat rejects. An exact Polars reader therefore tests each cell's shape with a
regular expression before it parses, and written so (bench/bench_text.py: text.py's
cells, text.py's bits) it costs more than these: on 1M cells, CPU ms text.py vs Polars,
plain decimals 98 vs 105, "123.456 km" cells 139 vs 164, ISO datetimes 66 vs 133 (mixed
layouts 116 vs 444; 2026-12-06, 2 cores). Polars wins wall-clock time only with a core to itself, and the
batch engine already reads two chunks at once. So these stay.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from .timezones import days_from_civil, days_in_month

# what str.strip() removes: the characters for which str.isspace() is true
PY_WS = "".join(ch for ch in map(chr, range(0x3001)) if ch.isspace())
_ASCII_WS_BYTES = sorted(ord(c) for c in PY_WS if ord(c) < 128)
_LEAD_MULTIBYTE_WS_BYTES = sorted({c.encode()[0] for c in PY_WS if ord(c) >= 128})
assert _ASCII_WS_BYTES == [9, 10, 11, 12, 13, 28, 29, 30, 31, 32]
assert _LEAD_MULTIBYTE_WS_BYTES == [0xC2, 0xE1, 0xE2, 0xE3]


# Comparisons rather than a 256-entry table: NumPy vectorizes them, table lookups it does not.
def _ascii_ws(b: np.ndarray) -> np.ndarray:
    """Bytes that are ASCII whitespace to str.isspace(): 9-13 and 28-32."""
    return (b <= 32) & ((b >= 28) | ((b >= 9) & (b <= 13)))


def _lead_multibyte_ws(b: np.ndarray) -> np.ndarray:
    """First bytes of the UTF-8 encodings of the non-ASCII whitespace characters."""
    return (b == 0xC2) | ((b >= 0xE1) & (b <= 0xE3))


@dataclass
class Bytes:
    """A String column as (start, end) offsets into one buffer of UTF-8 bytes.

    Cells of at most 12 bytes are read in place from Polars' string views (Arrow
    StringView: 16 bytes a cell, the short ones inline); longer ones are copied once into
    one buffer (Arrow LargeString).
    """

    data: np.ndarray   # uint8, with at least one byte
    start: np.ndarray  # int64
    end: np.ndarray
    valid: np.ndarray  # not null

    @staticmethod
    def of(series: pl.Series) -> "Bytes":
        views = _views(series)
        if views is not None:
            view, length, _ = views
            if length.size == 0 or int(length.max()) <= 12:
                start = np.arange(length.size, dtype=np.int64) * 16 + 4
                data = view.reshape(-1) if view.size else np.zeros(1, dtype=np.uint8)
                return Bytes(data, start, start + length, _valid(series))
        array = series.to_arrow(compat_level=pl.CompatLevel.oldest())
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        if not (pa.types.is_large_string(array.type) or pa.types.is_string(array.type)):
            array = array.cast(pa.large_string())
        buffers = array.buffers()
        width = np.int64 if pa.types.is_large_string(array.type) else np.int32
        offsets = np.frombuffer(buffers[1], dtype=width)[array.offset:array.offset + len(array) + 1]
        offsets = offsets.astype(np.int64, copy=False)
        data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None and buffers[2].size else np.zeros(0, np.uint8)
        if data.size == 0:
            data = np.zeros(1, dtype=np.uint8)
        return Bytes(data, offsets[:-1], offsets[1:], _valid(series))

    @property
    def length(self) -> np.ndarray:
        return self.end - self.start

    def byte(self, k) -> np.ndarray:
        """The byte at position k of each cell (k a number or an array), 0 past its end."""
        pos = self.start + k
        inside = pos < self.end
        return np.where(inside, self.data[np.minimum(pos, self.data.size - 1)], 0)

    def byte_from_end(self, k: int) -> np.ndarray:
        pos = self.end - k
        inside = pos >= self.start
        return np.where(inside, self.data[np.clip(pos, 0, self.data.size - 1)], 0)


def _valid(series: pl.Series) -> np.ndarray:
    if series.null_count() == 0:
        return np.ones(series.len(), dtype=bool)
    return series.is_not_null().to_numpy()


def _views(series: pl.Series):
    """(views as n x 16 bytes, lengths, data buffers) of a String column, no copy."""
    try:
        array = series.to_arrow(compat_level=pl.CompatLevel.newest())
    except Exception:  # pragma: no cover
        return None
    if isinstance(array, pa.ChunkedArray):
        if array.num_chunks != 1:
            return None
        array = array.chunk(0)
    if not pa.types.is_string_view(array.type):
        return None
    buffers = array.buffers()
    n = len(array)
    view = np.frombuffer(buffers[1], dtype=np.uint8).reshape(-1, 16)[array.offset:array.offset + n]
    length = np.frombuffer(buffers[1], dtype=np.uint32)[array.offset * 4:(array.offset + n) * 4:4] \
        .astype(np.int64)
    if array.null_count:
        length[~_valid(series)] = 0
    data = [np.frombuffer(b, dtype=np.uint8) if b is not None else np.zeros(0, np.uint8)
            for b in buffers[2:]]
    return view, length, data


class Edges:
    """First and last bytes of each cell of a String column, read without copying text.

    In a string view (16 bytes: length, then the bytes themselves when at most 12, else a
    4-byte prefix, buffer index and offset) the first byte is always at offset 4; the
    last bytes of short cells are in the view too, only long cells need their buffer.
    """

    def __init__(self, series: pl.Series):
        views = _views(series)
        if views is None:
            b = Bytes.of(series)
            self.length = np.where(b.valid, b.length, 0)
            self.first = b.byte(0)
            self._from_end = b.byte_from_end
            return
        view, length, data = views
        self.length = length
        n = length.size
        self.first = np.where(length > 0, view[:, 4], 0) if n else np.zeros(0, np.uint8)
        flat = view.reshape(-1)
        long_rows = np.flatnonzero(length > 12)

        def from_end(k: int) -> np.ndarray:
            if n == 0:
                return np.zeros(0, dtype=np.uint8)
            at = np.arange(4 - k, 16 * n + 4 - k, 16, dtype=np.int64)
            at += length
            out = flat.take(at, mode="clip")
            out[length < k] = 0
            if long_rows.size:
                out[long_rows] = 0
                index = view[long_rows, 8:12].copy().view(np.uint32).reshape(-1)
                offset = view[long_rows, 12:16].copy().view(np.uint32).reshape(-1).astype(np.int64)
                for i in np.unique(index).tolist():
                    chosen = index == i
                    rows = long_rows[chosen]
                    out[rows] = data[i][offset[chosen] + length[rows] - k]
            return out
        self._from_end = from_end

    def from_end(self, k: int) -> np.ndarray:
        return self._from_end(k)


def padded(series: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """(may need stripping, not empty) per cell of a String column."""
    edges = Edges(series)
    return maybe_padded(series, edges), edges.length > 0


def _digit(b: np.ndarray) -> np.ndarray:
    return (b >= 48) & (b <= 57)


def maybe_padded(series: pl.Series, edges: "Edges | None" = None) -> np.ndarray:
    """Cells that might start or end with what str.strip() removes (a superset)."""
    edges = edges or Edges(series)
    first, length = edges.first, edges.length
    last = edges.from_end(1)
    suspect = _ascii_ws(first) | _lead_multibyte_ws(first) | _ascii_ws(last)
    cont = (last >= 0x80) & (last <= 0xBF) & (length > 0)
    if cont.any():
        second, third = edges.from_end(2), edges.from_end(3)
        suspect |= cont & (((length >= 2) & (second == 0xC2)) |
                           ((length >= 3) & _lead_multibyte_ws(third)))
    return suspect & (length > 0)


def widths(text: Bytes, limit: int = 64):
    """The valid cells grouped by length: (length, rows, bytes as a rows x length matrix).

    Cells longer than `limit` are left out (the parsers then leave them to Python).
    """
    length = np.where(text.valid, text.length, limit + 1)
    n = length.size
    counts = np.bincount(np.minimum(length, limit + 1), minlength=limit + 2)
    for width in np.flatnonzero(counts[:limit + 1]).tolist():
        rows = np.arange(n) if counts[width] == n else np.flatnonzero(length == width)
        if width == 0:
            yield 0, rows, np.zeros((rows.size, 0), dtype=np.uint8)
            continue
        starts = text.start[rows]
        if rows.size and starts[-1] - starts[0] == (rows.size - 1) * width and \
                (rows.size == 1 or np.all(np.diff(starts) == width)) and text.data.size >= starts[0] + rows.size * width:
            matrix = text.data[starts[0]:starts[0] + rows.size * width].reshape(rows.size, width)
        else:
            windows = np.lib.stride_tricks.sliding_window_view(text.data, width) \
                if text.data.size >= width else np.zeros((1, width), dtype=np.uint8)
            matrix = windows[np.minimum(starts, windows.shape[0] - 1)]
        # position-major, so that each position is one contiguous row of bytes
        yield width, rows, np.ascontiguousarray(matrix.T).T


def match_strings(text: Bytes, candidates) -> np.ndarray:
    """Index of the candidate each cell equals byte for byte; -1 for none (or null)."""
    out = np.full(text.start.shape, -1, dtype=np.int32)
    wanted: dict[int, list] = {}
    for index, candidate in enumerate(candidates):
        encoded = np.frombuffer(candidate.encode("utf-8"), dtype=np.uint8)
        wanted.setdefault(encoded.size, []).append((index, encoded))
    longest = max(wanted) if wanted else 0
    for width, rows, matrix in widths(text, longest):
        for index, encoded in wanted.get(width, ()):
            hit = (matrix == encoded).all(axis=1) if width else np.ones(rows.size, dtype=bool)
            free = out[rows] < 0
            out[rows[hit & free]] = index
    return out


_POWERS_OF_TEN = 10.0 ** np.arange(16)  # exact doubles, as 10.0 ** k gives them


@dataclass
class Decimals:
    value: np.ndarray       # float64, correctly rounded where ok
    mantissa: np.ndarray    # int64 digits without the dot
    negative: np.ndarray
    dots: np.ndarray
    unit_start: np.ndarray  # the text after the number and its spaces is [unit_start, end)
    ok: np.ndarray


def decimals(text: Bytes, limit: int = 40) -> Decimals:
    """Cells shaped `[+-]digits[.digits][spaces][unit]`, at most 15 digits, no exponent,
    no leading or trailing space."""
    n = text.start.size
    value = np.zeros(n)
    mantissa = np.zeros(n, dtype=np.int64)
    negative = np.zeros(n, dtype=bool)
    dots = np.zeros(n, dtype=np.int64)
    unit_start = text.end.copy()
    ok = np.zeros(n, dtype=bool)
    for width, rows, m in widths(text, limit):
        k = rows.size
        if width == 0:
            continue
        first = m[:, 0]
        signed = ((first == 43) | (first == 45)).astype(np.int64)
        digit = (m >= 48) & (m <= 57)
        is_dot = m == 46
        numeric = digit | is_dot
        numeric[:, 0] |= signed.astype(bool)
        # the number is [signed, stop): it ends at the first non-numeric byte (or the end)
        stop = np.where(numeric.all(axis=1), width, np.argmin(numeric, axis=1))
        # one pass over the byte positions (each a contiguous column): the mantissa's
        # digits, the dots and where the first one is; inside the number every byte is a
        # digit or a dot, so the digits are the rest
        mant = np.zeros(k, dtype=np.int64)
        ndots = np.zeros(k, dtype=np.int64)
        dot_at = np.full(k, width, dtype=np.int64)
        for j in range(width):
            within = j < stop
            if not within.any():
                break
            dots_here = is_dot[:, j] & within
            if dots_here.any():
                dot_at = np.where(dots_here & (ndots == 0), j, dot_at)
                ndots += dots_here
            if j < 17:
                column = digit[:, j] & within & (j >= signed)
                if column.any():
                    mant = np.where(column, mant * 10 + (m[:, j].astype(np.int64) - 48), mant)
        count = stop - signed - ndots
        frac = np.where(ndots > 0, stop - dot_at - 1, 0)
        after = m[np.arange(k), np.minimum(stop, width - 1)]
        good = ((count >= 1) & (count <= 15) & (ndots <= 1)
                & ~((stop < width) & ((after == 101) | (after == 69))))
        # spaces, then the unit; no trailing space
        ustart = stop.copy()
        spaces = np.flatnonzero(ustart < width)
        while spaces.size:  # step over the spaces after the number (usually one or none)
            spaces = spaces[m[spaces, ustart[spaces]] == 32]
            ustart[spaces] += 1
            spaces = spaces[ustart[spaces] < width]
        good &= ~((ustart < width) & (m[:, width - 1] == 32))
        v = mant.astype(np.float64) / _POWERS_OF_TEN[np.minimum(frac, 15)]
        neg = first == 45
        value[rows] = np.where(neg, -v, v)
        mantissa[rows] = mant
        negative[rows] = neg
        dots[rows] = ndots
        unit_start[rows] = text.start[rows] + ustart
        ok[rows] = good
    return Decimals(value, mantissa, negative, dots, unit_start, ok)


def unit_codes(text: Bytes, unit_start: np.ndarray, ok: np.ndarray, limit: int = 16):
    """Group the unit texts of the ok cells: (code per cell or -1, list of unit texts)."""
    codes = np.full(text.start.shape, -1, dtype=np.int32)
    units: list[str] = []
    length = text.end - unit_start
    pending = ok.copy()
    while pending.any() and len(units) < limit:
        i = int(np.argmax(pending))
        raw = bytes(text.data[unit_start[i]:text.end[i]])
        rows = np.flatnonzero(pending & (length == len(raw)))
        if raw:
            matrix = text.data[unit_start[rows][:, None] + np.arange(len(raw))]
            rows = rows[(matrix == np.frombuffer(raw, dtype=np.uint8)).all(axis=1)]
        units.append(raw.decode("utf-8", "replace"))
        codes[rows] = len(units) - 1
        codes[i] = len(units) - 1
        pending[rows] = False
        pending[i] = False
    return codes, units


def whole_numbers(text: Bytes, d: "Decimals | None" = None):
    """Cells shaped `[+-]digits` with at most 15 digits -> (int64 value, ok); `d`: their
    decimals() when already read (native_text reads them in C)."""
    d = d if d is not None else decimals(text)
    ok = d.ok & (d.unit_start == text.end) & (d.dots == 0)
    value = np.where(d.negative, -d.mantissa, d.mantissa)
    return np.where(ok, value, 0), ok


_48 = np.uint8(48)


def _pair(m: np.ndarray, k) -> tuple[np.ndarray, np.ndarray]:
    """Two digits at column k (a number or an array of columns, one per row)."""
    width = m.shape[1]
    if isinstance(k, (int, np.integer)):
        if k + 1 >= width:
            zero = np.zeros(m.shape[0], dtype=np.int64)
            return zero, zero.astype(bool)
        a, b = m[:, k] - _48, m[:, k + 1] - _48  # uint8: a non-digit wraps to >= 10
    else:
        rows = np.arange(m.shape[0])
        inside = k + 1 < width
        a = np.where(inside, m[rows, np.minimum(k, width - 1)], 0).astype(np.uint8) - _48
        b = np.where(inside, m[rows, np.minimum(k + 1, width - 1)], 0).astype(np.uint8) - _48
    ok = (a < 10) & (b < 10)
    value = a.astype(np.int16)
    value *= 10
    value += b
    return value.astype(np.int64), ok


def _at(m: np.ndarray, k) -> np.ndarray:
    width = m.shape[1]
    if isinstance(k, (int, np.integer)):
        return m[:, k].astype(np.int64) if k < width else np.zeros(m.shape[0], dtype=np.int64)
    rows = np.arange(m.shape[0])
    return np.where(k < width, m[rows, np.minimum(k, width - 1)], 0).astype(np.int64)


def _calendar_ok(year, month, day):
    ok = (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1)
    return ok & (day <= days_in_month(year, month))


def _iso_date(m: np.ndarray):
    """(year, month, day, ok) of cells starting `YYYY-MM-DD` (a valid calendar date)."""
    hi, ok_hi = _pair(m, 0)
    lo, ok_lo = _pair(m, 2)
    year = hi * 100 + lo
    month, ok_m = _pair(m, 5)
    day, ok_d = _pair(m, 8)
    good = ok_hi & ok_lo & ok_m & ok_d & (m[:, 4] == 45) & (m[:, 7] == 45)
    return year, month, day, good & _calendar_ok(year, month, day)


def iso_datetimes(text: Bytes):
    """ISO 8601 cells `YYYY-MM-DD[(T| )HH:MM[:SS[.f{1,6}]]][Z|±HH:MM]`.

    Returns (local µs since the epoch on the wall clock, offset µs, has_offset, ok),
    valid calendar fields only (as datetime.fromisoformat checks them).
    """
    n = text.start.size
    local = np.zeros(n, dtype=np.int64)
    offset = np.zeros(n, dtype=np.int64)
    has_offset = np.zeros(n, dtype=bool)
    ok = np.zeros(n, dtype=bool)
    for width, rows, m in widths(text, 32):
        if width < 10:
            continue
        k = rows.size
        year, month, day, good = _iso_date(m)
        zero = np.zeros(k, dtype=np.int64)
        if width == 10:
            hour = minute = second = micro = zero
            pos = np.full(k, 10)
            date_only = True
        else:
            date_only = False
            sep = _at(m, 10)
            hour, ok_h = _pair(m, 11)
            minute, ok_mi = _pair(m, 14)
            good &= ((sep == 84) | (sep == 32)) & ok_h & ok_mi & (_at(m, 13) == 58) & (width >= 16)
            has_seconds = (_at(m, 16) == 58) & (width >= 19)
            second, ok_s = _pair(m, 17)
            good &= ~has_seconds | ok_s
            second = np.where(has_seconds, second, 0)
            has_frac = has_seconds & (_at(m, 19) == 46)
            frac_digits = zero.copy()
            micro = zero.copy()
            going = has_frac.copy()
            for j in range(7 if has_frac.any() else 0):
                b = _at(m, 20 + j)
                d = going & (b >= 48) & (b <= 57)
                if j == 6:
                    good &= ~d  # a 7th digit: leave it to Python
                    break
                micro = np.where(d, micro * 10 + (b - 48), micro)
                frac_digits += d
                going &= d
            good &= ~has_frac | (frac_digits >= 1)
            micro = micro * (10 ** (6 - np.minimum(frac_digits, 6)))
            pos = np.where(has_frac, 20 + frac_digits, np.where(has_seconds, 19, 16))
            good &= (hour <= 23) & (minute <= 59) & (second <= 59)
        tail = width - pos
        if isinstance(pos, np.ndarray) and pos.size and (pos == pos[0]).all():
            pos = int(pos[0])  # one layout for the whole group: columns, not gathers
            tail = width - pos
        if np.all(tail == 0):  # nothing after the time: no offset to read
            zulu = signed = np.zeros(k, dtype=bool)
        else:
            z = _at(m, pos)
            zulu = (tail == 1) & ((z == 90) | (z == 122)) & (not date_only)
            oh, ok_oh = _pair(m, pos + 1)
            om, ok_om = _pair(m, pos + 4)
            signed = ((tail == 6) & ((z == 43) | (z == 45)) & ok_oh & ok_om & (_at(m, pos + 3) == 58)
                      & (oh <= 23) & (om <= 59) & (not date_only))
            good &= (tail == 0) | zulu | signed
        days = days_from_civil(np.where(good, year, 1970), np.where(good, month, 1), np.where(good, day, 1))
        local[rows] = (days * 86_400_000_000 + hour * 3_600_000_000 + minute * 60_000_000
                       + second * 1_000_000 + micro)
        if signed.any():
            offset[rows] = np.where(signed, np.where(z == 45, -1, 1) * (oh * 3600 + om * 60) * 1_000_000, 0)
        has_offset[rows] = zulu | signed
        ok[rows] = good
    return local, offset, has_offset, ok


def iso_dates(text: Bytes):
    """`YYYY-MM-DD` cells -> (days since the epoch, ok)."""
    n = text.start.size
    days = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    for width, rows, m in widths(text, 10):
        if width != 10:
            continue
        year, month, day, good = _iso_date(m)
        days[rows] = days_from_civil(np.where(good, year, 1970), np.where(good, month, 1),
                                     np.where(good, day, 1))
        ok[rows] = good
    return days, ok
