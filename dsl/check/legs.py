"""Repeated groups inside a record (the legs of a trip), and the aggregates over them.

A group is declared as `input legs: list { mode: choice {...}, distance: quantity [km] }`;
its fields are declared as inputs are (types, bounds, defaults, labels) and are read
only through an aggregate that goes over the legs one at a time:
`sum(factor[leg.mode] * leg.distance for leg in legs where leg.mode != walk)`,
`count(leg for leg in legs where ...)`. Kept apart from expressions.py so that the one
place that knows what a leg is stays small: the checker's methods for the two nodes
delegate here.
"""

from __future__ import annotations

from typing import Optional

from ..ir import ast as ir
from ..messages import Reporter
from ..suggestions import did_you_mean
from ..surface import ast
from ..types import INTEGER, Kind
from .literals import INVALID, literal_value
from .scope import BUILTIN_TYPES, Scope

AGGREGATES = ("sum", "count")
# what a leg field may be: what the columnar paths hold in one flat array per field
LEG_KINDS = (Kind.QUANTITY, Kind.INTEGER, Kind.BOOLEAN, Kind.TEXT, Kind.CHOICE)


def check_groups(items, scope: Scope, report: Reporter, declared: dict) -> None:
    """Declares every `input NAME: list { ... }` in scope.groups."""
    from .declarations import input_spec, input_type  # one reading of a field's options
    for item in items:
        if not isinstance(item, ast.GroupDecl):
            continue
        if len(item.names) != 1:
            report.report("E0330", item.names[1], problem="a list input declares one name",
                          help="write one `input NAME: list { ... }` per group")
        name_token = item.names[0]
        name = str(name_token)
        if name in BUILTIN_TYPES:
            report.report("E0206", name_token, name=name)
            continue
        if name in declared:
            report.report("E0202", name_token, name=name,
                          notes=[report.note("first defined here", declared[name])])
            continue
        declared[name] = name_token
        fields, ok, seen = [], True, set()
        for field in item.fields:
            field_name = str(field.name)
            if field_name in seen:
                report.report("E0202", field.name, name=field_name)
                ok = False
                continue
            seen.add(field_name)
            t = input_type(field.type, field_name, report)
            if t is None:
                ok = False
                continue
            if t.kind not in LEG_KINDS:
                report.report("E0331", field.type, name=field_name, kind=t.describe())
                ok = False
                continue
            fields.append(input_spec(field.name, t, field, scope, report))
        low = high = None
        label = ""
        for option in item.options:
            if isinstance(option, ast.LabelOption):
                label = str(option.text)
            elif isinstance(option, ast.BoundOption):
                count = _count(option.value, report)
                if count is INVALID:
                    ok = False
                elif str(option.kind) == "least":
                    low = count
                else:
                    high = count
            elif isinstance(option, ast.BetweenOption):
                low, high = _count(option.low, report), _count(option.high, report)
                ok &= low is not INVALID and high is not INVALID
            else:
                report.report("E0330", option, problem="a list input takes `at least N`, "
                              "`at most N`, `between N and M` and `label` only",
                              help="give each field its own default or `optional`")
                ok = False
        if not ok:
            scope.failed.add(name)
            continue
        scope.groups[name] = ir.Group(name, tuple(fields), low, high, label)


def _count(node, report: Reporter):
    value = literal_value(node, INTEGER, report, code="E0303", zone="UTC")
    if value is INVALID:
        return INVALID
    if value < 0:
        report.report("E0303", node, expected="a number of legs (0 or more)", found=str(value))
        return INVALID
    return value


def leg_field_type(scope: Scope, name: str):
    """The type of a field some group declares under `name` (for `parameter ... by mode`)."""
    for group in scope.groups.values():
        for spec in group.fields:
            if spec.name == name:
                return spec.type
    return None


