"""Migration 0017 (the duplicate keys out of the JSON states into `duplicate_keys`) on
PostgreSQL at a chosen scale: what it costs, and what it leaves (docs/ledger.md, Session 21).

    .venv/bin/python bench/bench_migration_0017.py --accounts 10000 --keys 100 [--events 10]
        [--profile 30] [--keep]

A schema of its own in $TANPU_BENCH_POSTGRES_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/tanpu_bench) is migrated to 0016 and given
ACCOUNTS states of one methodology as the code before 0017 wrote them (a daily cap's
totals, KEYS keys of a `forbid duplicate` rule and, with --events, EVENTS events of a
near-duplicate rule per account; written by COPY, the foreign keys not checked:
`session_replication_role = replica` for the fixture only). Then 0016 -> 0017 runs in one
transaction, as `tanpu db upgrade` runs it, and the bench prints

- the wall time, the CPU of this process (user + sys, `getrusage`) and of the PostgreSQL
  backend that served the migration (/proc/PID/stat: the server is on this machine, or
  the figure is left out),
- a digest of what the migration left (the rows of `duplicate_keys` as a multiset: their
  count and the sum of a 64-bit hash of each row's text; the states: the md5 of their
  texts in order), so that two checkouts can be compared (run this file with the other
  checkout first on PYTHONPATH, from its folder: the migration is imported from there).

The schema is dropped at the end unless --keep. The load average is printed: the figures
are only as quiet as the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import sys
import time
import uuid

import sqlalchemy as sa

METHODOLOGY = "bench.migration"
KEY_PART = 'duplicate:["operator","trip"]'
EVENT_PART = 'nearduplicate:["mode"]|boarded|300000000'
CAP_PART = "cap:reduction|account|day"


def state_text(account: int, keys: int, events: int) -> str:
    """One account's state as the code before 0017 wrote it (engine/state.py to_json with
    keys=True: canonical JSON, sorted keys and sets)."""
    data: dict = {CAP_PART: {"19894": 467000 + account % 1000}}
    if keys:
        data[KEY_PART] = sorted(json.dumps([f"op-{account % 7}", f"trip-{account}-{i}"],
                                           separators=(",", ":"), ensure_ascii=False)
                                for i in range(keys))
    if events:
        data[EVENT_PART] = [[["metro" if i % 3 else "ebus"], 1_718_863_200_000_000 + i * 600_000_000,
                             i, f"ride-{account}-{i}"] for i in range(events)]
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _copy_text(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def fill(raw, accounts: int, keys: int, events: int) -> None:
    """The states, by COPY, in chunks of text."""
    with raw.cursor() as cur:
        cur.execute("SET session_replication_role = replica")  # no methodology row needed
        with cur.copy("COPY rule_states (methodology_id, account, state, updated_at) FROM STDIN") as copy:
            chunk = []
            for a in range(accounts):
                chunk.append(f"{METHODOLOGY}\t{100000 + a}\t{_copy_text(state_text(a, keys, events))}"
                             f"\t2026-12-01 00:00:00+00\n")
                if len(chunk) == 2000:
                    copy.write("".join(chunk))
                    chunk = []
            if chunk:
                copy.write("".join(chunk))
        cur.execute("SET session_replication_role = origin")
    raw.commit()


def backend_cpu(pid: int):
    """The backend's user + sys CPU seconds, or None when it is not on this machine."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None


def digest(connection) -> dict:
    rows, hashed = connection.execute(sa.text(
        "SELECT count(*), coalesce(sum(hashtextextended(k::text, 0)::numeric), 0) FROM duplicate_keys k")).one()
    states = connection.execute(sa.text(
        "SELECT md5(string_agg(methodology_id || '|' || account || '|' || state, E'\\n' "
        "ORDER BY methodology_id, account)) FROM rule_states")).scalar_one()
    index = connection.execute(sa.text(
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'duplicate_keys' AND schemaname = current_schema()"
    )).scalars().all()
    return {"rows": rows, "rows_hash": str(hashed), "states_md5": states, "indexes": index}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=100, help="a duplicate rule's keys per account")
    parser.add_argument("--events", type=int, default=0, help="a near-duplicate rule's events per account")
    parser.add_argument("--profile", type=int, default=0, help="cProfile the migration: the N top functions")
    parser.add_argument("--wall", action="store_true", help="the profile by wall time (waits included), not CPU")
    parser.add_argument("--keep", action="store_true", help="leave the schema")
    parser.add_argument("--url", default=os.environ.get("TANPU_BENCH_POSTGRES_URL",
                                                        "postgresql+psycopg://postgres@127.0.0.1:5432/tanpu_bench"))
    args = parser.parse_args(argv)

    from alembic import command
    from registry import migrate
    parsed = sa.engine.make_url(args.url)
    server = sa.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with server.connect() as c:
        if not c.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": parsed.database}).first():
            c.execute(sa.text(f'CREATE DATABASE "{parsed.database}"'))
    server.dispose()
    schema = f"bench_migration_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(parsed, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f"CREATE SCHEMA {schema}"))
    engine = sa.create_engine(parsed.update_query_dict({"options": f"-csearch_path={schema}"}))
    try:
        migrate.upgrade(engine, "0016")
        t = time.perf_counter()
        raw = engine.raw_connection()
        try:
            fill(raw.driver_connection, args.accounts, args.keys, args.events)
        finally:
            raw.close()
        with engine.begin() as c:
            c.execute(sa.text("ANALYZE rule_states"))
        print(f"fixture: {args.accounts:,} states, {args.accounts * args.keys:,} keys, "
              f"{args.accounts * args.events:,} events, in {time.perf_counter() - t:.1f} s", flush=True)

        load = os.getloadavg()
        started = dt.datetime.now(dt.timezone.utc)
        config = migrate.alembic_config()
        profiler = None
        if args.profile:
            import cProfile
            profiler = cProfile.Profile(time.perf_counter if args.wall else time.process_time)
        with engine.connect() as connection:
            pid = connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            connection.commit()
            server0 = backend_cpu(pid)
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            wall0 = time.perf_counter()
            if profiler:
                profiler.enable()
            with connection.begin():
                config.attributes["connection"] = connection
                command.upgrade(config, "0017")
            if profiler:
                profiler.disable()
            wall = time.perf_counter() - wall0
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            server1 = backend_cpu(pid)
            cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
            found = digest(connection)
            size = connection.execute(sa.text(
                "SELECT pg_table_size('duplicate_keys'), pg_indexes_size('duplicate_keys')")).one()
        moved = args.accounts * (args.keys + args.events)
        print(f"migration 0017: {started:%Y-%m-%d %H:%M} UTC, load {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
              f"-> {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print(f"  {moved:,} keys and events moved in {wall:.1f} s wall ({moved / wall:,.0f} a second), "
              f"this process's CPU {cpu:.1f} s"
              + (f", the PostgreSQL backend's CPU {server1 - server0:.1f} s" if server0 is not None and server1 is not None
                 else ""))
        print(f"  duplicate_keys: the table {size[0] / 2**20:,.0f} MiB, its index {size[1] / 2**20:,.0f} MiB")
        print(f"  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
        print("  digest " + json.dumps(found, sort_keys=True))
        assert found["rows"] == moved, found
        if profiler:
            import pstats
            pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(args.profile)
    finally:
        engine.dispose()
        if not args.keep:
            with admin.connect() as c:
                c.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
