"""Many rows in few statements: the ledger's and the accounts' bulk reads and writes.

Crediting 1,000 records used to spend most of its time in SQLAlchemy compiling a fresh
multi-row `INSERT ... VALUES (...), (...)` per 500 rows (thousands of bound parameters,
each rendered, then parsed again by psycopg), and reading ids 500 at a time with
`IN (...)` lists of as many parameters (issue 13, item 10). Here:

- on PostgreSQL a whole batch is one statement whose text never changes, with one array
  parameter per column: `INSERT ... SELECT * FROM unnest(%(c0)s::type[], ...)` and
  `column = ANY(%(ids)s)`. The text is built once per table and columns, so nothing is
  compiled again, psycopg prepares it on the server after a few runs, and the rows travel
  as arrays, not as SQL: each array one literal text made by orjson in C (`array`), which
  the server's cast parses; psycopg's own dumping of a list runs Python for every element
  (its binary format a loop of `struct.pack`s, its text format a regular expression per
  string, which cost more than the whole INSERT);
- elsewhere (SQLite, the embedded default) the portable statements: an executemany of one
  cached `INSERT ... ON CONFLICT DO NOTHING RETURNING` (SQLAlchemy's insertmanyvalues
  batches it), and `IN (...)` lists of at most 500 ids (SQLite's bound-parameter limit).

Both paths return the same things, so callers do not branch.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
import time
from types import NoneType
from typing import Iterable, Iterator, Optional, Sequence

from sqlalchemy import Engine, Table, any_, bindparam, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.pool import Pool

import orjson

CHUNK = 500  # ids per IN (...) on SQLite

_PG = postgresql.dialect()
_statements: dict[tuple, str] = {}


# The element types array() writes as one literal; anything else goes as the list
_LITERAL_TYPES = {str, int, NoneType}
_TIME_TYPES = {dt.datetime, NoneType}
_TZINFO = operator.attrgetter("tzinfo")
# what orjson writes for a control character in a string (\n, \t, ... \u001f), which an
# array literal would read otherwise; also found where the text held a backslash followed
# by one of these letters (then the list goes as it is: slower, the same values)
_CONTROL_ESCAPE = re.compile(rb"\\[bfnrtu]")


def array(values: list, json: bool = False):
    """An array parameter for PostgreSQL (`%(x)b::varchar[]`, `int8[]`, `text[]`...): its
    values as one array literal in a text (`{"a","b\\"c",NULL}`, `{1,2,null}`), which the
    server's cast parses, where psycopg's binary array dumper runs a Python loop over the
    elements (a `struct.pack` and an `append` each: 27 arrays a 1,000-record credit, a
    fifth of its CPU under cProfile; docs/ledger.md, Session 22). The literal is
    orjson's JSON of the list with its brackets made braces: JSON escapes `"` and `\\`
    as an array literal does, writes null (an array literal's NULL, in any case) and
    numbers as they are read back. Returned as the list itself, for psycopg to dump as
    before, when the literal could differ: an element not a str, an int or None (a
    bool, a float, a time not in UTC...), an integer beyond 64 bits, a lone surrogate (orjson
    refuses them), a control character (JSON escapes it, a literal would not unescape
    it). Either way the server gets the same values (tests/registry/test_bulk_array.py).

    `json`: every element is a JSON text or None (a record as sent, a state, a key, as
    json or orjson wrote them), which holds no control character (JSON writes each as
    an escape), so the search for one is skipped (for 1,000 records' texts, 150 kB, it
    cost as much as the rest)."""
    if not values:
        return "{}"
    types = set(map(type, values))
    if not types <= _LITERAL_TYPES:
        # times in UTC (a credit's activity times), which orjson writes as RFC 3339 text
        # with +00:00; not another offset (orjson rounds one of seconds to minutes) nor
        # none (the server's time zone would then say)
        if not (types <= _TIME_TYPES
                and set(map(_TZINFO, filter(None, values))) == {dt.timezone.utc}):
            return values
    try:
        out = orjson.dumps(values)
    except orjson.JSONEncodeError:
        return values
    if not json and b"\\" in out and _CONTROL_ESCAPE.search(out) is not None:
        return values
    return "{" + out[1:-1].decode() + "}"


def is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def among(session: Session, column, values: Iterable) -> Iterator:
    """WHERE conditions that together select the rows whose `column` is one of `values`:
    one `column = ANY(array)` on PostgreSQL (a single statement however many values),
    one `column IN (...)` per 500 values elsewhere. Run one query per condition."""
    values = list(values)
    if not values:
        return
    if is_postgresql(session):
        yield column == any_(bindparam(None, values, type_=postgresql.ARRAY(column.type)))
        return
    for start in range(0, len(values), CHUNK):
        yield column.in_(values[start:start + CHUNK])


def insert_ignoring(session: Session, table: Table, rows: Sequence[dict],
                    conflict_columns: Sequence[str], returning: Sequence[str] = ()) -> list:
    """INSERT the rows ... ON CONFLICT (conflict_columns) DO NOTHING RETURNING the
    `returning` columns of the rows inserted now (rows that conflicted are skipped, as
    are their returns). Every row has the same keys. Returns the returned rows (tuples)."""
    if not rows:
        return []
    if is_postgresql(session):
        sql, params = pg_insert(table, rows, conflict_columns, returning)
        result = session.connection().exec_driver_sql(sql, params)
        return [tuple(r) for r in result] if returning else []
    statement = sqlite_insert(table).on_conflict_do_nothing(index_elements=list(conflict_columns))
    if not returning:
        session.execute(statement, list(rows))
        return []
    statement = statement.returning(*(table.c[c] for c in returning))
    if len(rows) == 1:
        return [tuple(r) for r in session.execute(statement, dict(rows[0]))]
    return [tuple(r) for r in session.execute(statement, list(rows))]


def pg_insert(table: Table, rows: Sequence[dict], conflict_columns: Sequence[str],
              returning: Sequence[str] = ()) -> tuple[str, dict]:
    """(sql, parameters) of insert_ignoring's PostgreSQL statement, to be run by the
    caller (with others, `pipelined`). `rows` is not empty."""
    columns = list(rows[0])
    return pg_insert_columns(table, {c: [row[c] for row in rows] for c in columns}, {},
                             conflict_columns, returning)


def pg_insert_columns(table: Table, columns: dict[str, list], constant: dict,
                      conflict_columns: Sequence[str], returning: Sequence[str] = (),
                      json: Sequence[str] = ()) -> tuple[str, dict]:
    """pg_insert of rows given column by column: `columns` (name -> one value per row, the
    lists of equal length, not empty) and `constant` (name -> one value for every row),
    for a caller that has its rows as columns already (a ledger credit). `json`: the
    columns whose values are JSON texts (array's `json`)."""
    names = list(constant) + list(columns)
    values = list(constant.values()) + list(columns.values())
    # a column with one value for every row (the batch, the version, the time of a
    # credit) goes as one parameter, not an array: less to send and to dump
    same = tuple([True] * len(constant)
                 + [column.count(column[0]) == len(column) for column in columns.values()])
    sql = _pg_statement(table, names, same, tuple(conflict_columns), tuple(returning))
    first = len(constant)
    return sql, {f"c{i}": value if i < first else (value[0] if same[i] else array(value, names[i] in json))
                 for i, value in enumerate(values)}


def _pg_statement(table: Table, columns: list[str], same: tuple, conflict: tuple,
                  returning: tuple) -> str:
    """The unnest INSERT for these columns (`same`: those given as one value for all the
    rows), built once (its text is the cache key of psycopg's prepared statements too).
    When every column is `same` the SELECT makes one row: rows all alike would have had
    one key, and ON CONFLICT DO NOTHING would have inserted one of them."""
    key = (table.name, tuple(columns), same, conflict, returning)
    sql = _statements.get(key)
    if sql is None:
        arrays = ", ".join(f"%(c{i})b::{_pg_type(table.c[c])}[]"
                           for i, c in enumerate(columns) if not same[i])
        names = ", ".join(f"c{i}" for i in range(len(columns)) if not same[i])
        picked = ", ".join(f"%(c{i})b::{_pg_type(table.c[c])}" if same[i] else f"u.c{i}"
                           for i, c in enumerate(columns))
        source = f" FROM unnest({arrays}) AS u({names})" if arrays else ""
        sql = (f"INSERT INTO {table.name} ({', '.join(columns)}) SELECT {picked}{source} "
               f"ON CONFLICT ({', '.join(conflict)}) DO NOTHING"
               + (f" RETURNING {', '.join(returning)}" if returning else ""))
        _statements[key] = sql
    return sql


def _pg_type(column) -> str:
    """The column's PostgreSQL type as SQL (a TypeDecorator's implementation type)."""
    return column.type.compile(dialect=_PG)


# Observers of pipelined round trips (`pipelined`), for measurement only
# (bench/bench_ledger.py --statements): called with (statements' texts, seconds).
round_trip_observers: list = []


def pipelined(session: Session, statements: Sequence[tuple[str, dict, bool]]) -> list[list[tuple]]:
    """PostgreSQL: runs the statements, in order, in one round trip (psycopg's pipeline
    mode), and returns each one's rows ([] for those not asked: the bool says whether
    rows are wanted). Each statement still runs alone and in order on the server, with
    its own snapshot (READ COMMITTED): a read sent after a lock sees what the lock's
    previous holder committed, as if sent after the lock's answer came back. For
    statements whose parameters do not depend on each other's answers: a credit's
    latency was its round trips (19 statements, 1.5-3 ms each on a loaded server;
    docs/ledger.md, Session 8). An error aborts the rest, as it would the transaction.

    The first statements of a transaction: its BEGIN goes in the same round trip
    (_begin_here), where psycopg sent it alone and waited for its answer."""
    import psycopg  # the PostgreSQL driver (only PostgreSQL pipelines)
    deferred = session.info.pop(_DEFERRED, None)
    if deferred:  # sent first, their rows given to their callers (defer)
        statements = [statement for statement, _answer, _raced in deferred] + list(statements)
    fairy = session.connection().connection
    driver = fairy.driver_connection
    begin = _begin_here(session, fairy, driver)
    started = time.perf_counter()
    cursors = _cursors(fairy, driver, len(statements) + 1)
    sql, params = statements[0][:2]
    try:
        with driver.pipeline():
            if begin:  # on a kept cursor too (one made for it cost as much as the BEGIN)
                cursors[-1].execute(begin, prepare=False)
            for cursor, (sql, params, _wanted) in zip(cursors, statements):
                cursor.execute(sql, params)
        out = [cursor.fetchall() if wanted else [] for cursor, (_, _, wanted) in zip(cursors, statements)]
    except psycopg.Error as error:  # as SQLAlchemy would have raised it (a deadlock: OperationalError)
        fairy.info.pop(_CURSORS, None)  # in whatever state the error left them: not reused
        raced = {r for _statement, _answer, r in deferred or () if r}
        if getattr(error, "sqlstate", None) in raced:
            raise Raced("a deferred statement found the rows changed since they were read: "
                        "the transaction is run again") from error
        # a connection lost is said so, as SQLAlchemy says it of its own statements
        # (Database.retried runs the unit of work again after a disconnect)
        raise sa_exc.DBAPIError.instance(sql, params, error, psycopg.Error,
                                         connection_invalidated=driver.closed or driver.broken) from error
    for observe in round_trip_observers:
        observe([sql for sql, _, _ in statements], time.perf_counter() - started)
    if deferred:
        for (_statement, answer, _raced), rows in zip(deferred, out):
            answer(rows)
        out = out[len(deferred):]
    return out


_DEFERRED = "tanpu_deferred_statements"


class Raced(Exception):
    """A deferred statement's guard failed (`defer`'s `raced`): what it was written for
    changed between the reads it was computed from and its run. Said to be a
    serialization failure (SQLSTATE 40001), which is what it is, so that
    Database.retried runs the whole transaction again, as after the database's own."""

    sqlstate = "40001"


def defer(session: Session, statement: tuple[str, dict, bool], answer, raced: Optional[str] = None) -> None:
    """PostgreSQL: `statement` sent at the head of the session's next pipeline (pipelined),
    whichever it is, rather than in a round trip of its own: for a write whose answer the
    caller does not need before the transaction commits (a single-record credit's entries,
    sent with the audit entry and the COMMIT: one round trip less; docs/ledger.md,
    Session 18). `answer(rows)` is called with its rows. `raced`: the SQLSTATE its guard
    raises when the rows it was computed from changed meanwhile; the pipeline's error is
    then `Raced` (retryable). Dropped, unsent, when the transaction ends without it. The caller sends nothing
    through the session but pipelines until then (a statement run otherwise would run
    before it)."""
    session.connection()  # in the session's transaction (begun now if it was not): it ends with it
    session.info.setdefault(_DEFERRED, []).append((statement, answer, raced))


@event.listens_for(Session, "after_transaction_end")
def _drop_deferred(session: Session, transaction) -> None:
    """Whatever was deferred and not sent goes with the transaction (rolled back, or
    closed without a commit)."""
    if transaction.parent is None:
        session.info.pop(_DEFERRED, None)


_CURSORS = "tanpu_pipeline_cursors"


def _cursors(fairy, driver, count: int) -> list:
    """`count` cursors of the connection, kept between pipelines in its pool record's info
    (with the connection they belong to: a connection replaced after a disconnect gets
    new ones). A cursor made for each statement cost 10-12 µs of CPU more a statement
    than one used again (its adapters and its dumpers looked up afresh: measured on
    PostgreSQL, docs/ledger.md Session 17), 16 statements a single-record credit. A
    cursor kept holds its last result until its next statement (rows are tuples
    already: psycopg's default row factory, copied by no one)."""
    kept = fairy.info.get(_CURSORS)
    if kept is None or kept[0] is not driver:
        kept = fairy.info[_CURSORS] = (driver, [])
    cursors = kept[1]
    while len(cursors) < count:
        cursors.append(driver.cursor())
    return cursors[:count]


_BEGUN = "tanpu_begun_in_pipeline"


def _begin_here(session: Session, fairy, driver) -> Optional[bytes]:
    """The BEGIN to send in the pipeline, when the session's transaction has not started
    on the server yet (psycopg sends BEGIN on the first statement, and in a pipeline it
    sends it alone and waits for its answer: one round trip of a single-record credit's
    nine, docs/ledger.md Session 12); None otherwise. The connection is put in psycopg's
    autocommit mode, in which psycopg sends no BEGIN of its own, so the pipeline's BEGIN
    opens the transaction; psycopg's commit() and rollback() still end it (they look at
    the server's transaction status, not at the mode). The mode is set back when the
    transaction has ended: at once after the COMMIT sent in a pipeline (audit.py
    _append_and_commit: `restore`), and whenever the connection goes back to the pool
    (_restore_on_checkin), which a session bound to an Engine does at the end of every
    transaction: so only such sessions (not one joined to a caller's Connection, whose
    next transaction would find the mode set)."""
    from psycopg import pq
    if driver.autocommit or driver.pgconn.transaction_status != pq.TransactionStatus.IDLE:
        return None
    if not isinstance(session.get_bind(), Engine) or session.in_nested_transaction():
        return None
    parts = ["BEGIN"]
    if driver.isolation_level is not None:
        parts.append("ISOLATION LEVEL " + driver.isolation_level.name.replace("_", " "))
    if driver.read_only is not None:
        parts.append("READ ONLY" if driver.read_only else "READ WRITE")
    if driver.deferrable is not None:
        parts.append("DEFERRABLE" if driver.deferrable else "NOT DEFERRABLE")
    driver.autocommit = True
    fairy.info[_BEGUN] = True
    return " ".join(parts).encode()


def restore(session: Session) -> None:
    """After a transaction begun by _begin_here ended (its COMMIT sent in a pipeline):
    psycopg's own transaction handling back (no round trip)."""
    fairy = session.connection().connection
    if fairy.info.pop(_BEGUN, False):
        fairy.driver_connection.autocommit = False


@event.listens_for(Pool, "checkin")
def _restore_on_checkin(dbapi_connection, record) -> None:
    if record is not None and record.info.pop(_BEGUN, False) and dbapi_connection is not None:
        try:
            dbapi_connection.autocommit = False
        except Exception:  # noqa: BLE001 - a connection that cannot be reset is not kept
            record.invalidate()
