"""The parser: every construct of dsl/grammar.lark becomes its AST class, at its place.

Positions matter: the checker puts its caret under the name a token carries, so every
test that finds a name also checks its line and column.
"""

from __future__ import annotations

import pytest
from lark import Token

from dsl.surface import ast

from .kit import HEADER, HEADER_LINES, KITCHEN_SINK, SHENZHEN, parse_module, position


def items(text: str) -> list:
    return list(parse_module(HEADER + text).items)


def one(text: str):
    (item,) = items(text)
    return item


def expr(source: str):
    """The AST of one expression, written as the body of a `let`."""
    item = one(f"let x = {source}\n")
    assert isinstance(item, ast.LetDef)
    return item.expr


def at(token: Token, text: str, needle: str, occurrence: int = 1, *, whole: bool = False) -> None:
    """The token is ``needle`` and sits where ``needle`` is in ``text``.

    ``text`` is a body written after HEADER, or with ``whole`` a whole file.
    """
    assert isinstance(token, Token), token
    assert str(token) == needle
    line, column = position(text, needle, occurrence)
    if not whole:
        line += HEADER_LINES
    assert (token.line, token.column) == (line, column)


# ---------------------------------------------------------------- header
def test_header_fields():
    text = """methodology cn.sz.bus-1 "深圳公交" version 1.2.3-rc.1 {
  title en "Shenzhen bus"
  issuer "深圳市生态环境局"
  cite "Report" url "https://x" year "2021" table "T2" equation "E1" section "3"
    doi "10.1/x" note "n" status "draft"
  covers transit_trip, bike_trip
  description zh "中文说明"
  description "no language"
  effective from 2021-12-16 until 2030-12-31
  timezone Asia/Shanghai
  precedes cn.other, cn.third-1
}
"""
    module = parse_module(text)
    header = module.header
    assert isinstance(header, ast.Header)
    at(header.id, text, "cn.sz.bus-1", whole=True)
    assert str(header.title) == "深圳公交"  # the quotes are gone
    assert str(header.version) == "1.2.3-rc.1"
    kinds = [type(f) for f in header.fields]
    assert kinds == [ast.TitleField, ast.IssuerField, ast.CiteField, ast.CoversField,
                     ast.DescriptionField, ast.DescriptionField, ast.EffectiveField,
                     ast.TimezoneField, ast.PrecedenceField]
    title, issuer, cite, covers, desc_zh, desc, effective, zone, precedes = header.fields
    assert (str(title.lang), str(title.text)) == ("en", "Shenzhen bus")
    assert str(issuer.text) == "深圳市生态环境局"
    assert str(cite.text) == "Report"
    assert all(isinstance(d, ast.CiteDetail) for d in cite.details)
    assert [str(d.key) for d in cite.details] == [
        "url", "year", "table", "equation", "section", "doi", "note", "status"]
    assert [str(n) for n in covers.names] == ["transit_trip", "bike_trip"]
    at(covers.names[1], text, "bike_trip", whole=True)
    assert str(desc_zh.lang) == "zh" and desc.lang is None
    at(effective.start, text, "2021-12-16", whole=True)
    at(effective.until, text, "2030-12-31", whole=True)
    at(zone.zone, text, "Asia/Shanghai", whole=True)
    assert [str(i) for i in precedes.ids] == ["cn.other", "cn.third-1"]
    assert list(module.items) == []


def test_effective_without_until_and_utc_zone():
    text = 'methodology a "b" version 0.0.1 {\n effective from 2024-01-01\n timezone UTC\n}\n'
    header = parse_module(text).header
    effective, zone = header.fields
    assert effective.until is None
    assert str(zone.zone) == "UTC"


