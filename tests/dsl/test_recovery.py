"""After a mistake the checker goes on, and says nothing that is only a consequence of it.

A file with a syntax error is parsed statement by statement: each broken statement gives
one syntax error, the others are still checked (at their true positions), and what the
broken statements meant (the names they define, the narrowing of a `require`, the reason
codes of rules) does not turn into errors elsewhere.
"""

from __future__ import annotations

import pytest

from .kit import HEADER, SHENZHEN, body, check, position


def found(compiled):
    return [(d.code, d.span.line, d.span.column) for d in compiled.diagnostics]


def test_each_broken_statement_gives_one_error_and_the_rest_is_checked():
    text = body("let a = (1 +\n"
                "let b = distanse\n"
                "let c = 2 2\n"
                "let d = 1 km + 1 kg\n")
    assert found(check(text)) == [("E0103", 9, 12), ("E0201", 10, 9), ("E0101", 11, 11),
                                  ("E0302", 12, 14)]


def test_positions_after_recovery_are_those_of_the_file():
    text = HEADER + "\n\n# comment\n   let a = (\n\n      let b = 距离 + nope\n"
    compiled = check(text)
    unknown = [d for d in compiled.diagnostics if d.code == "E0201"]
    assert [(d.span.line, d.span.column) for d in unknown] == [
        position(text, "距离"), position(text, "nope")]


def test_a_name_whose_definition_is_broken_is_not_also_unknown():
    text = body("let a = (1 +\nlet b = a * 2\nrequire b > 0 else X \"m\"\n")
    assert [d.code for d in check(text).diagnostics] == ["E0103"]


@pytest.mark.parametrize("broken, use", [
    ("input spare: quantity [km\n", "let u = spare * 1 g/km\n"),
    ("input spare, other: quantity\n", "let u = (spare + other) * 1 g/km\n"),
    ("parameter spare [g] = \n", "let u = spare\n"),
    ("let spare = (\n", "let u = spare\n"),
])
def test_a_broken_declaration_defines_its_name(broken, use):
    compiled = check(body(broken + use + "require u > 0 g else X \"m\"\n"))
    (error,) = compiled.diagnostics  # no unknown name, no unused warning
    assert error.code == "E0103" and error.span.line == 9


def test_a_broken_output_is_not_also_missing():
    compiled = check(HEADER + "input d: quantity [km]\nreduction = 1 g/km * d\npoints = \n")
    assert [d.code for d in compiled.diagnostics] == ["E0103"]  # not also E0602


def test_a_require_that_does_not_parse_narrows_nothing_and_reports_nothing_else():
    text = SHENZHEN.replace("else NOT_COVERED", "NOT_COVERED", 1)
    compiled = check(text)
    # not also: a missing diesel_bus factor (E0403), an unknown reason code (E0704)
    assert found(compiled) == [("E0101", *position(text, "NOT_COVERED"))]


def test_a_require_that_does_not_check_narrows_nothing_and_reports_nothing_else():
    text = SHENZHEN.replace("mode in { ebus, metro }", "mode in { ebus, metor }", 1)
    compiled = check(text)
    (error,) = compiled.diagnostics
    assert error.code == "E0204" and error.help == "did you mean `metro`?"


def test_a_rule_with_an_error_still_gives_its_reason_code_to_examples():
    text = SHENZHEN.replace("between boarded and alighted", "between boarded and distance")
    assert [d.code for d in check(text).diagnostics] == ["E0604"]


def test_a_rule_that_does_not_parse_leaves_its_reason_codes_unchecked():
    text = SHENZHEN.replace("between boarded and alighted", "between boarded and and alighted")
    assert [d.code for d in check(text).diagnostics] == ["E0101"]
    # but a code no statement gives is still reported
    text = SHENZHEN.replace("=> rejected NOT_COVERED", "=> rejected NOT_COVERD")
    (error,) = check(text).diagnostics
    assert error.code == "E0704" and error.help == "did you mean `NOT_COVERED`?"


def test_a_syntax_error_in_the_header_and_in_an_item_are_both_reported():
    text = SHENZHEN.replace('title en "Shenzhen', 'title "Shenzhen', 1).replace(
        "points = floor(reduction / 1 g)", "points = floor(reduction / 1 g", 1)
    codes = [d.code for d in check(text).diagnostics]
    assert codes == ["E0101", "E0103"]


def test_a_comment_before_a_broken_header_does_not_hide_it():
    text = "# 注释\n# another\n" + HEADER.replace("covers trip", "covers") + \
        "input d: quantity [km]\nreduction = 1 g/km * d\npoints = floor(reduction / 1 g)\n"
    (error,) = check(text).diagnostics
    assert error.code == "E0101" and error.span.line == 5  # `effective` where a name was due


def test_a_file_without_a_header():
    compiled = check("input d: quantity [km]\nreduction = 1 g/km * d\n")
    assert [d.code for d in compiled.errors] == ["E0002"]
    assert compiled.methodology is None and not compiled.ok


@pytest.mark.parametrize("text", ["", "   \n\n", "# only a comment\n"])
def test_an_empty_file(text):
    compiled = check(text)
    assert [d.code for d in compiled.diagnostics] == ["E0002"]
    assert compiled.diagnostics[0].span.line == 1


def test_a_statement_keyword_inside_a_broken_statement_starts_a_new_one():
    text = body("let x = (1 +\nrequire distance > 1 km else LONG \"m\"\n")
    compiled = check(text)
    assert [d.code for d in compiled.diagnostics] == ["E0103"]


def test_byte_order_mark_is_ignored():
    from dsl import compile_bytes
    compiled = compile_bytes(b"\xef\xbb\xbf" + SHENZHEN.encode("utf-8"))
    assert compiled.ok and compiled.diagnostics == []


def test_a_record_field_named_like_a_statement_does_not_start_one():
    text = body('input flag: boolean\ninput example: text\nrequire flag else NO "m"\n'
                "let broken = (1 +\n"
                'example "x" {\n  flag: true,\n  example: "t",\n  distance: 1 km\n} => credited\n')
    compiled = check(text)
    assert [(d.code, d.span.line) for d in compiled.diagnostics] == [("E0103", 12)]
