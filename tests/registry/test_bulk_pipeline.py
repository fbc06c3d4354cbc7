"""bulk.pipelined (PostgreSQL): statements sent in one round trip still run one after the
other, each with its own snapshot, so a read sent after a lock sees what the lock's
previous holder committed while it waited (the ledger's record locks and entries' read,
and the audit chain's lock and last entry, rely on it); an error surfaces as
SQLAlchemy's."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from registry import bulk
from registry.models import utcnow

KEY = 7_346_001


def test_a_read_after_a_lock_sees_what_the_holder_committed(reg, backend):
    if backend != "postgresql":
        pytest.skip("pipelines are PostgreSQL's")
    methodology = "test.transit"
    holding, done = threading.Event(), threading.Event()

    def holder():
        with reg.uow() as s:
            s.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": KEY})
            s.execute(sa.text("INSERT INTO rule_states (methodology_id, account, state, updated_at) "
                              "VALUES (:m, 'pipe-1', 'written', :now)"), {"m": methodology, "now": utcnow()})
            holding.set()
            time.sleep(0.5)  # the other transaction's pipeline waits at the lock meanwhile
        done.set()

    thread = threading.Thread(target=holder)
    thread.start()
    holding.wait(10)
    with reg.uow() as s:
        locked, rows, none = bulk.pipelined(s, [
            ("SELECT pg_advisory_xact_lock(%(k)s)", {"k": KEY}, False),
            ("SELECT account, state FROM rule_states WHERE methodology_id = %(m)s AND account = "
             "'pipe-1'", {"m": methodology}, True),
            ("SELECT 1 WHERE false", {}, True)])
    thread.join()
    assert done.is_set()
    assert locked == [] and none == []
    # the holder's row was not committed when the pipeline was sent (`holding` is set
    # inside its transaction): the read sees it only because its snapshot was taken after
    # the lock, granted at the holder's commit. (Not `done` checked inside: the holder's
    # thread sets it after its commit returns, which may be after the lock was granted.)
    assert rows == [("pipe-1", "written")]


def test_an_error_in_a_pipeline_is_sqlalchemys_and_rolls_back(reg, backend):
    if backend != "postgresql":
        pytest.skip("pipelines are PostgreSQL's")
    with pytest.raises(sa.exc.DBAPIError):
        with reg.uow() as s:
            bulk.pipelined(s, [("SELECT 1", {}, True), ("SELECT 1 / 0", {}, True),
                               ("SELECT 2", {}, True)])
    with reg.db.read() as s:  # the pool's connection is usable again
        assert s.scalar(sa.text("SELECT 3")) == 3


def _in_transaction_after(reg) -> None:
    """A unit of work after the one under test, on the pool's connection: it is a
    transaction (its write is gone when it fails), and psycopg begins it as usual."""
    with pytest.raises(RuntimeError):
        with reg.uow() as s:
            s.execute(sa.text("INSERT INTO rule_states (methodology_id, account, state, updated_at) "
                              "VALUES ('test.transit', 'after', '', :now)"), {"now": utcnow()})
            assert not s.connection().connection.driver_connection.autocommit
            raise RuntimeError("rolled back")
    with reg.db.read() as s:
        assert s.scalar(sa.text("SELECT count(*) FROM rule_states WHERE account = 'after'")) == 0


def test_a_transaction_begun_by_a_pipeline_is_one_transaction(reg, backend):
    """The BEGIN sent in the transaction's first pipeline (bulk._begin_here): what the
    pipeline wrote and what came after are rolled back together, or committed together;
    the connection goes back to the pool with psycopg's own transactions."""
    if backend != "postgresql":
        pytest.skip("pipelines are PostgreSQL's")
    insert = ("INSERT INTO rule_states (methodology_id, account, state, updated_at) "
              "VALUES ('test.transit', %(a)s, '', now())")
    with pytest.raises(RuntimeError):
        with reg.uow() as s:
            bulk.pipelined(s, [(insert, {"a": "begun-1"}, False)])
            s.execute(sa.text("INSERT INTO rule_states (methodology_id, account, state, updated_at) "
                              "VALUES ('test.transit', 'begun-2', '', :now)"), {"now": utcnow()})
            raise RuntimeError("rolled back")
    _in_transaction_after(reg)
    with pytest.raises(sa.exc.DBAPIError):
        with reg.uow() as s:
            bulk.pipelined(s, [(insert, {"a": "begun-3"}, False), ("SELECT 1 / 0", {}, True)])
    _in_transaction_after(reg)
    with reg.uow() as s:
        bulk.pipelined(s, [(insert, {"a": "begun-4"}, False)])
        s.execute(sa.text("INSERT INTO rule_states (methodology_id, account, state, updated_at) "
                          "VALUES ('test.transit', 'begun-5', '', :now)"), {"now": utcnow()})
    _in_transaction_after(reg)
    with reg.db.read() as s:
        assert s.scalars(sa.text("SELECT account FROM rule_states WHERE account LIKE 'begun-%' "
                                 "ORDER BY account")).all() == ["begun-4", "begun-5"]
        # a read session's pipeline begins a read-only transaction
        with pytest.raises(sa.exc.DBAPIError, match="read-only"):
            bulk.pipelined(s, [(insert, {"a": "begun-6"}, False)])


