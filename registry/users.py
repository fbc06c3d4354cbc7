"""Users, roles, passwords, and who may do what.

Roles:
  expert            writes methodologies: creates versions, edits and submits their own
  committee_member  reviews: votes in the committees they belong to (never on their own
                    work), comments, asks for changes
  administrator     manages users and committees; approves, rejects, publishes (only when
                    the quorum is met, never their own work), suspends, reinstates, retires
  integrator        machine clients: evaluate with published versions and credit the
                    ledger; sees no review pages

The predicates below (`can_*`) are what workflow.py enforces on every action and what the
web UI should use to decide what to show; each returns a Decision that is truthy when the
action is allowed and says why when it is not.

Passwords: argon2id (argon2-cffi, RFC 9106 low-memory parameters); a hash made with
older parameters is upgraded at the next successful login.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit
from .errors import Forbidden, Invalid, NotFound
from .models import (ADMINISTRATOR, COMMITTEE_MEMBER, EXPERT, INTEGRATOR, ROLES, Committee,
                     MethodologyVersion, User, UserRole, WebSession, utcnow)

MIN_PASSWORD_LENGTH = 10

_hasher = PasswordHasher()
_DUMMY_HASH: Optional[str] = None


def use_hasher(hasher: PasswordHasher) -> PasswordHasher:
    """Replaces the password hasher (tests use cheap parameters); returns the old one."""
    global _hasher, _DUMMY_HASH
    old, _hasher, _DUMMY_HASH = _hasher, hasher, None
    return old


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise Invalid(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


# ---------------------------------------------------------------- decisions
@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.allowed


ALLOW = Decision(True)


def deny(reason: str) -> Decision:
    return Decision(False, reason)


def require(decision: Decision) -> None:
    if not decision:
        raise Forbidden(decision.reason)


def _active(user: Optional[User]) -> Decision:
    if user is None:
        return deny("not signed in")
    if not user.active:
        return deny("this account is deactivated")
    return ALLOW


def _has(user: Optional[User], role: str) -> Decision:
    ok = _active(user)
    if not ok:
        return ok
    return ALLOW if role in user.roles else deny(f"needs the {role.replace('_', ' ')} role")


def _committee(version: MethodologyVersion) -> Committee:
    return version.methodology.committee


def is_author(user: Optional[User], version: MethodologyVersion) -> bool:
    return user is not None and version.author_id == user.id


def is_member(user: Optional[User], committee: Committee) -> bool:
    return user is not None and user.id in committee.member_ids


def can_manage_users(user: Optional[User]) -> Decision:
    return _has(user, ADMINISTRATOR)


def can_manage_committees(user: Optional[User]) -> Decision:
    return _has(user, ADMINISTRATOR)


def can_create_methodology(user: Optional[User]) -> Decision:
    return _has(user, EXPERT) or _has(user, ADMINISTRATOR) or deny("needs the expert role")


def can_author(user: Optional[User]) -> Decision:
    """May create a new version (of any methodology)."""
    return _has(user, EXPERT)


def can_edit(user: Optional[User], version: MethodologyVersion) -> Decision:
    """May change the source or submit: the author, while they are still an expert."""
    ok = _has(user, EXPERT)
    if not ok:
        return ok
    return ALLOW if is_author(user, version) else deny("only the author can change or submit a version")


def can_view_review(user: Optional[User], version: MethodologyVersion) -> Decision:
    """May see the review (votes, comments, diagnostics): administrators, the author and
    the members of the methodology's committee. Integrators see no review pages."""
    ok = _active(user)
    if not ok:
        return ok
    if ADMINISTRATOR in user.roles or is_author(user, version):
        return ALLOW
    if COMMITTEE_MEMBER in user.roles and is_member(user, _committee(version)):
        return ALLOW
    return deny("only administrators, the author and the committee see a review")


def can_view_version(user: Optional[User], version: MethodologyVersion) -> Decision:
    """A published (or later) version is public to every signed-in user; anything before
    that is part of the review."""
    if version.frozen:
        return _active(user)
    return can_view_review(user, version)


def can_comment(user: Optional[User], version: MethodologyVersion) -> Decision:
    return can_view_review(user, version)


def can_vote(user: Optional[User], version: MethodologyVersion) -> Decision:
    ok = _has(user, COMMITTEE_MEMBER)
    if not ok:
        return ok
    if is_author(user, version):
        return deny("the author cannot vote on their own submission")
    committee = _committee(version)
    if not is_member(user, committee):
        return deny(f"only members of the {committee.domain} committee vote on this methodology")
    return ALLOW


