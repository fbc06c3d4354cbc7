"""Carbon accounts: individuals, units, projects and regions in a hierarchy, the
integrators' own ids for them, and their balances rolled up the hierarchy.

    with db.unit_of_work() as s:
        region = accounts.create(s, admin, "region", name="Quzhou", domains=["transport"])
        unit = accounts.create(s, integrator, "unit", parent_id=region.id, name="Bus company")
        person = accounts.resolve(s, integrator_id, "rider-42")   # made on first sight
        accounts.link(s, other_integrator, other_integrator_id, "bike-7", person.id)
    with db.read() as s:
        accounts.balances(s, region.id).subtree.reduction_mg

Hierarchy (models.PARENT_KINDS): an individual or a project is under a unit or a region
or nothing, a unit under a region or nothing, a region under a region or nothing; only
regions can therefore form a cycle, and set_parent refuses one (hierarchy changes are
serialized: a PostgreSQL advisory lock, SQLite's single writer, so two concurrent moves
cannot close a cycle between them).

Status: active ⇄ frozen, and either → closed, which is final: a closed account changes no
more and nothing is attached to it. What frozen means for crediting is the ledger's call.

Identities: (integrator, external id) → account, unique; one account may carry ids of
several integrators. `resolve` is how the ledger turns an integrator's account id into a
platform account, creating an individual on first sight, race-free.

Balances are computed, never stored: the ledger's entries whose `account` is the
platform account id (as text) of any account in the subtree, net of their reversals,
summed by one statement (the hierarchy's closure, AccountAncestor, joined to
credit_entries and reversals), so they cannot disagree with the entries. The closure is
the hierarchy's shape, kept by create and set_parent in their transaction; it holds no
amount (models.AccountAncestor says why it is there). `balances()` is the only computation of a balance:
the API's /balance and /wallet, the account page, redemption and reversal use it.

Every change appends to the audit chain in the same transaction. Permissions are the
predicates of users.py (can_create_account, can_view_account, can_change_account,
can_link_identity); actor None is the system (the command line) and may do everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

from sqlalchemy import (String, and_, delete, func, literal, literal_column, or_, select, text,
                        union_all)
from sqlalchemy.orm import Session

from . import audit, bulk, users
from .errors import Conflict, Invalid, InvalidTransition, NotFound
from .models import (ACCOUNT_DOMAINS, ACCOUNT_KINDS, ACCOUNT_STATUSES, ACTIVE, CLOSED, FROZEN,
                     INDIVIDUAL, INTEGRATOR, PARENT_KINDS, REGION, Account, AccountAncestor,
                     AccountIdentity,
                     CreditEntry, Redemption, RetirementPart, Reversal, User, utcnow)
from .users import require

MAX_EXTERNAL_ID = 200
MAX_NAME = 200
# pg_advisory_xact_lock key for hierarchy changes: 'tanpuacc' as a 64-bit int
_PG_HIERARCHY_LOCK = int.from_bytes(b"tanpuacc", "big") & 0x7FFF_FFFF_FFFF_FFFF

# Status changes by their names in the API, the CLI and the admin page.
STATUS_ACTIONS = {"freeze": FROZEN, "unfreeze": ACTIVE, "close": CLOSED}


# ---------------------------------------------------------------- reading
def get(session: Session, account_id: int) -> Account:
    account = session.get(Account, account_id) if isinstance(account_id, int) else None
    if account is None:
        raise NotFound(f"no account {account_id}")
    return account


def _created(actor: Optional[User], account: Account) -> bool:
    return actor is not None and account.created_by == actor.id


def _linked(session: Session, actor: Optional[User], account_id: int) -> bool:
    if actor is None:
        return False
    return session.scalar(select(AccountIdentity.account_id).where(
        AccountIdentity.integrator_id == actor.id,
        AccountIdentity.account_id == account_id).limit(1)) is not None


def can_view(session: Session, actor: Optional[User | int], account: Account) -> users.Decision:
    """users.can_view_account with what it needs to know; None (the system) sees all."""
    actor = users.actor_in(session, actor)
    if actor is None:
        return users.ALLOW
    return users.can_view_account(actor, created=_created(actor, account),
                                  linked=_linked(session, actor, account.id))


def can_change(session: Session, actor: Optional[User | int], account: Account) -> users.Decision:
    actor = users.actor_in(session, actor)
    if actor is None:
        return users.ALLOW
    return users.can_change_account(actor, created=_created(actor, account))


def visible(session: Session, actor: Optional[User | int], account_id: int) -> Account:
    """The account, when `actor` may see it (NotFound otherwise: an integrator does not
    learn which ids exist beyond its own)."""
    account = get(session, account_id)
    if not can_view(session, actor, account):
        raise NotFound(f"no account {account_id}")
    return account


def _visible_clause(actor: User):
    """SQL: the accounts an integrator sees (what it created or has an id for)."""
    return or_(Account.created_by == actor.id,
               Account.id.in_(select(AccountIdentity.account_id)
                              .where(AccountIdentity.integrator_id == actor.id)))


def list_accounts(session: Session, actor: Optional[User | int], *, kind: Optional[str] = None,
                  status: Optional[str] = None, parent_id: Optional[int] = None,
                  page: int = 1, per_page: int = 20) -> tuple[list[Account], int]:
    """(a page of accounts by id, how many match): all for administrators and the
    system, what it sees for an integrator. parent_id 0 means "at the top"."""
    actor = users.actor_in(session, actor)
    query = select(Account)
    if actor is not None and not actor.has_role("administrator"):
        require(users.can_create_account(actor))  # integrators (and administrators)
        query = query.where(_visible_clause(actor))
    if kind:
        _check(kind, ACCOUNT_KINDS, "kind")
        query = query.where(Account.kind == kind)
    if status:
        _check(status, ACCOUNT_STATUSES, "status")
        query = query.where(Account.status == status)
    if parent_id is not None:
        query = query.where(Account.parent_id.is_(None) if parent_id == 0
                            else Account.parent_id == parent_id)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    items = list(session.scalars(query.order_by(Account.id)
                                 .offset((page - 1) * per_page).limit(per_page)))
    return items, total


def children_count(session: Session, account_id: int) -> int:
    return session.scalar(select(func.count()).select_from(Account)
                          .where(Account.parent_id == account_id))


def children(session: Session, account_id: int, limit: int = 100) -> list[Account]:
    return list(session.scalars(select(Account).where(Account.parent_id == account_id)
                                .order_by(Account.id).limit(limit)))


def identities(session: Session, account_id: int,
               integrator_id: Optional[int] = None) -> list[AccountIdentity]:
    """The account's ids (only one integrator's when integrator_id is given: an
    integrator is never shown another's ids)."""
    query = select(AccountIdentity).where(AccountIdentity.account_id == account_id)
    if integrator_id is not None:
        query = query.where(AccountIdentity.integrator_id == integrator_id)
    return list(session.scalars(query.order_by(AccountIdentity.integrator_id,
                                               AccountIdentity.external_id)))


