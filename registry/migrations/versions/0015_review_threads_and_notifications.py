"""Review like a pull request (issue 15, item 5): replies and resolved threads, comments on
several lines with suggested changes, pending reviews, and notifications. Additive: no
existing table changes (comments stay append-only; replies, resolutions and edits are
rows of their own).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from registry.migrations import sqlguards as g

revision: str = "0015"
down_revision: Union[str, Sequence[str], None] = "0014"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "comment_replies",
        sa.Column("comment_id", sa.Integer(), nullable=False),
        sa.Column("thread_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["comment_id"], ["comments.id"], name="fk_comment_replies_comment_id"),
        sa.ForeignKeyConstraint(["thread_id"], ["comments.id"], name="fk_comment_replies_thread_id"),
        sa.PrimaryKeyConstraint("comment_id", name="pk_comment_replies"),
    )
    op.create_index("ix_comment_replies_thread_id", "comment_replies", ["thread_id"])
    g.append_only("comment_replies")
    op.create_table(
        "thread_resolutions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("thread_id", sa.Integer(), nullable=False),
        sa.Column("resolved", sa.Boolean(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.ForeignKeyConstraint(["thread_id"], ["comments.id"], name="fk_thread_resolutions_thread_id"),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], name="fk_thread_resolutions_actor_id"),
        sa.PrimaryKeyConstraint("id", name="pk_thread_resolutions"),
    )
    op.create_index("ix_thread_resolutions_thread_id", "thread_resolutions", ["thread_id"])
    g.append_only("thread_resolutions")
    op.create_table(
        "comment_spans",
        sa.Column("comment_id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("first_line", sa.Integer(), nullable=False),
        sa.Column("last_line", sa.Integer(), nullable=False),
        sa.Column("original", sa.Text(), nullable=False),
        sa.Column("suggestion", sa.Text(), nullable=True),
        sa.Column("applied_at", TS, nullable=True),
        sa.Column("applied_by", sa.Integer(), nullable=True),
        sa.Column("applied_content_hash", sa.String(80), nullable=True),
        sa.CheckConstraint("first_line >= 1 AND last_line >= first_line",
                           name=op.f("ck_comment_spans_lines")),
        sa.ForeignKeyConstraint(["comment_id"], ["comments.id"], name="fk_comment_spans_comment_id"),
        sa.ForeignKeyConstraint(["version_id"], ["methodology_versions.id"],
                                name="fk_comment_spans_version_id"),
        sa.ForeignKeyConstraint(["applied_by"], ["users.id"], name="fk_comment_spans_applied_by"),
        sa.PrimaryKeyConstraint("comment_id", name="pk_comment_spans"),
    )
    op.create_index("ix_comment_spans_version_id", "comment_spans", ["version_id"])
    op.create_table(
        "comment_edits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("comment_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.ForeignKeyConstraint(["comment_id"], ["comments.id"], name="fk_comment_edits_comment_id"),
        sa.PrimaryKeyConstraint("id", name="pk_comment_edits"),
    )
    op.create_index("ix_comment_edits_comment_id", "comment_edits", ["comment_id"])
    g.append_only("comment_edits")
    op.create_table(
        "review_drafts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("first_line", sa.Integer(), nullable=True),
        sa.Column("last_line", sa.Integer(), nullable=True),
        sa.Column("suggestion", sa.Text(), nullable=True),
        sa.Column("reply_to", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["version_id"], ["methodology_versions.id"],
                                name="fk_review_drafts_version_id"),
        sa.ForeignKeyConstraint(["author_id"], ["users.id"], name="fk_review_drafts_author_id"),
        sa.ForeignKeyConstraint(["reply_to"], ["comments.id"], name="fk_review_drafts_reply_to"),
        sa.PrimaryKeyConstraint("id", name="pk_review_drafts"),
    )
    op.create_index("ix_review_drafts_version_id", "review_drafts", ["version_id"])
    op.create_index("ix_review_drafts_author_id", "review_drafts", ["author_id"])
    op.create_table(
        "notifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=True),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("read_at", TS, nullable=True),
        sa.Column("emailed_at", TS, nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_notifications_user_id"),
        sa.ForeignKeyConstraint(["version_id"], ["methodology_versions.id"],
                                name="fk_notifications_version_id"),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], name="fk_notifications_actor_id"),
        sa.PrimaryKeyConstraint("id", name="pk_notifications"),
    )
    op.create_index("ix_notifications_user_id", "notifications", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_notifications_user_id", table_name="notifications")
    op.drop_table("notifications")
    op.drop_index("ix_review_drafts_author_id", table_name="review_drafts")
    op.drop_index("ix_review_drafts_version_id", table_name="review_drafts")
    op.drop_table("review_drafts")
    g.drop_append_only("comment_edits")
    op.drop_index("ix_comment_edits_comment_id", table_name="comment_edits")
    op.drop_table("comment_edits")
    op.drop_index("ix_comment_spans_version_id", table_name="comment_spans")
    op.drop_table("comment_spans")
    g.drop_append_only("thread_resolutions")
    op.drop_index("ix_thread_resolutions_thread_id", table_name="thread_resolutions")
    op.drop_table("thread_resolutions")
    g.drop_append_only("comment_replies")
    op.drop_index("ix_comment_replies_thread_id", table_name="comment_replies")
    op.drop_table("comment_replies")
