"""Crediting records to the ledger on PostgreSQL, end to end through the real credit path
(webui/api/service.py evaluate + credit with a real session, as POST /api/v1/credits does
it), with a methodology that has a daily cap and a duplicate rule, beside a hand-written
reference that does the same database work in plain SQL with psycopg and the same rules
in Python (issue 13, item 10).

    .venv/bin/python bench/bench_ledger.py [--batches 15] [--client-batches 10]
        [--latency 600] [--accounts 20000] [--only batch|clients|latency] [--http]
        [--profile] [--server N] [--url postgresql+psycopg://...]

Figures printed (nothing asserts a timing):
  - records/s, one client, batches of 1,000 (and the share of it in evaluate and credit);
  - records/s, 16 concurrent clients (threads, each its own session and its own people),
    batches of 100;
  - single-record credit latency p50/p99 one at a time (the service time), and at a paced
    200 requests/s from 8 workers (from each request's scheduled time, so a request that
    starts late because the others are slow counts its wait; the rate achieved is printed);
  - the reference for each, and the ratio;
  - with --http, the one-client case again through the Flask test client;
  - with --profile, cProfile's top functions of the one-client run;
  - with --server N, the ledger's side of the one-client, 16-client and latency runs is
    sent over HTTP (keep-alive connections, one per client) to a real `tanpu serve
    --workers N` started on the bench's schema, as integrators send it; the server's
    CPU a request (its processes' user + system time from /proc) is printed too. The
    reference stays in this process: it is the database work without HTTP.

The records: bike rides a few seconds apart in time order over 20,000 accounts (each
client of the concurrent run has its own 1,250), 2 % repeating an order number of their
account (rejected by the duplicate rule), and the 500 g daily cap reached by the busy
accounts. The accounts exist before the clock starts (an integrator's people are mostly
known): the first credit of a new account also makes the account.

The database ($TANPU_BENCH_POSTGRES_URL, default
postgresql+psycopg://postgres@127.0.0.1:5432/tanpu_bench) is created if missing; each run
works in a schema of its own, migrated by Alembic and dropped at the end. Without a
server the bench says so and exits 0. The load average is printed: the machine may be
shared, so compare figures within one run.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import gc
import hashlib
import json
import os
import pstats
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pacing  # noqa: E402  (bench/pacing.py, beside this script)

import sqlalchemy as sa  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/tanpu_bench"
METHODOLOGY = "bench.bike"
TZ = dt.timezone(dt.timedelta(hours=8))  # Asia/Shanghai
EF_MG_PER_KM = {"bike": 33_880, "ebike": 35_010}
CAP_MG = 500_000  # 500 g per account per day
DUPLICATE_SHARE = 0.02  # records that repeat an order number of their account

SOURCE = """\
methodology bench.bike "共享单车 bench bike rides" version 1.0.0 {
  title en "Shared bike rides (ledger bench)"
  covers bike_ride
  effective from 2022-01-01
  timezone Asia/Shanghai
}

input order: text label "订单号 / order number"
input vehicle: choice { bike "共享单车 bike", ebike "共享电单车 e-bike" } label "车型 / vehicle"
input distance: quantity [km] between 0 km and 50 km label "骑行距离 / distance"

parameter ef [g/km] by vehicle source "bench" [SRC] { bike: 33.88  ebike: 35.01 }

reduction = ef[vehicle] * distance
points = floor(reduction / 1 g)

forbid duplicate order per account else DUPLICATE_ORDER "one credit per order"
cap reduction at 500 g per account per day in Asia/Shanghai

