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

import json
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Optional

from . import cache

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
    # Countable things, each its own dimension (kg/person is not kg/device), and money as
    # its own dimension (CNY never converts to a mass): what counters, rewards and
    # per-device or per-person factors are written in (docs/language.md §11).
    "device = [device]",
    "household = [household]",
    "person = [person]",
    "ride = [ride]",
    "trip = [trip]",
    "CNY = [currency] = yuan = RMB",
    "jiao = 0.1 CNY",
    "fen = 0.01 CNY",
]
# The dimensions of those units: a counter's unit must be one of them (E0317).
COUNT_DIMENSIONS = frozenset({(("[device]", 1),), (("[household]", 1),), (("[person]", 1),),
                              (("[ride]", 1),), (("[trip]", 1),)})
CURRENCY = (("[currency]", 1),)

_REGISTRY_OPTIONS = {"autoconvert_offset_to_baseunit": False}

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
    (("[currency]", 1),): "an amount of money",
    (("[device]", 1),): "a count of devices",
    (("[household]", 1),): "a count of households",
    (("[person]", 1),): "a count of persons",
    (("[ride]", 1),): "a count of rides",
    (("[trip]", 1),): "a count of trips",
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

    registry = pint.UnitRegistry(non_int_type=Decimal, **_REGISTRY_OPTIONS)
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


# The longest unit text looked at (the longest real one, `kgCO2e/passenger/km`, has
# 19): Pint's parse of one long unknown word takes time with the square of its length
# (10,000 characters: 2.4 s), so longer text is refused before Pint sees it (issue 17).
MAX_UNIT_LENGTH = 100


@lru_cache(maxsize=4096)
def parse_unit(text: str) -> Unit:
    """``"g/km"`` -> Unit(g/km, mass/length, 1/1000000). Raises UnitError.

    Building Pint's registry takes most of a second, so what Pint answered is remembered:
    the answers for common units ship in dsl/unit_table.py, others are kept in the user's
    cache (dsl/cache.py). Either way the result is the one Pint gives.
    """
    text = text.strip()
    if text in ("", "1"):
        return ONE
    if len(text) > MAX_UNIT_LENGTH:  # before Pint, whose time grows with the square of it
        raise UnitError(text[:40] + "…", f"a unit is at most {MAX_UNIT_LENGTH} characters")
    if not all(c.isalnum() or c in "/*·^-_%° µ()." for c in text):
        raise UnitError(text, "unknown unit")
    known = _remembered().units.get(text)
    if known is None:
        try:
            known = _pint_parse_unit(text)
        except UnitError as error:
            _remembered().remember_unit(text, error.reason)
            raise
        _remembered().remember_unit(text, known)
    if isinstance(known, str):
        raise UnitError(text, known)
    return known


def _pint_parse_unit(text: str) -> Unit:
    """parse_unit by Pint itself (``text`` is stripped and not "" or "1")."""
    import pint

    registry = _registry()
    try:
        parsed = registry.parse_units(text.replace("·", "*"))
    except (pint.errors.UndefinedUnitError, pint.errors.DefinitionSyntaxError, AttributeError,
            TypeError, ValueError, KeyError, AssertionError, SyntaxError) as error:
        raise UnitError(text, "unknown unit") from error
    except (TimeoutError, MemoryError, RecursionError):
        raise  # the caller's time or memory running out is not an unknown unit
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


