"""Cross-record rules, record by record: the reference the other paths must agree with.

Semantics (docs/engine.md repeats them for readers):
- Records are taken in the canonical order (account, time, id, row).
- Near-duplicate rules (one event through several channels) come first, as
  engine/channels.py says, on the records still credited after DUPLICATE_ID.
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
     credits less than it computed is capped (CAP_REACHED); a negative amount stays as
     it is and counts as nothing towards the cap (it never makes room). A capped reduction
     recomputes points from the capped reduction with the methodology's own formula.
     Bonus points are not capped.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections import defaultdict, deque
from typing import Callable, Optional

from dsl.ir import ast as ir

from . import counters
from . import channels
from .plan.ast import CrossRecord
from .result import (CAP_REACHED, CAPPED, CREDITED, DUPLICATE, DUPLICATE_ID, INVALID,
                     REJECTED, Result)
from .scalar import LocalTime
from .state import AccountState

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


def apply(results: list[Result], methodology: CrossRecord,
          recompute_points: Optional[RECOMPUTE] = None, explain: bool = False,
          state: Optional[dict[str, AccountState]] = None) -> None:
    """The rules below, then the counters and rewards (engine/counters.py)."""
    if isinstance(methodology, ir.Methodology):  # the IR itself: its rules as the plan has them
        from .plan.from_ir import cross_record
        methodology = cross_record(methodology)
    _rules(results, methodology, recompute_points, explain, state)
    if methodology.counters or methodology.rewards:
        counters.apply(results, methodology, explain, state, _accounts(results))


def _rules(results: list[Result], methodology: CrossRecord,
           recompute_points: Optional[RECOMPUTE] = None, explain: bool = False,
           state: Optional[dict[str, AccountState]] = None) -> None:
    """Applies every cross-record rule of a plan (`plan.rules`) to ``results`` in place.

    With `state` (account -> AccountState, engine/state.py), each account's records are
    judged after what the state remembers of its earlier ones, and the state of every
    account with a record here is left updated: evaluating a stream in pieces, the state
    carried from one to the next, gives the results of evaluating it whole."""
    _mark_repeated_ids(results, explain)
    if not methodology.has_record_rules:
        return
    if methodology.near_duplicates:  # before every other rule (engine/channels.py)
        _near_duplicates(results, methodology, explain, state)
    local = {cap.timezone: LocalTime(cap.timezone) for cap in methodology.caps}
    # duplicate and overlap rules compare a record with the account's earlier ones: alone
    # in its account, a record has nothing to compare with (many accounts of a day's file)
    pairwise_only = not (methodology.flags or methodology.bonuses or methodology.caps)
    overlaps_only = pairwise_only and not methodology.duplicates
    # an overlap rule looks at credited records only: the others need no grouping
    for account, indexes in _accounts(results, CREDITED if overlaps_only else None).items():
        if state is not None:
            prior = state.get(account)
            if prior is None:
                prior = state[account] = AccountState.empty(methodology)
            _account(results, indexes, methodology, local, recompute_points, explain, prior)
            prior.prune(methodology)
            continue
        if pairwise_only and len(indexes) == 1:
            continue
        if overlaps_only:
            _overlaps(results, indexes, methodology.overlaps, explain)
        else:
            _account(results, indexes, methodology, local, recompute_points, explain)


def accounts_of(results: list[Result]) -> dict[str, list[int]]:
    """Each account's records (invalid ones aside) in the canonical order."""
    return _accounts(results)


def _near_duplicates(results: list[Result], m: CrossRecord, explain: bool,
                     state: Optional[dict[str, AccountState]]) -> None:
    for account, indexes in _accounts(results, CREDITED).items():
        events = None
        if state is not None:
            prior = state.get(account)
            if prior is None:
                prior = state[account] = AccountState.empty(m)
            events = prior.near
        found = channels.judge(m.near_duplicates, [(i, results[i].id, results[i].values) for i in indexes],
                               events)
        for i, rule_index, event in found:
            rule = m.near_duplicates[rule_index]
            decide(results[i], DUPLICATE, rule.code, channels.message(rule, event), explain, of=event)
            results[i].reduction_mg, results[i].points = 0, 0