def test_pipelines_on_one_connection_answer_each_statement_its_own_rows(reg, backend):
    """bulk.pipelined keeps its cursors per connection (bulk._cursors): a pipeline after a
    longer one, after one whose rows were not asked for, and after one that failed on the
    same connection, answers exactly its own statements' rows."""
    if backend != "postgresql":
        pytest.skip("pipelines are PostgreSQL's")
    with reg.uow() as s:
        first = bulk.pipelined(s, [("SELECT %(a)s::int, 'a'", {"a": i}, True) for i in range(4)])
        assert first == [[(i, "a")] for i in range(4)]
        assert bulk.pipelined(s, [("SELECT generate_series(1, %(n)s)", {"n": 3}, True),
                                  ("SELECT 'x' WHERE false", {}, True)]) == [[(1,), (2,), (3,)], []]
        assert bulk.pipelined(s, [("SELECT 9", {}, False), ("SELECT 8", {}, False)]) == [[], []]
        assert bulk.pipelined(s, [("SELECT 'only'", {}, True)]) == [[("only",)]]
    with pytest.raises(sa.exc.DBAPIError):
        with reg.uow() as s:
            bulk.pipelined(s, [("SELECT 1", {}, True), ("SELECT 1 / 0", {}, True)])
    with reg.uow() as s:
        assert bulk.pipelined(s, [("SELECT 5", {}, True), ("SELECT 6", {}, True)]) == [[(5,)], [(6,)]]


def test_a_deferred_statement_leads_the_next_pipeline_and_goes_with_a_rollback(reg, backend):
    """bulk.defer: the statement is sent first in the session's next pipeline (its rows to
    its callback, the caller's answers as if it were not there); one deferred in a
    transaction rolled back is never sent, in that session's next transaction or anywhere;
    its guard's SQLSTATE comes back as bulk.Raced, retryable (Database.retried)."""
    if backend != "postgresql":
        pytest.skip("pipelines are PostgreSQL's")
    from registry.db import is_retryable
    insert = ("INSERT INTO rule_states (methodology_id, account, state, updated_at) VALUES "
              "('test.transit', %(a)s, 'x', now()) RETURNING account")
    got = []
    with reg.uow() as s:
        bulk.defer(s, (insert, {"a": "d-1"}, True), got.extend)
        assert got == []  # nothing sent yet
        (seen,) = bulk.pipelined(s, [("SELECT account FROM rule_states WHERE methodology_id = "
                                      "'test.transit' AND account LIKE 'd-%%'", {}, True)])
    assert got == [("d-1",)] and seen == [("d-1",)]  # sent before the read, in the same round trip

    session = reg.db.session()
    try:
        bulk.defer(session, (insert, {"a": "d-2"}, True), got.extend)
        session.rollback()
        bulk.pipelined(session, [("SELECT 1", {}, True)])  # the session's next transaction
        session.commit()
    finally:
        session.close()
    with reg.uow() as s:
        (rows,) = bulk.pipelined(s, [("SELECT account FROM rule_states WHERE methodology_id = "
                                      "'test.transit' AND account LIKE 'd-%%' ORDER BY account", {}, True)])
    assert rows == [("d-1",)] and got == [("d-1",)]

    with pytest.raises(bulk.Raced) as raised:
        with reg.uow() as s:
            bulk.defer(s, ("SELECT 1 / (SELECT count(*) - 1 FROM rule_states WHERE methodology_id "
                           "= 'test.transit' AND account LIKE 'd-%%')", {}, True), got.extend, raced="22012")
            bulk.pipelined(s, [("SELECT 1", {}, True)])
    assert is_retryable(raised.value)
