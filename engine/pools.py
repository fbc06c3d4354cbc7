"""The process's worker thread pools: one per purpose and size, kept for the process's life.

Why kept: a pool's threads start with its first tasks and then wait for more, so the
batch engine, its rules, its hashes and the record files' writer reuse theirs across
batches instead of starting threads for each one.

Why in one place: a pool must be forgotten in a forked child (a pre-forked server's
worker, tanpu/server.py), which gets a copy of the pool but none of its threads, so that
the tasks it queued would never run; one os.register_at_fork here covers every pool.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache


def up_to(threads: int) -> int:
    """`threads`, or fewer on a machine with fewer CPUs (at least one)."""
    return max(1, min(threads, os.cpu_count() or 1))


@lru_cache(maxsize=16)
def pool(purpose: str, threads: int) -> ThreadPoolExecutor:
    """The pool of `threads` threads for `purpose` (its threads are named tanpu-<purpose>)."""
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"tanpu-{purpose}")


# a forked process has none of the pools' threads: it makes its own
os.register_at_fork(after_in_child=pool.cache_clear)
