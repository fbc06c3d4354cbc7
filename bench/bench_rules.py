"""Throughput of the durable_rules path for cross-record rules, and durable_rules' limits.

    .venv/bin/python bench/bench_rules.py [--n 100000] [--limits]

Prints records/s of RulesEngine.apply (engine/rules: worker process, one session per
account) against the reference cross_record.apply on the same records (the ratio), for
the Shenzhen bus/metro formula with a daily cap, with and without an overlap rule; the durable_rules messages (questions and facts) posted per second.

--limits also measures durable_rules 2.0.28 itself, each in a subprocess of its own:
events/s and facts/s posted straight to a Host, the slowdown as a session's facts
accumulate, where facts with content-derived ids start failing, how many sessions one
ruleset holds, and the memory a ruleset keeps. Figures only: nothing asserts a timing.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dsl import compile_source  # noqa: E402
from engine import Engine, cross_record  # noqa: E402
from engine.rules import RulesEngine  # noqa: E402
from engine.rules.worker import Worker  # noqa: E402

BODY = """methodology bench.rides "rides" version 1.0.0 {
  covers transit_trip
  effective from 2021-12-16
  timezone Asia/Shanghai
}
input mode: choice { ebus "e-bus", metro "metro" }
input distance: quantity [km] between 0 km and 200 km
input boarded: datetime
input alighted: datetime
reduction = (if mode == ebus then 26.9 g/km else 46.7 g/km) * distance
points = floor(reduction / 1 g)
cap reduction at 2 kg per account per day
"""
OVERLAP = "forbid overlap between boarded and alighted per account else OVERLAP \"rides overlap\"\n"
START_US = 1_714_514_400_000_000  # 2024-05-01T06:00 local (+08:00), as UTC µs


def methodology(with_overlap: bool):
    """The Shenzhen bus/metro formula with a daily cap (and the overlap rule)."""
    compiled = compile_source(BODY + (OVERLAP if with_overlap else ""), "bench.tanpu")
    assert compiled.ok, compiled.render()
    return compiled.methodology


def records(n: int) -> list[dict]:
    """n rides: 50 per account over 10 days, a few overlapping."""
    import random
    rng = random.Random(0)
    out = []
    for i in range(n):
        start = START_US + rng.randrange(10 * 24 * 60) * 60_000_000
        out.append({"id": f"r{i}", "account": f"acct{i % max(1, n // 50)}",
                    "mode": rng.choice(["ebus", "metro"]), "distance": rng.randrange(1, 30_000) / 1000,
                    "boarded": start, "alighted": start + rng.randrange(5, 60) * 60_000_000})
    return out


def per_record(engine: Engine, rows: list[dict]):
    from engine.records import ingest
    results = []
    for row, raw in enumerate(rows, start=1):
        values = ingest({**raw, "distance": f"{raw['distance']} km",
                         "boarded": _iso(raw["boarded"]), "alighted": _iso(raw["alighted"])},
                        engine.schema, default_id=f"row-{row}")
        results.append(engine.evaluate_values(values, row=row))
    return results


def _iso(us: int) -> str:
    import datetime as dt
    return dt.datetime.fromtimestamp(us / 1e6, dt.timezone.utc).isoformat()


def bench_paths(n: int) -> None:
    rows = records(n)
    for with_overlap in (False, True):
        m = methodology(with_overlap)
        engine = Engine(m)
        base = per_record(engine, rows)
        label = "daily cap" + (" + overlap" if with_overlap else "")

        reference = [copy.copy(r) for r in base]
        t0 = time.perf_counter()
        cross_record.apply(reference, m, engine.recompute_points)
        t_ref = time.perf_counter() - t0

        worker = Worker()
        try:
            rules = RulesEngine(m, engine=engine, worker=worker)
            t0 = time.perf_counter()
            rules.apply([copy.copy(base[0])])
            t_start = time.perf_counter() - t0
            mine = [copy.copy(r) for r in base]
            t0 = time.perf_counter()
            rules.apply(mine)
            t_rules = time.perf_counter() - t0
        finally:
            worker.stop()
        same = [r.key() for r in mine] == [r.key() for r in reference]
        credited = sum(1 for r in base if r.status == "credited")
        per = (2 if with_overlap else 0) + 3  # rec + acc fact; capq + ledger retract/assert
        print(f"{label:20s} {n:>8,} records ({credited:,} credited, {n // 50:,} accounts)")
        print(f"  reference cross_record.apply  {n / t_ref:>12,.0f} records/s  ({t_ref:.2f} s)")
        print(f"  RulesEngine.apply (durable)   {n / t_rules:>12,.0f} records/s  ({t_rules:.2f} s; "
              f"~{per * credited / t_rules:,.0f} durable_rules posts/s; worker start {t_start:.2f} s)")
        print(f"  rules path slower by          {t_rules / t_ref:>12.1f} x   identical results: {same}")


# ---------------------------------------------------------------- durable_rules itself
LIMIT_SCRIPTS = {
    "events/s posted, each firing an action (one session)": """
        h = host({"r": {"all": [{"m": {"t": "q"}}], "run": "a"}})
        n = 50_000; t0 = time.perf_counter()
        for i in range(n):
            h.post("b", {"sid": "s", "id": f"e{i}", "t": "q", "v": i})
        out(round(n / (time.perf_counter() - t0)))
    """,
    "events/s posted in batches of 1,000 (post_batch)": """
        h = host({"r": {"all": [{"m": {"t": "q"}}], "run": "a"}})
        n = 50_000; t0 = time.perf_counter()
        for b in range(0, n, 1000):
            h.post_batch("b", [{"sid": "s", "id": f"e{i}", "t": "q", "v": i} for i in range(b, b + 1000)])
        out(round(n / (time.perf_counter() - t0)))
    """,
    "facts/s asserted, no action, as a session grows (per 10,000)": """
        h = host({"r": {"all": [{"a": {"t": "acc"}}, {"m": {"$and": [{"t": "q"}, {"k": {"a": "k"}}]}}], "run": "a"}})
        rates = []
        for block in range(5):
            t0 = time.perf_counter()
            for i in range(block * 10_000, (block + 1) * 10_000):
                h.assert_fact("b", {"sid": "s", "id": f"f{i}", "t": "acc", "k": i})
            rates.append(round(10_000 / (time.perf_counter() - t0)))
        out(rates)
    """,
    "facts before 'already observed', ids derived from content ({t, k: n})": """
        h = host({"r": {"all": [{"a": {"t": "acc"}}, {"m": {"t": "q"}}], "run": "a"}})
        n = 0
        try:
            for n in range(200_000):
                h.assert_fact("b", {"sid": "s", "t": "acc", "k": n})
            out("no failure in 200,000")
        except Exception as e:
            out(f"{n:,} ({type(e).__name__})")
    """,
    "facts before 'already observed', ids derived from content (acc facts)": """
        h = host({"r": {"all": [{"a": {"t": "acc"}}, {"m": {"t": "q"}}], "run": "a"}})
        n = 0
        try:
            for n in range(200_000):
                h.assert_fact("b", {"sid": "s", "t": "acc", "no": n, "time": 1714514400000000 + n * 60000000})
            out("no failure in 200,000")
        except Exception as e:
            out(f"{n:,} ({type(e).__name__})")
    """,
    "facts in one session with ids of distinct hashes (ours): count, peak RSS": """
        h = host({"r": {"all": [{"a": {"t": "acc"}}, {"m": {"$and": [{"t": "q"}, {"k": {"a": "k"}}]}}], "run": "a"}})
        for i in range(100_000):
            h.assert_fact("b", {"sid": "s", "id": f"f{i}", "t": "acc", "k": i})
        out(f"{len(h.get_facts('b', 's')):,} facts, peak RSS {rss('VmHWM'):.0f} MB")
    """,
    "sessions open at once in one ruleset": """
        h = host({"r": {"all": [{"a": {"t": "acc"}}, {"m": {"t": "q"}}], "run": "a"}})
        n = 0
        try:
            for n in range(5_000):
                h.assert_fact("b", {"sid": f"s{n}", "id": "f", "t": "acc"})
            out("no failure in 5,000")
        except Exception as e:
            out(f"{n:,} ({type(e).__name__})")
    """,
    "sessions/s created, used and deleted (one at a time)": """
        h = host({"r": {"all": [{"a": {"t": "acc"}}, {"m": {"t": "q"}}], "run": "a"}})
        n = 20_000; t0 = time.perf_counter()
        for i in range(n):
            h.assert_fact("b", {"sid": f"s{i}", "id": "f", "t": "acc"})
            h.post("b", {"sid": f"s{i}", "id": "e", "t": "q"})
            h.delete_state("b", f"s{i}")
        out(f"{round(n / (time.perf_counter() - t0)):,} (peak RSS {rss('VmHWM'):.0f} MB)")
    """,
    "memory kept per ruleset registered (never freed)": """
        before = rss()
        h = host({"r": {"all": [{"m": {"t": "q"}}], "run": "a"}})
        for i in range(300):
            h.register_rulesets({f"x{i}": {f"r{j}": {"all": [{"a": {"t": "acc", "j": j}}, {"m": {"$and": [{"t": "q"}, {"k": {"a": "k"}}]}}], "run": "a"} for j in range(20)}})
        out(f"{(rss() - before) * 1024 / 300:.0f} kB (20 rules each)")
    """,
}

PRELUDE = """
import json, resource, sys, time
from durable import engine
def rss(field="VmRSS"):  # MB; not ru_maxrss, which a child inherits from its parent
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
class Host(engine.Host):
    def _run(self): pass
    def get_action(self, name): return lambda c: None
def host(rules):
    h = Host()
    h.register_rulesets({"b": rules})
    return h
def out(value):
    print(json.dumps(value), flush=True)
"""


def bench_limits() -> None:
    print("durable_rules 2.0.28 on this machine (each line a fresh subprocess):")
    for label, body in LIMIT_SCRIPTS.items():
        script = PRELUDE + textwrap.dedent(body)
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              timeout=900)
        value = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else \
            f"process ended with {done.returncode}: {done.stderr.strip()[-200:]}"
        try:
            value = json.loads(value)
        except ValueError:
            pass
        print(f"  {label:68s} {value}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--limits", action="store_true", help="also measure durable_rules itself")
    args = parser.parse_args()
    bench_paths(args.n)
    if args.limits:
        bench_limits()
    print(f"max RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
