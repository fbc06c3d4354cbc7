"""Helpers shared by the language tests: a small valid header and compile shortcuts."""

from __future__ import annotations

from pathlib import Path

from dsl import Compiled, compile_source
from dsl.messages import Reporter
from dsl.surface import ast
from dsl.surface.parse import parse

ROOT = Path(__file__).resolve().parents[2]
SHENZHEN_PATH = ROOT / "methodologies" / "shenzhen-public-transit.tanpu"
SHENZHEN = SHENZHEN_PATH.read_text(encoding="utf-8")
# Every construct of the language, compiling with no diagnostic (its examples pass too).
KITCHEN_SINK = (Path(__file__).parent / "data" / "kitchen-sink.tanpu").read_text(encoding="utf-8")

# Five lines; a body given to `body()` starts on line 6.
HEADER = """methodology t.x "T" version 1.0.0 {
  covers trip
  effective from 2024-01-01
  timezone Asia/Shanghai
}
"""
HEADER_LINES = HEADER.count("\n")

# The smallest body that compiles with no diagnostic at all (lines 6-8).
MINIMAL = """input distance: quantity [km]
reduction = 26.9 g/km * distance
points = floor(reduction / 1 g)
"""


def body(text: str, *, minimal: bool = True) -> str:
    """A whole file: the header, the minimal body (unless told not), then ``text``."""
    return HEADER + (MINIMAL if minimal else "") + text


def check(text: str, file: str = "t.tanpu") -> Compiled:
    return compile_source(text, file)


def codes(compiled: Compiled) -> list[str]:
    return [d.code for d in compiled.diagnostics]


def where(compiled: Compiled) -> list[tuple[str, int, int]]:
    return [(d.code, d.span.line, d.span.column) for d in compiled.diagnostics]


def position(text: str, needle: str, occurrence: int = 1) -> tuple[int, int]:
    """(line, column), from 1, of the ``occurrence``-th ``needle`` in ``text``."""
    index = -1
    for _ in range(occurrence):
        index = text.index(needle, index + 1)
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, column


def parse_module(text: str) -> ast.Module:
    """The surface AST of a file that must parse without any syntax error."""
    report = Reporter("t.tanpu")
    result = parse(text, "t.tanpu", report)
    assert result is not None and not report.diagnostics, [
        (d.code, d.message, d.span) for d in report.diagnostics]
    return result.module
