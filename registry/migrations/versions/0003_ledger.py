"""The accounts ledger: credit batches (by idempotency key) and credit entries, a record
credited at most once per methodology. Both append-only.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-01
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from registry.migrations import sqlguards as g

revision: str = "0003"
down_revision: Union[str, Sequence[str], None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TS = sa.DateTime(timezone=True)
BIGKEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
VERSION_KEY = ["methodology_versions.methodology_id", "methodology_versions.version",
               "methodology_versions.content_hash"]


def upgrade() -> None:
    op.create_table(
        "credit_batches",
        sa.Column("id", BIGKEY, nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("request_digest", sa.String(64), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("methodology_id", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("content_hash", sa.String(80), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], name="fk_credit_batches_actor_id"),
        sa.ForeignKeyConstraint(["methodology_id", "version", "content_hash"], VERSION_KEY,
                                name="fk_credit_batches_version"),
        sa.PrimaryKeyConstraint("id", name="pk_credit_batches"),
        sa.UniqueConstraint("idempotency_key", name="uq_credit_batches_idempotency_key"),
    )
    op.create_table(
        "credit_entries",
        sa.Column("id", BIGKEY, nullable=False),
        sa.Column("batch_id", BIGKEY, nullable=False),
        sa.Column("account", sa.String(200), nullable=False),
        sa.Column("methodology_id", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("content_hash", sa.String(80), nullable=False),
        sa.Column("record_id", sa.String(200), nullable=False),
        sa.Column("activity_time", TS, nullable=True),
        sa.Column("reduction_mg", sa.BigInteger(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("bonus", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("credited_at", TS, nullable=False),
        sa.CheckConstraint("status IN ('credited', 'capped')", name=op.f("ck_credit_entries_status")),
        sa.ForeignKeyConstraint(["batch_id"], ["credit_batches.id"], name="fk_credit_entries_batch_id"),
        sa.ForeignKeyConstraint(["methodology_id", "version", "content_hash"], VERSION_KEY,
                                name="fk_credit_entries_version"),
        sa.PrimaryKeyConstraint("id", name="pk_credit_entries"),
        sa.UniqueConstraint("methodology_id", "record_id",
                            name="uq_credit_entries_methodology_record"),
    )
    op.create_index("ix_credit_entries_batch_id", "credit_entries", ["batch_id"])
    op.create_index("ix_credit_entries_account", "credit_entries", ["account"])
    g.append_only("credit_batches")
    g.append_only("credit_entries")


def downgrade() -> None:
    g.drop_append_only("credit_entries")
    g.drop_append_only("credit_batches")
    op.drop_table("credit_entries")
    op.drop_table("credit_batches")