# ---------------------------------------------------------------- inputs
def test_input_quantity_with_every_option():
    text = 'input distance, 距离: quantity [km] optional = 1 km between 0 km and 200 km at least 0.5 km at most 300 km label "出行距离"\n'
    item = one(text)
    assert isinstance(item, ast.InputDecl)
    full = text
    at(item.names[0], full, "distance")
    at(item.names[1], full, "距离", 1)
    assert isinstance(item.type, ast.QuantityType)
    assert isinstance(item.type.unit, ast.Unit) and str(item.type.unit.text) == "km"
    kinds = [type(o) for o in item.options]
    assert kinds == [ast.OptionalOption, ast.DefaultOption, ast.BetweenOption,
                     ast.BoundOption, ast.BoundOption, ast.LabelOption]
    _, default, between, least, most, label = item.options
    assert isinstance(default.value, ast.QuantityLiteral)
    assert (str(default.value.number), str(default.value.unit)) == ("1", "km")
    assert str(between.low.number) == "0" and str(between.high.number) == "200"
    assert str(least.kind) == "least" and str(most.kind) == "most"
    assert str(label.text) == "出行距离"


@pytest.mark.parametrize("word", ["number", "integer", "boolean", "text", "date",
                                  "datetime", "duration"])
def test_input_simple_types(word):
    item = one(f"input v: {word}\n")
    assert isinstance(item.type, ast.SimpleType)
    assert str(item.type.name) == word
    assert list(item.options) == []


def test_input_choice_with_and_without_labels_and_trailing_comma():
    text = 'input mode: choice {\n  ebus "纯电动公交",\n  metro,\n  地铁 "metro",\n}\n'
    item = one(text)
    assert isinstance(item.type, ast.ChoiceType)
    options = item.type.options
    assert all(isinstance(o, ast.ChoiceOption) for o in options)
    assert [str(o.name) for o in options] == ["ebus", "metro", "地铁"]
    assert [o.label and str(o.label) for o in options] == ["纯电动公交", None, "metro"]
    at(options[2].name, text, "地铁")


@pytest.mark.parametrize("unit", ["km", "g/km", "kg/kWh", "m^2", "kg·m", "%", "mile",
                                  "kilometer", "1"])
def test_unit_in_brackets(unit):
    item = one(f"input v: quantity [{unit}]\n")
    assert str(item.type.unit.text) == unit


# ---------------------------------------------------------------- parameters
def test_parameter_scalar_with_head_before_and_after():
    before = one('parameter f [g/km] from 2021-12-16 source "S" [SRC] = 26.9\n')
    assert isinstance(before, ast.ParameterDecl)
    assert str(before.unit.text) == "g/km"
    assert isinstance(before.head, ast.PeriodHead)
    assert str(before.head.start) == "2021-12-16"
    assert isinstance(before.head.source, ast.SourceClause)
    assert (str(before.head.source.text), str(before.head.source.tag)) == ("S", "[SRC]")
    assert isinstance(before.body, ast.ScalarBody) and before.body.head is None
    assert str(before.body.value.number) == "26.9" and before.body.value.sign is None

    after = one('parameter f = -1.5e3 source "S"\n')
    assert after.unit is None and after.head is None and after.by is None
    assert isinstance(after.body.value, ast.SignedNumber)
    assert str(after.body.value.sign) == "-" and str(after.body.value.number) == "1.5e3"
    assert after.body.head.start is None and after.body.head.source.tag is None


@pytest.mark.parametrize("tag", ["[SRC]", "[DER]", "[ASM]", "[MEM]"])
def test_source_tags(tag):
    item = one(f'parameter f = 1 from 2024-01-01 source "s" {tag}\n')
    assert str(item.body.head.source.tag) == tag


def test_parameter_entries_every_key_kind():
    text = ('parameter f [g] by mode source "s" otherwise reject NO_FACTOR "无" {\n'
            '  ebus: 1, metro 2\n  3: 4\n  "text key": 5\n  true: 6\n  (a, b): -7\n}\n')
    item = one(text)
    assert isinstance(item.by, ast.ByClause)
    at(item.by.names[0], text, "mode")
    assert isinstance(item.otherwise, ast.OtherwiseReject)
    assert (str(item.otherwise.code), str(item.otherwise.message)) == ("NO_FACTOR", "无")
    assert isinstance(item.body, ast.EntriesBody)
    entries = item.body.entries
    assert all(isinstance(e, ast.Entry) for e in entries)
    keys = [e.key for e in entries]
    assert [k.token.type for k in keys[:5]] == ["NAME", "NAME", "NUMBER", "STRING", "KEYWORD"]
    assert [str(k.token) for k in keys[:5]] == ["ebus", "metro", "3", "text key", "true"]
    assert isinstance(keys[5], ast.KeyTuple)
    assert [str(a.token) for a in keys[5]] == ["a", "b"]
    assert str(entries[5].value.sign) == "-"
    at(keys[1].token, text, "metro")


