"""The keys `forbid duplicate` rules accepted, in a table of their own (`duplicate_keys`).

A duplicate rule has no horizon: an account's state must answer "was this key accepted,
ever?". Kept in the JSON state (engine/state.py), every key the account was ever credited
with was parsed and written again on every credit of the account, so a credit's CPU grew
with the account's history (docs/ledger.md, Session 20). Here each accepted key is a row
(methodology, account, rule part name, 64-bit hash, key text), and a credit

1. computes the keys its records bring (`Wanted`: for every record, every duplicate rule),
2. reads, after the accounts' state rows are locked, only the rows whose hash is one of
   theirs (one indexed statement: `read_statement` on PostgreSQL, in the pipeline of the locks;
   `read` elsewhere),
3. gives the engine exactly the stored keys equal to one of them (`load`: the row's
   methodology, account and rule compared, and its key parsed and compared in full with
   Python's equality, as the state's set compared it: a hash shared by two keys reads
   one row more and decides nothing),
4. writes the keys the engine accepted now (`new_rows`, `insert`), in the transaction
   of the entries and the states.

So `key in seen` in the engine (cross_record._judge) answers as it did with every key in
the state: every stored key equal to an incoming one is in `seen`, and the keys accepted
within the request are added by the engine itself.

A near-duplicate rule's events (engine/channels.py `Events`: `within`, `where`, `keep
first by`) are rows the same way, keyed by the fields that must be equal, with the event's
near time, order and record id: a credit reads every stored event of the keys its records
bring (the engine compares the times), and the state keeps only how many events the rule
has kept (`{"count": N}`), so that an event kept now ranks after every stored one. The accounts' state rows are locked
before the read (registry/ledger.py), so two credits of one account read and write these
rows one after the other, and a key is never inserted twice. Reversals leave the keys, as
they left them in the state (docs/ledger.md, Reversal). `tanpu ledger verify` compares the
replayed keys with the rows (registry/verify.py).
"""

from __future__ import annotations

import hashlib
from bisect import insort
import json
import operator
from collections import defaultdict
from typing import Iterable, Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import channels
from engine.state import AccountState, is_event_part, is_key_part, key_text, parse_key, rule_part

from . import bulk
from .models import duplicate_keys

_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def key_hash(methodology_id: str, account: str, rule: str, key: tuple) -> int:
    """64 bits (signed, as BIGINT holds them) of what a row is: equal for keys Python
    calls equal (1, 1.0 and True; the key's values made plain first), so that a key the
    state's set would have found is found. Two different keys may share one: the rows
    read are compared in full (`load`). The one place the hash is made: the ledger, the
    migration that moved the keys here (0017) and the tests (which replace it by a
    constant to make every key collide) call this."""
    for v in key:
        if type(v) is not str:
            text = _ENCODE([_plain(v) for v in key])
            break
    else:  # a key of text (the usual one) equals only keys of the same texts
        text = key_text(key)
    text = "\x1f".join((methodology_id, account, rule, text))
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                          "big", signed=True)


def _plain(value):
    """A key value as one text for every value equal to it (True == 1 == 1.0)."""
    if value is True or value is False:
        return int(value)
    if type(value) is float and value.is_integer():
        return int(value)
    return value


class Wanted:
    """The keys a credit's records bring, per account and rule (the duplicate rules, then
    the near-duplicate rules: rule index j counts both, in that order): what `read`
    looks up, and what `load` keeps of the rows read."""

    def __init__(self, methodology_id: str, rules, records: Iterable):
        self.methodology_id = methodology_id
        self.plain = len(rules.duplicates)  # rules below this index: `forbid duplicate`
        every = list(rules.duplicates) + list(rules.near_duplicates)
        self.names = [rule_part(rule) for rule in every]
        self.index = {name: j for j, name in enumerate(self.names)}
        self.keys: dict[tuple, int] = {}  # (account, rule index, key) -> its hash
        # hash -> the spans of near times its stored events must lie within to be
        # matched, [(lo, hi), ...], or None: every row of the hash (a plain key; a rule without `within`; a
        # record without its time). A `within` rule matches an event only within its
        # window of a record's time (channels.Events.match), so an account's events of
        # one key long before or after the records a credit brings are not read: the
        # read does not grow with the account's history (the key may be only `mode`)
        self.bounds: dict[int, Optional[list]] = {}
        hash_of = key_hash  # the module's, looked up once (tests replace it)
        readers = ([_reader(rule.keys) for rule in rules.duplicates]
                   + [_event_reader(rule) for rule in rules.near_duplicates])
        timed = [None] * self.plain + [(rule.near, rule.window_us) if rule.near is not None else None
                                       for rule in rules.near_duplicates]
        bounds = self.bounds
        for r in records:
            values = r.values
            if values is None:
                continue
            for j, read in enumerate(readers):
                try:
                    key = read(values)
                except KeyError:  # a record without the field is not judged by the rule
                    continue
                if key is None:  # not one the near-duplicate rule's `where` takes
                    continue
                try:
                    h = self.keys.get((r.account, j, key))
                except TypeError:  # an unhashable value: the engine would fail on it too
                    continue
                if h is None:
                    h = self.keys[r.account, j, key] = hash_of(methodology_id, r.account, self.names[j], key)
                near = values.get(timed[j][0]) if timed[j] is not None else None
                if near is None or type(near) is not int:
                    bounds[h] = None
                elif h not in bounds:
                    bounds[h] = [(near - timed[j][1], near + timed[j][1])]
                elif bounds[h] is not None:
                    bounds[h].append((near - timed[j][1], near + timed[j][1]))
        self.hashes = sorted(bounds)
        # what the read probes: (hash, lo, hi), a hash's windows merged where they meet
        # (a late report and today's rides of one key are two short spans, not the
        # month between them); (hash, None, None) for every row of the hash
        self.probes: list[tuple] = []
        for h in self.hashes:
            spans = bounds[h]
            if spans is None:
                self.probes.append((h, None, None))
                continue
            spans.sort()
            lo, hi = spans[0]
            for a, b in spans[1:]:
                if a > hi:
                    self.probes.append((h, lo, hi))
                    lo = a
                hi = max(hi, b)
            self.probes.append((h, lo, hi))

    def __bool__(self) -> bool:
        return bool(self.hashes)


