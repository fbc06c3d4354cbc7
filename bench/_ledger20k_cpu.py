"""The server's CPU for one single-record `POST /api/v1/credits` on PostgreSQL, measured in
a way the machine's load does not move much: the process's CPU time a credit
(`time.process_time`: a wait for the database or for a core costs nothing there) and the
Python function calls a credit (cProfile's count: the same on an idle and a busy machine),
and the pipelines (round trips: every statement of the hot path is sent in one, registry/bulk.py)
and statements a credit (bulk.round_trip_observers, counted in the same block), with the credits
sent one at a time through Flask's test client to the app that `tanpu
serve` runs (`create_app`, `gc.freeze()`, its INFO log; no waitress, which costs about
0.3-0.6 ms a request on its own: docs/ledger.md, Session 16). Issue 13's paced p99 over
HTTP follows this CPU (docs/ledger.md, Sessions 15-17).

    .venv/bin/python bench/credit_cpu.py [--credits 200] [--rounds 5] [--records 1]
        [--reference PATH] [--profile 40] [--url postgresql+psycopg://...]

`--records N`: N records a credit (1,000: issue 13's batch case, with `--accounts 20000`
as bench_ledger.py's stream; `--credits 10`), each figure then a request's.

`--reference PATH`: a second checkout (e.g. `git archive main | tar -x -C /tmp/ref`) whose
code is measured alternately with this one's, A B A B, on the same schema and database,
each side in a process of its own kept for the whole run (each imports its own
registry/webui/tanpu), `--rounds` blocks of `--credits` each; the CPU a credit of each
block is printed with the load average, then the medians. Without it, this checkout's
rounds alone. `--profile N`: after the rounds, cProfile's top N functions (by own time
and by cumulative time) of one more block, for each side. The calls a credit are counted
in a block of their own under cProfile (not in the timed blocks).

The schema (migrated by this checkout's Alembic, the bench methodology of
bench_ledger.py published, 1,000 accounts made, a token for its integrator) is made in a
fresh schema of $TANPU_BENCH_POSTGRES_URL's database and dropped at the end. Without a
server the bench says so and exits 0. Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- one side (a child process)
def side(root: str, url: str, token: str, prefix: str, accounts: int, records: int = 1) -> None:
    """Serves the parent's commands on stdin, one a line: `run N` (N credits timed: the
    process's CPU and wall time), `count N` (N credits under cProfile: the calls),
    `profile N TOP FILE` (N credits under cProfile, its top functions written to FILE)."""
    sys.path.insert(0, root)
    sys.path.insert(0, str(Path(root) / "bench"))
    import cProfile
    import gc
    import logging
    import pstats
    import time

    logging.basicConfig(level=logging.INFO, stream=open(os.devnull, "w"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import bench_ledger as b
    from registry.db import Database
    from webui import create_app

    db = Database(url, pool_size=4, max_overflow=2)
    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "bench",
                      "API_RATE_LIMIT_TOKEN": "10000000 per minute",
                      "API_RATE_LIMIT_ADDRESS": "10000000 per minute"}, database=db)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    stream = b.Stream(prefix, accounts, seed=sum(map(ord, prefix)))

    def credit() -> None:
        body = json.dumps({"methodology": b.METHODOLOGY, "records": stream.take(records)})
        response = client.post("/api/v1/credits", headers=headers, data=body)
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {response.get_data()[:300]!r}")

    for _ in range(20):  # the methodology compiled, the caches filled
        credit()
    gc.freeze()  # as tanpu serve does once started
    print(json.dumps({"ready": root}), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        n = int(words[1])
        if words[0] == "run":
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(n):
                credit()
            out = {"cpu": (time.process_time() - cpu) / n, "wall": (time.perf_counter() - wall) / n}
        else:
            from registry import bulk
            sent = []  # (statements) of each pipeline, i.e. each round trip on the hot path
            bulk.round_trip_observers.append(lambda texts, _seconds: sent.append(len(texts)))
            profile = cProfile.Profile(time.process_time)  # CPU, not the waits
            profile.enable()
            for _ in range(n):
                credit()
            profile.disable()
            bulk.round_trip_observers.clear()
            stats = pstats.Stats(profile, stream=io.StringIO())
            out = {"calls": stats.total_calls / n, "pipelines": len(sent) / n,
                   "statements": sum(sent) / n}
            if words[0] == "profile":
                with open(words[3], "w") as text:
                    stats.stream = text
                    profile.dump_stats(words[3] + ".prof"); stats.sort_stats("tottime").print_stats(int(words[2]))
                    stats.sort_stats("cumulative").print_stats(int(words[2]))
        print(json.dumps(out), flush=True)


# ---------------------------------------------------------------- the parent
class Side:
    def __init__(self, name: str, root: Path, url: str, token: str, prefix: str, accounts: int,
                 records: int, log):
        self.name, self.root = name, root
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--side", str(root), "--url", url, "--token", token,
             "--prefix", prefix, "--accounts", str(accounts), "--records", str(records)],
            cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
        self.ready = json.loads(self.process.stdout.readline() or '{"failed": true}')
        if "ready" not in self.ready:
            raise RuntimeError(f"{name}: the side did not start (see its log)")

    def ask(self, command: str) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name}: the side stopped (see its log)")
        return json.loads(line)

    def stop(self) -> None:
        self.process.stdin.close()
        self.process.wait(60)


def main() -> None:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_ledger as b

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("TANPU_BENCH_POSTGRES_URL", b.DEFAULT_URL))
    parser.add_argument("--credits", type=int, default=200, help="credits a timed block")
    parser.add_argument("--rounds", type=int, default=5, help="timed blocks of each side")
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--records", type=int, default=1,
                        help="records a credit (1,000: issue 13's batch case)")
    parser.add_argument("--reference", type=Path, default=None,
                        help="another checkout, measured alternately with this one")
    parser.add_argument("--profile", type=int, default=0, metavar="TOP",
                        help="cProfile's top functions of one more block of each side")
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--token", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side(args.side, args.url, args.token, args.prefix, args.accounts, args.records)
        return

    made = b.connect(args.url)
    if made is None:
        return
    admin, schema, db = made
    sides: list[Side] = []
    print(f"schema {schema}; {b.load()}", flush=True)
    try:
        from registry import tokens, users
        from tanpu.seed import SYSTEM_EMAIL
        with tempfile.TemporaryDirectory() as folder:
            ours, _ = b.prepare(db, Path(folder))
        roots = [("this", ROOT)] + ([("reference", args.reference.resolve())] if args.reference else [])
        with tempfile.TemporaryDirectory() as folder:
            log = open(Path(folder) / "sides.log", "a")
            for i, (name, root) in enumerate(roots):
                prefix = f"cpu{i}"
                b.warm_accounts(db, ours, prefix, args.accounts)
                with db.unit_of_work() as s:
                    token = tokens.create(s, users.by_email(s, SYSTEM_EMAIL), ours, name)[1]
                try:
                    sides.append(Side(name, root, db.url, token, prefix, args.accounts, args.records,
                                      log))
                except RuntimeError:
                    log.close()
                    print((Path(folder) / "sides.log").read_text()[-3000:])
                    raise
            cpu: dict[str, list[float]] = {s.name: [] for s in sides}
            counted = {s.name: s.ask(f"count {args.credits // 2}") for s in sides}
            calls = {name: got["calls"] for name, got in counted.items()}
            for name, got in counted.items():
                print(f"{name}: {got['calls']:,.0f} Python calls, {got['pipelines']:.2f} pipelines "
                      f"(round trips) and {got['statements']:.2f} statements in them a credit "
                      "(a pipeline's BEGIN not counted)", flush=True)
            for r in range(args.rounds):
                for s in sides:
                    got = s.ask(f"run {args.credits}")
                    cpu[s.name].append(got["cpu"])
                    print(f"round {r + 1} {s.name:9s}: {got['cpu'] * 1000:.2f} ms CPU a credit "
                          f"({got['wall'] * 1000:.2f} ms wall); {b.load()}", flush=True)
            for s in sides:
                print(f"{s.name} ({s.root}): CPU a credit median {statistics.median(cpu[s.name]) * 1000:.2f} ms "
                      f"(min {min(cpu[s.name]) * 1000:.2f}, max {max(cpu[s.name]) * 1000:.2f}; "
                      f"{args.rounds} x {args.credits} credits), {calls[s.name]:,.0f} Python calls a credit")
            if len(sides) == 2:
                a, z = (statistics.median(cpu[s.name]) for s in sides)
                print(f"this / reference: CPU {a / z:.3f}, calls "
                      f"{calls[sides[0].name] / calls[sides[1].name]:.3f}; {b.load()}")
            if args.profile:
                for s in sides:
                    out = Path("/tmp") / f"ledger20k-profile-{s.name}.txt"
                    s.ask(f"profile {args.credits} {args.profile} {out}")
                    print(f"---- cProfile of {s.name}, {args.credits} credits\n{out.read_text()}")
    finally:
        for s in sides:
            s.stop()
        db.dispose()
        with admin.connect() as c:
            c.execute(b.sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


if __name__ == "__main__":
    main()