def test_parameter_periods_scalar_and_table():
    text = ('parameter grid [kg/kWh] otherwise 0.5 {\n'
            '  from 2021-01-01 source "A" [SRC]: 0.5810\n'
            '  from 2023-01-01: 0.5703\n}\n')
    item = one(text)
    assert isinstance(item.otherwise, ast.OtherwiseValue)
    assert str(item.otherwise.value.number) == "0.5"
    assert isinstance(item.body, ast.PeriodsBody)
    first, second = item.body.periods
    assert isinstance(first, ast.Period) and isinstance(first.body, ast.PeriodValue)
    at(first.start, text, "2021-01-01")
    assert str(first.source.text) == "A" and second.source is None
    keyed = one('parameter f by m {\n from 2024-01-01 source "s": a: 1, b: 2\n}\n')
    (period,) = keyed.body.periods
    assert isinstance(period.body, ast.EntryList)
    assert [str(e.key.token) for e in period.body] == ["a", "b"]


# ---------------------------------------------------------------- definitions
def test_let_and_every_output():
    text = ("let speed [km/h] = distance / duration\n"
            "baseline = 1 g\nproject = 2 g\nleakage [g] = 0 g\nreduction = 3 g\npoints = 4\n")
    let, *outputs = items(text)
    assert isinstance(let, ast.LetDef)
    at(let.name, text, "speed")
    assert str(let.unit.text) == "km/h"
    # `distance/duration` with spaces or not is a division, not the unit `distance/duration`
    assert isinstance(let.expr, ast.BinaryMul) and str(let.expr.op) == "/"
    assert all(isinstance(o, ast.OutputDef) for o in outputs)
    assert [str(o.name) for o in outputs] == ["baseline", "project", "leakage", "reduction",
                                             "points"]
    at(outputs[3].name, text, "reduction")
    assert str(outputs[2].unit.text) == "g"


def test_division_without_spaces_is_not_a_unit():
    e = expr("distance/duration")
    assert isinstance(e, ast.BinaryMul) and str(e.op) == "/"
    assert isinstance(e.left, ast.NameExpr) and isinstance(e.right, ast.NameExpr)


# ---------------------------------------------------------------- rules
def test_require():
    text = 'require mode in { ebus, metro } else NOT_COVERED "只适用于公交"\n'
    item = one(text)
    assert isinstance(item, ast.RequireStmt)
    assert isinstance(item.cond, ast.InSet) and item.cond.negated is None
    at(item.code, text, "NOT_COVERED")
    assert str(item.message) == "只适用于公交"


@pytest.mark.parametrize("period", ["day", "week", "month", "year"])
def test_cap(period):
    item = one(f"cap reduction at 2 kg per account per {period} in Asia/Shanghai\n")
    assert isinstance(item, ast.CapRule)
    assert str(item.target) == "reduction" and str(item.period) == period
    assert isinstance(item.limit, ast.QuantityLiteral)
    assert str(item.zone) == "Asia/Shanghai"
    points = one("cap points at 500 per account per day\n")
    assert str(points.target) == "points" and points.zone is None
    assert isinstance(points.limit, ast.NumberLiteral)


def test_overlap_duplicate_bonus_flag():
    text = ('forbid overlap between started and ended per account else OVERLAP "重叠"\n'
            'forbid duplicate route, started per account else DUPLICATE_TRIP "重复"\n'
            "bonus 50 points on the 3rd record per account within 7 days\n"
            'flag more than 20 records per account within 1 h as TOO_FREQUENT "频繁"\n')
    overlap, duplicate, bonus, flag = items(text)
    full = text
    assert isinstance(overlap, ast.OverlapRule)
    at(overlap.start, full, "started")
    at(overlap.end, full, "ended")
    assert str(overlap.code) == "OVERLAP"
    assert isinstance(duplicate, ast.DuplicateRule)
    assert [str(k) for k in duplicate.keys] == ["route", "started"]
    at(duplicate.keys[1], full, "started", 2)
    assert isinstance(bonus, ast.BonusRule)
    assert (str(bonus.points), str(bonus.ordinal)) == ("50", "3rd")
    assert (str(bonus.window.number), str(bonus.window.unit)) == ("7", "days")
    assert isinstance(flag, ast.FlagRule)
    assert str(flag.count) == "20" and str(flag.code) == "TOO_FREQUENT"


