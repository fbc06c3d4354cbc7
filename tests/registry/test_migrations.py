"""The schema comes from the migrations, and the models agree with them."""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from registry import migrate
from registry.db import Database
from registry.models import Base

TABLES = {"users", "user_roles", "audit_log", "committees", "committee_members", "methodologies",
          "methodology_versions", "votes", "comments", "publications", "publication_votes",
          "credit_batches", "credit_entries", "api_tokens", "comment_lines", "rule_states",
          "accounts", "account_identities", "web_sessions", "rewards", "redemptions", "reversals",
          "retirements", "retirement_parts", "review_rounds", "jobs", "webhook_subscriptions",
          "webhook_deliveries", "api_idempotency", "account_ancestors", "comment_replies",
          "thread_resolutions", "comment_spans", "comment_edits", "review_drafts",
          "notifications", "vote_changes", "duplicate_keys", "alembic_version"}


def _diff(db: Database) -> list:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def test_upgrade_creates_every_table_at_head(empty_url):
    db = Database(empty_url)
    try:
        assert migrate.current(db) is None
        assert not migrate.is_up_to_date(db)
        assert migrate.upgrade(db) == migrate.head() == "0017"
        assert set(sa.inspect(db.engine).get_table_names()) == TABLES
        assert migrate.upgrade(db) == "0017"  # again: nothing to do
    finally:
        db.dispose()


def test_autogenerate_finds_no_difference_between_models_and_migrations(db):
    assert _diff(db) == []


def test_autogenerate_would_notice_a_difference(db):
    # the comparison is live: an empty database differs from the models
    migrate_down = migrate.alembic_config()
    from alembic import command
    with db.engine.begin() as connection:
        migrate_down.attributes["connection"] = connection
        command.downgrade(migrate_down, "0002")
    assert any(d[0] == "add_table" and d[1].name == "credit_entries" for d in _diff(db))


def test_downgrade_to_nothing_and_up_again(db):
    from alembic import command
    config = migrate.alembic_config()
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "base")
    assert set(sa.inspect(db.engine).get_table_names()) <= {"alembic_version"}
    assert migrate.upgrade(db) == "0017"
    assert _diff(db) == []


def test_sqlite_foreign_keys_are_on(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'fk.db'}")
    try:
        with db.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        db.dispose()


def test_sqlite_file_folder_is_created(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'a' / 'b' / 'tanpu.db'}")
    try:
        migrate.upgrade(db)
        assert (tmp_path / "a" / "b" / "tanpu.db").is_file()
    finally:
        db.dispose()


def test_foreign_keys_are_enforced(db):
    import pytest
    with pytest.raises(sa.exc.IntegrityError):
        with db.engine.begin() as connection:
            connection.execute(sa.text("INSERT INTO user_roles (user_id, role) VALUES (999, 'expert')"))


def test_read_sessions_are_read_only_on_postgresql(db):
    import pytest
    if db.dialect != "postgresql":
        return
    with pytest.raises(sa.exc.InternalError, match="read-only"):
        with db.read() as s:
            s.execute(sa.text("INSERT INTO committees (domain, name, min_votes, approval_numerator, "
                              "approval_denominator, created_at) VALUES ('x', 'x', 1, 1, 1, now())"))


def test_a_read_leaves_its_connection_writable_for_the_next_unit_of_work(db):
    """Read sessions are read only on the connection (BEGIN READ ONLY); the same pooled
    connection then serves a unit of work that writes, and a read again refuses to."""
    import pytest
    from registry.db import Database
    if db.dialect != "postgresql":
        return
    one = Database(db.url, pool_size=1, max_overflow=0)
    try:
        insert = sa.text("INSERT INTO committees (domain, name, min_votes, approval_numerator, "
                         "approval_denominator, created_at) VALUES (:n, :n, 1, 1, 1, now())")
        for n in range(2):
            with one.read() as s:
                assert s.execute(sa.text("SHOW transaction_read_only")).scalar_one() == "on"
                pid = s.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            with one.unit_of_work() as s:
                assert s.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() == pid
                assert s.execute(sa.text("SHOW transaction_read_only")).scalar_one() == "off"
                s.execute(insert, {"n": f"x{n}"})
            with pytest.raises(sa.exc.InternalError, match="read-only"):
                with one.read() as s:
                    s.execute(insert, {"n": f"y{n}"})
        with one.read() as s:
            assert s.execute(sa.text("SELECT count(*) FROM committees WHERE name LIKE 'x%'")).scalar_one() == 2
    finally:
        one.dispose()


def test_unit_of_work_rolls_back_on_error(db):
    import pytest
    from registry import users
    with pytest.raises(RuntimeError):
        with db.unit_of_work() as s:
            users.create_user(s, None, email="a@b.test", name="A", roles=["expert"])
            raise RuntimeError("boom")
    with db.read() as s:
        assert users.by_email(s, "a@b.test") is None


