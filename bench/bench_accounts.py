"""Balances of a region with many accounts below it (registry/accounts.py balances: one
statement, the hierarchy's closure joined to credit_entries), on PostgreSQL, beside the
same sum in hand-written SQL through psycopg: over the closure, and by walking parent_id
with a recursive CTE (how balances() summed a subtree before migration 0014).

    .venv/bin/python bench/bench_accounts.py [--accounts 1000000] [--url postgresql+psycopg://...]

Makes a schema of its own (dropped at the end): a region, 1,000 units under it, the
individuals spread over the units, one ledger entry per individual; ANALYZE; then times
balances() (best of 3). Figures only: nothing asserts a timing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from registry import accounts, migrate  # noqa: E402
from registry.db import Database  # noqa: E402


# Hand-written SQL (psycopg, no SQLAlchemy) doing the same sum: over the closure (what
# balances() does, without the own/below split and the reversals), and by walking the
# hierarchy with a recursive CTE (what balances() did before the closure).
REFERENCES = [
    ("plain SQL over the closure",
     "SELECT e.methodology_id, count(*), sum(e.reduction_mg), sum(e.points + e.bonus) "
     "FROM account_ancestors t JOIN credit_entries e ON e.account = t.account "
     "WHERE t.ancestor_id = %(region)s GROUP BY e.methodology_id"),
    ("plain SQL walking parent_id (recursive CTE)",
     "WITH RECURSIVE tree (id) AS (SELECT id FROM accounts WHERE id = %(region)s "
     "UNION ALL SELECT a.id FROM accounts a JOIN tree ON a.parent_id = tree.id) "
     "SELECT e.methodology_id, count(*), sum(e.reduction_mg), sum(e.points + e.bonus) "
     "FROM tree JOIN credit_entries e ON e.account = CAST(tree.id AS VARCHAR) "
     "GROUP BY e.methodology_id"),
]


def load() -> str:
    try:
        return "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "load average unknown"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--units", type=int, default=1000)
    parser.add_argument("--url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--explain", action="store_true", help="print the query plan too")
    args = parser.parse_args()
    schema = f"bench_accounts_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(args.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f"CREATE SCHEMA {schema}"))
    url = sa.engine.make_url(args.url).update_query_dict({"options": f"-csearch_path={schema}"})
    db = Database(url.render_as_string(hide_password=False), durable=False)
    try:
        migrate.upgrade(db)
        started = time.perf_counter()
        with db.engine.begin() as c:
            c.execute(sa.text(
                "INSERT INTO accounts (id, kind, parent_id, name, domains, status, created_at, "
                "updated_at) VALUES (1, 'region', NULL, 'region', '[]', 'active', now(), now())"))
            c.execute(sa.text(
                "INSERT INTO accounts (id, kind, parent_id, name, domains, status, created_at, "
                "updated_at) SELECT 1 + g, 'unit', 1, '', '[]', 'active', now(), now() "
                "FROM generate_series(1, :units) g"), {"units": args.units})
            c.execute(sa.text(
                "INSERT INTO accounts (id, kind, parent_id, name, domains, status, created_at, "
                "updated_at) SELECT 1 + :units + g, 'individual', 2 + (g % :units), '', '[]', "
                "'active', now(), now() FROM generate_series(1, :n) g"),
                {"units": args.units, "n": args.accounts})
            # entries: the ledger's table without its foreign keys' targets (a bench only)
            c.execute(sa.text("ALTER TABLE credit_entries DROP CONSTRAINT fk_credit_entries_version"))
            c.execute(sa.text("ALTER TABLE credit_entries DROP CONSTRAINT fk_credit_entries_batch_id"))
            c.execute(sa.text("ALTER TABLE credit_entries DROP CONSTRAINT fk_credit_entries_integrator_id"))
            c.execute(sa.text(
                "INSERT INTO credit_entries (batch_id, integrator_id, account, methodology_id, version, "
                "content_hash, record_id, activity_time, reduction_mg, points, bonus, status, "
                "reason, credited_at) SELECT 1, 1, CAST(1 + :units + g AS VARCHAR), "
                "CASE WHEN g % 3 = 0 THEN 'm.bike' ELSE 'm.bus' END, '1.0.0', 'h', 'r' || g, "
                "now(), 1000, 1, 0, 'credited', '', now() FROM generate_series(1, :n) g"),
                {"units": args.units, "n": args.accounts})
            # the closure as accounts.create writes it: each unit under the region, each
            # individual under its unit and the region
            c.execute(sa.text(
                "INSERT INTO account_ancestors (ancestor_id, account, account_id, depth) "
                "SELECT parent_id, CAST(id AS VARCHAR), id, 1 FROM accounts WHERE parent_id IS NOT NULL "
                "UNION ALL SELECT 1, CAST(id AS VARCHAR), id, 2 FROM accounts WHERE kind = 'individual'"))
            c.execute(sa.text("ANALYZE"))
        print(f"{args.accounts:,} individuals under {args.units:,} units under one region, "
              f"one entry each: made in {time.perf_counter() - started:.1f} s")
        times = []
        for _ in range(3):
            with db.read() as s:
                t = time.perf_counter()
                result = accounts.balances(s, 1)
                times.append(time.perf_counter() - t)
        assert result.subtree.entries == args.accounts
        print(f"accounts.balances(region): best {min(times) * 1000:.0f} ms "
              f"(runs: {', '.join(f'{x * 1000:.0f}' for x in times)} ms)")
        if args.explain:
            from sqlalchemy.dialects import postgresql
            with db.read() as s:
                statement = accounts.balance_statement(1)
                sql = str(statement.compile(dialect=postgresql.dialect(),
                                            compile_kwargs={"literal_binds": True}))
                for line in s.execute(sa.text("EXPLAIN (ANALYZE, BUFFERS) " + sql)).scalars():
                    print(line)
        import psycopg
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn) as conn:
            for name, sql in REFERENCES:
                runs = []
                for _ in range(3):
                    t = time.perf_counter()
                    rows = conn.execute(sql, {"region": 1}).fetchall()
                    runs.append(time.perf_counter() - t)
                    conn.rollback()
                assert sum(r[1] for r in rows) == args.accounts, rows
                print(f"reference, {name}: best {min(runs) * 1000:.0f} ms "
                      f"(runs: {', '.join(f'{x * 1000:.0f}' for x in runs)} ms)")
        print(load())
    finally:
        db.dispose()
        with admin.connect() as c:
            c.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


if __name__ == "__main__":
    main()
