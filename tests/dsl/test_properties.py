"""Property tests: whatever it is given, the language answers with diagnostics, never a
traceback; its content hash is deterministic and only follows what a file says; and the
unit checker accepts every well-typed formula.

Default runs are small (tests/conftest.py profiles); the heavy cases are marked slow and
run long under `make fuzz`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from dsl import Compiled, compile_bytes, compile_source
from dsl.messages import CATALOGUE
from dsl.surface.parse import MAX_BYTES, MAX_DEPTH, _parser
from dsl.units import parse_unit

from .kit import HEADER, KITCHEN_SINK, MINIMAL, ROOT, SHENZHEN, body

SLOW = pytest.mark.slow
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large]
NO_HEALTH = settings(suppress_health_check=_QUIET)


def budget(n: int):
    """At most ``n`` examples in `make test`; each such test has a slow twin that runs the
    profile's full count under `make fuzz`."""
    return settings(max_examples=min(n, settings.default.max_examples),
                    suppress_health_check=_QUIET)


def assert_sane(compiled: Compiled, text: str) -> None:
    """What every compilation must be, whatever the input."""
    assert isinstance(compiled, Compiled)
    lines = text.count("\n") + 1
    for d in compiled.diagnostics:
        assert d.code in CATALOGUE, d
        assert d.severity == ("warning" if d.code.startswith("W") else "error")
        assert d.message
        if d.span is not None:
            assert 1 <= d.span.line <= lines, (d, lines)
            assert d.span.column >= 1 and d.span.end_line >= d.span.line, d
    assert compiled.ok == (not compiled.errors)
    if compiled.ok:
        assert compiled.methodology is not None
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", compiled.content_hash)
    else:
        assert compiled.methodology is None and compiled.content_hash is None
    compiled.render()  # rendering never fails either
    json.dumps([d.to_json() for d in compiled.diagnostics], ensure_ascii=False)


def compile_text(text: str) -> Compiled:
    compiled = compile_source(text, "fuzz.tanpu")
    assert_sane(compiled, text)
    return compiled


def compile_data(data: bytes) -> Compiled:
    compiled = compile_bytes(data, "fuzz.tanpu")
    assert_sane(compiled, data.decode("utf-8", errors="replace"))
    return compiled


# ---------------------------------------------------------------- arbitrary input
@budget(100)
@given(st.binary(max_size=600))
@example(b"")
@example(b"\x00" * 64)
@example(b"\xff\xfe\x00m\x00e")
@example(b"methodology \x00\x00 junk")
@example(b"\xef\xbb\xbf")
@example(SHENZHEN.encode("utf-8")[:300] + b"\x00\x01\x02" + SHENZHEN.encode("utf-8")[300:])
def test_random_bytes(data):
    compile_data(data)


@budget(100)
@given(st.text(max_size=400))
@example("\x00")
@example("methodology")
@example("methodology x \"t\" version 1.0.0 {")
@example("\u2028\u2029\x85\r\x0b\x0c")
def test_random_text(text):
    compile_text(text)


@pytest.mark.parametrize("data, code", [
    (b"\x00" * 10_000, "E0002"),
    (bytes(range(256)) * 40, "E0001"),
    (HEADER.encode() + b"let x = \x00\n" + MINIMAL.encode(), "E0102"),
    (HEADER.encode() + b"# comment with \x00 and \xc3\x28\n", "E0001"),
    (HEADER.encode() + b'input t: text label "\x00"\n' + MINIMAL.encode(), "W0103"),  # text
])
def test_binary_junk_with_nul_bytes(data, code):
    compiled = compile_data(data)
    assert [d.code for d in compiled.diagnostics] == [code]


def _terminal_strings() -> list[str]:
    return sorted({t.pattern.value for t in _parser().terminals if t.pattern.type == "str"})


FRAGMENTS = _terminal_strings() + [
    "x", "mode", "distance", "ebus", "reduction_factor", "距离", "1", "2.5", "-3", "1e3",
    "km", "g/km", "kg", "kWh", "m^2", "%", "degC", '"s"', '"中文"', "2024-01-01",
    "2024-05-20T08:00", "2024-02-30", "Asia/Shanghai", "Mars/Base", "3rd", "0th", "[SRC]",
    "1.0.0", "a.b", "en", "(", ")", "{", "}", "[", "]", ",", ":", "=", "=>", "+", "-", "*",
    "/", "×", "<", "==", "≥", "\n", "\n\n", "#c\n", "\u3000", "$", "\t",
    "1e99999999", "1e-99999999", "9" * 30, "9" * 5000 + "th", "when 1 then 1 " * 150,
]


