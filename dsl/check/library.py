"""Checks across methodologies: the same activity must not be credited twice.

Two methodologies that cover the same activity type over overlapping dates, in regions
that meet (`covers walking in CN-HB`; a methodology without a region applies everywhere),
would each credit the same ride, unless one says it takes precedence (`precedes OTHER-ID`).
Different versions of one methodology are not in conflict: the registry's lifecycle
decides which version applies.
"""

from __future__ import annotations

import datetime as dt
from typing import Sequence

from ..diagnostics import Diagnostic, Note, Span, source_lines
from ..ir import ast as ir
from ..messages import Reporter

_FAR = dt.date.max


def _overlap(a: ir.Metadata, b: ir.Metadata):
    start = max(a.effective_from or dt.date.min, b.effective_from or dt.date.min)
    end = min(a.effective_until or _FAR, b.effective_until or _FAR)
    return start if start <= end else None


def regions_overlap(a: Sequence[str], b: Sequence[str]) -> bool:
    """Whether two methodologies' regions meet: none given is everywhere; a region contains
    its subdivisions and places (`CN` contains `CN-HB`, which contains `CN-HB.Wuhan`)."""
    if not a or not b:
        return True
    return any(_within(x, y) or _within(y, x) for x in a for y in b)


def _within(inner: str, outer: str) -> bool:
    return inner == outer or (inner.startswith(outer) and inner[len(outer)] in "-.")


def check_library(compiled: Sequence) -> list[Diagnostic]:
    """W0401 for each unresolved pair. ``compiled``: objects with .file, .source, .methodology."""
    diagnostics: list[Diagnostic] = []
    good = [c for c in compiled if c.methodology is not None]
    for i, first in enumerate(good):
        for second in good[i + 1:]:
            a, b = first.methodology.metadata, second.methodology.metadata
            if a.id == b.id:
                continue
            shared = sorted(set(a.covers) & set(b.covers))
            start = _overlap(a, b)
            if not shared or start is None or not regions_overlap(a.regions, b.regions):
                continue
            if b.id in a.precedes or a.id in b.precedes:
                continue
            report = Reporter(second.file)
            for activity in shared:
                where = sorted(set(a.regions) | set(b.regions))
                report.report("W0401", _covers_span(second.source, activity), activity=activity,
                              start=start, where=f" in {', '.join(where)}" if where else "",
                              notes=[Note(f"`{a.id}` in {first.file} also covers `{activity}`",
                                          _covers_span(first.source, activity), first.file)],
                              help=f"add `precedes {a.id}` to the header of the one that should apply "
                                   f"(or `precedes {b.id}` to the other)")
            diagnostics += report.diagnostics
    return diagnostics


def _covers_span(source: str, activity: str):
    for number, line in enumerate(source_lines(source), start=1):
        stripped = line.lstrip()
        if stripped.startswith("covers") and activity in line:
            column = line.index(activity, line.index("covers")) + 1
            return Span(number, column, number, column + len(activity))
    return None