# ---------------------------------------------------------------- examples
def test_single_example_every_literal_and_expectation():
    text = ('example "全部" { q: -8.2 km, n: 3, t: "x", d: 2024-05-20, dt: 2024-05-20T08:30:00+08:00,'
            ' b: true, c: ebus, u: 3 g/km, } => reduction 220.58 g, points 220, credited\n')
    item = one(text)
    assert isinstance(item, ast.SingleExample)
    assert str(item.title) == "全部"
    (step,) = item.steps
    assert isinstance(step, ast.ExampleStep) and isinstance(step.record, ast.Record)
    fields = step.record.fields
    assert all(isinstance(f, ast.Field) for f in fields)
    assert [type(f.value) for f in fields] == [
        ast.QuantityLiteral, ast.NumberLiteral, ast.TextLiteral, ast.DateLiteral,
        ast.DatetimeLiteral, ast.BoolLiteral, ast.NameLiteral, ast.QuantityLiteral]
    assert str(fields[0].value.sign) == "-"
    assert str(fields[7].value.unit) == "g/km"
    at(fields[4].name, text, "dt")
    value, points, status = step.expectations
    assert isinstance(value, ast.ExpectValue) and str(value.output) == "reduction"
    assert isinstance(points, ast.ExpectValue) and isinstance(points.value, ast.NumberLiteral)
    assert isinstance(status, ast.ExpectStatus) and str(status.status) == "credited"


def test_sequence_example_and_other_expectations():
    text = ('example "seq" {\n'
            '  { } => rejected OVERLAP\n'
            '  { a: 1 } => duplicate\n'
            '  { a: 1 } => duplicate DUP, flagged TOO_FREQUENT, bonus 50\n'
            '  { a: 1 } => capped\n'
            '  { a: 1 } => not applicable\n'
            '}\n')
    item = one(text)
    assert isinstance(item, ast.SequenceExample)
    steps = item.steps
    assert len(steps) == 5
    assert list(steps[0].record.fields) == []
    (rejected,) = steps[0].expectations
    assert isinstance(rejected, ast.ExpectRejected)
    at(rejected.code, text, "OVERLAP")
    (plain,) = steps[1].expectations
    assert isinstance(plain, ast.ExpectDuplicate) and plain.code is None
    dup, flagged, bonus = steps[2].expectations
    assert isinstance(dup, ast.ExpectDuplicate) and str(dup.code) == "DUP"
    assert isinstance(flagged, ast.ExpectFlagged) and str(flagged.code) == "TOO_FREQUENT"
    assert isinstance(bonus, ast.ExpectBonus) and str(bonus.points) == "50"
    assert str(steps[3].expectations[0].status) == "capped"
    assert str(steps[4].expectations[0].status) == "not applicable"
    assert steps[4].meta.line == HEADER_LINES + 6


# ---------------------------------------------------------------- expressions
def test_atoms():
    assert isinstance(expr("1"), ast.NumberExpr) and expr("1").unit is None
    number = expr("26.9 g/km")
    assert (str(number.number), str(number.unit)) == ("26.9", "g/km")
    assert str(expr("2 kg").unit) == "kg"
    assert isinstance(expr('"text"'), ast.TextExpr)
    assert isinstance(expr("2024-05-20"), ast.DateExpr)
    assert isinstance(expr("2024-05-20T08:30Z"), ast.DatetimeExpr)
    assert isinstance(expr("true"), ast.BoolExpr) and str(expr("false").value) == "false"
    assert isinstance(expr("(distance)"), ast.NameExpr)  # parentheses leave no node
    call = expr("max(1, 2, 3)")
    assert isinstance(call, ast.Call) and str(call.func) == "max" and len(call.args) == 3


def test_output_names_are_names_in_expressions():
    e = expr("baseline - project - leakage")
    assert isinstance(e.right, ast.NameExpr) and str(e.right.name) == "leakage"
    assert isinstance(e.left.left, ast.NameExpr) and str(e.left.left.name) == "baseline"


