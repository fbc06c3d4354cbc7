"""What a methodology's cross-record rules remember of one account between evaluations.

The engine is a step function: `cross_record.apply(results, rules, ..., state=states)`
takes each account's prior state from `states` and leaves its posterior there. Whatever
stores it (the ledger's `rule_states` rows, a file), the property that makes every path
agree is, for records in canonical order:

    apply(r1 + r2, {})  ==  apply(r1, s); apply(r2, s)      (s carried over)

tested in tests/engine/test_state.py with the state sent through JSON in between.

What is kept, per rule, is only what a later record can be judged by:
- `forbid duplicate`: the keys of the account's accepted records (a duplicate rule has no
  horizon: every key ever accepted). The ledger keeps them apart, in a table, and gives
  a credit only the stored keys its records bring (to_json(keys=False),
  registry/duplicate_keys.py): the state a credit parses and writes does not grow with
  the account's history (nor with a near-duplicate rule's events: the ledger keeps
  those apart too, and the state their count);
- `forbid overlap`: the latest end among the accepted records, and the accepted
  intervals of the last week, for a record that arrives after later ones;
- `flag` and `bonus` windows: the accepted records' times that can still fall in the
  window of a later record (those after the newest time minus the window);
- caps: the amount credited in each calendar period (a number per period: a record that
  arrives late is judged against its own period's total);
- history windows: the day of the account's first record and the records (time, id,
  day, value) a later record's window can still hold (engine/history.py).

A record that arrives after later ones (out of time order) is judged against the state
as it stands: an overlap rule rejects it when it overlaps an accepted interval of the
last week (before or after it: credits are final, the one accepted first stands); a
window counts the times still kept (those within the window of the latest); a cap counts
what its own period has credited. docs/ledger.md says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

import orjson

from .channels import Events
from .history import Window
from .plan.ast import CrossRecord


OVERLAP_HORIZON_US = 7 * 86_400_000_000  # how long accepted intervals are kept for late records


@dataclass
class AccountState:
    keys: list[set[tuple]] = field(default_factory=list)        # per duplicate rule
    ends: list[Optional[int]] = field(default_factory=list)     # per overlap rule
    # per overlap rule: the accepted records' (time, start, end), in time order, for a
    # record that arrives after later ones (those ending a week before the latest end go)
    intervals: list[list[tuple]] = field(default_factory=list)
    flag_times: list[list[int]] = field(default_factory=list)   # per flag rule
    bonus_times: list[list[int]] = field(default_factory=list)  # per bonus rule
    caps: list[dict[int, int]] = field(default_factory=list)    # per cap: period -> used
    # engine/counters.py: per counter cap, period -> added; per counter, its total; per
    # reward, the remainder of its source not yet converted
    counter_caps: list[dict[int, int]] = field(default_factory=list)
    counter_totals: list[int] = field(default_factory=list)
    balances: list[int] = field(default_factory=list)
    # per history window (engine/history.py): the first day and the records still in reach
    windows: list[Window] = field(default_factory=list)
    # the stored parts of rules this version does not have (another version's), kept as
    # they were: records of two versions arrive interleaved (a version in its grace
    # period beside its successor), and crediting one must not wipe what the other's
    # rules remember (the successor's cap totals), which `tanpu ledger verify` found
    others: dict = field(default_factory=dict)
    # per near-duplicate rule: the events kept (engine/channels.py; no horizon, as keys)
    near: list = field(default_factory=list)

    @classmethod
    def empty(cls, rules: CrossRecord) -> "AccountState":
        # the ledger makes one per account of a credit (from_json): a rule kind the
        # methodology does not have costs no comprehension, and the immutable parts are
        # repeated rather than made one by one
        d, o, f, b = rules.duplicates, rules.overlaps, rules.flags, rules.bonuses
        c, cc, h, n = rules.caps, rules.counter_caps, rules.histories, rules.near_duplicates
        return cls([set() for _ in d] if d else [], [None] * len(o),
                   [[] for _ in o] if o else [], [[] for _ in f] if f else [],
                   [[] for _ in b] if b else [], [{} for _ in c] if c else [],
                   [{} for _ in cc] if cc else [], [0] * len(rules.counters),
                   [0] * len(rules.rewards), [Window() for _ in h] if h else [], {},
                   [Events() for _ in n] if n else [])

    def prune(self, rules: CrossRecord) -> None:
        """Drops the window times no later record in time order can count, and the
        intervals that ended a week before the latest end."""
        for j, kept in enumerate(self.intervals):
            if kept and self.ends[j] is not None:
                horizon = self.ends[j] - OVERLAP_HORIZON_US
                self.intervals[j] = [iv for iv in kept if iv[2] > horizon]
        for times_of, windowed in ((self.flag_times, rules.flags), (self.bonus_times, rules.bonuses)):
            for j, rule in enumerate(windowed):
                times = times_of[j]
                if times:
                    horizon = max(times) - rule.window_seconds * 1_000_000
                    times_of[j] = [t for t in times if t > horizon]

    # ------------------------------------------------------------ storage
    def to_json(self, rules: CrossRecord, *, by_json: bool = False, keys: bool = True) -> str:
        """Canonical JSON (sorted keys and sets), so that equal states are equal text.
        Each rule's part is named by what the rule is (its kind and terms), so that a new
        version of the methodology keeps the state of the rules it keeps, and starts
        afresh for a rule it changes (a cap per week instead of per day); the parts of
        the rules it does not have are written back unchanged (`others`). `by_json`: the
        text made by json's encoder alone, which _dumps's is the same as (tests compare).

        `keys=False`: without the duplicate rules' parts (this version's and any other's
        in `others`), and with only the count of each near-duplicate rule's events: the
        ledger keeps those keys and events in a table of their own, read only for the
        keys a credit brings (registry/duplicate_keys.py), so that the text written on
        every credit does not grow with the account's history (docs/ledger.md,
        Session 20)."""
        data: dict = dict(self.others)
        names = _names(rules)
        if keys:
            for name, kept in zip(names.duplicates, self.keys):
                data[name] = sorted(map(_key_text, kept))
        elif data:
            data = {name: _counted(name, part) for name, part in data.items()
                    if not name.startswith(_KEY_PART)}
        for name, end, kept in zip(names.overlaps, self.ends, self.intervals):
            data[name] = {"end": end, "intervals": [list(iv) for iv in kept]}
        for name, times in zip(names.flags, self.flag_times):
            data[name] = sorted(times)
        for name, times in zip(names.bonuses, self.bonus_times):
            data[name] = sorted(times)
        for name, periods in zip(names.caps, self.caps):
            data[name] = {str(p): used for p, used in sorted(periods.items())}
        for name, periods in zip(names.counter_caps, self.counter_caps):
            data[name] = {str(p): used for p, used in sorted(periods.items())}
        for name, total in zip(names.counters, self.counter_totals):
            data[name] = total
        for name, balance in zip(names.rewards, self.balances):
            data[name] = balance
        for name, window in zip(names.histories, self.windows):
            data[name] = window.to_data()
        for name, events in zip(names.near_duplicates, self.near):
            data[name] = events.to_data() if keys else {"count": events.count}
        if by_json:
            return _TEXT.encode(data)
        return _dumps(data, not (self.others or rules.histories or rules.near_duplicates))

    @classmethod
    def from_json(cls, rules: CrossRecord, text: Optional[str]) -> "AccountState":
        """The state stored as `text` (None or "": an account seen for the first time)."""
        state = cls.empty(rules)
        if not text:
            return state
        data = _loads(text)
        names = _names(rules)
        mine = names.mine
        state.others = {name: part for name, part in data.items() if name not in mine}
        for j, name in enumerate(names.duplicates):
            # each key is a JSON array's text: parsed all at once, as one array of them
            # (none stored: the ledger keeps them as rows, registry/duplicate_keys.py)
            kept = data.get(name)
            if kept:
                state.keys[j] = {tuple(k) for k in _loads("[" + ",".join(kept) + "]")}
        for j, name in enumerate(names.overlaps):
            part = data.get(name) or {}
            state.ends[j] = part.get("end")
            state.intervals[j] = [tuple(iv) for iv in part.get("intervals", ())]
        for j, name in enumerate(names.flags):
            state.flag_times[j] = list(data.get(name, ()))
        for j, name in enumerate(names.bonuses):
            state.bonus_times[j] = list(data.get(name, ()))
        for j, name in enumerate(names.caps):
            state.caps[j] = {int(p): int(used) for p, used in data.get(name, {}).items()}
        for j, name in enumerate(names.counter_caps):
            state.counter_caps[j] = {int(p): int(used) for p, used in data.get(name, {}).items()}
        for j, name in enumerate(names.counters):
            state.counter_totals[j] = int(data.get(name, 0))
        for j, name in enumerate(names.rewards):
            state.balances[j] = int(data.get(name, 0))
        for j, name in enumerate(names.histories):
            state.windows[j] = Window.of_data(data.get(name))
        for j, name in enumerate(names.near_duplicates):
            part = data.get(name)
            state.near[j] = (Events(count=part["count"]) if isinstance(part, dict)
                             else Events.from_data(part))
        return state


def _loads(text: str):
    """json.loads(text), by orjson where it reads the text (a third of the time, for
    every account of a credit, twice); where orjson refuses what json reads (a lone
    surrogate, an integer beyond 64 bits, NaN), by json. Both give the same values for
    the JSON both read (tests/engine/test_state_key_text.py reads states back)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


