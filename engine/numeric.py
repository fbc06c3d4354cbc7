"""The numeric contract of dsl/ir/ast.py, for one value at a time.

The columnar evaluator does the same operations on arrays (engine/batch/); every helper
here is written to give the bits NumPy gives for the same IEEE-754 operations:
division by zero gives ±inf or nan instead of raising, min/max propagate nan and return
the second operand on ties (as numpy.minimum does), and floor/ceil keep the sign of a
zero result.
"""

from __future__ import annotations

import math

from dsl.ir.ast import MG_PER_KG, SNAP_TOLERANCE

_INF = math.inf
_copysign = math.copysign
_floor = math.floor
_ceil = math.ceil
_isfinite = math.isfinite
_remainder = math.remainder
_MG = float(MG_PER_KG)


def div(a, b) -> float:
    """a / b with IEEE results for a zero divisor, as numpy gives."""
    a = float(a)
    b = float(b)
    if b != 0.0:
        return a / b
    if a != a or a == 0.0:
        return math.nan
    return _copysign(_INF, a) * _copysign(1.0, b)


def minimum(a, b):
    if a != a:
        return a
    return a if a < b else b


def maximum(a, b):
    if a != a:
        return a
    return a if a > b else b


def snap(q: float) -> float:
    """q, or the multiple of 0.5 it is within a relative 2**-48 of (16 to 32 ulps).

    The nearest integer n to h = 2q is h - remainder(h, 1): the IEEE remainder is exact
    and rounds ties to even as np.rint does, and the difference is exact as well. It is
    written out without helper calls because every quantized value goes through here.
    """
    h = q * 2.0
    if h - h != 0.0:  # q or 2q not finite
        return q
    n = _copysign(h - _remainder(h, 1.0), h)
    gap = h - n
    size = -h if h < 0.0 else h
    if (-gap if gap < 0.0 else gap) <= SNAP_TOLERANCE * (size if size > 1.0 else 1.0):
        return n * 0.5
    return q


def floor(q: float) -> float:
    return _copysign(float(_floor(q)), q) if _isfinite(q) else q


def ceil(q: float) -> float:
    return _copysign(float(_ceil(q)), q) if _isfinite(q) else q


def half_away(q: float) -> float:
    return _copysign(float(_floor(abs(q) + 0.5)), q) if _isfinite(q) else q


_MODES = {"floor": floor, "ceil": ceil, "round": half_away}


def round_to(x: float, precision: float, mode: str) -> float:
    """floor/ceil/round(x, precision) per the contract; stays float (non-finite passes)."""
    x = float(x)
    q = x / precision if precision != 1.0 else x
    r = _MODES[mode](snap(q))
    return r * precision if precision != 1.0 else r


def whole_mg(kilograms: float) -> int:
    """int(to_mg(kilograms)) for a finite mass, in one call (the scalar path's hot spot).

    A mass too large for a float in mg gives the float infinity, which the caller rejects
    with every other mass beyond int64 (scalar.too_large).
    """
    q = snap(kilograms * _MG)
    if q - q != 0.0:
        return q
    r = _floor((-q if q < 0.0 else q) + 0.5)
    return -r if q < 0.0 else r


def to_mg(kilograms: float) -> float:
    """A mass in kg -> whole milligrams (as a float; non-finite passes through)."""
    return half_away(snap(kilograms * float(MG_PER_KG)))


def from_mg(milligrams: int) -> float:
    return milligrams / float(MG_PER_KG)


def is_finite(value) -> bool:
    return not isinstance(value, float) or _isfinite(value)
