"""The catalogue of every diagnostic the language emits, and the reporter that emits them.

Codes are stable: tools and the docs refer to them. E = error (the file does not
compile), W = warning (it compiles, but something is probably not what the author meant).
Hundreds group by phase: 0 file, 1 syntax, 2 names, 3 types and units, 4 parameters and
tables, 5 metadata, 6 rules, 7 examples; W1 unused, W2 unreachable, W3 rules.
"""

from __future__ import annotations

from typing import Iterable, Optional

from .diagnostics import Diagnostic, Note, Span
from .zones import DEFAULT_TIMEZONE

CATALOGUE: dict[str, str] = {
    # file
    "E0001": "the file is not UTF-8 text",
    "E0002": "a methodology file starts with `methodology ID \"title\" version X.Y.Z {{ ... }}`",
    "E0003": "the file is too large ({size} bytes; at most {limit})",
    "E0004": "this line is too long ({length} characters; at most {limit})",
    "E0005": "the file is too long: more than {limit} {what}",
    # syntax
    "E0101": "unexpected {found}",
    "E0102": "unexpected character {char}",
    "E0103": "{place} is not finished",
    "E0104": "this is nested too deeply (more than {limit} levels)",
    # names
    "E0201": "unknown name `{name}`",
    "E0202": "`{name}` is defined more than once",
    "E0203": "unknown function `{name}`",
    "E0204": "`{value}` is not a value of `{choice}`",
    "E0205": "`{name}` depends on itself",
    "E0206": "`{name}` is a built-in field of every record and cannot be redefined",
    "E0207": "`{name}` is not an input",
    "E0208": "`{name}` is a parameter table keyed by {keys}: look it up as `{name}[...]`",
    "E0209": "`{name}` is not a parameter table",
    # types and units
    "E0301": "unknown unit `{unit}`",
    "E0302": "cannot {action} {left} and {right}",
    "E0303": "expected {expected}, found {found}",
    "E0304": "`{name}` must be a mass of CO2e, but it is {found}",
    "E0305": "`points` must be a whole number, but it is {found}",
    "E0306": "`{func}` takes {expected} argument(s), found {found}",
    "E0307": "the precision of `{func}` must be a constant such as `1 g` or `0.01`",
    "E0308": "the two branches have different types: {left} and {right}",
    "E0309": "the unit `{unit}` has an offset (like °C) and cannot be used in calculations",
    "E0310": "{what} is not a valid {kind}",
    "E0311": "`{name}` is not a number",
    "E0312": "this `case` does not cover {missing}: add them or an `else`",
    "E0313": "a `case` without a subject needs an `else`",
    "E0314": "a value of `{name}` must be whole milligrams, found {found}",
    "E0315": "the optional input `{name}` is {kind} and has no empty value: give it a default with `= ...`",
    "E0330": "{problem}",
    "E0331": "the leg field `{name}` is {kind}: a leg's fields are quantities, numbers, whole numbers, true/false, text or choices",
    "E0332": "`{name}` is not a list of legs here",
    "E0333": "lists do not nest: this goes over legs inside a sum over `{outer}`",
    "E0334": "`{var}` is not a leg being gone over here",
    "E0335": "`{name}` is {found}: the key that may differ `within` a window must be a datetime input",
    "E0336": "`{name}` is not a datetime input saying when a record arrived",
    "E0337": "a duplicate rule's `where` tests one input against values",
    "E0316": "a `case` on {kind} cannot list every value: add an `else`",
    "E0317": "the unit of a counter must count something (device, household, person, ride, trip) or be money (CNY), found `{unit}`",
    # parameters and tables
    "E0401": "`{name}` has no value in force from {start} (the methodology's start) until {first}",
    "E0402": "the periods of `{name}` are not in date order",
    "E0403": "the table `{name}` has no value for {missing} (from {start})",
    "E0404": "`{key}` is not a value of `{keyname}`",
    "E0405": "the key {key} appears more than once in `{name}`",
    "E0406": "a table keyed by {kind} `{keyname}` cannot list every key: add `otherwise reject CODE \"message\"` or `otherwise VALUE`",
    "E0407": "`{name}` is keyed by {expected} key(s), found {found}",
    "E0408": "a table keyed by `{keyname}` needs a choice, integer, text or boolean input, not {kind}",
    "E0409": "{problem}",
    "E0410": "the value of `{name}` from {start} has no source",
    # metadata
    "E0501": "the methodology has no `{field}`",
    "E0502": "`{field}` is given more than once",
    "E0503": "unknown time zone `{zone}`",
    "E0504": "`{text}` is not a valid {kind}",
    "E0505": "the methodology ends ({until}) before it starts ({start})",
    # rules
    "E0601": "the methodology credits nothing: no `reduction` (or `baseline` to derive it from), `points` or counter",
    "E0602": "the methodology defines no `points` conversion",
    "E0603": "a cap on {target} must be {expected}, found {found}",
    "E0604": "`{name}` must be a date or datetime input to bound an overlap, but it is {found}",
    "E0605": "a window must be a duration such as `7 days` or `1 h`, found {found}",
    "E0606": "`{name}` is defined both directly and as `baseline - project - leakage`",
    "E0607": "the ordinal `{ordinal}` must be 1st or later",
    "E0608": "`{name}` is not a counter",
    "E0609": "the counter `{name}` must be a whole number, but it is {found}",
    "E0610": "a cap on the counter `{name}` must be {expected} (at least 0), found {found}",
    "E0611": "a reward needs at least 1 unit per reward, found `every {found}`",
    "E0612": "`{source}` already converts into `{other}`: one reward per points or counter",
    "E0613": "a reward must be worth an amount of money or a count, such as `5 CNY` or `1 ride`, found {found}",
    # history windows
    "E1001": "a history aggregates a number, integer or quantity input; `{name}` is {found}",
    "E1002": "a window is 1 to {most} {unit}, found {found}",
    "E1003": "the value of `{name}` when its history is short must be {expected}, found {found}",
    "E1004": "a history aggregates `{name}`, which uses the history `{history}`: a window cannot depend on a window",
    # examples
    "E0701": "the example sets `{name}`, which is not an input",
    "E0702": "the example does not set the required input `{name}`",
    "E0703": "the example value for `{name}` must be {expected}, found {found}",
    "E0704": "unknown reason code `{code}`",
    "E0705": "the expected `{output}` must be {expected}, found {found}",
    "E0707": "`{name}` is not a `let` or an output of this methodology",
    "E0708": "a `total` is of `reduction`, `points`, a counter or a reward, not `{name}`",
    "E0706": "the methodology has no examples",
    # warnings
    "W0101": "the parameter `{name}` is never used",
    "W0102": "`{name}` is defined but never used",
    "W0103": "the input `{name}` is never used",
    "W0201": "this branch can never be taken",
    "W0202": "this condition is always {value}",
    "W0301": f"the cap period has no time zone; {DEFAULT_TIMEZONE} is assumed",
    "W0302": "reason code `{code}` is not written in UPPER_SNAKE_CASE",
    "W0401": "two methodologies cover `{activity}` from {start}{where} and neither says which takes precedence",
    # the checker itself
    "E9999": "the checker failed on this file ({error}): a bug in Tanpu, not in the file",
}


