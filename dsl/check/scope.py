"""What names mean in a methodology, built up by the checker's passes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..ir import ast as ir
from ..types import DATETIME, TEXT, Kind, Type
from ..zones import DEFAULT_TIMEZONE

BUILTIN_TYPES: dict[str, Type] = {"id": TEXT, "account": TEXT, "time": DATETIME, "activity": TEXT}

FUNCTIONS = ("min", "max", "abs", "round", "floor", "ceil", "year", "month", "day", "hour",
             "weekday", "date", "days_in_year")


@dataclass
class Scope:
    timezone: str = DEFAULT_TIMEZONE
    effective_from: Optional[object] = None
    inputs: dict[str, ir.InputSpec] = field(default_factory=dict)
    parameters: dict[str, ir.Parameter] = field(default_factory=dict)
    definitions: dict[str, Type] = field(default_factory=dict)  # lets and outputs, once typed
    definition_names: set[str] = field(default_factory=set)  # every let/output, typed or not
    failed: set[str] = field(default_factory=set)  # names whose definition did not compile
    histories: dict[str, Type] = field(default_factory=dict)  # history windows (check/history.py)
    groups: dict[str, ir.Group] = field(default_factory=dict)  # repeated groups (legs)

    def input_type(self, name: str) -> Optional[Type]:
        if name in BUILTIN_TYPES:
            return BUILTIN_TYPES[name]
        spec = self.inputs.get(name)
        return spec.type if spec else None

    def choice_owner(self, value: str) -> Optional[Type]:
        """The one choice type that has ``value`` among its values, if exactly one has."""
        owners = {spec.type for spec in self.inputs.values()
                  if spec.type.kind == Kind.CHOICE and value in spec.type.choices}
        return owners.pop() if len(owners) == 1 else None

    def all_names(self) -> set[str]:
        names = set(BUILTIN_TYPES) | set(self.inputs) | set(self.parameters) | self.definition_names
        names |= set(self.histories)
        names |= set(self.groups)
        for spec in self.inputs.values():
            names |= set(spec.type.choices)
        return names
