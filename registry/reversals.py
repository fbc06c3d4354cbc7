"""Reversing a credit found wrong (fraud, a record the integrator withdraws): a
compensating row, never an UPDATE or DELETE of the credit.

    with db.unit_of_work() as s:
        outcome = reversals.reverse(s, admin, entry_id=42, reason="duplicate trip, ticket 7")
        outcome = reversals.reverse(s, admin, integrator_id=3, methodology_id="cn.x",
                                    record_id="ride-42", reason="...")

What a reversal does, in one transaction, audited as `ledger.reverse`:

1. a `reversals` row with what the credit gave (grams, points, bonus), the reason and who
   did it; UNIQUE entry_id makes the database refuse a second reversal of the credit;
2. the account's balances subtract it (registry/rewards.py points_of, retirements.py);
3. what the credit contributed to the methodology's caps is taken off the cap totals of
   its period, in the account's `rule_states` row (locked FOR UPDATE, as the ledger locks
   it while crediting), so that a later record of that day can be credited up to the cap
   again. The caps are those of the version that credited the entry: a rule's part of the
   state is named by the rule's terms (engine/state.py), so a later version with the same
   cap shares the part and sees the change, and a part a later version dropped is left
   alone (the credit no longer counts anywhere). Only existing parts and periods change,
   never below zero. Duplicate keys, overlap intervals and window times are not undone:
   the activity was seen, and a record claiming it again is still a duplicate;
   likewise what the credit moved on counters and rewards (its `counters`, engine/
   counters.py) is given back (`uncount`): each counter's amount comes off the counter's
   total and off its period's total of each counter cap, and each reward's balance gets
   back what the credit's rewards took from it less what the credit gave it (`every` ×
   the rewards it gave − its contribution: 45 points that gave 2 tickets at 20 take the
   remainder back down by 5), never below zero: a reward a later credit completed with
   this one's units stays given, as a cap's total never goes below zero;
4. points already spent: the balance may go negative only through a reversal; when it
   does, the account is frozen (status frozen, audited with the reason). A frozen account
   receives no credits and redeems nothing, so it cannot earn its way back on its own: an
   administrator unfreezes it (docs/ledger.md, "Reversal").

A credit whose grams were retired (a public certificate names it) is not reversed: a
certificate, once issued, stays true (Conflict, naming the certificates).

Only administrators (and the system, actor None) reverse.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import dataclass, field
from typing import Optional

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from engine.cross_record import period_of
from engine.scalar import LocalTime
from engine.state import AccountState

from . import accounts, audit, webhooks
from .errors import Conflict, Invalid, NotFound
from .models import (ACTIVE, FROZEN, Account, CreditEntry, MethodologyVersion, Reversal,
                     RetirementPart, RuleState, utcnow)
from .rewards import lock_account, points_of, require_administrator, text

MAX_REASON = 2000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@dataclass
class ReversalOutcome:
    reversal: Reversal
    entry: CreditEntry
    caps: list[dict] = field(default_factory=list)  # {"cap", "period", "before", "after"}
    counters: list[dict] = field(default_factory=list)  # {"counter"|"reward", ...}: uncount
    points_balance: Optional[int] = None  # the account's, after (None: not a platform account)
    frozen: bool = False  # the reversal froze the account


def find_entry(session: Session, entry_id: Optional[int] = None, *,
               integrator_id: Optional[int] = None, methodology_id: Optional[str] = None,
               record_id: Optional[str] = None) -> CreditEntry:
    """A credit by its id, or by (integrator, methodology, record id)."""
    if entry_id is not None:
        entry = session.get(CreditEntry, entry_id) if isinstance(entry_id, int) else None
        what = f"credit {entry_id}"
    else:
        if None in (integrator_id, methodology_id, record_id):
            raise Invalid("name a credit by its id or by integrator, methodology and record id")
        entry = session.scalar(select(CreditEntry).where(
            CreditEntry.integrator_id == integrator_id,
            CreditEntry.methodology_id == methodology_id, CreditEntry.record_id == record_id))
        what = f"credit of record {record_id!r} ({methodology_id}, integrator {integrator_id})"
    if entry is None:
        raise NotFound(f"no {what}")
    return entry


def reversal_of(session: Session, entry_id: int) -> Optional[Reversal]:
    return session.scalar(select(Reversal).where(Reversal.entry_id == entry_id))


@functools.lru_cache(maxsize=32)
def _rules(source: str, name: str):
    """The cross-record rules of a stored version's source (compiled once per source)."""
    from dsl import compile_source
    from engine import Engine
    compiled = compile_source(source, name)
    if not compiled.ok:
        raise Invalid(f"{name} does not compile: its caps cannot be corrected")
    return Engine(compiled.methodology).rules


