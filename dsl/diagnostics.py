"""Diagnostics: what the checker says about a file, and how it is shown.

Every diagnostic has a stable code (see dsl/messages.py, the one catalogue of them), a
severity, a message and a span. The same object renders as rustc-style text for people
and as JSON for tools (the web editor), so the two can never say different things.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Literal, Optional

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Span:
    """A range in a source file; lines and columns count from 1, end column exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int

    @staticmethod
    def of(thing) -> Optional["Span"]:
        """The span of a lark Token, a lark Meta, or an AST node (through its meta)."""
        if thing is None:
            return None
        if isinstance(thing, Span):
            return thing
        meta = getattr(thing, "meta", thing)
        if getattr(meta, "empty", False):
            return None
        line = getattr(meta, "line", None)
        if line is None:
            return None
        end_line = getattr(meta, "end_line", None) or line
        end_column = getattr(meta, "end_column", None) or meta.column + 1
        return Span(line, meta.column, end_line, end_column)


@dataclass(frozen=True)
class Note:
    message: str
    span: Optional[Span] = None
    file: str = ""  # when the note points into another file than its diagnostic


@dataclass(frozen=True)
class Diagnostic:
    code: str
    severity: Severity
    message: str
    file: str
    span: Optional[Span] = None
    label: str = ""
    help: str = ""
    notes: tuple[Note, ...] = field(default=())

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def sort_key(self):
        span = self.span or Span(0, 0, 0, 0)
        return (self.file, span.line, span.column, self.code)

    def to_json(self) -> dict:
        out = {
            "code": self.code,
            "severity": self.severity,
            "message": self.message,
            "file": self.file,
            "line": self.span.line if self.span else None,
            "column": self.span.column if self.span else None,
            "end_line": self.span.end_line if self.span else None,
            "end_column": self.span.end_column if self.span else None,
        }
        if self.label:
            out["label"] = self.label
        if self.help:
            out["help"] = self.help
        if self.notes:
            out["notes"] = [
                {"message": n.message, "file": n.file or self.file,
                 "line": n.span.line if n.span else None,
                 "column": n.span.column if n.span else None}
                for n in self.notes
            ]
        return out


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.is_error for d in diagnostics)


@lru_cache(maxsize=8)
def source_lines(source: str) -> tuple[str, ...]:
    """The lines as the parser counts them: split at "\n" only (and a CRLF's "\r" dropped).

    Not str.splitlines(), which also splits at form feeds, "\r", U+2028 ... that the
    parser takes as spaces, and would show the wrong line under a diagnostic. Cached:
    the diagnostics of one file are rendered one by one against the same source, and
    splitting a big file once per diagnostic made rendering quadratic.
    """
    return tuple(line[:-1] if line.endswith("\r") else line for line in source.split("\n"))


_FRAME = 160  # characters of a source line shown in a code frame


def _caret_block(lines: tuple[str, ...], span: Span, label: str, gutter: int) -> list[str]:
    out = []
    if not (1 <= span.line <= len(lines)):
        return out
    text = lines[span.line - 1].replace("\t", " ")
    start = max(span.column - 1, 0)
    if span.end_line == span.line:
        end = max(span.end_column - 1, start + 1)
    else:
        end = max(len(text), start + 1)
    if len(text) > _FRAME:  # a long line is shown around the caret, cut with … on each side
        left = max(0, min(start - _FRAME // 3, len(text) - _FRAME))
        cut = text[left:left + _FRAME]
        text = ("…" if left else "") + cut + ("…" if left + _FRAME < len(text) else "")
        shift = left - (1 if left else 0)
        start, end = start - shift, min(end - shift, len(text))
    pad = " " * gutter
    out.append(f"{pad} |")
    out.append(f"{str(span.line).rjust(gutter)} | {text}")
    # East Asian characters take two cells on a terminal; the caret must line up.
    def width(s: str) -> int:
        import unicodedata
        return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)

    lead = width(text[:start])
    carets = "^" * max(width(text[start:end]), 1)
    out.append(f"{pad} | {' ' * lead}{carets}{' ' + label if label else ''}")
    return out


def render_text(diagnostic: Diagnostic, source: Optional[str]) -> str:
    """rustc-style: header, location, the source line with a caret, then help and notes."""
    d = diagnostic
    lines = source_lines(source) if source is not None else ()
    head = f"{d.severity}[{d.code}]: {d.message}"
    if d.span:
        where = f"{d.file}:{d.span.line}:{d.span.column}"
    else:
        where = d.file
    gutter = len(str(d.span.end_line if d.span else 1))
    out = [head, f"{' ' * gutter}--> {where}"]
    if d.span:
        out += _caret_block(lines, d.span, d.label, gutter)
    for note in d.notes:
        if note.span:
            out.append(f"{' ' * gutter} = note: {note.message} ({note.file or d.file}:{note.span.line}:{note.span.column})")
        else:
            out.append(f"{' ' * gutter} = note: {note.message}")
    if d.help:
        out.append(f"{' ' * gutter} = help: {d.help}")
    return "\n".join(out)


def render_json(diagnostics: Iterable[Diagnostic]) -> str:
    return json.dumps([d.to_json() for d in diagnostics], ensure_ascii=False, indent=2)
