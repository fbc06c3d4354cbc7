"""E0305's suggested fix applies to what `points` was given (issue 12: a parameter `= 1`
used as points was told to write `floor(reduction / 1 g)`)."""

from dsl import compile_source

HEAD = '''methodology test.p "p" version 1.0.0 {
  covers ride
  effective from 2024-01-01
}
input distance: quantity [km]
parameter bonus = 1 source "t" [ASM]
reduction = 20 g/km * distance
'''


def _help(points: str) -> str:
    result = compile_source(HEAD + f"points = {points}\n", "p.tanpu")
    (error,) = [d for d in result.diagnostics if d.code == "E0305"]
    return error.help


def test_a_number_is_rounded_as_it_is():
    assert _help("bonus") == "convert explicitly, e.g. `points = floor(bonus)` or `round(bonus)`"
    assert _help("bonus * 2") == "convert explicitly, e.g. `points = floor(bonus * 2)` or `round(bonus * 2)`"


def test_a_mass_is_counted_in_grams():
    assert _help("reduction") == "convert explicitly, e.g. `points = floor(reduction / 1 g)`"
    suggested = _help("bonus").split("`")[1].removeprefix("points = ")
    assert compile_source(HEAD + f"points = {suggested}\n", "p.tanpu").ok  # the fix applies
