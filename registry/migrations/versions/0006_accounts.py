"""Carbon accounts: the accounts (individuals, units, projects, regions in a hierarchy)
and the integrators' identities for them. Additive: no existing table changes.

Balances are not stored: accounts.balances sums the ledger's entries of an account's
subtree, walking the hierarchy by ix_accounts_parent_id_kind_id (a recursive CTE) and reaching
the entries by credit_entries' existing index on `account`.

Revision ID: 0006
Revises: 0005
Create Date: 2025-01-03
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: Union[str, Sequence[str], None] = "0005"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("domains", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint("kind IN ('individual', 'unit', 'project', 'region')",
                           name=op.f("ck_accounts_kind")),
        sa.CheckConstraint("status IN ('active', 'frozen', 'closed')",
                           name=op.f("ck_accounts_status")),
        sa.CheckConstraint("parent_id IS NULL OR parent_id <> id",
                           name=op.f("ck_accounts_not_own_parent")),
        sa.ForeignKeyConstraint(["parent_id"], ["accounts.id"], name="fk_accounts_parent_id"),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name="fk_accounts_created_by"),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
    )
    op.create_index("ix_accounts_parent_id_kind_id", "accounts", ["parent_id", "kind", "id"])
    op.create_table(
        "account_identities",
        sa.Column("integrator_id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["integrator_id"], ["users.id"],
                                name="fk_account_identities_integrator_id"),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"],
                                name="fk_account_identities_account_id"),
        sa.PrimaryKeyConstraint("integrator_id", "external_id", name="pk_account_identities"),
    )
    op.create_index("ix_account_identities_account_id", "account_identities", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_account_identities_account_id", table_name="account_identities")
    op.drop_table("account_identities")
    op.drop_index("ix_accounts_parent_id_kind_id", table_name="accounts")
    op.drop_table("accounts")
