"""History windows on columns: engine/history.py's semantics, in one pass per history
over the records sorted by account and time (sorted segmented scans).

- Order: the valid records in canonical order (account, time, id, row), sorted as the
  cross-record rules sort them (rules.canonical), each account a run ("segment").
- Bounds: each record's window is a run [lo, hi) of that order: the previous/last N
  records by index arithmetic within the account's segment, the previous/last N days by
  a binary search of (segment, local day) keys.
- Aggregates: a count is hi - lo; a sum, mean, least and greatest are scanned from lo
  up, one step for every record of the longest window (the rows whose window is shorter
  drop out as they finish), so that each row adds its values in canonical order from 0
  exactly as the reference does: the results are the same bits, not merely close.

A history over a definition runs over the rows that have its value (`defined`), the
same sweep on that subsequence of the order.

With a C compiler, a sum or mean of binary64 values of an input is the whole window in
one C sweep (`tanpu_window_fused_f`: bounds, sum, mean, short and empty rules, the write
to each row), the same operations in the same order as the NumPy steps, which remain for
the other histories; it saves their dozen passes over the records (docs/engine.md).

The batch path keeps no account state between calls: a file is one stream.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import polars as pl

from dsl.ir import ast as ir
from dsl.types import Kind

from ..plan.history import EMPTY, OK, SHORT, TOO_LARGE, status_name
from .rules import AccountOrder, ordered_positions
from .timezones import zone_table

DAY_US = 86_400_000_000

# The window scans in C, where the caller can build it (BatchEngine(kernels=...)): one
# loop over each row's window, adding (or comparing) in canonical order exactly as the
# NumPy scan below does; built with the kernels' flags (no fast-math, no contraction),
# so a sum is the same bits either way.
C_SOURCE = r"""
#include <stdint.h>
#define SCAN(NAME, T, INIT, STEP) \
void NAME(int64_t n, void **a) { \
    const T *x = (const T *)a[0]; const int64_t *lo = (const int64_t *)a[1]; \
    const int64_t *count = (const int64_t *)a[2]; T *out = (T *)a[3]; \
    for (int64_t i = 0; i < n; i++) { \
        const T *w = x + lo[i]; int64_t c = count[i]; \
        if (c <= 0) { out[i] = 0; continue; } \
        T acc = INIT; \
        for (int64_t k = 0; k < c; k++) { STEP; } \
        out[i] = acc; \
    } \
}
SCAN(tanpu_window_sum_f, double, 0.0, acc = acc + w[k])
SCAN(tanpu_window_sum_i, int64_t, 0, if (__builtin_add_overflow(acc, w[k], &acc)) { acc = 0; \
     ((uint8_t *)a[4])[i] = 1; break; })
SCAN(tanpu_window_min_f, double, w[0], if (w[k] < acc) acc = w[k])
SCAN(tanpu_window_min_i, int64_t, w[0], if (w[k] < acc) acc = w[k])
SCAN(tanpu_window_max_f, double, w[0], if (w[k] > acc) acc = w[k])
SCAN(tanpu_window_max_i, int64_t, w[0], if (w[k] > acc) acc = w[k])
/* The bounds of day windows in one sweep (days never decrease within an account). */
void tanpu_window_days(int64_t n, void **a) {
    const int64_t *day = (const int64_t *)a[0]; const int64_t *seg = (const int64_t *)a[1];
    const int64_t *p = (const int64_t *)a[2]; int64_t *lo = (int64_t *)a[3];
    int64_t *hi = (int64_t *)a[4];
    int64_t back = p[0], previous = p[1], l = 0, h = 0;
    for (int64_t i = 0; i < n; i++) {
        if (seg[i] == i) { l = i; h = i; }
        int64_t start = day[i] - back;
        while (l < i && day[l] < start) l++;
        if (previous) {
            if (h < l) h = l;
            while (h < i && day[h] < day[i]) h++;
            hi[i] = h;
        } else {
            hi[i] = i + 1;
        }
        lo[i] = l;
    }
}
/* A whole window of binary64 values (sum or mean over days or records) in one sweep along
   the canonical order, written straight to the rows: the same steps, in the same order,
   as canonical_order's numbers through _one and the scatter in compute (the bounds of
   tanpu_window_days, the sum of tanpu_window_sum_f from 0 upwards, the mean as that sum
   divided by the count, then the short and empty rules), so the same bits; it saves the
   dozen passes of NumPy between them (bench/bench_history.py).
   a[0] x (double, per row), a[1] order, a[2] segment, a[3] day (int64, along the order),
   a[4] int64 p[]: size, previous, days, mean, short (0 partial, 1 reject, 2 value),
   a[5] double[1]: the declared value, a[6] value (double, per row), a[7] status (int64,
   per row), a[8] room for x along the order (double m: each value is read from its row
   once, when the sweep reaches it, and the windows behind it are read in sequence); rows
   not in the order are left as they are. */
