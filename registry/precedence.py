"""One real activity credited once across methodologies: the `precedes` order, in the ledger.

Two methodologies that cover the same activity type (two bike methodologies both covering
`bike_ride`) would each credit the same ride. The language lets one say it takes
precedence (`precedes OTHER-ID` in its header; `tanpu check` warns W0401 when neither
does). The ledger enforces it, with this rule (docs/ledger.md, "Across methodologies"):

* **Related methodologies.** M and O are related when a creditable (published or
  superseded) version of one says `precedes` the other and both cover an activity type
  (the *shared* types). Methodologies that share a type and say nothing are not related
  here: W0401 is the author's warning, and both credit.
* **The same activity.** A record and a credit are the same activity when they are of the
  same **platform account**, have the same **activity time** (to the microsecond: the
  record's `time`, or the earliest of the datetime inputs standing in for it), and their
  activity types agree: a record's `activity`, or when it leaves it empty, any shared type.
  Record ids do not enter: two integrators' ids for one ride differ, and a person linked
  across integrators is one platform account (registry/accounts.py).
* **Crediting under M** a record whose activity has an unreversed credit under O:
  - O precedes M: the record is not credited (status `duplicate`, code `PRECEDED`, naming
    O and its record); the rules never counted it (it is marked before they judge);
  - M precedes O: the record is judged as any other, and when it is credited, O's credit
    is reversed in the same transaction (a compensating reversal, reason naming M's
    record: registry/reversals.py), so the activity ends credited once, by M. When O's
    credit cannot be reversed (some of its grams were retired: a certificate stays true),
    the record is not credited (`duplicate`, `ACTIVITY_RETIRED`).
* **Concurrency.** A credit under a related methodology first locks its accounts' rows
  (PostgreSQL `FOR UPDATE`, in id order; SQLite has one writer), before the rule states:
  so two credits of one account under M and O are judged one after the other, and the
  order account row, then rule state, is the one reversals, redemptions and retirements
  take (no cycle of waits).

The relation is read from the versions' sources (compiled once per content hash); a
methodology without related ones costs one small query per credit.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import bulk
from .models import PUBLISHED, SUPERSEDED, Account, CreditEntry, MethodologyVersion, Reversal

PRECEDED = "PRECEDED"
ACTIVITY_RETIRED = "ACTIVITY_RETIRED"


@dataclass(frozen=True)
class Relation:
    """Another methodology related to the one crediting, and which takes precedence."""

    other: str
    shared: frozenset[str]  # the activity types both cover
    other_precedes: bool  # True: `other` takes precedence; False: the one crediting does


@functools.lru_cache(maxsize=256)
def _header(source: str, name: str) -> tuple[frozenset[str], frozenset[str]]:
    """(covers, precedes) of a stored version's source (one compile per source)."""
    from dsl import compile_source
    compiled = compile_source(source, name)
    if compiled.methodology is None:
        return frozenset(), frozenset()
    meta = compiled.methodology.metadata
    return frozenset(meta.covers), frozenset(meta.precedes)


_BY_HASH: dict[str, tuple[frozenset[str], frozenset[str]]] = {}


# what `relations` reads (the other methodologies' creditable versions), written out for
# a caller that sends it in a pipeline with other statements (the ledger, PostgreSQL)
PG_VERSIONS = ("SELECT methodology_id, content_hash FROM methodology_versions WHERE state IN ("
               + ", ".join(f"'{state}'" for state in (PUBLISHED, SUPERSEDED))
               + ") AND methodology_id <> %(methodology)s::text")


