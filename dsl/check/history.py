"""History windows: `history NAME = AGG INPUT over the (previous|last) N (days|records)
otherwise ...` (docs/language.md §9.6).

Checked before the definitions, so that formulas can use a history's name as they use an
input's: its type is the subject's (a sum or a mean in the subject's unit), an integer
for `count`, a number for the mean of an integer input. Only an input can be aggregated:
its value is known for every record that was read, whatever became of the record, so
the window of one record never depends on the verdict of another (which is what lets
the batch path compute every window in one pass of sorted scans).
"""

from __future__ import annotations

from ..ir import ast as ir
from ..messages import Reporter
from ..surface import ast
from ..types import INTEGER, NUMBER, Kind, Type
from .literals import INVALID, check_code, literal_value
from .scope import BUILTIN_TYPES, Scope, declare

# the longest window: ten years of days, or as many records (a state kept per account
# holds at most this many values of a record window)
MOST = {"days": 3660, "records": 3660}


def history_type(aggregate: str, subject: Type) -> Type:
    if aggregate == "count":
        return INTEGER
    if aggregate == "mean" and subject.kind == Kind.INTEGER:
        return NUMBER
    return subject


def check_histories(items, scope: Scope, report: Reporter, declared: dict) -> list[ir.History]:
    """Every `history` item, its name added to `scope.histories` (a broken one's to
    `scope.failed`, so that its uses are not reported again)."""
    out = []
    for item in items:
        if not isinstance(item, ast.HistoryDef):
            continue
        name = str(item.name)
        if not declare(name, item.name, declared, report):
            continue
        history = _check(item, name, scope, report)
        if history is None:
            scope.failed.add(name)
            continue
        scope.histories[name] = history.type
        out.append(history)
    return out


def _check(item: ast.HistoryDef, name: str, scope: Scope, report: Reporter):
    subject = str(item.subject)
    spec = scope.inputs.get(subject)
    ok = True
    if spec is None or spec.type.kind not in (Kind.QUANTITY, Kind.INTEGER):
        if subject not in scope.failed:
            found = ("not an input" if spec is None and subject not in BUILTIN_TYPES
                     else (spec.type.describe() if spec is not None else "a built-in field"))
            report.report("E1001", item.subject, name=subject, found=found,
                          help="name an input declared with `input NAME: quantity [UNIT]`, "
                               "`integer` or `number`")
        ok = False
    unit = str(item.unit)
    size = int(str(item.size)) if str(item.size).isdigit() else 0
    if not 1 <= size <= MOST[unit]:
        report.report("E1002", item.size, most=MOST[unit], unit=unit, found=str(item.size))
        ok = False
    if not ok:
        return None
    aggregate = str(item.aggregate)
    t = history_type(aggregate, spec.type)
    short, code, message, value = "partial", "", "", None
    if isinstance(item.short, ast.ShortReject):
        short, code, message = "reject", check_code(item.short.code, report), str(item.short.message)
    elif isinstance(item.short, ast.ShortValue):
        short = "value"
        value = literal_value(item.short.value, t, report, code="E1003", zone=scope.timezone, name=name)
        if value is INVALID:
            return None
    return ir.History(name, t, aggregate, subject, str(item.side), size, unit, short,
                      scope.timezone, code, message, value, item.meta.line)
