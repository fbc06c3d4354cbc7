"""The accounts ledger: what each record earned, credited at most once.

    outcome = ledger.credit(session, integrator, engine.ref, results,
                            idempotency_key="batch-2024-05-20-0001",
                            reason=str(applicable_version(...)))

One call is one transaction (the caller's unit of work): a credit batch row under its
idempotency key, one entry per newly credited record, and one audit entry. UNIQUE
(methodology_id, record_id) makes the database itself refuse a second credit of a
record, whichever version, batch or concurrent transaction tries: entries are inserted
with ON CONFLICT DO NOTHING (PostgreSQL and SQLite), so of two transactions crediting the
same record one inserts it and the other finds it already present, without an error and
without losing either's other records.

Replaying a call with the same idempotency key and the same results writes nothing and
returns the first call's outcome; the same key with different results is a Conflict.
Only `credited` and `capped` results are credited; the others are returned as not
creditable.

Record ids and idempotency keys are each integrator's own (the acting user's): UNIQUE
(integrator_id, methodology_id, record_id) and (actor_id, idempotency_key).

The cross-record rules (caps, duplicate keys, overlaps, windows) hold across requests:
given the methodology's `engine`, `credit` takes the per-record results
(`Engine.evaluate(..., per_record_only=True)`) and applies the rules itself, each account
judged after the state its earlier credits left (`rule_states`, engine/state.py), and
stores the new state in the same transaction. The duplicate rules' keys are rows of
their own (`duplicate_keys`): a credit reads only those equal to the keys its records
bring, and inserts those it accepts (registry/duplicate_keys.py), so what a credit reads
and writes does not grow with the accounts' history. The accounts' state rows are locked first
(in account order, so that two requests never wait for each other in a circle):
PostgreSQL `SELECT ... FOR UPDATE`; SQLite has one writer at a time (BEGIN IMMEDIATE).
So concurrent requests for the same accounts are judged one after the other, and a cap is
never exceeded. Then the record ids are locked (PostgreSQL advisory locks, `_lock_records`),
so two requests crediting one record id to two accounts are judged one after the other
too. A record already credited is not judged again; sent again with other values it is a
conflict, named with the fields that differ.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import operator
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from typing import Iterable, Optional, Sequence

from sqlalchemy import bindparam as sa_bindparam
from sqlalchemy import String, func, select, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, joinedload

from engine import cross_record
from engine.gc_pause import cycle_collector_paused
from engine.result import MethodologyRef, Result
from engine.state import AccountState, read_states, state_texts

from . import accounts, audit, bulk, duplicate_keys, precedence, reversals, users
from .errors import Conflict, Invalid, InvalidTransition, NotFound
from .models import (ACTIVE, CREDIT_STATUSES, PUBLISHED, SUPERSEDED, CreditBatch, CreditEntry,
                     MethodologyVersion, Reversal, RuleState, User, UTCDateTime, utcnow)
from .users import require

CREDITABLE_VERSION_STATES = (PUBLISHED, SUPERSEDED)


@dataclass
class CreditOutcome:
    batch_id: int
    idempotency_key: str
    replayed: bool  # True: this key was seen before; nothing was written now
    new: list[CreditEntry] = field(default_factory=list)  # credited by this batch
    present: list[CreditEntry] = field(default_factory=list)  # credited before, by another batch
    not_creditable: list[Result] = field(default_factory=list)  # status not credited / capped
    # record id -> the fields whose values differ from the record credited under that id
    conflicts: dict[str, list[str]] = field(default_factory=dict)
    judged: dict[str, Result] = field(default_factory=dict)  # after the cross-record rules

    @property
    def new_record_ids(self) -> list[str]:
        return [e.record_id for e in self.new]

    @property
    def present_record_ids(self) -> list[str]:
        return [e.record_id for e in self.present]


def _us_to_datetime(us: Optional[int]) -> Optional[dt.datetime]:
    if us is None:
        return None
    return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=us)


def _creditable(results: Iterable[Result], judged_again: bool = False
                ) -> tuple[dict[str, Result], list[Result]]:
    """(record id → result to credit, results not creditable). A record id given twice
    with different outcomes is refused. `judged_again`: every record that was read is
    chosen (a history window, judged here with the stored state, may credit a record
    the request alone rejected as short of history, and counts every record read)."""
    chosen: dict[str, Result] = {}
    skipped = []
    for r in results:
        if r.status not in CREDIT_STATUSES and not (judged_again and r.status != "invalid"):
            skipped.append(r)
            continue
        if not r.id:
            raise Invalid("a result without a record id cannot be credited")
        if r.id in chosen and _row_fields(chosen[r.id]) != _row_fields(r):
            raise Invalid(f"record {r.id} appears twice with different results")
        chosen[r.id] = r
    return chosen, skipped


def _row_fields(r: Result) -> tuple:
    return (r.id, r.account, r.time, r.status, r.reduction_mg, r.points, r.bonus)


def request_digest(ref: MethodologyRef, results: Sequence[Result], every: bool = False) -> str:
    """`every`: of every record read, not only the creditable ones (a methodology with a
    history window judges them all again: two requests of records rejected alone are
    two requests, not one replayed)."""
    payload = json.dumps({
        "methodology": ref.id, "version": ref.version, "content_hash": ref.content_hash,
        "results": sorted([list(_row_fields(r)) for r in results
                           if r.status in CREDIT_STATUSES or (every and r.status != "invalid")],
                          key=lambda row: row[0])},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _insert(session: Session, table, rows: list[dict], conflict_columns: list[str],
            returning: Sequence[str] = ()) -> list:
    """INSERT ... ON CONFLICT (conflict_columns) DO NOTHING RETURNING `returning` (rows):
    one statement of arrays on PostgreSQL, a cached executemany elsewhere (bulk.py)."""
    return bulk.insert_ignoring(session, table, rows, conflict_columns, returning)


def _entries(session: Session, integrator_id: int, methodology_id: str,
             record_ids: Sequence[str]) -> list[CreditEntry]:
    """The integrator's entries of these records, by record id: read as rows (Core, the
    columns' own result types) and made into detached CreditEntry objects (_entry),
    which costs less than the ORM's loading for a query that usually finds nothing."""
    found: list[CreditEntry] = []
    table = CreditEntry.__table__
    if bulk.is_postgresql(session) and record_ids:
        # one index probe per id (the LIMIT keeps the planner from flattening the
        # LATERAL): with `record_id = ANY(ids)` the planner, whose statistics said the
        # table was small (not analyzed yet since it grew), scanned every entry of the
        # integrator and methodology and compared each with all the ids: 377 ms to read
        # 1,000 ids once the bench's table held 15,000 entries, and growing with it
        ids = func.unnest(sa_bindparam(None, list(record_ids), type_=postgresql.ARRAY(String))
                          ).table_valued("record_id").render_derived(name="wanted")
        probe = (select(table).where(table.c.integrator_id == integrator_id,
                                     table.c.methodology_id == methodology_id,
                                     table.c.record_id == ids.c.record_id).limit(1).lateral("e"))
        found.extend(_entry(**row._mapping) for row in session.execute(
            select(probe).select_from(ids.join(probe, true()))))
        found.sort(key=lambda e: e.record_id)
        return found
    for among in bulk.among(session, table.c.record_id, record_ids):
        found.extend(_entry(**row._mapping) for row in session.execute(select(table).where(
            table.c.integrator_id == integrator_id, table.c.methodology_id == methodology_id,
            among)))
    found.sort(key=lambda e: e.record_id)
    return found