def subtree_keys(account_id: int):
    """A SELECT of the ledger keys (the account ids as text, what credit_entries.account
    holds) of the account and everything below it, from the closure (AccountAncestor):
    the statement and the period balances of a subtree filter entries by it."""
    table = AccountAncestor.__table__
    return union_all(select(table.c.account).where(table.c.ancestor_id == account_id),
                     select(literal(str(account_id), String)))


def descendants(session: Session, account_id: int) -> list[int]:
    """The ids of every account below `account_id` (not itself), by id."""
    table = AccountAncestor.__table__
    return list(session.scalars(select(table.c.account_id)
                                .where(table.c.ancestor_id == account_id)
                                .order_by(table.c.account_id)))


def ancestors(session: Session, account_id: int) -> list[Account]:
    """The chain of parents, the top first (not the account itself): breadcrumbs."""
    table = AccountAncestor.__table__
    rows = session.execute(select(table.c.ancestor_id, table.c.depth)
                           .where(table.c.account_id == account_id)).all()
    ids = [r.ancestor_id for r in sorted(rows, key=lambda r: -r.depth)]
    found = {a.id: a for a in session.scalars(select(Account).where(Account.id.in_(ids)))}
    return [found[i] for i in ids]


# The closure's rows of an account and its subtree, rewritten when it is placed under a
# parent (made, or moved): those linking the subtree to the ancestors above the account
# go, and every (ancestor of the new parent or the parent itself) x (the account or an
# account below it) pair comes, its depth the sum of both sides'. Plain SQL that SQLite
# and PostgreSQL read alike; the subqueries are not correlated, so each runs once.
_DETACH = text(
    "DELETE FROM account_ancestors WHERE ancestor_id IN "
    "(SELECT ancestor_id FROM account_ancestors WHERE account = :key) "
    "AND (account = :key OR account IN "
    "(SELECT account FROM account_ancestors WHERE ancestor_id = :id))")
