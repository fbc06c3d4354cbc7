"""The append-only audit chain.

Every state change, vote, comment, publication, user or role change and ledger credit
appends one entry, in the same transaction as the change. An entry's hash is the sha256
of the canonical JSON of its fields including the previous entry's hash, so changing,
removing or reordering any entry breaks the chain from there on; `verify()` finds the
first broken entry (`tanpu audit verify`).

The database adds its own guards (migrations): UPDATE and DELETE are refused, and an
INSERT must continue the chain (next seq, previous hash). Appends are serialized: on
PostgreSQL by a transaction-level advisory lock, on SQLite by its single writer. Entries
appended at commit (append_at_commit, the ledger's credits) take that lock in the
COMMIT's own round trip on PostgreSQL, so it is held only while the server commits.

The chain also covers the ledger's rows, which live in their own tables: the entry of a
credit batch holds `entries_digest` (`ledger_digest`: sha256 over every column of the
batch's credit entries that says what was credited, the record as sent included); the
entries of a reversal, a retirement and a redemption hold their rows' values. So
`verify()` also reads the ledger tables and reports a row no entry covers (an INSERT
made with database access), a row that differs from its entry (an UPDATE made with the
triggers switched off) and a row an entry names that is gone (a DELETE).

What the chain cannot show on its own: the loss of the newest entries (truncating the
tail leaves a valid, shorter chain), or a chain rewritten from some entry onward by
someone who can also switch off the triggers (a rewritten chain is valid again). Both
are caught against a head kept where the database cannot reach: publish `head()` (the
public page `/audit/head`, `tanpu audit head`, the server's log at start) and check
later with `verify(head=...)` (`tanpu audit verify --head HASH`) that the chain still
passes through it, unchanged.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import operator
from dataclasses import dataclass, field
from typing import Any, Optional

from sqlalchemy import Engine, event, select, text
from sqlalchemy.orm import Session

from . import bulk
from .models import (AuditEntry, CreditEntry, Redemption, Retirement, RetirementPart, Reversal,
                     User, utcnow)

GENESIS = "0" * 64
# pg_advisory_xact_lock key for appends: 't','a','n','p','u','a','u','d' as a 64-bit int
_PG_LOCK_KEY = int.from_bytes(b"tanpuaud", "big") & 0x7FFF_FFFF_FFFF_FFFF


def _time_text(at: dt.datetime) -> str:
    """`%Y-%m-%dT%H:%M:%S.%fZ` of the time in UTC. By isoformat where it gives the same
    text (a year of four digits: strftime's %Y does not pad a year below 1000 to four),
    about a third cheaper than strftime: the ledger's digest formats one per entry."""
    if at.tzinfo is not _UTC:
        if at.tzinfo is None:
            at = at.replace(tzinfo=_UTC)
        at = at.astimezone(_UTC)
    if at.year < 1000:
        return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return at.isoformat(timespec="microseconds")[:-6] + "Z"


_UTC = dt.timezone.utc


def canonical(fields: dict[str, Any]) -> str:
    return json.dumps(fields, ensure_ascii=False, sort_keys=True, separators=(",", ":"),
                      allow_nan=False)


def entry_hash(*, seq: int, at: dt.datetime, actor_id: Optional[int], action: str,
               object_type: str, object_id: str, details: dict, prev_hash: str) -> str:
    payload = canonical({
        "seq": seq, "at": _time_text(at), "actor_id": actor_id, "action": action,
        "object_type": object_type, "object_id": object_id, "details": details,
        "prev_hash": prev_hash,
    })
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def hash_of(entry) -> str:
    """The hash an entry (an AuditEntry or a row with its columns) should have."""
    return entry_hash(seq=entry.seq, at=entry.at, actor_id=entry.actor_id, action=entry.action,
                      object_type=entry.object_type, object_id=entry.object_id,
                      details=entry.details, prev_hash=entry.prev_hash)


def _lock(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})


_PG_LAST = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"


