"""Reading the ledger back: an account's statement, its balances per period and per
methodology, and credits by record id, by batch and by account (issue 13, item 6).

    page = statements.statement(session, actor, account_id, after=0, limit=100)
    rows = statements.period_balances(session, actor, account_id, "month")
    found = statements.by_record(session, actor, "ride-42", methodology="cn.x")
    batch = statements.batch(session, actor, 17)

Nothing here writes. What a caller sees is what it may see:

- an administrator (and the system: the command line, actor None) sees every entry;
- an integrator sees its own entries only (those it credited, `integrator_id` = its id),
  of the accounts it may see (accounts.can_view: it created them or has an id for them);
  an account, a batch or a record it may not see is a NotFound, as if it did not exist,
  so that ids reveal nothing about other integrators.

Statements are paginated by keyset on the entry id (`after`: the last id of the previous
page; `before` for newest first), not by offset: an account of a busy integrator has
many entries, and new ones arrive while it is read, which an offset would skip or repeat.

Balances per period are summed in Python from the entries' activity times: a period is a
calendar day, week (Monday first, as the caps count), month or year of a time zone
(default dsl.zones.DEFAULT_TIMEZONE), and local calendars cannot be computed the same way
in SQLite and PostgreSQL. They are net of reversals, as every balance: the entries are
read joined to their reversals by accounts.with_reversals, the join accounts.balances
uses, and a reversal counts in its entry's period (the period whose cap it gives back),
not the day it was made; so a month's rows add up to the all-time balance. The entries are read as rows, a chunk at a time, bounded by
`from`/`to`; the all-time totals of a large subtree are accounts.balances' (one SQL
statement).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Optional

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dsl.zones import DEFAULT_TIMEZONE, zone as zone_of

from . import accounts, users
from .errors import Invalid, NotFound
from .models import ADMINISTRATOR, CreditBatch, CreditEntry, User

PERIODS = ("day", "week", "month", "year")
MAX_LIMIT = 1000


# ---------------------------------------------------------------- who sees what
def _sees_all(actor: Optional[User]) -> bool:
    """The system and administrators see every integrator's entries."""
    return actor is None or actor.has_role(ADMINISTRATOR)


def _scope(query, actor: Optional[User]):
    """An integrator's queries keep its own entries only."""
    return query if _sees_all(actor) else query.where(CreditEntry.integrator_id == actor.id)


def _keys(session: Session, actor, account_id: int, subtree: bool):
    """(the acting user, a condition on CreditEntry.account) for the account (and the
    accounts below it), once the actor may see it: NotFound otherwise."""
    actor = users.actor_in(session, actor)
    accounts.visible(session, actor, account_id)
    if subtree:
        return actor, CreditEntry.account.in_(accounts.subtree_keys(account_id))
    return actor, CreditEntry.account == str(account_id)


def _between(query, start: Optional[dt.datetime], end: Optional[dt.datetime]):
    """Entries whose activity time is in [start, end)."""
    if start is not None:
        query = query.where(CreditEntry.activity_time >= start)
    if end is not None:
        query = query.where(CreditEntry.activity_time < end)
    return query


def parse_time(value: Optional[str], zone: str = DEFAULT_TIMEZONE,
               what: str = "time") -> Optional[dt.datetime]:
    """`from`/`to` of the API and the CLI: an ISO date (its midnight in `zone`) or an ISO
    datetime (without an offset: in `zone`). None or "" is no bound."""
    if value in (None, ""):
        return None
    try:
        if len(value) == 10:
            moment = dt.datetime.combine(dt.date.fromisoformat(value), dt.time())
        else:
            moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"{what}: an ISO date (YYYY-MM-DD) or datetime, not {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone_of(zone))
    try:
        return moment.astimezone(dt.timezone.utc)
    except OverflowError:  # the first or last day a date can name, in a zone ahead or behind
        return (dt.datetime.min if moment.year == 1 else dt.datetime.max).replace(
            tzinfo=dt.timezone.utc)


def _limit(limit: int) -> int:
    if not (1 <= limit <= MAX_LIMIT):
        raise Invalid(f"limit: 1 to {MAX_LIMIT}")
    return limit


# ---------------------------------------------------------------- entries as shown
def _time(value: Optional[dt.datetime]) -> Optional[str]:
    return value.isoformat().replace("+00:00", "Z") if value else None


