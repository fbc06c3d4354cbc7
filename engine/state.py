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
        # the ledger makes one per account of a credit (from_json): made by the rules'
        # codec, which knows which kinds of rule they have (_Codec.empty)
        return _codec(rules).empty()

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
        codec = _codec(rules)
        if not keys and not by_json and not self.others and codec.plain:
            return codec.write(self)
        return self.general_text(rules, by_json=by_json, keys=keys)

    def general_text(self, rules: CrossRecord, *, by_json: bool = False, keys: bool = True) -> str:
        """to_json's text made the general way, whatever the rules (not by their codec's
        `write`): what the codec's text is compared with (tests/engine/test_state_codec.py)."""
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
        codec = _codec(rules)
        if codec.plain:
            return codec.read(text)
        return cls.general_read(rules, text)

    @classmethod
    def general_read(cls, rules: CrossRecord, text: Optional[str]) -> "AccountState":
        """from_json's state read the general way, whatever the rules (not by their
        codec's `read`): what the codec's state is compared with."""
        state = _codec(rules).empty()
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


def read_states(rules: CrossRecord, accounts, stored: dict) -> dict[str, AccountState]:
    """{account: AccountState.from_json(rules, stored.get(account))} for the accounts:
    the rules' codec looked up once for all of them (the ledger reads every account's of
    a credit: the lookup per account was a third of the codec's own time)."""
    codec = _codec(rules)
    if not codec.plain:
        return {a: AccountState.general_read(rules, stored.get(a)) for a in accounts}
    read, get = codec.read, stored.get
    return {a: read(get(a)) for a in accounts}


def state_texts(rules: CrossRecord, states: dict[str, AccountState]) -> dict[str, str]:
    """{account: state.to_json(rules, keys=False)} for the states, as read_states (the
    ledger writes every account's of a credit, without the duplicate keys)."""
    codec = _codec(rules)
    if not codec.plain:
        return {a: s.to_json(rules, keys=False) for a, s in states.items()}
    write = codec.write
    return {a: s.general_text(rules, keys=False) if s.others else write(s) for a, s in states.items()}


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
    """_Names of `rules` (their codec's)."""
    return _codec(rules).names


def _codec(rules: CrossRecord) -> "_Codec":
    """_Codec of `rules`, remembered per rules object (kept alive, so its id is not
    reused), as _name remembers a rule's."""
    cached = _PARTS.get(id(rules))
    if cached is not None and cached[0] is rules:
        return cached[1]
    codec = _Codec(rules)
    if len(_PARTS) >= 1024:
        _PARTS.clear()
    _PARTS[id(rules)] = (rules, codec)
    return codec


_PARTS: dict[int, tuple[object, "_Codec"]] = {}