def _reader(names: tuple):
    """values -> the tuple of the named values, as cross_record._judge makes a key (an
    itemgetter: one C call a record)."""
    get = operator.itemgetter(*names)
    return (lambda values: (get(values),)) if len(names) == 1 else get


def _event_reader(rule):
    """values -> the key its event is kept under (channels.event_key), or None when the
    rule's `where` does not take the record."""
    return lambda values: channels.event_key(rule, values) if channels.applies(rule, values) else None


_COLUMNS = "account, rule, key, near, ordinal, record_id"
# one index probe per hash (the OFFSET keeps the planner from flattening the LATERAL
# into a join it may plan as a scan while the table's statistics call it small, as
# _entries and the states' reads say in registry/ledger.py)
# (the index is on (key_hash, near): a `within` rule's events of one key are read by their
# near times, Wanted.bounds)
READ_SQL = (f"SELECT d.* FROM unnest(%(hashes)b::int8[], %(lo)s::int8[], %(hi)s::int8[]) AS wanted(h, lo, hi) "
            f"CROSS JOIN LATERAL (SELECT {_COLUMNS} FROM duplicate_keys WHERE key_hash = wanted.h "
            "AND (wanted.lo IS NULL OR near BETWEEN wanted.lo AND wanted.hi) "
            "AND methodology_id = %(methodology)s OFFSET 0) AS d")


def read_statement(wanted: Wanted) -> tuple[str, dict, bool]:
    """PostgreSQL: the read, as a statement of a pipeline (bulk.pipelined): one probe a
    hash and span (Wanted.probes; the spans of a hash do not meet, so no row twice)."""
    hashes, lo, hi = (list(c) for c in zip(*wanted.probes))
    return READ_SQL, {"hashes": bulk.array(hashes), "lo": bulk.array(lo), "hi": bulk.array(hi),
                      "methodology": wanted.methodology_id}, True


def read(session: Session, wanted: Wanted) -> list[tuple]:
    """The rows (account, rule, key text, near, ordinal, record id) whose hash one of the
    wanted keys has, and, for a `within` rule's events, whose near time lies within the
    wanted bounds of that hash."""
    if not wanted:
        return []
    if bulk.is_postgresql(session):
        return [tuple(row) for row in bulk.pipelined(session, [read_statement(wanted)])[0]]
    t = duplicate_keys.c
    rows: list[tuple] = []
    bounds = wanted.bounds
    for among in bulk.among(session, t.key_hash, wanted.hashes):
        rows.extend(tuple(row) for row in session.execute(
            select(t.account, t.rule, t.key, t.near, t.ordinal, t.record_id, t.key_hash)
            .where(t.methodology_id == wanted.methodology_id, among)))
    return [row[:6] for row in rows if bounds[row[6]] is None
            or (row[3] is not None and any(lo <= row[3] <= hi for lo, hi in bounds[row[6]]))]


class Loaded:
    """What `load` put into the states: the keys per (account, duplicate rule), and the
    count of each near-duplicate rule's events before the credit (those kept since are
    the new ones)."""

    def __init__(self, states: dict[str, AccountState]):
        self.keys: dict[tuple[str, int], set] = defaultdict(set)
        self.counts = {(account, j): events.count for account, state in states.items()
                       for j, events in enumerate(state.near)}


def load(wanted: Wanted, rows: Iterable[tuple], states: dict[str, AccountState]) -> Loaded:
    """Puts into each account's state the stored keys and events whose key equals a
    wanted one (rule and account compared as text, the key in full after parsing)."""
    loaded = Loaded(states)
    for account, rule, text, near, ordinal, record_id in rows:
        j = wanted.index.get(rule)
        state = states.get(account)
        if j is None or state is None:
            continue
        key = parse_key(text)
        if (account, j, key) not in wanted.keys:
            continue
        if j < wanted.plain:
            state.keys[j].add(key)
            loaded.keys[account, j].add(key)
        else:  # the state holds the count of its events and none of them: kept by near time
            insort(state.near[j - wanted.plain].kept.setdefault(key, []), (near, ordinal, record_id))
    return loaded