def entry_dict(entry: CreditEntry) -> dict:
    """An entry as the API and the CLI show it: the record id and the account as the
    integrator sent them, what was credited, by which version and content hash, and the
    rule that capped it (code and message; empty when it was credited in full)."""
    sent = None
    if entry.record:
        try:
            sent = json.loads(entry.record).get("account")
        except (ValueError, AttributeError):
            sent = None
    return {"id": entry.id, "record_id": entry.record_id, "account": entry.account,
            "sent_account": sent, "integrator": entry.integrator_id, "batch_id": entry.batch_id,
            "time": _time(entry.activity_time), "credited_at": _time(entry.credited_at),
            "methodology": entry.methodology_id, "version": entry.version,
            "content_hash": entry.content_hash, "status": entry.status,
            "reduction_mg": entry.reduction_mg, "points": entry.points, "bonus": entry.bonus,
            "code": entry.code or "", "message": entry.message or "",
            "reason": entry.reason or ""}


@dataclass
class Page:
    """A page of entries in id order (descending when newest first); `next`: the cursor
    of the following page (`after`, or `before` newest first), None on the last."""

    entries: list[CreditEntry]
    next: Optional[int]
    limit: int

    def to_dict(self) -> dict:
        return {"items": [entry_dict(e) for e in self.entries], "limit": self.limit,
                "next": self.next}


