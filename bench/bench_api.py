"""POST /api/v1/evaluate through the real server: `tanpu serve` (waitress, 8 threads,
SQLite) in a subprocess, requests over keep-alive HTTP connections from this process.

    .venv/bin/python bench/bench_api.py [--batches 5] [--size 10000] [--latency 1000]
                                        [--rounds 1] [--before /work/main]

Prints: records/s with batches of `--size` records (one client, one request after the
other), timed from the request to the answer's last byte, and again with the client's
`json.loads` of the answer (the standard library's parser, a client's own cost: about as
long as the server's work for 10,000 results), with the latency of a batch (p50);
single-record latency one at a time (the service time); and single-record latency p50/p99
with requests scheduled at `--rate` per second from 8 clients (measured from each
request's scheduled time, so a request that waits for the others counts its wait).
Figures only: the machine may be shared (the load is printed). `--rounds`: the batch
measurements repeated, the servers taking turns (A/B/A/B). `--before PATH`: also a
`tanpu serve` of another checkout (the code before a change) in the same run.

Each figure is printed beside the same measurement of a hand-written reference run in the
same run: `reference_app`, a bare WSGI function on the same server (waitress, 8 threads,
its own process) doing this methodology's work by hand for these records: the JSON body
parsed (orjson), distances and times read by Polars, the formula (46.7 or 26.9 g/km times
the distance, in whole milligrams, 1 point a gram) and the overlap rule per account in
NumPy, and the same answer (every result with the same fields and the same version
fields, given to it at start) written from its columns by Polars' JSON writer, as the API
writes a batch's; no token, no rate limit, no database, no version lookup, no checks
beyond these records'. Its results are compared with the API's, field by field, before
any figure is printed.
Batches are measured twice: full rows, and `"compact": true` (each version once, docs/api.md),
the reference writing the same shape; each with the answer's size and the client's parse time.
The OpenFisca Web API's 5.5 k records/s (issue 14) is a published figure, not measured here.
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


def start(folder: Path, root: Path = ROOT):
    """`tanpu serve` of the checkout at `root` on a fresh SQLite file in `folder`."""
    from registry import tokens, users
    from registry.db import Database
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{folder / 'tanpu.db'}"
    env = {**os.environ, "SECRET_KEY": "bench", "TANPU_API_RATE_LIMIT_TOKEN": "100000 per second",
           "TANPU_API_RATE_LIMIT_ADDRESS": "100000 per second"}
    env.pop("DATABASE_URL", None)
    log = open(folder / "server.log", "ab")
    process = subprocess.Popen([sys.executable, "-m", "tanpu.cli", "serve", "--database-url", url,
                                "--port", str(port)], cwd=root, env=env, stdout=log,
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


VERSION: dict = {}  # the version's fields as the API gives them (--serve-reference's argument)


def reference_app(environ, start_response):
    """The hand-written reference (module docstring): POST a body of rides, get results."""
    import io

    import numpy as np
    import orjson
    import polars as pl

    body = orjson.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
    records = body["records"]
    n = len(records)
    frame = pl.DataFrame(records, schema={k: pl.String for k in
                                          ("id", "account", "mode", "distance", "boarded", "alighted")})
    km = frame["distance"].str.strip_suffix(" km").cast(pl.Float64).to_numpy()
    shanghai = 8 * 3600 * 1_000_000  # Asia/Shanghai has kept +08:00 since 1991
    boarded = frame["boarded"].str.to_datetime("%Y-%m-%dT%H:%M:%S").cast(pl.Int64).to_numpy() - shanghai
    alighted = frame["alighted"].str.to_datetime("%Y-%m-%dT%H:%M:%S").cast(pl.Int64).to_numpy() - shanghai
    mode = frame["mode"].to_numpy()
    factor = np.where(mode == "metro", 46.7, np.where(mode == "ebus", 26.9, np.nan))
    mg = np.rint(factor * km * 1000.0)
    ok = (factor == factor) & (alighted > boarded)
    # forbid overlap per account: a ride starting before the account's last credited end
    accounts = frame["account"].to_numpy()
    order = np.lexsort((boarded, accounts))
    last_end: dict = {}
    overlap = np.zeros(n, dtype=bool)
    for i in order.tolist():
        if not ok[i]:
            continue
        end = last_end.get(accounts[i])
        if end is not None and boarded[i] < end:
            overlap[i] = True
            continue
        last_end[accounts[i]] = alighted[i]
    credited = ok & ~overlap
    mg = np.where(credited, mg, 0).astype(np.int64)
    status = np.where(credited, "credited", "rejected")
    code = np.where(credited, "", np.where(overlap, "OVERLAP", "NOT_COVERED"))
    nothing = pl.repeat(None, n, dtype=pl.Int64, eager=True)
    table = pl.DataFrame({
        "index": np.arange(n), "id": frame["id"], "account": frame["account"],
        "time": pl.Series(np.minimum(boarded, alighted)).cast(pl.Datetime("us"))
        .dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "status": status, "code": code, "message": pl.repeat("", n, eager=True),
        "reduction_kg": mg / 1_000_000, "reduction_mg": mg, "points": mg // 1000,
        "bonus": np.zeros(n, dtype=np.int64), "baseline_mg": nothing, "project_mg": nothing,
        "leakage_mg": nothing}).with_columns(
        flags=pl.lit([], dtype=pl.List(pl.String)), counters=pl.lit([], dtype=pl.List(pl.String)))
    compact = body.get("compact", False)
    if compact:
        table = table.with_columns(group=pl.lit(0, dtype=pl.Int64))
    else:
        table = table.with_columns(*(pl.lit(v, dtype=pl.String).alias(k) for k, v in VERSION.items()))
    lines = io.BytesIO()
    table.write_ndjson(lines)
    counts = {str(s): int(c) for s, c in zip(*np.unique(status, return_counts=True))}
    head = orjson.dumps({"methodology": METHODOLOGY, "summary": {
        "records": n, "evaluated": n, "errors": 0, "by_status": counts,
        "reduction_mg": int(mg.sum()), "points": int((mg // 1000).sum()),
        "versions": [VERSION.get("version")]}, **({"groups": [VERSION]} if compact else {})})
    out = b"".join((head[:-1], b',"results":[', lines.getvalue().rstrip(b"\n").replace(b"\n", b","),
                    b'],"errors":[]}'))
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(out)))])
    return [out]


ANSWER = b"x" * 4_670_000  # the size of the API's answer to 10,000 rides


def bare_app(environ, start_response):
    """Reads the body, answers ANSWER: what waitress itself costs a batch."""
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(ANSWER)))])
    return [ANSWER]


def io_settings(rounds: int, size: int, requests: int = 50) -> None:
    """Server CPU and wall clock a batch (a body of `size` rides in, 4.67 MB out) of
    `bare_app` on waitress with its default buffers and with tanpu serve's IO_SETTINGS,
    in turns."""
    from tanpu.cli import IO_SETTINGS
    body = body_of(rides(size))
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    for _round in range(rounds):
        for name, settings in (("waitress' defaults", {}), ("tanpu serve's IO_SETTINGS", IO_SETTINGS)):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            process = subprocess.Popen([sys.executable, __file__, "--serve-bare", str(port),
                                        "--version-fields", json.dumps(settings)], cwd=ROOT)
            try:
                while True:
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                        break
                    except OSError:
                        time.sleep(0.2)
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

                def one():
                    connection.request("POST", "/", body=body)
                    connection.getresponse().read()
                one()
                cpu, wall = cpu_seconds(process.pid), time.perf_counter()
                for _ in range(requests):
                    one()
                cpu = (cpu_seconds(process.pid) - cpu) / requests
                wall = (time.perf_counter() - wall) / requests
                print(f"{name:>26}: server CPU {cpu * 1000:.1f} ms, wall {wall * 1000:.1f} ms a batch "
                      f"({len(body) / 1e6:.2f} MB in, {len(ANSWER) / 1e6:.2f} MB out)")
            finally:
                process.terminate()
                process.wait(30)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def start_reference(folder: Path, version: dict):
    """`reference_app` on waitress (8 threads, as `tanpu serve`) in its own process, with
    the version's fields to write (as the API's first answer gives them)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(folder / "reference.log", "ab")
    process = subprocess.Popen([sys.executable, __file__, "--serve-reference", str(port),
                                "--version-fields", json.dumps(version)],
                               cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return process, port
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the reference did not start: see {folder / 'reference.log'}")
            time.sleep(0.2)


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

    size = 0  # of the last answer, in bytes
    parse = 0.0  # seconds json.loads took for it
    took = 0.0  # seconds from the request to the answer's last byte

    def evaluate(self, body: bytes) -> dict:
        t = time.perf_counter()
        self.connection.request("POST", "/api/v1/evaluate", body=body, headers=self.headers)
        response = self.connection.getresponse()
        data = response.read()
        self.took = time.perf_counter() - t
        if response.status != 200:
            raise SystemExit(f"{response.status}: {data[:500]!r}")
        t = time.perf_counter()
        out = json.loads(data)
        self.parse, self.size = time.perf_counter() - t, len(data)
        return out


def body_of(records: list[dict], compact: bool = False) -> bytes:
    return json.dumps({"methodology": METHODOLOGY, "records": records,
                       **({"compact": True} if compact else {})}).encode()


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def batches(port: int, token: str, count: int, size: int, compact: bool = False,
            pid: int = 0) -> tuple[float, list[float], int, list[float], float]:
    """(records/s to the answers' last bytes, sorted seconds a batch so, bytes of an
    answer, sorted seconds the client's json.loads took for an answer, the server's CPU
    seconds a batch: wall clock on a shared machine counts the others' work too)"""
    caller = Caller(port, token)
    bodies = [body_of(rides(size, i * size), compact) for i in range(count + 1)]
    caller.evaluate(bodies[-1])  # warm: the methodology compiled, the connection open
    times, parses = [], []
    cpu = cpu_seconds(pid)
    for body in bodies[:count]:
        out = caller.evaluate(body)
        times.append(caller.took)
        parses.append(caller.parse)
        assert out["summary"]["evaluated"] == size, out["summary"]
    cpu = (cpu_seconds(pid) - cpu) / count
    return count * size / sum(times), sorted(times), caller.size, sorted(parses), cpu


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


def same_results(api: dict, reference: dict) -> None:
    """The reference does the API's work: every result's amounts and outcome agree."""
    fields = ("index", "id", "account", "time", "status", "code", "message", "reduction_kg",
              "reduction_mg", "points", "bonus", "baseline_mg", "project_mg", "leakage_mg",
              "flags", "counters", "methodology", "version", "content_hash", "applicability")
    if list(api["results"][0]) != list(reference["results"][0]):
        raise SystemExit(f"the reference writes other fields: {list(reference['results'][0])}")
    mine = [tuple(r[f] for f in fields) for r in api["results"]]
    theirs = [tuple(r[f] for f in fields) for r in reference["results"]]
    if mine != theirs:
        wrong = next(i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b) if len(mine) == len(theirs) else -1
        raise SystemExit(f"the reference's results differ from the API's (first at {wrong}: "
                         f"{mine[wrong] if wrong >= 0 else len(mine)} vs {theirs[wrong] if wrong >= 0 else len(theirs)})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--latency", type=int, default=1_000, help="paced single-record requests")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--rounds", type=int, default=1, help="batch measurements, servers in turn")
    parser.add_argument("--before", type=Path, help="also `tanpu serve` of this checkout")
    parser.add_argument("--io-rounds", type=int, default=0,
                        help="only waitress' buffers: its defaults against tanpu serve's, bare")
    parser.add_argument("--serve-reference", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--version-fields", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_reference:
        from waitress import serve

        from tanpu.cli import IO_SETTINGS
        VERSION.update(json.loads(args.version_fields))
        serve(reference_app, host="127.0.0.1", port=args.serve_reference, threads=8, **IO_SETTINGS)
        return
    if args.serve_bare:
        from waitress import serve
        serve(bare_app, host="127.0.0.1", port=args.serve_bare, threads=8,
              **json.loads(args.version_fields))
        return
    if args.io_rounds:
        io_settings(args.io_rounds, args.size)
        return
    with tempfile.TemporaryDirectory() as folder:
        process, port, token = start(Path(folder) / "api")
        children = [process]
        try:
            servers = [("POST /api/v1/evaluate", port, token, process.pid)]
            if args.before:
                before, before_port, before_token = start(Path(folder) / "before", args.before)
                children.append(before)
                servers.append(("the code before", before_port, before_token, before.pid))
            check = body_of(rides(args.size, 10 ** 7))
            answer = Caller(port, token).evaluate(check)
            version = {k: answer["results"][0][k]
                       for k in ("methodology", "version", "content_hash", "applicability")}
            reference, reference_port = start_reference(Path(folder), version)
            children.append(reference)
            servers.append(("reference", reference_port, "", reference.pid))
            print(f"load average before: {os.getloadavg()[0]:.2f} (2 cores shared)")
            same_results(answer, Caller(reference_port, "").evaluate(check))
            print(f"results: the API's equal the hand-written reference's on {args.size:,} rides")
            for round_ in range(args.rounds):
                if args.rounds > 1:
                    print(f"round {round_ + 1} (load average {os.getloadavg()[0]:.2f})")
                for compact in (False, True):
                    for name, where, key, pid in servers:
                        rate, times, size, parses, cpu = batches(where, key, args.batches,
                                                                 args.size, compact, pid)
                        with_parse = args.batches * args.size / (sum(times) + sum(parses))
                        print(f"{name:>22}, batches of {args.size:,}{' compact' if compact else ''}: "
                              f"{rate:,.0f} records/s (p50 {percentile(times, 50) * 1000:.0f} ms a "
                              f"batch, server CPU {cpu * 1000:.0f} ms a batch; answer "
                              f"{size / 1e6:.2f} MB); with the client's json.loads "
                              f"{with_parse:,.0f} records/s (json.loads p50 "
                              f"{percentile(parses, 50) * 1000:.0f} ms)")
            print(f"{'':>22}  (issue 14's goal 100,000 records/s; the OpenFisca Web API's "
                  f"published {OPENFISCA_RECORDS_PER_S:,} records/s)")
            for name, where, key, pid in servers:
                cpu = cpu_seconds(pid)
                alone = one_at_a_time(where, key, 200)
                cpu = (cpu_seconds(pid) - cpu) / 201
                print(f"{name:>22}, single record, one at a time: p50 {percentile(alone, 50) * 1000:.1f} ms, "
                      f"p99 {percentile(alone, 99) * 1000:.1f} ms (server CPU {cpu * 1000:.2f} ms a request)")
            for name, where, key, pid in servers:
                cpu = cpu_seconds(pid)
                latencies, achieved = paced(where, key, args.latency, args.rate)
                cpu = (cpu_seconds(pid) - cpu) / (args.latency + 8)
                print(f"{name:>22}, single record at {args.rate:.0f} req/s from 8 clients: "
                      f"p50 {percentile(latencies, 50) * 1000:.1f} ms, "
                      f"p99 {percentile(latencies, 99) * 1000:.1f} ms "
                      f"(achieved {achieved:.0f} req/s; server CPU {cpu * 1000:.2f} ms a request; "
                      f"goal p99 < 20 ms)")
            print(f"load average after: {os.getloadavg()[0]:.2f}")
        finally:
            for child in children:
                child.terminate()
                child.wait(30)


if __name__ == "__main__":
    main()
