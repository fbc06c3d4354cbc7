"""Hypothesis strategies for activity records of any methodology, from its own schema.

Streams are built to exercise cross-record rules: few accounts, times packed into a
few days, repeated ids and overlapping intervals, values near the bounds; and raw
records (as a CSV or JSON would give them) that are sometimes broken.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from hypothesis import strategies as st

from dsl.ir import ast as ir
from dsl.types import Kind

BASE = dt.datetime(2024, 5, 20, 6, 0)  # local time, naive: the methodology's zone applies


def _number_text(value: float) -> str:
    return format(Decimal(repr(value)).normalize(), "f")


def quantity_text(spec: ir.InputSpec, draw) -> str:
    unit = spec.type.unit
    if not spec.type.dimension:
        return _number_text(draw(st.floats(min_value=0, max_value=1000, allow_nan=False)))
    low = unit.from_si(spec.low) if spec.low is not None else 0.0
    high = unit.from_si(spec.high) if spec.high is not None else low + 500.0
    value = draw(st.one_of(
        st.decimals(min_value=Decimal(repr(low)), max_value=Decimal(repr(high)), places=3,
                    allow_nan=False, allow_infinity=False),
        st.sampled_from([Decimal(repr(low)), Decimal(repr(high))]),
    ))
    return f"{value.normalize():f} {unit.text}"


@st.composite
def record(draw, methodology: ir.Methodology, index: int, broken: bool = False) -> dict:
    raw: dict = {
        "id": f"r{draw(st.integers(min_value=0, max_value=max(3, index)))}" if draw(st.booleans()) else f"r{index}",
        "account": draw(st.sampled_from(["a", "b", "c"])),
    }
    start = BASE + dt.timedelta(minutes=draw(st.integers(min_value=0, max_value=3 * 24 * 60)))
    has_datetime = False
    for spec in methodology.inputs:
        kind = spec.type.kind
        if kind == Kind.QUANTITY:
            raw[spec.name] = quantity_text(spec, draw)
        elif kind == Kind.INTEGER:
            raw[spec.name] = str(draw(st.integers(min_value=0, max_value=50)))
        elif kind == Kind.BOOLEAN:
            raw[spec.name] = draw(st.sampled_from(["true", "false"]))
        elif kind == Kind.CHOICE:
            raw[spec.name] = draw(st.sampled_from(spec.type.choices))
        elif kind == Kind.DATE:
            raw[spec.name] = (start.date()).isoformat()
        elif kind == Kind.DATETIME:
            if not has_datetime:
                raw[spec.name] = start.isoformat(timespec="minutes")
                has_datetime = True
            else:
                end = start + dt.timedelta(minutes=draw(st.integers(min_value=-5, max_value=90)))
                raw[spec.name] = end.isoformat(timespec="minutes")
        else:
            raw[spec.name] = draw(st.text(alphabet="abc", min_size=0, max_size=3))
    if not has_datetime:
        raw["time"] = start.isoformat(timespec="minutes")
    if broken and raw and draw(st.integers(min_value=0, max_value=9)) == 0:
        name = draw(st.sampled_from(sorted(raw)))
        raw[name] = draw(st.sampled_from(["", "abc", "8.2", "-", "2024-13-45"]))
    return raw


@st.composite
def record_stream(draw, methodology: ir.Methodology, max_size: int = 40, broken: bool = True) -> list[dict]:
    size = draw(st.integers(min_value=0, max_value=max_size))
    return [draw(record(methodology, i, broken)) for i in range(size)]
