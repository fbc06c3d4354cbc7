"""Packaging checks: what an installed Tanpu must ship."""

from importlib.resources import files


def test_grammar_is_package_data():
    grammar = files("dsl") / "grammar.lark"
    assert grammar.is_file(), f"dsl/grammar.lark not found via importlib.resources: {grammar}"
