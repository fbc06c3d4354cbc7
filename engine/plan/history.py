"""History windows in the plan: each history's value and status are inputs of the
record, given by engine/history.py (scalar) or engine/batch/history.py (columns) before
the formulas run, so that neither formula backend knows anything of windows.

A status other than OK rejects the record, by a check placed after the input bounds and
before every `require` and definition: SHORT with the methodology's own code (`otherwise
reject CODE "..."`), EMPTY with NO_HISTORY (a mean, least or greatest of a window that
holds no record and no declared value to use instead), TOO_LARGE with NOT_FINITE (a sum
of whole numbers beyond int64, which the columnar path must not wrap).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from dsl.ir import ast as ir
from dsl.types import Kind

from ..result import NOT_FINITE, REJECTED
from . import ast as p

OK, SHORT, EMPTY, TOO_LARGE = 0, 1, 2, 3
NO_HISTORY = "NO_HISTORY"


def status_name(history: ir.History) -> str:
    """The input that holds a history's status (not a name a methodology can write)."""
    return history.name + "#status"


def rep(history: ir.History) -> str:
    return p.I if history.type.kind == Kind.INTEGER else p.F


def empty_message(history: ir.History) -> str:
    return (f"`{history.name}`: no earlier record of this account in the window "
            f"({history.aggregate} of `{history.subject}` over the {history.side} "
            f"{history.size} {history.unit})")


def checks(histories: tuple[ir.History, ...], reason) -> list[p.Check]:
    """The checks of each history's status; `reason(status, code, message)` -> index."""
    out = []
    for h in histories:
        status = p.Input(p.I, status_name(h))
        if h.short == "reject":
            out.append(p.Check("history", p.Compare(p.B, "!=", status, p.Const(p.I, SHORT)),
                               reason(REJECTED, h.code, h.message), h.code, h.line))
        if h.aggregate in ("sum", "mean"):
            out.append(p.Check("history", p.Compare(p.B, "!=", status, p.Const(p.I, TOO_LARGE)),
                               reason(REJECTED, NOT_FINITE, f"`{h.name}`: the sum of `{h.subject}` "
                                                            "is too large to count (beyond ±9.2e18)"),
                               NOT_FINITE, h.line))
        if h.aggregate in ("mean", "min", "max") and h.short != "value":
            out.append(p.Check("history", p.Compare(p.B, "!=", status, p.Const(p.I, EMPTY)),
                               reason(REJECTED, NO_HISTORY, empty_message(h)), NO_HISTORY, h.line))
    return out


# ---------------------------------------------------------------- histories over definitions
def subjects(m: ir.Methodology) -> tuple[str, ...]:
    """The definitions some history aggregates, each once, in the histories' order."""
    names = {d.name for d in m.definitions}
    out: list[str] = []
    for h in m.histories:
        if h.subject in names and h.subject not in out:
            out.append(h.subject)
    return tuple(out)


def subject_closure(m: ir.Methodology) -> set[str]:
    """The definitions the histories over definitions need: their subjects and what these
    use (none of it uses a history: the checker's E1004)."""
    from .from_ir import refs
    seen, stack = set(), list(subjects(m))
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(refs(m.definition(name).expr))
    return seen


def subject_plan(m: ir.Methodology) -> Optional[p.Plan]:
    """The plan that gives each record's value of every definition a history aggregates
    (as `Plan.counters`, the amounts a verdict carries), or None when no history
    aggregates a definition.

    It is the methodology cut down to those definitions: no period, activity or input
    bound test, no `require`, no rule, no window; so a record's value is its formula's on
    the record's own inputs and parameters, known before any window is computed. A record
    whose formula rejects there (a table without its key, a division giving no finite
    number) has no value and is in no window; the main plan computes the same
    definitions right after the input bounds (from_ir), so such a record is rejected
    there, with that definition's reason, before its own windows matter."""
    names = subjects(m)
    if not names:
        return None
    closure = subject_closure(m)
    from dsl.types import INTEGER
    from .from_ir import from_ir
    kept = tuple(d for d in m.definitions if d.name in closure)
    if "points" not in closure:  # every plan gives points; these give none
        kept += (ir.Definition("points", "output", INTEGER, ir.Const(INTEGER, 0)),)
    meta = dataclasses.replace(m.metadata, effective_from=None, effective_until=None, covers=())
    cut = ir.Methodology(meta, tuple(dataclasses.replace(s, low=None, high=None) for s in m.inputs),
                         m.parameters, kept, (), groups=m.groups)
    return dataclasses.replace(from_ir(cut), counters=names)