# json.dumps with any option makes a new encoder per call; the state is written for every
# account of every credit (twice a key per duplicate rule), so the encoders are made once.
# Their output is json.dumps' with the same options, byte for byte.
_KEY = json.JSONEncoder(ensure_ascii=False)
_STRING = json.encoder.encode_basestring  # the string encoder _KEY's C encoder uses


def key_text(key: tuple) -> str:
    """A duplicate rule's key as its state part holds it (JSON text of an array)."""
    return _key_text(key)


def parse_key(text: str) -> tuple:
    """The key `key_text` wrote, as the engine compares it (a tuple of JSON values)."""
    return tuple(_loads(text))


def rule_part(rule) -> str:
    """The name of a rule's part of the state (its kind and terms): what the ledger's
    table of duplicate keys names the rule by, as the JSON state names its part."""
    return _name(rule)


def is_key_part(name: str) -> bool:
    """Whether a part of the state (by its name) is what the ledger keeps as rows of
    `duplicate_keys` when written with keys=False: a `forbid duplicate` rule's keys, or
    a near-duplicate rule's events (of which the state then keeps only the count)."""
    return name.startswith(_KEY_PART) or name.startswith(_EVENT_PART)


def is_event_part(name: str) -> bool:
    """Whether a part of the state (by its name) is a near-duplicate rule's events (the
    other key parts, is_key_part's, are a `forbid duplicate` rule's keys)."""
    return name.startswith(_EVENT_PART)