_ATTACH = text(
    "INSERT INTO account_ancestors (ancestor_id, account, account_id, depth) "
    "SELECT up.ancestor_id, down.account, down.account_id, up.depth + down.depth "
    "FROM (SELECT ancestor_id, depth + 1 AS depth FROM account_ancestors WHERE account = :parent_key "
    "      UNION ALL SELECT CAST(:parent AS INTEGER), 1) AS up "
    "CROSS JOIN (SELECT account, account_id, depth FROM account_ancestors WHERE ancestor_id = :id "
    "      UNION ALL SELECT CAST(:key AS VARCHAR(200)), CAST(:id AS INTEGER), 0) AS down")


def _place(session: Session, account_id: int, parent_id: Optional[int], moved: bool) -> None:
    """The closure after `account_id` is put under `parent_id` (None: the top); `moved`:
    it had a place before (set_parent), a new account has none. Under the hierarchy's
    lock (_lock_hierarchy), so that the parent's ancestors read here are not being moved."""
    keys = {"id": account_id, "key": str(account_id)}
    if moved:
        session.execute(_DETACH, keys)
    if parent_id is not None:
        session.execute(_ATTACH, {**keys, "parent": parent_id, "parent_key": str(parent_id)})


# ---------------------------------------------------------------- balances
@dataclass
class Totals:
    """What the entries gave, what reversals took back of them, and the difference."""

    reduction_mg: int = 0  # net: credited - reversed
    points: int = 0  # net, points with bonuses
    entries: int = 0  # every entry, reversed ones too
    credited_mg: int = 0
    credited_points: int = 0
    reversed_mg: int = 0
    reversed_points: int = 0
    reversed_entries: int = 0
    by_methodology: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, methodology_id: str, entries: int, reduction_mg: int, points: int,
            reversed_entries: int = 0, reversed_mg: int = 0, reversed_points: int = 0) -> None:
        row = self.by_methodology.setdefault(methodology_id, dict.fromkeys(
            ("reduction_mg", "points", "entries", "credited_mg", "credited_points",
             "reversed_mg", "reversed_points", "reversed_entries"), 0))
        for target in (self.__dict__, row):
            target["entries"] += entries
            target["credited_mg"] += reduction_mg
            target["credited_points"] += points
            target["reversed_entries"] += reversed_entries
            target["reversed_mg"] += reversed_mg
            target["reversed_points"] += reversed_points
            target["reduction_mg"] += reduction_mg - reversed_mg
            target["points"] += points - reversed_points

    def to_dict(self) -> dict:
        return {"reduction_mg": self.reduction_mg, "reduction_kg": self.reduction_mg / 1_000_000,
                "points": self.points, "entries": self.entries,
                "credited_mg": self.credited_mg, "credited_points": self.credited_points,
                "reversed_mg": self.reversed_mg, "reversed_points": self.reversed_points,
                "reversed_entries": self.reversed_entries,
                "by_methodology": {k: {**v, "reduction_kg": v["reduction_mg"] / 1_000_000}
                                   for k, v in sorted(self.by_methodology.items())}}


