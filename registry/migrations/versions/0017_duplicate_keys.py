"""The `forbid duplicate` rules' keys and the near-duplicate rules' events move out of the
JSON state into `duplicate_keys` (issue 13: a credit's cost must not grow with the
account's history; docs/ledger.md, Session 20). Every `duplicate:` part of every
`rule_states` row becomes one row per key (its text as the state held it, its hash by
registry.duplicate_keys.key_hash, which the ledger computes the same way) and leaves the
state; every `nearduplicate:` part becomes one row per event (key, near time, order,
record id) and the state keeps `{"count": N}`. The state is written again canonically
(sorted keys, as engine/state.py writes it). The downgrade puts them back.

At Quzhou's scale (2.4 million accounts, hundreds of keys each: docs/ledger.md, Session
21) the move is by PostgreSQL's COPY (the rows, and the states written again into a
temporary table, joined in one UPDATE at the end), and the index is made once after the
rows are in; on SQLite by executemany, the index made after the rows too.

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
BATCH = 1000  # state rows read at a time (and their keys sent: COPY or executemany)

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
    from engine.state import key_text, parse_key
    from registry.duplicate_keys import key_hash
    bind = op.get_bind()
    sink = _Copied(bind) if _copies(bind) else _Executed(bind)
    after = ("", "")
    while True:  # in pages by (methodology, account): a large ledger is not read at once
        page = bind.execute(sa.select(states.c.methodology_id, states.c.account, states.c.state)
                            .where(sa.tuple_(states.c.methodology_id, states.c.account) > sa.tuple_(*after))
                            .order_by(states.c.methodology_id, states.c.account).limit(BATCH)).all()
        if not page:
            break
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
                        rows.append((methodology_id, account, name,
                                     key_hash(methodology_id, account, name, parse_key(key)),
                                     key, None, None, None))
                    continue
                events = data[name]
                data[name] = {"count": len(events)}
                for key, near, order, record_id in events:
                    key = tuple(key)
                    rows.append((methodology_id, account, name, key_hash(methodology_id, account, name, key),
                                 key_text(key), near, order, record_id))
            rewritten.append((methodology_id, account, _text(data)))
        sink.add(rows, rewritten)
    sink.finish()
    # the index made once over every row moved (a sort), not maintained row by row as
    # they came, each hash a probe at random into a growing tree (docs/ledger.md, Session 21)
    op.create_index("ix_duplicate_keys_key_hash_near", "duplicate_keys", ["key_hash", "near"])


COLUMNS = ("methodology_id", "account", "rule", "key_hash", "key", "near", "ordinal", "record_id")


def _copies(bind) -> bool:
    """Whether the rows can go by PostgreSQL's COPY: psycopg (3) under the connection."""
    return bind.dialect.name == "postgresql" and bind.dialect.driver == "psycopg"


class _Executed:
    """The rows inserted and the states updated by executemany (SQLite, and any database
    whose driver has no COPY): in SQLite a statement executed many times costs no round
    trip."""

    def __init__(self, bind):
        self.bind = bind
        # SQLite's driver takes the rows' tuples as they are (a dict a row made and
        # processed by SQLAlchemy was a quarter of the migration's CPU there)
        self.plain = bind.dialect.paramstyle == "qmark"

    def add(self, rows: list, rewritten: list) -> None:
        if rows and self.plain:
            self.bind.exec_driver_sql(f"INSERT INTO duplicate_keys ({', '.join(COLUMNS)}) "
                                      f"VALUES ({', '.join('?' * len(COLUMNS))})", rows)
        elif rows:
            self.bind.execute(keys.insert(), [dict(zip(COLUMNS, row)) for row in rows])
        if rewritten and self.plain:
            self.bind.exec_driver_sql("UPDATE rule_states SET state = ? WHERE methodology_id = ? AND account = ?",
                                      [(s, m, a) for m, a, s in rewritten])
        elif rewritten:
            self.bind.execute(states.update().where(states.c.methodology_id == sa.bindparam("m"),
                                                    states.c.account == sa.bindparam("a"))
                              .values(state=sa.bindparam("s")),
                              [{"m": m, "a": a, "s": s} for m, a, s in rewritten])

    def finish(self) -> None:
        pass


class _Copied:
    """PostgreSQL: the rows by COPY, a page at a time (psycopg's executemany made a
    statement of each row: 1,000,000 keys in 32 s, most of it the client's and the
    server's work per statement); the states written again by COPY into a temporary table,
    then one UPDATE joined with it at the end (one pass over `rule_states`, planned once
    on a table analyzed, rather than a statement per state). The same transaction: the
    COPYs run on the migration's own connection."""

    TEMPORARY = "migration_0017_states"

    def __init__(self, bind):
        self.bind = bind
        self.raw = bind.connection.driver_connection
        self.written = 0
        with self.raw.cursor() as cursor:
            cursor.execute(f"CREATE TEMPORARY TABLE {self.TEMPORARY} (methodology_id text, account text, "
                           f"state text) ON COMMIT DROP")

    def add(self, rows: list, rewritten: list) -> None:
        with self.raw.cursor() as cursor:
            if rows:
                with cursor.copy(f"COPY duplicate_keys ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            if rewritten:
                with cursor.copy(f"COPY {self.TEMPORARY} (methodology_id, account, state) FROM STDIN") as copy:
                    for row in rewritten:
                        copy.write_row(row)
                self.written += len(rewritten)

    def finish(self) -> None:
        with self.raw.cursor() as cursor:
            if self.written:
                cursor.execute(f"ANALYZE {self.TEMPORARY}")
                cursor.execute(f"UPDATE rule_states SET state = t.state FROM {self.TEMPORARY} t "
                               f"WHERE rule_states.methodology_id = t.methodology_id "
                               f"AND rule_states.account = t.account")
            cursor.execute(f"DROP TABLE {self.TEMPORARY}")


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
    op.drop_index("ix_duplicate_keys_key_hash_near", table_name="duplicate_keys")
    op.drop_table("duplicate_keys")
