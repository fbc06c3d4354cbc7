"""The id hashes of a file, for the values among them that occur more than once.

The duplicate-id check of a per-record methodology's file (engine.BatchEngine's
`_per_record_once` and `duplicate_rows`) hashes every record's id (8 bytes) and asks which
hashes occur twice; usually none do, and then no record is a duplicate. `RepeatedHashes`
gathers the hashes chunk by chunk and answers that at the end, in bounded memory.

Each chunk's hashes are sorted in the chunk's thread (`prepare`; NumPy's sort, about
5 ns a hash here) and cut by value into `parts` equal ranges, every copy of a value in
the same one: in a sorted chunk a range is a slice, found by a binary search (no mask,
no argsort). A range is a region of one preallocated array when the file's hashes fit
`memory_rows` (`_Buckets`), else a file of about `file_rows` hashes (`_Files`). At the
end each range is sorted in place and its neighbours compared: in memory the ranges are
small (about a million hashes, sorted in cache) and sorted on both cores, so that little
is left to do after the last chunk; on disk two files are read and sorted at a time, one
a core.

Measured in docs/engine.md ("Read once, rewound if need be"): the hash files kept every
file above 64M rows waiting after its evaluation (a stable argsort per chunk on the main
thread, then four files sorted one after the other).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import pools

# hashes kept in memory at most (8 bytes each: 2 GiB): a larger file's go to files
MEMORY_ROWS = 256 << 20
# hashes in one file at most (512 MiB; two files read and sorted at a time)
FILE_ROWS = 64 << 20
# about this many hashes in a range in memory: sorted in cache, many ranges for 2 cores
BUCKET_ROWS = 1 << 20

NOTHING = np.zeros(0, dtype=np.uint64)


def edges(parts: int) -> np.ndarray:
    """The first value of each of `parts` equal ranges of uint64, and 2**64 - 1 after
    them (for searchsorted: the values of range k are those from edges[k] up to, not
    including, edges[k + 1]; the last range's bound is inclusive, see `bounds`)."""
    return np.array([(k << 64) // parts for k in range(parts)] + [(1 << 64) - 1], dtype=np.uint64)


def repeated_sorted(ordered: np.ndarray) -> np.ndarray:
    """The values that occur more than once in `ordered` (sorted uint64), sorted, once each."""
    if ordered.size < 2:
        return NOTHING
    same = ordered[1:] == ordered[:-1]
    return np.unique(ordered[1:][same]) if same.any() else NOTHING


class RepeatedHashes:
    def __init__(self, expected: int, memory_rows: int = MEMORY_ROWS, file_rows: int = FILE_ROWS,
                 bucket_rows: int = BUCKET_ROWS):
        """`expected`: about how many hashes will be added (exact for a Parquet file);
        more are taken, at the cost of memory in memory (`_Buckets`)."""
        expected = max(0, expected)
        if expected <= memory_rows:
            parts = 1 << max(0, math.ceil(math.log2(max(1, expected / max(1, bucket_rows)))))
            self.store = _Buckets(expected, parts)
        else:
            parts = -(-expected // max(1, min(memory_rows, file_rows)))
            self.store = _Files(parts)
        self.parts = parts
        self.edges = edges(parts)

    def prepare(self, hashes: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """A chunk's hashes as `add` takes them: sorted, and the bounds of each range in
        them. Thread-safe: each chunk's thread prepares its own."""
        ordered = np.sort(hashes)
        bounds = np.searchsorted(ordered, self.edges[:-1]).tolist()
        bounds.append(ordered.size)  # the last range reaches 2**64 - 1, inclusive
        return ordered, bounds

    def add(self, prepared: tuple[np.ndarray, list[int]]) -> None:
        """One chunk's hashes (`prepare`), in the caller's thread, one chunk at a time."""
        ordered, bounds = prepared
        self.store.add(ordered, bounds)

    def repeated(self) -> np.ndarray:
        """The hashes added more than once, sorted, once each; the store is let go."""
        found = self.store.repeated()
        self.close()
        return found

    def close(self) -> None:
        self.store.close()


class _Buckets:
    """The ranges in memory: range k in region k of one array, preallocated (its pages
    are only touched as hashes come), each region a little larger than a range's
    expected share (six standard deviations: equal ranges of random-looking hashes);
    what a region cannot hold (many equal ids, or more rows than expected) waits in a
    list beside it."""

    def __init__(self, expected: int, parts: int):
        mean = expected / parts
        self.capacity = int(mean + 6 * math.sqrt(mean)) + 64
        self.data = np.empty(self.capacity * parts, dtype=np.uint64)
        self.filled = [0] * parts
        self.extra: list[list[np.ndarray]] = [[] for _ in range(parts)]

    def add(self, ordered: np.ndarray, bounds: list[int]) -> None:
        capacity, data, filled = self.capacity, self.data, self.filled
        for k in range(len(filled)):
            lo, hi = bounds[k], bounds[k + 1]
            if lo == hi:
                continue
            at = filled[k]
            take = min(hi - lo, capacity - at)
            start = k * capacity + at
            data[start:start + take] = ordered[lo:lo + take]
            filled[k] = at + take
            if lo + take < hi:
                self.extra[k].append(ordered[lo + take:hi].copy())

    def repeated(self) -> np.ndarray:
        def one(k: int) -> np.ndarray:
            start = k * self.capacity
            bucket = self.data[start:start + self.filled[k]]
            if self.extra[k]:
                bucket = np.concatenate([bucket, *self.extra[k]])
            bucket.sort()  # in place; NumPy releases the GIL: both cores sort
            return repeated_sorted(bucket)
        found = list(_pool().map(one, range(len(self.filled))))
        return np.concatenate(found)  # each range's sorted, the ranges in order

    def close(self) -> None:
        self.data = NOTHING
        self.extra = [[] for _ in self.filled]


class _Files:
    """The ranges on disk, a file each, in a folder named as store.DiskStore's spill
    folders (`tanpu-batch-PID-*`), so that a killed run's is removed by the next run that
    spills; `close` removes it."""

    def __init__(self, parts: int):
        self.folder = tempfile.mkdtemp(prefix=f"tanpu-batch-{os.getpid()}-ids-")
        self.handles = [open(os.path.join(self.folder, f"{k}.u64"), "wb") for k in range(parts)]

    def add(self, ordered: np.ndarray, bounds: list[int]) -> None:
        for k, handle in enumerate(self.handles):
            if bounds[k] < bounds[k + 1]:
                ordered[bounds[k]:bounds[k + 1]].tofile(handle)

    def repeated(self) -> np.ndarray:
        self._close_handles()

        def one(k: int) -> np.ndarray:
            path = os.path.join(self.folder, f"{k}.u64")
            bucket = np.fromfile(path, dtype=np.uint64)
            os.unlink(path)  # the disk given back as soon as it is read
            bucket.sort()
            return repeated_sorted(bucket)
        # two files at a time, one a core (the memory of two files)
        found = list(_pool().map(one, range(len(self.handles))))
        return np.concatenate(found) if found else NOTHING

    def _close_handles(self) -> None:
        for handle in self.handles:
            handle.close()

    def close(self) -> None:
        self._close_handles()
        shutil.rmtree(self.folder, ignore_errors=True)


def _pool() -> ThreadPoolExecutor:
    return pools.pool("hashes", pools.up_to(2))
