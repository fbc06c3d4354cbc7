"""Asks the C allocators of a Tanpu process to keep the memory they free, for the next batch.

The batch engine works on NumPy arrays and Polars columns of megabytes each, allocated and
freed a moment later. By default both allocators give such blocks back to the kernel, so
every new array pays a page fault per page when it is first written. On virtual machines
a page fault is expensive (4 to 9 µs on this project's 2-core VM, where a 5-million-record
batch took 150,000 of them per run): a third of `tanpu eval`'s CPU time was the kernel's.
The price of keeping freed memory is that the process keeps its high-water mark for a while.

Two allocators are involved:
- glibc's malloc, used by NumPy: its mmap and trim thresholds are raised with mallopt(3),
  so freed blocks stay in the process and are reused (up to TRIM bytes at the heap's top);
- jemalloc, compiled into Polars' Rust library: Polars configures it to return freed pages
  after half a second, which, on a 2-core VM, is sooner than the next chunk needs them
  again. jemalloc reads its settings from `_RJEM_MALLOC_CONF` once, when the library
  loads, so this must run before the first `import polars`; a value the user set wins.

Process-wide, so only the edges call it (`tanpu eval`, `tanpu serve`, the benchmarks);
the engine itself never changes process settings.
"""

from __future__ import annotations

import os
import sys

# mallopt(3) parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3

MMAP = 256 << 20  # blocks below this come from the heap, and are reused when freed
TRIM = 512 << 20  # free memory at the heap's top is kept up to this
PAD = 64 << 20    # the heap grows by at least this much at a time

POLARS_ALLOCATOR = "_RJEM_MALLOC_CONF"
# jemalloc's own defaults (Polars shortens them to 500 and 1,000 ms): pages unused for
# about ten seconds go back to the kernel, so an idle server still shrinks
POLARS_KEEP = "dirty_decay_ms:10000,muzzy_decay_ms:10000"


def keep_freed_memory() -> bool:
    """Both allocators keep freed memory; True if glibc's took the setting.

    Polars' setting takes effect only if Polars is not loaded yet (keep_polars_memory).
    """
    keep_polars_memory()
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


def keep_polars_memory() -> bool:
    """Sets jemalloc's decay for Polars; False if Polars is loaded already (too late)."""
    if "polars" in sys.modules:
        return False
    os.environ.setdefault(POLARS_ALLOCATOR, POLARS_KEEP)
    return True
