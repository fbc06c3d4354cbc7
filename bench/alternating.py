"""Two computations timed in turn (A/B/A/B) in one process, for benches whose figures sit
beside a hand-written reference (bench_history.py, bench_rewards.py): the shared machine's
load falls on both alike, and CPU time (user + system, all threads) says what the work
costs whatever else runs."""

from __future__ import annotations

import gc
import resource
import time


def alternate(engine, reference, repeat: int = 3) -> tuple[dict, dict]:
    """Runs engine, reference, engine, reference, ...; of each, the best wall time, the
    best CPU time and the last result (`value`)."""
    got = ({"wall": float("inf"), "cpu": float("inf")}, {"wall": float("inf"), "cpu": float("inf")})
    for _ in range(repeat):
        for fn, best in zip((engine, reference), got):
            gc.collect()
            before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            best["value"] = fn()
            wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
            cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
            best["wall"], best["cpu"] = min(best["wall"], wall), min(best["cpu"], cpu)
    return got
