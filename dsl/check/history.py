"""History windows: `history NAME = AGG INPUT over the (previous|last) N (days|records)
otherwise ...` (docs/language.md §9.6).

Checked before the definitions that use them, so that formulas can use a history's name
as they use an input's: its type is the subject's (a sum or a mean in the subject's
unit), an integer for `count`, a number for the mean of an integer input.

The subject is an input, or a definition (a `let` or an output) that uses no history,
directly or through the definitions it uses (E1004): its value is then its formula's on
the record's own inputs, known for every record before any window is computed, so the
window of one record never depends on the verdict of another (which is what lets the
batch path compute every window in one pass of sorted scans). A history over an input
is checked first (`check_histories`); one over a definition once that definition, and
what it uses, are typed (`check_definition_histories`, called between the two halves of
the definitions by dsl/ir/from_surface.py).
"""

from __future__ import annotations

from typing import Optional

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


def check_histories(items, scope: Scope, report: Reporter, declared: dict,
                    definition_names: frozenset = frozenset()) -> tuple[list[ir.History], list]:
    """Every `history` item over an input, its name added to `scope.histories` (a broken
    one's to `scope.failed`, so that its uses are not reported again); and the items whose
    subject is among `definition_names`, left for `check_definition_histories`."""
    out, pending = [], []
    for item in items:
        if not isinstance(item, ast.HistoryDef):
            continue
        name = str(item.name)
        if not declare(name, item.name, declared, report):
            continue
        if str(item.subject) in definition_names and str(item.subject) not in scope.inputs:
            pending.append(item)
            continue
        _add(_check(item, name, scope, report), name, scope, out)
    return out, pending


def check_definition_histories(pending: list, scope: Scope, report: Reporter) -> list[ir.History]:
    """The histories over definitions, once those definitions are typed."""
    out = []
    for item in pending:
        name = str(item.name)
        _add(_check(item, name, scope, report), name, scope, out)
    return out


def _add(history: Optional[ir.History], name: str, scope: Scope, out: list) -> None:
    """A checked history into scope (its type) and `out`; a broken one's name into
    `scope.failed`, so that its uses are not reported again."""
    if history is None:
        scope.failed.add(name)
        return
    scope.histories[name] = history.type
    out.append(history)


def subject_closure(pending: list, written: dict, names_in) -> set[str]:
    """The definitions the histories over definitions need: their subjects and every
    definition these use."""
    seen, stack = set(), [str(item.subject) for item in pending]
    while stack:
        name = stack.pop()
        if name in seen or name not in written:
            continue
        seen.add(name)
        stack.extend(names_in(written[name].expr) & written.keys())
    return seen


def report_windows_in_subjects(pending: list, closure: set[str], written: dict, history_names: set[str],
                               names_in, report: Reporter) -> set[str]:
    """E1004 for each definition a history aggregates that uses a history (directly or
    through what it uses); returns the histories so reported, whose checks are skipped."""
    broken = set()
    for item in pending:
        subject = str(item.subject)
        mine = subject_closure([item], written, names_in)
        for name in sorted(mine):
            used = sorted(names_in(written[name].expr) & history_names)
            if used:
                report.report("E1004", item.subject, name=subject, history=used[0],
                              help="aggregate an input, or a definition computed from the record's "
                                   "own inputs and parameters")
                broken.add(str(item.name))
                break
    return broken


def _check(item: ast.HistoryDef, name: str, scope: Scope, report: Reporter):
    subject = str(item.subject)
    spec = scope.inputs.get(subject)
    subject_type = spec.type if spec is not None else scope.definitions.get(subject)
    ok = True
    if subject_type is None or subject_type.kind not in (Kind.QUANTITY, Kind.INTEGER):
        if subject not in scope.failed:
            found = ("not an input" if subject_type is None and subject not in BUILTIN_TYPES
                     else (subject_type.describe() if subject_type is not None else "a built-in field"))
            report.report("E1001", item.subject, name=subject, found=found,
                          help="name an input declared with `input NAME: quantity [UNIT]`, "
                               "`integer` or `number`, or a `let` of such a type")
        ok = False
    unit = str(item.unit)
    size = int(str(item.size)) if str(item.size).isdigit() else 0
    if not 1 <= size <= MOST[unit]:
        report.report("E1002", item.size, most=MOST[unit], unit=unit, found=str(item.size))
        ok = False
    if not ok:
        return None
    aggregate = str(item.aggregate)
    t = history_type(aggregate, subject_type)
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
