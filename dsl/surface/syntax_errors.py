"""Syntax errors labelled by example (after lark's error_reporting_lalr.py).

Each label is shown when a statement fails in the same parser state as one of its
examples, so the message names the mistake ("`=` defines, `==` compares") rather than
listing the tokens the parser would have accepted. Add a label by adding a failing
example; no parser internals to touch.
"""

LABELLED_EXAMPLES: dict[str, list[str]] = {
    "a `require` needs `else CODE \"message\"` after its condition": [
        "require a > 1",
        "require a > 1 CODE \"m\"",
        "require a in { b } CODE \"m\"",
    ],
    "a reason needs a code and a quoted message: `else CODE \"message\"`": [
        "require a > 1 else \"m\"",
        "require a > 1 else CODE",
        "require a > 1 else CODE m",
    ],
    "`=` defines a value; compare with `==`": [
        "require a = 1 else C \"m\"",
        "let x = a = 1",
    ],
    "a unit is written in square brackets, e.g. `quantity [km]`": [
        "input d: quantity km",
        "input d: quantity",
        "parameter p g = 1",
    ],
    "choice values go in braces: `choice { ebus \"纯电动公交\", metro \"地铁\" }`": [
        "input m: choice a, b",
        "input m: choice a",
    ],
    "an input needs a type after the colon: quantity [unit], number, integer, boolean, text, choice {...}, date, datetime or duration": [
        "input d:",
        "input d: kilometres",
        "input d",
    ],
    "a parameter needs a value: `= 1.5 source \"...\"` or a block `{ key: value ... }`": [
        "parameter p [g]",
        "parameter p [g] source \"s\"",
    ],
    "an example needs `=>` and what it expects, e.g. `=> reduction 220.58 g`": [
        "example \"x\" { a: 1 }",
        "example \"x\" { a: 1 } reduction 1 g",
    ],
    "record fields are separated by commas: `{ mode: ebus, distance: 8.2 km }`": [
        "example \"x\" { a: b c: 1 } => credited",
        "example \"x\" { a: 1 km c: 1 } => credited",
    ],
    "a `case` ends with `end`": [
        "let x = case a when b then 1",
        "let x = case a when b then 1 else 2",
    ],
    "an `if` needs both `then` and `else`": [
        "let x = if a then 1",
        "let x = if a 1 else 2",
    ],
}
