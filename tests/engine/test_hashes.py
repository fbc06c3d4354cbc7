"""hashes.RepeatedHashes: the values added more than once, whichever way they are kept.

Differential against NumPy's unique-with-counts, on values drawn near the edges of the
ranges (where a binary search could put a value in the neighbouring range and hide its
copy) and across chunks, in memory (many small ranges, regions overflowing) and in
files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from engine.batch.hashes import RepeatedHashes, edges

TOP = (1 << 64) - 1


def _expected(values: np.ndarray) -> np.ndarray:
    distinct, counts = np.unique(values, return_counts=True)
    return distinct[counts > 1]


def _near_edges(parts: int) -> st.SearchStrategy[int]:
    """Values at, just below and just above the first value of each range, and anywhere."""
    cuts = [int(e) for e in edges(parts)[:-1]] + [TOP]
    near = st.builds(lambda c, d: min(TOP, max(0, c + d)), st.sampled_from(cuts), st.integers(-2, 2))
    return st.one_of(near, st.integers(0, TOP))


@st.composite
def _case(draw):
    # (memory_rows, bucket_rows, file_rows): a few hashes per range in memory, or files
    layout = draw(st.sampled_from([(1 << 20, 1, 1 << 20), (1 << 20, 4, 1 << 20), (1 << 20, 1 << 20, 1),
                                   (2, 1, 3), (1, 1, 1)]))
    memory_rows, bucket_rows, file_rows = layout
    expected = draw(st.integers(0, 60))
    probe = RepeatedHashes(expected, memory_rows, file_rows, bucket_rows)
    parts = probe.parts
    probe.close()
    values = draw(st.lists(_near_edges(parts), max_size=80))
    if values and draw(st.booleans()):  # one value many times: a region overflows
        values += [values[0]] * draw(st.integers(1, 40))
    values = draw(st.permutations(values))
    chunk = draw(st.integers(1, 17))
    return expected, layout, np.array(values, dtype=np.uint64), chunk


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(_case())
def test_the_repeated_values_are_numpys_in_memory_and_in_files(case):
    expected, (memory_rows, bucket_rows, file_rows), values, chunk = case
    hashes = RepeatedHashes(expected, memory_rows, file_rows, bucket_rows)
    try:
        for start in range(0, values.size, chunk):
            hashes.add(hashes.prepare(values[start:start + chunk]))
        found = hashes.repeated()
    finally:
        hashes.close()
    assert found.dtype == np.uint64
    assert np.array_equal(found, _expected(values))
    assert not list(Path(tempfile.gettempdir()).glob(f"tanpu-batch-{os.getpid()}-ids-*"))


def test_a_copy_in_the_next_range_or_chunk_is_found_at_every_edge():
    """Each range's first value and the value before it, added in different chunks, once
    and twice: only the doubled ones are repeated, in memory (16 ranges) and in 5 files."""
    for expected, memory_rows, file_rows, bucket_rows in ((64, 1 << 20, 1 << 20, 4), (64, 8, 13, 1)):
        hashes = RepeatedHashes(expected, memory_rows, file_rows, bucket_rows)
        cuts = edges(hashes.parts)[1:-1]
        assert cuts.size == hashes.parts - 1 and hashes.parts > 4
        doubled = np.concatenate([cuts, cuts - np.uint64(1), np.array([0, TOP], dtype=np.uint64)])
        single = cuts + np.uint64(1)
        for piece in (doubled, single, doubled[::-1]):
            hashes.add(hashes.prepare(piece))
        assert np.array_equal(hashes.repeated(), np.unique(doubled))


def test_more_rows_than_expected_are_still_all_compared():
    """A file of more rows than its estimate (or 10,000 copies of one id): the regions
    overflow into their lists, and every copy still meets the others."""
    rng = np.random.default_rng(7)
    values = rng.integers(0, TOP, size=20_000, dtype=np.uint64, endpoint=True)
    values[::2] = values[1]
    hashes = RepeatedHashes(100, bucket_rows=8)
    for start in range(0, values.size, 999):
        hashes.add(hashes.prepare(values[start:start + 999]))
    assert np.array_equal(hashes.repeated(), _expected(values))
