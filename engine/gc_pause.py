"""Pausing Python's cycle collector while a batch of results is built.

Evaluating 200,000 records allocates 200,000 result objects that all survive; each
allocation counts towards the collector's thresholds, so it runs over and over, each full
pass scanning every result built so far (about a fifth of the scalar path's time). Those
objects hold no reference cycles, so collecting during the batch frees nothing.

This changes the state of the whole process, not only of the engine: while any batch is
evaluated, no thread of the process has its cyclic garbage collected (memory held by
cycles other code makes meanwhile waits until the pause ends). Threads that evaluate at
the same time share one pause, which ends when the last of them is done, and a
collector someone else switched off stays off. engine/__init__.py lists this with the
engine's other side effects.
"""

from __future__ import annotations

import gc
import threading
from contextlib import contextmanager
from typing import Iterator

_lock = threading.Lock()
_inside = 0          # batches being evaluated now, in any thread
_we_paused = False   # whether the collector was running when the first of them began


@contextmanager
def cycle_collector_paused() -> Iterator[None]:
    global _inside, _we_paused
    with _lock:
        if _inside == 0:
            _we_paused = gc.isenabled()
            if _we_paused:
                gc.disable()
        _inside += 1
    try:
        yield
    finally:
        with _lock:
            _inside -= 1
            if _inside == 0 and _we_paused:
                gc.enable()
                _we_paused = False
