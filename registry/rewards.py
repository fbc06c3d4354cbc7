"""Spending points: the rewards catalogue and redemptions.

    with db.unit_of_work() as s:
        reward = rewards.create_reward(s, admin, name="公交乘车券", name_en="Bus voucher",
                                       price_points=500, stock_per_period=10_000,
                                       period="month", limit_per_account_per_period=2)
    with db.unit_of_work() as s:
        outcome = rewards.redeem(s, integrator, account_id, reward.id, "order-2024-0001")

An account's points balance is computed, never stored (so it cannot disagree with the
rows it is made of): the points and bonuses of its credit entries, minus the points it
redeemed, minus the points and bonuses of its reversed credits (registry/reversals.py).

A redemption never makes that balance negative, never sells more than a reward's stock
of the period, nor more than its limit per account per period, and happens once per
(actor, idempotency key). Why that holds under concurrency: the account's row and then
the reward's row are locked (PostgreSQL SELECT ... FOR UPDATE; SQLite has one writer at
a time) before anything is counted, so two redemptions of one account, or of one
reward's stock, are judged one after the other, each seeing the other's row. Every
writer that lowers a balance (redemption, reversal, retirement) locks the account row
first, always before any other row, so they never wait for each other in a circle.

Periods are calendar days, weeks (Monday), months or years in the reward's time zone,
numbered as the cross-record caps number theirs (engine.cross_record.period_of).

Who may do what: administrators (and the system, actor None: the command line) manage
the catalogue; administrators and the integrators that see an account (they created it
or have an id for it: registry/accounts.py) redeem for it. A frozen or closed account
redeems nothing. Everything is in the audit chain.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from engine.cross_record import period_of

from . import accounts, audit, users
from .errors import Conflict, Invalid, InvalidTransition, NotFound
from .models import (ACTIVE, ADMINISTRATOR, REWARD_PERIODS, Account, Redemption, Reward, User,
                     utcnow)
from .users import require

MAX_KEY = 200
MAX_NAME = 200
_EPOCH = dt.date(1970, 1, 1)


# ---------------------------------------------------------------- permissions
def can_manage_rewards(user: Optional[User]) -> users.Decision:
    """The catalogue is the programme's (its prices are its budget): administrators only."""
    if user is None or user.has_role(ADMINISTRATOR):
        return users.ALLOW
    return users.deny("needs the administrator role")


def require_administrator(session: Session, actor: Optional[User | int]) -> Optional[User]:
    """The actor, loaded, when it is an administrator or the system (None); Forbidden
    otherwise. Reversals and the catalogue both need it."""
    actor = users.actor_in(session, actor)
    require(can_manage_rewards(actor))
    return actor


# ---------------------------------------------------------------- balances
def lock_account(session: Session, account_id: int) -> Account:
    """The account, its row locked until the transaction ends (PostgreSQL FOR UPDATE;
    SQLite's write transactions already have the database to themselves). Freshly read,
    so a status changed by the transaction we waited for is seen."""
    account = session.scalar(select(Account).where(Account.id == account_id)
                             .with_for_update().execution_options(populate_existing=True))
    if account is None:
        raise NotFound(f"no account {account_id}")
    return account


@dataclass
class Points:
    credited: int  # points and bonuses of the account's credit entries
    redeemed: int
    reversed: int  # points and bonuses of its reversed credits

    @property
    def balance(self) -> int:
        return self.credited - self.redeemed - self.reversed

    def to_dict(self) -> dict:
        return {"credited": self.credited, "redeemed": self.redeemed,
                "reversed": self.reversed, "balance": self.balance}


def points_of(session: Session, account_id: int) -> Points:
    """The account's points, from accounts.balances (its own entries net of reversals,
    less its redemptions: the balance of what one person may spend, not rolled up the
    hierarchy). Under the account's lock the result cannot be lowered by anyone else
    before the transaction ends."""
    found = accounts.balances(session, account_id, subtree=False, retirable=False)
    return Points(found.own.credited_points, found.redeemed_points, found.own.reversed_points)


# ---------------------------------------------------------------- the catalogue
def text(value: Optional[str], what: str, limit: int, *, required: bool) -> str:
    """`value` stripped, of at most `limit` characters (and not empty when required): the
    names, purposes and reasons of spending, reversal and retirement are checked alike."""
    value = (value or "").strip()
    if required and not value:
        raise Invalid(f"{what} is required")
    if len(value) > limit:
        raise Invalid(f"{what} has at most {limit} characters")
    return value