class _Codec:
    """A rules object's empty state, and its state read from and written to text, as
    functions made for the kinds and numbers of rules it has (`empty`, `read`, `write`).

    The ledger reads and writes the state of every account of a credit: 9-14 µs an
    account the general way (a dataclass of twelve lists made, then ten loops over the
    kinds of rule, most of them empty: a methodology has a cap and a duplicate rule),
    14 ms of a 1,000-record credit (docs/ledger.md, Session 23). These functions are
    written once per rules object as Python source, with one expression per rule and
    nothing for a kind the rules lack, and compiled (as dataclasses writes __init__):
    the same values and the same text as from_json's and to_json's general code, which
    tests/engine/test_state_codec.py compares for every kind of part.

    `read` and `write` serve only `plain` rules (no history window, no near-duplicate
    events: their parts are made by their own classes) and `write` only keys=False and
    a state without another version's parts; the rest goes the general way."""

    def __init__(self, rules: CrossRecord):
        self.names = names = _Names(rules)
        self.plain = not (rules.histories or rules.near_duplicates)
        ns: dict = {"AccountState": AccountState, "Window": Window, "Events": Events,
                    "_keys_part": _keys_part, "_periods": _periods, "_loads": _loads,
                    "_dumps": _dumps, "mine": names.mine}

        def name(kind: str, j: int, text: str) -> str:
            ns[f"{kind}{j}"] = text
            return f"{kind}{j}"

        def listed(items) -> str:
            return "[" + ", ".join(items) + "]"

        d, o, f = names.duplicates, names.overlaps, names.flags
        b, c, cc = names.bonuses, names.caps, names.counter_caps
        k, r = names.counters, names.rewards
        blank = [listed("set()" for _ in d), listed("None" for _ in o), listed("[]" for _ in o),
                 listed("[]" for _ in f), listed("[]" for _ in b), listed("{}" for _ in c),
                 listed("{}" for _ in cc), listed("0" for _ in k), listed("0" for _ in r),
                 listed("Window()" for _ in rules.histories), "{}",
                 listed("Events()" for _ in rules.near_duplicates)]
        read = [
            listed(f"_keys_part(data.get({name('d', j, n)}))" for j, n in enumerate(d)),
            listed(f"(data.get({name('o', j, n)}) or {{}}).get('end')" for j, n in enumerate(o)),
            listed(f"[tuple(iv) for iv in (data.get(o{j}) or {{}}).get('intervals', ())]"
                   for j in range(len(o))),
            listed(f"list(data.get({name('f', j, n)}, ()))" for j, n in enumerate(f)),
            listed(f"list(data.get({name('b', j, n)}, ()))" for j, n in enumerate(b)),
            listed(f"_periods(data.get({name('c', j, n)}))" for j, n in enumerate(c)),
            listed(f"_periods(data.get({name('cc', j, n)}))" for j, n in enumerate(cc)),
            listed(f"int(data.get({name('k', j, n)}, 0))" for j, n in enumerate(k)),
            listed(f"int(data.get({name('r', j, n)}, 0))" for j, n in enumerate(r)),
            blank[9], "others", blank[11]]
        write = ([f"    data[o{j}] = {{'end': s.ends[{j}], 'intervals': [list(iv) for iv in "
                  f"s.intervals[{j}]]}}" for j in range(len(o))]
                 + [f"    data[f{j}] = sorted(s.flag_times[{j}])" for j in range(len(f))]
                 + [f"    data[b{j}] = sorted(s.bonus_times[{j}])" for j in range(len(b))]
                 + [f"    p = s.caps[{j}]\n    data[c{j}] = dict(zip(map(str, p), p.values()))"
                    for j in range(len(c))]
                 + [f"    p = s.counter_caps[{j}]\n    data[cc{j}] = dict(zip(map(str, p), p.values()))"
                    for j in range(len(cc))]
                 + [f"    data[k{j}] = s.counter_totals[{j}]" for j in range(len(k))]
                 + [f"    data[r{j}] = s.balances[{j}]" for j in range(len(r))])
        source = "\n".join([
            "def empty():",
            f"    return AccountState({', '.join(blank)})",
            "def read(text):",
            "    if not text:",
            f"        return AccountState({', '.join(blank)})",
            "    data = _loads(text)",
            "    others = {} if data.keys() <= mine else {n: p for n, p in data.items() if n not in mine}",
            f"    return AccountState({', '.join(read)})",
            "def write(s):",
            "    data = {}",
            *write,
            "    return _dumps(data, True)", ""])
        exec(compile(source, f"<state codec {id(rules):x}>", "exec"), ns)
        self.source = source
        self.empty, self.read, self.write = ns["empty"], ns["read"], ns["write"]


def _keys_part(kept) -> set:
    """A duplicate rule's stored keys (JSON texts of arrays) as the engine compares them,
    parsed all at once as one array of them (none stored: the ledger keeps them as rows,
    registry/duplicate_keys.py)."""
    if not kept:
        return set()
    return {tuple(k) for k in _loads("[" + ",".join(kept) + "]")}


def _periods(part) -> dict:
    """A cap's stored part (period's text -> amount) as the engine counts it."""
    if not part:
        return {}
    return {int(p): int(used) for p, used in part.items()}


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

