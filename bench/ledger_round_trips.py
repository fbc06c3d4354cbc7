"""Round trips of a single-record credit on PostgreSQL, counted on the wire: the credit
made as bench_ledger.py makes it (service.evaluate in a read session, then service.credit
in a unit of work, as POST /api/v1/credits did until session 16; on PostgreSQL the API
now reads and credits in one session, one round trip less: docs/ledger.md, Session 16),
this process traced by
`strace` (Linux), and every send on a socket followed by a successful receive on it
counted as one round trip (docs/ledger.md, Sessions 9 and 10). Counted, not timed: the
figure does not move with the machine's load.

    .venv/bin/python bench/ledger_round_trips.py [--credits 20] [--pre-ping]
        [--alternate 400] [--url postgresql+psycopg://...]

It re-runs itself under `strace -f -e trace=sendto,recvfrom,access` and counts between
two marker calls (five credits first fill the caches). `--pre-ping`: with SQLAlchemy's
`pool_pre_ping` (what the pool did before session 10), to count what it costs.
`--alternate N` (no strace): N single-record credits one at a time, in blocks of 20
alternately through a Database without and one with `pool_pre_ping` on the same schema,
in one process: their latency p50/p99 and the process's CPU time a credit, each beside
the other in the same minutes. Without strace or a server it says so and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

START, END = "/tanpu-round-trips-start", "/tanpu-round-trips-end"
CALL = re.compile(r"(?:\d+\s+)?(sendto|recvfrom)\((\d+),.*\)\s*=\s*(-?\d+)")


@contextlib.contextmanager
def bench_schema(url: str, prefix: str, accounts: int, pre_ping: bool = False):
    """(bench_ledger, its Database, the other with `pool_pre_ping`, the integrator, a record
    stream) on a schema of its own with `accounts` warm accounts, dropped afterwards; None
    without a server. `pre_ping`: the first Database pings too."""
    import bench_ledger as b
    made = b.connect(url)
    if made is None:
        yield None
        return
    admin, schema, db = made
    pinging = type(db)(db.url, pool_size=20, max_overflow=4, pool_pre_ping=True)
    if pre_ping:
        db.dispose()
        db = pinging
    try:
        with tempfile.TemporaryDirectory() as folder:
            ours, _ = b.prepare(db, Path(folder))
        b.warm_accounts(db, ours, prefix, accounts)
        yield b, db, pinging, ours, b.Stream(prefix, accounts, seed=1)
    finally:
        pinging.dispose()
        db.dispose()
        with admin.connect() as c:
            c.execute(b.sa.text(f"DROP SCHEMA {schema} CASCADE"))


def credits(url: str, count: int, pre_ping: bool = False) -> None:
    """The traced part: count single-record credits between the two markers."""
    with bench_schema(url, "rt", 200, pre_ping) as made:
        if made is None:
            return
        b, db, _, ours, stream = made
        for _ in range(5):
            b.credit_once(db, ours, stream.take(1))
        os.access(START, os.F_OK)
        for _ in range(count):
            b.credit_once(db, ours, stream.take(1))
        os.access(END, os.F_OK)


def alternate(url: str, total: int, block: int = 20) -> None:
    """Single-record credits one at a time, blocks of `block` alternately without and with
    the pool's pre-ping (two Databases on one schema, one process)."""
    with bench_schema(url, "alt", 1000) as made:
        if made is None:
            return
        b, db, pinging, ours, stream = made
        sides = {"without pre-ping": db, "with pool_pre_ping": pinging}
        times = {name: [] for name in sides}
        cpu = dict.fromkeys(sides, 0.0)
        for database in sides.values():
            for _ in range(5):
                b.credit_once(database, ours, stream.take(1))
        print(b.load())
        for start in range(0, total, block):
            for name, database in sides.items():
                for _ in range(block):
                    records = stream.take(1)
                    c0, t0 = time.process_time(), time.perf_counter()
                    b.credit_once(database, ours, records)
                    times[name].append(time.perf_counter() - t0)
                    cpu[name] += time.process_time() - c0
        for name, values in times.items():
            values.sort()
            print(f"{name}: {len(values)} credits one at a time, p50 "
                  f"{b.percentile(values, 50) * 1000:.1f} ms, p99 {b.percentile(values, 99) * 1000:.1f} ms, "
                  f"CPU {cpu[name] / len(values) * 1000:.2f} ms a credit")
        print(b.load())


def count(trace: str) -> tuple[int, int]:
    """(round trips, sends) between the markers of an strace output."""
    on, state, trips, sends = False, {}, 0, 0
    for line in trace.splitlines():
        if START in line:
            on = True
        elif END in line:
            break
        elif on and (m := CALL.match(line)):
            call, fd, returned = m.group(1), int(m.group(2)), int(m.group(3))
            if call == "sendto":
                sends += 1
                state[fd] = "sent"
            elif returned > 0 and state.get(fd) == "sent":
                trips += 1
                state[fd] = "answered"
    return trips, sends


def main() -> None:
    import bench_ledger as b
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--credits", type=int, default=20)
    parser.add_argument("--url", default=os.environ.get("TANPU_BENCH_POSTGRES_URL", b.DEFAULT_URL))
    parser.add_argument("--pre-ping", action="store_true", help="with SQLAlchemy's pool_pre_ping")
    parser.add_argument("--alternate", type=int, default=0,
                        help="time this many credits, without and with pre-ping alternately")
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.alternate:
        alternate(args.url, args.alternate)
        return
    if args.traced:
        credits(args.url, args.credits, args.pre_ping)
        return
    if shutil.which("strace") is None:
        print("no strace here: round trips not counted")
        return
    with tempfile.NamedTemporaryFile("r", suffix=".strace") as out:
        run = subprocess.run(["strace", "-f", "-qq", "-e", "trace=sendto,recvfrom,access",
                              "-o", out.name, sys.executable, __file__, "--traced",
                              "--credits", str(args.credits), "--url", args.url]
                             + (["--pre-ping"] if args.pre_ping else []),
                             capture_output=True, text=True)
        if run.returncode != 0:
            print(f"the traced run failed ({run.returncode}): {run.stderr.strip()[-500:]}")
            return
        if run.stdout.strip():
            print(run.stdout.strip())
        trips, sends = count(out.read())
    if trips:
        print(f"single-record credit end to end{' (pool_pre_ping)' if args.pre_ping else ''}: {trips / args.credits:.2f} round trips "
              f"({trips} in {args.credits} credits; {sends / args.credits:.2f} sends a credit)")


if __name__ == "__main__":
    main()
