"""Registry test databases: every test runs on SQLite (a file in tmp_path) and on
PostgreSQL (a fresh schema, dropped afterwards), each created by the migrations.

PostgreSQL comes from $TANPU_TEST_POSTGRES_URL (set by .ci/run). When it is unset the
default local server is used if it answers, else the PostgreSQL variants are skipped;
when it is set but does not answer, they fail.
"""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from registry import migrate, users
from registry.db import Database

from .helpers import Registry

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


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
        reason = f"PostgreSQL at {url} does not answer ({type(error).__name__}: {str(error).splitlines()[0]})"
        if explicit:
            return url, "FAIL: TANPU_TEST_POSTGRES_URL is set but " + reason
        return None, ("PostgreSQL variants skipped: TANPU_TEST_POSTGRES_URL is unset and " + reason)
    finally:
        engine.dispose()


_PG = None


def postgres() -> tuple[str | None, str]:
    global _PG
    if _PG is None:
        _PG = _postgres()
    return _PG


@pytest.fixture(autouse=True)
def _cheap_password_hashing():
    """argon2id with tiny cost parameters, so tests that set passwords stay fast."""
    old = users.use_hasher(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    yield
    users.use_hasher(old)


class PostgresSchema:
    """A fresh schema in the test database, first on the search path of `url`."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.name = "tanpu_t_" + uuid.uuid4().hex[:12]
        self.admin = sa.create_engine(base_url)
        with self.admin.begin() as connection:
            connection.execute(sa.text(f"CREATE SCHEMA {self.name}"))
        separator = "&" if "?" in base_url else "?"
        self.url = f"{base_url}{separator}options=-csearch_path%3D{self.name}"

    def drop(self) -> None:
        with self.admin.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA IF EXISTS {self.name} CASCADE"))
        self.admin.dispose()


def _url_for(kind: str, tmp_path):
    """(url, cleanup) of an empty database of `kind`."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'tanpu.db'}", lambda: None
    url, problem = postgres()
    if problem.startswith("FAIL"):
        pytest.fail(problem)
    if url is None:
        pytest.skip(problem)
    schema = PostgresSchema(url)
    return schema.url, schema.drop


BACKENDS = [pytest.param("sqlite", id="sqlite"),
            pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def empty_url(request, tmp_path):
    """The URL of an empty (not migrated) database."""
    url, cleanup = _url_for(request.param, tmp_path)
    yield url
    cleanup()


@pytest.fixture
def db(empty_url):
    """A migrated database (SQLite or PostgreSQL)."""
    database = Database(empty_url)
    migrate.upgrade(database)
    yield database
    database.dispose()


@pytest.fixture
def reg(db) -> Registry:
    """A migrated database with an administrator, authors, a transport committee of
    four members and a methodology."""
    return Registry.setup(db)
