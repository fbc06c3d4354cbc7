"""Every diagnostic of dsl/messages.py, triggered by a snippet, at its line and column.

One row per code: the file, the text the caret must be under (its first occurrence, or
the n-th), and the other diagnostics the file is expected to give (usually none: one
mistake, one message). A code added to the catalogue without a row here, or a row for a
code that is not in the catalogue, fails `test_every_code_has_a_row`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from dsl import compile_bytes
from dsl.check.library import check_library
from dsl.messages import CATALOGUE

from .kit import HEADER, KITCHEN_SINK, MINIMAL, SHENZHEN, body, check, position

# Codes in the catalogue that no file can trigger, and why.
NOT_TRIGGERABLE = {
    "E0311": "reserved: never reported (a non-number in arithmetic is E0302/E0303)",
    "E0606": "reserved: never reported; a written `reduction` is used as written and "
             "`baseline - project - leakage` is derived only when there is none",
    "E0706": "reserved: never reported; a file without examples compiles",
    "E0602": "reserved: never reported since `points` is optional (0 when not written: a "
             "project methodology giving tonnes only)",
}

NO_ZONE_HEADER = """methodology t.x "T" version 1.0.0 {
  covers trip
  effective from 2024-01-01
}
"""


@dataclass
class Case:
    code: str
    text: str  # a whole file
    needle: str  # the caret is under this text (or, with », under what follows ») ...
    occurrence: int = 1  # ... at its n-th occurrence in the file
    others: list[str] = field(default_factory=list)  # the other codes the file gives
    label: str = ""  # text the label must contain
    help: str = ""  # text the help must contain
    data: bytes = b""  # bytes to compile instead of text

    def __str__(self):
        return self.code


def case(code, snippet, needle, occurrence=1, *, minimal=True, **kw) -> Case:
    """A snippet written after the header (and the minimal body, unless told not)."""
    return Case(code, body(snippet, minimal=minimal), needle, occurrence, **kw)


CHOICE = "input mode: choice { ebus, metro, bike }\n"
TABLE = 'parameter f [g/km] by mode source "s" { ebus: 26.9, metro: 46.7, bike: 0 }\n'
USE_F = "let x = f[mode] * distance\nrequire x > 0 g else X \"m\"\n"
LEGS = "input legs: list { mode: choice { walk, metro }, distance: quantity [km] }\n"
USE_LEGS = "let x [km] = sum(l.distance for l in legs where l.mode != walk)\nrequire x > 0 km else X \"m\"\n"

CASES = [
    # ------------------------------------------------------------ file
    Case("E0001", "", "\ufffd", data=b'methodology t.x "T" version 1.0.0 {\xff}',
         help="0xff"),
    Case("E0002", "input d: number\n", "input", others=["W0103"]),
    Case("E0002", 'methodolgy t.x "T" version 1.0.0 { }\n' + MINIMAL, "methodolgy"),
    Case("E0003", "# " + "x" * (1024 * 1024) + "\n", "#"),
    # the first line over 10,000 characters, at the first character beyond
    case("E0004", "# " + "x" * 10_000 + "\n", "# " + "x" * 9_998 + "»x", help="break it"),
    # more than 20,000 lines: at the first line beyond; more than 10,000 tokens
    case("E0005", "# c\n" * 20_000, "# c", 20_001 - HEADER.count("\n") - MINIMAL.count("\n")),
    case("E0005", "let v = distance\n" + "  + distance\n" * 5_000, "  + distance", 4_979),
    # ------------------------------------------------------------ syntax
    case("E0101", "let x = 1 2\n", "2", 4, label="expected"),
    case("E0101", "require distance > 1 km NOT_LONG \"m\"\n", "NOT_LONG",
         help="needs `else CODE"),
    case("E0101", "let x = a = 1\n", "=", 4, help="compare with `==`"),
    case("E0102", "let x = 1 $ 2\n", "$"),
    case("E0103", "let x = (1 +\n", "(1 »+", label="expected an expression"),
    case("E0104", "let x = " + "-" * 200 + "1\n", "let x"),
    # a flat `case` lowers to one `if` per arm: as deep as 200 nested `if`s
    case("E0104", "input k: integer\nlet x = case k " + " ".join(
        f"when {i} then {i}" for i in range(200)) + " else 0 end\n", "case",
         help="a table"),
    case("E0104", "input k: integer\nrequire case when " + ", ".join(
        f"k == {i}" for i in range(200)) + " then true else false end else X \"m\"\n", "case"),
    # ------------------------------------------------------------ names
    case("E0201", "let x = distanse * 2\n", "distanse", help="did you mean `distance`?"),
    case("E0201", "let x = Distance\n", "Distance", help="did you mean `distance`?"),
    case("E0201", "let x = nothing_like_it[1]\n", "nothing_like_it"),
    case("E0202", "let a = distance\nlet a = 2\n", "let »a = 2", others=["W0102"]),
    case("E0202", "input distance: number\n", "distance", 3),
    case("E0202", "input m: choice { a, b, a }\nrequire m == a else X \"m\"\n", "b, »a"),
    case("E0202", 'example "e" { distance: 1 km, distance: 2 km } => credited\n',
         "distance: 2"),
    case("E0203", "let x = flor(distance / 1 km)\n", "flor", help="did you mean `floor`?"),
    case("E0204", CHOICE + "require mode == metr else X \"m\"\n", "== »metr",
         help="did you mean `metro`?"),
    case("E0204", CHOICE + "require mode in { ebus, tram } else X \"m\"\n", "tram",
         help="the values are ebus, metro, bike"),
    case("E0204", CHOICE + "require mode == ebus else X \"m\"\n"
         'example "e" { distance: 1 km, mode: tram } => credited\n', "tram"),
    case("E0205", "let a = b * 2\nlet b = a + 1\nreduction = a * 1 g\n"
         "points = floor(reduction / 1 g)\n", "let »a", minimal=False,
         label="a  ->  b  ->  a"),
    case("E0205", "let c = c + 1\nreduction = c * 1 g\npoints = floor(reduction / 1 g)\n",
         "let »c", minimal=False, label="c  ->  c"),
    case("E0206", "input id: text\n", "input »id"),
    case("E0206", "let time = 1\n", "let »time"),
    case("E0207", 'parameter p by nothing source "s" { a: 1 }\n', "nothing"),
    case("E0207", "forbid duplicate distance, route per account else DUP \"m\"\n", "route"),
    case("E0208", CHOICE + TABLE + "let x = f * distance\nrequire x > 0 g else X \"m\"\n",
         "f *"),
    case("E0209", "let x = distance[1]\n", "distance[", ),
    # ------------------------------------------------------------ types and units
    case("E0301", "let x = 1 furlongz\n", "furlongz",
         help="units are written like"),
    case("E0301", "input v: quantity [parsec/fortnightz]\n", "parsec"),
    case("E0302", "input load: quantity [kg]\nlet x = distance + load\n", "+",
         label="a length (km) + a mass (kg)"),
    case("E0302", "let x = distance + 1\n", "+", help="a plain number needs a unit"),
    case("E0302", "let x = distance > 1 g\n", ">"),
    case("E0303", "require distance else X \"m\"\n", "distance", 3,
         help=""),
    case("E0303", "input d: quantity [km] = 3\n", "= »3", others=["W0103"]),
    case("E0303", "let x [kg] = distance\n", "[kg]", label="`x` is a length (km)"),
    case("E0304", "input distance: quantity [km]\nreduction = 26.9 g/km\n"
         "points = floor(reduction / 1 g)\n", "26.9", minimal=False,
         help="26.9 g/km * distance"),
    case("E0305", "input distance: quantity [km]\nreduction = 26.9 g/km * distance\n"
         "points = reduction / 1 g\n", "reduction /", minimal=False,
         help="floor(reduction / 1 g)"),
    case("E0306", "let x = min(distance)\n", "min"),
    case("E0306", "let x = year(1, 2)\n", "year"),
    case("E0307", "let x = round(distance)\n", "round", help="round(x, 1 g)"),
    case("E0307", "let x = round(distance, distance)\n", "distance", 4),
    case("E0308", "let x = if distance > 1 km then 1 km else 2 kg\n", "2 kg"),
    case("E0309", "let x = 20 degC\n", "degC"),
    case("E0309", "input t: quantity [degF]\n", "degF"),
    case("E0310", "let x = 1e999 km\n", "1e999"),
    case("E0310", "let x = 1e-999 km\n", "1e-999"),
    case("E0310", "let x = 1e99999999\n", "1e99999999"),  # at once, not after hours
    case("E0310", "let x = 9223372036854775808\n", "9223372036854775808"),
    case("E0310", 'parameter p [g] = 1e999 source "s"\n', "1e999"),
    case("E0310", "cap reduction at 1e999 kg per account per day\n", "1e999"),
    case("E0310", "bonus 5 points on the 3rd record per account within 1e400 s\n", "1e400"),
    case("E0310", "flag more than " + "9" * 5000 + " records per account within 1 h as F \"m\"\n",
         "9999"),
    case("E0310", 'example "e" { distance: 1 km } => bonus ' + "9" * 30 + "\n", "9999"),
    case("E0312", CHOICE + "let x = case mode when ebus then 1 when metro then 2 end\n",
         "case", label=""),
    case("E0313", "let x = case when distance > 1 km then 1 end\n", "case"),
    case("E0317", "counter saved [kg] = 1\n", "[kg]"),
    case("E0316", "let x = case distance when 1 km then 2 end\n", "case"),
    case("E0316", "input n: integer\nlet x = case n when 1 then 2 end\n", "case"),
    # legs (repeated groups inside a record)
    case("E0330", LEGS.replace(" }\n", " } optional\n") + USE_LEGS, "optional"),
    case("E0330", LEGS + "let x = count(l.mode for l in legs)\nrequire x > 0 else X \"m\"\n", "l.mode"),
    case("E0331", "input legs: list { day_: date }\n"
         "let x = count(l for l in legs)\nrequire x > 0 else X \"m\"\n", "date"),
    case("E0332", LEGS + USE_LEGS + "let y [km] = sum(l.distance for l in trips)\n"
         "require y > 0 km else Y \"m\"\n", "trips"),
    case("E0332", LEGS + USE_LEGS + "let y = legs\nrequire y > 0 else Y \"m\"\n", "y = »legs",
         others=[]),
    case("E0333", LEGS + "let x [km] = sum(sum(m.distance for m in legs) for l in legs)\n"
         "require x > 0 km else X \"m\"\n", "sum(m"),
    case("E0334", LEGS + USE_LEGS + "let y [km] = l.distance\nrequire y > 0 km else Y \"m\"\n",
         "l.distance", 2),
    # one event through several channels
    case("E0335", "forbid duplicate distance within 1 km per account else SAME \"m\"\n",
         "duplicate »distance"),
    case("E0336", "input started: datetime\n"
         "forbid duplicate distance, started within 5 min per account keep first by distance else SAME \"m\"\n",
         "by »distance"),
    case("E0337", "input started: datetime\n"
         "forbid duplicate distance, started within 5 min per account where distance > 1 km else SAME \"m\"\n",
         "distance > 1 km"),
    case("E0314", "cap reduction at 0.5 mg per account per day\n", "0.5 mg"),
    case("E0314", 'example "e" { distance: 1 km } => reduction 1.0000001 g\n', "1.0000001"),
    case("E0315", "input a, b: choice { x, y } optional\n"
         "require a == b else X \"m\"\n", "a, »b", others=["E0315"]),
    case("E0315", "input when_: date optional\nrequire when_ > 2024-01-01 else X \"m\"\n",
         "when_"),
    # ------------------------------------------------------------ parameters and tables
    case("E0401", 'parameter p [g] from 2024-06-01 source "s" = 1\n'
         "let x = p * distance / 1 km\nrequire x > 0 g else X \"m\"\n", "parameter »p"),
    case("E0401", 'parameter p [g] {\n  from 2024-03-01 source "s": 1\n'
         '  from 2025-01-01 source "s": 2\n}\n'
         "let x = p * distance / 1 km\nrequire x > 0 g else X \"m\"\n", "parameter »p"),
    case("E0402", 'parameter p [g] {\n  from 2025-01-01 source "s": 1\n'
         '  from 2024-01-01 source "s": 2\n}\n', "from 2024-01-01 source"),
    case("E0403", CHOICE + 'parameter f [g/km] by mode source "s" { ebus: 26.9, metro: 4 }\n'
         + USE_F, "parameter »f", help="otherwise reject"),
    case("E0403", CHOICE + 'parameter f [g/km] by mode {\n'
         '  from 2024-01-01 source "s": ebus: 1, metro: 2, bike: 3\n'
         '  from 2025-01-01 source "s": ebus: 1\n}\n' + USE_F, "from 2025"),
    case("E0404", CHOICE + 'parameter f [g/km] by mode source "s" { ebus: 1, metor: 2 }\n',
         "metor", help="did you mean `metro`?"),
    case("E0405", CHOICE + 'parameter f [g/km] by mode source "s" '
         '{ ebus: 1, metro: 2, bike: 3, ebus: 4 }\n', "ebus: 4"),
    case("E0406", "input n: integer\n"
         'parameter f [g/km] by n source "s" { 1: 1, 2: 2 }\n', "by n"),
    case("E0407", CHOICE + TABLE + "let x = f[mode, mode] * distance\n", "f[mode, mode]"),
    case("E0407", CHOICE + 'parameter f [g/km] by mode source "s" { (ebus, metro): 1 }\n',
         "(ebus"),
    case("E0408", 'parameter f [g] by distance source "s" { 1: 1 }\n', "distance", 3),
    case("E0409", CHOICE + 'parameter f [g] by mode = 1 source "s"\n', "= 1"),
    case("E0409", 'parameter f [g] source "s" { a: 1 }\n', "{ a"),
    case("E0409", 'parameter f [g] = 1 source "s"\nlet x = f[distance]\n', "f[distance]"),
    case("E0410", 'parameter f [g] = 1\nlet x = f * distance / 1 km\n'
         'require x > 0 g else X "m"\n', "= 1", help='source "document, table"'),
    case("E0410", 'parameter f [g] {\n  from 2024-01-01 source "s": 1\n  from 2024-06-01: 2\n}\n'
         'let x = f * distance / 1 km\nrequire x > 0 g else X "m"\n', "from 2024-06"),
    # ------------------------------------------------------------ metadata
    Case("E0501", 'methodology t.x "T" version 1.0.0 {\n  effective from 2024-01-01\n}\n'
         + MINIMAL, "t.x", help="covers transit_trip"),
    Case("E0501", 'methodology t.x "T" version 1.0.0 {\n  covers trip\n}\n' + MINIMAL, "t.x",
         help="effective from"),
    Case("E0502", HEADER.replace("  covers trip\n", "  covers trip\n  covers bus\n") + MINIMAL,
         "covers bus"),
    Case("E0502", HEADER.replace("  covers trip\n", '  title en "A"\n  covers trip\n  title en "B"\n')
         + MINIMAL, 'title en "B"'),
    Case("E0503", HEADER.replace("Asia/Shanghai", "Asia/Shanghia") + MINIMAL, "Asia/Shanghia"),
    case("E0503", "cap reduction at 2 kg per account per day in Europe/Paname\n",
         "Europe/Paname"),
    Case("E0504", HEADER.replace("2024-01-01", "2024-02-30") + MINIMAL, "2024-02-30"),
    case("E0504", "require time > 2024-13-01T00:00 else X \"m\"\n", "2024-13-01T00:00"),
    case("E0504", 'parameter f [g] = 1 from 2024-02-30 source "s"\n', "2024-02-30"),
    Case("E0505", HEADER.replace("2024-01-01", "2024-01-01 until 2023-12-31") + MINIMAL,
         "effective"),
    # ------------------------------------------------------------ rules
    case("E0601", "input distance: quantity [km]\nlet x = 1\n", "t.x", minimal=False,
         others=["W0103", "W0102"]),
    case("E0603", "cap reduction at 2 km per account per day\n", "2 km",
         label=""),
    case("E0603", "cap points at 2.5 per account per day\n", "2.5"),
    case("E0604", "input started: datetime\n"
         "forbid overlap between started and distance per account else OVERLAP \"m\"\n",
         "and »distance"),
    case("E0605", "bonus 5 points on the 2nd record per account within 7 km\n", "7 km"),
    case("E0605", 'flag more than 5 records per account within 3 as FAST "m"\n', "3 as"),
    case("E0607", "bonus 5 points on the 0th record per account within 7 days\n", "0th"),
    case("E0608", "cap counter ridez at 2 per account per day\n", "ridez"),
    case("E0608", "reward voucher every 50 kilometres worth 5 CNY\n", "kilometres"),
    case("E0609", "counter km = distance\n", "distance", 3),
    case("E0610", "counter rides [ride] = 1\ncap counter rides at 2 kg per account per day\n", "2 kg"),
    case("E0610", "counter rides [ride] = 1\ncap counter rides at 2.5 ride per account per day\n",
         "2.5 ride"),
    case("E0611", "reward voucher every 0 points worth 5 CNY\n", "0 points"),
    case("E0612", "reward voucher every 50 points worth 5 CNY\n"
         "reward ticket every 20 points worth 2 CNY\n", "points", 3),
    case("E0613", "reward voucher every 50 points worth 5 kg\n", "5 kg"),
    # ------------------------------------------------------------ history windows
    case("E1001", "history h = mean distanse over the previous 7 days otherwise partial\n",
         "distanse"),
    case("E1001", "history h = mean time over the previous 7 days otherwise partial\n", "time over"),
    case("E1002", "history h = sum distance over the previous 0 days otherwise partial\n", "0 days"),
    case("E1002", "history h = sum distance over the last 5000 records otherwise partial\n", "5000"),
    case("E1003", "history h = sum distance over the previous 7 days otherwise 5 kg\n", "5 kg"),
    case("E1004", "history h = sum distance over the previous 7 days otherwise partial\n"
         "let more [km] = distance + h\n"
         "history h2 = sum more over the previous 7 days otherwise partial\n"
         "require h2 >= 0 km else X \"m\"\n", "more over", help="aggregate an input"),
    # ------------------------------------------------------------ examples
    case("E0701", 'example "e" { distance: 1 km, distanse: 2 km } => credited\n',
         "distanse", help="did you mean `distance`?"),
    case("E0702", 'example "e" { } => credited\n', "{ }"),
    case("E0703", 'example "e" { distance: 8.2 } => credited\n', "8.2",
         label=""),
    case("E0703", 'example "e" { distance: 8.2 kg } => credited\n', "8.2 kg"),
    case("E0703", 'example "e" { distance: 1 km, time: 5 } => credited\n', "5 }"),
    case("E0704", 'example "e" { distance: 1 km } => rejected NOT_COVERD\n', "NOT_COVERD",
         help="no rule gives a reason code"),
    case("E0704", 'require distance > 0 km else NOT_COVERED "m"\n'
         'example "e" { distance: 1 km } => rejected NOT_COVERD\n', "NOT_COVERD",
         help="did you mean `NOT_COVERED`?"),
    case("E0704", 'example "e" { distance: 1 km } => duplicate DUP\n', "DUP"),
    case("E0704", 'example "e" { distance: 1 km } => flagged FAST\n', "FAST"),
    case("E0705", 'example "e" { distance: 1 km } => reduction 26.9\n', "26.9", 2),
    case("E0705", 'example "e" { distance: 1 km } => reduction 1.0000001 km\n', "1.0000001"),
    case("E0705", 'example "e" { distance: 1 km } => points 2.5\n', "2.5"),
    case("E0705", 'example "e" { distance: 1 km } => reduction 26.9 km to 1 decimals\n', "26.9", 2),
    case("E0707", 'example "e" { distance: 1 km } => factor 26.9 g/km\n', "factor"),
    case("E0708", 'example "e" { distance: 1 km } => total baseline 1 kg\n', "total »baseline"),
    # ------------------------------------------------------------ warnings
    case("W0101", 'parameter unused [g] = 1 source "s"\n', "unused"),
    case("W0102", "let spare = distance * 2\n", "spare"),
    case("W0103", "input spare: quantity [km]\n", "spare"),
    case("W0103", "input a, b: text\nrequire a == \"x\" else X \"m\"\n", "b"),
    case("W0201", CHOICE + "let x = case mode when ebus then 1 when metro, bike then 2 "
         "else 3 end\nrequire x > 0 else X \"m\"\n", "3 end",
         label="every value is covered above"),
    case("W0201", CHOICE + "let x = case mode when ebus then 1 when ebus then 2 "
         "else 3 end\nrequire x > 0 else X \"m\"\n", "1 when »ebus"),
    case("W0202", "let x = if true then 1 km else distance\nrequire x > 0 km else X \"m\"\n",
         "true"),
    case("W0202", 'require false else NEVER "m"\n', "false"),
    Case("W0301", NO_ZONE_HEADER + MINIMAL + "cap reduction at 2 kg per account per day\n",
         "day", help="per day in Asia/Shanghai"),
    case("W0302", 'require distance > 0 km else not_upper "m"\n', "not_upper"),
    case("W0302", 'flag more than 5 records per account within 1 h as fast "m"\n', "fast"),
    # W0401 is about two files: see test_two_files_covering_one_activity below.
]

CROSS_FILE = {"W0401"}
# The checker's own failure: no file may reach it (the fuzz tests assert that), so its
# test makes the checker fail on purpose (test_a_failure_of_the_checker_is_e9999...).
INTERNAL = {"E9999"}


def _position(c: Case, source: str) -> tuple[int, int]:
    line, column = position(source, c.needle.replace("»", ""), c.occurrence)
    return line, column + max(c.needle.find("»"), 0)


def _compile(c: Case):
    return compile_bytes(c.data, "t.tanpu") if c.data else check(c.text)


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.code)
def test_code_at_line_and_column(c: Case):
    compiled = _compile(c)
    source = c.text if not c.data else c.data.decode("utf-8", "replace")
    line, column = _position(c, source)
    found = [(d.code, d.span.line, d.span.column) for d in compiled.diagnostics]
    assert (c.code, line, column) in found, compiled.render()
    others = sorted(d.code for d in compiled.diagnostics)
    others.remove(c.code)
    assert others == sorted(c.others), compiled.render()
    diagnostic = next(d for d in compiled.diagnostics
                      if (d.code, d.span.line, d.span.column) == (c.code, line, column))
    assert c.label in diagnostic.label
    assert c.help in diagnostic.help
    assert diagnostic.message  # formatted from the catalogue, no field left unfilled
    assert "{" not in diagnostic.message.replace("{ ... }", "")
    assert compiled.ok == (c.code.startswith("W") and not any(
        code.startswith("E") for code in c.others))


def test_every_code_has_a_row():
    rows = {c.code for c in CASES} | CROSS_FILE | INTERNAL
    assert rows.isdisjoint(NOT_TRIGGERABLE)
    assert rows | set(NOT_TRIGGERABLE) == set(CATALOGUE)


@pytest.mark.parametrize("code", sorted(NOT_TRIGGERABLE))
def test_reserved_codes_are_not_reported_by_the_checker(code):
    import pathlib
    dsl_dir = pathlib.Path(__file__).resolve().parents[2] / "dsl"
    uses = [p for p in dsl_dir.rglob("*.py")
            if p.name not in ("messages.py", "messages_zh.py") and f'"{code}"' in p.read_text(encoding="utf-8")]
    assert uses == [], f"{code} is reported by {uses}: give it a row in CASES"


def test_two_files_covering_one_activity():
    other = SHENZHEN.replace("cn.shenzhen.public-transit", "cn.other.transit")
    first, second = check(SHENZHEN, "a.tanpu"), check(other, "b.tanpu")
    assert first.ok and second.ok
    (warning,) = check_library([first, second])
    assert warning.code == "W0401" and warning.file == "b.tanpu"
    line, column = position(other, "transit_trip")
    assert (warning.span.line, warning.span.column) == (line, column)


# ---------------------------------------------------------------- a few codes in depth
def test_cycle_names_the_whole_loop_once():
    text = body("let a = b + 1\nlet b = c + 1\nlet c = a + 1\nlet d = a + 1\n"
                "require d > 0 else X \"m\"\n")
    compiled = check(text)
    (cycle,) = [d for d in compiled.diagnostics if d.code == "E0205"]
    assert cycle.label == "a  ->  b  ->  c  ->  a"
    assert [n.message for n in cycle.notes] == ["`a` uses `b`", "`b` uses `c`", "`c` uses `a`"]
    assert [n.span.line for n in cycle.notes] == [9, 10, 11]
    # `d` uses the loop but is not in it: no message of its own, no cascade
    assert [d.code for d in compiled.diagnostics] == ["E0205"]


def test_duplicate_definition_notes_the_first():
    compiled = check(body("let a = distance\nlet a = 2\nrequire a > 0 km else X \"m\"\n"))
    (duplicate,) = compiled.errors
    assert duplicate.code == "E0202"
    assert [(n.message, n.span.line, n.span.column) for n in duplicate.notes] == [
        ("first defined here", 9, 5)]


def test_several_mistakes_are_all_reported_in_order():
    text = body("input load: quantity [kg]\n"
                "let a = distance + load\n"
                "let b = distanse * 2\n"
                "let c = (1 +\n"
                "let d = flor(2)\n")
    compiled = check(text)
    assert [(d.code, d.span.line, d.span.column) for d in compiled.diagnostics] == [
        ("E0302", 10, 18), ("E0201", 11, 9), ("E0103", 12, 12), ("E0203", 13, 9)]


def test_did_you_mean_is_not_offered_for_a_far_name():
    compiled = check(body("let x = zzzzzz\n"))
    (unknown,) = compiled.errors
    assert unknown.code == "E0201" and unknown.help == ""


# ---------------------------------------------------------------- narrowing by `require`
NARROW = CHOICE + 'parameter f [g/km] by mode source "s" { ebus: 26.9, metro: 46.7 }\n'


@pytest.mark.parametrize("guard", [
    "require mode in { ebus, metro } else NOT_COVERED \"m\"\n",
    "require mode not in { bike } else NOT_COVERED \"m\"\n",
    "require mode != bike else NOT_COVERED \"m\"\n",
    "require not (mode == bike) else NOT_COVERED \"m\"\n",
    "require mode != bike and distance > 0 km else NOT_COVERED \"m\"\n",
])
def test_require_narrows_a_table_for_lookups_after_it(guard):
    compiled = check(body(NARROW + guard + "let x = f[mode] * distance\n"
                          "require x > 0 g else X \"m\"\n"))
    assert compiled.diagnostics == [], compiled.render()
    assert compiled.ok


def test_require_does_not_narrow_a_lookup_in_an_earlier_require():
    text = body(NARROW + "require f[mode] > 0 g/km else EARLY \"m\"\n"
                "require mode in { ebus, metro } else NOT_COVERED \"m\"\n")
    compiled = check(text)
    (error,) = compiled.errors
    assert error.code == "E0403" and "`bike`" in error.message
    assert (error.span.line, error.span.column) == position(text, "f [g/km]")


def test_require_does_not_narrow_a_let_first_needed_by_an_earlier_require():
    text = body(NARROW + "let x = f[mode] * distance\n"
                "require x > 0 g else EARLY \"m\"\n"
                "require mode in { ebus, metro } else NOT_COVERED \"m\"\n")
    assert [d.code for d in check(text).diagnostics] == ["E0403"]


def test_a_let_first_needed_after_the_require_is_narrowed():
    text = body(NARROW + "let x = f[mode] * distance\n"
                "require mode in { ebus, metro } else NOT_COVERED \"m\"\n"
                "require x > 0 g else LATE \"m\"\n")
    assert check(text).diagnostics == []


def test_an_or_does_not_narrow():
    text = body(NARROW + "require mode == ebus or mode == metro else NOT_COVERED \"m\"\n"
                "let x = f[mode] * distance\nrequire x > 0 g else X \"m\"\n")
    assert [d.code for d in check(text).diagnostics] == ["E0403"]


def test_without_a_require_the_table_must_be_complete():
    text = body(NARROW + "let x = f[mode] * distance\nrequire x > 0 g else X \"m\"\n")
    (error,) = check(text).diagnostics
    assert error.code == "E0403" and "`bike`" in error.message


def test_otherwise_makes_a_table_complete():
    text = body(CHOICE + 'parameter f [g/km] by mode source "s" otherwise reject NO_F "m" '
                "{ ebus: 1 }\nlet x = f[mode] * distance\nrequire x > 0 g else X \"m\"\n"
                'example "e" { distance: 1 km, mode: bike } => rejected NO_F\n')
    assert check(text).diagnostics == []


# ---------------------------------------------------------------- narrowing by a sum's `where`
TRIP = ("input legs: list { mode: choice { walk, metro, bike, bus }, distance: quantity [km] }\n"
        'parameter lf [g/km] by mode source "s" { metro: 78.4, bike: 93.3 }\n')


def _over_legs(where: str, added: str = "l.distance * lf[l.mode]") -> str:
    return body(TRIP + f"let x [g] = sum({added} for l in legs{where})\n"
                "require x > 0 g else X \"m\"\n")


@pytest.mark.parametrize("where", [
    " where l.mode in { metro, bike }",
    " where l.mode not in { walk, bus }",
    " where l.mode != walk and l.mode != bus",
    " where not (l.mode in { walk, bus })",
    " where l.mode in { metro, bike, bus } and l.distance > 0 km and l.mode != bus",
    " where l.mode == metro",
])
def test_a_sums_where_narrows_a_table_keyed_by_a_leg_field(where):
    compiled = check(_over_legs(where))
    assert compiled.diagnostics == [], compiled.render()
    assert compiled.ok


@pytest.mark.parametrize("where, missing", [
    ("", "`bus`, `walk`"),
    (" where l.mode != walk", "`bus`"),
    (" where l.mode == metro or l.mode == bike", "`bus`, `walk`"),  # `or` does not narrow
    (" where l.distance > 1 km", "`bus`, `walk`"),
])
def test_a_where_that_lets_an_unlisted_key_through_is_still_e0403(where, missing):
    text = _over_legs(where)
    (error,) = check(text).diagnostics
    assert error.code == "E0403" and f"has no value for {missing} " in error.message, error.message
    assert (error.span.line, error.span.column) == position(text, "lf [g/km]")
    # the help offers the `where` that keeps only the legs the table has a value for
    assert "`for l in legs where l.mode in { bike, metro }`" in error.help, error.help


def test_a_lookup_in_the_where_itself_is_not_narrowed_by_it():
    text = _over_legs(" where l.mode in { metro, bike } and lf[l.mode] > 0 g/km", "l.distance * 1 g/km")
    assert [d.code for d in check(text).diagnostics] == ["E0403"]


def test_a_where_narrows_only_the_sum_it_belongs_to():
    text = body(TRIP + "let x [g] = sum(l.distance * lf[l.mode] for l in legs where l.mode != walk and "
                "l.mode != bus)\nlet y [g] = sum(l.distance * lf[l.mode] for l in legs)\n"
                "require x + y > 0 g else X \"m\"\n")
    (error,) = check(text).diagnostics
    assert error.code == "E0403" and "`bus`, `walk`" in error.message


def test_a_where_on_an_input_narrows_a_lookup_by_that_input_in_the_sum():
    text = body("input line: choice { ebus, metro, bike }\n"
                "input legs: list { mode: choice { walk, metro }, distance: quantity [km] }\n"
                'parameter f [g/km] by line source "s" { ebus: 26.9, metro: 46.7 }\n'
                "let x [g] = sum(l.distance * f[line] for l in legs where line != bike)\n"
                "require x > 0 g else X \"m\"\n")
    assert check(text).diagnostics == [], check(text).render()


# ---------------------------------------------------------------- unused and unreachable
def test_unused_warnings_do_not_fail_the_file():
    compiled = check(body('input spare: text\nparameter p = 1 source "s"\nlet l = 1\n'))
    assert compiled.ok
    assert [(d.code, d.span.line) for d in compiled.diagnostics] == [
        ("W0103", 9), ("W0101", 10), ("W0102", 11)]


def test_no_unused_warning_when_a_statement_that_may_use_it_is_broken():
    for broken in ("let x = spare + distanse\n", "require spare == undefined_thing else X \"m\"\n",
                   'require spare == 1 km else X "m"\n'):
        compiled = check(body("input spare: text\n" + broken))
        assert compiled.errors and not compiled.warnings, (broken, compiled.render())


def test_a_case_that_covers_every_value_without_else_compiles():
    text = body(CHOICE + "let x = case mode when ebus then 1 when metro, bike then 2 end\n"
                "require x > 0 else X \"m\"\n")
    compiled = check(text)
    assert compiled.ok and compiled.diagnostics == []


# ---------------------------------------------------------------- clean files
def test_the_clean_files_have_no_diagnostic():
    for text in (SHENZHEN, KITCHEN_SINK):
        compiled = check(text)
        assert compiled.ok and compiled.diagnostics == [], compiled.render()
    m = check(KITCHEN_SINK).methodology
    assert (len(m.inputs), len(m.parameters), len(m.requires), len(m.caps), len(m.overlaps),
            len(m.duplicates), len(m.bonuses), len(m.flags), len(m.examples)) == \
        (14, 6, 4, 2, 1, 1, 1, 1, 5)
    assert [g.name for g in m.groups] == ["legs"]
    assert [d.name for d in m.outputs] == ["baseline", "project", "leakage", "reduction",
                                           "points"]
    assert m.metadata.effective_until.isoformat() == "2030-12-31"
    assert m.parameter("per_rider").missing.kind == "reject"
    assert m.parameter("pair_bonus").missing.value == 0.0


def test_a_failure_of_the_checker_is_e9999_and_keeps_the_file(monkeypatch, tmp_path):
    """The checker never raises: its own bug is a diagnostic, and the file and the
    traceback are kept for a bug report (issue 17). The failure is made on purpose here,
    since no file may cause one."""
    import importlib

    from_surface = importlib.import_module("dsl.ir.from_surface")  # (dsl.ir is the IR's ast)

    def broken(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(from_surface, "lower", broken)
    monkeypatch.setenv("TANPU_CACHE_DIR", str(tmp_path))
    compiled = check(SHENZHEN, "sz.tanpu")
    (error,) = compiled.diagnostics
    assert error.code == "E9999" and "KeyError" in error.message and not compiled.ok
    (folder,) = (tmp_path / "crashes").iterdir()
    assert str(folder) in error.help
    assert (folder / "input.tanpu").read_text(encoding="utf-8") == SHENZHEN
    assert "KeyError: 'a bug'" in (folder / "traceback.txt").read_text()
    compiled.render()  # a diagnostic without a place renders too
