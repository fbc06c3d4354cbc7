"""Explanations in the methodology's units (engine/explain.as_written): each value as the
methodology wrote its unit (kWh, MW, g/km), the SI value beside it, and the inputs read
back from the explanation (`"<value> <unit>"`) give the same result bit for bit
(property test over the bundled methodologies with quantity inputs of several units)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dsl import compile_source
from engine import Engine
from engine.explain import as_written, humanize, written_number

ROOT = Path(__file__).resolve().parents[2]


def _engine(name: str) -> Engine:
    compiled = compile_source((ROOT / "methodologies" / name).read_text(), name)
    assert compiled.ok
    return Engine(compiled.methodology)


TRANSIT = _engine("shenzhen-public-transit.tanpu")
SOLAR = _engine("rooftop-pv-grid.tanpu")


def _round_trip(engine: Engine, record: dict) -> None:
    zone = engine.methodology.metadata.timezone
    [first] = engine.evaluate([record], explain=True)
    steps = [as_written(s, zone) for s in humanize(first.explanation, zone)]
    assume(any(step["kind"] == "input" for step in steps))  # an input out of range: none
    again = {"id": record["id"], "account": record["account"]}
    if "time" in record:
        again["time"] = record["time"]
    for step in steps:
        if step["kind"] == "input":
            unit = step.get("unit")
            again[step["name"]] = f"{step['value']!r} {unit}" if unit and unit != "1" and \
                isinstance(step["value"], float) else step["value"]
            if "si_value" in step and isinstance(step["value"], float):
                assert step["unit"] == unit and step["si_unit"]
    [second] = engine.evaluate([again], explain=False)
    assert (second.status, second.code, second.reduction_mg, second.points) == (
        first.status, first.code, first.reduction_mg, first.points)


@settings(max_examples=150, deadline=None)
@given(km=st.decimals(min_value="0.001", max_value="200", places=3),
       mode=st.sampled_from(["metro", "ebus"]))
def test_transit_inputs_read_back_from_the_explanation(km, mode):
    _round_trip(TRANSIT, {"id": "r", "account": "a", "mode": mode, "distance": f"{km} km",
                          "boarded": "2024-06-20T08:00", "alighted": "2024-06-20T08:30"})


@settings(max_examples=150, deadline=None)
@given(kwh=st.floats(min_value=0, max_value=1e7, allow_nan=False),
       mw=st.decimals(min_value="0.001", max_value="5.9", places=4))
def test_solar_inputs_read_back_from_the_explanation(kwh, mw):
    region = SOLAR.methodology.inputs[[i.name for i in SOLAR.methodology.inputs].index("region")]
    _round_trip(SOLAR, {"id": "r", "account": "a", "time": "2024-06-20T08:00",
                        "generated": f"{kwh!r} kWh", "capacity": f"{mw} MW",
                        "region": region.type.choices[0]})


def test_values_are_in_the_written_unit_with_si_beside():
    zone = TRANSIT.methodology.metadata.timezone
    [r] = TRANSIT.evaluate([{"id": "r", "account": "a", "mode": "metro", "distance": "3 km",
                             "boarded": "2024-06-20T08:00", "alighted": "2024-06-20T08:30"}],
                           explain=True)
    steps = {s.get("name"): as_written(s, zone) for s in humanize(r.explanation, zone)}
    assert {k: steps["distance"][k] for k in ("value", "unit", "si_value", "si_unit")} == {
        "value": 3.0, "unit": "km", "si_value": 3000.0, "si_unit": "m"}
    factor = steps["reduction_factor"]
    assert (factor["value"], factor["unit"], factor["si_unit"]) == (46.7, "g/km", "kg/m")
    assert (steps["reduction"]["value"], steps["reduction"]["unit"]) == (r.reduction_mg / 1000, "g")
    assert steps["points"]["value"] == r.points and "si_value" not in steps["points"]


@pytest.mark.fuzz  # the profile's example count: `make fuzz` runs it with its budget
@given(st.floats(min_value=1e-9, max_value=1e12, allow_nan=False))
def test_a_written_number_reads_back_to_the_same_si_value(value):
    for unit in ("km", "g", "kWh", "MW", "g/km"):
        written = written_number(value, unit)
        from dsl.units import parse_unit
        factor = float(parse_unit(unit).factor)
        assert written * factor == value or abs(written * factor - value) <= abs(value) * 1e-15
