"""Rendering diagnostics: rustc-style text with a caret under the exact columns, and JSON."""

from __future__ import annotations

import json

import pytest

from dsl import render_json, render_text
from dsl.diagnostics import Diagnostic, Note, Span

from .kit import body, check


def caret_line(rendered: str) -> str:
    """The line of carets, without the gutter."""
    (line,) = [ln for ln in rendered.splitlines() if "^" in ln]
    return line.split(" | ", 1)[1]


def source_line(rendered: str, number: int) -> str:
    (line,) = [ln for ln in rendered.splitlines() if ln.lstrip().startswith(f"{number} | ")]
    return line.split(" | ", 1)[1]


def diagnostic(line, column, end_column, label="", **kw) -> Diagnostic:
    return Diagnostic("E0201", "error", "unknown name `x`", "f.tanpu",
                      Span(line, column, line, end_column), label=label, **kw)


def test_caret_under_the_span_ascii():
    source = "a\nlet total = distance + load\n"
    rendered = render_text(diagnostic(2, 22, 23, "here"), source)
    assert rendered.splitlines()[:2] == ["error[E0201]: unknown name `x`", " --> f.tanpu:2:22"]
    assert source_line(rendered, 2) == "let total = distance + load"
    assert caret_line(rendered) == " " * 21 + "^ here"


def test_caret_width_is_the_span_width():
    source = "reduction = 26.9 g/km * distanse\n"
    rendered = render_text(diagnostic(1, 25, 33), source)
    assert caret_line(rendered) == " " * 24 + "^" * 8


def test_caret_after_chinese_characters_counts_two_cells_each():
    source = 'input 距离: quantity [km] label "出行距离"\nlet 减排 = 因子 * 距離\n'
    column = source.splitlines()[1].index("距離") + 1
    assert column == 15  # `let 减排 = 因子 * `: 14 characters, 10 narrow and 4 wide
    rendered = render_text(diagnostic(2, column, column + 2, "not defined"), source)
    line = source_line(rendered, 2)
    carets = caret_line(rendered)
    assert carets.endswith("^^^^ not defined")  # two wide characters: four cells
    # the caret starts at the display cell where 距離 starts
    lead = len(carets) - len(carets.lstrip(" "))
    prefix = line[:column - 1]
    cells = sum(2 if "\u4e00" <= ch <= "\u9fff" else 1 for ch in prefix)
    assert lead == cells == 18


def test_ideographic_space_is_wide_too():
    source = "let\u3000x\u3000=\u3000y\n"
    rendered = render_text(diagnostic(1, 9, 10), source)
    assert caret_line(rendered) == " " * 11 + "^"  # `let` 3 + three wide spaces 6 + `x=` 2


def test_tab_is_shown_as_one_space_and_counted_as_one_column():
    source = "\tlet x = y\n"
    rendered = render_text(diagnostic(1, 10, 11), source)
    assert source_line(rendered, 1) == " let x = y"
    assert caret_line(rendered) == " " * 9 + "^"


def test_gutter_widens_for_long_line_numbers():
    source = "\n" * 1233 + "x\n"
    rendered = render_text(diagnostic(1234, 1, 2), source)
    lines = rendered.splitlines()
    assert lines[1] == "    --> f.tanpu:1234:1"
    assert lines[2] == "     |"
    assert lines[3] == "1234 | x"
    assert lines[4] == "     | ^"


def test_help_and_notes():
    d = diagnostic(1, 1, 2, help="did you mean `y`?",
                   notes=(Note("first defined here", Span(3, 5, 3, 6)), Note("no place")))
    rendered = render_text(d, "x\n")
    assert rendered.splitlines()[-3:] == [
        "  = note: first defined here (f.tanpu:3:5)",
        "  = note: no place",
        "  = help: did you mean `y`?",
    ]


def test_no_span_and_a_span_past_the_end():
    d = Diagnostic("E0002", "error", "m", "f.tanpu", None)
    assert render_text(d, "x") == "error[E0002]: m\n --> f.tanpu"
    rendered = render_text(diagnostic(9, 1, 2), "only one line\n")
    assert "^" not in rendered  # nothing to point at, but no crash


def test_warnings_render_as_warnings():
    compiled = check(body("let spare = 1\n"))
    (warning,) = compiled.diagnostics
    assert compiled.render().startswith("warning[W0102]: `spare` is defined but never used")


def test_json_has_the_same_facts_as_the_text():
    compiled = check(body("let x = distanse\n"))
    (data,) = json.loads(render_json(compiled.diagnostics))
    assert data == {
        "code": "E0201", "severity": "error", "message": "unknown name `distanse`",
        "file": "t.tanpu", "line": 9, "column": 9, "end_line": 9, "end_column": 17,
        "label": "not defined", "help": "did you mean `distance`?",
    }
    text = compiled.render()
    assert "t.tanpu:9:9" in text and "did you mean `distance`?" in text


def test_json_keeps_chinese_as_is():
    compiled = check(body("input m: choice { 公交 }\nrequire m == 地铁 else X \"m\"\n"))
    rendered = render_json(compiled.diagnostics)
    assert "地铁" in rendered and "\\u" not in rendered


@pytest.mark.parametrize("separator", ["\u2028", "\x0c", "\r", "\x85", "\x1c", "\x0b"])
def test_the_line_shown_is_the_line_the_parser_counted(separator):
    # The parser starts a line at "\n" only; these are spaces or comment text to it.
    text = body(f"# note{separator}more\nlet x = nope\n")
    compiled = check(text)
    (error,) = compiled.diagnostics
    assert (error.code, error.span.line) == ("E0201", 10)
    rendered = compiled.render()
    assert source_line(rendered, 10) == "let x = nope"
    assert caret_line(rendered) == " " * 8 + "^^^^ not defined"


def test_crlf_files_show_their_lines_without_the_cr():
    text = body("let x = nope\n").replace("\n", "\r\n")
    compiled = check(text)
    (error,) = compiled.diagnostics
    assert (error.span.line, error.span.column) == (9, 9)
    assert source_line(compiled.render(), 9) == "let x = nope"


def test_rendering_many_diagnostics_splits_the_source_once():
    from dsl.diagnostics import source_lines

    text = body("".join(f"let spare{i} = {i}\n" for i in range(300)))
    compiled = check(text)
    assert len(compiled.warnings) == 300
    source_lines.cache_clear()
    rendered = compiled.render()
    assert rendered.count("warning[W0102]") == 300
    assert source_lines.cache_info().misses == 1  # not once per diagnostic
