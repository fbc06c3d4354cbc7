"""API tokens of integrators (the JSON API /api/v1 authenticates with them).

    with db.unit_of_work() as s:
        row, token = tokens.create(s, admin_id, integrator_id, "ERP connector")
    # `token` is shown once; only its sha256 is stored
    with db.read() as s:
        user = tokens.authenticate(s, request_token)   # None: unknown, revoked, or not allowed

A token belongs to a user with the integrator role and acts as that user; it stops
working when it is revoked, when the user is deactivated, or when they lose the role.
Only the integrator themselves or an administrator make and revoke tokens; both are
audited.

A token has scopes (SCOPES: what it may do; every scope unless fewer are asked) and an
optional expiry, after which it is refused as a revoked one is.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import datetime as dt
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from . import audit, bulk, users
from .errors import Invalid, NotFound
from .models import INTEGRATOR, TOKEN_SCOPES, ApiToken, User, UserRole, utcnow
from .users import Decision, require

PREFIX = "tanpu_"
SCOPES = tuple(TOKEN_SCOPES.split())  # evaluate, credit, accounts, redeem, admin


@dataclass(frozen=True)
class Grant:
    """What an authenticated token lets its bearer do."""

    user: User
    token_id: int
    scopes: frozenset[str]
    expires_at: Optional[dt.datetime]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def can_manage_tokens(actor: Optional[User], owner: User) -> Decision:
    """The integrator themselves, or an administrator."""
    if actor is None or not actor.active:
        return users.deny("not signed in")
    if users.can_manage_users(actor):
        return users.ALLOW
    if actor.id == owner.id and INTEGRATOR in actor.roles:
        return users.ALLOW
    return users.deny("only the integrator themselves or an administrator manage API tokens")


def create(session: Session, actor: User | int, owner: User | int, name: str,
           scopes: Optional[Iterable[str]] = None, expires_at: Optional[dt.datetime] = None
           ) -> tuple[ApiToken, str]:
    """A new token for `owner` (who must have the integrator role): (row, token).
    `scopes`: some of SCOPES (default all); `expires_at`: when it stops working."""
    actor, owner = users.actor_in(session, actor), users.get(session, owner)
    require(can_manage_tokens(actor, owner))
    if not owner.has_role(INTEGRATOR):
        raise Invalid(f"{owner.email} is not an active integrator: API tokens are for integrators")
    name = (name or "").strip()[:100]
    if not name:
        raise Invalid("give the token a name (what uses it)")
    chosen = SCOPES if scopes is None else tuple(s for s in SCOPES if s in set(scopes))
    unknown = sorted(set(scopes or ()) - set(SCOPES))
    if unknown:
        raise Invalid(f"no scope {', '.join(unknown)} (scopes: {', '.join(SCOPES)})")
    if not chosen:
        raise Invalid(f"give the token at least one scope ({', '.join(SCOPES)})")
    if expires_at is not None and expires_at <= utcnow():
        raise Invalid("the expiry is in the past")
    token = PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=owner.id, name=name, prefix=token[:len(PREFIX) + 6],
                   token_hash=hash_token(token), created_by=actor.id, created_at=utcnow(),
                   scopes=" ".join(chosen), expires_at=expires_at)
    session.add(row)
    session.flush()
    audit.append(session, actor, "api_token.create", "api_token", row.id,
                 {"user_id": owner.id, "name": name, "prefix": row.prefix,
                  "scopes": list(chosen),
                  "expires_at": expires_at.isoformat() if expires_at else None})
    return row, token


def revoke(session: Session, actor: User | int, token_id: int) -> ApiToken:
    actor = users.actor_in(session, actor)
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(f"no API token {token_id}")
    require(can_manage_tokens(actor, row.user))
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        row.revoked_by = actor.id
        session.flush()
        audit.append(session, actor, "api_token.revoke", "api_token", row.id,
                     {"user_id": row.user_id, "prefix": row.prefix})
    return row


def of_user(session: Session, owner: User | int) -> list[ApiToken]:
    owner_id = owner.id if isinstance(owner, User) else owner
    return list(session.scalars(select(ApiToken).where(ApiToken.user_id == owner_id)
                                .order_by(ApiToken.id)))


def grant(session: Session, token: str) -> Optional[Grant]:
    """What a token lets its bearer do, or None (unknown, revoked, expired, user
    deactivated or no longer an integrator)."""
    if not token or not token.startswith(PREFIX) or len(token) > 200:
        return None
    digest = hash_token(token)
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    if row is None or not hmac.compare_digest(row.token_hash, digest) or not row.active:
        return None
    user = row.user
    if user is None or not user.has_role(INTEGRATOR):
        return None
    _ = user.roles  # loaded: the caller uses it after the session
    return Grant(user, row.id, row.scope_set, row.expires_at)


# built once: building the statement cost more than running it (SQLite)
_STANDING = (select(ApiToken.id, ApiToken.token_hash, ApiToken.revoked_at, ApiToken.expires_at,
                    ApiToken.scopes, User.active,
                    select(UserRole.user_id).where(UserRole.user_id == ApiToken.user_id,
                                                   UserRole.role == INTEGRATOR).exists())
             .join(User, User.id == ApiToken.user_id)
             .where(ApiToken.token_hash == bindparam("digest")))

# _STANDING as PostgreSQL's text and its fixed parameters (the role), for bulk.pipelined,
# which sends the driver's SQL: compiled from _STANDING, so that the two cannot differ
_PG_STANDING = (_STANDING.compile(dialect=postgresql.psycopg.dialect())
                .construct_expanded_state({"digest": None}))


def standing(session: Session, token: str, *, also: Sequence[tuple[str, dict, bool]] = (),
             answers: Optional[list] = None) -> Optional[tuple]:
    """Everything grant() decides from, in one query without loading any row: (token id,
    revoked at, expires at, scopes, user active, user is an integrator), or None for an
    unknown token. A caller that keeps grants (webui/api/views.py) reuses one while its
    token's standing is unchanged: revoking, expiring, deactivating or removing the
    integrator role changes it.

    `also`: statements (bulk.pipelined's) sent in the same round trip on PostgreSQL, after
    this one; their rows are appended to `answers` (nothing is sent elsewhere, or for a
    token that is not even well formed)."""
    if not token or not token.startswith(PREFIX) or len(token) > 200:
        return None
    digest = hash_token(token)
    if bulk.is_postgresql(session):
        # written out, as a pipeline of one (bulk.pipelined): the first statement of an
        # API request's read transaction, whose BEGIN goes with it (one round trip where
        # there were two) and without SQLAlchemy's execution of a Core statement (half of
        # this check's CPU; docs/ledger.md, Session 16)
        rows, *more = bulk.pipelined(session, [(_PG_STANDING.statement, {**_PG_STANDING.parameters,
                                                                          "digest": digest}, True), *also])
        if answers is not None:
            answers.extend(more)
        if not rows or not hmac.compare_digest(rows[0][1], digest):
            return None
        id_, _hash, revoked_at, expires_at, scopes, active, integrator = rows[0]
        return (id_, _utc(revoked_at), _utc(expires_at), scopes, active, integrator)
    # on the session's connection (Core): the ORM's result handling, for a row it does not
    # load, took two thirds of this query's time, paid by every API request
    row = session.connection().execute(_STANDING, {"digest": digest}).first()
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    return (row.id, row.revoked_at, row.expires_at, row.scopes, row.active, row[6])


def _utc(value: Optional[dt.datetime]) -> Optional[dt.datetime]:
    """A time as UTCDateTime reads it (aware, in UTC)."""
    return None if value is None else value.astimezone(dt.timezone.utc)


def authenticate(session: Session, token: str) -> Optional[User]:
    """The integrator a token belongs to, or None (see grant())."""
    found = grant(session, token)
    return found.user if found else None
