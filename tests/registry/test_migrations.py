"""The schema comes from the migrations, and the models agree with them."""

from __future__ import annotations

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
