"""The append-only audit chain.

Every state change, vote, comment, publication, user or role change and ledger credit
appends one entry, in the same transaction as the change. An entry's hash is the sha256
of the canonical JSON of its fields including the previous entry's hash, so changing,
removing or reordering any entry breaks the chain from there on; `verify()` finds the
first broken entry (`tanpu audit verify`).

The database adds its own guards (migrations): UPDATE and DELETE are refused, and an
INSERT must continue the chain (next seq, previous hash). Appends are serialized: on
PostgreSQL by a transaction-level advisory lock, on SQLite by its single writer.

What the chain cannot show on its own: the loss of the newest entries (truncating the
tail leaves a valid, shorter chain). Compare `head()` with a copy kept elsewhere to
detect that.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Optional

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from .models import AuditEntry, User, utcnow

GENESIS = "0" * 64
# pg_advisory_xact_lock key for appends: 't','a','n','p','u','a','u','d' as a 64-bit int
_PG_LOCK_KEY = int.from_bytes(b"tanpuaud", "big") & 0x7FFF_FFFF_FFFF_FFFF


def _time_text(at: dt.datetime) -> str:
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.timezone.utc)
    return at.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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


def append(session: Session, actor: Optional[User | int], action: str, object_type: str,
           object_id: Any, details: Optional[dict] = None) -> AuditEntry:
    """Appends an entry in the session's transaction (committed with the change it records).

    actor: the user acting, or None for the system (e.g. the command line).
    details: JSON-able; numbers must be finite.
    """
    _lock(session)
    session.flush()
    last = session.execute(
        select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)).first()
    seq, prev = (last.seq + 1, last.hash) if last else (1, GENESIS)
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


@dataclass
class Verification:
    ok: bool
    checked: int
    first_broken: Optional[AuditEntry] = None
    problem: str = ""
    head: str = GENESIS  # hash of the last entry checked

    def __str__(self) -> str:
        if self.ok:
            return f"audit chain ok: {self.checked} entries, head {self.head}"
        seq = self.first_broken.seq if self.first_broken is not None else "?"
        return f"audit chain broken at entry {seq}: {self.problem}"


def verify(session: Session, *, batch: int = 1000) -> Verification:
    """Walks the chain from the first entry; stops at the first broken one. Reads rows, not
    objects, so a long chain does not fill the session."""
    columns = [AuditEntry.seq, AuditEntry.at, AuditEntry.actor_id, AuditEntry.action,
               AuditEntry.object_type, AuditEntry.object_id, AuditEntry.details,
               AuditEntry.prev_hash, AuditEntry.hash]
    prev, expected_seq, checked = GENESIS, 1, 0
    after = 0
    while True:
        rows = session.execute(select(*columns).where(AuditEntry.seq > after)
                               .order_by(AuditEntry.seq).limit(batch)).all()
        if not rows:
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


def head(session: Session) -> str:
    """The hash of the newest entry (GENESIS when empty): keep a copy elsewhere to detect a
    truncated tail."""
    last = session.scalar(select(AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1))
    return last or GENESIS


def entries_for(session: Session, object_type: str, object_id: Any) -> list[AuditEntry]:
    return list(session.scalars(select(AuditEntry).where(
        AuditEntry.object_type == object_type, AuditEntry.object_id == str(object_id))
        .order_by(AuditEntry.seq)))
