"""Review rounds keep the quorum rule they were opened under (issue 15: an administrator
could lower a committee's quorum in the middle of a review, approve, and restore it).

Revision ID: 0011
Revises: 0008
Create Date: 2026-12-06
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: Union[str, Sequence[str], None] = "0008"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "review_rounds",
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("review_round", sa.Integer(), nullable=False),
        sa.Column("min_votes", sa.Integer(), nullable=False),
        sa.Column("approval_numerator", sa.Integer(), nullable=False),
        sa.Column("approval_denominator", sa.Integer(), nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("opened_by", sa.Integer(), nullable=True),
        sa.CheckConstraint("min_votes >= 1", name=op.f("ck_review_rounds_min_votes")),
        sa.CheckConstraint("approval_numerator >= 1 AND approval_numerator <= approval_denominator",
                           name=op.f("ck_review_rounds_approval_share")),
        sa.ForeignKeyConstraint(["version_id"], ["methodology_versions.id"],
                                name="fk_review_rounds_version_id"),
        sa.ForeignKeyConstraint(["opened_by"], ["users.id"], name="fk_review_rounds_opened_by"),
        sa.PrimaryKeyConstraint("version_id", "review_round", name="pk_review_rounds"),
    )
    # the rounds already open keep the rule their committee has now
    op.execute(
        "INSERT INTO review_rounds (version_id, review_round, min_votes, approval_numerator, "
        "approval_denominator, opened_at, opened_by) "
        "SELECT v.id, v.review_round, c.min_votes, c.approval_numerator, c.approval_denominator, "
        "v.updated_at, NULL FROM methodology_versions v "
        "JOIN methodologies m ON m.id = v.methodology_id JOIN committees c ON c.id = m.committee_id "
        "WHERE v.review_round > 0")


def downgrade() -> None:
    op.drop_table("review_rounds")