# ---------------------------------------------------------------- expressions
def check_aggregate(checker, node: ast.LegAggregate, hint) -> Optional[ir.Expr]:
    """`sum(body for leg in legs [where cond])` or `count(leg for leg in legs ...)`."""
    scope, report = checker.scope, checker.report
    func, group_name, var = str(node.func), str(node.group), str(node.var)
    if func not in AGGREGATES:
        report.report("E0203", node.func, name=func,
                      help=did_you_mean(func, AGGREGATES) or "over legs: sum or count")
        return None
    group = scope.groups.get(group_name)
    if group is None:
        if group_name not in scope.failed:
            report.report("E0332", node.group, name=group_name,
                          help=did_you_mean(group_name, scope.groups) or
                          "declare it: `input legs: list { mode: choice {...}, distance: quantity [km] }`")
        return None
    outer = getattr(checker, "leg_binding", None)
    if outer is not None:
        report.report("E0333", node, outer=outer[1])
        return None
    if var in scope.inputs or var in scope.parameters or var in scope.definition_names \
            or var in BUILTIN_TYPES or var in scope.groups:
        report.report("E0330", node.var, problem=f"`{var}` already names something else",
                      help="call the leg `leg`, `l` or `segment`")
        return None
    checker.leg_binding = (var, group_name)
    try:
        where = checker._boolean(node.where.cond, None) if node.where is not None else None
        if node.where is not None and where is None:
            return None
        if func == "count":
            if not (isinstance(node.body, ast.NameExpr) and str(node.body.name) == var):
                report.report("E0330", node.body, problem="`count` counts legs",
                              help=f"write `count({var} for {var} in {group_name} where ...)`")
                return None
            return ir.LegAggregate(INTEGER, "count", group_name, None, where)
        # every path evaluates the body only for the legs where `where` holds (the plan's
        # LegAggregate), so the lookups in the body see only those legs' keys
        checker.leg_where = where
        body = checker.check(node.body, hint)
        if body is None:
            return None
        if not body.type.is_numeric:
            report.report("E0303", node.body, expected="a number or quantity to add up",
                          found=body.type.describe())
            return None
        return ir.LegAggregate(body.type, "sum", group_name, body, where)
    finally:
        checker.leg_binding = None
        checker.leg_where = None


def check_field(checker, node: ast.LegField) -> Optional[ir.Expr]:
    """`leg.distance` inside an aggregate going over legs."""
    binding = getattr(checker, "leg_binding", None)
    var, name = str(node.var), str(node.field)
    if binding is None or binding[0] != var:
        checker.report.report("E0334", node, var=var,
                              help="a leg's fields are read inside `sum(... for leg in legs)`")
        return None
    group = checker.scope.groups[binding[1]]
    spec = next((f for f in group.fields if f.name == name), None)
    if spec is None:
        checker.report.report("E0201", node.field, name=f"{var}.{name}", label="not a field of the legs",
                              help=did_you_mean(name, [f.name for f in group.fields]))
        return None
    return ir.LegField(spec.type, group.name, name)


def bare_name(checker, node: ast.NameExpr) -> bool:
    """Reports a group or a leg variable written where a value is expected; True if so."""
    name = str(node.name)
    binding = getattr(checker, "leg_binding", None)
    if binding is not None and name == binding[0]:
        checker.report.report("E0334", node, var=name,
                              help=f"write one of its fields, e.g. `{name}.{checker.scope.groups[binding[1]].fields[0].name}`"
                              if checker.scope.groups[binding[1]].fields else "")
        return True
    if name in checker.scope.groups:
        checker.report.report("E0332", node, name=name,
                              help=f"a list is read through `sum(... for leg in {name})` or `count(leg for leg in {name})`")
        return True
    return False


# ---------------------------------------------------------------- example records
def example_legs(field, group: ir.Group, scope: Scope, report: Reporter):
    """An example's `legs: [{mode: walk, distance: 0.8 km}, ...]` -> a tuple of legs,
    each a tuple of (field, value) in declaration order (defaults filled in)."""
    if not isinstance(field.value, ast.LegList):
        report.report("E0703", field.value, name=group.name, expected="a list of legs `[{...}, {...}]`",
                      found="a single value")
        return INVALID
    legs, ok = [], True
    for record in field.value:
        values, seen = {}, set()
        for leg_field in record.fields:
            name = str(leg_field.name)
            spec = next((f for f in group.fields if f.name == name), None)
            if spec is None:
                report.report("E0701", leg_field.name, name=f"{group.name}.{name}",
                              help=did_you_mean(name, [f.name for f in group.fields]))
                ok = False
                continue
            if name in seen or isinstance(leg_field.value, ast.LegList):
                report.report("E0202" if name in seen else "E0333", leg_field.name, name=name,
                              outer=group.name)
                ok = False
                continue
            seen.add(name)
            value = literal_value(leg_field.value, spec.type, report, code="E0703",
                                  zone=scope.timezone, name=f"{group.name}.{name}")
            if value is INVALID:
                ok = False
                continue
            values[name] = value
        for spec in group.fields:
            if spec.name not in values:
                if spec.required:
                    report.report("E0702", record, name=f"{group.name}.{spec.name}")
                    ok = False
                else:
                    values[spec.name] = spec.default
        legs.append(tuple((f.name, values.get(f.name)) for f in group.fields))
    return tuple(legs) if ok else INVALID


__all__ = ["check_groups", "check_aggregate", "check_field", "bare_name", "example_legs",
           "leg_field_type", "AGGREGATES"]