def credit(session: Session, actor, ref: MethodologyRef, results: Sequence[Result], *,
           idempotency_key: Optional[str] = None, reason: str = "", engine=None,
           records: Optional[dict[str, dict]] = None, at_commit: bool = False) -> CreditOutcome:
    """Credits the creditable `results`, evaluated with `ref`, at most once per record.

    `ref` must be a published (or superseded, within its grace period: the caller's
    applicable_version decides) version with its exact content hash. `reason` says why
    that version applied (applicable_version's reason) and is kept on every entry.
    Without an idempotency key the request digest serves as one.

    `engine` (the engine.Engine of `ref`): `results` are per-record results and the
    cross-record rules are applied here with the accounts' stored state (module
    docstring). `records`: record id -> the record as sent, kept on its entry.

    Python's cycle collector is paused meanwhile (engine/gc_pause.py, as the API's views
    pause it for a request's body): a 1,000-record credit makes some 50,000 objects that
    live until it returns and hold no cycles, and the collector ran over them 40 times a
    credit, 9-22 ms of its 80-100 ms of CPU (docs/ledger.md, Session 13).

    `at_commit` (PostgreSQL; the caller's transaction then commits next, sending nothing
    before): the states and the entries are written in the COMMIT's round trip, with the
    audit entry, where they took one of their own (_defer_save_and_insert); the new
    entries' ids are filled in when that round trip comes back (None until then).
    """
    with cycle_collector_paused():
        return _credit(session, actor, ref, results, idempotency_key=idempotency_key,
                       reason=reason, engine=engine, records=records, at_commit=at_commit)


