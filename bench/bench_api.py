"""POST /api/v1/evaluate through the real server: `tanpu serve` (waitress, 8 threads,
SQLite) in a subprocess, requests over keep-alive HTTP connections from this process.

    .venv/bin/python bench/bench_api.py [--batches 5] [--size 10000] [--latency 1000]

Prints: records/s with batches of `--size` records (one client, one request after the
other) and the latency of a batch (p50); single-record latency one at a time (the service
time); and single-record latency p50/p99 with requests scheduled at `--rate` per second
from 8 clients (measured from each request's scheduled time, so a request that waits for
the others counts its wait). The reference line is the OpenFisca Web API's 5.5 k
records/s (issue 14). Figures only: the machine may be shared (the load is printed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pacing  # noqa: E402  (bench/pacing.py, beside this script)
METHODOLOGY = "cn.shenzhen.public-transit"
OPENFISCA_RECORDS_PER_S = 5_500


def start(folder: Path):
    from registry import tokens, users
    from registry.db import Database
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"sqlite:///{folder / 'tanpu.db'}"
    env = {**os.environ, "SECRET_KEY": "bench", "TANPU_API_RATE_LIMIT_TOKEN": "100000 per second",
           "TANPU_API_RATE_LIMIT_ADDRESS": "100000 per second"}
    env.pop("DATABASE_URL", None)
    log = open(folder / "server.log", "ab")
    process = subprocess.Popen([sys.executable, "-m", "tanpu.cli", "serve", "--database-url", url,
                                "--port", str(port)], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"tanpu serve did not start: see {folder / 'server.log'}")
            time.sleep(0.3)
    database = Database(url)
    with database.unit_of_work() as s:
        admin = users.create_user(s, None, email="ops@bench.test", name="ops", roles=("administrator",))
        integrator = users.create_user(s, None, email="bus@bench.test", name="bus",
                                       roles=("integrator",))
        token = tokens.create(s, admin, integrator, "bench")[1]
    database.dispose()
    return process, port, token


def rides(n: int, offset: int = 0) -> list[dict]:
    start = dt.datetime(2024, 5, 20, 6, 0)
    out = []
    for i in range(offset, offset + n):
        boarded = start + dt.timedelta(minutes=40 * (i // 5000))
        out.append({"id": f"b-{i}", "account": f"a{i % 5000}", "mode": "metro",
                    "distance": f"{1 + i % 17} km", "boarded": boarded.isoformat(),
                    "alighted": (boarded + dt.timedelta(minutes=30)).isoformat()})
    return out


class Caller:
    """One keep-alive connection."""

    def __init__(self, port: int, token: str):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def evaluate(self, body: bytes) -> dict:
        self.connection.request("POST", "/api/v1/evaluate", body=body, headers=self.headers)
        response = self.connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise SystemExit(f"{response.status}: {data[:500]!r}")
        return json.loads(data)


def body_of(records: list[dict]) -> bytes:
    return json.dumps({"methodology": METHODOLOGY, "records": records}).encode()


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def batches(port: int, token: str, count: int, size: int) -> tuple[float, list[float]]:
    caller = Caller(port, token)
    bodies = [body_of(rides(size, i * size)) for i in range(count + 1)]
    caller.evaluate(bodies[-1])  # warm: the methodology compiled, the connection open
    times = []
    for body in bodies[:count]:
        t = time.perf_counter()
        out = caller.evaluate(body)
        times.append(time.perf_counter() - t)
        assert out["summary"]["evaluated"] == size, out["summary"]
    return count * size / sum(times), sorted(times)


def one_at_a_time(port: int, token: str, count: int) -> list[float]:
    caller = Caller(port, token)
    bodies = [body_of(rides(1, i)) for i in range(count)]
    caller.evaluate(bodies[0])
    out = []
    for body in bodies:
        t = time.perf_counter()
        caller.evaluate(body)
        out.append(time.perf_counter() - t)
    return sorted(out)


def paced(port: int, token: str, count: int, rate: float, clients: int = 8) -> tuple[list[float], float]:
    callers = [Caller(port, token) for _ in range(clients)]
    bodies = [body_of(rides(1, i)) for i in range(count)]
    for caller in callers:
        caller.evaluate(bodies[0])
    return pacing.paced([lambda i, c=c: c.evaluate(bodies[i]) for c in callers], count, rate)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--latency", type=int, default=1_000, help="paced single-record requests")
    parser.add_argument("--rate", type=float, default=200.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        process, port, token = start(Path(folder))
        try:
            print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores shared)")
            rate, times = batches(port, token, args.batches, args.size)
            print(f"POST /api/v1/evaluate, batches of {args.size:,}: {rate:,.0f} records/s "
                  f"(p50 {percentile(times, 50) * 1000:.0f} ms a batch)   "
                  f"reference: OpenFisca Web API {OPENFISCA_RECORDS_PER_S:,} records/s; "
                  f"issue 14's goal 100,000 records/s")
            alone = one_at_a_time(port, token, 200)
            print(f"single record, one at a time: p50 {percentile(alone, 50) * 1000:.1f} ms, "
                  f"p99 {percentile(alone, 99) * 1000:.1f} ms")
            latencies, achieved = paced(port, token, args.latency, args.rate)
            print(f"single record at {args.rate:.0f} req/s from 8 clients: "
                  f"p50 {percentile(latencies, 50) * 1000:.1f} ms, "
                  f"p99 {percentile(latencies, 99) * 1000:.1f} ms "
                  f"(achieved {achieved:.0f} req/s; goal p99 < 20 ms)")
            print(f"load average after: {os.getloadavg()[0]:.2f}")
        finally:
            process.terminate()
            process.wait(30)


if __name__ == "__main__":
    main()