def _count(value, what: str, minimum: int, optional: bool) -> Optional[int]:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise Invalid(f"{what}: a whole number ≥ {minimum}" + (" or none" if optional else ""))
    return value


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"unknown time zone {name!r}") from None
    return name


def _period(value) -> str:
    if value not in REWARD_PERIODS:
        raise Invalid(f"period: one of {', '.join(REWARD_PERIODS)}")
    return value


def _flag(value) -> bool:
    if not isinstance(value, bool):
        raise Invalid("active: true or false")
    return value


def _fields(data: dict, *, creating: bool) -> dict:
    """The reward's columns from `data` (only those given when updating), checked."""
    checks = {
        "name": lambda v: text(v, "a reward's name", MAX_NAME, required=True),
        "name_en": lambda v: text(v, "a reward's English name", MAX_NAME, required=False),
        "price_points": lambda v: _count(v, "price_points", 1, False),
        "stock_per_period": lambda v: _count(v, "stock_per_period", 0, True),
        "limit_per_account_per_period": lambda v: _count(v, "limit_per_account_per_period", 1, True),
        "period": _period,
        "timezone": _zone,
        "active": _flag,
    }
    unknown = sorted(set(data) - set(checks))
    if unknown:
        raise Invalid(f"a reward has no {', '.join(unknown)} ({', '.join(checks)})")
    if creating:
        data = {"name_en": "", "stock_per_period": None, "limit_per_account_per_period": None,
                "period": "month", "timezone": "Asia/Shanghai", "active": True, **data}
        for required in ("name", "price_points"):
            data.setdefault(required, None)
    return {k: checks[k](v) for k, v in data.items()}


REWARD_FIELDS = ("name", "name_en", "price_points", "stock_per_period", "period",
                 "limit_per_account_per_period", "timezone", "active")


def create_reward(session: Session, actor: Optional[User | int], **data) -> Reward:
    """A new reward (name, name_en, price_points, stock_per_period, period,
    limit_per_account_per_period, timezone, active)."""
    actor = require_administrator(session, actor)
    values = _fields(data, creating=True)
    reward = Reward(**values, created_by=actor.id if actor else None, created_at=utcnow())
    session.add(reward)
    session.flush()
    audit.append(session, actor, "reward.create", "reward", reward.id, values)
    return reward


def update_reward(session: Session, actor: Optional[User | int], reward_id: int, **data) -> Reward:
    """Changes the given fields (deactivate: active=False). Redemptions already made keep
    the price they paid; a new stock or limit counts the period's earlier redemptions."""
    actor = require_administrator(session, actor)
    reward = get_reward(session, reward_id, lock=True)
    values = _fields(data, creating=False)
    changes = {k: {"from": getattr(reward, k), "to": v} for k, v in values.items()
               if getattr(reward, k) != v}
    if not changes:
        return reward
    for k, change in changes.items():
        setattr(reward, k, change["to"])
    session.flush()
    audit.append(session, actor, "reward.update", "reward", reward.id, changes)
    return reward


