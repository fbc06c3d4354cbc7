"""What names mean in a methodology, built up by the checker's passes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..ir import ast as ir
from ..types import DATETIME, TEXT, Kind, Type
from ..zones import DEFAULT_TIMEZONE, valid_zone

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
    counted: set[str] = field(default_factory=set)  # counters and rewards (check/counters.py)

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


def declare(name: str, node, declared: dict, report) -> bool:
    """Whether `name` (written at `node`) may be defined: not a built-in field (E0206) and
    not defined before (E0202, pointing at the first). Records it in `declared` when so.
    One rule for every kind of definition (let, output, history, counter)."""
    if name in BUILTIN_TYPES:
        report.report("E0206", node, name=name)
        return False
    if name in declared:
        report.report("E0202", node, name=name,
                      notes=[report.note("first defined here", declared[name])])
        return False
    declared[name] = node
    return True


def calendar_zone(item, scope: "Scope", report, zone_given: bool) -> Optional[str]:
    """The time zone of a cap's calendar (`per day in ZONE`), else the header's, else the
    default with W0301; None after E0503 for a zone that is none. One rule for every cap
    (reduction, points, counters)."""
    if item.zone is not None:
        zone = str(item.zone)
        if not valid_zone(zone):
            report.report("E0503", item.zone, zone=zone)
            return None
        return zone
    if zone_given:
        return scope.timezone
    report.report("W0301", item.period,
                  help="write the zone of the calendar, e.g. `per day in Asia/Shanghai`, "
                       "or `timezone Asia/Shanghai` in the header")
    return DEFAULT_TIMEZONE