@budget(60)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=60), st.booleans())
def test_random_token_sequences(tokens, with_header):
    text = (HEADER if with_header else "") + " ".join(tokens)
    compile_text(text)


@budget(40)
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=30), st.integers(0, 40))
def test_random_tokens_inside_a_good_file(tokens, at_line):
    lines = SHENZHEN.split("\n")
    at_line = min(at_line, len(lines))
    text = "\n".join(lines[:at_line] + [" ".join(tokens)] + lines[at_line:])
    compile_text(text)


_TOKEN = re.compile(r"\w+|\s+|\S")
SHENZHEN_TOKENS = _TOKEN.findall(SHENZHEN)


@st.composite
def mutations(draw, pieces: list[str]):
    """Delete, duplicate, swap or replace one to three characters or tokens."""
    pieces = list(pieces)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(pieces) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "swap", "replace"]))
        if op == "delete":
            del pieces[i]
        elif op == "duplicate":
            pieces.insert(i, pieces[i])
        elif op == "swap":
            j = draw(st.integers(0, len(pieces) - 1))
            pieces[i], pieces[j] = pieces[j], pieces[i]
        else:
            pieces[i] = draw(st.sampled_from(FRAGMENTS + SHENZHEN_TOKENS[:200]))
    return "".join(pieces)


@budget(50)
@given(mutations(SHENZHEN_TOKENS))
def test_token_mutations_of_the_shenzhen_file(text):
    compile_text(text)


KITCHEN_TOKENS = _TOKEN.findall(KITCHEN_SINK)


@budget(50)
@given(mutations(KITCHEN_TOKENS))
def test_token_mutations_of_the_kitchen_sink(text):
    compile_text(text)


@budget(50)
@given(mutations(list(SHENZHEN)))
def test_character_mutations_of_the_shenzhen_file(text):
    compile_text(text)


@SLOW  # the twin of the two above, for `make fuzz` (its profile runs 20,000 examples)
@NO_HEALTH
@given(st.one_of(mutations(SHENZHEN_TOKENS), mutations(list(SHENZHEN)),
                 mutations(KITCHEN_TOKENS), mutations(list(KITCHEN_SINK))))
def test_many_mutations_of_the_shenzhen_file(text):
    compile_text(text)


@SLOW  # the twin of the random input tests above
@NO_HEALTH
@given(st.one_of(
    st.binary(max_size=2000).map(lambda b: ("bytes", b)),
    st.text(max_size=2000).map(lambda t: ("text", t)),
    st.lists(st.sampled_from(FRAGMENTS), max_size=200).map(lambda ts: ("text", " ".join(ts))),
    st.lists(st.sampled_from(FRAGMENTS), max_size=200).map(
        lambda ts: ("text", HEADER + " ".join(ts)))))
def test_many_random_inputs(kind_and_input):
    kind, value = kind_and_input
    if kind == "bytes":
        compile_data(value)
    else:
        compile_text(value)


# ---------------------------------------------------------------- big and deep
def test_deep_parentheses_alone():
    (error,) = compile_text("(" * 5000).diagnostics
    assert error.code == "E0002"


def test_deep_parentheses_in_an_expression_are_not_nodes():
    text = body("let x = " + "(" * 4900 + "distance" + ")" * 4900 + "\n"  # within E0004's 10,000
                "require x > 0 km else X \"m\"\n")
    assert compile_text(text).ok


@pytest.mark.parametrize("nested", [
    "-" * 5000 + "1",
    "not " * 2400 + "true",
    "abs(" * 500 + "1" + ")" * 500,
    "if true then 1 else " * 450 + "1",
    "case when true then " * 300 + "1" + " else 1 end" * 300,
    "p" + "[1]" * 3000,
    "(" * 5000,
])
def test_deep_nesting_is_refused_not_crashed(nested):
    compiled = compile_text(body(f"let x = {nested}\n"))
    assert [d.code for d in compiled.errors] in (["E0104"], ["E0103"])