def test_0014_fills_the_closure_from_the_parents(empty_url):
    """Accounts made before 0014: the migration writes the closure a walk of parent_id
    gives (a region, a region below it, a unit below that, a person below the unit)."""
    from alembic import command
    db = Database(empty_url)
    try:
        config = migrate.alembic_config()
        with db.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0013")
        with db.engine.begin() as c:
            for id_, kind, parent in ((1, "region", None), (2, "region", 1), (3, "unit", 2),
                                      (4, "individual", 3), (5, "individual", None)):
                c.execute(sa.text(
                    "INSERT INTO accounts (id, kind, parent_id, name, domains, status, created_at, "
                    "updated_at) VALUES (:id, :kind, :parent, '', '[]', 'active', "
                    "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"), {"id": id_, "kind": kind, "parent": parent})
        assert migrate.upgrade(db) == migrate.head() == "0017"  # through 0014
        with db.engine.connect() as c:
            rows = set(c.execute(sa.text(
                "SELECT ancestor_id, account, account_id, depth FROM account_ancestors")).all())
        assert rows == {(1, "2", 2, 1), (2, "3", 3, 1), (1, "3", 3, 2), (3, "4", 4, 1),
                        (2, "4", 4, 2), (1, "4", 4, 3)}
    finally:
        db.dispose()


def _states_0016(rng) -> dict:
    """(methodology, account) -> a state as the code before 0017 wrote it, for 2,600
    accounts of two methodologies (three pages of the migration's 1,000): a duplicate
    rule's keys (texts with escapes, quotes, tabs and backslashes written by JSON, other
    scripts, numbers, booleans and null), a near-duplicate rule's events, both, neither,
    an empty list of each."""
    texts = ["bus", 'say "hi"', "back\\slash", "tab\there", "line\nbreak", "碳普惠", "😀", "", "\\N", "a\tb\\c"]
    def value():
        return rng.choice([rng.choice(texts), rng.randint(-10**12, 10**12), 1.5, True, False, None])
    def text(data):
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    states = {}
    for i in range(2_600):
        methodology = "test.bike" if i % 5 == 0 else "test.transit"
        data = {"cap:reduction|account|day": {"19894": i}}
        if i % 4:
            data['duplicate:["operator","trip"]'] = sorted({text([value(), f"trip-{i}-{k}"])
                                                             for k in range(i % 9)})
        if i % 3 == 0:
            data['nearduplicate:["mode"]|boarded|300000000'] = [
                [[value()], 1_718_863_200_000_000 + k * 600_000_000, k, f"ride-{i}-{k}"] for k in range(i % 7)]
        if i % 13 == 0:
            data["duplicate:[\"other\"]"] = [text([i])]  # another version's rule, kept apart
        states[methodology, f"{100_000 + i}"] = text(data)
    return states


def test_0017_moves_every_page_of_keys_and_events(reg):
    """Migration 0017 over three pages of states (SQLite: rows inserted; PostgreSQL:
    rows by COPY and the states by one UPDATE from a temporary table, the index made
    after the rows): every key and event is a row as the ledger would have written it
    (its hash by duplicate_keys.key_hash of the parsed key), every state keeps the rest
    and only the count of its events, states with nothing to move are not touched, and
    the index is there. The expectation is computed here from the states, so both
    backends are held to the same rows and texts."""
    import random
    from alembic import command
    from engine.state import key_text, parse_key
    from registry import workflow
    from registry.duplicate_keys import key_hash
    with reg.uow() as s:
        workflow.create_methodology(s, reg.author, id="test.bike", title="bike", domain="transport")
    config = migrate.alembic_config()
    with reg.db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0016")
    states = _states_0016(random.Random(17))
    with reg.db.engine.begin() as c:
        c.execute(sa.text("INSERT INTO rule_states (methodology_id, account, state, updated_at) "
                          "VALUES (:m, :a, :s, '2026-12-01 00:00:00')"),
                  [{"m": m, "a": a, "s": text} for (m, a), text in states.items()])
    rows, after = [], {}
    for (m, a), text in states.items():
        data = json.loads(text)
        for name in [name for name in data if name.startswith("duplicate:")]:
            rows += [(m, a, name, key_hash(m, a, name, parse_key(k)), k, None, None, None) for k in data.pop(name)]
        for name in [name for name in data if name.startswith("nearduplicate:")]:
            rows += [(m, a, name, key_hash(m, a, name, tuple(k)), key_text(tuple(k)), near, order, record)
                     for k, near, order, record in data[name]]
            data[name] = {"count": len(data[name])}
        after[m, a] = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert len(rows) > 10_000 and any(after[k] == states[k] for k in states)

    assert migrate.upgrade(reg.db) == "0017"
    with reg.db.engine.connect() as c:
        moved = c.execute(sa.text("SELECT methodology_id, account, rule, key_hash, key, near, ordinal, "
                                  "record_id FROM duplicate_keys")).all()
        stored = {(m, a): s for m, a, s in c.execute(sa.text(
            "SELECT methodology_id, account, state FROM rule_states")).all()}
    assert sorted(map(tuple, moved), key=repr) == sorted(rows, key=repr)
    assert stored == after
    index = {i["name"]: i["column_names"] for i in sa.inspect(reg.db.engine).get_indexes("duplicate_keys")}
    assert index == {"ix_duplicate_keys_key_hash_near": ["key_hash", "near"]}
    assert _diff(reg.db) == []
