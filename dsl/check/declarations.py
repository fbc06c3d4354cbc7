"""The header, inputs and parameters: everything a formula can refer to."""

from __future__ import annotations

import datetime as dt
import re
from typing import Optional

from ..ir import ast as ir
from ..messages import Reporter
from ..suggestions import did_you_mean
from ..surface import ast
from ..types import BOOLEAN, INTEGER, NUMBER, Kind, Type, duration, quantity
from ..types import DATE, DATETIME, TEXT
from ..zones import DEFAULT_TIMEZONE, valid_zone
from .literals import (INVALID, check_code, decimal_of, literal_value, parse_date, si_float,
                       unit_of, whole_token)
from .scope import BUILTIN_TYPES, Scope

# ISO 3166-1 alpha-2, an optional ISO 3166-2 subdivision, then `.Place` parts (CN-HB.Wuhan)
REGION = re.compile(r"[A-Z]{2}(-[A-Z0-9]{1,3})?(\.[A-Za-z][A-Za-z0-9_]*)*")

def leg_field_type(scope: Scope, name: str):
    from .legs import leg_field_type as find  # legs.py reads this module's input options
    return find(scope, name)

# ---------------------------------------------------------------- header
def check_header(header: Optional[ast.Header], report: Reporter) -> Optional[ir.Metadata]:
    if header is None:
        return None
    titles, descriptions, citations, covers, precedes, regions = [], [], [], [], [], []
    issuer, effective_from, effective_until, zone = "", None, None, None
    seen: dict[str, object] = {}

    def once(name: str, node) -> bool:
        if name in seen:
            report.report("E0502", node, field=name,
                          notes=[report.note("first given here", seen[name])])
            return False
        seen[name] = node
        return True

    for field in header.fields:
        if isinstance(field, ast.TitleField):
            if once(f"title {field.lang}", field):
                titles.append((str(field.lang), str(field.text)))
        elif isinstance(field, ast.IssuerField):
            if once("issuer", field):
                issuer = str(field.text)
        elif isinstance(field, ast.CiteField):
            citations.append(ir.Citation(str(field.text),
                                         tuple((str(d.key), str(d.text)) for d in field.details)))
        elif isinstance(field, ast.CoversField):
            if once("covers", field):
                covers = [str(n) for n in field.names]
                for region in field.regions or ():
                    if REGION.fullmatch(str(region)):
                        regions.append(str(region))
                    else:
                        report.report("E0504", region, text=str(region),
                                      kind="region (an ISO 3166 code such as `CN` or `CN-HB`, "
                                           "then `.Place` for a part of it)")
        elif isinstance(field, ast.DescriptionField):
            lang = str(field.lang) if field.lang else "zh"
            if once(f"description {lang}", field):
                descriptions.append((lang, str(field.text)))
        elif isinstance(field, ast.EffectiveField):
            if once("effective", field):
                effective_from = _date(field.start, report)
                effective_until = _date(field.until, report) if field.until else None
                if effective_from and effective_until and effective_until < effective_from:
                    report.report("E0505", field, start=effective_from, until=effective_until)
        elif isinstance(field, ast.TimezoneField):
            if once("timezone", field):
                zone = str(field.zone)
                if not valid_zone(zone):
                    report.report("E0503", field.zone, zone=zone)
                    zone = None
        elif isinstance(field, ast.PrecedenceField):
            precedes += [str(i) for i in field.ids]
    if not covers:
        report.report("E0501", header.id, field="covers",
                      help="say which activity types it credits, e.g. `covers transit_trip`")
    if "effective" not in seen:
        report.report("E0501", header.id, field="effective from DATE",
                      help="say from when it applies, e.g. `effective from 2021-12-16`")
    return ir.Metadata(
        id=str(header.id), title=str(header.title), version=str(header.version),
        titles=tuple(titles), issuer=issuer, citations=tuple(citations), covers=tuple(covers),
        descriptions=tuple(descriptions), effective_from=effective_from,
        effective_until=effective_until, timezone=zone or DEFAULT_TIMEZONE,
        precedes=tuple(precedes), regions=tuple(regions))


def timezone_given(header: Optional[ast.Header]) -> bool:
    return header is not None and any(isinstance(f, ast.TimezoneField) for f in header.fields)


