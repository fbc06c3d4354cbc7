"""Spending, reversal and retirement: the rewards catalogue, redemptions, reversals of
credits, retirements and the credits' grams they took. Additive: no existing table
changes. Redemptions, reversals, retirements and their parts are append-only (triggers):
a reversal compensates a credit, nothing is ever updated or deleted.

Revision ID: 0007
Revises: 0006
Create Date: 2025-01-04
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from registry.migrations import sqlguards as g

revision: str = "0007"
down_revision: Union[str, Sequence[str], None] = "0006"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TS = sa.DateTime(timezone=True)
BIGKEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
APPEND_ONLY = ("redemptions", "reversals", "retirements", "retirement_parts")


def upgrade() -> None:
    op.create_table(
        "rewards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("name_en", sa.String(200), nullable=False),
        sa.Column("price_points", sa.BigInteger(), nullable=False),
        sa.Column("stock_per_period", sa.BigInteger(), nullable=True),
        sa.Column("period", sa.String(8), nullable=False),
        sa.Column("limit_per_account_per_period", sa.Integer(), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("price_points > 0", name=op.f("ck_rewards_price_points")),
        sa.CheckConstraint("stock_per_period IS NULL OR stock_per_period >= 0",
                           name=op.f("ck_rewards_stock")),
        sa.CheckConstraint("limit_per_account_per_period IS NULL OR "
                           "limit_per_account_per_period >= 1",
                           name=op.f("ck_rewards_account_limit")),
        sa.CheckConstraint("period IN ('day', 'week', 'month', 'year')",
                           name=op.f("ck_rewards_period")),
        sa.ForeignKeyConstraint(["created_by"], ["users.id"], name="fk_rewards_created_by"),
        sa.PrimaryKeyConstraint("id", name="pk_rewards"),
    )
    op.create_table(
        "redemptions",
        sa.Column("id", BIGKEY, nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("reward_id", sa.Integer(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("period_key", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("points > 0", name=op.f("ck_redemptions_points")),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name="fk_redemptions_account_id"),
        sa.ForeignKeyConstraint(["reward_id"], ["rewards.id"], name="fk_redemptions_reward_id"),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], name="fk_redemptions_actor_id"),
        sa.PrimaryKeyConstraint("id", name="pk_redemptions"),
        sa.UniqueConstraint("actor_id", "idempotency_key",
                            name="uq_redemptions_actor_id_idempotency_key"),
    )
    op.create_index("ix_redemptions_account_id", "redemptions", ["account_id"])
    op.create_index("ix_redemptions_reward_id_period_key_account_id", "redemptions",
                    ["reward_id", "period_key", "account_id"])
    op.create_table(
        "reversals",
        sa.Column("id", BIGKEY, nullable=False),
        sa.Column("entry_id", BIGKEY, nullable=False),
        sa.Column("account", sa.String(200), nullable=False),
        sa.Column("reduction_mg", sa.BigInteger(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("bonus", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["entry_id"], ["credit_entries.id"], name="fk_reversals_entry_id"),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], name="fk_reversals_actor_id"),
        sa.PrimaryKeyConstraint("id", name="pk_reversals"),
        sa.UniqueConstraint("entry_id", name="uq_reversals_entry_id"),
    )
    op.create_index("ix_reversals_account", "reversals", ["account"])
    op.create_table(
        "retirements",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("reduction_mg", sa.BigInteger(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("beneficiary", sa.String(400), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.CheckConstraint("reduction_mg > 0", name=op.f("ck_retirements_reduction_mg")),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name="fk_retirements_account_id"),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], name="fk_retirements_actor_id"),
        sa.PrimaryKeyConstraint("id", name="pk_retirements"),
    )
    op.create_index("ix_retirements_account_id", "retirements", ["account_id"])
    op.create_table(
        "retirement_parts",
        sa.Column("retirement_id", sa.String(36), nullable=False),
        sa.Column("entry_id", BIGKEY, nullable=False),
        sa.Column("reduction_mg", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("reduction_mg > 0", name=op.f("ck_retirement_parts_reduction_mg")),
        sa.ForeignKeyConstraint(["retirement_id"], ["retirements.id"],
                                name="fk_retirement_parts_retirement_id"),
        sa.ForeignKeyConstraint(["entry_id"], ["credit_entries.id"],
                                name="fk_retirement_parts_entry_id"),
        sa.PrimaryKeyConstraint("retirement_id", "entry_id", name="pk_retirement_parts"),
    )
    op.create_index("ix_retirement_parts_entry_id", "retirement_parts", ["entry_id"])
    for table in APPEND_ONLY:
        g.append_only(table)


def downgrade() -> None:
    for table in reversed(APPEND_ONLY):
        g.drop_append_only(table)
    op.drop_index("ix_retirement_parts_entry_id", table_name="retirement_parts")
    op.drop_table("retirement_parts")
    op.drop_index("ix_retirements_account_id", table_name="retirements")
    op.drop_table("retirements")
    op.drop_index("ix_reversals_account", table_name="reversals")
    op.drop_table("reversals")
    op.drop_index("ix_redemptions_reward_id_period_key_account_id", table_name="redemptions")
    op.drop_index("ix_redemptions_account_id", table_name="redemptions")
    op.drop_table("redemptions")
    op.drop_table("rewards")
