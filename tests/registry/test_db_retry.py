"""Database.retried: a transaction the database fails with a deadlock or a serialization
failure is run again whole; other errors are not (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from registry.db import is_retryable


def _lock_user(session, user_id: int) -> None:
    session.execute(sa.text("SELECT id FROM users WHERE id = :i FOR UPDATE"), {"i": user_id})


def test_a_real_deadlock_is_run_again(reg):
    """First attempt: this transaction locks user a, another locks user b and waits for
    a, and this one then asks for b: a real deadlock (40P01), detected here (the other
    waits longer before it looks). The second attempt meets no one and commits."""
    if reg.db.dialect != "postgresql":
        pytest.skip("row locks: PostgreSQL (SQLite has one writer)")
    a, b = reg.admin, reg.integrator
    attempts, errors = [], []
    holding_b = threading.Event()

    def other():
        try:
            with reg.db.unit_of_work() as s:
                s.execute(sa.text("SET LOCAL deadlock_timeout = '10s'"))
                _lock_user(s, b)
                holding_b.set()
                _lock_user(s, a)  # waits for the first attempt, which then fails
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    def work(session):
        attempts.append(1)
        session.execute(sa.text("SET LOCAL deadlock_timeout = '100ms'"))
        _lock_user(session, a)
        if len(attempts) == 1:
            thread = threading.Thread(target=other)
            thread.start()
            assert holding_b.wait(10)
            _wait_for_a_lock_waiter(reg)
            work.thread = thread
        _lock_user(session, b)
        session.execute(sa.text("UPDATE users SET name = name WHERE id = :i"), {"i": b})
        return "done"

    assert reg.db.retried(work, backoff=0.01) == "done"
    work.thread.join(30)
    assert len(attempts) == 2 and errors == []


def _wait_for_a_lock_waiter(reg) -> None:
    with reg.db.engine.connect() as c:
        for _ in range(500):
            if c.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                 "current_database() AND wait_event_type = 'Lock'")).scalar_one():
                return
            time.sleep(0.02)
    raise AssertionError("the other transaction never waited")


def test_other_errors_are_not_run_again_and_attempts_are_bounded(reg):
    calls = []

    def duplicate(session):
        calls.append(1)
        session.execute(sa.text("INSERT INTO users (id, email, name, active, created_at) "
                                "SELECT id, email, name, active, created_at "
                                "FROM users WHERE id = :i"), {"i": reg.admin})

    with pytest.raises(IntegrityError) as raised:
        reg.db.retried(duplicate, backoff=0.0)
    assert len(calls) == 1 and not is_retryable(raised.value)

    class Serialization(Exception):
        sqlstate = "40001"

    def always(session):
        calls.append(1)
        raise Serialization()

    calls.clear()
    with pytest.raises(Serialization):
        reg.db.retried(always, attempts=3, backoff=0.0)
    assert len(calls) == 3


def test_a_first_session_is_the_first_attempts_and_a_retry_has_a_new_one(reg):
    """retried(first=...): the caller's work in that session is the first attempt's
    transaction (committed with it), or rolled back with it when the attempt fails and
    is run again in a new session (the API's credit on PostgreSQL reads its token and
    versions in `first`)."""
    class Serialization(Exception):
        sqlstate = "40001"

    def named(session) -> str:
        return session.execute(sa.text("SELECT name FROM users WHERE id = :i"),
                               {"i": reg.admin}).scalar_one()

    def rename(session, name: str) -> None:
        session.execute(sa.text("UPDATE users SET name = :n WHERE id = :i"),
                        {"n": name, "i": reg.admin})

    sessions = []

    def fails_once(session):
        sessions.append(session)
        rename(session, f"attempt {len(sessions)}")
        if len(sessions) == 1:
            raise Serialization()
        return named(session)

    first = reg.db.session()
    rename(first, "before the attempts")  # the caller's work, in the first transaction
    assert reg.db.retried(fails_once, backoff=0.0, first=first) == "attempt 2"
    assert sessions[0] is first and sessions[1] is not first
    with reg.db.read() as s:
        assert named(s) == "attempt 2"

    first = reg.db.session()
    rename(first, "the caller's")
    assert reg.db.retried(lambda s: named(s), first=first) == "the caller's"
    with reg.db.read() as s:
        assert named(s) == "the caller's"  # committed with the attempt

    first = reg.db.session()
    rename(first, "never committed")
    with pytest.raises(Serialization):
        reg.db.retried(lambda s: (_ for _ in ()).throw(Serialization()), attempts=1, first=first)
    with reg.db.read() as s:
        assert named(s) == "the caller's"  # the failed first attempt rolled back


def _terminate(reg, pid: int) -> None:
    """pg_terminate_backend(pid) from a connection of its own, waiting (up to 60 s, the
    machine may be loaded) until the backend is gone: what a server restart does to every
    pooled connection."""
    with reg.db.engine.connect() as c:
        c.execute(sa.text("SELECT pg_terminate_backend(:p, 60000)"), {"p": pid})
        for _ in range(3000):
            if not c.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"),
                             {"p": pid}).scalar_one():
                return
            time.sleep(0.01)
    raise AssertionError(f"backend {pid} still there")


def test_the_next_unit_of_work_after_the_server_closed_the_pooled_connection_succeeds(reg):
    """No pre-ping (a round trip at every checkout): a pooled connection whose backend the
    server terminated is found closed when checked out and replaced, for a read, a unit
    of work and a retried one alike."""
    from registry.db import Database
    if reg.db.dialect != "postgresql":
        pytest.skip("SQLite has no server to close the connection")
    one = Database(reg.db.url, pool_size=1, max_overflow=0)
    pid = "SELECT pg_backend_pid()"
    try:
        assert one.engine.pool._pre_ping is False  # noqa: SLF001 - SQLAlchemy's, not ours
        with one.read() as s:
            first = s.execute(sa.text(pid)).scalar_one()
        _terminate(reg, first)
        with one.read() as s:
            second = s.execute(sa.text(pid)).scalar_one()
        assert second != first
        _terminate(reg, second)
        with one.unit_of_work() as s:
            third = s.execute(sa.text(pid)).scalar_one()
            s.execute(sa.text("UPDATE users SET name = 'after restart' WHERE id = :i"),
                      {"i": reg.admin})
        assert third not in (first, second)
        _terminate(reg, third)
        assert one.retried(lambda s: s.execute(sa.text(pid)).scalar_one()) not in (first, second, third)
        with one.read() as s:
            assert s.execute(sa.text("SELECT name FROM users WHERE id = :i"),
                             {"i": reg.admin}).scalar_one() == "after restart"
    finally:
        one.dispose()


def test_a_connection_lost_before_the_commit_is_run_again_once(reg):
    """The connection dies in the middle of the unit of work (its backend terminated, as
    when the server restarts between the checkout and the first statement): the server
    rolled the transaction back, so it is run again whole on a new connection, and what it
    writes is written once."""
    if reg.db.dialect != "postgresql":
        pytest.skip("SQLite has no server to close the connection")
    attempts = []

    def work(session):
        attempts.append(session.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
        session.execute(sa.text("UPDATE users SET name = name || '+' WHERE id = :i"), {"i": reg.admin})
        if len(attempts) == 1:
            session.execute(sa.text("SELECT pg_terminate_backend(pg_backend_pid())"))
        return "done"

    with reg.db.read() as s:
        before = s.execute(sa.text("SELECT name FROM users WHERE id = :i"), {"i": reg.admin}).scalar_one()
    assert reg.db.retried(work, backoff=0.0) == "done"
    assert len(attempts) == 2 and attempts[0] != attempts[1]
    with reg.db.read() as s:
        assert s.execute(sa.text("SELECT name FROM users WHERE id = :i"),
                         {"i": reg.admin}).scalar_one() == before + "+"


def test_a_lost_connection_is_told_apart_from_other_errors():
    from registry.db import is_disconnect

    class Shutdown(Exception):
        sqlstate = "57P01"

    class Canceled(Exception):
        sqlstate = "57014"  # a statement timeout: the connection is fine

    assert is_disconnect(Shutdown()) and not is_disconnect(Canceled())
    assert not is_retryable(Shutdown())