def _date(token, report: Reporter) -> Optional[dt.date]:
    value = parse_date(token)
    if value is None:
        report.report("E0504", token, text=str(token), kind="date")
    return value


# ---------------------------------------------------------------- inputs
_SIMPLE_TYPES = {"number": NUMBER, "integer": INTEGER, "boolean": BOOLEAN, "text": TEXT,
                 "date": DATE, "datetime": DATETIME}


def _input_type(spec, name: str, report: Reporter) -> Optional[Type]:
    if isinstance(spec, ast.QuantityType):
        unit = unit_of(spec.unit.text, report)
        return quantity(unit) if unit is not None else None
    if isinstance(spec, ast.SimpleType):
        word = str(spec.name)
        if word == "duration":
            return duration()
        return _SIMPLE_TYPES[word]
    values = []
    for option in spec.options:
        value = str(option.name)
        if value in values:
            report.report("E0202", option.name, name=value)
            continue
        values.append(value)
    return Type(Kind.CHOICE, choices=tuple(values), choice_of=name)


def check_inputs(items, scope: Scope, report: Reporter, declared: dict) -> None:
    for item in items:
        if not isinstance(item, ast.InputDecl):
            continue
        for name_token in item.names:
            name = str(name_token)
            if name in BUILTIN_TYPES:
                report.report("E0206", name_token, name=name)
                continue
            if name in declared:
                report.report("E0202", name_token, name=name,
                              notes=[report.note("first defined here", declared[name])])
                continue
            declared[name] = name_token
            t = _input_type(item.type, name, report)
            if t is None:
                scope.failed.add(name)
                continue
            scope.inputs[name] = _input_spec(name_token, t, item, scope, report)


def _input_spec(name_token, t: Type, item: ast.InputDecl, scope: Scope,
                report: Reporter) -> ir.InputSpec:
    name = str(name_token)
    required, default, low, high, label = True, None, None, None, ""
    default_written = False

    def value(node):
        v = literal_value(node, t, report, code="E0303", zone=scope.timezone)
        return None if v is INVALID else v

    for option in item.options:
        if isinstance(option, ast.OptionalOption):
            required = False
        elif isinstance(option, ast.DefaultOption):
            default = value(option.value)
            required = False
            default_written = True  # a wrong default is reported as such, not as E0315
        elif isinstance(option, ast.BetweenOption):
            low, high = value(option.low), value(option.high)
        elif isinstance(option, ast.BoundOption):
            if str(option.kind) == "least":
                low = value(option.value)
            else:
                high = value(option.value)
        elif isinstance(option, ast.LabelOption):
            label = str(option.text)
    if not required and not default_written and t.kind in (Kind.CHOICE, Kind.DATE, Kind.DATETIME):
        report.report("E0315", name_token, name=name, kind=t.describe(),
                      help="text, true/false, whole numbers and quantities default to \"\", false, 0 and 0")
    labels = ()
    if isinstance(item.type, ast.ChoiceType):
        labels = tuple((str(o.name), str(o.label)) for o in item.type.options if o.label)
    return ir.InputSpec(name=name, type=t, required=required, default=default, low=low,
                        high=high, label=label, choice_labels=labels)


# ---------------------------------------------------------------- parameters
def check_parameters(items, scope: Scope, report: Reporter, declared: dict) -> dict:
    """Declares every parameter; returns name -> its AST node (for later table checks)."""
    nodes = {}
    for item in items:
        if not isinstance(item, ast.ParameterDecl):
            continue
        name = str(item.name)
        if name in declared:
            report.report("E0202", item.name, name=name,
                          notes=[report.note("first defined here", declared[name])])
            continue
        declared[name] = item.name
        parameter = _parameter(item, scope, report)
        if parameter is None:
            scope.failed.add(name)
            continue
        scope.parameters[name] = parameter
        nodes[name] = item
    return nodes


def _source(clause: Optional[ast.SourceClause]) -> Optional[ir.Source]:
    if clause is None:
        return None
    return ir.Source(str(clause.text), str(clause.tag).strip("[]") if clause.tag else "")


