"""The diagnostics in Chinese (dsl/messages_zh.py): a template for every code with the same
fields, each snippet of test_catalogue.py's table shown in Chinese (message, label, help
and notes), and the syntax labels translated."""

from __future__ import annotations

import re
import string

import pytest

from dsl.messages import CATALOGUE
from dsl.messages_zh import ZH, fields_of, phrase, translate
from dsl.surface.syntax_errors import LABELLED_EXAMPLES

from .test_catalogue import CASES, _compile

CJK = re.compile(r"[\u4e00-\u9fff]")


def _fields(template: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f}


def test_every_code_has_a_chinese_template_with_the_same_fields():
    assert set(ZH) == set(CATALOGUE)
    for code, english in CATALOGUE.items():
        assert _fields(ZH[code]) == _fields(english), code
        assert CJK.search(ZH[code]) or not CJK.sub("", re.sub(r"\{\w+\}", "", ZH[code])), code


@pytest.mark.parametrize("code", sorted(CATALOGUE))
def test_a_message_gives_back_the_fields_it_was_made_from(code):
    fields = {f: f"2024-01-0{i + 1}" if f in ("start", "until") else f"<{f}-{i}>"
              for i, f in enumerate(sorted(_fields(CATALOGUE[code])))}
    made = CATALOGUE[code].format(**fields)
    assert fields_of(code, made) == fields
    assert all(v in translate({"code": code, "message": made})["message"]
               for v in fields.values())


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.code)
def test_each_catalogue_snippet_reads_in_chinese(c):
    """Every diagnostic of the snippet: the message rebuilt from the Chinese template,
    and its label, help and notes in Chinese when they are a known phrase."""
    diagnostics = _compile(c).diagnostics
    assert diagnostics
    for d in diagnostics:
        english = d.to_json()
        zh = translate(english)
        assert zh["code"] == english["code"] and zh["line"] == english["line"]
        assert fields_of(d.code, d.message) is not None, d.message
        assert CJK.search(zh["message"]), (d.code, zh["message"])
        for key in ("label", "help"):
            if english.get(key) and re.search(r"[a-z]{4}", re.sub(r"`[^`]*`", "", english[key])):
                assert CJK.search(zh[key]), (d.code, key, english[key])
        for note in zh.get("notes", []):
            assert CJK.search(note["message"]), (d.code, note)


def test_the_syntax_labels_are_translated():
    for label in LABELLED_EXAMPLES:
        assert phrase(label) is not None and CJK.search(phrase(label)), label


def test_the_english_stays_where_nothing_matches():
    """An author's own text in a field is kept as written; an unknown help line too."""
    made = CATALOGUE["E0201"].format(name="距离X")
    assert translate({"code": "E0201", "message": made})["message"] == "未知名称 `距离X`"
    assert translate({"code": "E0201", "message": "x", "help": "no such phrase"}) == {
        "code": "E0201", "message": "x", "help": "no such phrase"}