def _credit(session: Session, actor, ref: MethodologyRef, results: Sequence[Result], *,
            idempotency_key: Optional[str], reason: str, engine, records: Optional[dict[str, dict]],
            at_commit: bool = False) -> CreditOutcome:
    acting = None
    if isinstance(actor, int) and bulk.is_postgresql(session):
        acting = actor  # read with the batch's insert, in one round trip (_pipelined_batch)
    else:
        actor = _actor(session, actor)
        require(users.can_credit(actor))
    results = list(results)
    judged_again = engine is not None and bool(engine.rules.histories)
    chosen, skipped = _creditable(results, judged_again)
    digest = request_digest(ref, results, judged_again)
    key = idempotency_key or f"digest:{digest}"
    if len(key) > 200:
        raise Invalid("an idempotency key has at most 200 characters")

    # The batch first: a concurrent call with the same key waits here for ours to commit.
    # Made only if the version is creditable with this content hash (one statement: the
    # version's read and the batch's insert); when nothing is made, _check_version says why
    # (the version, or the key seen before: a replay).
    now = utcnow()
    values = {"idempotency_key": key, "request_digest": digest,
              "actor_id": acting if acting is not None else actor.id,
              "methodology_id": ref.id, "version": ref.version, "content_hash": ref.content_hash,
              "created_at": now}
    # the other methodologies' versions, for the `precedes` relations, when they matter
    # (a methodology that covers no activity has none): read in the same pipeline
    # and the integrator's known account ids (accounts.resolve_statuses), in the same
    # pipeline
    meta = engine.methodology.metadata if engine is not None else None
    versions = known = None
    if acting is not None:
        asks = bool(chosen and meta is not None and meta.covers)
        ids = ({r.account for r in chosen.values()} if engine is not None and chosen else None)
        actor, batch_ids, versions, known = _pipelined_batch(
            session, acting, values, ref.id if asks else None, ids)
    else:
        batch_ids = _insert_batch(session, values)
    if not batch_ids:
        _check_version(session, ref)
        return _replay(session, actor.id, key, digest, ref, chosen, skipped)
    batch_id = batch_ids[0]

    conflicts: dict[str, list[str]] = {}
    judged: dict[str, Result] = {}
    states = rules = None
    new_keys = None  # the duplicate rules' keys accepted now (duplicate_keys.new_rows)
    created: list = []
    across = precedence.Found()
    present: dict[str, CreditEntry] = {}
    if engine is not None:
        # each integrator's account id -> its platform account, which the rules and the
        # entries are about: one person seen by two integrators is one account
        platform = accounts.resolve_statuses(session, actor.id,
                                             {r.account for r in chosen.values()},
                                             created=created, known=known) if chosen else {}
        chosen = {record_id: _on_account(r, str(platform[r.account][0]))
                  for record_id, r in chosen.items()}
        shut = {str(a): status for a, status in platform.values() if status != ACTIVE}
        # methodologies covering the same activity with a `precedes` order between them
        # (registry/precedence.py): their credits of these accounts are judged one after
        # the other, the accounts' rows locked before the states (as reversals lock them)
        # (a methodology that covers no activity has none: no read)
        related = (precedence.relations(session, ref.id, meta.covers, meta.precedes, versions)
                   if chosen and meta.covers else [])
        if related:
            precedence.lock_accounts(session, [r.account for r in chosen.values()])
        # the accounts' states first: a concurrent request for them waits here until
        # ours commits, and then sees our entries and our state
        rules = engine.rules
        stateful = (rules.has_cross_record_rules or rules.histories) and chosen
        # the record ids locked (after every account and state lock, in one order), so
        # that of two requests crediting one record id to two accounts the second waits,
        # finds the first's entry below, and answers a conflict: its account's state never
        # counts a record it did not credit. Records credited before are not judged
        # again; the others are, after the state. (_lock_and_read: on PostgreSQL two
        # round trips for all of it.)
        # the keys the records bring, for the duplicate rules: only the stored keys equal
        # to one of them are read (registry/duplicate_keys.py), with the locks
        wanted = (duplicate_keys.Wanted(ref.id, rules, chosen.values())
                  if stateful and (rules.duplicates or rules.near_duplicates) else None)
        states, found, key_rows = _lock_and_read(
            session, rules, ref.id, sorted({r.account for r in chosen.values()}) if stateful else None,
            now, actor.id, chosen, wanted)
        loaded = duplicate_keys.load(wanted, key_rows, states) if wanted is not None else None
        present = {e.record_id: e for e in found}
        for record_id, entry in present.items():
            differ = _differing(entry.record, (records or {}).get(record_id))
            if differ:
                conflicts[record_id] = differ
        fresh = [r for record_id, r in chosen.items() if record_id not in present]
        if rules.histories and states is not None:
            # the history windows, evaluated per request without the state, again with it
            engine.apply_history(fresh, states)
        for r in fresh:  # a frozen or closed account receives nothing
            if r.account in shut:
                r.status, r.code = "rejected", f"ACCOUNT_{shut[r.account].upper()}"
                r.message = f"the account is {shut[r.account]}: it receives no credits"
                r.reduction_mg = r.points = 0
        # the same activity credited under a related methodology: before the rules judge,
        # so that a record not credited leaves nothing in the state
        across = precedence.find(session, related, [r for r in fresh if r.status in CREDIT_STATUSES],
                                 records or {}, _us_to_datetime)
        for r in fresh:
            if r.id in across.blocked:
                r.status, (r.code, r.message) = "duplicate", across.blocked[r.id]
                r.reduction_mg = r.points = 0
        cross_record.apply(fresh, rules, engine.recompute_points, state=states)
        if wanted is not None:
            new_keys = duplicate_keys.new_rows(wanted, states, loaded)
        judged = {r.id: r for r in fresh}
        chosen = {r.id: r for r in fresh if r.status in CREDIT_STATUSES}
        skipped = skipped + [r for r in fresh if r.status not in CREDIT_STATUSES]

    # Sorted by record id, so that concurrent batches lock index entries in one order.
    # Column by column (one list per column that varies, one value for those that do
    # not): what the INSERT's arrays, the audit digest and the outcome's entries are made
    # of, without a dict per row transposed again (_EntryColumns).
    columns = _EntryColumns(sorted(chosen.items()), records or {})
    constant = {"batch_id": batch_id, "integrator_id": actor.id, "methodology_id": ref.id,
                "version": ref.version, "content_hash": ref.content_hash, "reason": reason,
                "credited_at": now}
    # the states saved and the entries inserted (one round trip on PostgreSQL, or none of
    # their own: sent with the COMMIT when the caller asks and nothing needs their ids)
    deferred = (at_commit and engine is not None and columns.record_id and not across.displaces
                and bulk.is_postgresql(session) and audit.commits_with_chain(session))
    if deferred:
        inserted = dict.fromkeys(columns.record_id)  # all of them, or the commit fails (Raced)
    else:
        inserted = dict((record_id, entry_id) for entry_id, record_id in _save_and_insert(
            session, rules, ref.id, states, now, columns, constant, new_keys))
    # The outcome from what was inserted (no reading back), and the entries credited
    # before: read before judging, plus any a concurrent transaction committed since
    # (not inserted here, yet not read then; usually none, so no query).
    new = columns.entries(inserted, constant)
    if deferred:
        _defer_save_and_insert(session, rules, ref.id, states, now, columns, constant, new, new_keys)
    # a credit under a methodology this one precedes, of an activity just credited here,
    # is reversed (after our entries, so the points balance counts them)
    displaced = []
    if engine is not None and across.displaces:
        for entry in new:
            for other in across.displaces.get(entry.record_id, ()):
                reversals.reverse(session, None, other, reason=(
                    f"preceded: the same activity was credited under {ref.id} "
                    f"(record {entry.record_id}, entry {entry.id}), which takes precedence"))
                displaced.append(other)
    raced = [record_id for record_id in chosen if record_id not in inserted and record_id not in present]
    present_entries = sorted([*present.values(), *_entries(session, actor.id, ref.id, raced)],
                             key=lambda e: e.record_id)
    # appended when the transaction commits: the chain's lock is then held only for the
    # commit, not while the caller goes on (audit.append_at_commit)
    audit.append_at_commit(session, actor.id, "ledger.credit", "credit_batch", batch_id, {
        "idempotency_key": key, "request_digest": digest, "methodology": ref.id,
        "version": ref.version, "content_hash": ref.content_hash,
        "new": len(new), "already_present": len(present_entries), "not_creditable": len(skipped),
        **columns.sums(inserted),
        "entries_digest": columns.digest(inserted, constant),
        **({"accounts_created": created} if created else {}),
        **({"reversed_preceded": displaced} if displaced else {})})
    return CreditOutcome(batch_id, key, False, new, present_entries, skipped, conflicts, judged)


def _actor(session: Session, actor) -> Optional[User]:
    """users.actor_in, the user and its roles read in one statement (a join) rather than
    two: one round trip less per credit."""
    if not isinstance(actor, int):
        return users.actor_in(session, actor)
    found = session.get(User, actor, options=[joinedload(User.role_rows)])
    if found is None:
        raise NotFound(f"no user {actor}")
    return found


@dataclass(frozen=True)
class _Acting:
    """The acting user as users.can_credit reads it (active, roles), read by one raw
    statement; the rest of a credit needs only its id."""
    id: int
    active: bool
    roles: frozenset


# _insert_batch's statement, written out (for the pipeline); EXISTS: no batch row for a
# user that does not exist (its foreign key would fail the statement before the user's
# row, read with it, says so)
_PG_BATCH = ("INSERT INTO credit_batches (idempotency_key, request_digest, actor_id, methodology_id, "
             "version, content_hash, created_at) SELECT %(idempotency_key)s::text, "
             "%(request_digest)s::text, %(actor_id)s::int, %(methodology_id)s::text, %(version)s::text, "
             "%(content_hash)s::text, %(created_at)s::timestamptz FROM methodology_versions AS v "
             "WHERE v.methodology_id = %(methodology_id)s::text AND v.version = %(version)s::text "
             "AND v.content_hash = %(content_hash)s::text AND v.state IN ("
             + ", ".join(f"'{state}'" for state in CREDITABLE_VERSION_STATES) + ") "
             "AND EXISTS (SELECT 1 FROM users WHERE id = %(actor_id)s::int) "
             "ON CONFLICT (actor_id, idempotency_key) DO NOTHING RETURNING id")
