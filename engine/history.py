"""History windows, record by record: the reference the batch path must agree with
(engine/batch/history.py computes the same on columns).

Semantics (docs/language.md §9.6 says them for readers):
- A history belongs to the account: the records that count are the account's earlier
  records of this methodology in the canonical order (account, time, id, row), every
  record that was read whatever its outcome (a reading is history even when it earned
  nothing, and so the window of one record never depends on the verdict of another).
- Days are local calendar days in the methodology's time zone. The window of a record
  of day d is
    previous N days     the records of days d-N .. d-1 (the record's own day excluded);
    last N days         the records of days d-N+1 .. d up to the record itself;
    previous N records  the N records before it;
    last N records      the record itself and the N-1 before it.
- The subject is an input, or a definition that uses no window: then a record's value is
  its formula's on the record's own inputs (engine/plan/history.py's subject_plan), and a
  record whose formula rejects has no value and is in no window (it still counts as the
  account's first record for a short history).
- The history is short when the account's first record is on a later day than the
  window's first day (day windows), or when the window holds fewer than N records.
  Then `otherwise reject CODE` rejects the record, `otherwise VALUE` gives VALUE, and
  `otherwise partial` aggregates what there is.
- A mean, least or greatest of a window that holds no record (a gap in a long history,
  or a short one under `partial`) gives the declared value if there is one, and else
  rejects the record with NO_HISTORY; a sum or a count of no record is 0.
- The aggregates, exactly: the sum adds the values in canonical order starting from 0
  (whole numbers: a partial sum beyond int64 rejects the record, NOT_FINITE);
  the mean is that sum divided by the count (an integer sum converted to a float
  first); the least/greatest starts from the first value and takes a later one only if
  it is strictly smaller/greater. Every path computes these operations in this order.

The state (engine/state.py `windows`) keeps, per history, the account's first day and
the records a later record's window can still hold (those of the last N days before
the latest day, or the last N records), so that a stream evaluated in pieces, in time
order, the state carried over, gives the results of evaluating it whole.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Optional

from dsl.ir import ast as ir

from .plan.history import EMPTY, OK, SHORT, TOO_LARGE, status_name

INT64 = (-(1 << 63), (1 << 63) - 1)
from .scalar import LocalTime


@dataclass
class Window:
    """What one history remembers of one account: the day of its first record and the
    records later windows can still hold, as (time, id, day, value) in canonical order."""
    first: Optional[int] = None
    entries: list = field(default_factory=list)

    def to_data(self) -> dict:
        return {"first": self.first, "entries": [list(e) for e in self.entries]}

    @classmethod
    def of_data(cls, data) -> "Window":
        if not data:
            return cls()
        return cls(data.get("first"), [tuple(e) for e in data.get("entries", ())])


def aggregate(h: ir.History, values: list):
    """The aggregate of the values of a window, in canonical order (see the docstring)."""
    kind = h.aggregate
    if kind == "count":
        return len(values)
    if kind in ("sum", "mean"):
        total = 0 if h.type.kind.value == "integer" or (kind == "mean" and _integers(values)) else 0.0
        for v in values:
            total = total + v
            if type(total) is int and not INT64[0] <= total <= INT64[1]:
                return None  # beyond int64, as the columnar path counts: TOO_LARGE
        if kind == "sum":
            return total
        return float(total) / len(values)
    best = values[0]
    if kind == "min":
        for v in values[1:]:
            if v < best:
                best = v
    else:
        for v in values[1:]:
            if v > best:
                best = v
    return best


def _integers(values: list) -> bool:
    return bool(values) and type(values[0]) is int


def window_of(h: ir.History, entries: list, position: int, day: int, first: int,
              value) -> tuple[int, object]:
    """(status, value) of a record at `position` among `entries` (those before it in
    canonical order are entries[:position]), of local day `day`, the account's first
    day being `first`."""
    n = h.size
    if h.unit == "days":
        start = day - n if h.side == "previous" else day - n + 1
        end = day - 1 if h.side == "previous" else day
        values = [e[3] for e in entries[:position] if start <= e[2] <= end]
        short = first > start
    else:
        before = entries[max(0, position - (n if h.side == "previous" else n - 1)):position]
        values = [e[3] for e in before]
        short = None
    if h.side == "last":
        values.append(value)
    if short is None:
        short = len(values) < n
    if short and h.short == "reject":
        return SHORT, _zero(h)
    if short and h.short == "value":
        return OK, h.value
    if not values and h.aggregate in ("mean", "min", "max"):
        return (OK, h.value) if h.short == "value" else (EMPTY, _zero(h))
    value = aggregate(h, values)
    return (TOO_LARGE, _zero(h)) if value is None else (OK, value)


def _zero(h: ir.History):
    return 0 if h.type.kind.value == "integer" else 0.0


def subject_key(name: str) -> str:
    """Where a record's value of a definition that a history aggregates is kept among its
    values while the windows are computed (not a name a methodology can write)."""
    return name + "#subject"


def subject_values(records: list[dict], subjects) -> None:
    """Each record's value of every definition a history aggregates, from `subjects`
    (a ScalarProgram of engine/plan/history.py's subject_plan): `values[name#subject]`,
    None where its formula rejects the record (it is then in no window)."""
    names = subjects.plan.counters
    run = subjects.run_plain
    for values in records:
        verdict = run(values, None, None)
        got = verdict[8] if verdict[0] == "credited" else (None,) * len(names)
        for name, value in zip(names, got):
            values[subject_key(name)] = value


def apply(records: list[dict], histories: tuple[ir.History, ...],
          state: Optional[dict] = None, subjects=None) -> None:
    """Gives each record (ingested values, with account, time, id) every history's value
    and status (`values[h.name]`, `values[status_name(h)]`). With `state` (account ->
    engine.state.AccountState), each account's windows start from what it remembers and
    it is left updated. `subjects`: the program of the definitions histories aggregate
    (ScalarProgram.subjects), when some do."""
    if not histories:
        return
    if subjects is not None:
        subject_values(records, subjects)
        defined = set(subjects.plan.counters)
    else:
        defined = set()
    local = LocalTime(histories[0].timezone)
    by_account: dict[str, list[int]] = defaultdict(list)
    for i, values in enumerate(records):
        by_account[values["account"]].append(i)
    for account, indexes in by_account.items():
        indexes.sort(key=lambda i: (records[i]["time"], records[i]["id"], i))
        prior = None
        if state is not None:
            prior = state.get(account)
            if prior is None:
                from .state import AccountState  # the account's state starts here
                prior = state[account] = AccountState.empty(_rules_of(histories))
        windows = prior.windows if prior is not None else [Window() for _ in histories]
        for j, h in enumerate(histories):
            _account(records, indexes, h, windows[j], local,
                     subject_key(h.subject) if h.subject in defined else h.subject)


def _rules_of(histories):
    from .plan.ast import CrossRecord
    return CrossRecord(histories=histories)


def _account(records: list[dict], indexes: list[int], h: ir.History, window: Window,
             local: LocalTime, subject: str) -> None:
    entries = window.entries
    name, status = h.name, status_name(h)
    for i in indexes:
        values = records[i]
        t, record_id, x = values["time"], values["id"], values[subject]
        day = local.day(t)
        window.first = day if window.first is None else min(window.first, day)
        if x is None:  # a definition its formula could not give: in no window, and the
            # record is rejected by that definition before its windows are looked at
            values[status], values[name] = OK, _zero(h)
            continue
        key = (t, record_id)
        if not entries or key >= entries[-1][:2]:
            position = len(entries)  # in time order: the usual case
        else:  # a record arriving after later ones: judged against those before it
            position = bisect_left(entries, key, key=lambda e: e[:2])
        values[status], values[name] = window_of(h, entries, position, day, window.first, x)
        entry = (t, record_id, day, x)
        if position == len(entries):
            entries.append(entry)
        else:
            insort(entries, entry, key=lambda e: e[:2])
        _prune(h, window)


def _prune(h: ir.History, window: Window) -> None:
    """Drops the records no later record in time order can have in its window."""
    entries = window.entries
    if h.unit == "records":
        if len(entries) > h.size:
            del entries[:len(entries) - h.size]
        return
    if not entries:
        return
    horizon = entries[-1][2] - h.size  # a later day d' >= latest looks back to d' - N at most
    if entries[0][2] < horizon:
        keep = [e for e in entries if e[2] >= horizon]
        entries[:] = keep

