"""Embedded examples: records in the methodology's own input types, and what they expect.

The checker turns them into IR records (run-time values) and expectations; running them
is the engine's job (`tanpu test`).
"""

from __future__ import annotations

import datetime as dt
from typing import Optional

from ..ir import ast as ir
from ..messages import Reporter
from ..suggestions import did_you_mean
from ..surface import ast
from ..types import INTEGER
from ..units import MASS
from ..zones import zone
from .literals import (INVALID, describe_literal, literal_value, unit_of, whole_milligrams,
                       whole_token)
from . import expectations as value_checks
from .legs import example_legs
from .scope import Scope

EXAMPLE_ACCOUNT = "example"


def default_time(scope: Scope) -> dt.datetime:
    """Noon on the methodology's first day, so examples see the first parameter values."""
    day = scope.effective_from or dt.date(2000, 1, 1)
    local = dt.datetime(day.year, day.month, day.day, 12, 0, tzinfo=zone(scope.timezone))
    return local.astimezone(dt.timezone.utc)


def check_examples(items, scope: Scope, report: Reporter, codes: dict[str, Optional[set[str]]]
                   ) -> list[ir.Example]:
    examples = []
    for item in items:
        if not isinstance(item, (ast.SingleExample, ast.SequenceExample)):
            continue
        steps = []
        ok = True
        previous_time = None
        for index, step in enumerate(item.steps):
            record = _record(step.record, scope, report, str(item.title), index)
            expected = _expected(step.expectations, scope, report, codes)
            if record is None or expected is None:
                ok = False
                continue
            fields = dict(record)
            stamps = [v for k, v in record if k != "time" and isinstance(v, dt.datetime)]
            if "time" not in fields and stamps:
                fields["time"] = previous_time = min(stamps)  # the activity's own first moment
            elif "time" not in fields:
                # in a sequence, records without a time come one minute apart, in order
                previous_time = (previous_time + dt.timedelta(minutes=1)) if previous_time else default_time(scope)
                fields["time"] = previous_time
            else:
                previous_time = fields["time"]
            steps.append(ir.ExampleStep(tuple(sorted(fields.items())), expected, step.meta.line))
        if ok:
            examples.append(ir.Example(str(item.title), tuple(steps), item.meta.line))
    return examples


def _record(record: ast.Record, scope: Scope, report: Reporter, title: str, index: int):
    values = {"id": f"{title}#{index + 1}", "account": EXAMPLE_ACCOUNT}
    ok = True
    seen = set()
    for field in record.fields:
        name = str(field.name)
        if name in seen:
            report.report("E0202", field.name, name=name)
            ok = False
            continue
        seen.add(name)
        if name in scope.groups:
            value = example_legs(field, scope.groups[name], scope, report)
            ok &= value is not INVALID
            values[name] = value
            continue
        t = scope.input_type(name)
        if t is None:
            if name not in scope.failed:
                report.report("E0701", field.name, name=name,
                              help=did_you_mean(name, list(scope.inputs) + ["id", "account", "time", "activity"]))
            ok = False
            continue
        if isinstance(field.value, ast.LegList):
            report.report("E0703", field.value, name=name, expected=t.describe(), found="a list")
            ok = False
            continue
        value = literal_value(field.value, t, report, code="E0703", zone=scope.timezone, name=name)
        if value is INVALID:
            ok = False
            continue
        values[name] = value
    for name in scope.groups:
        if name not in seen:  # a record without the list carries no legs
            values[name] = ()
    for name, spec in scope.inputs.items():
        if name in seen:  # set, even if to a wrong value (reported above)
            continue
        if spec.required:
            report.report("E0702", record, name=name)
            ok = False
        elif spec.default is not None:
            values[name] = spec.default
    return tuple(values.items()) if ok else None


def _expected(expectations, scope: Scope, report: Reporter, codes: dict[str, set[str]]):
    status, code, outputs, flags, bonus = "credited", "", [], [], None
    checks = []
    status_given = False
    ok = True
    for expectation in expectations:
        if isinstance(expectation, ast.ExpectValue):
            output = str(expectation.output)
            if output == "points":
                value = literal_value(expectation.value, INTEGER, report, code="E0705",
                                      zone=scope.timezone, output=output)
            elif isinstance(expectation.value, ast.QuantityLiteral):
                # the unit first: a length is reported as not a mass, whatever its digits
                unit = unit_of(expectation.value.unit, report)
                if unit is None:
                    value = INVALID
                elif unit.dimension != MASS:
                    report.report("E0705", expectation.value, output=output,
                                  expected="a mass such as `220.58 g`",
                                  found=describe_literal(expectation.value))
                    value = INVALID
                else:
                    value = whole_milligrams(expectation.value, report, output)
            else:
                report.report("E0705", expectation.value, output=output,
                              expected="a mass such as `220.58 g`",
                              found=describe_literal(expectation.value))
                value = INVALID
            if value is INVALID:
                ok = False
            else:
                outputs.append((output, value))
        elif isinstance(expectation, ast.ExpectRejected):
            status, code, status_given = "rejected", str(expectation.code), True
            ok &= _known_code(expectation.code, codes["rejected"], report)
        elif isinstance(expectation, ast.ExpectDuplicate):
            status, status_given = "duplicate", True
            code = str(expectation.code) if expectation.code else ""
            if expectation.code:
                ok &= _known_code(expectation.code, codes["duplicate"], report)
        elif isinstance(expectation, ast.ExpectStatus):
            status = str(expectation.status).replace(" ", "_")
            status_given = True
        elif isinstance(expectation, ast.ExpectFlagged):
            flags.append(str(expectation.code))
            ok &= _known_code(expectation.code, codes["flagged"], report)
        elif isinstance(expectation, value_checks.NODES):  # named values, totals, decimals
            value_check = value_checks.check(expectation, scope, report)
            ok &= value_check is not INVALID
            checks.append(value_check)
        elif isinstance(expectation, ast.ExpectBonus):
            bonus = whole_token(expectation.points, report)
            ok &= bonus is not INVALID
    if not ok:
        return None
    return ir.Expected(status, code, tuple(outputs), tuple(flags), bonus, status_given, tuple(checks))


def _known_code(token, known: Optional[set[str]], report: Reporter) -> bool:
    if known is None or str(token) in known:  # None: a rule that gives them did not parse
        return True
    report.report("E0704", token, code=str(token),
                  help=did_you_mean(str(token), known) or
                  ("the codes are " + ", ".join(sorted(known)) if known else "no rule gives a reason code"))
    return False