def _platform_account(session: Session, entry: CreditEntry) -> Optional[Account]:
    """The platform account the entry is of (entries credited without an engine may
    name an integrator's own id, which is no platform account)."""
    if not entry.account.isdigit():
        return None
    return session.get(Account, int(entry.account))


def undoes(rules) -> bool:
    """Whether reversing a credit changes what these rules remember of the account: caps,
    counters, counter caps and rewards."""
    return bool(rules.caps or rules.counters or rules.counter_caps or rules.rewards)


def uncount(state: AccountState, rules, entry: CreditEntry) -> list[dict]:
    """Gives back what the entry moved on counters and rewards (module docstring, 3),
    never below 0. Pure, as `uncap`."""
    from engine.counters import parse_moved
    moved = parse_moved(entry.counters.split(";")) if entry.counters else {}
    if not moved:
        return []
    changes = []
    if entry.activity_time is not None:
        us = (entry.activity_time - _EPOCH) // dt.timedelta(microseconds=1)
        for cap, totals in zip(rules.counter_caps, state.counter_caps):
            period = period_of(LocalTime(cap.timezone).day(us), cap.period)
            amount = moved.get(cap.counter, 0)
            if period not in totals or not amount:
                continue
            before = totals[period]
            totals[period] = max(0, before - amount)
            changes.append({"counter": cap.counter, "cap": f"per {cap.period}", "period": period,
                            "before": before, "after": totals[period]})
    for j, name in enumerate(rules.counters):
        amount = moved.get(name, 0)
        if amount:
            before = state.counter_totals[j]
            state.counter_totals[j] = max(0, before - amount)
            changes.append({"counter": name, "before": before, "after": state.counter_totals[j]})
    for k, reward in enumerate(rules.rewards):
        given = max(0, entry.points + entry.bonus) if reward.source == "points" \
            else moved.get(reward.source, 0)
        back = moved.get(reward.name, 0) * reward.every - given
        if back:
            before = state.balances[k]
            state.balances[k] = max(0, before + back)
            changes.append({"reward": reward.name, "rewards": moved.get(reward.name, 0),
                            "before": before, "after": state.balances[k]})
    return changes


def uncap(state: AccountState, rules, entry: CreditEntry) -> list[dict]:
    """Takes the entry's amounts off its period's totals of each cap in `state` (never
    below 0), and gives back what it moved on counters and rewards (`uncount`, whose
    changes are the list's items with a "counter" or "reward" key): what a reversal does
    to the rules' memory. Pure: the ledger stores the result (`_uncap`), verify replays
    it (registry/verify.py)."""
    return _caps_of(state, rules, entry) + uncount(state, rules, entry)


def _caps_of(state: AccountState, rules, entry: CreditEntry) -> list[dict]:
    if entry.activity_time is None:
        return []
    us = (entry.activity_time - _EPOCH) // dt.timedelta(microseconds=1)
    changes = []
    for cap, totals in zip(rules.caps, state.caps):
        period = period_of(LocalTime(cap.timezone).day(us), cap.period)
        if period not in totals:
            continue
        amount = entry.reduction_mg if cap.target == "reduction" else entry.points
        before = totals[period]
        totals[period] = max(0, before - amount)
        changes.append({"cap": f"{cap.target} per {cap.period}", "period": period,
                        "before": before, "after": totals[period]})
    return changes