def can_open_review(user: Optional[User], version: MethodologyVersion) -> Decision:
    if is_author(user, version):
        return deny("the author cannot run the review of their own submission")
    if _has(user, ADMINISTRATOR):
        return ALLOW
    return can_vote(user, version)


def can_request_changes(user: Optional[User], version: MethodologyVersion) -> Decision:
    return can_open_review(user, version)


def can_decide(user: Optional[User], version: MethodologyVersion) -> Decision:
    """Approve, reject or publish: an administrator who is not the author."""
    ok = _has(user, ADMINISTRATOR)
    if not ok:
        return ok
    if is_author(user, version):
        return deny("an author cannot approve or publish their own work")
    return ALLOW


def can_change_published(user: Optional[User], version: MethodologyVersion) -> Decision:
    """Suspend, reinstate or retire a published version."""
    return _has(user, ADMINISTRATOR)


def can_withdraw(user: Optional[User], version: MethodologyVersion) -> Decision:
    """Take a version back to draft: its author or an administrator."""
    if is_author(user, version) and _active(user):
        return ALLOW
    return _has(user, ADMINISTRATOR) or deny("only the author or an administrator can withdraw")


def can_credit(user: Optional[User]) -> Decision:
    return _has(user, INTEGRATOR) or _has(user, ADMINISTRATOR) or deny("needs the integrator role")


# ---------------------------------------------------------------- carbon accounts
# Administrators manage every account. An integrator creates accounts, links its own
# account ids to them, and sees and changes what it created; it also sees the accounts
# it has an id for (whoever created them). accounts.py computes `created` and `linked`.
def can_create_account(user: Optional[User]) -> Decision:
    return (_has(user, ADMINISTRATOR) or _has(user, INTEGRATOR)
            or deny("needs the integrator or administrator role"))


def can_view_account(user: Optional[User], *, created: bool, linked: bool) -> Decision:
    """created: `user` created the account; linked: `user` has an identity for it."""
    if _has(user, ADMINISTRATOR):
        return ALLOW
    ok = _has(user, INTEGRATOR)
    if not ok:
        return deny("needs the integrator or administrator role")
    return ALLOW if created or linked else deny(
        "an integrator sees only the accounts it created or has an account id for")


def can_change_account(user: Optional[User], *, created: bool) -> Decision:
    """Status, parent, name, domains: an administrator, or the integrator that created it."""
    if _has(user, ADMINISTRATOR):
        return ALLOW
    ok = _has(user, INTEGRATOR)
    if not ok:
        return deny("needs the integrator or administrator role")
    return ALLOW if created else deny("only an administrator or the integrator that created "
                                      "an account can change it")


def can_link_identity(user: Optional[User], integrator_id: int) -> Decision:
    """Link or unlink an integrator's account id: that integrator, or an administrator."""
    if _has(user, ADMINISTRATOR):
        return ALLOW
    ok = _has(user, INTEGRATOR)
    if not ok:
        return deny("needs the integrator or administrator role")
    return ALLOW if user.id == integrator_id else deny(
        "an integrator links only its own account ids")


# ---------------------------------------------------------------- users
def normalize_email(email: str) -> str:
    email = (email or "").strip().lower()
    local, _, domain = email.partition("@")
    if not local or "." not in domain or " " in email or len(email) > 254:
        raise Invalid(f"not an email address: {email!r}")
    return email


def _roles(roles: Iterable[str]) -> list[str]:
    roles = sorted(set(roles))
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise Invalid(f"unknown role {', '.join(unknown)} (roles: {', '.join(ROLES)})")
    return roles


def get(session: Session, user: User | int) -> User:
    """The user (by object or id) as loaded in this session."""
    user_id = user.id if isinstance(user, User) else user
    found = session.get(User, user_id)
    if found is None:
        raise NotFound(f"no user {user_id}")
    return found


def actor_in(session: Session, actor: Optional[User | int]) -> Optional[User]:
    """The acting user as loaded in this session; None stays None (the system)."""
    return None if actor is None else get(session, actor)


def by_email(session: Session, email: str) -> Optional[User]:
    return session.scalar(select(User).where(User.email == normalize_email(email)))