def _page(session: Session, query, *, after: Optional[int], before: Optional[int],
          limit: int, newest_first: bool) -> Page:
    limit = _limit(limit)
    if after is not None:
        query = query.where(CreditEntry.id > after)
    if before is not None:
        query = query.where(CreditEntry.id < before)
    order = CreditEntry.id.desc() if newest_first else CreditEntry.id
    rows = list(session.scalars(query.order_by(order).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, rows[-1].id if more and rows else None, limit)


# ---------------------------------------------------------------- statements
def statement(session: Session, actor, account_id: int, *, after: Optional[int] = None,
              before: Optional[int] = None, limit: int = 100, newest_first: bool = False,
              start: Optional[dt.datetime] = None, end: Optional[dt.datetime] = None,
              subtree: bool = False, methodology: Optional[str] = None) -> Page:
    """The account's entries (with `subtree`, those of the accounts below it too) in the
    order they were written, a page at a time; `start`/`end` bound the activity time."""
    actor, where = _keys(session, actor, account_id, subtree)
    query = _between(_scope(select(CreditEntry).where(where), actor), start, end)
    if methodology:
        query = query.where(CreditEntry.methodology_id == methodology)
    return _page(session, query, after=after, before=before, limit=limit,
                 newest_first=newest_first)


@dataclass
class PeriodRow:
    period: str  # 2024-06-20, 2024-W25, 2024-06, 2024
    methodology: str
    reduction_mg: int = 0  # net of reversals, as every balance (accounts.with_reversals)
    points: int = 0  # without bonuses, net of reversals
    bonus: int = 0  # net of reversals
    entries: int = 0  # every entry, reversed ones too
    reversed_entries: int = 0
    reversed_mg: int = 0
    reversed_points: int = 0  # with bonuses

    def to_dict(self) -> dict:
        return {"period": self.period, "methodology": self.methodology,
                "reduction_mg": self.reduction_mg, "reduction_kg": self.reduction_mg / 1_000_000,
                "points": self.points, "bonus": self.bonus, "entries": self.entries,
                "reversed_entries": self.reversed_entries, "reversed_mg": self.reversed_mg,
                "reversed_points": self.reversed_points}


_SUMMED = ("reduction_mg", "points", "bonus", "entries", "reversed_entries", "reversed_mg",
           "reversed_points")


@dataclass
class PeriodBalances:
    account_id: int
    period: str
    timezone: str
    subtree: bool
    rows: list[PeriodRow] = field(default_factory=list)  # by period, then methodology

    def totals(self) -> dict[str, dict[str, int]]:
        """Period -> the counters over every methodology."""
        out: dict[str, dict[str, int]] = {}
        for row in self.rows:
            t = out.setdefault(row.period, dict.fromkeys(_SUMMED, 0))
            for name in _SUMMED:
                t[name] += getattr(row, name)
        return out

    def to_dict(self) -> dict:
        return {"account": self.account_id, "period": self.period, "timezone": self.timezone,
                "subtree": self.subtree, "items": [r.to_dict() for r in self.rows],
                "totals": [{"period": p, **t, "reduction_kg": t["reduction_mg"] / 1_000_000}
                           for p, t in self.totals().items()]}


def period_label(moment: Optional[dt.datetime], period: str, zone) -> str:
    """The calendar period of a time in a zone: 2024-06-20, 2024-W25 (ISO weeks start on
    Monday, as a weekly cap's), 2024-06, 2024; "" for an entry without a time."""
    if moment is None:
        return ""
    local = moment.astimezone(zone).date()
    if period == "day":
        return local.isoformat()
    if period == "week":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    if period == "month":
        return f"{local.year}-{local.month:02d}"
    return str(local.year)


def period_balances(session: Session, actor, account_id: int, period: str = "month", *,
                    timezone: str = DEFAULT_TIMEZONE, start: Optional[dt.datetime] = None,
                    end: Optional[dt.datetime] = None, subtree: bool = False) -> PeriodBalances:
    """Reduction (mg), points and bonus points of the account (with `subtree`, of the
    accounts below it too) per calendar period of the entries' activity times and per
    methodology, net of reversals (module docstring). An integrator's are its own
    entries' only."""
    if period not in PERIODS:
        raise Invalid(f"period: one of {', '.join(PERIODS)}")
    try:
        zone = zone_of(timezone)
    except Exception:  # ZoneInfoNotFoundError, ValueError
        raise Invalid(f"timezone: no time zone {timezone!r}") from None
    actor, where = _keys(session, actor, account_id, subtree)
    joined, reversals = accounts.with_reversals()
    query = _between(_scope(select(CreditEntry.activity_time, CreditEntry.methodology_id,
                                   CreditEntry.reduction_mg, CreditEntry.points,
                                   CreditEntry.bonus, reversals.c.id, reversals.c.reduction_mg,
                                   reversals.c.points, reversals.c.bonus)
                            .select_from(joined).where(where), actor), start, end)
    sums: dict[tuple[str, str], PeriodRow] = {}
    for when, methodology, mg, points, bonus, reversal, r_mg, r_points, r_bonus in session.execute(
            query.execution_options(yield_per=5000)):
        key = (period_label(when, period, zone), methodology)
        row = sums.get(key)
        if row is None:
            row = sums[key] = PeriodRow(*key)
        row.reduction_mg += int(mg)
        row.points += int(points)
        row.bonus += int(bonus or 0)
        row.entries += 1
        if reversal is not None:
            row.reduction_mg -= int(r_mg)
            row.points -= int(r_points)
            row.bonus -= int(r_bonus or 0)
            row.reversed_entries += 1
            row.reversed_mg += int(r_mg)
            row.reversed_points += int(r_points) + int(r_bonus or 0)
    return PeriodBalances(account_id, period, timezone, subtree,
                          [sums[k] for k in sorted(sums)])


# ---------------------------------------------------------------- credits read back
def by_record(session: Session, actor, record_id: str, *,
              methodology: Optional[str] = None) -> list[CreditEntry]:
    """The entries of a record id: record ids are each integrator's own, so an integrator
    (and an administrator calling the API) reads its own records only; the system (the
    command line) every integrator's under that id. One per methodology at most for one
    integrator (UNIQUE (integrator, methodology, record id))."""
    actor = users.actor_in(session, actor)
    query = select(CreditEntry).where(CreditEntry.record_id == str(record_id))
    if actor is not None:
        query = query.where(CreditEntry.integrator_id == actor.id)
    if methodology:
        query = query.where(CreditEntry.methodology_id == methodology)
    return list(session.scalars(query.order_by(CreditEntry.id)))


@dataclass
class Batch:
    batch: CreditBatch
    page: Page
    totals: dict[str, int]

    def to_dict(self) -> dict:
        b = self.batch
        return {"id": b.id, "idempotency_key": b.idempotency_key, "actor": b.actor_id,
                "request_digest": b.request_digest, "methodology": b.methodology_id,
                "version": b.version, "content_hash": b.content_hash,
                "created_at": _time(b.created_at), "totals": self.totals,
                "entries": self.page.to_dict()}


def batch(session: Session, actor, batch_id: int, *, after: Optional[int] = None,
          limit: int = 100) -> Batch:
    """A credit batch (one request's credits under one version) with its entries, a page
    at a time: the caller's own batches; an administrator's and the system's, all."""
    actor = users.actor_in(session, actor)
    found = session.get(CreditBatch, batch_id) if isinstance(batch_id, int) else None
    if found is None or not (_sees_all(actor) or found.actor_id == actor.id):
        raise NotFound(f"no batch {batch_id}")
    query = select(CreditEntry).where(CreditEntry.batch_id == found.id)
    row = session.execute(select(func.count(), func.coalesce(func.sum(CreditEntry.reduction_mg), 0),
                                 func.coalesce(func.sum(CreditEntry.points), 0),
                                 func.coalesce(func.sum(CreditEntry.bonus), 0))
                          .where(CreditEntry.batch_id == found.id)).one()
    totals = {"entries": int(row[0]), "reduction_mg": int(row[1]), "points": int(row[2]),
              "bonus": int(row[3])}
    return Batch(found, _page(session, query, after=after, before=None, limit=limit,
                              newest_first=False), totals)