example "a ride" { order: "A1", vehicle: bike, distance: 2 km } => reduction 67.76 g, points 67
"""


def load() -> str:
    try:
        return "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "load average unknown"


# ---------------------------------------------------------------- records
class Stream:
    """Rides in time order (a minute apart from 2024-03-01 on), over a pool of accounts
    named `prefix`-n; some repeat an earlier order number of their account."""

    def __init__(self, prefix: str, accounts: int, seed: int):
        self.prefix, self.accounts = prefix, accounts
        self.rng = random.Random(seed)
        self.n = 0
        self.start = dt.datetime(2024, 3, 1, 7, 0, tzinfo=TZ)
        self.orders: dict[int, list[str]] = {}
        self.lock = threading.Lock()  # the paced run's workers share one stream

    def take(self, count: int) -> list[dict]:
        with self.lock:
            return self._take(count)

    def _take(self, count: int) -> list[dict]:
        out = []
        for _ in range(count):
            n = self.n
            self.n += 1
            account = self.rng.randrange(self.accounts)
            seen = self.orders.setdefault(account, [])
            if seen and self.rng.random() < DUPLICATE_SHARE:
                order = self.rng.choice(seen)
            else:
                order = f"o{n}"
                seen.append(order)
            when = self.start + dt.timedelta(seconds=6 * n)
            out.append({"id": f"{self.prefix}-r{n}", "account": f"{self.prefix}-{account}",
                        "order": order, "vehicle": "bike" if n % 3 else "ebike",
                        "distance": f"{1 + n % 7}.{n % 10} km",
                        "time": when.isoformat(timespec="seconds")})
        return out


# ---------------------------------------------------------------- the database
def connect(url: str):
    """(admin engine, schema, Database) for a fresh migrated schema, or None without a
    server."""
    from registry.db import Database
    parsed = sa.engine.make_url(url)
    try:
        server = sa.create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with server.connect() as c:
            if not c.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"),
                             {"d": parsed.database}).first():
                c.execute(sa.text(f'CREATE DATABASE "{parsed.database}"'))
        server.dispose()
    except sa.exc.OperationalError as error:
        print(f"no PostgreSQL at {parsed.render_as_string(hide_password=True)} "
              f"({str(error.orig).splitlines()[0]}): the ledger bench is skipped "
              f"(set TANPU_BENCH_POSTGRES_URL)")
        return None
    schema = f"bench_ledger_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(parsed, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f"CREATE SCHEMA {schema}"))
    scoped = parsed.update_query_dict({"options": f"-csearch_path={schema}"})
    db = Database(scoped.render_as_string(hide_password=False), pool_size=20, max_overflow=4)
    return admin, schema, db


def prepare(db, folder: Path) -> tuple[int, int]:
    """Migrates, publishes the bench methodology through the workflow (tanpu seed), and
    makes two integrators: (the ledger's, the reference's)."""
    from registry import migrate, users
    from tanpu.seed import seed
    migrate.upgrade(db)
    (folder / "bench-bike.tanpu").write_text(SOURCE, encoding="utf-8")
    report = seed(db, folder=folder)
    assert f"{METHODOLOGY} 1.0.0" in report.published, report
    with db.unit_of_work() as s:
        ours = users.create_user(s, None, email="bench@tanpu.test", name="bench",
                                 roles=["integrator"]).id
        theirs = users.create_user(s, None, email="reference@tanpu.test", name="reference",
                                   roles=["integrator"]).id
    return ours, theirs


# ---------------------------------------------------------------- the real credit path
def credit_once(db, integrator: int, records: list[dict], key: str | None = None) -> dict:
    """What POST /api/v1/credits does with the records, without HTTP."""
    from webui.api import service
    with db.read() as s:
        result = service.evaluate(s, METHODOLOGY, records, require_ids=True)
    with db.unit_of_work() as s:
        answer = service.credit(s, integrator, result, idempotency_key=key)
    assert not answer["errors"], answer["errors"][:3]
    return answer


def credit_timed(db, integrator: int, records: list[dict], split: list) -> dict:
    from webui.api import service
    t0 = time.perf_counter()
    with db.read() as s:
        result = service.evaluate(s, METHODOLOGY, records, require_ids=True)
    t1 = time.perf_counter()
    with db.unit_of_work() as s:
        answer = service.credit(s, integrator, result)
    split.append((t1 - t0, time.perf_counter() - t1))
    return answer


def evaluated(db, records: list[dict]):
    """The records evaluated per record as the API does (webui/api/service.py), outside
    the clock of the registry-level run: [(engine, results, sent records, reason)]."""
    from webui.api import service
    with db.read() as s:
        result = service.evaluate(s, METHODOLOGY, records, require_ids=True)
    out = []
    for group in result.groups:
        results = [r for r in group.results if r.status != "invalid"]
        sent = {str(result.records[i].get("id")): result.records[i] for i in group.indices}
        out.append((group.engine, results, sent, group.reason))
    return out


def ledger_only(db, integrator: int, groups) -> int:
    """The registry's part of a credit alone (registry/ledger.py credit), as
    service.credit calls it: what the plain-SQL reference does."""
    from registry import ledger
    new = 0
    with db.unit_of_work() as s:
        for engine, results, sent, reason in groups:
            new += len(ledger.credit(s, integrator, engine.ref, results, reason=reason,
                                     engine=engine, records=sent).new)
    return new


class StatementClock:
    """The time of each SQL statement the ledger sends (its text's first words), from
    SQLAlchemy's cursor events, and of each pipeline of statements sent in one round trip
    (registry/bulk.py pipelined, its observers): where the database's share of a credit
    goes, and how many round trips and statements a request makes."""

    def __init__(self, engine):
        self.engine, self.times, self.started = engine, {}, {}
        self.round_trips = self.statements = 0

    def __enter__(self):
        from registry import bulk
        sa.event.listen(self.engine, "before_cursor_execute", self._before)
        sa.event.listen(self.engine, "after_cursor_execute", self._after)
        bulk.round_trip_observers.append(self._pipeline)
        return self

    def __exit__(self, *exc):
        from registry import bulk
        sa.event.remove(self.engine, "before_cursor_execute", self._before)
        sa.event.remove(self.engine, "after_cursor_execute", self._after)
        bulk.round_trip_observers.remove(self._pipeline)

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        self.started[id(conn)] = time.perf_counter()

    def _after(self, conn, cursor, statement, parameters, context, executemany):
        self._add(" ".join(statement.split())[:90], time.perf_counter() - self.started.pop(id(conn)), 1)

    def _pipeline(self, statements, seconds):
        self._add("pipeline: " + " | ".join(" ".join(sql.split())[:40] for sql in statements),
                  seconds, len(statements))

    def _add(self, key, seconds, statements):
        n, total = self.times.get(key, (0, 0.0))
        self.times[key] = (n + 1, total + seconds)
        self.round_trips += 1
        self.statements += statements

    def report(self, wall: float, requests: int = 0) -> str:
        lines = [f"  {total * 1000:8.1f} ms {n:5d}x  {key}" for key, (n, total) in
                 sorted(self.times.items(), key=lambda kv: -kv[1][1])[:15]]
        spent = sum(t for _, t in self.times.values())
        each = (f"; a request: {self.round_trips / requests:.1f} round trips, "
                f"{self.statements / requests:.1f} statements (BEGIN and COMMIT not counted)"
                if requests else "")
        return (f"SQL statements: {spent:.2f} s of {wall:.2f} s ({spent / wall:.0%}); "
                f"the rest is Python{each}\n" + "\n".join(lines))


class GcClock:
    """The time Python's garbage collector took during a run, per generation: a credit
    makes many objects, and a collection of the oldest generation walks every object
    the process holds."""

    def __init__(self):
        self.spent, self.count, self.started = [0.0, 0.0, 0.0], [0, 0, 0], 0.0

    def _callback(self, phase, info):
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.spent[info["generation"]] += time.perf_counter() - self.started
            self.count[info["generation"]] += 1

    def __enter__(self):
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc):
        gc.callbacks.remove(self._callback)

    def report(self, wall: float) -> str:
        return (f"garbage collection: {sum(self.spent):.2f} s of {wall:.2f} s "
                f"(generations 0/1/2: {'/'.join(map(str, self.count))} collections, "
                f"{'/'.join(f'{t:.2f}' for t in self.spent)} s)")


def warm_accounts(db, integrator: int, prefix: str, accounts: int) -> None:
    """The accounts exist before timing (an integrator's people are mostly known)."""
    from registry import accounts as registry_accounts
    with db.unit_of_work() as s:
        registry_accounts.resolve_many(s, integrator, [f"{prefix}-{a}" for a in range(accounts)])


# ---------------------------------------------------------------- the reference
class Reference:
    """The same database work in plain SQL on a psycopg connection, the same per-record
    formula and rules in Python: the identities read, a batch row, the state rows upserted
    and locked (FOR UPDATE, in account order), the entries COPYed, the states updated,
    one audit entry on the chain. The states are updated by one UPDATE of arrays (until
    Session 13 by an executemany of one UPDATE per account: a weaker yardstick)."""

    def __init__(self, db, integrator: int, content_hash: str):
        import psycopg
        url = sa.engine.make_url(db.url)
        self.dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.psycopg = psycopg
        self.integrator = integrator
        self.content_hash = content_hash

    def connection(self):
        conn = self.psycopg.connect(self.dsn)
        return conn

    def credit(self, conn, records: list[dict]) -> int:
        from registry import audit
        now = dt.datetime.now(dt.timezone.utc)
        rows = []
        for r in records:  # the per-record formula
            km = float(r["distance"].split()[0])
            mg = round(EF_MG_PER_KM[r["vehicle"]] * km)
            when = dt.datetime.fromisoformat(r["time"])
            rows.append((r["id"], r["account"], r["order"], when, mg))
        rows.sort(key=lambda row: (row[1], row[3], row[0]))
        digest = hashlib.sha256(json.dumps([row[:3] + (row[4],) for row in rows]).encode()).hexdigest()
        try:
            with conn.cursor() as cur:  # committed at the end, with the audit entry
                cur.execute("SELECT external_id, account_id FROM account_identities "
                            "WHERE integrator_id = %s AND external_id = ANY(%s)",
                            (self.integrator, sorted({row[1] for row in rows})))
                platform = {e: str(a) for e, a in cur.fetchall()}
                cur.execute("INSERT INTO credit_batches (idempotency_key, request_digest, actor_id, "
                            "methodology_id, version, content_hash, created_at) VALUES "
                            "(%s, %s, %s, %s, '1.0.0', %s, %s) ON CONFLICT DO NOTHING RETURNING id",
                            (f"digest:{digest}", digest, self.integrator, METHODOLOGY,
                             self.content_hash, now))
                batch_id = cur.fetchone()[0]
                accounts = sorted({platform[row[1]] for row in rows})
                cur.execute("INSERT INTO rule_states (methodology_id, account, state, updated_at) "
                            "SELECT %s, a, '', %s FROM unnest(%s::text[]) a ON CONFLICT DO NOTHING",
                            (METHODOLOGY, now, accounts))
                cur.execute("SELECT account, state FROM rule_states WHERE methodology_id = %s "
                            "AND account = ANY(%s) ORDER BY account FOR UPDATE", (METHODOLOGY, accounts))
                states = {}
                for account, text in cur.fetchall():
                    data = json.loads(text) if text else {}
                    states[account] = (set(data.get("keys", ())), dict(data.get("caps", {})))
                cur.execute("SELECT e.record_id FROM unnest(%s::text[]) AS u(r) CROSS JOIN LATERAL "
                            "(SELECT record_id FROM credit_entries WHERE integrator_id = %s AND "
                            "methodology_id = %s AND record_id = u.r LIMIT 1) AS e",
                            ([row[0] for row in rows], self.integrator, METHODOLOGY))
                present = {r for (r,) in cur.fetchall()}
                entries = []
                for record_id, account, order, when, mg in rows:  # the rules
                    if record_id in present:
                        continue
                    keys, caps = states[platform[account]]
                    if order in keys:
                        continue
                    keys.add(order)
                    day = when.astimezone(TZ).date().isoformat()
                    used = caps.get(day, 0)
                    take = max(0, min(mg, CAP_MG - used))
                    caps[day] = used + take
                    entries.append((batch_id, self.integrator, platform[account], METHODOLOGY,
                                    "1.0.0", self.content_hash, record_id, when, take, take // 1000,
                                    0, "credited" if take == mg else "capped", "in force", now,
                                    "" if take == mg else "CAP_REACHED", "",
                                    json.dumps({"id": record_id, "order": order})))
                with cur.copy("COPY credit_entries (batch_id, integrator_id, account, methodology_id, "
                              "version, content_hash, record_id, activity_time, reduction_mg, points, "
                              "bonus, status, reason, credited_at, code, message, record) "
                              "FROM STDIN") as copy:
                    for entry in entries:
                        copy.write_row(entry)
                # one UPDATE of arrays (an executemany of one UPDATE per account, pipelined by
                # psycopg, was 1,000 statements for the server; this is the leaner yardstick)
                cur.execute("UPDATE rule_states AS s SET state = v.state, updated_at = %s "
                            "FROM unnest(%s::text[], %s::text[]) AS v(account, state) "
                            "WHERE s.methodology_id = %s AND s.account = v.account",
                            (now, list(states), [json.dumps({"keys": sorted(keys), "caps": caps})
                                                 for keys, caps in states.values()], METHODOLOGY))
                # the chain continued as the ledger does since session 12 (registry/audit.py
                # _append_and_commit): the lock, the entry (its hash computed by the server
                # from the canonical head made here) and the COMMIT in one round trip, so the
                # chain's lock is never held across a round trip to this process (before,
                # the reference read the last entry, hashed in Python and inserted: the lock
                # held over three round trips; this makes the reference stronger)
                details = {"new": len(entries), "request_digest": digest,
                           "reduction_mg": sum(e[8] for e in entries)}
                at = dt.datetime.now(dt.timezone.utc)
                head = audit.canonical({"action": "ledger.credit", "actor_id": self.integrator,
                                        "at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "details": details,
                                        "object_id": str(batch_id), "object_type": "credit_batch"})
                head = head[:-1] + ',"prev_hash":"'
                with conn.pipeline():
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (audit._PG_LOCK_KEY,))
                    cur.execute("INSERT INTO audit_log (seq, at, actor_id, action, object_type, object_id, "
                                "details, prev_hash, hash) SELECT coalesce(l.seq, 0) + 1, %(at)s, %(actor)s, "
                                "'ledger.credit', 'credit_batch', %(object)s, %(details)s::json, "
                                "coalesce(l.hash, %(genesis)s), encode(sha256(convert_to(%(head)s || "
                                "coalesce(l.hash, %(genesis)s) || '\",\"seq\":' || (coalesce(l.seq, 0) + 1) "
                                "|| '}', 'UTF8')), 'hex') FROM (SELECT 1) AS one LEFT JOIN LATERAL "
                                "(SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1) AS l ON true",
                                {"at": at, "actor": self.integrator, "object": str(batch_id),
                                 "details": json.dumps(details), "genesis": audit.GENESIS, "head": head})
                    conn.commit()
        except BaseException:
            conn.rollback()
            raise
        return len(entries)


# ---------------------------------------------------------------- a real server
class Server:
    """`tanpu serve --workers N --no-seed --no-worker` on a free port, on the bench's
    schema (the methodology is already published), with a token of the bench's
    integrator; `post(conn, records)` credits over HTTP on a keep-alive connection."""

    def __init__(self, db, integrator: int, workers: int, folder: Path):
        import socket
        import subprocess
        import urllib.request
        from registry import tokens, users
        from tanpu.seed import SYSTEM_EMAIL
        with db.unit_of_work() as s:
            self.token = tokens.create(s, users.by_email(s, SYSTEM_EMAIL), integrator, "bench")[1]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        env = {**os.environ, "SECRET_KEY": "bench", "TANPU_API_RATE_LIMIT_TOKEN": "10000000 per minute",
               "TANPU_API_RATE_LIMIT_ADDRESS": "10000000 per minute"}
        env.pop("DATABASE_URL", None)
        self.log = folder / "serve.log"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tanpu.cli", "serve", "--database-url", db.url, "--port",
                 str(self.port), "--workers", str(workers), "--no-seed", "--no-worker"],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("tanpu serve did not start: " + self.log.read_text()[-2000:])
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
        self.workers = workers

    def connection(self):
        import http.client
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)

    def post(self, conn, records: list[dict]) -> None:
        body = json.dumps({"methodology": METHODOLOGY, "records": records})
        conn.request("POST", "/api/v1/credits", body=body,
                     headers={"Authorization": f"Bearer {self.token}",
                              "Content-Type": "application/json"})
        response = conn.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {answer[:300]!r}")

    def run(self, stream: "Stream"):
        conn = self.connection()
        return lambda n: self.post(conn, stream.take(n))

    def cpu(self) -> float:
        """Seconds of CPU (user + system) of the server's processes so far."""
        return sum(self.cpu_each().values())

    def cpu_each(self) -> dict[int, float]:
        """Seconds of CPU of each of the server's processes (the parent and its workers):
        how evenly the kernel spread the connections shows in the workers' shares."""
        pids = [self.process.pid]
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            pids += [int(p) for p in (task / "children").read_text().split()]
        out = {}
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
        return out

    def shares(self, before: dict[int, float]) -> str:
        """The workers' shares of the CPU used since `before` (cpu_each())."""
        now = self.cpu_each()
        used = {pid: now[pid] - before.get(pid, 0.0) for pid in now if pid != self.process.pid}
        total = sum(used.values()) or 1.0
        return "/".join(f"{used[pid] / total:.0%}" for pid in sorted(used))

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except Exception:  # noqa: BLE001
            self.process.kill()