def create_user(session: Session, actor: Optional[User | int], *, email: str, name: str,
                roles: Iterable[str], password: Optional[str] = None) -> User:
    """Creates a user. actor None is the system (`tanpu admin create-user`); otherwise it
    must be an administrator. Without a password the user cannot sign in until one is set."""
    actor = actor_in(session, actor)
    if actor is not None:
        require(can_manage_users(actor))
    email = normalize_email(email)
    name = (name or "").strip()
    if not name:
        raise Invalid("a user needs a name")
    roles = _roles(roles)
    if not roles:
        raise Invalid("a user needs at least one role")
    if by_email(session, email) is not None:
        raise Invalid(f"a user with email {email} exists")
    user = User(email=email, name=name, active=True,
                password_hash=hash_password(password) if password is not None else None,
                role_rows=[UserRole(role=r) for r in roles])
    session.add(user)
    session.flush()
    audit.append(session, actor, "user.create", "user", user.id,
                 {"email": email, "name": name, "roles": roles,
                  "password_set": password is not None})
    return user


# ---------------------------------------------------------------- web sessions
def session_key(token: str) -> str:
    """What is stored of a session token: its sha256 (a database read gives no cookie)."""
    import hashlib
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(session: Session, user: User | int) -> str:
    """A new web session of `user`: the token its cookie carries."""
    import secrets
    user = get(session, user)
    token = secrets.token_urlsafe(32)
    session.add(WebSession(id=session_key(token), user_id=user.id, created_at=utcnow()))
    session.flush()
    return token


def session_user(session: Session, token: str) -> Optional[User]:
    """The user of a web session still open, else None."""
    row = session.get(WebSession, session_key(token))
    if row is None or row.ended_at is not None:
        return None
    return session.get(User, row.user_id)


def end_session(session: Session, token: str, reason: str = "signed out") -> None:
    row = session.get(WebSession, session_key(token))
    if row is not None and row.ended_at is None:
        row.ended_at, row.end_reason = utcnow(), reason
        session.flush()


def end_sessions(session: Session, user: User | int, reason: str) -> int:
    """Ends every open web session of `user` (what changed makes them stale)."""
    from sqlalchemy import update
    user_id = user.id if isinstance(user, User) else user
    done = session.execute(update(WebSession).where(WebSession.user_id == user_id,
                                                    WebSession.ended_at.is_(None))
                           .values(ended_at=utcnow(), end_reason=reason))
    return done.rowcount or 0


def grant_role(session: Session, actor: User | int, user: User | int, role: str) -> User:
    actor, user = actor_in(session, actor), get(session, user)
    require(can_manage_users(actor))
    _roles([role])
    if role not in user.roles:
        user.role_rows.append(UserRole(role=role))
        session.flush()
        end_sessions(session, user, "roles changed")
        audit.append(session, actor, "user.grant_role", "user", user.id, {"role": role})
    return user


def revoke_role(session: Session, actor: User | int, user: User | int, role: str) -> User:
    actor, user = actor_in(session, actor), get(session, user)
    require(can_manage_users(actor))
    if actor.id == user.id and role == ADMINISTRATOR:
        raise Forbidden("an administrator cannot revoke their own administrator role")
    rows = [r for r in user.role_rows if r.role == role]
    if rows:
        user.role_rows.remove(rows[0])
        session.flush()
        end_sessions(session, user, "roles changed")
        audit.append(session, actor, "user.revoke_role", "user", user.id, {"role": role})
    return user


def set_active(session: Session, actor: User | int, user: User | int, active: bool) -> User:
    actor, user = actor_in(session, actor), get(session, user)
    require(can_manage_users(actor))
    if actor.id == user.id and not active:
        raise Forbidden("an administrator cannot deactivate themselves")
    if user.active != active:
        user.active = active
        session.flush()
        if not active:
            end_sessions(session, user, "deactivated")
        audit.append(session, actor, "user.activate" if active else "user.deactivate",
                     "user", user.id, {})
    return user


def set_password(session: Session, actor: Optional[User | int], user: User | int,
                 password: str) -> User:
    """The user themselves or an administrator (None: the system, from the CLI)."""
    actor, user = actor_in(session, actor), get(session, user)
    if actor is not None and actor.id != user.id:
        require(can_manage_users(actor))
    user.password_hash = hash_password(password)
    session.flush()
    end_sessions(session, user, "password changed")
    audit.append(session, actor, "user.set_password", "user", user.id, {})
    return user


def authenticate(session: Session, email: str, password: str) -> Optional[User]:
    """The active user with this email and password, or None. Spends the same time on an
    unknown email as on a wrong password."""
    global _DUMMY_HASH
    try:
        user = by_email(session, email)
    except Invalid:
        user = None
    if user is None or not user.active or not user.password_hash:
        if _DUMMY_HASH is None:
            _DUMMY_HASH = _hasher.hash("not a password, only for timing")
        try:
            _hasher.verify(_DUMMY_HASH, password)
        except VerificationError:
            pass
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
        session.flush()
    return user
