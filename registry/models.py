"""The registry's tables as typed SQLAlchemy 2 models.

The migrations in registry/migrations/ create these tables (a test checks that Alembic's
autogenerate finds no difference); the triggers that make published versions, votes,
publications, the audit log and the ledger tamper-proof live only in the migrations.

Times are timezone-aware UTC datetimes on both SQLite and PostgreSQL (`UTCDateTime`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import (JSON, BigInteger, Boolean, CheckConstraint, Column, Date, DateTime,
                        ForeignKey, ForeignKeyConstraint, Index, Integer, MetaData, String, Text,
                        Table, TypeDecorator, UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

UTC = dt.timezone.utc

# Roles (users.py explains what each may do).
EXPERT = "expert"
COMMITTEE_MEMBER = "committee_member"
ADMINISTRATOR = "administrator"
INTEGRATOR = "integrator"
ROLES = (EXPERT, COMMITTEE_MEMBER, ADMINISTRATOR, INTEGRATOR)

# Version states (workflow.py has the transitions between them).
DRAFT = "draft"
SUBMITTED = "submitted"
IN_REVIEW = "in_review"
CHANGES_REQUESTED = "changes_requested"
RESUBMITTED = "resubmitted"
APPROVED = "approved"
REJECTED = "rejected"
PUBLISHED = "published"
SUPERSEDED = "superseded"
SUSPENDED = "suspended"
RETIRED = "retired"
STATES = (DRAFT, SUBMITTED, IN_REVIEW, CHANGES_REQUESTED, RESUBMITTED, APPROVED, REJECTED,
          PUBLISHED, SUPERSEDED, SUSPENDED, RETIRED)
# Once published a version's content never changes again (database triggers).
FROZEN_STATES = (PUBLISHED, SUPERSEDED, SUSPENDED, RETIRED)

# Vote decisions; `abstain` is what a declared conflict of interest records.
APPROVE = "approve"
REQUEST_CHANGES = "request_changes"
REJECT = "reject"
ABSTAIN = "abstain"
DECISIONS = (APPROVE, REQUEST_CHANGES, REJECT, ABSTAIN)

# Ledger entry statuses: only results that earn something are credited.
CREDIT_STATUSES = ("credited", "capped")


def _in(values) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


class UTCDateTime(TypeDecorator):
    """An aware datetime, stored as UTC (SQLite keeps no offset, so it is added back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: give a timezone-aware time")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


# A 64-bit key that is still SQLite's INTEGER PRIMARY KEY (its autoincrementing rowid).
BigKey = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# ---------------------------------------------------------------- users
class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # stored lower-case
    name: Mapped[str] = mapped_column(String(200))
    # argon2id PHC string; NULL: cannot log in (no password set)
    password_hash: Mapped[Optional[str]] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    role_rows: Mapped[list["UserRole"]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin")

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(r.role for r in self.role_rows)

    def has_role(self, role: str) -> bool:
        return self.active and role in self.roles

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email} {sorted(self.roles)}>"


class WebSession(Base):
    """A signed-in web session. The cookie holds a random token; only its sha256 is kept
    here, and a session whose row is ended (signed out, password or roles changed, user
    deactivated) is refused whatever its cookie says (webui/auth.py)."""

    __tablename__ = "web_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the token
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    end_reason: Mapped[str] = mapped_column(String(32), default="", server_default="")


class UserRole(Base):
    __tablename__ = "user_roles"
    __table_args__ = (CheckConstraint(f"role IN {_in(ROLES)}", name="role"),)

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(32), primary_key=True)

    user: Mapped[User] = relationship(back_populates="role_rows")