@dataclass
class Balances:
    """An account's balances, the one computation behind every balance shown (the API's
    /balance and /wallet, the account page, redemption and reversal checks)."""

    account_id: int
    own: Totals  # the account's own entries, net of their reversals
    subtree: Totals  # the account's and every account's below it (own only: see balances())
    redeemed_points: int = 0  # the account's own redemptions
    retirable_mg: int = 0  # the grams the account can still retire (its own credits)

    @property
    def points_balance(self) -> int:
        """What the account may spend: its own net points less what it redeemed. Not
        rolled up: a region does not spend its residents' points."""
        return self.own.points - self.redeemed_points

    def to_dict(self) -> dict:
        return {"account": self.account_id, "own": self.own.to_dict(),
                "subtree": self.subtree.to_dict(), "redeemed_points": self.redeemed_points,
                "points_balance": self.points_balance, "retirable_mg": self.retirable_mg}


def with_reversals():
    """credit_entries joined to their reversals (at most one each: UNIQUE entry_id), the
    one way a balance takes reversals into account: balances() and the per-period
    balances (statements.period_balances) both read entries through it, so an entry
    reversed is netted out of both the same way (a reversal counts against its entry,
    in the entry's account, methodology and period)."""
    entries = CreditEntry.__table__
    reversals = Reversal.__table__
    return entries.outerjoin(reversals, reversals.c.entry_id == entries.c.id), reversals


def balance_statement(account_id: int, subtree: bool = True):
    """The one statement of balances(): (methodology, own?, entries, mg, points, reversed
    entries, reversed mg, reversed points) rows, several per methodology, to be added up:
    the entries' totals and the reversals' totals come in rows of their own. A reversal
    holds its entry's account and amounts (with_reversals' join, per entry, is what the
    per-period balances need), so the million entries of a region are summed without
    a join to reversals; only the few reversals are joined to their entries, for the
    methodology. The account's own rows by the `account` indexes; those below it by the
    closure's rows of the account (AccountAncestor: its primary key's prefix) joined on
    `account`, text to text: one hash join, no walk of the hierarchy."""
    entries = CreditEntry.__table__
    reversals = Reversal.__table__
    tree = AccountAncestor.__table__
    zero = literal_column("0")

    def part(own: str, source, on_account, of_reversals: bool):
        if of_reversals:
            numbers = (zero, zero, zero, func.count(reversals.c.id),
                       func.coalesce(func.sum(reversals.c.reduction_mg), 0),
                       func.coalesce(func.sum(reversals.c.points + reversals.c.bonus), 0))
            source = source.join(entries, entries.c.id == reversals.c.entry_id)
        else:
            numbers = (func.count(), func.coalesce(func.sum(entries.c.reduction_mg), 0),
                       func.coalesce(func.sum(entries.c.points + entries.c.bonus), 0),
                       zero, zero, zero)
        query = select(entries.c.methodology_id, literal_column(own).label("own"), *numbers)
        if own == "1":
            query = query.select_from(source).where(on_account == str(account_id))
        else:
            query = query.select_from(source.join(tree, and_(
                tree.c.account == on_account, tree.c.ancestor_id == account_id)))
        return query.group_by(entries.c.methodology_id)

    parts = [part("1", entries, entries.c.account, False),
             part("1", reversals, reversals.c.account, True)]
    if subtree:
        parts += [part("0", entries, entries.c.account, False),
                  part("0", reversals, reversals.c.account, True)]
    return union_all(*parts)


def remaining_mg():
    """SQL: each credit's grams still retirable (credited - reversed - retired)."""
    reversed_mg = (select(Reversal.reduction_mg).where(Reversal.entry_id == CreditEntry.id)
                   .scalar_subquery())
    retired_mg = (select(func.coalesce(func.sum(RetirementPart.reduction_mg), 0))
                  .where(RetirementPart.entry_id == CreditEntry.id).scalar_subquery())
    return CreditEntry.reduction_mg - func.coalesce(reversed_mg, 0) - retired_mg