def _lock_and_last(session: Session) -> Optional[tuple[int, str]]:
    """The chain's lock taken, the session's pending changes flushed (after the lock, as
    always), and the chain's last entry (seq, hash) read. On PostgreSQL the lock and the
    read go in one round trip (bulk.pipelined: the read runs after the lock is granted,
    with its own snapshot, so it sees the entry the lock's previous holder committed),
    one less for every credit; the flush comes after the read then, which changes
    nothing, for a flush never writes the chain (append writes its entry itself)."""
    if session.get_bind().dialect.name == "postgresql":
        _, last = bulk.pipelined(session, [("SELECT pg_advisory_xact_lock(%(key)s)",
                                            {"key": _PG_LOCK_KEY}, False), (_PG_LAST, {}, True)])
        session.flush()
        return last[0] if last else None
    _lock(session)
    session.flush()
    last = session.execute(
        select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)).first()
    return tuple(last) if last else None


def append(session: Session, actor: Optional[User | int], action: str, object_type: str,
           object_id: Any, details: Optional[dict] = None) -> AuditEntry:
    """Appends an entry in the session's transaction (committed with the change it records).

    actor: the user acting, or None for the system (e.g. the command line).
    details: JSON-able; numbers must be finite.
    """
    last = _lock_and_last(session)
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    actor_id = actor.id if isinstance(actor, User) else actor
    details = json.loads(canonical(details or {}))  # what the database will give back
    at = utcnow()
    entry = AuditEntry(seq=seq, at=at, actor_id=actor_id, action=action,
                       object_type=object_type, object_id=str(object_id), details=details,
                       prev_hash=prev)
    entry.hash = hash_of(entry)
    session.add(entry)
    session.flush()
    return entry


_PENDING = "tanpu_audit_at_commit"


def append_at_commit(session: Session, actor: Optional[User | int], action: str,
                     object_type: str, object_id: Any, details: Optional[dict] = None) -> None:
    """append(), done when the transaction commits (SQLAlchemy's before_commit), still in
    it: committed with the change it records, or not at all. For the ledger's credits:
    the chain's lock is held from an append until the commit, and whatever the caller
    does after crediting (the API builds its answer, one credit per version) would
    otherwise run with every other credit waiting at that lock; with 16 concurrent
    clients half the statement time was spent waiting there. The entries of one
    transaction are appended in the order they were asked for; entries appended at
    once (append) come before them."""
    session.info.setdefault(_PENDING, []).append(
        (actor, action, object_type, object_id, details))