def get_reward(session: Session, reward_id: int, *, lock: bool = False) -> Reward:
    query = select(Reward).where(Reward.id == reward_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    reward = session.scalar(query) if isinstance(reward_id, int) else None
    if reward is None:
        raise NotFound(f"no reward {reward_id}")
    return reward


def list_rewards(session: Session, *, include_inactive: bool = False) -> list[Reward]:
    query = select(Reward).order_by(Reward.id)
    if not include_inactive:
        query = query.where(Reward.active.is_(True))
    return list(session.scalars(query))


def period_key(reward: Reward, at: dt.datetime) -> int:
    """The number of the reward's calendar period that `at` (aware) falls in."""
    local_day = (at.astimezone(ZoneInfo(reward.timezone)).date() - _EPOCH).days
    return period_of(local_day, reward.period)


def redeemed_in_period(session: Session, reward: Reward, key: int,
                       account_id: Optional[int] = None) -> int:
    """How many redemptions of the reward count in period `key` (of one account)."""
    query = select(func.count()).select_from(Redemption).where(
        Redemption.reward_id == reward.id, Redemption.period_key == key)
    if account_id is not None:
        query = query.where(Redemption.account_id == account_id)
    return int(session.scalar(query))


# ---------------------------------------------------------------- redeeming
@dataclass
class RedemptionOutcome:
    redemption: Redemption
    replayed: bool  # True: the key was used before; nothing was written now
    points: Points  # the account's points after it


def _existing(session: Session, actor_id: Optional[int], key: str) -> Optional[Redemption]:
    actor_clause = (Redemption.actor_id.is_(None) if actor_id is None
                    else Redemption.actor_id == actor_id)
    return session.scalar(select(Redemption).where(actor_clause, Redemption.idempotency_key == key))


def _replay(session: Session, found: Redemption, account_id: int, reward_id: int,
            key: str) -> RedemptionOutcome:
    if (found.account_id, found.reward_id) != (account_id, reward_id):
        raise Conflict(f"idempotency key {key!r} was used for another redemption "
                       f"(account {found.account_id}, reward {found.reward_id})")
    return RedemptionOutcome(found, True, points_of(session, account_id))


def redeem(session: Session, actor: Optional[User | int], account_id: int, reward_id: int,
           idempotency_key: str) -> RedemptionOutcome:
    """Spends the reward's price from the account's points, once per idempotency key.

    Replaying a key with the same account and reward returns the first redemption and
    writes nothing; with another account or reward it is a Conflict. Refused (nothing
    written): an account that is not active (InvalidTransition), an inactive reward,
    too few points, the period's stock sold out or the account's limit reached
    (Conflict, with the numbers)."""
    actor = users.actor_in(session, actor)
    if not isinstance(idempotency_key, str) or not idempotency_key.strip():
        raise Invalid("a redemption needs an idempotency key")
    if len(idempotency_key) > MAX_KEY:
        raise Invalid(f"an idempotency key has at most {MAX_KEY} characters")
    accounts.visible(session, actor, account_id)  # 404 for an integrator that does not see it
    actor_id = actor.id if actor else None
    # the locks first: account, then reward (module docstring)
    account = lock_account(session, account_id)
    reward = get_reward(session, reward_id, lock=True)
    found = _existing(session, actor_id, idempotency_key)
    if found is not None:
        return _replay(session, found, account_id, reward_id, idempotency_key)
    if account.status != ACTIVE:
        raise InvalidTransition(f"account {account.id} is {account.status}: it redeems nothing")
    if not reward.active:
        raise InvalidTransition(f"reward {reward.id} is not offered any more")
    now = utcnow()
    key = period_key(reward, now)
    if reward.stock_per_period is not None:
        sold = redeemed_in_period(session, reward, key)
        if sold >= reward.stock_per_period:
            raise Conflict(f"reward {reward.id} is sold out this {reward.period} "
                           f"({sold} of {reward.stock_per_period})")
    if reward.limit_per_account_per_period is not None:
        mine = redeemed_in_period(session, reward, key, account.id)
        if mine >= reward.limit_per_account_per_period:
            raise Conflict(f"account {account.id} has redeemed reward {reward.id} {mine} times "
                           f"this {reward.period}: the limit is {reward.limit_per_account_per_period}")
    points = points_of(session, account.id)
    if points.balance < reward.price_points:
        raise Conflict(f"account {account.id} has {points.balance} points; reward {reward.id} "
                       f"costs {reward.price_points}")
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    table = Redemption.__table__
    new_id = session.scalar(insert(table).values(
        account_id=account.id, reward_id=reward.id, actor_id=actor_id,
        idempotency_key=idempotency_key, points=reward.price_points, period_key=key,
        created_at=now).on_conflict_do_nothing(index_elements=["actor_id", "idempotency_key"])
        .returning(table.c.id))
    if new_id is None:  # the same key, for another account, committed meanwhile
        return _replay(session, _existing(session, actor_id, idempotency_key), account_id,
                       reward_id, idempotency_key)
    redemption = session.get(Redemption, new_id)
    audit.append(session, actor, "reward.redeem", "account", account.id, {
        "redemption": new_id, "reward": reward.id, "points": reward.price_points,
        "period": reward.period, "period_key": key, "idempotency_key": idempotency_key,
        "balance_after": points.balance - reward.price_points})
    return RedemptionOutcome(redemption, False, Points(points.credited,
                                                       points.redeemed + reward.price_points,
                                                       points.reversed))


def redemptions_of(session: Session, account_id: int, limit: int = 100) -> list[Redemption]:
    return list(session.scalars(select(Redemption).where(Redemption.account_id == account_id)
                                .order_by(Redemption.id.desc()).limit(limit)))


def stock_left(session: Session, reward: Reward, at: Optional[dt.datetime] = None) -> Optional[int]:
    """What is left of the reward's stock in the current period (None: no limit)."""
    if reward.stock_per_period is None:
        return None
    sold = redeemed_in_period(session, reward, period_key(reward, at or utcnow()))
    return max(0, reward.stock_per_period - sold)

