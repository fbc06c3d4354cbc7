"""Engines and sessions from a URL, and the unit of work.

    db = Database("postgresql+psycopg://postgres@127.0.0.1:5432/tanpu")   # or sqlite:///path
    with db.unit_of_work() as session:      # one transaction: commit on success,
        workflow.submit(session, user, 7)   # rollback on any exception

SQLite: foreign keys on, WAL, a 30 s busy timeout, and write transactions that start
with BEGIN IMMEDIATE (so two writers queue instead of failing half way). PostgreSQL:
READ COMMITTED; `read()` sessions are READ ONLY; a pooled connection the server closed
is replaced when checked out, without a round trip (`_closed_by_server`).
"""

from __future__ import annotations

import logging
import random
import select
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

_READ_ONLY = "tanpu_read_only"
log = logging.getLogger(__name__)
T = TypeVar("T")

# PostgreSQL's SQLSTATEs after which the whole transaction may simply be run again:
# serialization_failure and deadlock_detected (the server rolled one transaction back).
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
# ... and those that say the connection is gone (class 08, connection_exception; the
# server shutting down or terminating the backend, 57P01-57P03): the transaction was
# rolled back by the server, unless it was its COMMIT that failed
DISCONNECT_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})


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


def _chain(error: BaseException) -> Iterator[BaseException]:
    """`error`, the driver's error it wraps, and the errors it was raised from."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        orig = getattr(error, "orig", None)
        if orig is not None:
            yield orig
        error = error.__cause__ or error.__context__


def is_disconnect(error: BaseException) -> bool:
    """Whether `error` (or one it was raised from) says the connection to the database
    was lost: SQLAlchemy found it so (`connection_invalidated`), or the server said it
    was closing the connection (DISCONNECT_SQLSTATES, class 08)."""
    for candidate in _chain(error):
        if getattr(candidate, "connection_invalidated", False):
            return True
        state = getattr(candidate, "sqlstate", None) or ""
        if state in DISCONNECT_SQLSTATES or state.startswith("08"):
            return True
    return False


def _closed_by_server(dbapi_connection) -> bool:
    """Whether an idle pooled psycopg connection can no longer be used: psycopg knows it
    closed or broken, or its socket has something to read. An idle connection is sent
    nothing by a server that keeps it (no LISTEN here), so anything readable is the
    server's goodbye: the FATAL message and the end of the stream that a restart, a
    shutdown or `pg_terminate_backend` sends. One poll(2) of the socket, no round trip;
    SQLAlchemy's `pool_pre_ping` sent a statement and waited for its answer at every
    checkout, 2 of a single-record credit's 13 round trips (docs/ledger.md, Session 10).
    What it does not see, a peer gone without a word (a host powered off, a firewall
    dropping idle flows), the first statement's failure does (`Database.retried` runs
    the unit of work again after a disconnect before its COMMIT) and `pool_recycle`
    can bound."""
    connection = getattr(dbapi_connection, "driver_connection", None) or dbapi_connection
    try:
        if connection.closed or connection.broken:
            return True
        descriptor = connection.fileno()
    except Exception:  # noqa: BLE001 - a connection that cannot say is not kept
        return True
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(descriptor, select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))
    readable, _, errored = select.select([descriptor], [], [descriptor], 0)
    return bool(readable or errored)


def make_engine(url: str, *, durable: bool = True, **kwargs) -> Engine:
    """An Engine for `url`; an SQLite file's folder is created if missing.

    durable=False (tests only): commits do not wait for the disk (SQLite synchronous=OFF,
    PostgreSQL synchronous_commit=off); a crash may lose the last commits.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        engine = create_engine(parsed, **kwargs)

        @event.listens_for(engine, "checkout")
        def _checkout(dbapi_connection, _record, _proxy):
            # the pool then discards this connection and checks out another (or a new one)
            if _closed_by_server(dbapi_connection):
                raise sa_exc.DisconnectionError("the server closed this pooled connection")

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

    def session(self) -> Session:
        """A read-write session whose transaction begins with its first statement: for a
        caller that reads, then hands it to retried(first=...) to write in the same
        transaction (the API's credit on PostgreSQL: its token's check and versions'
        fingerprint are the transaction's first pipeline, where a read-only transaction of
        their own cost a ROLLBACK's round trip and a second session; docs/ledger.md,
        Session 16). The caller closes it if it does not hand it over."""
        return self._sessions()

    def retried(self, work: Callable[[Session], T], *, attempts: int = 3,
                backoff: float = 0.05, first: Optional[Session] = None) -> T:
        """`work(session)` in one unit of work, the whole transaction run again (from a new
        session, the failed one rolled back) when the database reports a deadlock or a
        serialization failure (is_retryable), at most `attempts` times in all, after a
        short jittered pause (so the two losers of a deadlock do not meet again in step).
        PostgreSQL breaks a cycle of waits by failing one transaction: that is the
        transaction's failure, not the request's, and running it again after the winner
        committed succeeds. `work` must be safe to run again: the ledger's credits are
        (idempotency key; the failed attempt left nothing), and it must not keep anything
        from the session of a failed attempt.

        `first`: a session from session(), possibly with the caller's reads in its
        transaction, for the first attempt; it is committed, or rolled back, and closed
        here; a second attempt has a new session, as always."""
        for attempt in range(1, attempts + 1):
            committing = False
            try:
                if attempt == 1 and first is not None:
                    with first:  # closed when the block ends: rolled back unless committed
                        out = work(first)
                        committing = True
                        first.commit()
                    return out
                with self.unit_of_work() as session:
                    out = work(session)
                    committing = True
                return out
            except Exception as error:  # noqa: BLE001 - re-raised unless retryable
                lost = not committing and is_disconnect(error)
                if attempt == attempts or not (lost or is_retryable(error)):
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