def test_a_case_with_many_arms_under_the_limit_compiles_and_hashes():
    arms = " ".join(f"when {i} then {i}" for i in range(MAX_DEPTH - 10))
    text = body(f"input k: integer\nlet x = case k {arms} else 0 end\n"
                "require x > 0 else X \"m\"\n")
    compiled = compile_text(text)
    assert compiled.ok and compiled.content_hash


def test_nesting_just_under_the_limit_compiles():
    depth = MAX_DEPTH - 10
    text = body("let x = " + "-" * depth + "distance\nrequire x > 0 km else X \"m\"\n")
    assert compile_text(text).ok


@pytest.mark.parametrize("terms", [4_000, 100_000])
def test_a_long_flat_sum(terms):
    compiled = compile_text(body("let x = " + " +\n".join(["1"] * terms) + "\n"))
    # a sum is a left-leaning tree as deep as it is long: refused, with one message; past
    # 10,000 tokens refused before parsing
    assert [d.code for d in compiled.diagnostics] == ["E0104" if terms < 4_500 else "E0005"]


def _many_statements(count: int) -> str:
    lets = "".join(f"let v{i} = distance * {i % 97}\n" for i in range(count))
    uses = "let total = " + " + ".join(f"v{i}" for i in range(min(count, 50))) + "\n"
    return body(lets + uses + "require total > 0 km else X \"m\"\n")


def test_a_file_of_many_statements():
    compiled = compile_text(_many_statements(1_000))
    assert compiled.errors == []
    assert len(compiled.warnings) == 1_000 - 50  # every let not in `total`


def test_over_the_limits_a_file_is_refused_before_parsing_with_one_error():
    text = _many_statements(120_000)
    assert len(text.encode()) > 3 * 1024 * 1024
    assert [d.code for d in compile_text(text).diagnostics] == ["E0003"]
    assert [d.code for d in compile_text(_many_statements(3_000)).diagnostics] == ["E0005"]


def test_a_big_file_with_one_error_near_the_end():
    text = _many_statements(1_000).replace("let v990 = distance", "let v990 = distanse")
    (error,) = compile_text(text).errors
    assert error.code == "E0201" and error.span.line == 9 + 990


def test_over_the_size_limit_is_refused_before_parsing():
    text = "#" * (MAX_BYTES + 1)
    (error,) = compile_text(text).diagnostics
    assert error.code == "E0003" and error.span.line == 1


# ---------------------------------------------------------------- the content hash
@pytest.fixture(scope="module")
def shenzhen_hash() -> str:
    return compile_text(SHENZHEN).content_hash


def test_compiling_is_deterministic():
    first, second = compile_text(SHENZHEN), compile_text(SHENZHEN)
    assert first.ok
    assert first.content_hash == second.content_hash
    assert first.methodology == second.methodology


