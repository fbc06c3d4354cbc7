"""Requests at a steady rate from several callers, for latency figures (bench_api.py,
bench_ledger.py): each latency is measured from the request's scheduled time, so a
request that starts late because the others are slow counts its wait (no coordinated
omission)."""

from __future__ import annotations

import threading
import time
from typing import Callable, Sequence


def paced(callers: Sequence[Callable[[int], object]], count: int,
          rate: float) -> tuple[list[float], float]:
    """(sorted latencies in seconds, achieved requests per second) of `count` calls
    scheduled at `rate` per second; call i is `caller(i)` of whichever caller is free."""
    latencies: list[float] = []
    lock = threading.Lock()
    next_index = [0]
    begin = time.perf_counter() + 0.05

    def work(caller):
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= count:
                return
            due = begin + i / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            caller(i)
            done = time.perf_counter()
            with lock:
                latencies.append(done - due)

    threads = [threading.Thread(target=work, args=(c,)) for c in callers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(latencies), count / (time.perf_counter() - begin)
