"""A large job end to end through a live `tanpu serve` and its worker: a CSV of `--n`
rides (default 1,000,000) POSTed to /api/v1/jobs, the time to the 202, the time until
the worker has evaluated (and credited) every record, records/s, and the peak memory
(VmHWM) of the web process and of the worker. Beside it, the reference: the same kind of
records sent by a client itself through POST /api/v1/credits (or /evaluate) in requests
of 10,000, one after the other (`--reference-n` records, default 100,000).

    .venv/bin/python bench/bench_jobs.py [--n 1000000] [--mode credit|evaluate]
                                         [--database-url URL] [--reference-n 100000]

Default database: a fresh SQLite file in a temporary folder (PostgreSQL: give its URL,
an empty database or schema). Figures only; the load average is printed because the
machine may be shared.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METHODOLOGY = "cn.shenzhen.public-transit"


def rides_csv(path: Path, n: int, prefix: str) -> None:
    start = dt.datetime(2024, 5, 20, 6, 0)
    with open(path, "w", encoding="utf-8") as out:
        out.write("id,account,mode,distance[km],boarded,alighted\n")
        for i in range(n):
            boarded = start + dt.timedelta(minutes=40 * (i // 20_000) % (60 * 24 * 20))
            alighted = boarded + dt.timedelta(minutes=30)
            out.write(f"{prefix}{i},a{i % 20_000},{'metro' if i % 3 else 'ebus'},"
                      f"{1 + i % 17},{boarded:%Y-%m-%dT%H:%M},{alighted:%Y-%m-%dT%H:%M}\n")


def rides_json(n: int, prefix: str) -> list[dict]:
    start = dt.datetime(2024, 5, 20, 6, 0)
    out = []
    for i in range(n):
        boarded = start + dt.timedelta(minutes=40 * (i // 20_000) % (60 * 24 * 20))
        out.append({"id": f"{prefix}{i}", "account": f"a{i % 20_000}",
                    "mode": "metro" if i % 3 else "ebus", "distance": f"{1 + i % 17} km",
                    "boarded": boarded.isoformat(timespec="minutes"),
                    "alighted": (boarded + dt.timedelta(minutes=30)).isoformat(timespec="minutes")})
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--mode", choices=("credit", "evaluate"), default="credit")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--reference-n", type=int, default=100_000)
    args = parser.parse_args()

    from registry import tokens, users
    from registry.db import Database

    folder = Path(tempfile.mkdtemp(prefix="tanpu-bench-jobs-"))
    url = args.database_url or f"sqlite:///{folder / 'tanpu.db'}"
    env = {**os.environ, "SECRET_KEY": "bench", "TANPU_JOBS_DIR": str(folder / "jobs")}
    env.pop("DATABASE_URL", None)
    port = free_port()
    log = open(folder / "server.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "tanpu.cli", "serve", "--database-url", url,
                               "--port", str(port)], cwd=ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2).close()
                break
            except OSError:
                time.sleep(0.2)
        database = Database(url)
        with database.unit_of_work() as s:
            admin = users.create_user(s, None, email="ops@bench.test", name="ops",
                                      roles=("administrator",))
            integrator = users.create_user(s, None, email="bus@bench.test", name="bus",
                                           roles=("integrator",))
            token = tokens.create(s, admin, integrator, "bench")[1]
        auth = {"Authorization": f"Bearer {token}"}

        csv_path = folder / "rides.csv"
        t = time.perf_counter()
        rides_csv(csv_path, args.n, "j")
        size = csv_path.stat().st_size
        print(f"load average {os.getloadavg()[0]:.2f}; {args.n:,} rides, {size / 1e6:.1f} MB CSV "
              f"(written in {time.perf_counter() - t:.1f} s); {database!r}; mode {args.mode}")

        t0 = time.perf_counter()
        with open(csv_path, "rb") as body:
            request = urllib.request.Request(
                f"{base}/api/v1/jobs?methodology={METHODOLOGY}&mode={args.mode}", data=body,
                headers={**auth, "Content-Type": "text/csv", "Content-Length": str(size)})
            with urllib.request.urlopen(request, timeout=600) as response:
                job = json.loads(response.read())
                status = response.status
        accepted = time.perf_counter() - t0
        print(f"POST /api/v1/jobs: {status} after {accepted:.2f} s (the upload included)")
        workers = children(server.pid)
        last = None
        while True:
            with urllib.request.urlopen(urllib.request.Request(
                    f"{base}/api/v1/jobs/{job['id']}", headers=auth), timeout=60) as response:
                job = json.loads(response.read())
            workers = children(server.pid) or workers
            progress = job["progress"]
            if progress["rows_done"] != last:
                last = progress["rows_done"]
                print(f"  {time.perf_counter() - t0:7.1f} s  {job['status']:9s} "
                      f"{progress['rows_done']:>10,} / {progress['rows_total'] or 0:,}", flush=True)
            if job["status"] in ("succeeded", "failed"):
                break
            time.sleep(2)
        total = time.perf_counter() - t0
        worker_peak = max((peak_kb(p) for p in workers), default=0)
        summary = job["summary"]
        print(f"job {job['status']}{': ' + job['failure'] if job['failure'] else ''}: "
              f"{args.n:,} records in {total:.1f} s from the first byte sent = "
              f"{args.n / total:,.0f} records/s; results {summary['results']:,}, errors "
              f"{summary['errors']:,}, credited {summary['credited']:,}")
        print(f"peak memory (VmHWM): web process {peak_kb(server.pid) / 1024:.0f} MB, "
              f"worker {worker_peak / 1024:.0f} MB (the CSV is {size / 1e6:.0f} MB)")

        if args.reference_n:
            path = "/api/v1/credits" if args.mode == "credit" else "/api/v1/evaluate"
            records = rides_json(args.reference_n, "ref")
            t = time.perf_counter()
            for at in range(0, len(records), 10_000):
                body = json.dumps({"methodology": METHODOLOGY,
                                   "records": records[at:at + 10_000]}).encode()
                request = urllib.request.Request(base + path, data=body, headers={
                    **auth, "Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=600) as response:
                    response.read()
            elapsed = time.perf_counter() - t
            print(f"reference: POST {path} in requests of 10,000 from one client: "
                  f"{args.reference_n:,} records in {elapsed:.1f} s = "
                  f"{args.reference_n / elapsed:,.0f} records/s")
        database.dispose()
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        print(f"(files in {folder}; the server's log: server.log)")


if __name__ == "__main__":
    main()
