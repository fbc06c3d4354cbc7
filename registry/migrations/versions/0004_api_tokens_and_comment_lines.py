"""The web application's additions: integrators' API tokens, and the source line a
review comment is about (append-only, like comments). Additive: no existing table changes.

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-02
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from registry.migrations import sqlguards as g

revision: str = "0004"
down_revision: Union[str, Sequence[str], None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("revoked_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_api_tokens_user_id"),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name="fk_api_tokens_created_by"),
        sa.ForeignKeyConstraint(["revoked_by"], ["users.id"], name="fk_api_tokens_revoked_by"),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"])
    op.create_table(
        "comment_lines",
        sa.Column("comment_id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("content_hash", sa.String(80), nullable=True),
        sa.ForeignKeyConstraint(["comment_id"], ["comments.id"], name="fk_comment_lines_comment_id"),
        sa.ForeignKeyConstraint(["version_id"], ["methodology_versions.id"],
                                name="fk_comment_lines_version_id"),
        sa.PrimaryKeyConstraint("comment_id", name="pk_comment_lines"),
    )
    op.create_index("ix_comment_lines_version_id", "comment_lines", ["version_id"])
    g.append_only("comment_lines")


def downgrade() -> None:
    g.drop_append_only("comment_lines")
    op.drop_index("ix_comment_lines_version_id", table_name="comment_lines")
    op.drop_table("comment_lines")
    op.drop_index("ix_api_tokens_user_id", table_name="api_tokens")
    op.drop_table("api_tokens")
