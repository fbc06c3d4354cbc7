"""engine/native/numeric.h gives engine/numeric.py's bits.

The generated kernels include numeric.h; the extension engine.native._fixed exports each
of its functions (numeric.c), compiled with the kernels' -ffp-contract=off and no
fast-math, so that each can be compared here with its Python counterpart on any float:
nan, ±inf, ±0, subnormals, halves, huge values. Two nans count as equal whatever their
payload or sign (neither path promises one).
"""

from __future__ import annotations

import ctypes
import math
import struct

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engine import numeric
from engine.native import fixed

LIBRARY = fixed()
pytestmark = pytest.mark.skipif(LIBRARY is None, reason="the extension engine.native._fixed is not built")

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1

# nan, ±inf, ±0, subnormals, values at the snap's and at the int64 range's edges, then
# any float at all (Hypothesis also draws nans with other payloads)
AWKWARD = [math.nan, -math.nan, math.inf, -math.inf, 0.0, -0.0, 5e-324, -5e-324, 2.2250738585072009e-308,
           0.5, -0.5, 1.5, 2.5, -2.5, 0.49999999999999994, 4503599627370496.5, 9007199254740993.0,
           2.0 ** 63, -(2.0 ** 63), 2.0 ** 63 - 1024, 1e300, -1e300, 1.7976931348623157e308,
           0.3 / 0.1, 2.675, 1.0000000000001, 0.9999999999999999, 1e-7 * 5, 0.0000015]
FLOATS = st.one_of(st.sampled_from(AWKWARD), st.floats(), st.floats(width=32).map(float),
                   st.integers(-10 ** 9, 10 ** 9).map(lambda n: n / 2 ** 10))
INTS = st.one_of(st.sampled_from([0, 1, -1, INT64_MIN, INT64_MAX, INT64_MIN + 1]),
                 st.integers(INT64_MIN, INT64_MAX))


def _c(name: str, argtypes, restype):
    function = getattr(LIBRARY, name)
    function.argtypes, function.restype = argtypes, restype
    return function


if LIBRARY is not None:
    D, I = ctypes.c_double, ctypes.c_int64
    SNAP, FLOOR, CEIL, HALF_AWAY = (_c(f"tanpu_{n}", (D,), D) for n in ("snap", "floor", "ceil", "half_away"))
    DMIN, DMAX = _c("tanpu_dmin", (D, D), D), _c("tanpu_dmax", (D, D), D)
    TO_MG, TO_I64 = _c("tanpu_to_mg", (D,), D), _c("tanpu_to_i64", (D,), I)
    IMIN, IMAX, ADD, SUB, MUL, FLOORDIV = (_c(f"tanpu_{n}", (I, I), I)
                                           for n in ("imin", "imax", "add", "sub", "mul", "floordiv"))
    NEG, IABS = _c("tanpu_neg", (I,), I), _c("tanpu_iabs", (I,), I)


def _bits(value: float) -> bytes:
    return b"nan" if value != value else struct.pack("<d", value)


def _wrap(n: int) -> int:
    """n as the int64 it wraps to (two's complement), as NumPy's int64 operations do."""
    return (n + (1 << 63)) % (1 << 64) - (1 << 63)


def _to_i64(x: float) -> int:
    """What NumPy's astype(int64) gives on x86: the truncation, or INT64_MIN where it does
    not fit (nan and ±inf too)."""
    return int(x) if -(2.0 ** 63) <= x < 2.0 ** 63 else INT64_MIN


EXAMPLES = settings(max_examples=1000, deadline=None)


@EXAMPLES
@given(FLOATS)
@example(math.nan)
@example(-0.0)
@example(5e-324)
@example(1e308)
def test_one_argument_functions(q):
    assert _bits(SNAP(q)) == _bits(numeric.snap(q))
    assert _bits(FLOOR(q)) == _bits(numeric.floor(q))
    assert _bits(CEIL(q)) == _bits(numeric.ceil(q))
    assert _bits(HALF_AWAY(q)) == _bits(numeric.half_away(q))
    assert TO_I64(q) == _to_i64(q)


@EXAMPLES
@given(FLOATS, FLOATS)
@example(0.0, -0.0)
@example(-0.0, 0.0)
@example(math.nan, 1.0)
@example(1.0, math.nan)
def test_minimum_and_maximum(a, b):
    assert _bits(DMIN(a, b)) == _bits(numeric.minimum(a, b))
    assert _bits(DMAX(a, b)) == _bits(numeric.maximum(a, b))


@EXAMPLES
@given(FLOATS)
@example(0.0000005)
@example(-0.0000005)
@example(0.0000015)
@example(1e300)
@example(9.3e12)
def test_rounding_to_whole_mg(kilograms):
    mg = TO_MG(kilograms)
    assert _bits(mg) == _bits(numeric.to_mg(kilograms))
    whole = numeric.whole_mg(kilograms) if math.isfinite(kilograms) else None
    if isinstance(whole, int):  # and what a kernel stores, the int64 of that float
        assert mg == whole
        assert TO_I64(mg) == (whole if INT64_MIN <= whole <= INT64_MAX else INT64_MIN)
    elif whole is not None:  # finite kg, a mass beyond a float in mg: not finite either way
        assert not math.isfinite(mg) and _bits(mg) == _bits(whole)


@EXAMPLES
@given(INTS, INTS)
def test_int64_helpers_wrap_as_numpy_does(a, b):
    assert IMIN(a, b) == min(a, b) and IMAX(a, b) == max(a, b)
    assert ADD(a, b) == _wrap(a + b) and SUB(a, b) == _wrap(a - b) and MUL(a, b) == _wrap(a * b)
    assert NEG(a) == _wrap(-a) and IABS(a) == _wrap(abs(a))
    if b != 0 and not (a == INT64_MIN and b == -1):  # the one quotient C cannot hold
        assert FLOORDIV(a, b) == a // b
