"""The `forbid duplicate` rules' keys and the near-duplicate rules' events move out of the
JSON state into `duplicate_keys` (issue 13: a credit's cost must not grow with the
account's history; docs/ledger.md, Session 20). Every `duplicate:` part of every
`rule_states` row becomes one row per key (its text as the state held it, its hash by
registry.duplicate_keys.key_hash, which the ledger computes the same way) and leaves the
state; every `nearduplicate:` part becomes one row per event (key, near time, order,
record id) and the state keeps `{"count": N}`. The state is written again canonically
(sorted keys, as engine/state.py writes it). The downgrade puts them back.

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
EVENT_PART = "nearduplicate:"
BATCH = 1000  # state rows read, and written back, at a time

states = sa.table("rule_states", sa.column("methodology_id", sa.String), sa.column("account", sa.String),
                  sa.column("state", sa.Text))
keys = sa.table("duplicate_keys", sa.column("methodology_id", sa.String), sa.column("account", sa.String),
                sa.column("rule", sa.Text), sa.column("key_hash", sa.BigInteger), sa.column("key", sa.Text),
                sa.column("near", sa.BigInteger), sa.column("ordinal", sa.BigInteger),
                sa.column("record_id", sa.Text))


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
        sa.Column("near", sa.BigInteger(), nullable=True),
        sa.Column("ordinal", sa.BigInteger(), nullable=True),
        sa.Column("record_id", sa.Text(), nullable=True),
    )
    op.create_index("ix_duplicate_keys_key_hash", "duplicate_keys", ["key_hash"])
    from engine.state import key_text, parse_key
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
            if not text or (KEY_PART not in text and EVENT_PART not in text):
                continue
            data = json.loads(text)
            moved = [name for name in data if name.startswith(KEY_PART)
                     or (name.startswith(EVENT_PART) and isinstance(data[name], list))]
            if not moved:
                continue
            for name in moved:
                if name.startswith(KEY_PART):
                    for key in data.pop(name) or ():
                        rows.append({"methodology_id": methodology_id, "account": account, "rule": name,
                                     "key_hash": key_hash(methodology_id, account, name, parse_key(key)),
                                     "key": key, "near": None, "ordinal": None, "record_id": None})
                    continue
                events = data[name]
                data[name] = {"count": len(events)}
                for key, near, order, record_id in events:
                    key = tuple(key)
                    rows.append({"methodology_id": methodology_id, "account": account, "rule": name,
                                 "key_hash": key_hash(methodology_id, account, name, key),
                                 "key": key_text(key), "near": near, "ordinal": order,
                                 "record_id": record_id})
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
    for methodology_id, account, rule, key, near, ordinal, record_id in bind.execute(sa.select(
            keys.c.methodology_id, keys.c.account, keys.c.rule, keys.c.key, keys.c.near,
            keys.c.ordinal, keys.c.record_id)):
        part = parts.setdefault((methodology_id, account), {}).setdefault(rule, [])
        if rule.startswith(EVENT_PART):  # as engine/channels.Events.to_data writes it
            part.append([json.loads(key), near, ordinal, record_id])
        else:
            part.append(key)
    for methodology_id, account, text in bind.execute(sa.select(
            states.c.methodology_id, states.c.account, states.c.state)).all():
        counted = bool(text) and EVENT_PART in text
        if (methodology_id, account) not in parts and not counted:
            continue
        data = json.loads(text) if text else {}
        for name in list(data):  # a rule that kept no event: its count alone
            if name.startswith(EVENT_PART) and isinstance(data[name], dict):
                data[name] = []
        for rule, kept in parts.get((methodology_id, account), {}).items():
            data[rule] = sorted(kept)
        bind.execute(states.update().where(states.c.methodology_id == methodology_id,
                                           states.c.account == account).values(state=_text(data)))
    op.drop_index("ix_duplicate_keys_key_hash", table_name="duplicate_keys")
    op.drop_table("duplicate_keys")