def relations(session: Session, methodology_id: str, covers: Iterable[str],
              precedes: Iterable[str], versions: Optional[Sequence[tuple[str, str]]] = None
              ) -> list[Relation]:
    """The methodologies related to `methodology_id` (whose version being credited covers
    `covers` and says `precedes`), by the module's rule. `versions`: the rows of
    PG_VERSIONS when the caller read them already (else read here)."""
    covers, precedes = frozenset(covers), frozenset(precedes)
    if versions is None:
        versions = session.execute(select(MethodologyVersion.methodology_id, MethodologyVersion.content_hash)
                                   .where(MethodologyVersion.state.in_((PUBLISHED, SUPERSEDED)),
                                          MethodologyVersion.methodology_id != methodology_id)).all()
    versions = [(other, content_hash) for other, content_hash in versions]
    missing = [content_hash for _, content_hash in versions if content_hash not in _BY_HASH]
    if missing:
        for row in session.execute(select(MethodologyVersion.methodology_id, MethodologyVersion.version,
                                          MethodologyVersion.content_hash, MethodologyVersion.source)
                                   .where(MethodologyVersion.content_hash.in_(missing))):
            _BY_HASH[row.content_hash] = _header(row.source, f"{row.methodology_id}@{row.version}.tanpu")
    found: dict[str, Relation] = {}
    for other, content_hash in versions:
        other_covers, other_precedes = _BY_HASH[content_hash]
        shared = covers & other_covers
        if not shared:
            continue
        if methodology_id in other_precedes:
            found[other] = Relation(other, shared, True)
        elif other in precedes and other not in found:
            found[other] = Relation(other, shared, False)
    return sorted(found.values(), key=lambda r: r.other)


def lock_accounts(session: Session, account_ids: Sequence[str]) -> None:
    """The platform accounts' rows locked, in id order (module docstring, Concurrency)."""
    ids = sorted(int(a) for a in set(account_ids) if a.isdigit())
    for among in bulk.among(session, Account.id, ids):
        session.execute(select(Account.id).where(among).order_by(Account.id).with_for_update()).all()


@dataclass
class Found:
    """What the ledger must do about the fresh records of one credit."""

    blocked: dict[str, tuple[str, str]] = field(default_factory=dict)  # record id -> (code, message)
    displaces: dict[str, list[int]] = field(default_factory=dict)  # record id -> entries to reverse


def _activity(record_text: Optional[str | dict]) -> str:
    if record_text is None:
        return ""
    record = json.loads(record_text) if isinstance(record_text, str) else record_text
    value = record.get("activity")
    return "" if value is None else str(value)


def _agree(a: str, b: str, shared: frozenset[str]) -> bool:
    """Two records' activity types agree: each its own, or any shared type when empty."""
    left = {a} & shared if a else set(shared)
    right = {b} & shared if b else set(shared)
    return bool(left & right)


def find(session: Session, related: list[Relation], fresh: list, records: dict[str, dict],
         to_datetime) -> Found:
    """For each fresh result (platform account, time), the credits of the same activity
    under related methodologies, and what they mean for it (module docstring)."""
    found = Found()
    if not related or not fresh:
        return found
    by_other = {r.other: r for r in related}
    times = {r.id: to_datetime(r.time) for r in fresh}
    earliest, latest = min(times.values()), max(times.values())
    table = CreditEntry.__table__
    candidates: dict[tuple[str, dt.datetime], list] = {}
    for among in bulk.among(session, table.c.account, sorted({r.account for r in fresh})):
        rows = session.execute(
            select(table.c.id, table.c.account, table.c.methodology_id, table.c.record_id,
                   table.c.activity_time, table.c.record)
            .where(among, table.c.methodology_id.in_(list(by_other)),
                   table.c.activity_time >= earliest, table.c.activity_time <= latest,
                   ~select(Reversal.id).where(Reversal.entry_id == table.c.id).exists())
            .order_by(table.c.id))
        for row in rows:
            candidates.setdefault((row.account, row.activity_time), []).append(row)
    if not candidates:
        return found
    from .models import RetirementPart
    retired_entries = set(session.scalars(select(RetirementPart.entry_id).where(
        RetirementPart.entry_id.in_([row.id for rows in candidates.values() for row in rows]))))
    for r in fresh:
        mine = _activity(records.get(r.id))
        for row in candidates.get((r.account, times[r.id]), ()):
            relation = by_other[row.methodology_id]
            if not _agree(mine, _activity(row.record), relation.shared):
                continue
            if relation.other_precedes:
                found.blocked[r.id] = (PRECEDED, (
                    f"this activity was credited under {row.methodology_id} (record "
                    f"{row.record_id}), which takes precedence over this methodology"))
                break
            if row.id in retired_entries:
                found.blocked[r.id] = (ACTIVITY_RETIRED, (
                    f"this activity was credited under {row.methodology_id} (record "
                    f"{row.record_id}) and grams of it were retired: that credit stands"))
                break
            found.displaces.setdefault(r.id, []).append(row.id)
        if r.id in found.blocked:
            found.displaces.pop(r.id, None)
    return found