@event.listens_for(Session, "before_commit")
def _append_pending(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    if commits_with_chain(session):
        _append_and_commit(session, pending)
        return
    for actor, action, object_type, object_id, details in pending:
        append(session, actor, action, object_type, object_id, details)


def commits_with_chain(session: Session) -> bool:
    """Whether the pending entries may be appended and the transaction committed in one
    round trip (_append_and_commit): PostgreSQL, the outermost transaction (not a
    savepoint's release), on a session that owns its connection (bound to an Engine, not
    joined to a caller's Connection, whose transaction is the caller's to commit). Then
    what is deferred to the session's next pipeline (bulk.defer) goes with them."""
    if session.in_nested_transaction():
        return False
    bind = session.get_bind()
    return bind.dialect.name == "postgresql" and isinstance(bind, Engine)


# One statement: the chain's last entry read (with its own snapshot, after the lock) and
# the next entry inserted, its hash computed by the server from the canonical JSON that
# Python made of every field but the last two, which sort last (`prev_hash`, `seq`): the
# same sha256 over the same bytes as entry_hash (tests/registry/test_audit.py compares).
_PG_APPEND = ("INSERT INTO audit_log (seq, at, actor_id, action, object_type, object_id, details, "
              "prev_hash, hash) SELECT coalesce(l.seq, 0) + 1, %(at)s::timestamptz, %(actor_id)s::int, "
              "%(action)s::text, %(object_type)s::text, %(object_id)s::text, %(details)s::json, "
              "coalesce(l.hash, %(genesis)s::text), encode(sha256(convert_to(%(head)s::text || "
              "coalesce(l.hash, %(genesis)s::text) || '\",\"seq\":' || (coalesce(l.seq, 0) + 1) || '}', "
              "'UTF8')), 'hex') FROM (SELECT 1) AS one LEFT JOIN LATERAL (SELECT seq, hash FROM "
              "audit_log ORDER BY seq DESC LIMIT 1) AS l ON true")


def _append_params(actor, action: str, object_type: str, object_id: Any,
                   details: Optional[dict]) -> dict:
    """_PG_APPEND's parameters: `head` is the canonical JSON of the entry up to the
    previous hash's value (canonical() of the fields without `prev_hash` and `seq`, its
    closing brace replaced by the opening of `prev_hash`)."""
    actor_id = actor.id if isinstance(actor, User) else actor
    at = utcnow()
    text_of_details = canonical(details or {})
    head = canonical({"seq": 0, "at": _time_text(at), "actor_id": actor_id, "action": action,
                      "object_type": object_type, "object_id": str(object_id),
                      "details": json.loads(text_of_details)})
    head = head[:head.rindex(',"seq":')] + ',"prev_hash":"'
    return {"at": at, "actor_id": actor_id, "action": action, "object_type": object_type,
            "object_id": str(object_id), "details": text_of_details, "genesis": GENESIS,
            "head": head}


def _append_and_commit(session: Session, pending: list) -> None:
    """PostgreSQL: the session's changes flushed, then in one round trip (bulk.pipelined)
    the chain's lock, the pending entries (_PG_APPEND: each reads the last entry and
    continues it) and COMMIT. The chain's lock is then held while the server inserts and
    commits, never across a round trip to this process: with 16 concurrent clients the
    holder waited for its answer to come back and for Python's lock (the GIL) before it
    could send the COMMIT that released the chain, and every other credit queued behind
    it (docs/ledger.md, Session 12). SQLAlchemy's own COMMIT then finds the transaction
    ended (psycopg sends nothing on an idle connection). A COMMIT that fails (a lost
    connection) raises here, as SQLAlchemy's would have."""
    session.flush()
    if session.new or session.dirty or session.deleted:  # not expected after a flush
        for actor, action, object_type, object_id, details in pending:
            append(session, actor, action, object_type, object_id, details)
        return
    statements = [("SELECT pg_advisory_xact_lock(%(key)s)", {"key": _PG_LOCK_KEY}, False)]
    statements += [(_PG_APPEND, _append_params(*entry), False) for entry in pending]
    statements.append(("COMMIT", None, False))
    bulk.pipelined(session, statements)
    bulk.restore(session)  # the transaction ended: psycopg's own BEGIN for the next one


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


def ledger_digest(entries) -> str:
    """What the audit entry of a credit batch holds of the batch's credit entries: sha256
    over each entry's columns that say what was credited, to whom, by which version, from
    which record (every column but the ids, the batch and the write time), in record-id
    order. Tab-separated text: no column holds a tab or a newline raw (the record is
    JSON). `entries`: objects or rows with the columns as attributes (ledger_digest_rows
    takes them as tuples)."""
    return ledger_digest_rows([(
        e.record_id, e.account, e.methodology_id, e.version, e.content_hash, e.activity_time,
        e.reduction_mg, e.points, e.bonus, e.status, e.code, e.message, e.reason, e.record,
        getattr(e, "counters", "")) for e in entries])


def ledger_digest_rows(rows) -> str:
    """ledger_digest of entries given as tuples (record_id, account, methodology_id,
    version, content_hash, activity_time, reduction_mg, points, bonus, status, code,
    message, reason, record, counters): the same digest, byte for byte, for the ledger
    to make from the columns it inserts, without an object per entry
    (tests/registry/test_audit_digest.py)."""
    lines = []
    for (record_id, account, methodology_id, version, content_hash, at, reduction_mg, points,
         bonus, status, code, message, reason, record, counters) in sorted(rows, key=_FIRST):
        line = (f"{record_id}\t{account}\t{methodology_id}\t{version}\t{content_hash}\t"
                f"{_time_text(at) if at is not None else ''}\t{reduction_mg}\t{points}\t{bonus}\t"
                f"{status}\t{code or ''}\t{message or ''}\t{reason or ''}\t"
                f"{record if record is not None else ''}")
        # what the record moved (issue 12), only where it moved something: the digests of
        # entries of methodologies without counters are what they were before the column
        lines.append(f"{line}\t{counters}" if counters else line)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


_FIRST = operator.itemgetter(0)


@dataclass
class Verification:
    ok: bool
    checked: int
    first_broken: Optional[AuditEntry] = None
    problem: str = ""
    head: str = GENESIS  # hash of the last entry checked
    ledger_problems: list[str] = field(default_factory=list)  # rows the chain does not cover
    ledger_rows: int = 0  # ledger rows checked against their entries

    def __str__(self) -> str:
        if self.first_broken is not None:
            return f"audit chain broken at entry {self.first_broken.seq}: {self.problem}"
        if self.problem:
            return f"audit chain not verified: {self.problem}"
        if self.ledger_problems:
            shown = self.ledger_problems[:20]
            more = len(self.ledger_problems) - len(shown)
            return "\n".join([f"audit chain ok ({self.checked} entries) but the ledger is not "
                              f"what it recorded: {len(self.ledger_problems)} problem(s)",
                              *(f"  {p}" for p in shown), *([f"  ... {more} more"] if more else [])])
        return (f"audit chain ok: {self.checked} entries, head {self.head}; "
                f"{self.ledger_rows} ledger rows covered")


def verify(session: Session, *, batch: int = 1000, head: Optional[str] = None,
           ledger: bool = True) -> Verification:
    """Walks the chain from the first entry and stops at the first broken one; then, when
    `ledger`, checks the ledger's rows against the entries that recorded them
    (`verify_ledger`). `head`: a hash published earlier (`head()`): the chain must still
    pass through it, or it was rewritten or cut since. Reads rows, not objects, so a long
    chain does not fill the session."""
    result = _verify_chain(session, batch, head)
    if result.ok and ledger:
        result.ledger_problems, result.ledger_rows = verify_ledger(session)
        result.ok = not result.ledger_problems
    return result


def _verify_chain(session: Session, batch: int, head: Optional[str]) -> Verification:
    head = head.strip().lower() if head else None
    seen_head = head is None
    columns = [AuditEntry.seq, AuditEntry.at, AuditEntry.actor_id, AuditEntry.action,
               AuditEntry.object_type, AuditEntry.object_id, AuditEntry.details,
               AuditEntry.prev_hash, AuditEntry.hash]
    prev, expected_seq, checked = GENESIS, 1, 0
    after = 0
    while True:
        rows = session.execute(select(*columns).where(AuditEntry.seq > after)
                               .order_by(AuditEntry.seq).limit(batch)).all()
        if not rows:
            if not seen_head:
                return Verification(False, checked, problem=(
                    f"the chain no longer passes through head {head} (published earlier): "
                    "it was rewritten or cut since"), head=prev)
            return Verification(True, checked, head=prev)
        for row in rows:
            problem = ""
            if row.seq != expected_seq:
                problem = f"expected entry {expected_seq} next, found {row.seq} (entries removed)"
            elif row.prev_hash != prev:
                problem = "its prev_hash is not the previous entry's hash"
            elif hash_of(row) != row.hash:
                problem = "its content does not match its hash (the entry was changed)"
            if problem:
                return Verification(False, checked, session.get(AuditEntry, row.seq), problem,
                                    head=prev)
            prev, expected_seq, checked = row.hash, row.seq + 1, checked + 1
            after = row.seq
            seen_head = seen_head or row.hash == head


def verify_ledger(session: Session, *, batch: int = 5000) -> tuple[list[str], int]:
    """(problems, rows checked): every credit entry, reversal, retirement (with its parts)
    and redemption against the audit entry that recorded it. Credit entries are read in
    batch order, a batch at a time, so memory holds one batch's entries and the digests
    of the batches."""
    problems: list[str] = []
    recorded = {int(object_id): details for object_id, details in session.execute(
        select(AuditEntry.object_id, AuditEntry.details)
        .where(AuditEntry.action == "ledger.credit", AuditEntry.object_type == "credit_batch"))}
    rows = 0
    seen: set[int] = set()

    def check(batch_id: int, entries: list) -> None:
        seen.add(batch_id)
        details = recorded.get(batch_id)
        if details is None:
            problems.append(f"credit batch {batch_id}: {len(entries)} ledger row(s) that no "
                            f"audit entry records (inserted behind the ledger's back)")
        elif details.get("new") != len(entries) or details.get("entries_digest") != ledger_digest(entries):
            problems.append(f"credit batch {batch_id}: its {len(entries)} ledger row(s) are not "
                            f"the {details.get('new')} its audit entry recorded (changed, added or "
                            f"removed rows)")

    current, entries = None, []
    table = CreditEntry.__table__
    for entry in session.execute(select(*table.c).order_by(table.c.batch_id, table.c.id)
                                 .execution_options(yield_per=batch)):
        rows += 1
        if entry.batch_id != current:
            if current is not None:
                check(current, entries)
            current, entries = entry.batch_id, []
        entries.append(entry)
    if current is not None:
        check(current, entries)
    problems += [f"credit batch {b}: its audit entry records {d.get('new')} ledger row(s); none "
                 f"is in the ledger (removed)" for b, d in sorted(recorded.items())
                 if b not in seen and d.get("new")]

    rows += _match(problems, "reversal", session.execute(select(
        Reversal.id, Reversal.entry_id, Reversal.account, Reversal.reduction_mg, Reversal.points,
        Reversal.bonus, Reversal.reason)).all(),
        _recorded(session, "ledger.reverse", lambda o, d: d.get("reversal")),
        lambda r, o, d: (str(r.entry_id), r.account, r.reduction_mg, r.points, r.bonus, r.reason)
        == (o, d.get("account"), d.get("reduction_mg"), d.get("points"), d.get("bonus"),
            d.get("reason")))
    parts: dict[str, list] = {}
    for p in session.execute(select(RetirementPart.retirement_id, RetirementPart.entry_id,
                                    RetirementPart.reduction_mg)
                             .order_by(RetirementPart.retirement_id, RetirementPart.entry_id)):
        parts.setdefault(p.retirement_id, []).append([p.entry_id, p.reduction_mg])
    rows += _match(problems, "retirement", session.execute(select(
        Retirement.id, Retirement.account_id, Retirement.reduction_mg, Retirement.purpose,
        Retirement.digest)).all(),
        _recorded(session, "ledger.retire", lambda o, d: o),
        lambda r, o, d: (r.account_id, r.reduction_mg, r.purpose, r.digest,
                         sorted(parts.get(r.id, [])))
        == (d.get("account"), d.get("reduction_mg"), d.get("purpose"), d.get("digest"),
            sorted(d.get("parts") or [])))
    rows += _match(problems, "redemption", session.execute(select(
        Redemption.id, Redemption.account_id, Redemption.reward_id, Redemption.points,
        Redemption.period_key, Redemption.idempotency_key)).all(),
        _recorded(session, "reward.redeem", lambda o, d: d.get("redemption")),
        lambda r, o, d: (str(r.account_id), r.reward_id, r.points, r.period_key,
                         r.idempotency_key)
        == (o, d.get("reward"), d.get("points"), d.get("period_key"), d.get("idempotency_key")))
    return problems, rows


def _recorded(session: Session, action: str, key) -> dict:
    """{key(object_id, details): (object_id, details)} of the entries of one action."""
    return {str(key(o, d)): (o, d) for o, d in session.execute(
        select(AuditEntry.object_id, AuditEntry.details).where(AuditEntry.action == action))}


def _match(problems: list[str], kind: str, rows, recorded: dict, same) -> int:
    """Each row against the entry recording it (by the row's id), and entries whose row
    is gone."""
    for row in rows:
        entry = recorded.pop(str(row.id), None)
        if entry is None:
            problems.append(f"{kind} {row.id}: a ledger row that no audit entry records "
                            f"(inserted behind the ledger's back)")
        elif not same(row, *entry):
            problems.append(f"{kind} {row.id}: the ledger row is not what its audit entry "
                            f"recorded (changed)")
    problems.extend(f"{kind} {k}: recorded in the audit chain, not in the ledger (removed)"
                    for k in sorted(recorded))
    return len(rows)


def head(session: Session) -> str:
    """The hash of the newest entry (GENESIS when empty): keep a copy elsewhere to detect a
    truncated tail."""
    last = session.scalar(select(AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1))
    return last or GENESIS


def head_entry(session: Session) -> dict:
    """The newest entry as published (`/audit/head`, `tanpu audit head`, the server's log):
    {"seq", "at", "hash"}; seq 0 and GENESIS for an empty chain."""
    last = session.execute(select(AuditEntry.seq, AuditEntry.at, AuditEntry.hash)
                           .order_by(AuditEntry.seq.desc()).limit(1)).first()
    if last is None:
        return {"seq": 0, "at": None, "hash": GENESIS}
    return {"seq": last.seq, "at": _time_text(last.at), "hash": last.hash}


def entries_for(session: Session, object_type: str, object_id: Any) -> list[AuditEntry]:
    return list(session.scalars(select(AuditEntry).where(
        AuditEntry.object_type == object_type, AuditEntry.object_id == str(object_id))
        .order_by(AuditEntry.seq)))
