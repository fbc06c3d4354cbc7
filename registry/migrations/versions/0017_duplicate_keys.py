"""The `forbid duplicate` rules' keys move out of the JSON state into `duplicate_keys`
(issue 13: a credit's cost must not grow with the account's history; docs/ledger.md,
Session 20). Every `duplicate:` part of every `rule_states` row becomes one row per key
(its text as the state held it, its hash by registry.duplicate_keys.key_hash, which the
ledger computes the same way), and the part leaves the state, which is written again
canonically (sorted keys, as engine/state.py writes it). The downgrade puts them back.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""
import json
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: Union[str, Sequence[str], None] = "0016"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

KEY_PART = "duplicate:"  # engine/state.is_key_part
BATCH = 1000  # state rows read, and written back, at a time

states = sa.table("rule_states", sa.column("methodology_id", sa.String), sa.column("account", sa.String),
                  sa.column("state", sa.Text))
keys = sa.table("duplicate_keys", sa.column("methodology_id", sa.String), sa.column("account", sa.String),
                sa.column("rule", sa.Text), sa.column("key_hash", sa.BigInteger), sa.column("key", sa.Text))


def _text(data: dict) -> str:
    """A state as engine/state.py writes it (json's canonical form)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def upgrade() -> None:
    op.create_table(
        "duplicate_keys",
        sa.Column("methodology_id", sa.String(128), nullable=False),
        sa.Column("account", sa.String(200), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("key_hash", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
    )
    op.create_index("ix_duplicate_keys_key_hash", "duplicate_keys", ["key_hash"])
    from engine.state import parse_key
    from registry.duplicate_keys import key_hash
    bind = op.get_bind()
    after = ("", "")
    while True:  # in pages by (methodology, account): a large ledger is not read at once
        page = bind.execute(sa.select(states.c.methodology_id, states.c.account, states.c.state)
                            .where(sa.tuple_(states.c.methodology_id, states.c.account) > sa.tuple_(*after))
                            .order_by(states.c.methodology_id, states.c.account).limit(BATCH)).all()
        if not page:
            return
        after = (page[-1].methodology_id, page[-1].account)
        rows, rewritten = [], []
        for methodology_id, account, text in page:
            if not text or KEY_PART not in text:
                continue
            data = json.loads(text)
            moved = [name for name in data if name.startswith(KEY_PART)]
            if not moved:
                continue
            for name in moved:
                for key in data.pop(name) or ():
                    rows.append({"methodology_id": methodology_id, "account": account, "rule": name,
                                 "key_hash": key_hash(methodology_id, account, name, parse_key(key)),
                                 "key": key})
            rewritten.append({"m": methodology_id, "a": account, "s": _text(data)})
        if rows:
            bind.execute(keys.insert(), rows)
        if rewritten:
            bind.execute(states.update().where(states.c.methodology_id == sa.bindparam("m"),
                                               states.c.account == sa.bindparam("a"))
                         .values(state=sa.bindparam("s")), rewritten)


def downgrade() -> None:
    bind = op.get_bind()
    parts: dict = {}
    for methodology_id, account, rule, key in bind.execute(sa.select(
            keys.c.methodology_id, keys.c.account, keys.c.rule, keys.c.key)):
        parts.setdefault((methodology_id, account), {}).setdefault(rule, []).append(key)
    for (methodology_id, account), named in parts.items():
        text = bind.execute(sa.select(states.c.state).where(
            states.c.methodology_id == methodology_id, states.c.account == account)).scalar()
        data = json.loads(text) if text else {}
        for rule, texts in named.items():
            data[rule] = sorted(texts)
        bind.execute(states.update().where(states.c.methodology_id == methodology_id,
                                           states.c.account == account).values(state=_text(data)))
    op.drop_index("ix_duplicate_keys_key_hash", table_name="duplicate_keys")
    op.drop_table("duplicate_keys")
