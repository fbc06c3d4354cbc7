"""Asks the C allocator of a Tanpu process to keep the memory it frees, for the next batch.

The batch engine works on NumPy arrays of megabytes each, taken from glibc's malloc and
freed a moment later. By default glibc maps such blocks fresh from the kernel and gives
freed ones back, so every new array pays a page fault per page when it is first written.
On virtual machines a page fault is expensive (4 to 9 µs on this project's 2-core VM, where
a 5-million-record batch took 150,000 of them per run): a third of `tanpu eval`'s CPU time
was the kernel's. With the thresholds raised, freed blocks stay in the process and are
reused; the price is that the process keeps its high-water mark (up to TRIM bytes more).

Process-wide, so only the edges call it (`tanpu eval`, `tanpu serve`, the benchmarks);
the engine itself never changes process settings.
"""

from __future__ import annotations

import sys

# mallopt(3) parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

MMAP = 256 << 20  # blocks below this come from the heap, and are reused when freed
TRIM = 512 << 20  # free memory at the heap's top is kept up to this
PAD = 64 << 20    # the heap grows by at least this much at a time


def keep_freed_memory() -> bool:
    """Raises glibc's mmap and trim thresholds; False (nothing changed) elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the process already uses
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = mallopt(_M_MMAP_THRESHOLD, MMAP)
    done &= mallopt(_M_TRIM_THRESHOLD, TRIM)
    done &= mallopt(_M_TOP_PAD, PAD)
    return bool(done)
