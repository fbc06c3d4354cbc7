"""Units: dimensions and exact conversion factors, from Pint.

At run time every quantity is a binary64 float in the coherent SI unit of its dimension
(kg, m, s, J, m³ ...), so evaluation never converts anything. Conversions happen at
compile time only, where a literal such as ``26.9 g/km`` is folded to one float.

The factor of a unit is exact: Pint's registry is built with Decimal so that each unit
it knows (mile = 1609.344 m, US gallon = 231 in³) has its decimal definition, and the
factors of a compound unit are combined as Fractions. A literal is therefore rounded to
binary64 once, from its exact decimal value, and the same source always gives the same
bits on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache

# Carbon accounting writes the gas after the unit; for arithmetic they are masses.
# Person-km (pkm) is the unit of transit factors; for arithmetic it is a km.
_DEFINITIONS = [
    "gCO2e = gram",
    "kgCO2e = kilogram",
    "tCO2e = metric_ton",
    "gCO2 = gram",
    "kgCO2 = kilogram",
    "tCO2 = metric_ton",
    "pkm = kilometer = passenger_km",
]

Dimension = tuple[tuple[str, int], ...]

_NAMED_DIMENSIONS: dict[Dimension, str] = {
    (): "a plain number",
    (("[mass]", 1),): "a mass",
    (("[length]", 1),): "a length",
    (("[time]", 1),): "a duration",
    (("[length]", 3),): "a volume",
    (("[length]", 2), ("[mass]", 1), ("[time]", -2)): "an energy",
    (("[length]", 2), ("[mass]", 1), ("[time]", -3)): "a power",
    (("[length]", 1), ("[time]", -1)): "a speed",
    (("[length]", -1), ("[mass]", 1)): "a mass per length",
    (("[length]", -2), ("[time]", 2)): "a mass per energy",
    (("[length]", -3), ("[mass]", 1)): "a mass per volume",
    (("[length]", -2),): "a per-volume length",
}

MASS: Dimension = (("[mass]", 1),)
TIME: Dimension = (("[time]", 1),)
DIMENSIONLESS: Dimension = ()


class UnitError(ValueError):
    """A unit that does not exist or cannot be used in arithmetic."""

    def __init__(self, unit: str, reason: str):
        super().__init__(reason)
        self.unit = unit
        self.reason = reason


@dataclass(frozen=True)
class Unit:
    """A unit as written (for display) with its dimension and exact factor to SI."""

    text: str
    dimension: Dimension
    factor: Fraction

    def __str__(self) -> str:
        return self.text

    def to_si(self, magnitude: Fraction | Decimal | int) -> float:
        """Exact decimal magnitude in this unit -> the one nearest float in SI."""
        return float(Fraction(magnitude) * self.factor)

    def from_si(self, value: float) -> float:
        return float(Fraction(value) / self.factor) if self.factor != 1 else value

    def times(self, other: "Unit") -> "Unit":
        return _combine(self, other, 1)

    def per(self, other: "Unit") -> "Unit":
        return _combine(self, other, -1)


SI_MASS = Unit("kg", MASS, Fraction(1))
SECOND = Unit("s", TIME, Fraction(1))
ONE = Unit("1", DIMENSIONLESS, Fraction(1))


@lru_cache(maxsize=1)
def _registry():
    import pint

    registry = pint.UnitRegistry(non_int_type=Decimal, autoconvert_offset_to_baseunit=False)
    for definition in _DEFINITIONS:
        registry.define(definition)
    return registry


def _dimension_of(dimensionality) -> Dimension:
    return tuple(sorted((str(k), int(v)) for k, v in dict(dimensionality).items() if v))


@lru_cache(maxsize=4096)
def _atom(name: str) -> tuple[Fraction, Dimension]:
    registry = _registry()
    factor, _ = registry.get_base_units(name)
    dimension = _dimension_of(registry.get_dimensionality(name))
    return Fraction(Decimal(factor)), dimension


@lru_cache(maxsize=4096)
def parse_unit(text: str) -> Unit:
    """``"g/km"`` -> Unit(g/km, mass/length, 1/1000000). Raises UnitError."""
    import pint

    text = text.strip()
    if text in ("", "1"):
        return ONE
    if not all(c.isalnum() or c in "/*·^-_%° µ()." for c in text):
        raise UnitError(text, "unknown unit")
    registry = _registry()
    try:
        parsed = registry.parse_units(text.replace("·", "*"))
    except (pint.errors.UndefinedUnitError, pint.errors.DefinitionSyntaxError, AttributeError,
            TypeError, ValueError, KeyError, AssertionError, SyntaxError) as error:
        raise UnitError(text, "unknown unit") from error
    except Exception as error:  # Pint raises a variety; an unknown unit is the meaning
        raise UnitError(text, "unknown unit") from error
    factor = Fraction(1)
    dimension: dict[str, int] = {}
    for name, exponent in parsed._units.items():
        # An offset (°C) or logarithmic (dB, Np) unit is not multiplicative; in a compound
        # Pint names it `delta_...`, which it may not define (then it is not in _units).
        definition = registry._units[name] if name in registry._units else None
        if definition is None or not definition.is_multiplicative:
            raise UnitError(text, "offset unit")
        atom_factor, atom_dimension = _atom(name)
        power = int(exponent)
        if power != exponent:
            raise UnitError(text, "fractional power")
        factor *= atom_factor ** power
        for dim, exp in atom_dimension:
            dimension[dim] = dimension.get(dim, 0) + exp * power
    dim = tuple(sorted((k, v) for k, v in dimension.items() if v))
    return Unit(_short(parsed, text), dim, factor)


def _short(parsed, text: str) -> str:
    """Display text: as the author wrote it when it was already short."""
    if len(text) <= 12:
        return text
    return format(parsed, "~C")


def _combine(a: Unit, b: Unit, sign: int) -> Unit:
    dimension: dict[str, int] = dict(a.dimension)
    for dim, exp in b.dimension:
        dimension[dim] = dimension.get(dim, 0) + sign * exp
    dim = tuple(sorted((k, v) for k, v in dimension.items() if v))
    factor = a.factor * b.factor if sign > 0 else a.factor / b.factor
    return Unit(_display_product(a.text, b.text, sign), dim, factor)


@lru_cache(maxsize=4096)
def _display_product(a: str, b: str, sign: int) -> str:
    """A readable unit for a product or quotient: g/km × km -> g; km / s -> km/s."""
    registry = _registry()
    try:
        ua = registry.parse_units(a.replace("·", "*")) if a != "1" else registry.dimensionless
        ub = registry.parse_units(b.replace("·", "*")) if b != "1" else registry.dimensionless
        combined = ua * ub if sign > 0 else ua / ub
        text = format(combined, "~C")
        return text if text else "1"
    except Exception:
        return f"{a}{'·' if sign > 0 else '/'}{b}"


def describe(dimension: Dimension) -> str:
    """``a mass``, ``a length``, or the dimension formula for the unnamed ones."""
    named = _NAMED_DIMENSIONS.get(dimension)
    if named:
        return named
    parts = []
    for dim, exp in dimension:
        base = dim.strip("[]")
        parts.append(base if exp == 1 else f"{base}^{exp}")
    return "a quantity of " + "·".join(parts)