def new_rows(wanted: Wanted, states: dict[str, AccountState], loaded: Loaded) -> dict[str, list]:
    """The keys the engine accepted in this credit (in the states, not loaded) and the
    events it kept (those after the count before), as the table's columns
    (methodology_id aside, the same for all)."""
    rows: list[tuple] = []
    hashes, hash_of, add = wanted.keys, key_hash, rows.append
    plain = wanted.plain
    for account, state in states.items():
        for j, kept in enumerate(state.keys):
            if not kept:
                continue
            fresh = kept - loaded.keys[account, j] if (account, j) in loaded.keys else kept
            name = wanted.names[j]
            for key in fresh:  # (in no order: the rows are a set)
                h = hashes.get((account, j, key))  # every key accepted came with a record
                if h is None:
                    h = hash_of(wanted.methodology_id, account, name, key)
                add((account, name, h, key_text(key), None, None, None))
        for j, events in enumerate(state.near):
            before = loaded.counts.get((account, j), 0)
            if events.count == before:
                continue
            name = wanted.names[plain + j]
            for key, near, order, record_id in events.since(before):
                h = hashes.get((account, plain + j, key))
                if h is None:
                    h = hash_of(wanted.methodology_id, account, name, key)
                add((account, name, h, key_text(key), near, order, record_id))
    columns = (list(c) for c in zip(*rows)) if rows else ([] for _ in range(7))
    return dict(zip(("account", "rule", "key_hash", "key", "near", "ordinal", "record_id"), columns))


INSERT_SQL = ("INSERT INTO duplicate_keys (methodology_id, account, rule, key_hash, key, near, "
              "ordinal, record_id) SELECT %(methodology)s, u.a, u.r, u.h, u.k, u.n, u.o, u.i FROM "
              "unnest(%(accounts)b::varchar[], %(rules)b::text[], %(hashes)b::int8[], %(keys)b::text[], "
              "%(near)b::int8[], %(ordinal)b::int8[], %(ids)b::text[]) AS u(a, r, h, k, n, o, i)")


def insert_statement(methodology_id: str, columns: dict[str, list]) -> Optional[tuple[str, dict, bool]]:
    """PostgreSQL: the insert of `new_rows`, as a statement of a pipeline (None: nothing
    to insert)."""
    if not columns["key"]:
        return None
    return INSERT_SQL, {"methodology": methodology_id, "accounts": bulk.array(columns["account"]),
                        "rules": bulk.array(columns["rule"]), "hashes": bulk.array(columns["key_hash"]),
                        "keys": bulk.array(columns["key"], json=True), "near": bulk.array(columns["near"]),
                        "ordinal": bulk.array(columns["ordinal"]),
                        "ids": bulk.array(columns["record_id"])}, False


def insert(session: Session, methodology_id: str, columns: dict[str, list]) -> None:
    """The rows inserted (SQLite; PostgreSQL sends insert_statement in a pipeline)."""
    if not columns["key"]:
        return
    if bulk.is_postgresql(session):
        bulk.pipelined(session, [insert_statement(methodology_id, columns)])
        return
    names = list(columns)
    session.execute(duplicate_keys.insert(), [
        {"methodology_id": methodology_id, **dict(zip(names, row))} for row in zip(*columns.values())])


def stored(session: Session, methodology_id: str, account: str) -> dict[str, set[tuple]]:
    """rule part name -> the rows stored for the account, (key text, near, ordinal,
    record id) each (None for a duplicate rule's key) (`tanpu ledger verify`)."""
    t = duplicate_keys.c
    out: dict[str, set[tuple]] = defaultdict(set)
    for rule, text, near, ordinal, record_id in session.execute(select(
            t.rule, t.key, t.near, t.ordinal, t.record_id).where(
            t.methodology_id == methodology_id, t.account == account)):
        out[rule].add((text, near, ordinal, record_id))
    return dict(out)


def of_state(data: dict) -> dict[str, set[tuple]]:
    """rule part name -> the rows a state's JSON (written with keys) stands for, as
    `stored` gives them: what `tanpu ledger verify` compares them with."""
    out: dict[str, set[tuple]] = {}
    for name, part in data.items():
        if not is_key_part(name) or not part or not isinstance(part, list):
            continue
        if not is_event_part(name):  # a duplicate rule's keys
            out[name] = {(text, None, None, None) for text in part}
        else:  # a near-duplicate rule's events, [key, near, order, id] each
            out[name] = {(key_text(tuple(key)), near, order, record_id)
                         for key, near, order, record_id in part}
    return out


def accounts_with_keys(session: Session) -> set[tuple[str, str]]:
    """(methodology, account) of every stored key (`tanpu ledger verify`)."""
    t = duplicate_keys.c
    return {tuple(row) for row in session.execute(select(t.methodology_id, t.account).distinct())}