def _parameter(item: ast.ParameterDecl, scope: Scope, report: Reporter) -> Optional[ir.Parameter]:
    name = str(item.name)
    if item.unit is not None:
        unit = unit_of(item.unit.text, report)
        if unit is None:
            return None
        t = quantity(unit)
    else:
        t = NUMBER
        unit = t.unit
    keys, key_types = [], []
    if item.by is not None:
        for key in item.by.names:
            key_name = str(key)
            kt = scope.input_type(key_name) or leg_field_type(scope, key_name)
            if kt is None:
                if key_name not in scope.failed:
                    report.report("E0207", key, name=key_name,
                                  help=did_you_mean(key_name, scope.inputs))
                return None
            if kt.kind not in (Kind.CHOICE, Kind.INTEGER, Kind.TEXT, Kind.BOOLEAN):
                report.report("E0408", key, keyname=key_name, kind=kt.describe())
                return None
            keys.append(key_name)
            key_types.append(kt)
    head = item.head
    body = item.body
    if isinstance(body, ast.ScalarBody) and body.head is not None:
        head = body.head if head is None else head
    default_start = (head.start if head is not None and head.start is not None else None)
    default_source = _source(head.source) if head is not None else None
    start_date = parse_date(default_start) if default_start else scope.effective_from

    if isinstance(body, ast.ScalarBody):
        if keys:
            report.report("E0409", body, problem=f"`{name}` is keyed by {', '.join(keys)}: give a value for each key in `{{ ... }}`")
            return None
        raw = [(default_start or item.name, start_date, default_source, body.value, body)]
    elif isinstance(body, ast.EntriesBody):
        raw = [(default_start or item.name, start_date, default_source, body.entries, body)]
    else:
        raw = [(p.start, parse_date(p.start), _source(p.source) or default_source,
                p.body.value if isinstance(p.body, ast.PeriodValue) else p.body, p)
               for p in body.periods]

    periods = []
    previous = None
    for where, start, source, content, node in raw:
        if start is None:
            if where is not item.name:  # a written date that is not a calendar date
                report.report("E0504", where, text=str(where), kind="date")
            return None  # otherwise the header has no `effective from`: E0501 said so
        if previous is not None and start <= previous:
            report.report("E0402", node, name=name)
            return None
        previous = start
        if source is None:
            report.report("E0410", node, name=name, start=start,
                          help='say where the value comes from: source "document, table" [SRC]')
        source = source or ir.Source("")
        if isinstance(content, ast.SignedNumber):
            if keys:
                report.report("E0409", node, problem=f"`{name}` is keyed by {', '.join(keys)}: give a value for each key")
                return None
            scalar = si_float(unit, decimal_of(content.number, content.sign), content, report)
            if scalar is INVALID:
                return None
            periods.append(ir.Period(start, source, scalar=scalar, written=(_written(content),)))
        else:
            if not keys:
                report.report("E0409", node, problem=f"`{name}` has keyed values but no `by`: say what they are keyed by, e.g. `by mode`")
                return None
            entries = _entries(name, content, keys, key_types, unit, report)
            if entries is None:
                return None
            periods.append(ir.Period(start, source, entries=tuple(e for e, _ in entries),
                                     written=tuple(w for _, w in entries)))
    missing = ir.Missing("impossible")
    if isinstance(item.otherwise, ast.OtherwiseReject):
        missing = ir.Missing("reject", check_code(item.otherwise.code, report), str(item.otherwise.message))
    elif isinstance(item.otherwise, ast.OtherwiseValue):
        v = item.otherwise.value
        value = si_float(unit, decimal_of(v.number, v.sign), v, report)
        if value is INVALID:
            return None
        missing = ir.Missing("value", value=value)
    elif keys and any(kt.kind in (Kind.INTEGER, Kind.TEXT) for kt in key_types):
        kt = next(k for k, kt in zip(keys, key_types) if kt.kind in (Kind.INTEGER, Kind.TEXT))
        report.report("E0406", item.by, kind=scope.input_type(kt).describe(), keyname=kt)
        return None
    return ir.Parameter(name, t, tuple(keys), tuple(key_types), tuple(periods), missing)


def _written(number: ast.SignedNumber) -> str:
    return ("-" if number.sign else "") + str(number.number)


