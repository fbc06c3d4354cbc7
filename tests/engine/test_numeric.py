"""The scalar numeric helpers give the bits NumPy gives for the same operations.

This is the contract that lets the scalar and columnar paths agree bit for bit, so it
is tested differentially on floats hypothesis picks (nan, ±inf, ±0, subnormals included).
"""

import math
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsl.ir.ast import SNAP_TOLERANCE
from engine import numeric

# the example counts are the profile's: `make fuzz` runs this file with its budget
pytestmark = pytest.mark.fuzz

floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


def bits(x) -> bytes:
    """The exact bits; any nan counts as one value, since a nan never reaches a result
    (a definition that is nan rejects the record) and its sign bit is platform noise."""
    x = float(x)
    return b"nan" if x != x else struct.pack("<d", x)


def np_snap(q):
    q = np.float64(q)
    with np.errstate(invalid="ignore", over="ignore"):
        h = q * 2.0
        n = np.rint(h)
        close = np.abs(h - n) <= SNAP_TOLERANCE * np.maximum(1.0, np.abs(h))
    return np.where(close, n * 0.5, q)


@given(floats, floats)
def test_division_matches_numpy(a, b):
    with np.errstate(all="ignore"):
        expected = np.divide(np.float64(a), np.float64(b))
    assert bits(numeric.div(a, b)) == bits(expected)


@given(floats, floats)
def test_min_max_match_numpy(a, b):
    assert bits(numeric.minimum(a, b)) == bits(np.minimum(np.float64(a), np.float64(b)))
    assert bits(numeric.maximum(a, b)) == bits(np.maximum(np.float64(a), np.float64(b)))


@given(floats)
def test_snap_matches_numpy(q):
    assert bits(numeric.snap(q)) == bits(np_snap(q))


@given(floats)
def test_floor_ceil_half_away_match_numpy(q):
    x = np.float64(q)
    assert bits(numeric.floor(q)) == bits(np.floor(x))
    assert bits(numeric.ceil(q)) == bits(np.ceil(x))
    with np.errstate(invalid="ignore"):
        assert bits(numeric.half_away(q)) == bits(np.copysign(np.floor(np.abs(x) + 0.5), x))


def test_snapping_fixes_binary_artefacts():
    assert 0.3 / 0.1 < 3  # the artefact itself
    assert numeric.round_to(0.3 / 0.1, 1.0, "floor") == 3.0
    assert numeric.round_to(2.675, 0.01, "round") == 2.68  # half away from zero, as written
    assert numeric.round_to(-2.5, 1.0, "round") == -3.0
    assert numeric.round_to(2.5, 1.0, "floor") == 2.0
    assert numeric.round_to(2.0000001, 1.0, "ceil") == 3.0  # far from an integer: no snap


def test_quantization_to_whole_milligrams():
    assert numeric.to_mg(26.9e-6 * 8200.0) == 220580.0  # 26.9 g/km × 8.2 km
    assert numeric.to_mg(0.0000005) == 1.0  # half a milligram rounds away from zero
    assert numeric.to_mg(-0.0000005) == -1.0
    assert math.isnan(numeric.to_mg(math.nan))


@given(finite, st.sampled_from([1.0, 0.001, 0.01, 0.5, 1000.0]), st.sampled_from(["round", "floor", "ceil"]))
def test_round_to_matches_numpy(x, precision, mode):
    with np.errstate(all="ignore"):
        q = np.float64(x) / precision if precision != 1.0 else np.float64(x)
        s = np_snap(q)
        r = {"floor": np.floor, "ceil": np.ceil,
             "round": lambda v: np.copysign(np.floor(np.abs(v) + 0.5), v)}[mode](s)
        expected = r * precision if precision != 1.0 else r
    assert bits(numeric.round_to(x, precision, mode)) == bits(expected)


@given(floats)
def test_whole_mg_is_the_quantization_as_an_integer(kilograms):
    mg = numeric.to_mg(kilograms)
    if math.isfinite(mg):
        assert numeric.whole_mg(kilograms) == int(mg)
    elif math.isinf(mg):  # beyond any float in mg: the caller rejects it as too large
        assert numeric.whole_mg(kilograms) == mg
    with np.errstate(invalid="ignore", over="ignore"):
        expected = np.copysign(np.floor(np.abs(np_snap(np.float64(kilograms) * 1e6)) + 0.5),
                               np_snap(np.float64(kilograms) * 1e6))
    assert bits(mg) == bits(expected)


@given(st.integers(-2 ** 60, 2 ** 60), st.sampled_from([0.0, 1e-13, -1e-13, 0.25, 0.5, -0.5, 1e-9]))
def test_snap_near_halves_matches_numpy(k, d):
    q = k / 2 + d
    assert bits(numeric.snap(q)) == bits(np_snap(q))



# ---------------------------------------------------------------- against exact decimals
from fractions import Fraction  # noqa: E402


def _decimal(mantissa: int, exponent: int) -> str:
    return f"{mantissa}e{exponent}"


def _half_away(q: Fraction) -> int:
    whole = (abs(q) + Fraction(1, 2)).__floor__()
    return whole if q >= 0 else -whole


@given(st.integers(-9_999_999, 9_999_999), st.integers(-12, -1),
       st.integers(0, 9_999_999), st.integers(-10, -7))
def test_quantization_is_exact_decimal_arithmetic_up_to_a_trillion_mg(ma, ea, mb, eb):
    """Issue 12: the mg of a mass times a factor, each a decimal of up to 7 significant
    digits (masses up to 10^12 mg), is the exact rational product rounded half away from
    zero: the snap (16-32 ulps) only absorbs the float error of results that are exactly
    a half or whole, and never moves one that is not (2**-40 moved 275.0000000004 t)."""
    a, b = _decimal(ma, ea), _decimal(mb, eb)  # a in kg (below 10^6), b a factor below 1
    exact = _half_away(Fraction(a) * Fraction(b) * 1_000_000)
    assert numeric.whole_mg(float(a) * float(b)) == exact


def test_a_large_mass_keeps_its_milligrams():
    assert numeric.whole_mg(float("275000.0000004")) == 275_000_000_000  # 275 t + 0.4 mg
    assert numeric.whole_mg(float("275000.0000006")) == 275_000_000_001  # 275 t + 0.6 mg
    assert numeric.whole_mg(0.3 / 0.1 * 1e-6) == 3  # 2.9999999999999996 mg is 3