# The acting user (active, its roles) read and the batch made (_PG_BATCH, in a
# data-modifying WITH, which runs whether or not its rows are read) in one statement,
# where they were two of the pipeline: one statement's psycopg Python less a credit
# (docs/ledger.md, Session 18). No user: no row, and no batch (_PG_BATCH's EXISTS).
_PG_ACTOR_AND_BATCH = ("WITH b AS (" + _PG_BATCH + ") SELECT u.active, ARRAY(SELECT r.role FROM "
                       "user_roles r WHERE r.user_id = u.id), ARRAY(SELECT id FROM b) FROM users u "
                       "WHERE u.id = %(actor_id)s::int")


def _pipelined_batch(session: Session, actor_id: int, values: dict,
                     versions_of: Optional[str] = None, account_ids: Optional[set] = None
                     ) -> tuple[_Acting, list[int], Optional[list], Optional[list]]:
    """PostgreSQL: the acting user (its roles) read and the batch row made (_insert_batch)
    in one statement (_PG_ACTOR_AND_BATCH) of one round trip (bulk.pipelined) where they
    took two round trips: a single-record credit's
    latency is its round trips (docs/ledger.md, Session 9). The permission is checked on
    the answer (users.can_credit, as before); when it is refused, the batch row made is
    left to the rollback that an error always calls for (one call is the caller's unit
    of work: tests/registry/test_ledger.py checks nothing is left). `versions_of`: the
    methodology whose related methodologies' versions are read too (precedence.PG_VERSIONS,
    the second statement; None without). `account_ids`: the integrator's account ids
    whose known accounts and statuses are read too (accounts.known_statuses, the last;
    None without)."""
    statements = [(_PG_ACTOR_AND_BATCH, values, True)]
    if versions_of is not None:
        statements.append((precedence.PG_VERSIONS, {"methodology": versions_of}, True))
    if account_ids:
        statements.append((*accounts.known_statuses(actor_id, account_ids), True))
    found, *rest = bulk.pipelined(session, statements)
    versions = rest.pop(0) if versions_of is not None else None
    known = rest.pop(0) if account_ids else None
    if not found:
        raise NotFound(f"no user {actor_id}")
    active, roles, batch = found[0]
    acting = _Acting(actor_id, bool(active), frozenset(roles or ()))
    require(users.can_credit(acting))
    return acting, list(batch or ()), versions, known


def _insert_batch(session: Session, values: dict) -> list[int]:
    """The batch row made (its id), only if the version `values` names is creditable with
    its content hash: `INSERT ... SELECT ... FROM methodology_versions WHERE ...` in one
    statement, where reading the version first took one more. Nothing made: the version
    is not creditable (_check_version says why) or the key was seen (ON CONFLICT)."""
    table, versions = CreditBatch.__table__, MethodologyVersion.__table__
    source = select(*(sa_bindparam(f"b_{c}", v, type_=table.c[c].type) for c, v in values.items())
                    ).where(versions.c.methodology_id == values["methodology_id"],
                            versions.c.version == values["version"],
                            versions.c.content_hash == values["content_hash"],
                            versions.c.state.in_(CREDITABLE_VERSION_STATES))
    insert = postgresql.insert if bulk.is_postgresql(session) else sqlite.insert
    statement = (insert(table).from_select(list(values), source)
                 .on_conflict_do_nothing(index_elements=["actor_id", "idempotency_key"])
                 .returning(table.c.id))
    return list(session.scalars(statement))


def _check_version(session: Session, ref: MethodologyRef) -> None:
    """Raises why `ref` is not creditable (no such version, another content hash, not in
    a creditable state); returns when it is."""
    version = session.execute(select(MethodologyVersion.content_hash, MethodologyVersion.state)
                              .where(MethodologyVersion.methodology_id == ref.id,
                                     MethodologyVersion.version == ref.version)).first()
    if version is None:
        raise NotFound(f"no version {ref.version} of {ref.id}")
    if version.content_hash != ref.content_hash:
        raise Invalid(f"{ref.id} {ref.version} has content hash {version.content_hash}, "
                      f"not {ref.content_hash}")
    if version.state not in CREDITABLE_VERSION_STATES:
        raise InvalidTransition(f"{ref.id} {ref.version} is {version.state}: nothing is credited with it")


_ENTRY_COLUMNS = [c.name for c in CreditEntry.__table__.c]
_ENTRY_TIMES = [c.name for c in CreditEntry.__table__.c if isinstance(c.type, UTCDateTime)]
# the integrator's entries of these record ids, one index probe per id (as _entries)
_PG_ENTRIES = ("SELECT e.* FROM unnest(%(ids)b::varchar[]) AS wanted(record_id) CROSS JOIN LATERAL "
               f"(SELECT {', '.join(_ENTRY_COLUMNS)} FROM credit_entries WHERE integrator_id = "
               "%(integrator)s AND methodology_id = %(methodology)s AND record_id = wanted.record_id "
               "LIMIT 1) AS e")