_KEY_PART = "duplicate:"  # _name of an ir.Duplicate (type name, lowered, then ":")
_EVENT_PART = "nearduplicate:"  # _name of an ir.NearDuplicate


def _counted(name: str, part):
    """Another version's part as keys=False writes it: a near-duplicate rule's events
    (a list, as keys=True wrote them) as their count; any other part as it is."""
    if name.startswith(_EVENT_PART) and isinstance(part, list):
        return {"count": len(part)}
    return part


def _key_text(key: tuple) -> str:
    """_KEY.encode(list(key)): a key of strings (what a duplicate rule's keys usually
    are) written by _KEY's own string encoder, without making an encoder per key (half
    of to_json's time, which runs for every account of a credit); others by _KEY.
    tests/engine/test_state_key_text.py compares the two texts."""
    for v in key:
        if type(v) is not str:
            return _KEY.encode(list(key))
    return "[" + ", ".join(map(_STRING, key)) + "]"
_TEXT = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _dumps(data: dict, plain: bool) -> str:
    """_TEXT.encode(data), by orjson where that is the same text: a state whose parts are
    all the ledger's own (`plain`: no history window, no near-duplicate events, nothing
    of another version's rules, none of which may hold a float) holds strings, integers,
    booleans and None in dicts with text keys and lists, which orjson writes as json does
    (the same escapes, without ensure_ascii: every code point compared; keys sorted by
    code point). What orjson refuses (an integer beyond 64 bits, a lone surrogate, a key
    that is not text) is written by json. 5-7 times faster than json's encoder, for every
    account of a credit (docs/ledger.md, Session 13; tests/engine/test_state_text.py)."""
    if plain:
        try:
            return orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()
        except TypeError:  # orjson.JSONEncodeError
            pass
    return _TEXT.encode(data)


