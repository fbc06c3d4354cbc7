"""Units: exact factors to SI, dimensions, offset units refused, unit arithmetic typed."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from dsl.ir import ast as ir
from dsl.types import Kind
from dsl.units import MASS, UnitError, describe, parse_unit

from .kit import HEADER, body, check, codes

LENGTH = (("[length]", 1),)
VOLUME = (("[length]", 3),)
TIME = (("[time]", 1),)
ENERGY = (("[length]", 2), ("[mass]", 1), ("[time]", -2))

INCH = Fraction(254, 10000)


@pytest.mark.parametrize("unit, factor, dimension", [
    ("m", Fraction(1), LENGTH),
    ("km", Fraction(1000), LENGTH),
    ("mile", Fraction(1609344, 1000), LENGTH),  # international mile, exactly
    ("mi", Fraction(1609344, 1000), LENGTH),
    ("pkm", Fraction(1000), LENGTH),  # passenger-km is a km for arithmetic
    ("L", Fraction(1, 1000), VOLUME),
    ("mL", Fraction(1, 1000000), VOLUME),
    ("gallon", 231 * INCH ** 3, VOLUME),  # US liquid gallon = 231 in³ = 3.785411784 L
    ("gal", Fraction(3785411784, 10 ** 12), VOLUME),
    ("g", Fraction(1, 1000), MASS),
    ("kg", Fraction(1), MASS),
    ("t", Fraction(1000), MASS),
    ("tonne", Fraction(1000), MASS),
    ("gCO2e", Fraction(1, 1000), MASS),
    ("kgCO2e", Fraction(1), MASS),
    ("tCO2e", Fraction(1000), MASS),
    ("s", Fraction(1), TIME),
    ("min", Fraction(60), TIME),
    ("h", Fraction(3600), TIME),
    ("day", Fraction(86400), TIME),
    ("days", Fraction(86400), TIME),
    ("week", Fraction(604800), TIME),
    ("J", Fraction(1), ENERGY),
    ("Wh", Fraction(3600), ENERGY),
    ("kWh", Fraction(3600000), ENERGY),
    ("MWh", Fraction(3600000000), ENERGY),
    ("MJ", Fraction(1000000), ENERGY),
    ("%", Fraction(1, 100), ()),
    ("1", Fraction(1), ()),
])
def test_exact_factor_and_dimension(unit, factor, dimension):
    parsed = parse_unit(unit)
    assert parsed.factor == factor
    assert parsed.dimension == dimension
    assert parsed.text == unit


@pytest.mark.parametrize("unit, factor, dimension", [
    ("g/km", Fraction(1, 1000000), (("[length]", -1), ("[mass]", 1))),
    ("kg/kWh", Fraction(1, 3600000), (("[length]", -2), ("[time]", 2))),
    ("km/h", Fraction(1000, 3600), (("[length]", 1), ("[time]", -1))),
    ("kg/L", Fraction(1000), (("[length]", -3), ("[mass]", 1))),
    ("L/km", Fraction(1, 1000000), (("[length]", 2),)),
    ("kWh/km", Fraction(3600), (("[length]", 1), ("[mass]", 1), ("[time]", -2))),
    ("m^2", Fraction(1), (("[length]", 2),)),
    ("km^-1", Fraction(1, 1000), (("[length]", -1),)),
    ("kg·km", Fraction(1000), (("[length]", 1), ("[mass]", 1))),
    ("tCO2e/MWh", Fraction(1000, 3600000000), (("[length]", -2), ("[time]", 2))),
])
def test_compound_units(unit, factor, dimension):
    parsed = parse_unit(unit)
    assert (parsed.factor, parsed.dimension) == (factor, dimension)


def test_conversions_round_once_from_the_exact_decimal():
    # 0.1 mile is exactly 160.9344 m; 0.1 * 1609.344 in floats is not
    assert parse_unit("mile").to_si(Decimal("0.1")) == 160.9344
    assert parse_unit("g/km").to_si(Decimal("26.9")) == 2.69e-05
    assert parse_unit("kWh").to_si(Decimal("0.1")) == 360000.0
    assert parse_unit("gallon").to_si(Decimal("1")) == 0.003785411784
    assert parse_unit("min").to_si(Decimal("1.5")) == 90.0


@pytest.mark.parametrize("unit", ["degC", "degF", "°C", "celsius",
                                  # logarithmic units are not multiplicative either; in a
                                  # compound Pint asks for a delta_ unit it does not define
                                  "dB", "Np", "Np*kelvin", "decibel/t", "octave·m"])
def test_offset_units_are_refused(unit):
    with pytest.raises(UnitError) as error:
        parse_unit(unit)
    assert error.value.reason == "offset unit"


@pytest.mark.parametrize("unit, reason", [
    ("furlongz", "unknown unit"), ("km^0.5", "fractional power"), ("__import__", "unknown unit"),
    ("km/", "unknown unit"), ("1/0", "unknown unit"), ("2km", "unknown unit"),
    ("km;", "unknown unit"), ("", None),
])
def test_unknown_units(unit, reason):
    if reason is None:
        assert parse_unit(unit).dimension == ()  # no unit is a plain number
        return
    with pytest.raises(UnitError) as error:
        parse_unit(unit)
    assert error.value.reason == reason


@pytest.mark.parametrize("snippet, needle", [
    ("let x = 20 degC\n", "degC"),
    ("input t: quantity [degC]\n", "degC"),
    ('parameter p [degF] = 1 source "s"\n', "degF"),
    ("let x = 20 °C\n", "°C"),
    ("let x = 1 Np*kelvin\n", "Np*kelvin"),
])
def test_offset_units_are_refused_in_a_file(snippet, needle):
    compiled = check(body(snippet))
    (error,) = compiled.errors
    assert error.code == "E0309"
    assert error.span.column == snippet.index(needle) + 1


def test_km_plus_kg_is_an_error_and_says_which_units():
    compiled = check(body("let x = 1 km + 1 kg\n"))
    (error,) = compiled.errors
    assert error.code == "E0302"
    assert error.message == "cannot add a length (km) and a mass (kg)"
    assert (error.span.line, error.span.column) == (9, 14)


def _definition(text: str, name: str) -> ir.Definition:
    compiled = check(text)
    assert compiled.ok, compiled.render()
    return compiled.methodology.definition(name)


def test_factor_times_distance_is_a_mass():
    text = HEADER + "reduction = 26.9 g/km * 8.2 km\npoints = floor(reduction / 1 g)\n"
    reduction = _definition(text, "reduction")
    assert reduction.type.kind == Kind.QUANTITY and reduction.type.dimension == MASS
    assert isinstance(reduction.expr, ir.Arith) and reduction.expr.op == "*"
    left, right = reduction.expr.left, reduction.expr.right
    assert (left.value, right.value) == (2.69e-05, 8200.0)  # both folded to SI
    points = _definition(text, "points")
    assert points.type.kind == Kind.INTEGER


@pytest.mark.parametrize("formula", [
    "26.9 g/km * distance",
    "distance * 26.9 g/km",
    "0.5810 kg/kWh * 12 kWh/km * distance / 100",
    "distance / 1 km * 1 g",
    "(distance + 1 mile) * 1 g/km",
    "distance * 0.08 L/km * 2.3 kg/L",
    "1 tCO2e / 1 MWh * 2 kWh",
    "distance / (30 km/h) * 1 kg/h",
    "max(distance, 1 km) * 1 g/km - 1 g",
    "if distance > 1 mile then 1 kg else 2 g",
])
def test_well_typed_reductions_are_masses(formula):
    text = HEADER + ("input distance: quantity [km]\n"
                     f"reduction = {formula}\npoints = floor(reduction / 1 g)\n")
    assert _definition(text, "reduction").type.dimension == MASS


@pytest.mark.parametrize("formula, found", [
    ("26.9 g/km", "a mass per length"),
    ("distance", "a length"),
    ("distance * distance * 1 g/km", "a quantity of length·mass"),
    ("1 kWh", "an energy"),
    ("2", "a whole number"),
])
def test_a_reduction_that_is_not_a_mass_says_what_it_is(formula, found):
    text = HEADER + ("input distance: quantity [km]\n"
                     f"reduction = {formula}\npoints = 1\n")
    compiled = check(text)
    (error,) = compiled.errors
    assert error.code == "E0304" and found in error.message


def test_the_declared_unit_of_a_let_is_checked_and_kept():
    text = body("let speed [km/h] = distance / (30 min)\nrequire speed < 30 km/h else FAST \"m\"\n")
    speed = _definition(text, "speed")
    assert speed.type.unit.text == "km/h"
    assert codes(check(body("let speed [km] = distance / (30 min)\n"))) == ["E0303"]


def test_an_example_in_miles_for_a_km_input_converts_exactly():
    text = body('example "e" { distance: 0.1 mile } => credited\n')
    compiled = check(text)
    assert compiled.ok, compiled.render()
    (example,) = compiled.methodology.examples
    record = dict(example.steps[0].record)
    assert record["distance"] == 160.9344


def test_input_bounds_and_defaults_are_in_si():
    text = body("input d2: quantity [km] = 1 mile between 0 m and 2 km\n"
                "require d2 > 0 km else X \"m\"\n")
    compiled = check(text)
    assert compiled.ok, compiled.render()
    spec = compiled.methodology.input("d2")
    assert (spec.default, spec.low, spec.high) == (1609.344, 0.0, 2000.0)


@pytest.mark.parametrize("dimension, words", [
    ((), "a plain number"), (MASS, "a mass"), (LENGTH, "a length"), (TIME, "a duration"),
    (VOLUME, "a volume"), (ENERGY, "an energy"),
    ((("[length]", 1), ("[mass]", 1)), "a quantity of length·mass"),
    ((("[time]", -2),), "a quantity of time^-2"),
])
def test_describe(dimension, words):
    assert describe(dimension) == words


def test_unit_arithmetic_helpers():
    g_per_km, km = parse_unit("g/km"), parse_unit("km")
    product = g_per_km.times(km)
    assert product.dimension == MASS and product.factor == Fraction(1, 1000)
    assert product.text == "g"
    quotient = km.per(parse_unit("h"))
    assert quotient.dimension == parse_unit("km/h").dimension
    assert quotient.factor == Fraction(5, 18)


# ---------------------------------------------------------------- properties
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ATOMS = ["km", "m", "g", "kg", "t", "h", "min", "s", "L", "mL", "kWh", "MWh", "J", "mile",
         "gallon", "day", "%", "pkm", "tCO2e", "degC", "dB", "Np", "kelvin", "pi", "e",
         "furlongz", "x", "µm", "°", "ton"]


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from(["*", "/", "·"]), st.sampled_from(ATOMS),
                          st.sampled_from(["", "^2", "^-1", "^3", "^0"])),
                min_size=1, max_size=4))
def test_compound_units_are_exact_products_or_a_unit_error(parts):
    text = parts[0][1] + parts[0][2] + "".join(op + atom + power for op, atom, power in parts[1:])
    try:
        unit = parse_unit(text)
    except UnitError as error:
        assert error.reason in ("unknown unit", "offset unit", "fractional power")
        return
    factor, dimension = Fraction(1), {}
    for index, (op, atom, power) in enumerate(parts):
        exponent = int(power[1:]) if power else 1
        sign = -1 if index and op == "/" else 1
        try:
            part = parse_unit(atom)
        except UnitError:
            # an atom refused alone may still be part of a compound that Pint accepts:
            # °C·d is a difference (degree-days), dB/dB and furlongz^0 cancel out
            return
        factor *= part.factor ** (sign * exponent)
        for dim, exp in part.dimension:
            dimension[dim] = dimension.get(dim, 0) + sign * exponent * exp
    assert unit.factor == factor
    assert unit.dimension == tuple(sorted((d, e) for d, e in dimension.items() if e))


# ---------------------------------------------------------------- counts and money (issue 12)
@pytest.mark.parametrize("formula", [
    "2.5 MWh/device * devices / 1 MWh * 1 kg",       # per device, times devices
    "0.3 kg/person/day * people * 7 day",            # per person per day
    "1 kg/household * households",
    "40 g/ride * rides + 15 g/trip * 2 trip",
])
def test_count_units_in_compound_units_give_masses(formula):
    text = HEADER + ("input devices: quantity [device]\ninput people: quantity [person]\n"
                     "input households: quantity [household]\ninput rides: quantity [ride]\n"
                     f"reduction = {formula}\npoints = 1\n")
    compiled = check(text)
    assert compiled.ok, compiled.render()
    assert compiled.methodology.definition("reduction").type.dimension == MASS


@pytest.mark.parametrize("formula, code, found", [
    ("1 kg/person * 2 device", "E0304", "a quantity of device·mass·person^-1"),
    ("5 CNY", "E0304", "an amount of money"),
    ("price * 2 kg", "E0304", "a quantity of currency·mass"),
    ("1 kg + 5 CNY", "E0302", "cannot add a mass (kg) and an amount of money (CNY)"),
])
def test_money_and_counts_never_become_a_mass(formula, code, found):
    text = HEADER + ("input price: quantity [CNY]\n"
                     f"reduction = {formula}\npoints = 1\n")
    compiled = check(text)
    (error,) = compiled.errors
    assert error.code == code and found in error.message, error.message


def test_money_converts_within_its_own_units_exactly():
    assert parse_unit("fen").factor == Fraction(1, 100) and parse_unit("jiao").factor == Fraction(1, 10)
    assert parse_unit("yuan").dimension == parse_unit("CNY").dimension == (("[currency]", 1),)
    assert describe(parse_unit("CNY/kg").dimension) == "a quantity of currency·mass^-1"
    assert parse_unit("person").dimension != parse_unit("device").dimension