def _lock_and_read(session: Session, rules, methodology_id: str, accounts: Optional[list[str]],
                   now, integrator_id: int, chosen: dict[str, Result],
                   wanted: Optional[duplicate_keys.Wanted] = None
                   ) -> tuple[Optional[dict[str, AccountState]], list[CreditEntry], list[tuple]]:
    """(the accounts' states, locked: _lock_states; None without `accounts`), then the
    record ids locked (_lock_records) and the integrator's entries of them read
    (_entries), in this order; then the stored duplicate keys `wanted` (rows,
    duplicate_keys.read: after the states' locks, so what their previous holders
    committed). On PostgreSQL in two round trips instead of three to five:
    the existing state rows locked (which says which are missing), then in one pipeline
    (bulk.pipelined) the missing rows made and locked, the record locks and the read; for
    up to _MAKE_FIRST_UP_TO accounts in one, every row made if missing and locked there.
    The server runs a pipeline's statements one after the other, each with its own
    snapshot, so the read sees what the locks' previous holders committed, and the locks
    are taken in the order argued in _lock_states and _lock_records."""
    if not bulk.is_postgresql(session):
        states = _lock_states(session, rules, methodology_id, accounts, now) if accounts else None
        _lock_records(session, integrator_id, methodology_id, chosen)
        found = _entries(session, integrator_id, methodology_id, sorted(chosen))
        return states, found, duplicate_keys.read(session, wanted) if wanted else []
    if accounts and len(accounts) <= _MAKE_FIRST_UP_TO:
        # few accounts: every row made if missing (ON CONFLICT DO NOTHING) and all locked,
        # in the pipeline below: one round trip for the whole of it
        stored, missing = {}, list(accounts)
    else:
        stored = _locked_states(session, methodology_id, accounts) if accounts else {}
        missing = [a for a in accounts or () if a not in stored]
    statements = []
    if missing:
        listed = bulk.array(missing)
        statements += [(_PG_MAKE_STATES, {"methodology": methodology_id, "now": now,
                                          "accounts": listed}, False),
                       (_PG_LOCK_STATES, {"methodology": methodology_id, "accounts": listed}, True)]
    if chosen:
        statements += [(_PG_LOCK_RECORDS, {"ns": _PG_RECORD_NAMESPACE, "keys": bulk.array(_record_keys(
                            integrator_id, methodology_id, chosen))}, False),
                       (_PG_ENTRIES, {"ids": bulk.array(sorted(chosen)), "integrator": integrator_id,
                                      "methodology": methodology_id}, True)]
    if wanted:
        statements.append(duplicate_keys.read_statement(wanted))
    answers = bulk.pipelined(session, statements) if statements else []
    key_rows = answers.pop() if wanted else []
    if missing:
        stored.update(answers[1])
    states = read_states(rules, accounts, stored) if accounts else None
    found = []
    for row in answers[-1] if chosen else ():
        values = dict(zip(_ENTRY_COLUMNS, row))
        for name in _ENTRY_TIMES:  # as UTCDateTime gives them
            if values[name] is not None:
                values[name] = values[name].astimezone(dt.timezone.utc)
        found.append(_entry(**values))
    found.sort(key=lambda e: e.record_id)
    return states, found, key_rows


# Up to this many accounts, _lock_and_read makes the missing state rows and locks them all
# in one pipeline without first locking those that exist (which says which are missing):
# one round trip less for a small credit (a single record: 9 round trips to 8), at the cost
# of an INSERT probing every account's row, which for 1,000 accounts that all exist took
# 20-40 ms on a loaded server (hence the two steps for larger requests). Making every row
# first, then locking in account order, takes no lock out of order among small requests;
# against a large one that locked an existing row and then makes one a small request has
# just made, the two wait for each other: PostgreSQL fails one and it is run again
# (Database.retried), as for the rare cycle _lock_states describes.
_MAKE_FIRST_UP_TO = 128


def _save_and_insert(session: Session, rules, methodology_id: str,
                     states: Optional[dict[str, AccountState]], now, columns: "_EntryColumns",
                     constant: dict, new_keys: Optional[dict] = None) -> list:
    """The accounts' new states saved (_save_states), the duplicate keys accepted now
    inserted (`new_keys`, duplicate_keys.new_rows), then the entries inserted ON
    CONFLICT DO NOTHING (`columns`, with the `constant` columns): [(entry id, record id)]
    of those inserted. On PostgreSQL in one round trip (bulk.pipelined): the states and
    the entries in one statement, the keys in a second."""
    conflict = ["integrator_id", "methodology_id", "record_id"]
    if not bulk.is_postgresql(session):
        if states:
            _save_states(session, rules, methodology_id, states, now)
        if new_keys:
            duplicate_keys.insert(session, methodology_id, new_keys)
        return _insert(session, CreditEntry.__table__, columns.rows(constant), conflict,
                       ["id", "record_id"])
    save = (_PG_SAVE_STATES, _save_params(rules, methodology_id, states, now), False) if states else None
    keys = duplicate_keys.insert_statement(methodology_id, new_keys) if new_keys else None
    if not columns.record_id:
        writes = [statement for statement in (save, keys) if statement is not None]
        if writes:
            bulk.pipelined(session, writes)
        return []
    sql, params = bulk.pg_insert_columns(CreditEntry.__table__, columns.varying(), constant,
                                         conflict, ["id", "record_id"], json=["record"])
    if save is not None:
        # one statement: the states' UPDATE in a data-modifying WITH (it runs whether or not
        # its rows are read; the two touch different tables, so sharing one snapshot changes
        # nothing), one statement's psycopg Python less a credit (docs/ledger.md, Session 18)
        sql, params = _with_states_saved(sql), {**save[1], **params}
    return bulk.pipelined(session, [(sql, params, True)] + ([keys] if keys else []))[0]


# The entries' INSERT (with the states' UPDATE, or alone) sent at commit, guarded: when
# ON CONFLICT skipped any of the entries (a record credited by a transaction that took
# no record lock: none of ours does, but the database is not only ours), the count
# differs and the division fails the statement, the rest of its pipeline (the audit entry,
# whose figures assumed them all) and the COMMIT with it. `g.ok` is selected so that it is
# evaluated; the LEFT JOIN gives it a row when nothing was inserted.
_GUARD = (" SELECT ins.id, ins.record_id, g.ok FROM (SELECT 1 / (CASE WHEN (SELECT count(*) FROM ins)"
          " = %(expected)s::bigint THEN 1 ELSE 0 END) AS ok) AS g LEFT JOIN ins ON true")
_DIVISION_BY_ZERO = "22012"
_GUARDED: dict[tuple[str, bool], str] = {}