def _parts(rules: CrossRecord) -> frozenset:
    """The names of the state's parts that `rules` own (the rest is another version's,
    kept as it was)."""
    return _names(rules).mine


class _Names:
    """The names of the state's parts, per kind of rule, in the rules' order (and `mine`,
    all of them): made once per rules object, where from_json and to_json, which run for
    every account of a credit, looked each one up again (_name, and json.dumps for a
    counter or a history window) for every account (docs/ledger.md, Session 22)."""

    def __init__(self, rules: CrossRecord):
        self.duplicates = [_name(rule) for rule in rules.duplicates]
        self.overlaps = [_name(rule) for rule in rules.overlaps]
        self.flags = [_name(rule) for rule in rules.flags]
        self.bonuses = [_name(rule) for rule in rules.bonuses]
        self.caps = [_name(rule) for rule in rules.caps]
        self.counter_caps = [_name(rule) for rule in rules.counter_caps]
        self.counters = [_counter_name(name) for name in rules.counters]
        self.rewards = [_name(rule) for rule in rules.rewards]
        self.histories = [history_name(h) for h in rules.histories]
        self.near_duplicates = [_name(rule) for rule in rules.near_duplicates]
        self.mine = frozenset(self.duplicates + self.overlaps + self.flags + self.bonuses
                              + self.caps + self.near_duplicates + self.counter_caps
                              + self.rewards + self.counters + self.histories)


def _names(rules: CrossRecord) -> _Names:
    """_Names of `rules`, remembered per rules object (kept alive, so its id is not
    reused), as _name remembers a rule's."""
    cached = _PARTS.get(id(rules))
    if cached is not None and cached[0] is rules:
        return cached[1]
    names = _Names(rules)
    if len(_PARTS) >= 1024:
        _PARTS.clear()
    _PARTS[id(rules)] = (rules, names)
    return names


_PARTS: dict[int, tuple[object, _Names]] = {}


def _counter_name(name: str) -> str:
    """The key of a counter's total in the stored state."""
    return "counter:" + json.dumps(name, ensure_ascii=False)


def history_name(h) -> str:
    """The key of a history window's part of the state: what decides which records it
    keeps (its name, input, size and time zone), not what it does with them, so that a
    new version that changes a history's aggregate or its `otherwise` keeps its window."""
    return "history:" + json.dumps([h.name, h.subject, h.size, h.unit, h.timezone], ensure_ascii=False)


def _name(rule) -> str:
    """A rule's kind and terms, without its message: the key of its part of the state.
    Remembered per rule object (rules are frozen): the ledger reads and writes the
    state of every account of a credit, and making the name again each time was a
    tenth of a 1,000-record credit's time."""
    cached = _NAMES.get(id(rule))
    if cached is not None and cached[0] is rule:
        return cached[1]
    terms = {k: v for k, v in vars(rule).items() if k not in ("code", "message")}
    name = type(rule).__name__.lower() + ":" + json.dumps(terms, sort_keys=True, ensure_ascii=False)
    if len(_NAMES) >= 4096:  # rules of engines long gone
        _NAMES.clear()
    _NAMES[id(rule)] = (rule, name)  # the rule kept alive, so its id is not reused
    return name


_NAMES: dict[int, tuple[object, str]] = {}

