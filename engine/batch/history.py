"""History windows on columns: engine/history.py's semantics, in one pass per history
over the records sorted by account and time (sorted segmented scans).

- Order: the valid records sorted by (account, time), ties by (id, row) as the
  canonical order; the accounts as the codes of a categorical (any grouping will do:
  only the order within an account matters).
- Bounds: each record's window is a run [lo, hi) of that order: the previous/last N
  records by index arithmetic within the account's segment, the previous/last N days by
  a binary search of (segment, local day) keys.
- Aggregates: a count is hi - lo; a sum, mean, least and greatest are scanned from lo
  up, one step for every record of the longest window (the rows whose window is shorter
  drop out as they finish), so that each row adds its values in canonical order from 0
  exactly as the reference does: the results are the same bits, not merely close.

The batch path keeps no account state between calls: a file is one stream.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from dsl.ir import ast as ir
from dsl.types import Kind

from ..plan.history import EMPTY, OK, SHORT, status_name
from .timezones import zone_table

DAY_US = 86_400_000_000


def canonical_order(accounts: pl.Series, ids: pl.Series, time: np.ndarray,
                    valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the valid records in canonical order, their account segment ids)."""
    positions = np.flatnonzero(valid)
    if positions.size == 0:
        return positions, np.zeros(0, dtype=np.int64)
    codes = accounts.gather(positions).cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)
    t = time[positions]
    t0, t1 = int(t.min()), int(t.max())
    span = t1 - t0 + 1
    ncodes = int(codes.max()) + 1
    if ncodes * span < 2 ** 63:  # one integer key: a single sort
        key = codes * span + (t - t0)
        order = pl.Series(key).arg_sort().to_numpy()
        ordered = key[order]
        ties = ordered.size > 1 and bool((ordered[1:] == ordered[:-1]).any())
    else:
        ties = True
    if ties:  # equal times in an account (or a span too wide): the whole key
        frame = pl.DataFrame({"a": codes, "t": t, "id": ids.gather(positions),
                              "p": np.arange(positions.size)})
        order = frame.sort(["a", "t", "id", "p"]).get_column("p").to_numpy()
    sorted_codes = codes[order]
    change = np.empty(sorted_codes.size, dtype=bool)
    change[0] = True
    np.not_equal(sorted_codes[1:], sorted_codes[:-1], out=change[1:])
    segment = np.cumsum(change) - 1
    return positions[order], segment


def compute(histories: tuple[ir.History, ...], columns: dict, accounts: pl.Series,
            ids: pl.Series, time: np.ndarray, invalid: np.ndarray, n: int) -> None:
    """Adds each history's value and status column to `columns` (invalid rows: 0, OK)."""
    if not histories:
        return
    order, segment = canonical_order(accounts, ids, np.asarray(time, dtype=np.int64), ~invalid)
    m = order.size
    if m == 0:  # nothing read: every row is invalid, the columns are never looked at
        for h in histories:
            columns[h.name] = np.zeros(n, dtype=np.int64 if h.type.kind == Kind.INTEGER else np.float64)
            columns[status_name(h)] = np.zeros(n, dtype=np.int64)
        return
    t = np.asarray(time, dtype=np.int64)[order]
    offsets = zone_table(histories[0].timezone).utc_offsets(t)
    day = np.floor_divide(t + offsets, DAY_US)
    index = np.arange(m, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, segment[1:] != segment[:-1]])
    seg_start = starts[segment]
    first_day = day[seg_start]
    day_key = None
    for h in histories:
        low = int(day.min()) - 4000  # every day of a window start is above it
        if h.unit == "days" and day_key is None:
            day_key = (segment << 32) | (day - low)
        x = np.asarray(columns[h.subject])[order]
        value, status = _one(h, x, day, first_day, seg_start, index, segment, day_key, low)
        integer = h.type.kind == Kind.INTEGER
        out_value = np.zeros(n, dtype=np.int64 if integer else np.float64)
        out_status = np.zeros(n, dtype=np.int64)
        out_value[order] = value
        out_status[order] = status
        columns[h.name] = out_value
        columns[status_name(h)] = out_status


def _one(h: ir.History, x, day, first_day, seg_start, index, segment, day_key, low):
    n = h.size
    m = index.size
    if h.unit == "records":
        if h.side == "previous":
            lo, hi = np.maximum(seg_start, index - n), index
        else:
            lo, hi = np.maximum(seg_start, index - n + 1), index + 1
        count = hi - lo
        short = count < n
    else:
        start = day - n if h.side == "previous" else day - n + 1
        lo = np.searchsorted(day_key, (segment << 32) | (start - low), side="left")
        if h.side == "previous":
            hi = np.searchsorted(day_key, (segment << 32) | (day - low), side="left")
        else:
            hi = index + 1
        count = hi - lo
        short = first_day > start
    integer = h.type.kind == Kind.INTEGER or (h.aggregate == "mean" and x.dtype.kind in "iu")
    value = _aggregate(h.aggregate, x, lo, count, m, integer)
    status = np.zeros(m, dtype=np.int64)
    if h.short == "reject":
        status[short] = SHORT
        value = np.where(short, 0, value).astype(value.dtype)
    elif h.short == "value":
        value = np.where(short, h.value, value).astype(value.dtype)
    if h.aggregate in ("mean", "min", "max"):
        empty = (count == 0) & (status == OK) & ~(short & (h.short == "value"))
        if h.short == "value":
            value = np.where(empty, h.value, value).astype(value.dtype)
        else:
            status[empty] = EMPTY
            value = np.where(empty, 0, value).astype(value.dtype)
    return value, status


def _aggregate(kind: str, x: np.ndarray, lo: np.ndarray, count: np.ndarray, m: int,
               integer: bool) -> np.ndarray:
    if kind == "count":
        return count.astype(np.int64)
    if kind in ("sum", "mean"):
        acc = np.zeros(m, dtype=np.int64 if integer else np.float64)
        x = x.astype(acc.dtype, copy=False)
        active = np.flatnonzero(count > 0)
        k = 0
        while active.size:
            acc[active] += x[lo[active] + k]
            k += 1
            active = active[count[active] > k]
        if kind == "sum":
            return acc
        with np.errstate(invalid="ignore", divide="ignore"):
            return acc.astype(np.float64) / np.maximum(count, 1)
    acc = np.zeros(m, dtype=x.dtype)
    active = np.flatnonzero(count > 0)
    acc[active] = x[lo[active]]
    k = 1
    active = active[count[active] > k]
    while active.size:
        candidate = x[lo[active] + k]
        current = acc[active]
        better = candidate < current if kind == "min" else candidate > current
        acc[active] = np.where(better, candidate, current)
        k += 1
        active = active[count[active] > k]
    return acc