def balances(session: Session, account_id: int, *, subtree: bool = True,
             retirable: bool = True) -> Balances:
    """The totals of the account and of its subtree, net of reversals, per methodology
    too; its redeemed points and points balance; the grams it can retire.

    One statement for the totals (balance_statement): the account's own entries, and the
    closure's rows of the accounts below it joined to credit_entries on `account` (the
    ledger stores str(account.id)), each joined to reversals on the entry and grouped by
    methodology. No loop per account and no walk of the hierarchy, so a region with a
    million accounts below it costs one scan of its closure rows and of the entries. `subtree=False`: the account's own only (the
    subtree totals are then its own), for checks under the account's lock."""
    get(session, account_id)
    rows = session.execute(balance_statement(account_id, subtree)).all()
    result = Balances(account_id, Totals(), Totals())
    for methodology_id, is_own, count, mg, points, r_count, r_mg, r_points in rows:
        numbers = (int(count), int(mg), int(points), int(r_count), int(r_mg), int(r_points))
        result.subtree.add(methodology_id, *numbers)
        if is_own:
            result.own.add(methodology_id, *numbers)
    result.redeemed_points = int(session.scalar(
        select(func.coalesce(func.sum(Redemption.points), 0)).where(Redemption.account_id == account_id)))
    if retirable:
        left = remaining_mg()
        result.retirable_mg = int(session.scalar(select(func.coalesce(func.sum(left), 0)).where(
            CreditEntry.account == str(account_id), left > 0)))
    return result


# ---------------------------------------------------------------- changes
def _check(value: str, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise Invalid(f"unknown {what} {value!r} ({what}s: {', '.join(allowed)})")
    return value


def _domains(domains: Iterable[str]) -> list[str]:
    if isinstance(domains, str):
        raise Invalid("domains: a list of domains")
    chosen = set()
    for d in domains:
        _check(d, ACCOUNT_DOMAINS, "domain")
        chosen.add(d)
    return [d for d in ACCOUNT_DOMAINS if d in chosen]  # canonical order


def _name(name: Optional[str]) -> str:
    name = (name or "").strip()
    if len(name) > MAX_NAME:
        raise Invalid(f"a name has at most {MAX_NAME} characters")
    return name


def _lock_hierarchy(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_HIERARCHY_LOCK})


def _check_parent(session: Session, actor: Optional[User], kind: str,
                  parent_id: Optional[int], account_id: Optional[int] = None) -> Optional[Account]:
    """The parent, if `kind` may be under it, it is open, `actor` sees it, and (for an
    existing account) it is not the account or below it."""
    if parent_id is None:
        return None
    parent = visible(session, actor, parent_id)
    if parent.kind not in PARENT_KINDS[kind]:
        raise Invalid(f"a {kind} account can be under a {' or a '.join(PARENT_KINDS[kind])} "
                      f"account or none, not under a {parent.kind}")
    if parent.status == CLOSED:
        raise InvalidTransition(f"account {parent.id} is closed: nothing is attached to it")
    if account_id is not None and kind == REGION:
        # only a region can have a region below it, so only a region can close a cycle
        if parent.id == account_id or account_id in {a.id for a in ancestors(session, parent.id)}:
            raise Invalid(f"account {parent.id} is {account_id} or below it: "
                          "a region cannot be under itself")
    return parent


def create(session: Session, actor: Optional[User | int], kind: str,
           parent_id: Optional[int] = None, name: str = "",
           domains: Iterable[str] = ()) -> Account:
    """A new active account. actor None is the system (the command line)."""
    actor = users.actor_in(session, actor)
    if actor is not None:
        require(users.can_create_account(actor))
    _check(kind, ACCOUNT_KINDS, "kind")
    domains, name = _domains(domains), _name(name)
    if parent_id is not None:
        _lock_hierarchy(session)  # the parent's ancestors, copied below, stay where they are
    _check_parent(session, actor, kind, parent_id)
    now = utcnow()
    account = Account(kind=kind, parent_id=parent_id, name=name, domains=domains, status=ACTIVE,
                      created_by=actor.id if actor else None, created_at=now, updated_at=now)
    session.add(account)
    session.flush()
    _place(session, account.id, parent_id, moved=False)
    audit.append(session, actor, "account.create", "account", account.id,
                 {"kind": kind, "parent": parent_id, "name": name, "domains": domains})
    return account


def update_status(session: Session, actor: Optional[User | int], account_id: int,
                  status: str) -> Account:
    """active ⇄ frozen, either → closed; closed is final."""
    actor = users.actor_in(session, actor)
    _check(status, ACCOUNT_STATUSES, "status")
    account = visible(session, actor, account_id)
    require(can_change(session, actor, account))
    if account.status == status:
        return account
    if account.status == CLOSED:
        raise InvalidTransition(f"account {account.id} is closed: its status is final")
    return _set(session, actor, account, "status", status)


