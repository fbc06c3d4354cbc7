"""Cross-record rules, record by record: the reference the other paths must agree with.

Semantics (docs/engine.md repeats them for readers):
- Records are taken in the canonical order (account, time, id, row).
- A record id seen before (in that order) is a duplicate (DUPLICATE_ID), whatever its
  first occurrence's status; invalid records take no part.
- Then, per account, over records that are still credited, in order:
  1. `forbid duplicate k1, k2 per account`: a record whose keys equal those of an earlier
     accepted record of the account is a duplicate with the rule's code.
  2. `forbid overlap between s and e per account`: a record whose start is before the
     latest end among the account's earlier accepted records is rejected with the
     rule's code (intervals are half-open: one ride may start when another ends).
  3. `flag more than N records ... within W`: a record is flagged when more than N
     accepted records of the account (itself included) have a time in (t - W, t].
  4. `bonus P points on the Kth record ... within W`: a record gets P bonus points when
     it is exactly the Kth accepted record of the account in (t - W, t].
  5. caps, in source order: within each calendar day/week (Monday)/month/year of the
     cap's time zone, a record credits at most what is left of the limit; one that
     credits less than it computed is capped (CAP_REACHED). A capped reduction
     recomputes points from the capped reduction with the methodology's own formula.
     Bonus points are not capped.
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Callable, Optional

from dsl.ir import ast as ir

from .records import zone
from .result import (CAP_REACHED, CAPPED, CREDITED, DUPLICATE, DUPLICATE_ID, INVALID,
                     REJECTED, Result)
from .scalar import LocalTime

RECOMPUTE = Callable[[Result, int], int]  # (record, capped reduction mg) -> points


def canonical_order(results: list[Result]) -> list[int]:
    def key(i):
        r = results[i]
        return (r.account, r.time, r.id, r.row if r.row is not None else i)
    return sorted((i for i, r in enumerate(results) if r.status != INVALID), key=key)


def period_of(local_day: int, period: str) -> int:
    if period == "day":
        return local_day
    if period == "week":
        return (local_day + 3) // 7  # 1970-01-01 was a Thursday; weeks start on Monday
    import datetime as dt
    date = dt.date.fromordinal(local_day + dt.date(1970, 1, 1).toordinal())
    return date.year * 12 + date.month - 1 if period == "month" else date.year


def apply(results: list[Result], methodology: ir.Methodology,
          recompute_points: Optional[RECOMPUTE] = None, explain: bool = False) -> None:
    """Applies every cross-record rule to ``results`` in place."""
    order = canonical_order(results)
    seen_ids: set[str] = set()
    for i in order:
        r = results[i]
        if r.id in seen_ids:
            _set(r, DUPLICATE, DUPLICATE_ID, "this record id was already evaluated", explain)
            r.reduction_mg, r.points = 0, 0
        seen_ids.add(r.id)
    if not methodology.has_cross_record_rules:
        return
    by_account: dict[str, list[int]] = defaultdict(list)
    for i in order:
        by_account[results[i].account].append(i)
    local = {cap.timezone: LocalTime(cap.timezone) for cap in methodology.caps}
    for indexes in by_account.values():
        _account(results, indexes, methodology, local, recompute_points, explain)


def _set(r: Result, status: str, code: str, message: str, explain: bool, **detail):
    r.status, r.code, r.message = status, code, message
    if explain and r.explanation is not None:
        r.explanation.append({"kind": "rule", "status": status, "code": code, "message": message, **detail})


def _account(results, indexes, m: ir.Methodology, local, recompute_points, explain):
    seen_keys = [set() for _ in m.duplicates]
    latest_end = [None for _ in m.overlaps]
    windows_flag = [deque() for _ in m.flags]
    windows_bonus = [deque() for _ in m.bonuses]
    cap_totals = [defaultdict(int) for _ in m.caps]
    for i in indexes:
        r = results[i]
        if r.status != CREDITED:
            continue
        values = r.values
        stop = False
        for rule, seen in zip(m.duplicates, seen_keys):
            key = tuple(values[k] for k in rule.keys)
            if key in seen:
                _set(r, DUPLICATE, rule.code, rule.message, explain, keys=list(rule.keys))
                r.reduction_mg, r.points = 0, 0
                stop = True
                break
        if stop:
            continue
        for index, rule in enumerate(m.overlaps):
            start, end = values[rule.start], values[rule.end]
            if latest_end[index] is not None and start < latest_end[index]:
                _set(r, REJECTED, rule.code, rule.message, explain)
                r.reduction_mg, r.points = 0, 0
                stop = True
                break
        if stop:
            continue
        # accepted: it now counts for the other rules of this account
        for seen, rule in zip(seen_keys, m.duplicates):
            seen.add(tuple(values[k] for k in rule.keys))
        for index, rule in enumerate(m.overlaps):
            end = values[rule.end]
            if latest_end[index] is None or end > latest_end[index]:
                latest_end[index] = end
        t = r.time
        flags = []
        for rule, window in zip(m.flags, windows_flag):
            window.append(t)
            while window and window[0] <= t - rule.window_seconds * 1_000_000:
                window.popleft()
            if len(window) > rule.count:
                flags.append(rule.code)
        if flags:
            r.flags = tuple(sorted(set(flags)))
        for rule, window in zip(m.bonuses, windows_bonus):
            window.append(t)
            while window and window[0] <= t - rule.window_seconds * 1_000_000:
                window.popleft()
            if len(window) == rule.ordinal:
                r.bonus += rule.points
        for cap, totals in zip(m.caps, cap_totals):
            period = period_of(local[cap.timezone].day(t), cap.period)
            used = totals[period]
            value = r.reduction_mg if cap.target == "reduction" else r.points
            allowed = max(0, min(value, cap.limit - used))
            if allowed < value:
                _set(r, CAPPED, CAP_REACHED,
                     f"{cap.target} cap of {_shown(cap)} per account per {cap.period} reached",
                     explain, period=cap.period, limit=cap.limit, before=used, allowed=allowed)
                if cap.target == "reduction":
                    r.reduction_mg = allowed
                    if recompute_points is not None:
                        r.points = recompute_points(r, allowed)
                else:
                    r.points = allowed
            totals[period] = used + (r.reduction_mg if cap.target == "reduction" else r.points)


def _shown(cap: ir.Cap) -> str:
    if cap.target == "points":
        return f"{cap.limit} points"
    grams = cap.limit / 1000
    return f"{grams / 1000:g} kg" if cap.limit % 1_000_000 == 0 else f"{grams:g} g"