def _defer_save_and_insert(session: Session, rules, methodology_id: str,
                           states: Optional[dict[str, AccountState]], now, columns: "_EntryColumns",
                           constant: dict, new: list[CreditEntry],
                           new_keys: Optional[dict] = None) -> None:
    """_save_and_insert's writes (one statement) sent at the head of the session's next
    pipeline (bulk.defer): the COMMIT's, with the chain's lock and the audit entry, where
    they took a round trip of their own (5 → 4 a single-record credit over HTTP;
    docs/ledger.md, Session 18). The outcome and the audit entry are made before, from
    the entries to insert: every one of them is inserted, since each record id is locked
    (_lock_records) and was read after its lock (_lock_and_read). That no transaction
    inserted one without the lock meanwhile is checked by the statement itself (_GUARD):
    if one did, the transaction fails with bulk.Raced, and Database.retried runs it again,
    which then finds that entry present. The new entries' ids are set when the rows come
    back."""
    conflict = ["integrator_id", "methodology_id", "record_id"]
    insert_sql, params = bulk.pg_insert_columns(CreditEntry.__table__, columns.varying(), constant,
                                                conflict, ["id", "record_id"], json=["record"])
    key = (insert_sql, bool(states))
    sql = _GUARDED.get(key)
    if sql is None:
        sql = _GUARDED[key] = ("WITH " + (f"s AS ({_PG_SAVE_STATES}), " if states else "")
                               + f"ins AS ({insert_sql})" + _GUARD)
    if states:
        params = {**_save_params(rules, methodology_id, states, now), **params}
    params["expected"] = len(columns.record_id)
    # every entry is inserted, so `new` is in the columns' order (_EntryColumns.entries)
    by_record = dict(zip(columns.record_id, new))

    def answer(rows) -> None:
        for entry_id, record_id, _ok in rows:
            if entry_id is not None:  # (the guard's row alone when nothing was inserted)
                by_record[record_id].__dict__["id"] = entry_id

    bulk.defer(session, (sql, params, True), answer, raced=_DIVISION_BY_ZERO)
    keys = duplicate_keys.insert_statement(methodology_id, new_keys) if new_keys else None
    if keys is not None:  # the duplicate keys accepted now, in the same pipeline
        bulk.defer(session, keys, lambda rows: None)


_WITH_SAVED: dict[str, str] = {}


def _with_states_saved(insert_sql: str) -> str:
    """`WITH s AS (_PG_SAVE_STATES) <insert_sql>`, built once per INSERT text (the cache
    key of psycopg's prepared statements: its text must not change). The INSERT's
    parameters are named c0, c1, ...; the UPDATE's are not."""
    sql = _WITH_SAVED.get(insert_sql)
    if sql is None:
        sql = _WITH_SAVED[insert_sql] = f"WITH s AS ({_PG_SAVE_STATES}) {insert_sql}"
    return sql


class _EntryColumns:
    """The entries a credit inserts, column by column (the columns whose value differs
    from entry to entry; those that do not, the batch, the version, the time, are given
    apart as `constant`), in record-id order. The INSERT's arrays, the audit digest and
    the outcome's entries are made from these lists; a dict per entry, transposed again
    for the arrays and read again attribute by attribute from a CreditEntry for the
    digest, was a quarter of a 1,000-record credit's Python (docs/ledger.md, Session 13)."""

    _READ = operator.attrgetter("account", "time", "reduction_mg", "points", "bonus", "status",
                                "code", "message", "counters")

    def __init__(self, chosen: list[tuple[str, Result]], records: dict[str, dict]):
        self.record_id = [record_id for record_id, _ in chosen]
        read = self._READ
        (self.account, times, self.reduction_mg, self.points, self.bonus, self.status, codes,
         messages, counters) = (list(c) for c in zip(*(read(r) for _, r in chosen))) if chosen else (
            [] for _ in range(9))
        self.activity_time = [_us_to_datetime(t) for t in times]
        # a credited record's code and message are empty (its evaluation's may not be)
        self.code = [c if s != "credited" else "" for c, s in zip(codes, self.status)]
        self.message = [m if s != "credited" else "" for m, s in zip(messages, self.status)]
        get = records.get
        self.record = [_record_text(get(record_id)) for record_id in self.record_id]
        self.counters = [";".join(c) for c in counters]

    _NAMES = ("record_id", "account", "activity_time", "reduction_mg", "points", "bonus",
              "status", "code", "message", "record", "counters")

    def varying(self) -> dict[str, list]:
        return {name: getattr(self, name) for name in self._NAMES}

    def rows(self, constant: dict) -> list[dict]:
        """A dict per entry (SQLite's executemany)."""
        return [{**constant, **dict(zip(self._NAMES, values))}
                for values in zip(*(getattr(self, name) for name in self._NAMES))]

    def _inserted(self, inserted: dict[str, int]) -> list[int]:
        return [i for i, record_id in enumerate(self.record_id) if record_id in inserted]

    def entries(self, inserted: dict[str, int], constant: dict) -> list[CreditEntry]:
        """The entries inserted (`inserted`: record id -> entry id), as detached CreditEntry
        objects (_entry)."""
        names = self._NAMES
        out = []
        # the rows by zip (in C) rather than each column indexed per entry
        for record_id, row in zip(self.record_id, zip(*(getattr(self, name) for name in names))):
            if record_id not in inserted:
                continue
            entry_id = inserted[record_id]  # None until a deferred INSERT's rows come back
            entry = _NEW_ENTRY()
            values = entry.__dict__
            values.update(constant)
            values.update(zip(names, row))
            values["id"] = entry_id
            out.append(entry)
        return out

    def sums(self, inserted: dict[str, int]) -> dict[str, int]:
        """The audit entry's `reduction_mg` and `points` (with the bonuses) of the entries
        inserted, summed over the columns (in C) rather than read back from each entry
        through SQLAlchemy's attribute descriptors."""
        if len(inserted) == len(self.record_id):  # all of them (always, when deferred)
            mg, points, bonus = self.reduction_mg, self.points, self.bonus
        else:
            at = self._inserted(inserted)
            mg, points, bonus = ([column[i] for i in at]
                                 for column in (self.reduction_mg, self.points, self.bonus))
        return {"reduction_mg": sum(mg), "points": sum(points) + sum(bonus)}

    def digest(self, inserted: dict[str, int], constant: dict) -> str:
        """audit.ledger_digest of the entries inserted, from the columns."""
        at = self._inserted(inserted)
        m, v, h, why = (constant["methodology_id"], constant["version"], constant["content_hash"],
                        constant["reason"])
        return audit.ledger_digest_rows([(
            self.record_id[i], self.account[i], m, v, h, self.activity_time[i],
            self.reduction_mg[i], self.points[i], self.bonus[i], self.status[i], self.code[i],
            self.message[i], why, self.record[i], self.counters[i]) for i in at])


def _entry(**values) -> CreditEntry:
    """A CreditEntry holding `values` (every column), made without SQLAlchemy's event per
    attribute set (a fifth of a 1,000-record credit went there): the outcome's entries
    are in the database already and are only read, never added to a session."""
    entry = _NEW_ENTRY()
    entry.__dict__.update(values)
    return entry