def test_the_hash_does_not_depend_on_the_process(shenzhen_hash):
    """Set iteration order changes with PYTHONHASHSEED; the hash must not."""
    code = ("import sys; from dsl import compile_source; "
            "print(compile_source(sys.stdin.read()).content_hash)")
    seed = "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"
    done = subprocess.run([sys.executable, "-c", code], input=SHENZHEN, text=True,
                          capture_output=True, cwd=ROOT, timeout=120,
                          env=dict(os.environ, PYTHONHASHSEED=seed, PYTHONUTF8="1"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == shenzhen_hash


@st.composite
def reformatted(draw, text: str) -> str:
    """The same file with comments, blank lines and indentation changed."""
    out = []
    for line in text.split("\n"):
        if draw(st.booleans()):
            out.append(draw(st.sampled_from(["", "   ", "# 注释 comment", "\t# x = 1 g"])))
        indent = draw(st.sampled_from(["", "  ", "    ", "\t", "\u3000", " \t "]))
        trailing = draw(st.sampled_from(["", "", " ", "  # trailing", "\t#", "# 说明"]))
        stripped = line.lstrip(" \t")
        if stripped.startswith("#"):
            trailing = ""
        out.append(indent + stripped + (trailing if stripped or trailing.strip() else ""))
    return "\n".join(out)


@budget(25)
@given(reformatted(SHENZHEN))
def test_the_hash_ignores_comments_blank_lines_and_indentation(shenzhen_hash, text):
    compiled = compile_text(text)
    assert compiled.ok, compiled.render()
    assert compiled.content_hash == shenzhen_hash


@budget(25)
@given(st.decimals(min_value=Decimal("0.001"), max_value=Decimal("999"), places=3))
def test_the_hash_changes_when_a_parameter_value_changes(shenzhen_hash, value):
    assume(value != Decimal("26.9"))
    text = SHENZHEN.replace("ebus: 26.9", f"ebus: {value}")
    assert text != SHENZHEN
    compiled = compile_source(text)
    assert compiled.content_hash is not None  # examples are not run by the checker
    assert compiled.content_hash != shenzhen_hash


@pytest.mark.parametrize("old, new", [
    ('source "深圳商报 2022-09-22', 'source "深圳商报 2022-09-23'),
    ("from 2021-12-16 source", "from 2021-12-15 source"),
    ("[SRC]", "[ASM]"),
    ("floor(reduction / 1 g)", "floor(reduction / 2 g)"),
    ("else BAD_TIMES", "else BAD_TIME"),
    ("=> reduction 583.75 g", "=> reduction 583.76 g"),
    ("version 1.0.0", "version 1.0.1"),
    ('"地铁 metro"', '"地铁"'),
])
def test_the_hash_changes_with_what_the_file_says(shenzhen_hash, old, new):
    assert old in SHENZHEN
    changed = compile_text(SHENZHEN.replace(old, new, 1))
    assert changed.ok, changed.render()
    assert changed.content_hash != shenzhen_hash


# ---------------------------------------------------------------- well-typed formulas
# Dimensions as (length, mass, time) exponents.
UNITS_OF = {
    (1, 0, 0): ["km", "m", "mile"], (0, 1, 0): ["g", "kg", "t"], (0, 0, 1): ["h", "min", "s"],
    (3, 0, 0): ["L", "gallon"], (2, 1, -2): ["kWh", "MWh", "J"], (-1, 1, 0): ["g/km"],
    (-2, 0, 2): ["kg/kWh"], (1, 0, -1): ["km/h"], (-3, 1, 0): ["kg/L"], (2, 0, 0): ["L/km"],
    (0, 0, 0): [""],
}
INPUTS = {  # name: (unit, dimension)
    "d_km": ("km", (1, 0, 0)), "d_mi": ("mile", (1, 0, 0)), "m_g": ("g", (0, 1, 0)),
    "m_t": ("t", (0, 1, 0)), "e_kwh": ("kWh", (2, 1, -2)), "v_l": ("L", (3, 0, 0)),
    "t_h": ("h", (0, 0, 1)), "f_gkm": ("g/km", (-1, 1, 0)), "n": ("1", (0, 0, 0)),
}
DECLARATIONS = "".join(f"input {name}: quantity [{unit}]\n" for name, (unit, _) in INPUTS.items())
DECLARATIONS += "input k: integer\n"
BASE = ("m", "kg", "s")


def add(a, b, sign=1):
    return tuple(x + sign * y for x, y in zip(a, b))


def unit_text(dim) -> str:
    """A unit of this dimension: a named one, or a product of SI base units."""
    parts = [f"{base}^{exp}" if exp != 1 else base for base, exp in zip(BASE, dim) if exp]
    return "·".join(parts)


def dimension_of(unit: str):
    parsed = parse_unit(unit or "1").dimension
    d = dict(parsed)
    return (d.get("[length]", 0), d.get("[mass]", 0), d.get("[time]", 0))


small_dims = st.tuples(*[st.integers(-1, 1)] * 3)
numbers = st.sampled_from(["1", "2.5", "0.08", "26.9", "1e3", "3", "0.5810", "1609.344"])


@st.composite
def literal(draw, dim):
    number = draw(numbers)
    units = UNITS_OF.get(dim) or [unit_text(dim)]
    unit = draw(st.sampled_from(units))
    return f"{number} {unit}".strip()


@st.composite
def formula(draw, dim, depth=3):
    leaves = [name for name, (_, d) in INPUTS.items() if d == dim]
    if dim == (0, 0, 0):
        leaves.append("k")
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        if leaves and draw(st.booleans()):
            return draw(st.sampled_from(leaves))
        return draw(literal(dim))
    sub = lambda d: formula(d, depth - 1)  # noqa: E731
    kind = draw(st.sampled_from(["add", "sub", "mul", "div", "paren", "neg", "abs", "minmax",
                                 "if", "case", "round"]))
    if kind in ("add", "sub"):
        op = "+" if kind == "add" else "-"
        return f"{draw(sub(dim))} {op} {draw(sub(dim))}"
    if kind == "mul":
        left = draw(small_dims)
        op = draw(st.sampled_from(["*", "×"]))
        return f"({draw(sub(left))}) {op} ({draw(sub(add(dim, left, -1)))})"
    if kind == "div":
        right = draw(small_dims)
        op = draw(st.sampled_from(["/", "÷"]))
        return f"({draw(sub(add(dim, right)))}) {op} ({draw(sub(right))})"
    if kind == "paren":
        return f"({draw(sub(dim))})"
    if kind == "neg":
        return f"-({draw(sub(dim))})"
    if kind == "abs":
        return f"abs({draw(sub(dim))})"
    if kind == "minmax":
        return f"{draw(st.sampled_from(['min', 'max']))}({draw(sub(dim))}, {draw(sub(dim))})"
    compared = draw(small_dims)
    op = draw(st.sampled_from(["<", "<=", ">", ">=", "==", "!=", "≤", "≥", "≠"]))
    condition = f"{draw(sub(compared))} {op} {draw(sub(compared))}"
    if kind == "if":  # `if` is not an operand of `+` without parentheses
        return f"(if {condition} then {draw(sub(dim))} else {draw(sub(dim))})"
    if kind == "case":
        return f"case when {condition} then {draw(sub(dim))} else {draw(sub(dim))} end"
    precision = draw(literal(dim)) if dim != (0, 0, 0) else "0.5"
    return f"{draw(st.sampled_from(['round', 'floor', 'ceil']))}({draw(sub(dim))}, {precision})"


@st.composite
def well_typed_file(draw):
    target = draw(small_dims)
    let = draw(formula(target))
    reduction = draw(formula((0, 1, 0)))
    declared = ""
    if target != (0, 0, 0) and draw(st.booleans()):
        declared = f" [{draw(st.sampled_from(UNITS_OF.get(target) or [unit_text(target)]))}]"
    text = (HEADER + DECLARATIONS + f"let x{declared} = {let}\n"
            f"reduction = {reduction}\npoints = floor(reduction / 1 g)\n")
    return text, target


def _check_well_typed(case):
    text, target = case
    compiled = compile_text(text)
    assert compiled.errors == [], compiled.render()
    x = compiled.methodology.definition("x")
    assert dimension_of(unit_text(target)) == target
    dims = dict(x.type.dimension)
    assert (dims.get("[length]", 0), dims.get("[mass]", 0), dims.get("[time]", 0)) == target
    assert dict(compiled.methodology.definition("reduction").type.dimension) == {"[mass]": 1}


@budget(60)
@given(well_typed_file())
def test_well_typed_formulas_compile(case):
    _check_well_typed(case)


@SLOW  # the twin of the two above, for `make fuzz`
@NO_HEALTH
@given(well_typed_file())
def test_well_typed_formulas_compile_long(case):
    _check_well_typed(case)


@SLOW
@NO_HEALTH
@given(reformatted(SHENZHEN), st.decimals(min_value=Decimal("0.001"), max_value=Decimal("999"),
                                          places=3))
def test_the_hash_long(shenzhen_hash, text, value):
    assert compile_text(text).content_hash == shenzhen_hash
    assume(value != Decimal("26.9"))
    assert compile_text(text.replace("ebus: 26.9", f"ebus: {value}")).content_hash != shenzhen_hash


@budget(30)
@given(well_typed_file(), st.sampled_from(["g", "km", "h", "kWh"]))
def test_adding_a_wrong_unit_to_a_well_typed_reduction_is_an_error(case, unit):
    text, _ = case
    broken = re.sub(r"\nreduction = (.*)\n", lambda m: f"\nreduction = 1 {unit} * 1 {unit} + ({m.group(1)})\n",
                    text, count=1)
    assert broken != text
    compiled = compile_text(broken)
    assert [d.code for d in compiled.errors] == ["E0302"]
