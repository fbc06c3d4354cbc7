"""engine/batch/native_text.py: the whitespace scan in C flags what text.py's NumPy test flags."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.batch import text as tx
from engine.batch.native_text import NativeText
from tanpu import kernels

pytestmark = pytest.mark.skipif(kernels.compiler() is None, reason="no C compiler")

NATIVE = NativeText(kernels.build)

# the characters that decide: every kind str.strip() removes (ASCII, two- and three-byte
# UTF-8), look-alikes that it keeps (U+200B, U+FEFF, Latin-1 letters), CJK text
_PIECES = st.sampled_from([" ", "\t", "\x1c", "\x1f", "\x85", "\xa0", "\u1680", "\u2000", "\u200a",
                           "\u2028", "\u202f", "\u205f", "\u3000", "\u200b", "\ufeff", "é", "ß",
                           "张三", "a", "r1", "0", "x" * 11, "y" * 13, "\n"])
_CELL = st.one_of(st.none(), st.lists(_PIECES, max_size=6).map("".join), st.text(max_size=20))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_CELL, max_size=60))
def test_the_c_scan_flags_what_numpy_flags(cells):
    series = pl.Series("id", cells, dtype=pl.String)
    found = NATIVE.padded(series)
    assert found is not None
    suspect, present = found
    edges = tx.Edges(series)
    assert suspect.tolist() == tx.maybe_padded(series, edges).tolist()
    assert present.tolist() == (edges.length > 0).tolist()
    # and the superset holds: every cell str.strip() would change is flagged
    for cell, flagged in zip(cells, suspect.tolist()):
        if cell is not None and cell.strip() != cell:
            assert flagged


def test_a_sliced_column_and_long_cells_in_several_buffers():
    long = [f"{'长' * 10}{i} " if i % 3 == 0 else f"account-{i:08d}" for i in range(5000)]
    series = pl.concat([pl.Series("a", long), pl.Series("a", ["\u3000x", None, "y"])]).rechunk().slice(7, 4990)
    suspect, present = NATIVE.padded(series)
    assert suspect.tolist() == tx.maybe_padded(series).tolist()
    assert present.sum() == 4990
