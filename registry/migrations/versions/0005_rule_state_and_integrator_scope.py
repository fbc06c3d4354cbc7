"""The state of the cross-record rules per methodology and account (`rule_states`), and
credits scoped to the integrator: a record id and an idempotency key are an integrator's
own (two integrators may both send `ride-42`). Entries keep the record as sent and the
code and message of the rule that capped it.

Existing entries take their batch's actor as their integrator. The append-only triggers
are dropped for the change and made again.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from registry.migrations import sqlguards as g

revision: str = "0005"
down_revision: Union[str, Sequence[str], None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    g.drop_append_only("credit_entries")
    g.drop_append_only("credit_batches")
    with op.batch_alter_table("credit_batches", recreate="auto") as b:
        b.drop_constraint("uq_credit_batches_idempotency_key", type_="unique")
        b.create_unique_constraint("uq_credit_batches_actor_id_idempotency_key",
                                   ["actor_id", "idempotency_key"])
    with op.batch_alter_table("credit_entries", recreate="auto") as b:
        b.add_column(sa.Column("integrator_id", sa.Integer(), nullable=True))
        b.add_column(sa.Column("code", sa.String(64), nullable=False, server_default=""))
        b.add_column(sa.Column("message", sa.Text(), nullable=False, server_default=""))
        b.add_column(sa.Column("record", sa.Text(), nullable=True))
    op.execute("UPDATE credit_entries SET integrator_id = (SELECT b.actor_id FROM credit_batches b "
               "WHERE b.id = credit_entries.batch_id)")
    with op.batch_alter_table("credit_entries", recreate="auto") as b:
        b.alter_column("integrator_id", existing_type=sa.Integer(), nullable=False)
        b.drop_constraint("uq_credit_entries_methodology_record", type_="unique")
        b.create_unique_constraint("uq_credit_entries_integrator_id_methodology_id_record_id",
                                   ["integrator_id", "methodology_id", "record_id"])
        b.create_foreign_key("fk_credit_entries_integrator_id", "users", ["integrator_id"], ["id"])
    g.append_only("credit_batches")
    g.append_only("credit_entries")
    op.create_table(
        "rule_states",
        sa.Column("methodology_id", sa.String(128), nullable=False),
        sa.Column("account", sa.String(200), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["methodology_id"], ["methodologies.id"],
                                name="fk_rule_states_methodology_id"),
        sa.PrimaryKeyConstraint("methodology_id", "account", name="pk_rule_states"),
    )


def downgrade() -> None:
    op.drop_table("rule_states")
    g.drop_append_only("credit_entries")
    g.drop_append_only("credit_batches")
    with op.batch_alter_table("credit_entries", recreate="auto") as b:
        b.drop_constraint("fk_credit_entries_integrator_id", type_="foreignkey")
        b.drop_constraint("uq_credit_entries_integrator_id_methodology_id_record_id", type_="unique")
        b.create_unique_constraint("uq_credit_entries_methodology_record", ["methodology_id", "record_id"])
        b.drop_column("record")
        b.drop_column("message")
        b.drop_column("code")
        b.drop_column("integrator_id")
    with op.batch_alter_table("credit_batches", recreate="auto") as b:
        b.drop_constraint("uq_credit_batches_actor_id_idempotency_key", type_="unique")
        b.create_unique_constraint("uq_credit_batches_idempotency_key", ["idempotency_key"])
    g.append_only("credit_batches")
    g.append_only("credit_entries")
