"""Registry test databases: every test runs on SQLite and on PostgreSQL.

Each database is made by the migrations: once per test session a template is migrated
(and, for `reg`, seeded with users and a committee through the workflow); every test gets
it as it was (SQLite: a copy of the file; PostgreSQL: a schema whose rows are put back
after each test, see PostgresServer). Tests of the migrations themselves start from empty
databases (SQLite: a new file; PostgreSQL: a fresh schema). Commits do not wait for the
disk (Database(durable=False)).

PostgreSQL comes from $TANPU_TEST_POSTGRES_URL (set by .ci/run). When it is unset the
default local server is used if it answers, else the PostgreSQL variants are skipped with
the reason; when it is set but does not answer, they fail.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import uuid

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy.engine import make_url

from registry import migrate, users
from registry.db import Database

from .helpers import Registry

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture(autouse=True)
def _cheap_password_hashing():
    """argon2id with tiny cost parameters, so tests that set passwords stay fast."""
    old = users.use_hasher(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    yield
    users.use_hasher(old)


# ---------------------------------------------------------------- PostgreSQL
def _postgres() -> tuple[str | None, str]:
    """(url, problem): url None when PostgreSQL is not to be used."""
    url = os.environ.get("TANPU_TEST_POSTGRES_URL")
    explicit = bool(url)
    url = url or DEFAULT_PG_URL
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        return url, ""
    except Exception as error:  # noqa: BLE001 - any failure to connect
        reason = (f"PostgreSQL at {url} does not answer "
                  f"({type(error).__name__}: {str(error).strip().splitlines()[0]})")
        if explicit:
            return url, "TANPU_TEST_POSTGRES_URL is set but " + reason
        return None, "PostgreSQL variants skipped: TANPU_TEST_POSTGRES_URL is unset and " + reason
    finally:
        engine.dispose()


class PostgresServer:
    """Test schemas on one server.

    `empty()`: a fresh schema, dropped afterwards. `reusable(kind, prepare)`: one schema
    per kind for the whole session, made by `prepare(url)` (the migrations, and the seed
    for `reg`) and snapshotted; after each test its rows are put back as they were
    (DELETE and copy from the snapshot, triggers off for that), or, when the test
    changed the schema itself (a trigger disabled, a migration undone), the schema is
    dropped and made again. Creating and dropping a database per test would cost a
    checkpoint each time.
    """

    def __init__(self, url: str):
        self.url = make_url(url)
        self.admin = sa.create_engine(self.url, isolation_level="AUTOCOMMIT")
        self.prefix = f"tanpu_t{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.count = 0
        self.reusables: dict[str, dict] = {}

    def _name(self) -> str:
        self.count += 1
        return f"{self.prefix}_{self.count}"

    def _url(self, schema: str) -> str:
        return (self.url.update_query_dict({"options": f"-csearch_path={schema}"})
                .render_as_string(hide_password=False))

    def _sql(self, *statements: str, params=None):
        with self.admin.connect() as c:
            result = None
            for statement in statements:
                result = c.execute(sa.text(statement), params or {})
            return result.all() if result is not None and result.returns_rows else None

    def empty(self) -> tuple[str, callable]:
        """A fresh schema: (url, drop)."""
        schema = self._name()
        self._sql(f"CREATE SCHEMA {schema}")
        return self._url(schema), lambda: self._sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    def _fingerprint(self, schema: str) -> tuple:
        """What a test must not have changed: migration, tables, enabled triggers."""
        return tuple(self._sql(
            "SELECT (SELECT string_agg(version_num, ',') FROM " + schema + ".alembic_version), "
            "(SELECT count(*) FROM pg_tables WHERE schemaname = :s), "
            "(SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            " JOIN pg_namespace n ON n.oid = c.relnamespace "
            " WHERE n.nspname = :s AND NOT t.tgisinternal AND t.tgenabled = 'O')",
            params={"s": schema})[0])

    def _build(self, kind: str, prepare) -> dict:
        schema = self._name()
        self._sql(f"CREATE SCHEMA {schema}", f"CREATE SCHEMA {schema}_snap")
        extra = prepare(self._url(schema))
        tables = [r[0] for r in self._sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = :s AND tablename <> 'alembic_version'",
            params={"s": schema})]
        self._sql(*[f"CREATE TABLE {schema}_snap.{t} AS SELECT * FROM {schema}.{t}" for t in tables])
        serials = [(t, r[0]) for t in tables for r in self._sql(
            "SELECT pg_get_serial_sequence(:t, a.attname) FROM pg_attribute a "
            "WHERE a.attrelid = CAST(:t AS regclass) AND a.attnum > 0 AND NOT a.attisdropped "
            "AND pg_get_serial_sequence(:t, a.attname) IS NOT NULL",
            params={"t": f"{schema}.{t}"})]
        reset = [
            "SET lock_timeout = '20s'",
            "BEGIN",
            "SET LOCAL session_replication_role = replica",
            *[f"DELETE FROM {schema}.{t}" for t in tables],  # cheaper than TRUNCATE here
            *[f"INSERT INTO {schema}.{t} SELECT * FROM {schema}_snap.{t}" for t in tables],
            *[f"SELECT setval('{seq}', (SELECT COALESCE(MAX(id), 0) + 1 FROM {schema}.{t}), false)"
              for t, seq in serials],
            "COMMIT",
        ]
        return {"schema": schema, "extra": extra, "reset": reset,
                "fingerprint": self._fingerprint(schema)}

    def reusable(self, kind: str, prepare) -> tuple[str, object, callable]:
        if kind not in self.reusables:
            self.reusables[kind] = self._build(kind, prepare)
        entry = self.reusables[kind]

        def release():
            if self._fingerprint(entry["schema"]) == entry["fingerprint"]:
                self._sql(*entry["reset"])
            else:  # the test changed the schema: make it again
                self._sql(f"DROP SCHEMA {entry['schema']} CASCADE",
                          f"DROP SCHEMA {entry['schema']}_snap CASCADE")
                del self.reusables[kind]
        return self._url(entry["schema"]), entry["extra"], release

    def close(self) -> None:
        for entry in self.reusables.values():
            self._sql(f"DROP SCHEMA IF EXISTS {entry['schema']} CASCADE",
                      f"DROP SCHEMA IF EXISTS {entry['schema']}_snap CASCADE")
        self.admin.dispose()


@pytest.fixture(scope="session")
def postgres_server():
    url, problem = _postgres()
    if problem and url is not None:
        pytest.fail(problem)
    if url is None:
        pytest.skip(problem)
    server = PostgresServer(url)
    yield server
    server.close()


# ---------------------------------------------------------------- SQLite
class SqliteFiles:
    def __init__(self, folder):
        self.folder = folder
        self.templates: dict[str, tuple[str, object]] = {}

    def copy(self, kind: str, prepare, target) -> tuple[str, object]:
        if kind not in self.templates:
            path = self.folder / f"{kind}.db"
            extra = prepare(f"sqlite:///{path}")
            self.templates[kind] = (path, extra)
        path, extra = self.templates[kind]
        shutil.copyfile(path, target)
        return f"sqlite:///{target}", extra


@pytest.fixture(scope="session")
def sqlite_files(tmp_path_factory):
    return SqliteFiles(tmp_path_factory.mktemp("templates"))


# ---------------------------------------------------------------- fixtures
def _migrated(url: str):
    database = Database(url, durable=False, pool_pre_ping=False)
    try:
        migrate.upgrade(database)
    finally:
        database.dispose()  # no connection may stay open on a template


def _seeded(url: str) -> Registry:
    database = Database(url, durable=False, pool_pre_ping=False)
    try:
        migrate.upgrade(database)
        return dataclasses.replace(Registry.setup(database), db=None)
    finally:
        database.dispose()


BACKENDS = [pytest.param("sqlite", id="sqlite"),
            pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


def _copy(request, backend, tmp_path, kind, prepare):
    if backend == "sqlite":
        files = request.getfixturevalue("sqlite_files")
        return files.copy(kind, prepare, tmp_path / "tanpu.db") + (lambda: None,)
    return request.getfixturevalue("postgres_server").reusable(kind, prepare)


@pytest.fixture
def empty_url(request, backend, tmp_path):
    """The URL of an empty (never migrated) database."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'tanpu.db'}"
        return
    url, drop = request.getfixturevalue("postgres_server").empty()
    yield url
    drop()


@pytest.fixture
def db(request, backend, tmp_path):
    """A database migrated to head, of its own."""
    url, _, drop = _copy(request, backend, tmp_path, "migrated", _migrated)
    database = Database(url, durable=False, pool_pre_ping=False)
    yield database
    database.dispose()
    drop()


@pytest.fixture
def reg(request, backend, tmp_path) -> Registry:
    """A migrated database with an administrator, authors, a transport committee of
    five members (one of them the usual author) and a methodology."""
    url, template, drop = _copy(request, backend, tmp_path, "seeded", _seeded)
    database = Database(url, durable=False, pool_pre_ping=False)
    yield dataclasses.replace(template, db=database)
    database.dispose()
    drop()