class _Memory:
    """What Pint answered, by unit text and by product: shipped, cached, and this run's."""

    VERSION = 1  # of the cache file's layout

    def __init__(self, key: Optional[str]):
        self.key = key  # None: Pint is not installed, nothing is cached
        self.units: dict[str, Unit | str] = {}  # text -> Unit, or the reason it is refused
        self.products: dict[tuple[str, str, int], str] = {}
        self._new_units: dict[str, Unit | str] = {}
        self._new_products: dict[tuple[str, str, int], str] = {}

    @property
    def file_name(self) -> str:
        return f"units-{self.key[:32]}.json"

    def load(self, data: Optional[bytes]) -> None:
        """Add the entries of a cache file; a file that is not exactly ours adds nothing."""
        if not data:
            return
        try:
            units, products = self._decode(data)
        except Exception:  # stale, truncated or corrupt: Pint answers again
            return
        self.units.update(units)
        self.products.update(products)

    def _decode(self, data: bytes):
        content = json.loads(data.decode("utf-8"))
        if content["key"] != self.key or content["version"] != self.VERSION:
            raise ValueError("another Pint or another layout")
        units: dict[str, Unit | str] = {}
        for text, value in content["units"].items():
            units[_str(text)] = _str(value) if isinstance(value, str) else _unit_of_entry(value)
        products = {}
        for a, b, sign, text in content["products"]:
            if sign not in (1, -1) or isinstance(sign, bool):
                raise ValueError("sign")
            products[(_str(a), _str(b), sign)] = _str(text)
        return units, products

    def remember_unit(self, text: str, value: Unit | str) -> None:
        self.units[text] = self._new_units[text] = value
        self._save()

    def remember_product(self, key: tuple[str, str, int], text: str) -> None:
        self.products[key] = self._new_products[key] = text
        self._save()

    def _save(self) -> None:
        if self.key is None:
            return
        merged = _Memory(self.key)
        merged.load(cache.read(self.file_name))
        merged.units.update(self._new_units)
        merged.products.update(self._new_products)
        cache.write(self.file_name, merged.to_json().encode("utf-8"))

    def to_json(self, indent: Optional[int] = None) -> str:
        content = {
            "key": self.key, "version": self.VERSION,
            "units": {text: value if isinstance(value, str) else _entry_of_unit(value)
                      for text, value in self.units.items()},
            "products": [[a, b, sign, text] for (a, b, sign), text in self.products.items()],
        }
        if indent is None:
            return json.dumps(content, ensure_ascii=False)
        # one entry a line: a readable, diffable dsl/unit_table.py
        lines = ['{"key": %s, "version": %d,' % (json.dumps(self.key), self.VERSION), '"units": {']
        lines += [",\n".join(f"{json.dumps(t, ensure_ascii=False)}: "
                              f"{json.dumps(e, ensure_ascii=False)}"
                              for t, e in content["units"].items())]
        lines += ['},', '"products": [']
        lines += [",\n".join(json.dumps(p, ensure_ascii=False) for p in content["products"])]
        lines += [']}']
        return "\n".join(lines)


def _str(value) -> str:
    if not isinstance(value, str):
        raise ValueError("not a text")
    return value


def _entry_of_unit(unit: Unit) -> list:
    return [unit.text, [[dim, exp] for dim, exp in unit.dimension],
            unit.factor.numerator, unit.factor.denominator]


def _unit_of_entry(entry) -> Unit:
    text, dimension, numerator, denominator = entry
    dim = tuple((_str(d), e) for d, e in dimension)
    if not all(type(e) is int for _, e in dim) or type(numerator) is not int \
            or type(denominator) is not int or denominator <= 0:
        raise ValueError("not a unit")
    return Unit(_str(text), dim, Fraction(numerator, denominator))


@lru_cache(maxsize=1)
def _remembered() -> _Memory:
    version = cache.installed_version("pint")
    if version is None:
        return _Memory(None)
    key = _memory_key(version)
    memory = _Memory(key)
    from . import unit_table
    if unit_table.KEY == key:  # the same Pint version and definitions
        memory.load(unit_table.DATA.encode("utf-8"))
    memory.load(cache.read(memory.file_name))
    return memory


def _memory_key(version: str) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(
        [version, _DEFINITIONS, _REGISTRY_OPTIONS, _Memory.VERSION]).encode("utf-8")).hexdigest()


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
    key = (a, b, sign)
    text = _remembered().products.get(key)
    if text is None:
        text = _pint_display_product(a, b, sign)
        _remembered().remember_product(key, text)
    return text


def _pint_display_product(a: str, b: str, sign: int) -> str:
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


@lru_cache(maxsize=64)
def units_of(dimension: Dimension, limit: int = 8) -> tuple[str, ...]:
    """Common units of a dimension (those dsl/unit_table.py lists), for error messages
    that say which units are accepted: units_of(length) -> ('km', 'm', 'mi', ...)."""
    from . import unit_table
    units = json.loads(unit_table.DATA)["units"]
    found = [text for text, entry in units.items()
             if isinstance(entry, list) and tuple(tuple(d) for d in entry[1]) == tuple(dimension)
             and entry[0] == text]
    # the plainest first: SI-prefixed metric units before long names
    found.sort(key=lambda t: (len(t) > 3, t.lower()))
    return tuple(found[:limit])