_NEW_ENTRY = CreditEntry._sa_class_manager.new_instance


# pg_advisory_xact_lock(namespace, key) for record ids: the two-int key space, apart from
# the one-bigint keys of the audit chain and the hierarchy; 'tnpr' as a 32-bit int
_PG_RECORD_NAMESPACE = 0x746E7072
_PG_LOCK_RECORDS = ("SELECT pg_advisory_xact_lock(%(ns)s, k) FROM "
                    "(SELECT DISTINCT unnest(%(keys)b::int4[]) AS k ORDER BY k) AS t")


def _lock_records(session: Session, integrator_id: int, methodology_id: str,
                  chosen: dict[str, Result]) -> None:
    """Transaction locks on the integrator's record ids (PostgreSQL; SQLite has one writer).
    Keys are 32-bit hashes: two ids sharing one only wait for each other. Taken after the
    accounts' and states' locks, in key order in one statement: a holder of record locks
    waits for no lock that a credit takes before its record locks, so no cycle of waits
    forms (a reversal of a preceded credit waits for that methodology's state row, which
    its credits take only after the account rows this credit holds: registry/precedence.py)."""
    if not chosen or not bulk.is_postgresql(session):
        return
    session.connection().exec_driver_sql(_PG_LOCK_RECORDS, {
        "ns": _PG_RECORD_NAMESPACE,
        "keys": bulk.array(_record_keys(integrator_id, methodology_id, chosen))})


def _record_keys(integrator_id: int, methodology_id: str, chosen) -> list[int]:
    return sorted({int.from_bytes(hashlib.blake2b(
        f"{integrator_id}\x1f{methodology_id}\x1f{record_id}".encode("utf-8"), digest_size=4).digest(),
        "big", signed=True) for record_id in chosen})


def _lock_states(session: Session, rules, methodology_id: str, accounts: list[str],
                 now) -> dict[str, AccountState]:
    """The accounts' stored states, their rows locked until the transaction ends: the
    rows that exist locked first, in account order (one statement); then the missing
    ones made, in account order, and locked in turn (the rows made now are ours; a row
    another transaction made meanwhile is waited for by ON CONFLICT, then read). Usually
    every account has its row: one statement, where making them all first took one more,
    and 20-40 ms of probes for 1,000 known accounts on a loaded server.

    Not free of cycles, rarely: T1 finds neither x's nor y's row; T3 makes x's and
    commits; T2 finds x's and locks it; T1 makes y's and waits for x's; T2 makes y's and
    waits for T1 (tests/webui/test_api_state.py plays it step by step). PostgreSQL fails
    one of them with a deadlock, and its caller's transaction is run again whole
    (Database.retried, for /credits and for a job's chunks): the second time every row
    exists and is locked in account order. Making every row first (one statement more
    on every credit) would avoid it; a retry costs only the rare loser."""
    stored = _locked_states(session, methodology_id, accounts)
    missing = [a for a in accounts if a not in stored]
    if missing:
        if bulk.is_postgresql(session):
            session.connection().exec_driver_sql(_PG_MAKE_STATES, {
                "methodology": methodology_id, "now": now, "accounts": bulk.array(missing)})
        else:
            _insert(session, RuleState.__table__, [
                {"methodology_id": methodology_id, "account": a, "state": "", "updated_at": now}
                for a in missing], ["methodology_id", "account"])
        stored.update(_locked_states(session, methodology_id, missing))
    return read_states(rules, accounts, stored)


def _locked_states(session: Session, methodology_id: str, accounts: list[str]) -> dict[str, str]:
    """account -> its stored state text, for the accounts that have a row, each row locked
    (FOR UPDATE, in account order)."""
    stored: dict[str, str] = {}
    if bulk.is_postgresql(session):
        # one index probe per account, each row locked as it is found, in the array's
        # order (sorted): as _entries reads, ANY was planned as a scan of the methodology's
        # states compared with every account while the table was not analyzed
        stored.update(session.connection().exec_driver_sql(_PG_LOCK_STATES, {
            "methodology": methodology_id, "accounts": bulk.array(sorted(accounts))}).all())
        return stored
    for among in bulk.among(session, RuleState.account, accounts):
        for row in session.execute(
                select(RuleState.account, RuleState.state)
                .where(RuleState.methodology_id == methodology_id, among)
                .order_by(RuleState.account).with_for_update()):
            stored[row.account] = row.state
    return stored


# PostgreSQL, each one statement of arrays (see bulk.py): the missing state rows made (ON
# CONFLICT: a row another transaction is making, not yet visible, is waited for).
_PG_MAKE_STATES = ("INSERT INTO rule_states (methodology_id, account, state, updated_at) "
                   "SELECT %(methodology)b, a, '', %(now)b FROM unnest(%(accounts)b::varchar[]) AS a "
                   "ON CONFLICT (methodology_id, account) DO NOTHING")
_PG_LOCK_STATES = ("SELECT s.account, s.state FROM unnest(%(accounts)b::varchar[]) AS wanted(account) "
                   "CROSS JOIN LATERAL (SELECT account, state FROM rule_states WHERE methodology_id = "
                   "%(methodology)s AND account = wanted.account LIMIT 1 FOR UPDATE) AS s")
# The states written: each account's row found by one index probe (LATERAL, as they were
# locked), then updated by its tuple id. As `UPDATE ... FROM unnest(...) WHERE s.account =
# v.account` it was planned, whenever the planner's statistics call the table small (not
# analyzed since it grew, or a server's prepared statement planned while it was small), as
# a hash join over every state row of the methodology: 26 ms of 37 for 1,000 accounts
# among 40,000 rows, growing with the table (docs/ledger.md, Session 19). The rows are
# locked by this transaction (FOR UPDATE, or made by it), so their tuple ids hold.
_PG_SAVE_STATES = ("UPDATE rule_states AS s SET state = v.state, updated_at = %(now)s "
                   "FROM (SELECT r.tid, w.state FROM unnest(%(accounts)b::varchar[], "
                   "%(states)b::text[]) AS w(account, state) CROSS JOIN LATERAL (SELECT ctid AS tid "
                   "FROM rule_states WHERE methodology_id = %(methodology)s AND account = w.account "
                   "LIMIT 1) AS r) AS v WHERE s.ctid = v.tid")


