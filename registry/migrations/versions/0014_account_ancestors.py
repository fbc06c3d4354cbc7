"""The accounts' hierarchy as a closure table (registry/models.py AccountAncestor), so
that a region's balances are one indexed join however many accounts are below it
(issue 13, item 10: a region of a million accounts in under a second).

Filled here from accounts.parent_id by a recursive query (SQLite and PostgreSQL alike).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: Union[str, Sequence[str], None] = "0013"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "account_ancestors",
        sa.Column("ancestor_id", sa.Integer(), nullable=False),
        sa.Column("account", sa.String(200), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["ancestor_id"], ["accounts.id"],
                                name="fk_account_ancestors_ancestor_id"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"],
                                name="fk_account_ancestors_account_id"),
        sa.PrimaryKeyConstraint("ancestor_id", "account", name="pk_account_ancestors"),
    )
    op.create_index("ix_account_ancestors_account_id", "account_ancestors", ["account_id"])
    op.execute(
        "WITH RECURSIVE up (ancestor_id, account_id, depth) AS ("
        " SELECT parent_id, id, 1 FROM accounts WHERE parent_id IS NOT NULL"
        " UNION ALL"
        " SELECT a.parent_id, up.account_id, up.depth + 1 FROM up"
        " JOIN accounts AS a ON a.id = up.ancestor_id WHERE a.parent_id IS NOT NULL)"
        " INSERT INTO account_ancestors (ancestor_id, account, account_id, depth)"
        " SELECT ancestor_id, CAST(account_id AS VARCHAR(200)), account_id, depth FROM up")


def downgrade() -> None:
    op.drop_index("ix_account_ancestors_account_id", table_name="account_ancestors")
    op.drop_table("account_ancestors")