void tanpu_window_fused_f(int64_t m, void **a) {
    const double *x = (const double *)a[0];
    const int64_t *order = (const int64_t *)a[1], *seg = (const int64_t *)a[2];
    const int64_t *day = (const int64_t *)a[3], *p = (const int64_t *)a[4];
    const double declared = ((const double *)a[5])[0];
    double *value = (double *)a[6]; int64_t *status = (int64_t *)a[7];
    double *xs = (double *)a[8];
    const int64_t size = p[0], previous = p[1], days = p[2], mean = p[3], shortness = p[4];
    int64_t s = 0, l = 0, h = 0;
    for (int64_t i = 0; i < m; i++) {
        if (i == 0 || seg[i] != seg[i - 1]) { s = i; l = i; h = i; }
        if (i + 24 < m) {  /* the rows a few steps on: their reads and writes are at random */
            int64_t r = order[i + 24];
            __builtin_prefetch(x + r, 0); __builtin_prefetch(value + r, 1);
            __builtin_prefetch(status + r, 1);
        }
        xs[i] = x[order[i]];
        int64_t lo, hi, short_;
        if (days) {
            int64_t start = day[i] - (previous ? size : size - 1);
            while (l < i && day[l] < start) l++;
            if (previous) {
                if (h < l) h = l;
                while (h < i && day[h] < day[i]) h++;
                hi = h;
            } else {
                hi = i + 1;
            }
            lo = l;
            short_ = day[s] > start;
        } else {
            lo = previous ? i - size : i - size + 1;
            if (lo < s) lo = s;
            hi = previous ? i : i + 1;
            short_ = hi - lo < size;
        }
        int64_t count = hi - lo, st = 0;
        double acc = 0.0;
        if (count > 0) {
            for (int64_t k = lo; k < hi; k++) acc = acc + xs[k];
        } else {
            acc = 0;
        }
        if (mean) acc = acc / (double)(count > 1 ? count : 1);
        if (short_ && shortness == 1) { st = 1; acc = 0.0; }
        else if (short_ && shortness == 2) { acc = declared; }
        if (mean && count == 0 && st == 0 && !(short_ && shortness == 2)) {
            if (shortness == 2) acc = declared; else { st = 2; acc = 0.0; }
        }
        value[order[i]] = acc;
        status[order[i]] = st;
    }
}
"""


def _scanner(build):
    """name -> the C scan, or None without a compiler."""
    if build is None:
        return None
    library = build(C_SOURCE)
    if library is None:
        return None
    from .kernel import entry
    return lambda name: entry(library, name)


def canonical_order(accounts: pl.Series, ids: pl.Series, time: np.ndarray, rows: np.ndarray,
                    valid: np.ndarray, build=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions of the valid records in canonical order, their account code and time
    along it): the cross-record rules' own order (rules.ordered_positions), so that both
    mean the same; with `build`, its C pass (rules.AccountOrder)."""
    positions = np.flatnonzero(valid)
    if positions.size == 0:
        return positions, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    batch = SimpleNamespace(time=time, ids=ids, rows=rows, accounts=accounts)
    order, code, t = ordered_positions(batch, positions, AccountOrder.of(build))
    return order, np.asarray(code, dtype=np.int64), t


