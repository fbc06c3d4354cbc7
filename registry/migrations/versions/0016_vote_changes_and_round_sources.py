"""A reviewer changes their vote within a round, and each round keeps the content it
reviewed (issue 15, item 5). Additive: a vote stays as it was cast (votes are append-only
and one per member per round); a change is a row of its own in `vote_changes`, the last
one counting; `review_rounds.source` is the source the round opened on, for the "changes
since round N" diff (null for rounds opened before this migration: not kept).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from registry.migrations import sqlguards as g

revision: str = "0016"
down_revision: Union[str, Sequence[str], None] = "0015"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TS = sa.DateTime(timezone=True)
DECISIONS = ("approve", "request_changes", "reject", "abstain")


def upgrade() -> None:
    op.create_table(
        "vote_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("vote_id", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(length=24), nullable=False),
        sa.Column("conflict_of_interest", sa.Boolean(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("changed_at", TS, nullable=False),
        sa.CheckConstraint(f"decision IN {g.in_list(DECISIONS)}", name=op.f("ck_vote_changes_decision")),
        sa.CheckConstraint("NOT conflict_of_interest OR decision = 'abstain'",
                           name=op.f("ck_vote_changes_conflict_abstains")),
        sa.ForeignKeyConstraint(["vote_id"], ["votes.id"], name="fk_vote_changes_vote_id"),
        sa.PrimaryKeyConstraint("id", name="pk_vote_changes"),
    )
    op.create_index("ix_vote_changes_vote_id", "vote_changes", ["vote_id"])
    g.append_only("vote_changes")
    op.add_column("review_rounds", sa.Column("source", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("review_rounds") as batch:
        batch.drop_column("source")
    g.drop_append_only("vote_changes")
    op.drop_index("ix_vote_changes_vote_id", table_name="vote_changes")
    op.drop_table("vote_changes")
