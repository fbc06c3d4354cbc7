"""Committees, methodologies and their versions, votes, comments and publications,
with the triggers that make the lifecycle and published content tamper-proof.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-01
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from registry.migrations import sqlguards as g

revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TS = sa.DateTime(timezone=True)
STATES = ("draft", "submitted", "in_review", "changes_requested", "resubmitted", "approved",
          "rejected", "published", "superseded", "suspended", "retired")
FROZEN = ("published", "superseded", "suspended", "retired")
DECISIONS = ("approve", "request_changes", "reject", "abstain")
# Every state change the database allows (registry.workflow.TRANSITIONS, as of this revision).
STATE_CHANGES = (
    ("draft", "submitted"),
    ("submitted", "in_review"), ("submitted", "draft"),
    ("in_review", "changes_requested"), ("in_review", "approved"), ("in_review", "rejected"),
    ("in_review", "draft"),
    ("changes_requested", "resubmitted"), ("changes_requested", "draft"),
    ("resubmitted", "in_review"), ("resubmitted", "draft"),
    ("approved", "published"), ("approved", "in_review"), ("approved", "draft"),
    ("published", "superseded"), ("published", "suspended"), ("published", "retired"),
    ("superseded", "suspended"), ("superseded", "retired"),
    ("suspended", "published"), ("suspended", "superseded"), ("suspended", "retired"),
)
# Never change, in any state.
IDENTITY = ("id", "methodology_id", "version", "major", "minor", "patch", "author_id", "created_at")
# Never change once the version is published (or later).
CONTENT = ("source", "content_hash", "timezone", "diagnostics", "example_results", "review_round",
           "effective_from", "published_at", "submitted_at")
JSON_COLUMNS = ("diagnostics", "example_results")
# Set once (when superseded), never changed after.
SET_ONCE = ("superseded_by_id", "grace_days", "superseded_at")

APPEND_ONLY = ("votes", "comments", "publications", "publication_votes")


def upgrade() -> None:
    op.create_table(
        "committees",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("min_votes", sa.Integer(), nullable=False),
        sa.Column("approval_numerator", sa.Integer(), nullable=False),
        sa.Column("approval_denominator", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("min_votes >= 1", name=op.f("ck_committees_min_votes")),
        sa.CheckConstraint("approval_numerator >= 1 AND approval_numerator <= approval_denominator",
                           name=op.f("ck_committees_approval_share")),
        sa.PrimaryKeyConstraint("id", name="pk_committees"),
        sa.UniqueConstraint("domain", name="uq_committees_domain"),
    )
    op.create_table(
        "committee_members",
        sa.Column("committee_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("added_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["committee_id"], ["committees.id"],
                                name="fk_committee_members_committee_id"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_committee_members_user_id"),
        sa.PrimaryKeyConstraint("committee_id", "user_id", name="pk_committee_members"),
    )
    op.create_table(
        "methodologies",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("title", sa.String(400), nullable=False),
        sa.Column("committee_id", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["committee_id"], ["committees.id"],
                                name="fk_methodologies_committee_id"),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name="fk_methodologies_created_by"),
        sa.PrimaryKeyConstraint("id", name="pk_methodologies"),
    )
    op.create_index("ix_methodologies_committee_id", "methodologies", ["committee_id"])
    op.create_table(
        "methodology_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("methodology_id", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("major", sa.Integer(), nullable=False),
        sa.Column("minor", sa.Integer(), nullable=False),
        sa.Column("patch", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(80), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=True),
        sa.Column("diagnostics", sa.JSON(), nullable=True),
        sa.Column("example_results", sa.JSON(), nullable=True),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(24), nullable=False),
        sa.Column("review_round", sa.Integer(), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=True),
        sa.Column("superseded_by_id", sa.Integer(), nullable=True),
        sa.Column("grace_days", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("submitted_at", TS, nullable=True),
        sa.Column("published_at", TS, nullable=True),
        sa.Column("superseded_at", TS, nullable=True),
        sa.CheckConstraint(f"state IN {g.in_list(STATES)}", name=op.f("ck_methodology_versions_state")),
        sa.CheckConstraint("major >= 0 AND minor >= 0 AND patch >= 0",
                           name=op.f("ck_methodology_versions_semver")),
        sa.CheckConstraint("state = 'draft' OR content_hash IS NOT NULL",
                           name=op.f("ck_methodology_versions_hash_when_submitted")),
        sa.CheckConstraint(f"state NOT IN {g.in_list(FROZEN)} OR "
                           "(effective_from IS NOT NULL AND published_at IS NOT NULL)",
                           name=op.f("ck_methodology_versions_published_dates")),
        sa.CheckConstraint("state <> 'superseded' OR "
                           "(superseded_by_id IS NOT NULL AND grace_days IS NOT NULL)",
                           name=op.f("ck_methodology_versions_superseded_by")),
        sa.CheckConstraint("grace_days IS NULL OR grace_days >= 0",
                           name=op.f("ck_methodology_versions_grace_days")),
        sa.ForeignKeyConstraint(["methodology_id"], ["methodologies.id"],
                                name="fk_methodology_versions_methodology_id"),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"], name="fk_methodology_versions_author_id"),
        sa.ForeignKeyConstraint(["superseded_by_id"], ["methodology_versions.id"],
                                name="fk_methodology_versions_superseded_by_id"),
        sa.PrimaryKeyConstraint("id", name="pk_methodology_versions"),
        sa.UniqueConstraint("methodology_id", "version", name="uq_versions_methodology_version"),
        sa.UniqueConstraint("id", "content_hash", name="uq_versions_id_hash"),
        sa.UniqueConstraint("methodology_id", "version", "content_hash",
                            name="uq_versions_methodology_version_hash"),
    )
    op.create_index("ix_methodology_versions_methodology_id", "methodology_versions",
                    ["methodology_id"])
    op.create_table(
        "votes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("voter_id", sa.Integer(), nullable=False),
        sa.Column("review_round", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(80), nullable=False),
        sa.Column("decision", sa.String(24), nullable=False),
        sa.Column("conflict_of_interest", sa.Boolean(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("cast_at", TS, nullable=False),
        sa.CheckConstraint(f"decision IN {g.in_list(DECISIONS)}", name=op.f("ck_votes_decision")),
        sa.CheckConstraint("NOT conflict_of_interest OR decision = 'abstain'",
                           name=op.f("ck_votes_conflict_abstains")),
        sa.ForeignKeyConstraint(["version_id"], ["methodology_versions.id"],
                                name="fk_votes_version_id"),
        sa.ForeignKeyConstraint(["voter_id"], ["users.id"], name="fk_votes_voter_id"),
        sa.PrimaryKeyConstraint("id", name="pk_votes"),
        sa.UniqueConstraint("version_id", "voter_id", "review_round", name="uq_votes_one_per_round"),
        sa.UniqueConstraint("id", "version_id", "content_hash", name="uq_votes_id_version_hash"),
    )
    op.create_index("ix_votes_version_id", "votes", ["version_id"])
    op.create_table(
        "comments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("review_round", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["version_id"], ["methodology_versions.id"],
                                name="fk_comments_version_id"),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"], name="fk_comments_author_id"),
        sa.PrimaryKeyConstraint("id", name="pk_comments"),
    )
    op.create_index("ix_comments_version_id", "comments", ["version_id"])
    op.create_table(
        "publications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(80), nullable=False),
        sa.Column("published_by", sa.Integer(), nullable=False),
        sa.Column("published_at", TS, nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("review_round", sa.Integer(), nullable=False),
        sa.Column("min_votes", sa.Integer(), nullable=False),
        sa.Column("approval_numerator", sa.Integer(), nullable=False),
        sa.Column("approval_denominator", sa.Integer(), nullable=False),
        sa.Column("votes_counted", sa.Integer(), nullable=False),
        sa.Column("approvals", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["version_id", "content_hash"],
                                ["methodology_versions.id", "methodology_versions.content_hash"],
                                name="fk_publications_version_hash"),
        sa.ForeignKeyConstraint(["published_by"], ["users.id"], name="fk_publications_published_by"),
        sa.PrimaryKeyConstraint("id", name="pk_publications"),
        sa.UniqueConstraint("version_id", name="uq_publications_version_id"),
        sa.UniqueConstraint("id", "version_id", "content_hash",
                            name="uq_publications_id_version_hash"),
    )
    op.create_table(
        "publication_votes",
        sa.Column("publication_id", sa.Integer(), nullable=False),
        sa.Column("vote_id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(80), nullable=False),
        sa.ForeignKeyConstraint(["publication_id", "version_id", "content_hash"],
                                ["publications.id", "publications.version_id",
                                 "publications.content_hash"],
                                name="fk_publication_votes_publication"),
        sa.ForeignKeyConstraint(["vote_id", "version_id", "content_hash"],
                                ["votes.id", "votes.version_id", "votes.content_hash"],
                                name="fk_publication_votes_vote"),
        sa.PrimaryKeyConstraint("publication_id", "vote_id", name="pk_publication_votes"),
    )

    _version_guards()
    _vote_guards()
    g.guard("publications_guard", "publications", "INSERT", [
        ("NOT EXISTS (SELECT 1 FROM methodology_versions v WHERE v.id = NEW.version_id "
         "AND v.state = 'approved' AND v.content_hash = NEW.content_hash)",
         "NOT EXISTS (SELECT 1 FROM methodology_versions v WHERE v.id = NEW.version_id "
         "AND v.state = 'approved' AND v.content_hash = NEW.content_hash)",
         "publications: only an approved version can be published, with its current content hash"),
    ])
    for table in APPEND_ONLY:
        g.append_only(table)


def _version_guards() -> None:
    pairs = g.in_list(f"{a}>{b}" for a, b in STATE_CHANGES)
    frozen = g.in_list(FROZEN)
    identity_sqlite, identity_pg = g.changed(IDENTITY)
    content_sqlite, content_pg = g.changed(CONTENT, json_columns=JSON_COLUMNS)
    once_sqlite = "(" + " OR ".join(
        f"(OLD.{c} IS NOT NULL AND NEW.{c} IS NOT OLD.{c})" for c in SET_ONCE) + ")"
    once_pg = "(" + " OR ".join(
        f"(OLD.{c} IS NOT NULL AND NEW.{c} IS DISTINCT FROM OLD.{c})" for c in SET_ONCE) + ")"
    no_publication = ("NOT EXISTS (SELECT 1 FROM publications p WHERE p.version_id = NEW.id "
                      "AND p.content_hash = NEW.content_hash)")
    g.guard("methodology_versions_insert", "methodology_versions", "INSERT", [
        ("NEW.state <> 'draft'", "NEW.state <> 'draft'",
         "methodology_versions: a new version starts as a draft"),
    ])
    g.guard("methodology_versions_update", "methodology_versions", "UPDATE", [
        (f"NEW.state IS NOT OLD.state AND (OLD.state || '>' || NEW.state) NOT IN {pairs}",
         f"NEW.state IS DISTINCT FROM OLD.state AND (OLD.state || '>' || NEW.state) NOT IN {pairs}",
         "methodology_versions: this state change is not an allowed transition"),
        (identity_sqlite, identity_pg,
         "methodology_versions: a version's identity and author never change"),
        (f"OLD.state IN {frozen} AND {content_sqlite}", f"OLD.state IN {frozen} AND {content_pg}",
         "methodology_versions: a published version is immutable"),
        (once_sqlite, once_pg,
         "methodology_versions: a version's successor and grace period are set once"),
        (f"NEW.state = 'published' AND OLD.state = 'approved' AND {no_publication}",
         f"NEW.state = 'published' AND OLD.state = 'approved' AND {no_publication}",
         "methodology_versions: publishing needs the publication record of this content hash"),
    ])
    g.guard("methodology_versions_delete", "methodology_versions", "DELETE", [
        ("OLD.state <> 'draft'", "OLD.state <> 'draft'",
         "methodology_versions: only a draft can be deleted"),
    ])
    if g.dialect() == "postgresql":
        op.execute("CREATE TRIGGER methodology_versions_no_truncate BEFORE TRUNCATE ON "
                   "methodology_versions FOR EACH STATEMENT EXECUTE FUNCTION tanpu_refuse()")


def _vote_guards() -> None:
    version = "SELECT 1 FROM methodology_versions v WHERE v.id = NEW.version_id"
    checks = [
        (f"EXISTS ({version} AND v.author_id = NEW.voter_id)",
         "votes: the author cannot vote on their own version"),
        (f"NOT EXISTS ({version} AND v.state = 'in_review' AND v.review_round = NEW.review_round "
         "AND v.content_hash = NEW.content_hash)",
         "votes: a vote is on a version in review, its current content hash and review round"),
        ("NOT EXISTS (SELECT 1 FROM methodology_versions v "
         "JOIN methodologies m ON m.id = v.methodology_id "
         "JOIN committee_members cm ON cm.committee_id = m.committee_id "
         "WHERE v.id = NEW.version_id AND cm.user_id = NEW.voter_id)",
         "votes: only a member of the methodology's committee can vote"),
    ]
    g.guard("votes_guard", "votes", "INSERT", [(c, c, m) for c, m in checks])


def downgrade() -> None:
    for table in APPEND_ONLY:
        g.drop_append_only(table)
    g.drop_guard("publications_guard", "publications", 1)
    g.drop_guard("votes_guard", "votes", 3)
    g.drop_guard("methodology_versions_insert", "methodology_versions", 1)
    g.drop_guard("methodology_versions_update", "methodology_versions", 5)
    g.drop_guard("methodology_versions_delete", "methodology_versions", 1)
    if g.dialect() == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS methodology_versions_no_truncate ON methodology_versions")
    for table in ("publication_votes", "publications", "comments", "votes", "methodology_versions",
                  "methodologies", "committee_members", "committees"):
        op.drop_table(table)