def subject_key(name: str) -> str:
    """The column of a definition's values that a history aggregates (engine/history.py's)."""
    from ..history import subject_key as key
    return key(name)


def compute(histories: tuple[ir.History, ...], columns: dict, accounts: pl.Series,
            ids: pl.Series, time: np.ndarray, rows: np.ndarray, invalid: np.ndarray, n: int,
            build=None, defined: np.ndarray = None):
    """Adds each history's value and status column to `columns` (invalid rows: 0, OK);
    returns the canonical order it sorted the valid records in (positions, account code
    and time along it; None when there is none), which the counters then reuse
    (Part.ordered).

    `defined`: the rows that have a value of the definitions histories aggregate (their
    `subject_key` columns); a history over a definition runs over those rows only, in the
    same canonical order, each account's first day being that of all its records (the
    other rows: 0, OK; the formulas reject them before their windows matter)."""
    if not histories:
        return None
    order, segment, t = canonical_order(accounts, ids, np.asarray(time, dtype=np.int64), rows, ~invalid,
                                        build)
    m = order.size
    if m == 0:  # nothing read: every row is invalid, the columns are never looked at
        for h in histories:
            columns[h.name] = np.zeros(n, dtype=np.int64 if h.type.kind == Kind.INTEGER else np.float64)
            columns[status_name(h)] = np.zeros(n, dtype=np.int64)
        return None
    offsets = zone_table(histories[0].timezone).utc_offsets(t)
    day = np.floor_divide(t + offsets, DAY_US)
    scan = _scanner(build)
    fused = [scan is not None and _fused(h, columns, defined) for h in histories]
    if not all(fused):  # what the NumPy steps of the others share
        index = np.arange(m, dtype=np.int64)
        starts = np.flatnonzero(np.r_[True, segment[1:] != segment[:-1]])
        seg_start = starts[segment]
        first_day = day[seg_start]
    day_key = None
    subset = None
    for h, whole_in_c in zip(histories, fused):
        if whole_in_c:  # the whole window in one C sweep
            _one_fused(h, np.ascontiguousarray(columns[h.subject]), order, segment, day, n, columns, scan)
            continue
        low = int(day.min()) - 4000  # every day of a window start is above it
        key = subject_key(h.subject)
        if defined is not None and key in columns:  # over a definition: its rows only
            if subset is None:
                keep = np.asarray(defined)[order]
                sub_segment = segment[keep]
                sub_index = np.arange(sub_segment.size, dtype=np.int64)
                sub_starts = np.flatnonzero(np.r_[True, sub_segment[1:] != sub_segment[:-1]]) \
                    if sub_segment.size else np.zeros(0, dtype=np.int64)
                sub_rank = np.cumsum(np.r_[True, sub_segment[1:] != sub_segment[:-1]]) - 1 \
                    if sub_segment.size else np.zeros(0, dtype=np.int64)
                sub_day = day[keep]
                subset = (keep, sub_segment, sub_index, sub_starts[sub_rank], sub_day, first_day[keep],
                          (sub_segment << 32) | (sub_day - low) if scan is None else None)
            keep, sub_segment, sub_index, sub_seg_start, sub_day, sub_first, sub_key = subset
            x = np.asarray(columns[key])[order][keep]
            if x.size:
                got, got_status = _one(h, x, sub_day, sub_first, sub_seg_start, sub_index,
                                       sub_segment, sub_key, low, scan)
            else:
                got, got_status = x, np.zeros(0, dtype=np.int64)
            integer = h.type.kind == Kind.INTEGER
            value = np.zeros(m, dtype=np.int64 if integer else np.float64)
            status = np.zeros(m, dtype=np.int64)
            value[keep] = got
            status[keep] = got_status
        else:
            if h.unit == "days" and day_key is None and scan is None:
                day_key = (segment << 32) | (day - low)
            x = np.asarray(columns[h.subject])[order]
            value, status = _one(h, x, day, first_day, seg_start, index, segment, day_key, low, scan)
        integer = h.type.kind == Kind.INTEGER
        out_value = np.zeros(n, dtype=np.int64 if integer else np.float64)
        out_status = np.zeros(n, dtype=np.int64)
        out_value[order] = value
        flagged = np.flatnonzero(status)  # most are OK (0): scatter the others only
        out_status[order[flagged]] = status[flagged]
        columns[h.name] = out_value
        columns[status_name(h)] = out_status
    return order, segment, t