# ---------------------------------------------------------------- committees
class Committee(Base):
    """The expert committee of one domain (transport, energy, waste, forestry, ...).

    Quorum: at least `min_votes` votes that are not abstentions, of which at least
    approval_numerator / approval_denominator approve (default 3 votes, two thirds).
    """

    __tablename__ = "committees"
    __table_args__ = (
        CheckConstraint("min_votes >= 1", name="min_votes"),
        CheckConstraint("approval_numerator >= 1 AND approval_numerator <= approval_denominator",
                        name="approval_share"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    domain: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    min_votes: Mapped[int] = mapped_column(Integer, default=3)
    approval_numerator: Mapped[int] = mapped_column(Integer, default=2)
    approval_denominator: Mapped[int] = mapped_column(Integer, default=3)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    member_rows: Mapped[list["CommitteeMember"]] = relationship(
        back_populates="committee", cascade="all, delete-orphan", lazy="selectin")

    @property
    def member_ids(self) -> frozenset[int]:
        return frozenset(m.user_id for m in self.member_rows)


class CommitteeMember(Base):
    __tablename__ = "committee_members"

    committee_id: Mapped[int] = mapped_column(ForeignKey("committees.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    added_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    committee: Mapped[Committee] = relationship(back_populates="member_rows")
    user: Mapped[User] = relationship()


# ---------------------------------------------------------------- methodologies
class Methodology(Base):
    """A methodology, by the id its source declares (e.g. cn.shenzhen.public-transit)."""

    __tablename__ = "methodologies"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    title: Mapped[str] = mapped_column(String(400))
    committee_id: Mapped[int] = mapped_column(ForeignKey("committees.id"), index=True)
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    committee: Mapped[Committee] = relationship()
    versions: Mapped[list["MethodologyVersion"]] = relationship(
        back_populates="methodology", order_by="MethodologyVersion.id")


class MethodologyVersion(Base):
    """One version: its source, what the compiler and the examples said at submission,
    its author, state and effective dates.

    Database triggers (migrations) allow only the state changes of workflow.TRANSITIONS,
    refuse any change to the content of a published (or later) version and its deletion,
    and let a version become published only with its publication record.
    """

    __tablename__ = "methodology_versions"
    __table_args__ = (
        UniqueConstraint("methodology_id", "version", name="uq_versions_methodology_version"),
        # targets of composite foreign keys (publications, ledger)
        UniqueConstraint("id", "content_hash", name="uq_versions_id_hash"),
        UniqueConstraint("methodology_id", "version", "content_hash",
                         name="uq_versions_methodology_version_hash"),
        CheckConstraint(f"state IN {_in(STATES)}", name="state"),
        CheckConstraint("major >= 0 AND minor >= 0 AND patch >= 0", name="semver"),
        CheckConstraint("state = 'draft' OR content_hash IS NOT NULL", name="hash_when_submitted"),
        CheckConstraint(f"state NOT IN {_in(FROZEN_STATES)} OR "
                        "(effective_from IS NOT NULL AND published_at IS NOT NULL)",
                        name="published_dates"),
        CheckConstraint("state <> 'superseded' OR "
                        "(superseded_by_id IS NOT NULL AND grace_days IS NOT NULL)",
                        name="superseded_by"),
        CheckConstraint("grace_days IS NULL OR grace_days >= 0", name="grace_days"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    methodology_id: Mapped[str] = mapped_column(ForeignKey("methodologies.id"), index=True)
    version: Mapped[str] = mapped_column(String(64))  # MAJOR.MINOR.PATCH
    major: Mapped[int] = mapped_column(Integer)
    minor: Mapped[int] = mapped_column(Integer)
    patch: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[Optional[str]] = mapped_column(String(80))  # NULL: does not compile
    timezone: Mapped[Optional[str]] = mapped_column(String(64))  # the source's, once compiled
    diagnostics: Mapped[Optional[list[dict[str, Any]]]] = mapped_column(JSON)
    example_results: Mapped[Optional[list[dict[str, Any]]]] = mapped_column(JSON)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    state: Mapped[str] = mapped_column(String(24), default=DRAFT)
    review_round: Mapped[int] = mapped_column(Integer, default=0)  # +1 when the content changes under review
    effective_from: Mapped[Optional[dt.date]] = mapped_column(Date)
    superseded_by_id: Mapped[Optional[int]] = mapped_column(ForeignKey("methodology_versions.id"))
    grace_days: Mapped[Optional[int]] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    submitted_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    published_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    superseded_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)

    methodology: Mapped[Methodology] = relationship(back_populates="versions")
    author: Mapped[User] = relationship()
    superseded_by: Mapped[Optional["MethodologyVersion"]] = relationship(remote_side=[id])

    @property
    def semver(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    @property
    def frozen(self) -> bool:
        return self.state in FROZEN_STATES

    def __repr__(self) -> str:
        return f"<MethodologyVersion {self.methodology_id} {self.version} {self.state}>"


class ReviewRound(Base):
    """One review round of a version, with the quorum rule it was opened under: the rule
    is fixed when the round opens, so that changing the committee's quorum during a
    review applies to the next round only (issue 15). A round's row is written once, when
    it opens, and never changed: a new content hash opens a new round."""

    __tablename__ = "review_rounds"
    __table_args__ = (
        CheckConstraint("min_votes >= 1", name="min_votes"),
        CheckConstraint("approval_numerator >= 1 AND approval_numerator <= approval_denominator",
                        name="approval_share"),
    )

    version_id: Mapped[int] = mapped_column(ForeignKey("methodology_versions.id"), primary_key=True)
    review_round: Mapped[int] = mapped_column(Integer, primary_key=True)
    min_votes: Mapped[int] = mapped_column(Integer)
    approval_numerator: Mapped[int] = mapped_column(Integer)
    approval_denominator: Mapped[int] = mapped_column(Integer)
    opened_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    opened_by: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    # the source the round opened on (a new content hash opens a new round, so it is the
    # content the round reviewed): the "changes since round N" diff. Null for rounds
    # opened before migration 0016.
    source: Mapped[Optional[str]] = mapped_column(Text, nullable=True)


class Vote(Base):
    """One member's vote in one review round, on the content hash they reviewed.

    Append-only; a trigger refuses a vote by the author, on another content hash than the
    version's, outside review, or in another round than the version's.
    """

    __tablename__ = "votes"
    __table_args__ = (
        UniqueConstraint("version_id", "voter_id", "review_round", name="uq_votes_one_per_round"),
        UniqueConstraint("id", "version_id", "content_hash", name="uq_votes_id_version_hash"),
        CheckConstraint(f"decision IN {_in(DECISIONS)}", name="decision"),
        CheckConstraint("NOT conflict_of_interest OR decision = 'abstain'", name="conflict_abstains"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("methodology_versions.id"), index=True)
    voter_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    review_round: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(80))
    decision: Mapped[str] = mapped_column(String(24))
    conflict_of_interest: Mapped[bool] = mapped_column(Boolean, default=False)
    comment: Mapped[str] = mapped_column(Text, default="")
    cast_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    voter: Mapped[User] = relationship()


class VoteChange(Base):
    """A member changing their vote within its round (migration 0016): the vote row stays
    as cast, the last change counts, the rows before are its history. Append-only."""

    __tablename__ = "vote_changes"
    __table_args__ = (
        CheckConstraint(f"decision IN {_in(DECISIONS)}", name="decision"),
        CheckConstraint("NOT conflict_of_interest OR decision = 'abstain'", name="conflict_abstains"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vote_id: Mapped[int] = mapped_column(ForeignKey("votes.id"), index=True)
    decision: Mapped[str] = mapped_column(String(24))
    conflict_of_interest: Mapped[bool] = mapped_column(Boolean, default=False)
    comment: Mapped[str] = mapped_column(Text, default="")
    changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Comment(Base):
    """A review comment outside a vote. Append-only."""

    __tablename__ = "comments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("methodology_versions.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    review_round: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    author: Mapped[User] = relationship()


class Publication(Base):
    """The record of a publication: who published which content hash when, under which
    quorum rule, bound (publication_votes) to the votes that made the quorum. Append-only.
    """

    __tablename__ = "publications"
    __table_args__ = (
        ForeignKeyConstraint(["version_id", "content_hash"],
                             ["methodology_versions.id", "methodology_versions.content_hash"],
                             name="fk_publications_version_hash"),
        UniqueConstraint("id", "version_id", "content_hash", name="uq_publications_id_version_hash"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(Integer, unique=True)
    content_hash: Mapped[str] = mapped_column(String(80))
    published_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    published_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    effective_from: Mapped[dt.date] = mapped_column(Date)
    review_round: Mapped[int] = mapped_column(Integer)
    min_votes: Mapped[int] = mapped_column(Integer)
    approval_numerator: Mapped[int] = mapped_column(Integer)
    approval_denominator: Mapped[int] = mapped_column(Integer)
    votes_counted: Mapped[int] = mapped_column(Integer)
    approvals: Mapped[int] = mapped_column(Integer)

    vote_links: Mapped[list["PublicationVote"]] = relationship(lazy="selectin")


class PublicationVote(Base):
    """A vote a publication rests on. The composite foreign keys make the database refuse
    a vote on another content hash (or another version) than the one published."""

    __tablename__ = "publication_votes"
    __table_args__ = (
        ForeignKeyConstraint(["publication_id", "version_id", "content_hash"],
                             ["publications.id", "publications.version_id",
                              "publications.content_hash"],
                             name="fk_publication_votes_publication"),
        ForeignKeyConstraint(["vote_id", "version_id", "content_hash"],
                             ["votes.id", "votes.version_id", "votes.content_hash"],
                             name="fk_publication_votes_vote"),
    )

    publication_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vote_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(80))


# ---------------------------------------------------------------- audit
class AuditEntry(Base):
    """One entry of the append-only audit chain (audit.py computes and checks the hashes;
    triggers refuse UPDATE and DELETE, and an INSERT that does not continue the chain)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigKey, primary_key=True, autoincrement=False)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    actor_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))  # NULL: the system / CLI
    action: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str] = mapped_column(String(200))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)


# ---------------------------------------------------------------- ledger
class CreditBatch(Base):
    """One call of ledger.credit, by its idempotency key. Append-only."""

    __tablename__ = "credit_batches"
    __table_args__ = (
        UniqueConstraint("actor_id", "idempotency_key"),
        ForeignKeyConstraint(["methodology_id", "version", "content_hash"],
                             ["methodology_versions.methodology_id", "methodology_versions.version",
                              "methodology_versions.content_hash"],
                             name="fk_credit_batches_version"),
    )

    id: Mapped[int] = mapped_column(BigKey, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200))  # unique per actor
    request_digest: Mapped[str] = mapped_column(String(64))  # sha256 of the credited results
    actor_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    methodology_id: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    content_hash: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class CreditEntry(Base):
    """A credited record. UNIQUE (integrator_id, methodology_id, record_id): an
    integrator's record is never credited twice, whatever version or batch; record ids are
    each integrator's own. `record`: the record as sent (JSON), so that a record id sent
    again with other values is told apart, and a credit can be recomputed. Append-only."""

    __tablename__ = "credit_entries"
    __table_args__ = (
        UniqueConstraint("integrator_id", "methodology_id", "record_id"),
        ForeignKeyConstraint(["methodology_id", "version", "content_hash"],
                             ["methodology_versions.methodology_id", "methodology_versions.version",
                              "methodology_versions.content_hash"],
                             name="fk_credit_entries_version"),
        CheckConstraint(f"status IN {_in(CREDIT_STATUSES)}", name="status"),
    )

    id: Mapped[int] = mapped_column(BigKey, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("credit_batches.id"), index=True)
    integrator_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    account: Mapped[str] = mapped_column(String(200), index=True)
    methodology_id: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    content_hash: Mapped[str] = mapped_column(String(80))
    record_id: Mapped[str] = mapped_column(String(200))
    activity_time: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    reduction_mg: Mapped[int] = mapped_column(BigInteger)
    points: Mapped[int] = mapped_column(BigInteger)
    bonus: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str] = mapped_column(Text, default="")  # why this version applied
    credited_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    code: Mapped[str] = mapped_column(String(64), default="", server_default="")  # a cap's CAP_REACHED
    message: Mapped[str] = mapped_column(Text, default="", server_default="")
    record: Mapped[Optional[str]] = mapped_column(Text)
    # the counters and rewards the record moved, `name=amount;...` (engine/counters.py)
    counters: Mapped[str] = mapped_column(Text, default="", server_default="")


class RuleState(Base):
    """What a methodology's cross-record rules remember of an account (engine/state.py),
    written in the transaction that credits the account's records, its row locked while
    it is (registry/ledger.py). One per methodology and account, across versions."""

    __tablename__ = "rule_states"

    methodology_id: Mapped[str] = mapped_column(ForeignKey("methodologies.id"), primary_key=True)
    account: Mapped[str] = mapped_column(String(200), primary_key=True)
    state: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


# The keys a `forbid duplicate` rule accepted (and the events a near-duplicate rule
# kept), per methodology, account and rule (the
# rule's part name, engine/state.rule_part), kept out of the JSON state so that a credit
# reads only the keys its records bring (registry/duplicate_keys.py; docs/ledger.md,
# Session 20). `key`: the key as the state wrote it (engine/state.key_text); `key_hash`:
# 64 bits of the methodology, account, rule and key, the only indexed column (one
# 8-byte index entry a key), compared in full after the match. No primary key: rows are
# only inserted, under the account's state lock, for keys the credit did not find.
duplicate_keys = Table(
    "duplicate_keys", Base.metadata,
    Column("methodology_id", String(128), nullable=False),
    Column("account", String(200), nullable=False),
    Column("rule", Text, nullable=False),
    Column("key_hash", BigInteger, nullable=False),
    Column("key", Text, nullable=False),
    # a near-duplicate rule's event (engine/channels.py Events): its time, its order
    # among the account's events of the rule, the record it was (None for a plain key)
    Column("near", BigInteger),
    Column("ordinal", BigInteger),
    Column("record_id", Text),
    Index("ix_duplicate_keys_key_hash", "key_hash"),
)


# ---------------------------------------------------------------- carbon accounts
# Account kinds, and the kinds each may have as its parent (accounts.py checks it, with
# the absence of cycles, which only regions can form: nothing else has a region parent).
INDIVIDUAL = "individual"
UNIT = "unit"  # an enterprise or organisation
PROJECT = "project"
REGION = "region"
ACCOUNT_KINDS = (INDIVIDUAL, UNIT, PROJECT, REGION)
PARENT_KINDS = {INDIVIDUAL: (UNIT, REGION), PROJECT: (UNIT, REGION), UNIT: (REGION,),
                REGION: (REGION,)}

# Account statuses: a frozen account can be unfrozen; closed is final.
ACTIVE = "active"
FROZEN = "frozen"
CLOSED = "closed"
ACCOUNT_STATUSES = (ACTIVE, FROZEN, CLOSED)

# The seven domains of the Quzhou carbon accounts, a fixed vocabulary.
ACCOUNT_DOMAINS = ("industry", "agriculture", "energy", "buildings", "transport", "residential",
                   "forestry")


class Account(Base):
    """A platform carbon account: an individual, a unit (enterprise, organisation), a
    project or a region, in a hierarchy (parent_id). Balances are not stored here: they
    are summed from the ledger's entries of the account and everything below it
    (accounts.balances).

    `domains` is a JSON list (a subset of ACCOUNT_DOMAINS, in that order) rather than a
    join table: the vocabulary is seven fixed words, an account is always read with its
    domains and never looked up by one, so a list costs one column instead of a table,
    its index and a join on every read; accounts.py validates it.
    `name` is a display name; for an individual it is empty or a pseudonym (docs/ledger.md).
    `created_by`: the user who created it (an integrator may manage what it created; an
    account accounts.resolve makes is the integrator's); NULL: the system (command line).
    """

    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint(f"kind IN {_in(ACCOUNT_KINDS)}", name="kind"),
        CheckConstraint(f"status IN {_in(ACCOUNT_STATUSES)}", name="status"),
        CheckConstraint("parent_id IS NULL OR parent_id <> id", name="not_own_parent"),
        # the recursive CTE of accounts.descendants walks parent_id -> id (index only)
        Index("ix_accounts_parent_id_kind_id", "parent_id", "kind", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[Optional[int]] = mapped_column(ForeignKey("accounts.id"))
    name: Mapped[str] = mapped_column(String(200), default="")
    domains: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    created_by: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    parent: Mapped[Optional["Account"]] = relationship(remote_side=[id])

    def __repr__(self) -> str:
        return f"<Account {self.id} {self.kind} {self.status}>"


class AccountAncestor(Base):
    """The hierarchy's closure: one row per account and each account above it (not the
    account itself), kept by accounts.create and accounts.set_parent in the transaction
    that changes the hierarchy. A region's balances are then one join of its rows
    (`ancestor_id` = the region, the primary key's prefix) to the ledger's entries on
    `account`, instead of a recursive walk that visits a million accounts one parent at a
    time (5.7 s for a region of a million; bench/bench_accounts.py).

    What is stored is the shape of the hierarchy, not a balance: totals are still summed
    from the entries when asked, so nothing can disagree with the ledger (issue 13:
    "computed, not stored twice"); a move rewrites the rows of the moved subtree only.
    `account` is the ledger's key of the account below (its id as text, what
    credit_entries.account holds), so the join compares text to text without a cast per
    row; `account_id` is the same account as a foreign key. `depth`: 1 for the parent."""

    __tablename__ = "account_ancestors"

    ancestor_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    account: Mapped[str] = mapped_column(String(200), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    depth: Mapped[int] = mapped_column(Integer)


class AccountIdentity(Base):
    """An integrator's own id for a platform account. (integrator_id, external_id) is
    unique: one integrator's id names one account; an account may have ids from several
    integrators (one person seen by a bus and a bike operator)."""

    __tablename__ = "account_identities"

    integrator_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    integrator: Mapped[User] = relationship()


# ---------------------------------------------------------------- web: API tokens, line comments
TOKEN_SCOPES = "evaluate credit accounts redeem admin"


class ApiToken(Base):
    """A bearer token of an integrator for the JSON API (/api/v1). Only its sha256 is kept;
    the token itself is shown once, when it is made (registry/tokens.py). A revoked token
    stays, with who revoked it and when."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))  # the token's first characters, to tell it apart
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 hex
    created_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    revoked_by: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    # what the token may do (space-separated, registry/tokens.py SCOPES) and until when
    scopes: Mapped[str] = mapped_column(String(200), default=TOKEN_SCOPES,
                                        server_default=TOKEN_SCOPES)
    expires_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(foreign_keys=[user_id])

    @property
    def active(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > utcnow())

    @property
    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())


class CommentLine(Base):
    """The source line a review comment is about, in the content it was made on.
    Append-only, like comments."""

    __tablename__ = "comment_lines"

    comment_id: Mapped[int] = mapped_column(ForeignKey("comments.id"), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("methodology_versions.id"), index=True)
    line: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[Optional[str]] = mapped_column(String(80))


# ---------------------------------------------------------------- spending, reversal, retirement
# The calendar periods of a reward's stock and per-account limit (as a cap's periods).
REWARD_PERIODS = ("day", "week", "month", "year")


class Reward(Base):
    """An item of the rewards catalogue: a price in points, a stock per period (NULL: no
    limit) and a limit per account per period (NULL: none), the periods being calendar
    periods in `timezone` (registry/rewards.py). Deactivated, never deleted: redemptions
    refer to it."""

    __tablename__ = "rewards"
    __table_args__ = (
        CheckConstraint("price_points > 0", name="price_points"),
        CheckConstraint("stock_per_period IS NULL OR stock_per_period >= 0", name="stock"),
        CheckConstraint("limit_per_account_per_period IS NULL OR limit_per_account_per_period >= 1",
                        name="account_limit"),
        CheckConstraint(f"period IN {_in(REWARD_PERIODS)}", name="period"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))  # Chinese first
    name_en: Mapped[str] = mapped_column(String(200), default="")
    price_points: Mapped[int] = mapped_column(BigInteger)
    stock_per_period: Mapped[Optional[int]] = mapped_column(BigInteger)
    period: Mapped[str] = mapped_column(String(8), default="month")
    limit_per_account_per_period: Mapped[Optional[int]] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Redemption(Base):
    """Points spent on a reward, once per (actor, idempotency key). `period_key`: the
    reward's period the redemption counts in (engine.cross_record.period_of). Append-only."""

    __tablename__ = "redemptions"
    __table_args__ = (
        UniqueConstraint("actor_id", "idempotency_key"),
        Index("ix_redemptions_reward_id_period_key_account_id", "reward_id", "period_key",
              "account_id"),
        CheckConstraint("points > 0", name="points"),
    )

    id: Mapped[int] = mapped_column(BigKey, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    reward_id: Mapped[int] = mapped_column(ForeignKey("rewards.id"))
    actor_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))  # NULL: the system
    idempotency_key: Mapped[str] = mapped_column(String(200))
    points: Mapped[int] = mapped_column(BigInteger)
    period_key: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Reversal(Base):
    """The compensating entry of a credit found wrong (fraud): what the credit gave, taken
    back, with the reason and who did it. UNIQUE entry_id: a credit is reversed at most
    once. `account`: the entry's, so balances subtract it without a join. Append-only."""

    __tablename__ = "reversals"

    id: Mapped[int] = mapped_column(BigKey, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("credit_entries.id"), unique=True)
    account: Mapped[str] = mapped_column(String(200), index=True)
    reduction_mg: Mapped[int] = mapped_column(BigInteger)
    points: Mapped[int] = mapped_column(BigInteger)
    bonus: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text)
    actor_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Retirement(Base):
    """Grams retired from an account against a purpose, with its certificate's digest
    (sha256 of the certificate's canonical JSON, registry/retirements.py). `id`: a random
    UUID, the certificate's public id. Append-only."""

    __tablename__ = "retirements"
    __table_args__ = (CheckConstraint("reduction_mg > 0", name="reduction_mg"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    reduction_mg: Mapped[int] = mapped_column(BigInteger)
    purpose: Mapped[str] = mapped_column(Text)
    beneficiary: Mapped[str] = mapped_column(String(400), default="")
    actor_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    digest: Mapped[str] = mapped_column(String(64))


class RetirementPart(Base):
    """The grams of one credit a retirement took (oldest credits first). Per entry, the
    parts never sum to more than what the entry credited (checked under the account's
    lock). Append-only."""

    __tablename__ = "retirement_parts"
    __table_args__ = (CheckConstraint("reduction_mg > 0", name="reduction_mg"),)

    retirement_id: Mapped[str] = mapped_column(ForeignKey("retirements.id"), primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("credit_entries.id"), primary_key=True,
                                          index=True)
    reduction_mg: Mapped[int] = mapped_column(BigInteger)


class ApiIdempotency(Base):
    """An answered API request that changed state, by its idempotency key (per integrator
    and operation): a retry with the same key and body gets the same answer and writes
    nothing; with another body it is a conflict (registry/idempotency.py). Written in the
    same transaction as the change it answers, so the two are kept or lost together."""

    __tablename__ = "api_idempotency"
    __table_args__ = (UniqueConstraint("user_id", "operation", "key"),)

    id: Mapped[int] = mapped_column(BigKey, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    operation: Mapped[str] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(150))
    request_digest: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    response: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


# ---------------------------------------------------------------- jobs, webhooks
JOB_MODES = ("evaluate", "credit")
JOB_STATES = ("queued", "running", "succeeded", "failed")
JOB_FORMATS = ("csv", "jsonl", "parquet")


class Job(Base):
    """A large submission of an integrator (registry/jobs.py): the records are in a file
    on disk (`input_name` in the jobs folder), the progress here. A worker holds a job
    while `lease_until` is in the future; `rows_done`, `chunks_done` and the totals move
    in the transaction that credits a chunk, so a chunk counts once. `id`: a random UUID,
    the job's public id."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("integrator_id", "idempotency_key"),
        Index("ix_jobs_status_lease_until", "status", "lease_until"),
        CheckConstraint(f"mode IN {_in(JOB_MODES)}", name="mode"),
        CheckConstraint(f"status IN {_in(JOB_STATES)}", name="status"),
        CheckConstraint(f"input_format IN {_in(JOB_FORMATS)}", name="input_format"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    integrator_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    methodology_id: Mapped[str] = mapped_column(String(128))
    mode: Mapped[str] = mapped_column(String(16))
    as_of: Mapped[Optional[dt.date]] = mapped_column(Date)
    idempotency_key: Mapped[Optional[str]] = mapped_column(String(150))
    input_format: Mapped[str] = mapped_column(String(16))
    input_name: Mapped[str] = mapped_column(String(200))  # as the integrator named it
    input_bytes: Mapped[int] = mapped_column(BigInteger)
    input_sha256: Mapped[str] = mapped_column(String(64))  # tells a replay from another file
    chunk_rows: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    rows_total: Mapped[Optional[int]] = mapped_column(BigInteger)
    rows_done: Mapped[int] = mapped_column(BigInteger, default=0)
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    results: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    credited: Mapped[int] = mapped_column(BigInteger, default=0)
    reduction_mg: Mapped[int] = mapped_column(BigInteger, default=0)
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[Optional[str]] = mapped_column(String(100))
    lease_until: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    failure: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    finished_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)


WEBHOOK_EVENTS = ("methodology.published", "methodology.superseded", "job.finished",
                  "credit.reversed")
DELIVERY_STATES = ("pending", "delivered", "failed")


class WebhookSubscription(Base):
    """An integrator's URL for events (registry/webhooks.py). `secret` signs each delivery
    (HMAC-SHA256), so it is kept as it is; `events`: a space-separated list. Deactivated,
    never deleted: deliveries refer to it."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    integrator_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[str] = mapped_column(String(400))
    secret: Mapped[str] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Base):
    """One event for one subscription, written in the transaction of the event (so an
    event is delivered if and only if it happened), then sent by the worker until the
    receiver answers 2xx or the attempts run out. `next_attempt_at` is also the lease of
    the worker sending it."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        CheckConstraint(f"status IN {_in(DELIVERY_STATES)}", name="status"),
    )

    id: Mapped[int] = mapped_column(BigKey, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("webhook_subscriptions.id"), index=True)
    event_id: Mapped[str] = mapped_column(String(36))
    event: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_status: Mapped[Optional[int]] = mapped_column(Integer)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)


# ---------------------------------------------------------------- review like a pull request
class CommentReply(Base):
    """A reply's thread: the comment it answers is the thread's first comment (replies to a
    reply join the same thread). Append-only, like comments (migration 0015)."""

    __tablename__ = "comment_replies"

    comment_id: Mapped[int] = mapped_column(ForeignKey("comments.id"), primary_key=True)
    thread_id: Mapped[int] = mapped_column(ForeignKey("comments.id"), index=True)


class ThreadResolution(Base):
    """A thread resolved or reopened, by whom and when. Append-only: the last row of a
    thread says whether it is resolved, the rows before are its history."""

    __tablename__ = "thread_resolutions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    thread_id: Mapped[int] = mapped_column(ForeignKey("comments.id"), index=True)
    resolved: Mapped[bool] = mapped_column(Boolean)
    actor_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    actor: Mapped[User] = relationship()


class CommentSpan(Base):
    """The lines a comment is about when there are several, and a suggested change: the
    text that would replace lines first_line..last_line (`original`: those lines as they
    were when suggested, so that applying checks they have not changed since). Written
    once; applied_* are set once, when the author applies the suggestion."""

    __tablename__ = "comment_spans"
    __table_args__ = (CheckConstraint("first_line >= 1 AND last_line >= first_line",
                                      name="lines"),)

    comment_id: Mapped[int] = mapped_column(ForeignKey("comments.id"), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("methodology_versions.id"), index=True)
    first_line: Mapped[int] = mapped_column(Integer)
    last_line: Mapped[int] = mapped_column(Integer)
    original: Mapped[str] = mapped_column(Text)
    suggestion: Mapped[Optional[str]] = mapped_column(Text)
    applied_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    applied_by: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    applied_content_hash: Mapped[Optional[str]] = mapped_column(String(80))


class CommentEdit(Base):
    """A comment edited (its new body) or deleted by its author. Append-only: the comment
    row keeps what was first written, the last edit is what is shown, and the audit chain
    has each."""

    __tablename__ = "comment_edits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    comment_id: Mapped[int] = mapped_column(ForeignKey("comments.id"), index=True)
    body: Mapped[str] = mapped_column(Text)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReviewDraft(Base):
    """A comment of a pending review: seen only by its author until they submit the
    review with a verdict, when every draft becomes a comment in one transaction (and the
    draft row goes)."""

    __tablename__ = "review_drafts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("methodology_versions.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    body: Mapped[str] = mapped_column(Text)
    first_line: Mapped[Optional[int]] = mapped_column(Integer)
    last_line: Mapped[Optional[int]] = mapped_column(Integer)
    suggestion: Mapped[Optional[str]] = mapped_column(Text)
    reply_to: Mapped[Optional[int]] = mapped_column(ForeignKey("comments.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Notification(Base):
    """Something that waits for a user (a review to do, a comment on their version, ...):
    listed in the web UI until read, and e-mailed once when SMTP is configured
    (registry.notifications)."""

    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    version_id: Mapped[Optional[int]] = mapped_column(ForeignKey("methodology_versions.id"))
    actor_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    read_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)
    emailed_at: Mapped[Optional[dt.datetime]] = mapped_column(UTCDateTime)

    actor: Mapped[Optional[User]] = relationship(foreign_keys=[actor_id])
    version: Mapped[Optional[MethodologyVersion]] = relationship()