def _entries(name, entries, keys, key_types, unit, report):
    out = []
    seen = {}
    for entry in entries:
        atoms = list(entry.key) if isinstance(entry.key, ast.KeyTuple) else [entry.key]
        if len(atoms) != len(keys):
            report.report("E0407", entry, name=name, expected=len(keys), found=len(atoms))
            return None
        key = []
        for atom, key_name, kt in zip(atoms, keys, key_types):
            value = _key_value(atom.token, key_name, kt, report)
            if value is INVALID:
                return None
            key.append(value)
        key = tuple(key)
        if key in seen:
            report.report("E0405", entry, name=name, key=", ".join(map(str, key)),
                          notes=[report.note("first given here", seen[key])])
            return None
        seen[key] = entry
        si = si_float(unit, decimal_of(entry.value.number, entry.value.sign), entry.value, report)
        if si is INVALID:
            return None
        out.append(((key, si), _written(entry.value)))
    return out


def _key_value(token, key_name: str, kt: Type, report: Reporter):
    text = str(token)
    if kt.kind == Kind.CHOICE:
        if token.type == "NAME" and text in kt.choices:
            return text
        report.report("E0404", token, key=text, keyname=key_name,
                      help=did_you_mean(text, kt.choices) or "the values are " + ", ".join(kt.choices))
        return INVALID
    if kt.kind == Kind.BOOLEAN and text in ("true", "false"):
        return text == "true"
    if kt.kind == Kind.INTEGER and token.type == "NUMBER" and text.isdigit():
        return whole_token(token, report)
    if kt.kind == Kind.TEXT and token.type in ("STRING", "NAME"):
        return text
    report.report("E0404", token, key=text, keyname=key_name)
    return INVALID


def check_table_coverage(scope: Scope, nodes: dict, required: dict, report: Reporter,
                         leg_keys: Optional[dict] = None) -> None:
    """Tables without `otherwise` must list every key that can be looked up.

    ``required`` maps a parameter to the set of key tuples its lookup sites can ask for
    (after the narrowing that earlier `require`s and a sum's `where` give); a parameter
    never looked up must cover its whole key domain. ``leg_keys`` names the leg field a
    table is looked up by, (leg variable, group, field), so the help can offer the
    `where` that keeps only the legs with a value.
    """
    import itertools
    for name, parameter in scope.parameters.items():
        if not parameter.keys or parameter.missing.kind != "impossible":
            continue
        wanted = required.get(name)
        if wanted is None and scope.failed:
            continue  # its lookups may be in a definition that did not compile
        if wanted is None:
            domains = [kt.choices if kt.kind == Kind.CHOICE else (True, False)
                       for kt in parameter.key_types]
            wanted = set(itertools.product(*domains))
        node = nodes[name]
        periods = node.body.periods if isinstance(node.body, ast.PeriodsBody) else [node.name]
        for period, period_node in zip(parameter.periods, periods):
            listed = {k for k, _ in period.entries}
            missing = sorted(wanted - listed, key=str)
            if missing:
                shown = ", ".join("`" + "/".join(map(str, k)) + "`" for k in missing[:6])
                if len(missing) > 6:
                    shown += f" and {len(missing) - 6} more"
                help = ('add the missing keys, or say what happens without one: '
                        '`otherwise reject CODE "message"` or `otherwise VALUE`')
                leg = (leg_keys or {}).get(name)
                if leg is not None and len(parameter.keys) == 1 and \
                        parameter.key_types[0].kind == Kind.CHOICE:
                    kept = ", ".join(str(k[0]) for k in sorted(listed, key=str))
                    help = (f"add the missing keys, or sum only over the legs that have one: "
                            f"`for {leg[0]} in {leg[1]} where {leg[0]}.{leg[2]} in {{ {kept} }}`, or say what "
                            f"happens without one: `otherwise VALUE` or `otherwise reject CODE \"message\"`")
                report.report("E0403", period_node, name=name, missing=shown, start=period.start,
                              help=help)


def check_value_in_force(scope: Scope, nodes: dict, report: Reporter) -> None:
    start = scope.effective_from
    if start is None:
        return
    for name, parameter in scope.parameters.items():
        if parameter.periods and parameter.periods[0].start > start:
            node = nodes[name]
            report.report("E0401", node.name, name=name, start=start,
                          first=parameter.periods[0].start,
                          help="start its first value no later than the methodology's `effective from` date")


# a leg's fields (dsl/check/legs.py) are read as inputs are: one reading of types and options
input_type = _input_type
input_spec = _input_spec
