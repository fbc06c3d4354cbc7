"""SQL for the database-side guards (triggers), for SQLite and PostgreSQL.

Migrations call these; a migration, once released, must keep producing the same SQL, so
change nothing here that an existing revision uses: add new functions instead.

A refused statement fails with SQLite's RAISE(ABORT) or PostgreSQL SQLSTATE 23000, which
both reach Python as an IntegrityError.
"""

from __future__ import annotations

from alembic import op

GENESIS = "0" * 64  # prev_hash of the first audit entry


def dialect() -> str:
    return op.get_bind().dialect.name


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def in_list(values) -> str:
    return "(" + ", ".join(quote(v) for v in values) + ")"


def pg_raise(message: str, *args: str) -> str:
    """A plpgsql RAISE with SQLSTATE 23000 (integrity constraint violation)."""
    extra = "".join(", " + a for a in args)
    return f"RAISE EXCEPTION {quote(message)}{extra} USING ERRCODE = '23000';"


def sqlite_raise(message: str) -> str:
    return f"SELECT RAISE(ABORT, {quote(message)});"


def create_refuse_function() -> None:
    """PostgreSQL: tanpu_refuse(), a trigger function that refuses the statement."""
    op.execute(
        "CREATE FUNCTION tanpu_refuse() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN\n"
        "  " + pg_raise("% is append-only: % refused", "TG_TABLE_NAME", "TG_OP") + "\n"
        "END $$")


def append_only(table: str) -> None:
    """Refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL) on `table`."""
    if dialect() == "postgresql":
        op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION tanpu_refuse()")
        op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION tanpu_refuse()")
    else:
        for operation in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                       f"BEGIN {sqlite_raise(f'{table} is append-only: {operation} refused')} END")


def drop_append_only(table: str) -> None:
    if dialect() == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    else:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")


def guard(name: str, table: str, timing: str, checks: list[tuple[str, str, str]]) -> None:
    """A row trigger `name` on `table` that refuses the statement when a condition holds.

    timing: "INSERT", "UPDATE" or "DELETE". checks: (sqlite condition, postgres
    condition, message) in the order they are tested; conditions use NEW./OLD.
    """
    if dialect() == "postgresql":
        ret = "OLD" if timing == "DELETE" else "NEW"
        body = "\n".join(f"  IF {pg} THEN {pg_raise(message)} END IF;" for _, pg, message in checks)
        op.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                   f"BEGIN\n{body}\n  RETURN {ret};\nEND $$")
        op.execute(f"CREATE TRIGGER {name} BEFORE {timing} ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION {name}()")
    else:
        for n, (condition, _, message) in enumerate(checks, start=1):
            op.execute(f"CREATE TRIGGER {name}_{n} BEFORE {timing} ON {table} "
                       f"WHEN {condition} BEGIN {sqlite_raise(message)} END")


def drop_guard(name: str, table: str, count: int) -> None:
    if dialect() == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {name}()")
    else:
        for n in range(1, count + 1):
            op.execute(f"DROP TRIGGER IF EXISTS {name}_{n}")


def changed(columns, *, json_columns=()) -> tuple[str, str]:
    """(sqlite, postgres) conditions: one of `columns` differs between OLD and NEW."""
    sqlite = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in columns)
    pg = " OR ".join(
        f"NEW.{c}::text IS DISTINCT FROM OLD.{c}::text" if c in json_columns
        else f"NEW.{c} IS DISTINCT FROM OLD.{c}" for c in columns)
    return f"({sqlite})", f"({pg})"
