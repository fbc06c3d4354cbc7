"""engine/batch/native_text.py: the whitespace scan in C flags what text.py's NumPy test flags."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.batch import text as tx
from engine.batch.native_text import NativeText
from engine.native import fixed

# built by pip with the package (setup.py); tests/test_packaging.py fails where it is not
pytestmark = pytest.mark.skipif(fixed() is None, reason="the extension engine.native._fixed is not built")

NATIVE = NativeText()

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


def _bytes(cells) -> tx.Bytes:
    return tx.Bytes.of(pl.Series("c", cells, dtype=pl.String))


_DIGITS = st.text(alphabet="0123456789", min_size=0, max_size=18)
_NUMBER_CELL = st.one_of(
    st.tuples(st.sampled_from(["", "+", "-", "--"]), _DIGITS, st.sampled_from(["", ".", ".."]), _DIGITS,
              st.sampled_from(["", "e3", "E", " ", "  ", "\t"]), st.sampled_from(["", "km", "kg ", "g/km", "公里"]))
    .map("".join),
    st.text(max_size=44), st.none())


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_NUMBER_CELL, max_size=50))
def test_decimals_in_c_are_numpys(cells):
    text = _bytes(cells)
    expected, got = tx.decimals(text), NATIVE.decimals(text)
    assert got.ok.tolist() == expected.ok.tolist()
    ok = expected.ok
    for name in ("value", "mantissa", "negative", "dots", "unit_start"):
        a, b = getattr(got, name)[ok], getattr(expected, name)[ok]
        assert a.tobytes() == b.astype(a.dtype).tobytes(), name  # bits: -0.0 is not 0.0


def _two(low: int, high: int):
    return st.integers(low, high).map(lambda v: f"{v:02d}")


@st.composite
def _datetime_text(draw, bend: bool):
    """An ISO datetime as people write it; with `bend`, one part taken from near misses."""
    parts = [f"{draw(st.integers(1, 9999)):04d}", "-", f"{draw(st.integers(1, 12)):02d}", "-",
             f"{draw(st.integers(1, 28)):02d}",
             draw(st.sampled_from(["", "T", " "])), f"{draw(st.integers(0, 23)):02d}", ":",
             f"{draw(st.integers(0, 59)):02d}",
             draw(st.sampled_from(["", f":{draw(st.integers(0, 59)):02d}"])),
             "", draw(st.sampled_from(["", "Z", "z", "+08:00", "-05:30", "+00:00"]))]
    if parts[9]:
        parts[10] = draw(st.sampled_from(["", ".5", ".123456", ".000001"]))
    if parts[5] == "":
        parts[6:] = [""] * 6  # a date alone
    if bend:
        at = draw(st.integers(0, len(parts) - 1))
        parts[at] = draw(st.sampled_from(["", "00", "13", "29", "30", "31", "24", "60", "/", "t", "x",
                                          ".1234567", ".", "+24:00", "+0800", "Z ", "２", "-", ":"]))
    return "".join(parts)


_DATETIME_CELL = st.one_of(_datetime_text(False), _datetime_text(True), st.text(max_size=34), st.none())


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(_DATETIME_CELL, max_size=50))
def test_iso_datetimes_in_c_are_numpys(cells):
    text = _bytes(cells)
    local, offset, has_offset, ok = tx.iso_datetimes(text)
    c_local, c_offset, c_has_offset, c_ok = NATIVE.iso_datetimes(text)
    assert c_ok.tolist() == ok.tolist()
    assert c_local[ok].tolist() == local[ok].tolist()
    assert c_offset[ok].tolist() == offset[ok].tolist()
    assert c_has_offset[ok].tolist() == has_offset[ok].tolist()


_WORD = st.sampled_from(["ebus", "metro", "diesel_bus", "Ebus", "ebus ", "地铁", "", "true", "TRUE", "y"])


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(_WORD, st.none(), st.text(max_size=12)), max_size=50),
       st.lists(_WORD, max_size=6))
def test_matching_candidates_in_c_is_numpys(cells, candidates):
    text = _bytes(cells)
    assert NATIVE.match_strings(text, candidates).tolist() == tx.match_strings(text, candidates).tolist()


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(st.tuples(st.sampled_from(["1", "2.5", "-3"]),
                                    st.sampled_from(["", " ", "  "]),
                                    st.sampled_from(["km", "m", "公里", "", "kg", "km "])).map("".join),
                          st.none(), st.text(max_size=8)), max_size=60),
       st.integers(1, 4))
def test_unit_texts_in_c_are_numpys(cells, limit):
    text = _bytes(cells)
    d = tx.decimals(text)
    codes, units = NATIVE.unit_codes(text, d.unit_start, d.ok, limit)
    expected_codes, expected_units = tx.unit_codes(text, d.unit_start, d.ok, limit)
    assert units == expected_units
    assert codes.tolist() == expected_codes.tolist()


def test_without_the_extension_text_py_reads_with_one_warning(monkeypatch):
    """An installation built without engine.native._fixed: every reader is text.py's, and
    the process is told once, not at each reader or engine."""
    import sys
    import warnings

    import engine.native

    monkeypatch.setitem(sys.modules, "engine.native._fixed", None)  # import fails
    monkeypatch.setattr(engine.native, "_tried", False)
    monkeypatch.setattr(engine.native, "_library", None)
    cells = ["1.5 km", "2024-05-20T08:00", " x", None, "ebus"]
    text = _bytes(cells)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for reader in (NativeText(), NativeText()):
            got, expected = reader.decimals(text), tx.decimals(text)
            assert got.ok.tolist() == expected.ok.tolist() and got.value.tolist() == expected.value.tolist()
            assert reader.match_strings(text, ["ebus"]).tolist() == tx.match_strings(text, ["ebus"]).tolist()
            assert [a.tolist() for a in reader.iso_datetimes(text)] == [a.tolist() for a in tx.iso_datetimes(text)]
    assert [str(w.message)[:40] for w in caught] == ["the engine's C text readers are not buil"]
    assert caught[0].category is RuntimeWarning