# ---------------------------------------------------------------- the measurements
def one_client(run, batches: int, size: int) -> float:
    t = time.perf_counter()
    for _ in range(batches):
        run(size)
    return batches * size / (time.perf_counter() - t)


def many_clients(make_run, clients: int, batches: int, size: int) -> float:
    runs = [make_run(c) for c in range(clients)]
    barrier = threading.Barrier(clients + 1)
    errors = []

    def work(run):
        try:
            barrier.wait()
            for _ in range(batches):
                run(size)
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=work, args=(run,)) for run in runs]
    for t in threads:
        t.start()
    barrier.wait()
    t = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - t
    if errors:
        raise errors[0]
    return clients * batches * size / elapsed


def paced(make_run, count: int, rate: float, workers: int = 8) -> list[float]:
    """Latencies (s) of `count` single-record credits scheduled at `rate` per second."""
    runs = [make_run(w) for w in range(workers)]
    return pacing.paced([lambda i, run=run: run(1) for run in runs], count, rate)[0]


def sequential(run, count: int) -> list[float]:
    """Latencies (s) of `count` single-record credits sent one after the other: the
    service time, without queueing."""
    latencies = []
    for _ in range(count):
        t = time.perf_counter()
        run(1)
        latencies.append(time.perf_counter() - t)
    return sorted(latencies)


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default=os.environ.get("TANPU_BENCH_POSTGRES_URL", DEFAULT_URL))
    parser.add_argument("--accounts", type=int, default=20_000, help="accounts per stream")
    parser.add_argument("--batches", type=int, default=15, help="batches of 1,000, one client")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--client-batches", type=int, default=10,
                        help="batches of 100 each concurrent client sends")
    parser.add_argument("--latency", type=int, default=600, help="single-record credits, paced")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--http", action="store_true", help="the one-client case through Flask too")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the one-client ledger run (top functions printed)")
    parser.add_argument("--only", choices=["registry", "batch", "clients", "latency"], default=None)
    parser.add_argument("--no-freeze", action="store_true",
                        help="no gc.freeze() once set up (tanpu serve and tanpu worker freeze at start)")
    parser.add_argument("--server", type=int, default=None, metavar="N",
                        help="send the ledger's requests over HTTP to `tanpu serve --workers N`")
    parser.add_argument("--statements", action="store_true",
                        help="the time of each SQL statement of the registry-level run")
    args = parser.parse_args()

    made = connect(args.url)
    if made is None:
        return
    admin, schema, db = made
    server, server_folder = None, tempfile.mkdtemp(prefix="bench-ledger-serve-")
    print(f"PostgreSQL {sa.engine.make_url(args.url).render_as_string(hide_password=True)}, "
          f"schema {schema}; {load()}")
    try:
        with tempfile.TemporaryDirectory() as folder:
            ours, theirs = prepare(db, Path(folder))
        from webui.api import service
        with db.read() as s:
            version = service._methodology(s, METHODOLOGY)[1][-1]
            content_hash = version.content_hash
        reference = Reference(db, theirs, content_hash)
        if args.server:
            server = Server(db, ours, args.server, Path(server_folder))
            print(f"tanpu serve --workers {args.server} on port {server.port}; {load()}")
        streams: dict[str, Stream] = {}

        def stream(prefix: str, accounts: int = args.accounts) -> Stream:
            if prefix not in streams:
                streams[prefix] = Stream(prefix, accounts, seed=len(streams))
                integrator = theirs if prefix.startswith("ref") else ours
                warm_accounts(db, integrator, prefix, accounts)
            return streams[prefix]

        def ledger_run(prefix: str, split=None, accounts: int = args.accounts):
            s = stream(prefix, accounts)
            if server is not None:
                return server.run(s)
            if split is None:
                return lambda n: credit_once(db, ours, s.take(n))
            return lambda n: credit_timed(db, ours, s.take(n), split)

        def reference_run(prefix: str, accounts: int = args.accounts):
            s = stream(prefix, accounts)
            conn = reference.connection()
            return lambda n: reference.credit(conn, s.take(n))

        # a first request compiles the methodology and fills the caches (of each of the
        # server's processes: several connections at once reach all of them)
        ledger_run("warm", accounts=1000)(100)
        if server is not None:
            many_clients(lambda c: ledger_run(f"warm{c}", accounts=100), 4 * server.workers, 3, 20)
        reference_run("refwarm", accounts=1000)(100)
        if not args.no_freeze:
            # as tanpu serve does once started: what the process holds now is never walked
            # by the collector again (a collection of the oldest generation took 0.2-0.6 s
            # of a 1,000-record credit's run here without it)
            gc.freeze()
        per_client = max(100, args.accounts // args.clients)  # each client its own people
        size = 1000
        if args.only in (None, "batch", "registry") and server is None:
            # the registry alone: records evaluated before the clock, ledger.credit timed
            s = stream("reg")
            prepared = [evaluated(db, s.take(size)) for _ in range(args.batches)]
            if not args.no_freeze:
                gc.freeze()  # the prepared records too: a server does not hold them
            clock = StatementClock(db.engine) if args.statements else None
            profile = cProfile.Profile() if args.profile and args.only == "registry" else None
            if profile:
                profile.enable()
            started, cpu = time.perf_counter(), time.process_time()
            with GcClock() as collector:
                if clock:
                    with clock:
                        for groups in prepared:
                            ledger_only(db, ours, groups)
                else:
                    for groups in prepared:
                        ledger_only(db, ours, groups)
            wall = time.perf_counter() - started
            cpu = time.process_time() - cpu  # the process's own CPU: the Python share, less noisy
            if profile:
                profile.disable()
            reg_rate = args.batches * size / wall
            ref_run = reference_run("refreg")  # its accounts made before the clock starts
            ref_cpu = time.process_time()
            ref_rate = one_client(ref_run, args.batches, size)
            ref_cpu = time.process_time() - ref_cpu
            print(f"registry level (ledger.credit alone, evaluated before), one client, batches "
                  f"of {size:,}: {reg_rate:,.0f} records/s (a request: {wall / args.batches * 1000:.0f} ms, "
                  f"{cpu / args.batches * 1000:.0f} ms of it the process's CPU); "
                  f"reference {ref_rate:,.0f} records/s ({ref_cpu / args.batches * 1000:.0f} ms of CPU "
                  f"a request); ratio {ref_rate / reg_rate:.2f}x; {load()}")
            print(collector.report(wall))
            if clock:
                print(clock.report(wall, args.batches))
            if profile:
                stats = pstats.Stats(profile)
                stats.sort_stats("cumulative").print_stats(45)
                stats.sort_stats("tottime").print_stats(30)
        if args.only in (None, "batch"):
            split: list = []
            run = ledger_run("one", split)  # its accounts made before the clock starts
            profile = cProfile.Profile() if args.profile else None
            if profile:
                profile.enable()
            cpu = server.cpu() if server else time.process_time()
            rate = one_client(run, args.batches, size)
            # the process's own CPU (or the server's): the Python share, less noisy
            cpu = (server.cpu() if server else time.process_time()) - cpu
            if profile:
                profile.disable()
            ref_run = reference_run("refone")
            ref_cpu = time.process_time()
            ref_rate = one_client(ref_run, args.batches, size)
            ref_cpu = time.process_time() - ref_cpu
            if server is None:
                evaluate_s = sum(e for e, _ in split)
                credit_s = sum(c for _, c in split)
                p50 = sorted(e + c for e, c in split)[len(split) // 2]
                detail = (f"p50 {p50 * 1000:.0f} ms, {cpu / args.batches * 1000:.0f} ms of the "
                          f"process's CPU; evaluate {evaluate_s / (evaluate_s + credit_s):.0%}, "
                          f"credit {credit_s / (evaluate_s + credit_s):.0%}")
            else:
                detail = (f"over HTTP to {server.workers} server process(es), "
                          f"{cpu / args.batches * 1000:.0f} ms of the server's CPU")
            print(f"one client, batches of {size:,} ({args.batches * size:,} records): "
                  f"{rate:,.0f} records/s (a request: {detail}); "
                  f"reference {ref_rate:,.0f} records/s ({ref_cpu / args.batches * 1000:.0f} ms of "
                  f"CPU a request); ratio {ref_rate / rate:.2f}x; {load()}")
            if profile:
                stats = pstats.Stats(profile)
                stats.sort_stats("cumulative").print_stats(40)
                stats.sort_stats("tottime").print_stats(25)
            if args.http and server is None:
                http_rate = http_one_client(db, ours, stream("http"), args.batches, size)
                print(f"one client through Flask (test client), batches of {size:,}: "
                      f"{http_rate:,.0f} records/s; {load()}")
        if args.only in (None, "clients"):
            cpu = server.cpu() if server else 0.0
            many = many_clients(lambda c: ledger_run(f"c{c}", accounts=per_client), args.clients,
                                args.client_batches, 100)
            cpu = (server.cpu() - cpu) / (args.clients * args.client_batches) if server else 0.0
            ref_many = many_clients(lambda c: reference_run(f"refc{c}", accounts=per_client),
                                    args.clients, args.client_batches, 100)
            print(f"{args.clients} clients, batches of 100 ({args.clients * args.client_batches * 100:,} "
                  f"records): {many:,.0f} records/s"
                  f"{f' ({cpu * 1000:.0f} ms of the server CPU a request)' if server else ''}; "
                  f"reference {ref_many:,.0f} records/s; "
                  f"ratio {ref_many / many:.2f}x; {load()}")
        if args.only in (None, "latency"):
            one = ledger_run("lat")
            ref_one = reference_run("reflat")
            if args.statements and server is None:  # the statements of one single-record credit, end to end
                one(1)
                with StatementClock(db.engine) as clock:
                    started = time.perf_counter()
                    for _ in range(20):
                        one(1)
                    wall = time.perf_counter() - started
                print("single-record credits (20, end to end: evaluate's read transaction and "
                      "the credit's): " + clock.report(wall, 20))
            cpu = server.cpu() if server else 0.0
            alone = sequential(one, args.latency // 4)
            cpu = (server.cpu() - cpu) / (args.latency // 4) if server else 0.0
            ref_alone = sequential(ref_one, args.latency // 4)
            print(f"single-record credits one at a time ({args.latency // 4:,}): "
                  f"p50 {percentile(alone, 50) * 1000:.1f} ms, p99 {percentile(alone, 99) * 1000:.1f} ms"
                  f"{f' ({cpu * 1000:.1f} ms of the server CPU a request)' if server else ''}; "
                  f"reference p50 {percentile(ref_alone, 50) * 1000:.1f} ms, "
                  f"p99 {percentile(ref_alone, 99) * 1000:.1f} ms; {load()}")
            started, cpu = time.perf_counter(), server.cpu() if server else 0.0
            each = server.cpu_each() if server else {}
            lat = paced(lambda w: ledger_run("lat"), args.latency, args.rate)
            achieved = args.latency / (time.perf_counter() - started)
            cpu = (server.cpu() - cpu) / args.latency if server else 0.0
            split_note = f", split {server.shares(each)} over its workers" if server and server.workers > 1 else ""
            started = time.perf_counter()
            ref_lat = paced(lambda w: reference_run("reflat"), args.latency, args.rate)
            ref_achieved = args.latency / (time.perf_counter() - started)
            where = f"over HTTP to {server.workers} server process(es)" if server else "in this process"
            print(f"single-record credits paced at {args.rate:.0f}/s ({args.latency:,}, 8 workers, {where}): "
                  f"p50 {percentile(lat, 50) * 1000:.1f} ms, p99 {percentile(lat, 99) * 1000:.1f} ms "
                  f"({achieved:.0f}/s done"
                  f"{f'; {cpu * 1000:.1f} ms of the server CPU a request{split_note}' if server else ''}); reference p50 {percentile(ref_lat, 50) * 1000:.1f} ms, "
                  f"p99 {percentile(ref_lat, 99) * 1000:.1f} ms ({ref_achieved:.0f}/s done); {load()}")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(server_folder, ignore_errors=True)
        db.dispose()
        with admin.connect() as c:
            c.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def http_one_client(db, integrator: int, stream: Stream, batches: int, size: int) -> float:
    from registry import tokens, users
    from tanpu.seed import SYSTEM_EMAIL
    from webui import create_app
    with db.unit_of_work() as s:
        token = tokens.create(s, users.by_email(s, SYSTEM_EMAIL), integrator, "bench")[1]
    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False, "SECRET_KEY": "bench",
                      "DATABASE_URL": db.url}, database=db)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}

    def run(n):
        response = client.post("/api/v1/credits", headers=headers,
                               json={"methodology": METHODOLOGY, "records": stream.take(n)})
        assert response.status_code == 200, response.get_data(as_text=True)[:300]

    run(10)
    return one_client(run, batches, size)


if __name__ == "__main__":
    main()