def _fused(h: ir.History, columns: dict, defined) -> bool:
    """Whether tanpu_window_fused_f computes `h`: a sum or mean of binary64 values of an
    input (not of a definition's rows only), its short history rejected, used as it is
    or replaced by a plain number."""
    if defined is not None and subject_key(h.subject) in columns:
        return False
    x = columns.get(h.subject)
    return (h.aggregate in ("sum", "mean") and h.type.kind != Kind.INTEGER
            and isinstance(x, np.ndarray) and x.dtype == np.float64
            and h.short in ("reject", "partial", "value")
            and (h.short != "value" or isinstance(h.value, (int, float))))


def _one_fused(h: ir.History, x: np.ndarray, order, segment, day, n: int, columns: dict, scan) -> None:
    import ctypes
    m = order.size
    value = np.zeros(n, dtype=np.float64)
    status = np.zeros(n, dtype=np.int64)
    terms = np.array([h.size, h.side == "previous", h.unit == "days", h.aggregate == "mean",
                      {"partial": 0, "reject": 1, "value": 2}[h.short]], dtype=np.int64)
    declared = np.array([float(h.value) if h.short == "value" else 0.0], dtype=np.float64)
    assert (SHORT, EMPTY) == (1, 2)  # the codes the C sweep writes
    order, segment, day = (np.ascontiguousarray(a, dtype=np.int64) for a in (order, segment, day))
    room = np.empty(m, dtype=np.float64)
    scan("tanpu_window_fused_f")(m, (ctypes.c_void_p * 9)(
        x.ctypes.data, order.ctypes.data, segment.ctypes.data, day.ctypes.data, terms.ctypes.data,
        declared.ctypes.data, value.ctypes.data, status.ctypes.data, room.ctypes.data))
    columns[h.name] = value
    columns[status_name(h)] = status


def _one(h: ir.History, x, day, first_day, seg_start, index, segment, day_key, low, scan=None):
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
        if scan is not None:  # one sweep in C
            import ctypes
            lo, hi = np.empty(m, dtype=np.int64), np.empty(m, dtype=np.int64)
            terms = np.array([n if h.side == "previous" else n - 1, h.side == "previous"], dtype=np.int64)
            days, starts = np.ascontiguousarray(day), np.ascontiguousarray(seg_start)
            scan("tanpu_window_days")(m, (ctypes.c_void_p * 5)(
                days.ctypes.data, starts.ctypes.data, terms.ctypes.data, lo.ctypes.data, hi.ctypes.data))
        else:
            lo = np.searchsorted(day_key, (segment << 32) | (start - low), side="left")
            if h.side == "previous":
                hi = np.searchsorted(day_key, (segment << 32) | (day - low), side="left")
            else:
                hi = index + 1
        count = hi - lo
        short = first_day > start
    integer = h.type.kind == Kind.INTEGER or (h.aggregate == "mean" and x.dtype.kind in "iu")
    too_large = np.zeros(m, dtype=np.uint8)
    value = _aggregate(h.aggregate, x, lo, count, m, integer, scan, too_large)
    status = np.zeros(m, dtype=np.int64)
    if too_large.any():
        status[too_large.view(bool)] = TOO_LARGE
    if h.short == "reject":
        status[short] = SHORT
        value = np.where(short, 0, value).astype(value.dtype, copy=False)
    elif h.short == "value":
        value = np.where(short, h.value, value).astype(value.dtype, copy=False)
        status[short] = OK  # the declared value, whatever the window would have summed
    if h.aggregate in ("mean", "min", "max"):
        empty = (count == 0) & (status == OK) & ~(short & (h.short == "value"))
        if h.short == "value":
            value = np.where(empty, h.value, value).astype(value.dtype, copy=False)
        else:
            status[empty] = EMPTY
            value = np.where(empty, 0, value).astype(value.dtype, copy=False)
    return value, status


