"""Engines and sessions from a URL, and the unit of work.

    db = Database("postgresql+psycopg://postgres@127.0.0.1:5432/tanpu")   # or sqlite:///path
    with db.unit_of_work() as session:      # one transaction: commit on success,
        workflow.submit(session, user, 7)   # rollback on any exception

SQLite: foreign keys on, WAL, a 30 s busy timeout, and write transactions that start
with BEGIN IMMEDIATE (so two writers queue instead of failing half way). PostgreSQL:
READ COMMITTED; `read()` sessions are READ ONLY.
"""

from __future__ import annotations

import logging
import random
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

_READ_ONLY = "tanpu_read_only"
log = logging.getLogger(__name__)
T = TypeVar("T")

# PostgreSQL's SQLSTATEs after which the whole transaction may simply be run again:
# serialization_failure and deadlock_detected (the server rolled one transaction back).
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})


def is_retryable(error: BaseException) -> bool:
    """Whether `error` (or an error it was raised from) is a deadlock or a serialization
    failure reported by the database: the transaction lost, not the request."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        for candidate in (error, getattr(error, "orig", None)):
            state = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
            if state in RETRYABLE_SQLSTATES:
                return True
        error = error.__cause__ or error.__context__
    return False


def make_engine(url: str, *, durable: bool = True, **kwargs) -> Engine:
    """An Engine for `url`; an SQLite file's folder is created if missing.

    durable=False (tests only): commits do not wait for the disk (SQLite synchronous=OFF,
    PostgreSQL synchronous_commit=off); a crash may lose the last commits.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        engine = create_engine(parsed, **kwargs)
        if not durable:
            @event.listens_for(engine, "connect")
            def _fast(dbapi_connection, _record):
                with dbapi_connection.cursor() as cursor:
                    cursor.execute("SET synchronous_commit = off")
                dbapi_connection.commit()
        return engine

    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    if in_memory:
        raise ValueError("an in-memory SQLite database cannot be shared by sessions: "
                         "give a file, e.g. sqlite:///var/tanpu.db")
    if not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, connect_args={"timeout": 30}, **kwargs)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # the driver must not BEGIN on its own
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = " + ("FULL" if durable else "OFF"))
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection):
        read_only = connection.get_execution_options().get(_READ_ONLY)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


class Database:
    """An engine and its session factories."""

    def __init__(self, url: Optional[str] = None, *, durable: bool = True, **engine_kwargs):
        if url is None:
            from .settings import load
            url = load().database_url
        self.url = url
        self.engine = make_engine(url, durable=durable, **engine_kwargs)
        self.dialect = self.engine.dialect.name
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        if self.dialect == "postgresql":
            # psycopg's `read_only`: the transaction starts with BEGIN READ ONLY, where a
            # SET TRANSACTION READ ONLY after the BEGIN was one round trip more on every
            # read (a single-record /credits has one, its evaluation); SQLAlchemy sets it
            # on the connection for this session and resets it when the connection goes
            # back to the pool
            reader = self.engine.execution_options(**{_READ_ONLY: True}, postgresql_readonly=True)
        else:
            reader = self.engine.execution_options(**{_READ_ONLY: True})
        self._readers = sessionmaker(reader, expire_on_commit=False)

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on an exception."""
        with self._sessions.begin() as session:
            yield session

    def retried(self, work: Callable[[Session], T], *, attempts: int = 3,
                backoff: float = 0.05) -> T:
        """`work(session)` in one unit of work, the whole transaction run again (from a new
        session, the failed one rolled back) when the database reports a deadlock or a
        serialization failure (is_retryable), at most `attempts` times in all, after a
        short jittered pause (so the two losers of a deadlock do not meet again in step).
        PostgreSQL breaks a cycle of waits by failing one transaction: that is the
        transaction's failure, not the request's, and running it again after the winner
        committed succeeds. `work` must be safe to run again: the ledger's credits are
        (idempotency key; the failed attempt left nothing), and it must not keep anything
        from the session of a failed attempt."""
        for attempt in range(1, attempts + 1):
            try:
                with self.unit_of_work() as session:
                    return work(session)
            except Exception as error:  # noqa: BLE001 - re-raised unless retryable
                if attempt == attempts or not is_retryable(error):
                    raise
                log.warning("transaction %d of %d failed (%s): run again", attempt, attempts,
                            getattr(getattr(error, "orig", error), "sqlstate", "") or type(error).__name__)
                time.sleep(backoff * attempt * (0.5 + random.random()))
        raise AssertionError("unreachable")

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session; its transaction is rolled back when the block ends, and the
        objects it loaded stay readable (detached) after it."""
        with self._readers() as session:
            yield session

    def dispose(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"<Database {make_url(self.url).render_as_string(hide_password=True)}>"