def _save_states(session: Session, rules, methodology_id: str, states: dict[str, AccountState],
                 now) -> None:
    if bulk.is_postgresql(session):
        session.connection().exec_driver_sql(_PG_SAVE_STATES, _save_params(
            rules, methodology_id, states, now))
        return
    texts = state_texts(rules, states)
    table = RuleState.__table__
    session.execute(
        table.update()
        .where(table.c.methodology_id == methodology_id, table.c.account == sa_bindparam("b_account"))
        .values(state=sa_bindparam("b_state"), updated_at=now),
        [{"b_account": a, "b_state": text} for a, text in texts.items()])


def _save_params(rules, methodology_id: str, states: dict[str, AccountState], now) -> dict:
    # without the duplicate keys: those are rows of their own (duplicate_keys)
    texts = state_texts(rules, states)
    return {"now": now, "accounts": bulk.array(list(texts)), "states": bulk.array(list(texts.values()), json=True),
            "methodology": methodology_id}


def _on_account(result: Result, account: str) -> Result:
    """A copy of the result on the platform account (the caller's result is left as it
    was): its fields read by one attrgetter and given to Result positionally, 0.9 µs
    against 5.4 µs for dataclasses.replace or copy.copy (which read and set each field
    by name), for every record of a credit."""
    values = list(_RESULT_VALUES(result))
    values[_ACCOUNT_AT] = account
    return Result(*values)


_RESULT_FIELDS = [f.name for f in dataclass_fields(Result)]
assert all(f.init for f in dataclass_fields(Result))  # every field is an __init__ argument
_RESULT_VALUES = operator.attrgetter(*_RESULT_FIELDS)
_ACCOUNT_AT = _RESULT_FIELDS.index("account")


# json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
# with the encoder made once (json.dumps makes one per call when given options); the same
# text, byte for byte
_RECORD_TEXT = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                                default=str)


def _made_once(encoder: json.JSONEncoder):
    """encoder.encode, with json's C encoder made once rather than on every call (as
    JSONEncoder.iterencode does): the same text, a third less time for the record of
    every entry of a credit. Without the check for cycles: a record read from JSON or a
    file holds none (one would recurse until Python stops it, rather than be named)."""
    make = json.encoder.c_make_encoder
    if make is None or encoder.indent is not None:
        return encoder.encode
    strings = json.encoder.encode_basestring_ascii if encoder.ensure_ascii else json.encoder.encode_basestring
    once = make(None, encoder.default, strings, None, encoder.key_separator, encoder.item_separator,
                encoder.sort_keys, encoder.skipkeys, encoder.allow_nan)
    return lambda value: "".join(once(value, 0))


_ENCODE_RECORD = _made_once(_RECORD_TEXT)


def _record_text(record: Optional[dict]) -> Optional[str]:
    """The record as sent, as json.dumps writes it (tests/registry/test_ledger.py)."""
    if record is None:
        return None
    return _ENCODE_RECORD(record)


def _differing(stored: Optional[str], record: Optional[dict]) -> list[str]:
    """The fields of `record` whose values differ from the stored record's (both as
    sent); nothing when either is unknown."""
    if stored is None or record is None:
        return []
    before = json.loads(stored)
    now = json.loads(_record_text(record))
    return sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))


def _replay(session: Session, actor_id: int, key: str, digest: str, ref: MethodologyRef,
            chosen: dict[str, Result], skipped: list[Result]) -> CreditOutcome:
    batch = session.scalar(select(CreditBatch).where(CreditBatch.actor_id == actor_id,
                                                     CreditBatch.idempotency_key == key))
    if batch.request_digest != digest:
        raise Conflict(f"idempotency key {key!r} was used for a different request")
    entries = _entries(session, actor_id, ref.id, sorted(chosen))
    return CreditOutcome(batch.id, key, True,
                         [e for e in entries if e.batch_id == batch.id],
                         [e for e in entries if e.batch_id != batch.id], skipped)


def entries_of_account(session: Session, account: str) -> list[CreditEntry]:
    return list(session.scalars(select(CreditEntry).where(CreditEntry.account == account)
                                .order_by(CreditEntry.id)))


def balance(session: Session, account: str) -> dict[str, int]:
    """Total credited reduction (mg) and points (with bonuses) of an account."""
    from sqlalchemy import func
    row = session.execute(select(
        func.coalesce(func.sum(CreditEntry.reduction_mg), 0),
        func.coalesce(func.sum(CreditEntry.points + CreditEntry.bonus), 0))
        .where(CreditEntry.account == account)).one()
    return {"reduction_mg": int(row[0]), "points": int(row[1])}


def counter_totals(session: Session, account: str) -> dict[str, int]:
    """What an account's credits moved, per counter and reward (engine/counters.py), net
    of reversals: a reversed credit moved nothing (registry/reversals.py gives back what
    it moved in the state; its entry stays, so it is left out here)."""
    from engine.counters import parse_moved
    totals: dict[str, int] = {}
    reversed_ = select(Reversal.id).where(Reversal.entry_id == CreditEntry.id).exists()
    for text in session.scalars(select(CreditEntry.counters).where(
            CreditEntry.account == account, CreditEntry.counters != "", ~reversed_)):
        for name, amount in parse_moved(text.split(";")).items():
            totals[name] = totals.get(name, 0) + amount
    return totals


def recent_records(session: Session, methodology_id: str, *, days: int = 30,
                   limit: int = 2000) -> list[dict]:
    """The records credited under a methodology (any version) in the last `days` days, as
    they were sent, anonymised: accounts and record ids replaced by `acct-N` / `rec-N` in
    order of appearance (the impact preview of a new version runs on them; issue 15)."""
    since = utcnow() - dt.timedelta(days=days)
    texts = session.scalars(select(CreditEntry.record).where(
        CreditEntry.methodology_id == methodology_id, CreditEntry.credited_at >= since,
        CreditEntry.record.isnot(None)).order_by(CreditEntry.id.desc()).limit(limit))
    accounts_seen: dict[str, str] = {}
    out = []
    for n, text in enumerate(reversed(list(texts)), start=1):
        try:
            record = json.loads(text)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        account = str(record.get("account", ""))
        record["account"] = accounts_seen.setdefault(account, f"acct-{len(accounts_seen) + 1}")
        record["id"] = f"rec-{n}"
        out.append(record)
    return out