def _aggregate(kind: str, x: np.ndarray, lo: np.ndarray, count: np.ndarray, m: int,
               integer: bool, scan=None, too_large=None) -> np.ndarray:
    if kind == "count":
        return count.astype(np.int64)
    if scan is not None:
        import ctypes
        dtype = np.int64 if (integer or x.dtype.kind in "iu") else np.float64
        xs = np.ascontiguousarray(x, dtype=dtype)
        los = np.ascontiguousarray(lo, dtype=np.int64)
        counts = np.ascontiguousarray(count, dtype=np.int64)
        out = np.zeros(m, dtype=dtype)
        name = {"sum": "sum", "mean": "sum", "min": "min", "max": "max"}[kind]
        function = scan(f"tanpu_window_{name}_{'i' if dtype == np.int64 else 'f'}")
        pointers = (ctypes.c_void_p * 5)(xs.ctypes.data, los.ctypes.data, counts.ctypes.data,
                                         out.ctypes.data, too_large.ctypes.data)
        function(m, pointers)
        if kind != "mean":
            return out
        with np.errstate(invalid="ignore", divide="ignore"):
            return out.astype(np.float64, copy=False) / np.maximum(count, 1)
    if kind in ("sum", "mean"):
        acc = np.zeros(m, dtype=np.int64 if integer else np.float64)
        x = x.astype(acc.dtype, copy=False)
        active = np.flatnonzero(count > 0)
        k = 0
        while active.size:
            before, v = acc[active], x[lo[active] + k]
            after = before + v
            if integer:  # a sum beyond int64: TOO_LARGE, where the scalar path's stops
                over = ((before >= 0) == (v >= 0)) & ((after >= 0) != (before >= 0))
                if over.any():
                    too_large[active[over]] = 1
                    after[over] = 0
                    count = count.copy()
                    count[active[over]] = k + 1  # no further step
            acc[active] = after
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