def test_precedence_and_associativity():
    e = expr("a + b * c")
    assert isinstance(e, ast.BinaryAdd) and isinstance(e.right, ast.BinaryMul)
    e = expr("a - b - c")
    assert isinstance(e, ast.BinaryAdd) and isinstance(e.left, ast.BinaryAdd)
    assert str(e.right.name) == "c"
    e = expr("a / b / c")
    assert isinstance(e.left, ast.BinaryMul) and str(e.right.name) == "c"
    e = expr("a or b and not c")
    assert isinstance(e, ast.OrOp) and isinstance(e.right, ast.AndOp)
    assert isinstance(e.right.right, ast.NotOp)
    e = expr("-a[1] * 2")
    assert isinstance(e, ast.BinaryMul) and isinstance(e.left, ast.Negate)
    assert isinstance(e.left.operand, ast.Lookup)
    e = expr("a + 1 < b * 2")
    assert isinstance(e, ast.Compare) and isinstance(e.left, ast.BinaryAdd)
    e = expr("(a + b) * c")
    assert isinstance(e, ast.BinaryMul) and isinstance(e.left, ast.BinaryAdd)


@pytest.mark.parametrize("op", ["<", "<=", "==", "!=", ">=", ">", "≤", "≥", "≠"])
def test_comparisons(op):
    e = expr(f"a {op} b")
    assert isinstance(e, ast.Compare) and str(e.op) == op


@pytest.mark.parametrize("op", ["*", "/", "×", "÷"])
def test_multiplication_signs(op):
    e = expr(f"a {op} b")
    assert isinstance(e, ast.BinaryMul) and str(e.op) == op


def test_in_and_not_in():
    e = expr("mode in { ebus, metro }")
    assert isinstance(e, ast.InSet) and e.negated is None
    assert [str(v.name) for v in e.values] == ["ebus", "metro"]
    e = expr("mode not in { ebus }")
    assert isinstance(e, ast.InSet) and str(e.negated) == "not"


def test_if_case_and_lookup():
    e = expr("if a > 1 then 2 else 3")
    assert isinstance(e, ast.IfExpr)
    assert isinstance(e.cond, ast.Compare) and str(e.otherwise.number) == "3"
    e = expr("case mode when ebus, metro then 1 when bike then 2 else 0 end")
    assert isinstance(e, ast.CaseExpr) and isinstance(e.subject, ast.NameExpr)
    assert all(isinstance(w, ast.WhenClause) for w in e.whens)
    assert [len(w.values) for w in e.whens] == [2, 1]
    assert str(e.otherwise.number) == "0"
    e = expr("case when a > 1 then 1 end")
    assert e.subject is None and e.otherwise is None
    e = expr("factor[mode, year(time)]")
    assert isinstance(e, ast.Lookup) and str(e.table.name) == "factor"
    assert isinstance(e.keys[1], ast.Call)


def test_expression_name_positions():
    text = "let 减排量 = 因子[方式] * 距离 + other\n"
    item = one(text)
    full = text
    at(item.name, full, "减排量")
    add = item.expr
    at(add.right.name, full, "other")
    at(add.left.right.name, full, "距离")
    lookup = add.left.left
    at(lookup.table.name, full, "因子")
    at(lookup.keys[0].name, full, "方式")
    at(add.op, full, "+")
    assert (item.meta.line, item.meta.column) == (HEADER_LINES + 1, 1)


def test_statement_positions_across_lines_and_comments():
    text = "# a comment\n\n   let a = 1   # trailing\n\tlet b = a\n"
    a, b = items(text)
    assert (a.name.line, a.name.column) == (HEADER_LINES + 3, 8)
    assert (b.name.line, b.name.column) == (HEADER_LINES + 4, 6)  # a tab is one column
    assert (b.expr.name.line, b.expr.name.column) == (HEADER_LINES + 4, 10)


def test_ideographic_space_is_whitespace():
    item = one("let\u3000a\u3000=\u30001\n")
    assert str(item.name) == "a" and item.name.column == 5


