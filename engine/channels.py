"""One real event, several reports: the near-duplicate rules (`forbid duplicate ...
within W per account [where ...] [keep first by ARRIVAL]`), for every path.

A ride may reach the platform twice, through the operator's feed and the rider's app,
with times a minute apart. Such a rule judges, per account, the records still credited
(after DUPLICATE_ID) that satisfy its `where`, one at a time in the order they arrived
(the `keep first by` input, then the canonical order; without one, the canonical order):
a record whose keys equal those of an event already kept and whose `near` time is within
W of that event's is a duplicate of it (of the first kept one, when several are within
W); otherwise it is a new event and is kept. Only kept events are compared with, so a
chain of reports a few minutes apart does not stretch one event without end. The rules
apply in source order before every other cross-record rule, which sees the records they
leave credited. The duplicate's message names the record it repeats.

The judging is this module's on every path (the reference, the batch engine and the
rules path call `judge`): it is a few comparisons per record in Python, ordered by
arrival, which neither the columnar sorts nor the durable_rules ruleset express; the
differential tests hold the paths to it. With a state (engine/state.py), the events
kept so far are remembered per account and rule, so one file and the same stream in
batches give the same results when the batches follow the arrival order.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from typing import Any, Iterable, Optional

from dsl.ir import ast as ir

DuplicateOf = tuple[int, int, str]  # (candidate index, rule index, id of the event it repeats)


def message(rule: ir.NearDuplicate, event_id: str) -> str:
    """The duplicate's message, the same on every path."""
    return f"{rule.message} (the same event as record {event_id})"


def applies(rule: ir.NearDuplicate, values) -> bool:
    if rule.when is None:
        return True
    name, listed, allowed = rule.when
    return (values[name] in listed) == allowed


class Events:
    """The events one rule has kept for one account: key -> [(near, order, id)] sorted
    by near time (order: when it was kept, to name the first of several)."""

    def __init__(self, kept: Optional[dict] = None, count: Optional[int] = None):
        self.kept: dict[tuple, list] = kept if kept is not None else {}
        # how many were ever kept (the next one's order): given when `kept` holds only
        # some of them (the ledger reads only the events of the keys a credit brings)
        self.count = count if count is not None else sum(len(v) for v in self.kept.values())

    def since(self, count: int) -> list[tuple]:
        """The events kept after the first `count`: (key, near, order, id) each."""
        return [(key, near, order, rid) for key, entries in self.kept.items()
                for near, order, rid in entries if order >= count]

    def match(self, key: tuple, near: Optional[int], window: int) -> Optional[str]:
        entries = self.kept.get(key)
        if not entries:
            return None
        if near is None:
            return entries[0][2]
        lo = bisect_left(entries, (near - window,))
        hi = bisect_right(entries, (near + window, float("inf")))
        if lo >= hi:
            return None
        return min(entries[lo:hi], key=lambda e: e[1])[2]

    def keep(self, key: tuple, near: Optional[int], record_id: str) -> None:
        insort(self.kept.setdefault(key, []), (near if near is not None else 0, self.count, record_id))
        self.count += 1

    # ------------------------------------------------------------ storage
    def to_data(self) -> list:
        return sorted([list(key), near, order, rid] for key, entries in self.kept.items()
                      for near, order, rid in entries)

    @classmethod
    def from_data(cls, data: Iterable) -> "Events":
        kept: dict[tuple, list] = {}
        for key, near, order, rid in data or ():
            kept.setdefault(tuple(key), []).append((near, order, rid))
        for entries in kept.values():
            entries.sort()
        return cls(kept)


def judge(rules: tuple[ir.NearDuplicate, ...], records: list[tuple[Any, str, dict]],
          events: Optional[list[Events]] = None) -> list[DuplicateOf]:
    """One account's credited records (canonical order): (index, id, values) each.
    Gives the duplicates as (index, rule, id of the event); `events`, one per rule, are
    what earlier batches kept, and are left updated."""
    if events is None:
        events = [Events() for _ in rules]
    out: list[DuplicateOf] = []
    taken: set = set()
    for r, rule in enumerate(rules):
        candidates = [(rank, index, rid, values) for rank, (index, rid, values) in enumerate(records)
                      if index not in taken and applies(rule, values)]
        if rule.arrival is not None:
            candidates.sort(key=lambda c: (c[3][rule.arrival], c[0]))
        kept = events[r]
        for _, index, rid, values in candidates:
            key = event_key(rule, values)
            near = values[rule.near] if rule.near is not None else None
            event = kept.match(key, near, rule.window_us)
            if event is None:
                kept.keep(key, near, rid)
            else:
                out.append((index, r, event))
                taken.add(index)
    return out


def event_key(rule: ir.NearDuplicate, values) -> tuple:
    """The key a record's event is kept and matched under (the fields that must be equal)."""
    return tuple(_plain(values[k]) for k in rule.keys)


def _plain(value):
    """A key value as JSON keeps it (state carried between batches compares equal)."""
    if isinstance(value, float) and value == int(value) and abs(value) < 2 ** 53:
        return value + 0.0  # -0.0 == 0.0
    return value


def events_to_json(events: list[Events]) -> list:
    return [e.to_data() for e in events]


def events_from_json(data: list, rules: tuple) -> list[Events]:
    return [Events.from_data(part) for part in (data or [[] for _ in rules])]


__all__ = ["judge", "message", "applies", "event_key", "Events"]
