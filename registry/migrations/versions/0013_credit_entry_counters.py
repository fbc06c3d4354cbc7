"""The counters and rewards each credited record moved (issue 12: methodologies may
declare counters and reward conversions; the ledger returns what a credit moved).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: Union[str, Sequence[str], None] = "0012"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("credit_entries") as batch:
        batch.add_column(sa.Column("counters", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("credit_entries") as batch:
        batch.drop_column("counters")