def severity_of(code: str) -> str:
    return "warning" if code.startswith("W") else "error"


class Reporter:
    """Collects the diagnostics of one file. Pure: it only accumulates."""

    def __init__(self, file: str):
        self.file = file
        self.diagnostics: list[Diagnostic] = []
        self._seen: set[Diagnostic] = set()

    def report(self, code: str, where=None, /, *, label: str = "", help: str = "",
               notes: Iterable[Note] = (), **fields) -> Diagnostic:
        # `code` and `where` are positional-only: a message may have a `{code}` field
        # of its own (E0704, W0302: a reason code).
        message = CATALOGUE[code].format(**fields)
        diagnostic = Diagnostic(
            code=code, severity=severity_of(code), message=message, file=self.file,
            span=Span.of(where), label=label, help=help, notes=tuple(notes))
        if diagnostic not in self._seen:  # one check applied twice says it once
            self._seen.add(diagnostic)
            self.diagnostics.append(diagnostic)
        return diagnostic

    def note(self, message: str, where=None) -> Note:
        return Note(message, Span.of(where))

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.diagnostics)

    def sorted(self) -> list[Diagnostic]:
        return sorted(self.diagnostics, key=Diagnostic.sort_key)


def explain(code: str) -> Optional[str]:
    return CATALOGUE.get(code)