def _uncap(session: Session, entry: CreditEntry, now: dt.datetime) -> list[dict]:
    """Takes the entry's amounts off its period's cap totals in the account's stored state
    (module docstring, 3); what changed, per cap."""
    if not entry.counters and (entry.activity_time is None
                               or (entry.reduction_mg == 0 and entry.points == 0)):
        return []
    version = session.scalar(select(MethodologyVersion).where(
        MethodologyVersion.methodology_id == entry.methodology_id,
        MethodologyVersion.version == entry.version))
    rules = _rules(version.source, f"{entry.methodology_id}@{entry.version}.tanpu")
    if not undoes(rules):
        return []
    row = session.scalar(select(RuleState).where(
        RuleState.methodology_id == entry.methodology_id, RuleState.account == entry.account)
        .with_for_update().execution_options(populate_existing=True))
    if row is None or not row.state:
        return []
    stored = json.loads(row.state)
    state = AccountState.from_json(rules, row.state)
    changes = uncap(state, rules, entry)
    if not changes:
        return []
    # only the parts that were stored and changed: the other rules' parts (and those of
    # rules of other versions) stay as they are
    for name, part in json.loads(state.to_json(rules)).items():
        if name in stored and stored[name] != part:
            stored[name] = part
    row.state = json.dumps(stored, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    row.updated_at = now
    session.flush()
    return changes


def reverse(session: Session, actor, entry_id: Optional[int] = None, *,
            integrator_id: Optional[int] = None, methodology_id: Optional[str] = None,
            record_id: Optional[str] = None, reason: str) -> ReversalOutcome:
    """Reverses one credit (module docstring). Conflict when it was reversed before or
    its grams were retired."""
    actor = require_administrator(session, actor)
    reason = text(reason, "a reversal's reason", MAX_REASON, required=True)
    entry = find_entry(session, entry_id, integrator_id=integrator_id,
                       methodology_id=methodology_id, record_id=record_id)
    account = _platform_account(session, entry)
    if account is not None:  # the account's lock first, as every writer of its balances
        account = lock_account(session, account.id)
    earlier = reversal_of(session, entry.id)
    if earlier is not None:
        raise Conflict(f"credit {entry.id} was reversed already (reversal {earlier.id})")
    retired = session.execute(select(RetirementPart.retirement_id).where(
        RetirementPart.entry_id == entry.id).order_by(RetirementPart.retirement_id)).scalars().all()
    if retired:
        raise Conflict(f"grams of credit {entry.id} were retired (certificates "
                       f"{', '.join(retired)}): a certificate stays true, the credit is not reversed")
    now = utcnow()
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    table = Reversal.__table__
    new_id = session.scalar(insert(table).values(
        entry_id=entry.id, account=entry.account, reduction_mg=entry.reduction_mg,
        points=entry.points, bonus=entry.bonus, reason=reason,
        actor_id=actor.id if actor else None, created_at=now)
        .on_conflict_do_nothing(index_elements=["entry_id"]).returning(table.c.id))
    if new_id is None:  # a concurrent reversal of an entry without a platform account
        raise Conflict(f"credit {entry.id} was reversed already")
    changes = _uncap(session, entry, now)
    caps = [c for c in changes if "counter" not in c and "reward" not in c]
    counted = [c for c in changes if "counter" in c or "reward" in c]
    outcome = ReversalOutcome(session.get(Reversal, new_id), entry, caps, counted)
    if account is not None:
        outcome.points_balance = points_of(session, account.id).balance
        if outcome.points_balance < 0 and account.status == ACTIVE:
            accounts.update_status(session, actor, account.id, FROZEN)
            outcome.frozen = True
    audit.append(session, actor, "ledger.reverse", "credit_entry", entry.id, {
        "reversal": new_id, "reason": reason, "account": entry.account,
        "methodology": entry.methodology_id, "version": entry.version,
        "record_id": entry.record_id, "reduction_mg": entry.reduction_mg,
        "points": entry.points, "bonus": entry.bonus, "caps": caps,
        **({"counters": counted, "moved": entry.counters} if counted else {}),
        "points_balance": outcome.points_balance, "froze_account": outcome.frozen})
    webhooks.emit(session, "credit.reversed", {
        "reversal": new_id, "entry": entry.id, "methodology": entry.methodology_id,
        "version": entry.version, "record_id": entry.record_id, "reason": reason,
        "reduction_mg": entry.reduction_mg, "points": entry.points, "bonus": entry.bonus,
        **({"counters": entry.counters.split(";")} if entry.counters else {}),
        "created_at": now.isoformat().replace("+00:00", "Z")}, integrator_id=entry.integrator_id)
    return outcome


def reversed_totals(session: Session, account: str) -> dict[str, int]:
    """What reversals took from an account (its id as the ledger writes it)."""
    row = session.execute(select(func.coalesce(func.sum(Reversal.reduction_mg), 0),
                                 func.coalesce(func.sum(Reversal.points + Reversal.bonus), 0))
                          .where(Reversal.account == account)).one()
    return {"reduction_mg": int(row[0]), "points": int(row[1])}


def list_reversals(session: Session, *, account_id: Optional[int] = None, page: int = 1,
                   per_page: int = 50) -> tuple[list[tuple[Reversal, CreditEntry]], int]:
    """Reversals, newest first, with their credits (one account's, or all), a page at a
    time (offset: the list only grows at its head, and an administrator reads it)."""
    query = select(Reversal, CreditEntry).join(CreditEntry, CreditEntry.id == Reversal.entry_id)
    count = select(func.count()).select_from(Reversal)
    if account_id is not None:
        query = query.where(Reversal.account == str(account_id))
        count = count.where(Reversal.account == str(account_id))
    total = int(session.scalar(count))
    rows = session.execute(query.order_by(Reversal.id.desc())
                           .offset((page - 1) * per_page).limit(per_page)).all()
    return [(r, e) for r, e in rows], total
