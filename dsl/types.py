"""The types of values in a methodology, shared by the checker and the IR."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional

from .units import DIMENSIONLESS, MASS, ONE, TIME, Dimension, Unit, describe


class Kind(str, Enum):
    QUANTITY = "quantity"  # a float in SI; dimensionless quantities are plain numbers
    INTEGER = "integer"
    BOOLEAN = "boolean"
    TEXT = "text"
    CHOICE = "choice"
    DATE = "date"
    DATETIME = "datetime"


@dataclass(frozen=True)
class Type:
    kind: Kind
    unit: Unit = ONE  # display unit of a quantity; its dimension is what is checked
    choices: tuple[str, ...] = ()  # the values of a choice, in declaration order
    choice_of: str = ""  # the input a choice type belongs to (for messages)

    @property
    def dimension(self) -> Dimension:
        return self.unit.dimension if self.kind == Kind.QUANTITY else DIMENSIONLESS

    @property
    def is_numeric(self) -> bool:
        return self.kind in (Kind.QUANTITY, Kind.INTEGER)

    @property
    def is_number(self) -> bool:
        """Dimensionless: a plain number or an integer."""
        return self.is_numeric and not self.dimension

    def describe(self) -> str:
        if self.kind == Kind.QUANTITY:
            if not self.dimension:
                return "a number"
            return f"{describe(self.dimension)} ({self.unit.text})"
        if self.kind == Kind.CHOICE:
            return f"a choice of `{self.choice_of}`" if self.choice_of else "a choice"
        return {Kind.INTEGER: "a whole number", Kind.BOOLEAN: "true or false",
                Kind.TEXT: "text", Kind.DATE: "a date", Kind.DATETIME: "a datetime"}[self.kind]

    def same_shape(self, other: "Type") -> bool:
        """Values of the two types can be compared, added or chosen between."""
        if self.is_numeric and other.is_numeric:
            return self.dimension == other.dimension
        if self.kind == Kind.CHOICE and other.kind == Kind.CHOICE:
            return self.choices == other.choices
        return self.kind == other.kind

    def to_json(self) -> dict:
        out: dict = {"kind": self.kind.value}
        if self.kind == Kind.QUANTITY:
            out["unit"] = self.unit.text
            out["dimension"] = [list(d) for d in self.dimension]
        if self.kind == Kind.CHOICE:
            out["choices"] = list(self.choices)
        return out


NUMBER = Type(Kind.QUANTITY, ONE)
INTEGER = Type(Kind.INTEGER)
BOOLEAN = Type(Kind.BOOLEAN)
TEXT = Type(Kind.TEXT)
DATE = Type(Kind.DATE)
DATETIME = Type(Kind.DATETIME)


def quantity(unit: Unit) -> Type:
    return Type(Kind.QUANTITY, unit)


def duration(unit: Optional[Unit] = None) -> Type:
    from .units import SECOND
    return Type(Kind.QUANTITY, unit or SECOND)


def is_mass(t: Type) -> bool:
    return t.kind == Kind.QUANTITY and t.dimension == MASS


def is_duration(t: Type) -> bool:
    return t.kind == Kind.QUANTITY and t.dimension == TIME
