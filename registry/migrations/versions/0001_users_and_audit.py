"""Users with roles, and the append-only audit chain.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from registry.migrations import sqlguards as g

revision: str = "0001"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

ROLES = ("expert", "committee_member", "administrator", "integrator")
TS = sa.DateTime(timezone=True)
BIGKEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
    )
    op.create_table(
        "user_roles",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.CheckConstraint(f"role IN {g.in_list(ROLES)}", name=op.f("ck_user_roles_role")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_user_roles_user_id"),
        sa.PrimaryKeyConstraint("user_id", "role", name="pk_user_roles"),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", BIGKEY, autoincrement=False, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("object_type", sa.String(64), nullable=False),
        sa.Column("object_id", sa.String(200), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(["actor_id"], ["users.id"], name="fk_audit_log_actor_id"),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_log"),
        sa.UniqueConstraint("prev_hash", name="uq_audit_log_prev_hash"),
        sa.UniqueConstraint("hash", name="uq_audit_log_hash"),
    )

    if g.dialect() == "postgresql":
        g.create_refuse_function()
    g.append_only("audit_log")
    # An entry must continue the chain: the next seq, and the last entry's hash.
    last_hash = f"(SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1)"
    last_seq = "(SELECT MAX(seq) FROM audit_log)"
    g.guard("audit_log_chain", "audit_log", "INSERT", [
        (f"NEW.seq IS NOT COALESCE({last_seq}, 0) + 1 "
         f"OR NEW.prev_hash IS NOT COALESCE({last_hash}, '{g.GENESIS}')",
         f"NEW.seq IS DISTINCT FROM COALESCE({last_seq}, 0) + 1 "
         f"OR NEW.prev_hash IS DISTINCT FROM COALESCE({last_hash}, '{g.GENESIS}')",
         "audit_log: an entry must continue the chain (next seq, previous entry's hash)"),
    ])


def downgrade() -> None:
    g.drop_guard("audit_log_chain", "audit_log", 1)
    g.drop_append_only("audit_log")
    if g.dialect() == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS tanpu_refuse()")
    op.drop_table("audit_log")
    op.drop_table("user_roles")
    op.drop_table("users")