def _mark_repeated_ids(results: list[Result], explain: bool) -> None:
    """A record id seen before in the canonical order is a duplicate. Ids are usually all
    different, which one set tells without sorting anything."""
    ids = [r.id for r in results if r.status != INVALID]
    if len(set(ids)) == len(ids):
        return
    seen_ids: set[str] = set()
    for i in canonical_order(results):
        r = results[i]
        if r.id in seen_ids:
            decide(r, DUPLICATE, DUPLICATE_ID, "this record id was already evaluated", explain)
            r.reduction_mg, r.points = 0, 0
        seen_ids.add(r.id)


def _accounts(results: list[Result], only: Optional[str] = None) -> dict[str, list[int]]:
    """Each account's records (invalid ones aside; with `only`, those of that status) in
    the canonical order.

    The rules of one account never look at another's records, so sorting each account
    on its own gives the canonical order where it matters, for less than one sort of
    all the records."""
    by_account: dict[str, list[int]] = defaultdict(list)
    if only is None:
        for i, r in enumerate(results):
            if r.status != INVALID:
                by_account[r.account].append(i)
    else:
        for i, r in enumerate(results):
            if r.status == only:
                by_account[r.account].append(i)
    times = None
    for indexes in by_account.values():
        if len(indexes) > 1:
            if times is None:
                times = [r.time for r in results]
            _sort_account(indexes, results, times)
    return by_account


def _sort_account(indexes: list[int], results: list[Result], times: list) -> None:
    """Sorts one account's indexes (ascending) by (time, id, row): by time alone first,
    which needs no Python key function; only when two records share a time is the
    whole key needed. Both sorts are stable, as canonical_order's is."""
    indexes.sort(key=times.__getitem__)
    if len(set(map(times.__getitem__, indexes))) < len(indexes):
        def key(i):
            r = results[i]
            return (r.time, r.id, r.row if r.row is not None else i)
        indexes.sort(key=key)


def decide(r: Result, status: str, code: str, message: str, explain: bool, **detail):
    """A cross-record rule's decision on a result (with its explanation when asked for);
    every path (this reference, the rules client) decides the same way."""
    r.status, r.code, r.message = status, code, message
    if explain and r.explanation is not None:
        r.explanation.append({"kind": "rule", "status": status, "code": code, "message": message, **detail})


def _overlaps(results, indexes, rules, explain):
    """_account for a methodology whose only cross-record rules are overlap rules (the
    transit ones): the same decisions, without the per-account state of the other rules,
    which cost more than the check itself on accounts of a few rides."""
    latest_end = [None] * len(rules)
    for i in indexes:
        r = results[i]
        if r.status != CREDITED:
            continue
        values = r.values
        for index, rule in enumerate(rules):
            latest = latest_end[index]
            if latest is not None and values[rule.start] < latest:
                decide(r, REJECTED, rule.code, rule.message, explain)
                r.reduction_mg, r.points = 0, 0
                break
        else:  # accepted: its end now counts for the account's later records
            for index, rule in enumerate(rules):
                end, latest = values[rule.end], latest_end[index]
                if latest is None or end > latest:
                    latest_end[index] = end


def _account(results, indexes, m: CrossRecord, local, recompute_points, explain,
             state: Optional[AccountState] = None):
    """One account's records in canonical order; with `state`, after what it remembers
    of the account's earlier records, and updating it."""
    # a methodology has few kinds of rules: the others' loops are skipped, not run empty
    duplicates, overlaps, flag_rules, bonuses, caps = m.duplicates, m.overlaps, m.flags, m.bonuses, m.caps
    # the accepted intervals are kept only for a state that outlives this call: a later
    # call may bring a record that arrives late (within one call, records are in order)
    history = state is not None
    if state is None:
        state = AccountState.empty(m)
    windows_flag = [deque(times) for times in state.flag_times]
    windows_bonus = [deque(times) for times in state.bonus_times]
    try:
        _judge(results, indexes, duplicates, overlaps, flag_rules, bonuses, caps, state.keys,
               state.ends, state.intervals if history else None, windows_flag, windows_bonus,
               state.caps, local, recompute_points, explain)
    finally:
        state.flag_times = [list(w) for w in windows_flag]
        state.bonus_times = [list(w) for w in windows_bonus]