# ---------------------------------------------------------------- keywords are names elsewhere
@pytest.mark.parametrize("word", [
    "the", "projected", "on", "record", "records", "more", "than", "within", "per",
    "account", "day", "week", "month", "year", "source", "label", "optional", "between",
    "least", "most", "from", "until", "title", "issuer", "cite", "url", "doi", "note",
    "status", "covers", "version", "methodology", "choice", "quantity", "number", "text",
    "date", "datetime", "duration", "integer", "boolean", "reject", "otherwise", "by",
    "overlap", "duplicate", "rejected", "credited", "capped", "applicable", "flagged",
    "as", "inputs", "letter", "require_more", "example_1", "capacity", "flagship",
    "bonuses", "reductions", "pointsx", "距离",
])
def test_words_that_are_not_keywords_here_are_names(word):
    text = f"let {word} = 1\nlet y = {word} + 1\n"
    let, use = items(text)
    assert str(let.name) == word and let.name.type == "NAME"
    assert isinstance(use.expr.left, ast.NameExpr) and str(use.expr.left.name) == word
    at(use.expr.left.name, text, word, 2)


def test_keyword_prefixes_are_names_in_expressions():
    # `projected` is not `project` followed by `ed`; `input_x` is not `input`
    e = expr("projected + input_x + reductions + cases + iffy + thenx")
    names = []
    while isinstance(e, ast.BinaryAdd):
        names.append(str(e.right.name))
        e = e.left
    names.append(str(e.name))
    assert names[::-1] == ["projected", "input_x", "reductions", "cases", "iffy", "thenx"]


def test_shenzhen_parses_into_the_expected_items():
    module = parse_module(SHENZHEN)
    kinds = [type(i).__name__ for i in module.items]
    assert kinds == ["InputDecl"] * 4 + ["ParameterDecl", "RequireStmt", "RequireStmt",
                                         "OutputDef", "OutputDef", "OverlapRule"] \
        + ["SingleExample"] * 3 + ["SequenceExample"]
    parameter = module.items[4]
    at(parameter.name, SHENZHEN, "reduction_factor", whole=True)


# ---------------------------------------------------------------- lexing is never ambiguous
@pytest.mark.parametrize("source", ["baseline - project - leakage", "reduction - 1 g",
                                    "points - 1", "true - 1", "baseline -1 g"])
def test_minus_after_an_output_name_or_a_boolean_is_subtraction(source):
    # These states are shared with literals (`=> reduction -1 g`), where `-` is a sign.
    e = expr(source)
    assert isinstance(e, ast.BinaryAdd) and str(e.op) == "-"


def test_no_parser_state_accepts_two_terminals_for_the_same_text():
    """The contextual lexer picks one terminal per text; two that both fit must not meet.

    Keywords against NAME are fine (lark gives the keyword when it is expected);
    any other pair would make the lexer guess.
    """
    import re

    from dsl.surface.parse import _parser

    parser = _parser()
    terminals = {t.name: t for t in parser.terminals}
    table = parser.parser.parser.parser.parse_table
    samples = ["-", "+", "*", "/", "<", "=", "en", "zh-CN", "km", "g/km", "m^2", "%", "UTC",
               "Asia/Shanghai", "cn.sz", "1", "1.5", "2024-01-01", "2024-01-01T08:00",
               "1.0.0", "3rd", "[SRC]", '"s"', "name"]
    clashes = set()
    for actions in table.states.values():
        accepted = [a for a in actions if a in terminals]
        for sample in samples:
            fits = sorted(a for a in accepted
                          if re.fullmatch(terminals[a].pattern.to_regexp(), sample))
            if len(fits) > 1:
                clashes.add((sample, tuple(fits)))
    assert clashes == set()


def test_the_kitchen_sink_uses_every_construct():
    """tests/dsl/data/kitchen-sink.tanpu has a node of every class of the surface AST."""
    import dataclasses

    seen, stack = set(), [parse_module(KITCHEN_SINK)]
    while stack:
        node = stack.pop()
        seen.add(type(node))
        if isinstance(node, list):
            stack.extend(node)
        if dataclasses.is_dataclass(node):
            stack.extend(getattr(node, f.name) for f in dataclasses.fields(node) if f.name != "meta")
    classes = {c for c in vars(ast).values()
               if isinstance(c, type) and issubclass(c, ast._Ast) and not c.__name__.startswith("_")}
    assert sorted(c.__name__ for c in classes - seen) == []
