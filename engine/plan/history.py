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