def _in_window(window: deque, t: int, seconds: int) -> int:
    """Adds an accepted record's time to a window (kept in time order) and gives how many
    of its times are in (t - W, t]; times no later record in order can count go."""
    width = seconds * 1_000_000
    if not window or t >= window[-1]:  # in order: the usual case
        window.append(t)
        while window[0] <= t - width:
            window.popleft()
        return len(window)
    window.insert(bisect_right(window, t), t)  # a record arriving after later ones
    while window[0] <= window[-1] - width:
        window.popleft()
    return bisect_right(window, t) - bisect_right(window, t - width)


def _overlaps_late(intervals: list, t: int, start, end) -> bool:
    """Whether a record of time `t`, arriving after accepted records of later times,
    overlaps one: it starts before the latest end of those of its time or earlier, or
    ends after the start of one of a later time (credits are final: the later one,
    accepted first, stands)."""
    before = [e for (tt, _, e) in intervals if tt <= t]
    if before and start < max(before):
        return True
    return any(s < end for (tt, s, _) in intervals if tt > t)


def _judge(results, indexes, duplicates, overlaps, flag_rules, bonuses, caps, seen_keys,
           latest_end, intervals, windows_flag, windows_bonus, cap_totals, local,
           recompute_points, explain):
    for i in indexes:
        r = results[i]
        if r.status != CREDITED:
            continue
        values = r.values
        stop = False
        if duplicates:
            for rule, seen in zip(duplicates, seen_keys):
                key = tuple(values[k] for k in rule.keys)
                if key in seen:
                    decide(r, DUPLICATE, rule.code, rule.message, explain, keys=list(rule.keys))
                    r.reduction_mg, r.points = 0, 0
                    stop = True
                    break
            if stop:
                continue
        t = r.time
        if overlaps:
            for index, rule in enumerate(overlaps):
                latest = latest_end[index]
                kept = intervals[index] if intervals is not None else None
                if kept and t < kept[-1][0]:  # a record arriving after later ones
                    overlapping = _overlaps_late(kept, t, values[rule.start], values[rule.end])
                else:
                    overlapping = latest is not None and values[rule.start] < latest
                if overlapping:
                    decide(r, REJECTED, rule.code, rule.message, explain)
                    r.reduction_mg, r.points = 0, 0
                    stop = True
                    break
            if stop:
                continue
        # accepted: it now counts for the other rules of this account
        if duplicates:
            for seen, rule in zip(seen_keys, duplicates):
                seen.add(tuple(values[k] for k in rule.keys))
        if overlaps:
            for index, rule in enumerate(overlaps):
                end, latest = values[rule.end], latest_end[index]
                if latest is None or end > latest:
                    latest_end[index] = end
                if intervals is not None:
                    insort(intervals[index], (t, values[rule.start], end))
        if flag_rules:
            flags = []
            for rule, window in zip(flag_rules, windows_flag):
                if _in_window(window, t, rule.window_seconds) > rule.count:
                    flags.append(rule.code)
            if flags:
                r.flags = tuple(sorted(set(flags)))
        if bonuses:
            for rule, window in zip(bonuses, windows_bonus):
                if _in_window(window, t, rule.window_seconds) == rule.ordinal:
                    r.bonus += rule.points
        if not caps:
            continue
        for cap, totals in zip(caps, cap_totals):
            period = period_of(local[cap.timezone].day(t), cap.period)
            used = totals.get(period, 0)
            value = r.reduction_mg if cap.target == "reduction" else r.points
            allowed = max(0, min(value, cap.limit - used))
            if allowed < value:
                decide(r, CAPPED, CAP_REACHED, cap_reached(cap),
                     explain, period=cap.period, limit=cap.limit, before=used, allowed=allowed)
                if cap.target == "reduction":
                    r.reduction_mg = allowed
                    if recompute_points is not None:
                        r.points = recompute_points(r, allowed)
                else:
                    r.points = allowed
            # a negative amount (a debit) counts as nothing: it never makes room under a cap
            totals[period] = used + max(0, r.reduction_mg if cap.target == "reduction" else r.points)


def cap_reached(cap: ir.Cap) -> str:
    """The message of a result the cap cut, the same on every path."""
    return f"{cap.target} cap of {_limit(cap)} per account per {cap.period} reached"


def _limit(cap: ir.Cap) -> str:
    if cap.target == "points":
        return f"{cap.limit} points"
    grams = cap.limit / 1000
    return f"{grams / 1000:g} kg" if cap.limit % 1_000_000 == 0 else f"{grams:g} g"