def compute_with_state(histories: tuple[ir.History, ...], columns: dict, accounts: pl.Series,
                       ids: pl.Series, time: np.ndarray, rows: np.ndarray, invalid: np.ndarray,
                       n: int, state: dict, rules, build=None, defined: np.ndarray = None) -> None:
    """`compute`, each account's windows starting from what `state` (account ->
    engine.state.AccountState) remembers of it, and `state` left updated, as
    engine/history.py's `apply` does: the entries the state keeps go into the sorted
    pass beside the records (ordered with them by account, time, id and row, a state's
    entry before a record of the same time and id), each account's first day is the
    earliest of the state's and its records', and the state then keeps what a later
    record's window can still hold (the last N records, or the records of the last N
    days before the latest). Made for requests and files of a stream in time order
    (the ledger, a file a day); the windows' numbers are the same scans as `compute`'s."""
    from ..state import AccountState
    from ..history import Window
    time = np.asarray(time, dtype=np.int64)
    valid = np.flatnonzero(~invalid)
    names = accounts.gather(valid).to_list()
    code_of: dict[str, int] = {}
    codes = np.fromiter((code_of.setdefault(a, len(code_of)) for a in names), dtype=np.int64,
                        count=len(names))
    code_at = np.full(n, -1, dtype=np.int64)
    code_at[valid] = codes
    local_day = np.floor_divide(time + zone_table(histories[0].timezone).utc_offsets(time), DAY_US)
    # each account's first day among its records here (those without a subject's value too)
    first_here = np.full(len(code_of), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first_here, codes, local_day[valid])
    id_text = ids.to_list()
    scan = _scanner(build)
    accounts_here = list(code_of)
    for account in accounts_here:
        if account not in state:
            state[account] = AccountState.empty(rules)
    for j, h in enumerate(histories):
        key = subject_key(h.subject)
        over_definition = defined is not None and key in columns
        mine = valid[np.asarray(defined)[valid]] if over_definition else valid
        x_here = np.asarray(columns[key if over_definition else h.subject])[mine]
        dtype = np.int64 if x_here.dtype.kind in "iu" else np.float64  # the subject's values
        prior = [(code_of[a], e) for a in accounts_here for e in state[a].windows[j].entries]
        k = len(prior)
        all_code = np.r_[np.fromiter((c for c, _ in prior), dtype=np.int64, count=k), code_at[mine]]
        all_time = np.r_[np.fromiter((e[0] for _, e in prior), dtype=np.int64, count=k), time[mine]]
        all_day = np.r_[np.fromiter((e[2] for _, e in prior), dtype=np.int64, count=k), local_day[mine]]
        all_x = np.r_[np.asarray([e[3] for _, e in prior], dtype=dtype), x_here.astype(dtype, copy=False)]
        all_id = [str(e[1]) for _, e in prior] + [id_text[i] for i in mine.tolist()]
        all_row = np.r_[np.full(k, -1, dtype=np.int64), np.asarray(rows, dtype=np.int64)[mine]]
        id_rank = pl.Series(all_id, dtype=pl.String).rank("dense").cast(pl.Int64).to_numpy() \
            if all_id else np.zeros(0, dtype=np.int64)
        order = np.lexsort((all_row, id_rank, all_time, all_code))
        segment, day, x = all_code[order], all_day[order], all_x[order]
        m = order.size
        value = np.zeros(n, dtype=np.int64 if h.type.kind == Kind.INTEGER else np.float64)
        status = np.zeros(n, dtype=np.int64)
        if m:
            firsts = np.array([min(first_here[c], state[a].windows[j].first
                                   if state[a].windows[j].first is not None else first_here[c])
                               for a, c in code_of.items()], dtype=np.int64)
            new = np.r_[True, segment[1:] != segment[:-1]]
            starts = np.flatnonzero(new)
            seg_start = starts[np.cumsum(new) - 1]
            index = np.arange(m, dtype=np.int64)
            low = int(day.min()) - 4000
            day_key = (segment << 32) | (day - low) if scan is None else None
            got, got_status = _one(h, x, day, firsts[segment], seg_start, index, segment, day_key,
                                   low, scan)
            here = order >= k  # the records of this call (not the state's entries)
            value[mine[order[here] - k]] = got[here]
            status[mine[order[here] - k]] = got_status[here]
            # what each account's window keeps for the next call
            ends = np.r_[starts[1:], m]
            for s, e in zip(starts.tolist(), ends.tolist()):
                if h.unit == "records":
                    s = max(s, e - h.size)
                else:
                    s += int(np.searchsorted(day[s:e], day[e - 1] - h.size, side="left"))
                account = accounts_here[int(segment[e - 1])]
                picked = order[s:e]
                state[account].windows[j] = Window(int(firsts[segment[e - 1]]), [
                    (int(all_time[i]), all_id[i], int(all_day[i]), all_x[i].item()) for i in picked.tolist()])
        for account, c in code_of.items():  # accounts whose records have no value here
            w = state[account].windows[j]
            w.first = int(first_here[c]) if w.first is None else min(w.first, int(first_here[c]))
        columns[h.name] = value
        columns[status_name(h)] = status
