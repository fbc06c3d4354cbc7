"""Text cells read as arrays of bytes: the common shapes of numbers, dates and names.

Every parser here is a *fast path*: for each row it either gives exactly the value
engine/records.py gives for that text, or says "not sure" (ok = False), and the caller
then reads the row with engine/records.py itself. So a shape it does not know (leading
spaces, exponents, Unicode digits, 16+ digit numbers, week dates ...) costs speed, never
correctness, and every error message comes from engine/records.py.

Numbers: at most 15 significant digits and no exponent, so that m / 10**k (both exact
doubles) is the correctly rounded value Python's float() gives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from .timezones import days_from_civil, days_in_month

# what str.strip() removes: the characters for which str.isspace() is true
PY_WS = "".join(ch for ch in map(chr, range(0x3001)) if ch.isspace())
_ASCII_WS = np.zeros(256, dtype=bool)
_ASCII_WS[[ord(c) for c in PY_WS if ord(c) < 128]] = True
_LEAD_MULTIBYTE_WS = np.zeros(256, dtype=bool)  # first bytes of the non-ASCII spaces
_LEAD_MULTIBYTE_WS[[0xC2, 0xE1, 0xE2, 0xE3]] = True


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
    length = view[:, :4].copy().view(np.uint32).reshape(-1).astype(np.int64)
    if array.null_count:
        length[~_valid(series)] = 0
    data = [np.frombuffer(b, dtype=np.uint8) if b is not None else np.zeros(0, np.uint8)
            for b in buffers[2:]]
    return view, length, data


class Edges:
    """First and last bytes of each cell of a String column, read without copying text."""

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
        flat = view.reshape(-1)
        n = length.size
        top = max(flat.size - 1, 0)
        base = np.arange(n, dtype=np.int64) * 16 + 4
        self.first = np.where(length > 0, flat[np.minimum(base, top)], 0) if n else np.zeros(0, np.uint8)
        long_rows = np.flatnonzero(length > 12)

        def from_end(k: int) -> np.ndarray:
            if n == 0:
                return np.zeros(0, dtype=np.uint8)
            inline = (length >= k) & (length <= 12)
            out = np.where(inline, flat[np.clip(base + length - k, 0, top)], 0).astype(np.uint8)
            if long_rows.size:
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


def _digit(b: np.ndarray) -> np.ndarray:
    return (b >= 48) & (b <= 57)


def maybe_padded(series: pl.Series, edges: "Edges | None" = None) -> np.ndarray:
    """Cells that might start or end with what str.strip() removes (a superset)."""
    edges = edges or Edges(series)
    first, length = edges.first, edges.length
    last = edges.from_end(1)
    suspect = _ASCII_WS[first] | _LEAD_MULTIBYTE_WS[first] | _ASCII_WS[last]
    cont = (last >= 0x80) & (last <= 0xBF) & (length > 0)
    if cont.any():
        second, third = edges.from_end(2), edges.from_end(3)
        suspect |= cont & (((length >= 2) & (second == 0xC2)) |
                           ((length >= 3) & _LEAD_MULTIBYTE_WS[third]))
    return suspect & (length > 0)


def match_strings(text: Bytes, candidates) -> np.ndarray:
    """Index of the candidate each cell equals byte for byte; -1 for none (or null)."""
    out = np.full(text.start.shape, -1, dtype=np.int32)
    length = text.length
    for index, candidate in enumerate(candidates):
        encoded = candidate.encode("utf-8")
        hit = (length == len(encoded)) & text.valid & (out < 0)
        for k, value in enumerate(encoded):
            if not hit.any():
                break
            hit &= text.byte(k) == value
        out[hit] = index
    return out


@dataclass
class Decimals:
    value: np.ndarray       # float64, correctly rounded where ok
    mantissa: np.ndarray    # int64 digits without the dot
    negative: np.ndarray
    dots: np.ndarray
    unit_start: np.ndarray  # the text after the number and its spaces is [unit_start, end)
    ok: np.ndarray


def decimals(text: Bytes) -> Decimals:
    """Cells shaped `[+-]digits[.digits][spaces][unit]`, at most 15 digits, no exponent,
    no leading or trailing space."""
    data, start, end = text.data, text.start, text.end
    n = start.size
    first = text.byte(0)
    signed = (first == 43) | (first == 45)
    p0 = start + signed
    stops = np.flatnonzero(~(_digit(data) | (data == 46)))
    if stops.size:
        at = np.searchsorted(stops, p0)
        num_end = np.minimum(np.where(at < stops.size, stops[np.minimum(at, stops.size - 1)], end), end)
    else:
        num_end = end.copy()
    width = num_end - p0
    digit_count = np.zeros(n, dtype=np.int64)
    dots = np.zeros(n, dtype=np.int64)
    frac = np.zeros(n, dtype=np.int64)
    mantissa = np.zeros(n, dtype=np.int64)
    seen_dot = np.zeros(n, dtype=bool)
    max_width = min(int(width.max()) if n else 0, 17)
    for j in range(max_width):
        active = j < width
        b = np.where(active, data[np.minimum(p0 + j, data.size - 1)], 0).astype(np.int64)
        is_digit = active & (b >= 48) & (b <= 57)
        is_dot = active & (b == 46)
        mantissa = np.where(is_digit, mantissa * 10 + (b - 48), mantissa)
        digit_count += is_digit
        frac += is_digit & seen_dot
        dots += is_dot
        seen_dot |= is_dot
    after = np.where(num_end < end, data[np.minimum(num_end, data.size - 1)], 0)
    ok = (text.valid & (width <= max_width) & (digit_count >= 1) & (digit_count <= 15)
          & (dots <= 1) & (after != 101) & (after != 69))  # an exponent: leave it to Python
    negative = first == 45
    value = mantissa.astype(np.float64) / (10.0 ** np.minimum(frac, 15))
    value = np.where(negative, -value, value)
    not_space = np.flatnonzero(data != 32)
    if not_space.size:
        at = np.searchsorted(not_space, num_end)
        unit_start = np.minimum(np.where(at < not_space.size, not_space[np.minimum(at, not_space.size - 1)], end), end)
    else:
        unit_start = end.copy()
    ok &= ~((unit_start < end) & (text.byte_from_end(1) == 32))  # trailing spaces
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
        hit = pending & (length == len(raw))
        for k, value in enumerate(raw):
            if not hit.any():
                break
            hit &= text.data[np.minimum(unit_start + k, text.data.size - 1)] == value
        hit[i] = True
        units.append(raw.decode("utf-8", "replace"))
        codes[hit] = len(units) - 1
        pending &= ~hit
    return codes, units


def whole_numbers(text: Bytes):
    """Cells shaped `[+-]digits` with at most 15 digits -> (int64 value, ok)."""
    d = decimals(text)
    ok = d.ok & (d.unit_start == text.end) & (d.dots == 0)
    value = np.where(d.negative, -d.mantissa, d.mantissa)
    return np.where(ok, value, 0), ok


def _two(text: Bytes, k: int) -> tuple[np.ndarray, np.ndarray]:
    a, b = text.byte(k), text.byte(k + 1)
    return (a.astype(np.int64) - 48) * 10 + (b.astype(np.int64) - 48), _digit(a) & _digit(b)


def iso_datetimes(text: Bytes):
    """ISO 8601 cells `YYYY-MM-DD[(T| )HH:MM[:SS[.f{1,6}]]][Z|±HH:MM]`.

    Returns (local µs since the epoch on the wall clock, offset µs, has_offset, ok),
    valid calendar fields only (as datetime.fromisoformat checks them).
    """
    length = text.length
    n = length.size
    hi, ok_hi = _two(text, 0)
    lo, ok_lo = _two(text, 2)
    year = hi * 100 + lo
    month, ok_m = _two(text, 5)
    day, ok_d = _two(text, 8)
    ok = text.valid & ok_hi & ok_lo & ok_m & ok_d & (text.byte(4) == 45) & (text.byte(7) == 45)
    ok &= (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1)
    ok &= day <= days_in_month(year, month)
    date_only = length == 10
    sep = text.byte(10)
    hour, ok_h = _two(text, 11)
    minute, ok_mi = _two(text, 14)
    has_time = ((sep == 84) | (sep == 32)) & ok_h & ok_mi & (text.byte(13) == 58) & (length >= 16)
    ok &= date_only | has_time
    has_seconds = has_time & (length >= 19) & (text.byte(16) == 58)
    second, ok_s = _two(text, 17)
    ok &= ~has_seconds | ok_s
    # fraction: '.' then 1..6 digits
    has_frac = has_seconds & (text.byte(19) == 46)
    frac_digits = np.zeros(n, dtype=np.int64)
    frac_value = np.zeros(n, dtype=np.int64)
    going = has_frac.copy()
    for k in range(7):
        b = text.byte(20 + k)
        d = going & _digit(b) & (20 + k < length)
        if k == 6:
            ok &= ~d  # a 7th digit: leave it to Python
            break
        frac_value = np.where(d, frac_value * 10 + (b.astype(np.int64) - 48), frac_value)
        frac_digits += d
        going &= d
    ok &= ~has_frac | (frac_digits >= 1)
    micro = frac_value * (10 ** (6 - np.minimum(frac_digits, 6)))
    pos = np.where(date_only, 10, np.where(has_frac, 20 + frac_digits, np.where(has_seconds, 19, 16)))
    tail = length - pos
    zb = text.byte(pos)
    zulu = (tail == 1) & ((zb == 90) | (zb == 122)) & ~date_only
    signed = (tail == 6) & ((zb == 43) | (zb == 45)) & ~date_only
    oh, ok_oh = _two(text, pos + 1)
    om, ok_om = _two(text, pos + 4)
    signed &= ok_oh & ok_om & (text.byte(pos + 3) == 58) & (oh <= 23) & (om <= 59)
    ok &= (tail == 0) | zulu | signed
    hour = np.where(has_time, hour, 0)
    minute = np.where(has_time, minute, 0)
    second = np.where(has_seconds, second, 0)
    ok &= (hour <= 23) & (minute <= 59) & (second <= 59)
    days = days_from_civil(np.where(ok, year, 1970), np.where(ok, month, 1), np.where(ok, day, 1))
    local = days * 86_400_000_000 + hour * 3_600_000_000 + minute * 60_000_000 + second * 1_000_000 + micro
    offset = np.where(signed, np.where(zb == 45, -1, 1) * (oh * 3600 + om * 60) * 1_000_000, 0)
    return local, offset, zulu | signed, ok


def iso_dates(text: Bytes):
    """`YYYY-MM-DD` cells -> (days since the epoch, ok)."""
    hi, ok_hi = _two(text, 0)
    lo, ok_lo = _two(text, 2)
    year = hi * 100 + lo
    month, ok_m = _two(text, 5)
    day, ok_d = _two(text, 8)
    ok = (text.valid & (text.length == 10) & ok_hi & ok_lo & ok_m & ok_d
          & (text.byte(4) == 45) & (text.byte(7) == 45))
    ok &= (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1)
    ok &= day <= days_in_month(year, month)
    days = days_from_civil(np.where(ok, year, 1970), np.where(ok, month, 1), np.where(ok, day, 1))
    return days, ok