def _set(session: Session, actor: Optional[User], account: Account, column: str,
         value) -> Account:
    """Sets one column, audited as account.set_<column> with the value before and after."""
    before = getattr(account, column)
    setattr(account, column, value)
    account.updated_at = utcnow()
    session.flush()
    audit.append(session, actor, f"account.set_{column.removesuffix('_id')}", "account",
                 account.id, {"from": before, "to": value})
    return account


def _open(account: Account) -> None:
    if account.status == CLOSED:
        raise InvalidTransition(f"account {account.id} is closed: it changes no more")


def set_parent(session: Session, actor: Optional[User | int], account_id: int,
               parent_id: Optional[int]) -> Account:
    """Moves the account (and what is below it) under `parent_id` (None: to the top)."""
    actor = users.actor_in(session, actor)
    _lock_hierarchy(session)  # before reading the hierarchy the check relies on
    account = visible(session, actor, account_id)
    require(can_change(session, actor, account))
    _open(account)
    if account.parent_id == parent_id:
        return account
    _check_parent(session, actor, account.kind, parent_id, account.id)
    account = _set(session, actor, account, "parent_id", parent_id)
    _place(session, account.id, parent_id, moved=True)
    return account


def update(session: Session, actor: Optional[User | int], account_id: int, *,
           name: Optional[str] = None, domains: Optional[Iterable[str]] = None) -> Account:
    """Changes the name and/or the domains (None: unchanged)."""
    actor = users.actor_in(session, actor)
    account = visible(session, actor, account_id)
    require(can_change(session, actor, account))
    changes = {}
    if name is not None and _name(name) != account.name:
        changes["name"] = {"from": account.name, "to": _name(name)}
    if domains is not None and _domains(domains) != list(account.domains):
        changes["domains"] = {"from": list(account.domains), "to": _domains(domains)}
    if not changes:
        return account
    _open(account)
    if "name" in changes:
        account.name = changes["name"]["to"]
    if "domains" in changes:
        account.domains = changes["domains"]["to"]
    account.updated_at = utcnow()
    session.flush()
    audit.append(session, actor, "account.update", "account", account.id, changes)
    return account


# ---------------------------------------------------------------- identities
def _external_id(external_id: str) -> str:
    if not isinstance(external_id, str) or not external_id.strip():
        raise Invalid("an account id of the integrator is a non-empty string")
    if len(external_id) > MAX_EXTERNAL_ID:
        raise Invalid(f"an account id has at most {MAX_EXTERNAL_ID} characters")
    return external_id


def _external_ids(external_ids: Iterable[str]) -> list[str]:
    """sorted({_external_id(e) for e in external_ids}): for a credit's many ids, the
    checks made over the whole set in C (every id a str, none blank, none too long), and
    _external_id called for each only to say which one fails (it raises)."""
    given = list(external_ids)
    if given and (set(map(type, given)) != {str} or not all(map(str.strip, given))
                  or max(map(len, given)) > MAX_EXTERNAL_ID):
        return sorted({_external_id(e) for e in given})
    return sorted(set(given))


def _integrator(session: Session, integrator_id: int) -> User:
    integrator = session.get(User, integrator_id)
    if integrator is None or not integrator.has_role(INTEGRATOR):
        raise Invalid(f"user {integrator_id} is not an active integrator")
    return integrator


def _insert_identities(session: Session, rows: list[dict]) -> set[str]:
    """INSERT ... ON CONFLICT DO NOTHING: the external ids inserted now (of two
    concurrent transactions inserting one pair, one inserts and the other waits for it
    to commit, then finds it present)."""
    return {external for (external,) in bulk.insert_ignoring(
        session, AccountIdentity.__table__, rows, ["integrator_id", "external_id"],
        ["external_id"])}


def _known(session: Session, integrator_id: int, external_ids: Sequence[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for among in bulk.among(session, AccountIdentity.external_id, external_ids):
        found.update(session.execute(select(AccountIdentity.external_id, AccountIdentity.account_id)
                                     .where(AccountIdentity.integrator_id == integrator_id,
                                            among)).all())
    return found


def link(session: Session, actor: Optional[User | int], integrator_id: int, external_id: str,
         account_id: int) -> AccountIdentity:
    """Maps the integrator's `external_id` to the account. Linking it again to the same
    account changes nothing; to another account is a Conflict (unlink it first)."""
    actor = users.actor_in(session, actor)
    if actor is not None:
        require(users.can_link_identity(actor, integrator_id))
    external_id = _external_id(external_id)
    _integrator(session, integrator_id)
    account = visible(session, actor, account_id)
    _open(account)
    inserted = _insert_identities(session, [{"integrator_id": integrator_id,
                                             "external_id": external_id,
                                             "account_id": account.id, "created_at": utcnow()}])
    identity = session.get(AccountIdentity, (integrator_id, external_id))
    if not inserted:
        if identity.account_id != account.id:
            raise Conflict(f"account id {external_id!r} of integrator {integrator_id} is linked "
                           f"to account {identity.account_id}: unlink it first")
        return identity
    audit.append(session, actor, "account.link", "account", account.id,
                 {"integrator_id": integrator_id, "external_id": external_id})
    return identity


def unlink(session: Session, actor: Optional[User | int], integrator_id: int,
           external_id: str) -> None:
    actor = users.actor_in(session, actor)
    if actor is not None:
        require(users.can_link_identity(actor, integrator_id))
    identity = session.get(AccountIdentity, (integrator_id, _external_id(external_id)))
    if identity is None:
        raise NotFound(f"integrator {integrator_id} has no account id {external_id!r}")
    account_id = identity.account_id
    session.delete(identity)
    session.flush()
    audit.append(session, actor, "account.unlink", "account", account_id,
                 {"integrator_id": integrator_id, "external_id": external_id})


def resolve(session: Session, integrator_id: int, external_id: str, *,
            create: bool = True) -> Account:
    """The platform account of an integrator's account id.

    Unknown and create=True: a new active individual account without a parent, created by
    the integrator, with the identity, in the caller's transaction (audited as
    `account.resolve`); unknown and create=False: NotFound. Whatever its status: what a
    frozen or closed account may receive is the caller's decision.

    Race-free: of two transactions resolving the same new pair, both create an account,
    one inserts the identity (ON CONFLICT DO NOTHING), the other waits for it to commit,
    finds it, removes its own account and returns the winner's. Call it before appending
    to the audit chain in a transaction (the chain's lock is taken after the identity's).
    """
    return resolve_many(session, integrator_id, [external_id], create=create)[external_id]


def resolve_many(session: Session, integrator_id: int, external_ids: Iterable[str], *,
                 create: bool = True, created: Optional[list] = None) -> dict[str, Account]:
    """resolve() for many ids at once (external id → account), a few statements however
    many ids and however many are new, and one audit entry for all those created.

    `created`: a list the caller audits itself: the [account id, external id] of each
    account created are appended to it instead of an audit entry of their own (the ledger
    records them in its credit's entry, and so takes the chain's lock once, last)."""
    found = _resolve_ids(session, integrator_id, external_ids, create, created)
    accounts: dict[int, Account] = {}
    for among in bulk.among(session, Account.id, sorted(set(found.values()))):
        accounts.update((a.id, a) for a in session.scalars(select(Account).where(among)))
    return {e: accounts[account_id] for e, account_id in found.items()}


# resolve_statuses' read of the known ids, written out for a caller that sends it in a
# pipeline with other statements (the ledger, PostgreSQL): known_statuses(). One index
# probe per id, of the identity then of its account (LATERAL, as the ledger reads its
# entries and locks its states), so that the plan does not rest on the planner's idea of
# the tables' sizes (on a table not analyzed since it grew, or in a statement prepared
# while it was small, an `= ANY(ids)` join may scan the table: docs/ledger.md, Session 7);
# and the ids as a binary array: psycopg's text format escapes every string, 0.58 ms of
# CPU for 1,000 ids against 0.19 ms (docs/ledger.md, Session 19).
_PG_KNOWN = ("SELECT w.external_id, a.id, a.status FROM unnest(%(ids)b::varchar[]) AS w(external_id) "
             "CROSS JOIN LATERAL (SELECT account_id FROM account_identities WHERE integrator_id = "
             "%(integrator)s::int AND external_id = w.external_id LIMIT 1) AS i "
             "CROSS JOIN LATERAL (SELECT id, status FROM accounts WHERE id = i.account_id LIMIT 1) AS a")


def known_statuses(integrator_id: int, external_ids: Iterable[str]) -> tuple[str, dict]:
    """(sql, parameters) of resolve_statuses' read of the known ids, for PostgreSQL: its
    rows are what `known` takes."""
    return _PG_KNOWN, {"integrator": integrator_id,
                       "ids": bulk.array(_external_ids(external_ids))}


def resolve_statuses(session: Session, integrator_id: int, external_ids: Iterable[str], *,
                     created: Optional[list] = None,
                     known: Optional[Iterable[tuple[str, int, str]]] = None) -> dict[str, tuple[int, str]]:
    """resolve_many() as the ledger needs it, external id → (account id, status): the
    known ids and their accounts' statuses in one query (a credit is a few statements
    more than its round trips are worth), without an Account object per id (making them
    was a good part of a 1,000-record credit); new accounts are made as resolve_many
    makes them. `known`: the rows of known_statuses() when the caller read them already
    (in a pipeline with its other first statements: one round trip less a credit)."""
    wanted = _external_ids(external_ids)
    found: dict[str, tuple[int, str]] = {}
    if known is not None:
        found.update((external, (account_id, status)) for external, account_id, status in known)
    for among in bulk.among(session, AccountIdentity.external_id, wanted if known is None else ()):
        found.update((external, (account_id, status)) for external, account_id, status in
                     session.execute(select(AccountIdentity.external_id, Account.id, Account.status)
                                     .join(Account, Account.id == AccountIdentity.account_id)
                                     .where(AccountIdentity.integrator_id == integrator_id, among)))
    missing = [e for e in wanted if e not in found]
    if missing:
        ids = _resolve_ids(session, integrator_id, missing, True, created)
        status: dict[int, str] = {}
        for among in bulk.among(session, Account.id, sorted(set(ids.values()))):
            status.update(session.execute(select(Account.id, Account.status).where(among)).all())
        found.update((e, (account_id, status[account_id])) for e, account_id in ids.items())
    return found


def _resolve_ids(session: Session, integrator_id: int, external_ids: Iterable[str],
                 create: bool, created: Optional[list]) -> dict[str, int]:
    """External id → account id, in id order, new accounts made for unknown ids (race-free:
    see resolve) and audited here unless `created` is given (resolve_many)."""
    audit_here = created is None
    created = [] if created is None else created
    wanted = sorted({_external_id(e) for e in external_ids})
    found = _known(session, integrator_id, wanted)
    missing = [e for e in wanted if e not in found]
    if missing:
        if not create:
            raise NotFound(f"integrator {integrator_id} has no account id {missing[0]!r}")
        _integrator(session, integrator_id)
        now = utcnow()
        table = Account.__table__
        ids = list(session.scalars(table.insert().returning(table.c.id,
                                                            sort_by_parameter_order=True), [
            {"kind": INDIVIDUAL, "parent_id": None, "name": "", "domains": [],
             "status": ACTIVE, "created_by": integrator_id, "created_at": now,
             "updated_at": now} for _ in missing]))
        new_ids = dict(zip(missing, ids))
        inserted = _insert_identities(session, [
            {"integrator_id": integrator_id, "external_id": e, "account_id": new_ids[e],
             "created_at": now} for e in missing])
        lost = [new_ids[e] for e in missing if e not in inserted]
        if lost:  # another transaction linked these ids first: keep its accounts
            for among in bulk.among(session, Account.id, lost):
                session.execute(delete(Account).where(among))
            found.update(_known(session, integrator_id, [e for e in missing if e not in inserted]))
        for e in missing:
            if e in inserted:
                found[e] = new_ids[e]
                created.append([new_ids[e], e])
        if created and audit_here:
            audit.append(session, integrator_id, "account.resolve", "integrator", integrator_id,
                         {"created": created, "kind": INDIVIDUAL})
    return {e: found[e] for e in wanted}
