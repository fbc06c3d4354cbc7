"""Source text -> surface AST, with every syntax error reported, not just the first.

An LALR parser stops at its first error. To report all of them, a file that does not
parse as a whole is cut into statements (each starts with a statement keyword at the
start of a line) and each statement is parsed on its own: one error per broken
statement, and the good statements still reach the checker, so a typo in one place and
a syntax error in another are both reported in one run.
"""

from __future__ import annotations

import io
import pickle
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Optional

from lark import Lark, Token, Transformer, Tree, ast_utils
from lark.exceptions import (UnexpectedCharacters, UnexpectedEOF, UnexpectedInput,
                             UnexpectedToken, VisitError)

from .. import cache
from ..messages import Reporter
from . import ast
from .syntax_errors import LABELLED_EXAMPLES

# Limits checked before any expensive step (issue 17), so that checking any input takes
# well under a second: lark's LALR parser takes about 40 µs a token, and the largest
# bundled methodology has about 2,300 tokens and 14 kB.
MAX_DEPTH = 120
MAX_BYTES = 1024 * 1024       # E0003
MAX_LINE = 10_000             # characters in one line, E0004
MAX_TOKENS = 10_000           # words, numbers, strings and symbols, comments aside, E0005
MAX_LINES = 20_000            # lines, E0005
_ROUGH_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"?|(#[^\n]*)|[^\W\d][\w.]*|\d[\w.+-]*|\S')

_ITEM_START = re.compile(
    r"^[ \t\u3000]*(?:"
    r"(?:input|parameter|let|require|forbid|bonus|flag|example|history|counter|reward)\b(?![ \t]*:)"  # `flag:` is a field
    r"|cap[ \t]+(?:reduction|points|counter)\b"
    r"|(?:baseline|project|leakage|reduction|points)[ \t]*(?:\[[^\]\n]*\])?[ \t]*=(?!>)"
    r")",
    re.MULTILINE,
)

# What a person calls each terminal, for "expected ..." messages.
_TERMINAL_NAMES = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": 'a quoted text ("...")',
    "DATE": "a date (2024-05-20)",
    "DATETIME": "a date and time (2024-05-20T08:30)",
    "UNIT": "a unit",
    "METH_ID": "a methodology id",
    "VERSION": "a version (1.0.0)",
    "ZONE": "a time zone (Asia/Shanghai)",
    "LANG": "a language code (en, zh)",
    "TAG": "a provenance tag ([SRC], [DER], [ASM], [MEM])",
    "ORDINAL": "an ordinal (3rd)",
    "COMPARE": "a comparison (<, <=, ==, !=, >=, >)",
    "PLUS": "`+`",
    "MUL_OP": "`*` or `/`",
    "SIGN": "`-`",
    "NOT": "`not`",
    "$END": "the end of the file",
}


class _ToAst(Transformer):
    """Rules that are keywords or tokens only; everything else is ast_utils' job."""

    def STRING(self, token: Token) -> Token:
        body = token[1:-1]
        if "\\" in body:
            body = re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)
        return token.update(value=body)

    def _keyword(self, children) -> Token:
        first, last = children[0], children[-1]
        value = " ".join(str(c) for c in children)
        token = Token("KEYWORD", value, first.start_pos, first.line, first.column,
                      last.end_line, last.end_column, last.end_pos)
        return token

    cite_key = simple_type_name = bound_kind = output_name = cap_target = _keyword
    period_name = status_name = bool_value = _keyword
    history_agg = window_side = window_unit = _keyword

    def _only_child(self, children):
        return children[0]

    item = case_subject = case_default = _only_child


_PARSER_OPTIONS = dict(parser="lalr", lexer="contextual", start=["module", "header", "item"],
                       propagate_positions=True, maybe_placeholders=True, strict=True)


@lru_cache(maxsize=1)
def _parser() -> Lark:
    """The LALR parser; its tables are built once and then loaded from the user's cache.

    The cache entry is keyed by the grammar text, the options and the lark and Python
    versions; an entry that does not load is rebuilt (see dsl/cache.py).

    Why not lark's own `Lark(..., cache=path)`: it loads as fast (both 18 ms at best,
    25 ms median, against 380 ms to build the tables; lark 1.3.1, measured side by side)
    but writes the file in place, not to a temporary file renamed into place. Processes
    that start at once (tests/dsl/test_cache.py starts four) then read half-written
    files, and two that write at once interleave their bytes; lark's pickles differ
    from process to process (the hash seed orders its sets), so a file mixed from two
    is neither's and only chance says whether it fails to load. dsl/cache.py writes
    atomically, and keeps the folder policy of the other caches (TANPU_CACHE_DIR, an
    unwritable folder silently unused).
    """
    grammar = resources.files("dsl").joinpath("grammar.lark").read_text(encoding="utf-8")
    name, header = _cache_entry(grammar)
    data = cache.read(name)
    if data is not None and data.startswith(header):
        try:
            return Lark.load(io.BytesIO(data[len(header):]))
        except Exception:  # a corrupt entry: build the parser as if there were none
            pass
    parser = Lark(grammar, **_PARSER_OPTIONS)
    try:
        saved = io.BytesIO()
        parser.save(saved)
    except Exception:  # pragma: no cover - the cache is an optimisation only
        return parser
    cache.write(name, header + saved.getvalue())
    return parser


def _cache_entry(grammar: str) -> tuple[str, bytes]:
    """The cache file name and the header that proves an entry is for this grammar."""
    import hashlib
    import sys

    import lark

    key = hashlib.sha256("\0".join([
        grammar, repr(sorted(_PARSER_OPTIONS.items())), lark.__version__,
        "%d.%d" % sys.version_info[:2], str(pickle.HIGHEST_PROTOCOL),
    ]).encode("utf-8")).hexdigest()
    return f"grammar-{key[:32]}.lark", f"tanpu-lalr {key}\n".encode("ascii")


@lru_cache(maxsize=1)
def _transformer() -> Transformer:
    return ast_utils.create_transformer(ast, _ToAst())


@lru_cache(maxsize=1)
def _terminal_display() -> dict[str, str]:
    shown = dict(_TERMINAL_NAMES)
    for terminal in _parser().terminals:
        if terminal.name not in shown and terminal.pattern.type == "str":
            shown[terminal.name] = f"`{terminal.pattern.value}`"
    return shown


@dataclass
class ParseResult:
    module: ast.Module
    failed_names: set[str]  # names that broken statements tried to define
    broken: set[str] = field(default_factory=set)  # first words of statements that did not parse


_EXPRESSION_START = {"NAME", "NUMBER", "LPAR", "STRING", "DATE", "DATETIME", "MINUS", "SIGN", "CASE",
                     "IF", "NOT", "TRUE", "FALSE", "BASELINE", "PROJECT", "LEAKAGE",
                     "REDUCTION", "POINTS"}


def _expected_text(expected) -> str:
    expected = {e for e in expected if e != "$END" or len(expected) == 1}
    shown = _terminal_display()
    words = []
    if {"NAME", "NUMBER", "LPAR"} <= expected:
        words.append("an expression")
        expected = expected - _EXPRESSION_START
    words += sorted({shown.get(e, e) for e in expected if not e.startswith("__")})
    if not words:
        return ""
    if len(words) > 8:
        return "expected one of " + ", ".join(words[:8]) + ", ..."
    if len(words) == 1:
        return "expected " + words[0]
    return "expected " + ", ".join(words[:-1]) + " or " + words[-1]


# lark's `accepts` copies the parser's stack once for every terminal: in input nested
# thousands deep (within the line limit) that took seconds per error. Deeper than this,
# the error says what LALR's merged state expects, and gets no label.
_DEEP_STACK = 4 * MAX_DEPTH


def _deep(error: UnexpectedInput) -> bool:
    state = getattr(error, "state", None)
    return state is not None and len(getattr(state, "state_stack", ())) > _DEEP_STACK


def _accepted(error: UnexpectedInput, text: str, start: str) -> set[str]:
    """The tokens the parser would really take here (LALR's merged states list more)."""
    if _deep(error):
        return set(getattr(error, "expected", ()) or ())
    try:
        if isinstance(error, UnexpectedToken) and error.interactive_parser is not None:
            return set(error.interactive_parser.accepts())
        if isinstance(error, (UnexpectedToken, UnexpectedEOF)):
            interactive = _parser().parse_interactive(text, start=start)
            interactive.exhaust_lexer()
            return set(interactive.accepts())
    except UnexpectedInput:
        pass
    return set(getattr(error, "expected", ()) or ())


def _found_text(token: Token) -> str:
    if token.type == "$END":
        return "end of the statement"
    shown = _terminal_display().get(token.type)
    if token.type in ("NAME", "NUMBER", "UNIT", "STRING", "DATE", "DATETIME"):
        return f"{shown} `{token}`" if shown else f"`{token}`"
    return f"`{token}`"


_LABELS: dict[tuple, str] = {}


def _label_for(error: UnexpectedInput, start: str) -> str:
    """The label of the first known mistake that fails in the same parser state.

    Remembered by what lark's match_examples compares (the parser state, the token, the
    tokens accepted there): it parses every labelled example, and a file with a thousand
    broken statements took seconds to check (issue 17)."""
    if not isinstance(error, UnexpectedToken) or start != "item" or _deep(error):
        return ""
    state = error.state
    key = (len(state.state_stack), state.position, error.token.type, str(error.token),
           frozenset(getattr(error, "accepts", None) or ()))
    if key in _LABELS:
        return _LABELS[key]
    parser = _parser()
    try:
        label = error.match_examples(lambda text: parser.parse(text, start="item"),
                                     LABELLED_EXAMPLES, use_accepts=True) or ""
    except Exception:  # a label is a nicety; never let it hide the error itself
        return ""
    if len(_LABELS) < 4096:
        _LABELS[key] = label
    return label


def _report_syntax(report: Reporter, error: UnexpectedInput, text: str, start: str,
                   line_offset: int, chunk_lines: int) -> None:
    line = (error.line if error.line and error.line > 0 else chunk_lines) + line_offset
    column = error.column if error.column and error.column > 0 else 1
    if isinstance(error, UnexpectedCharacters):
        char = error.char
        shown = repr(char) if not char.isprintable() or char.isspace() else f"`{char}`"
        report.report("E0102", _point(line, column), char=shown)
        return
    if isinstance(error, UnexpectedEOF) or (isinstance(error, UnexpectedToken) and error.token.type == "$END"):
        expected = _accepted(error, text, start)
        place = "the header" if start == "header" else "this statement"
        label = _label_for(error, start)
        report.report("E0103", _point(line, column), place=place,
                      label=_expected_text(expected) + " after this", help=label)
        return
    assert isinstance(error, UnexpectedToken)
    token = error.token
    width = max(len(str(token)), 1)
    from ..diagnostics import Span
    span = Span(line, column, line, column + width)
    label = _label_for(error, start)
    report.report("E0101", span, found=_found_text(token),
                  label=_expected_text(_accepted(error, text, start)), help=label)


def _point(line: int, column: int):
    from ..diagnostics import Span
    return Span(line, column, line, column + 1)


def _tree_depth(tree: Tree) -> int:
    deepest = 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        for child in node.children:
            if isinstance(child, Tree):
                stack.append((child, depth + 1))
    return deepest


def _shift(tree: Tree, lines: int, chars: int) -> None:
    """Move the positions of a statement parsed on its own to where it is in the file."""
    if not lines and not chars:
        return
    stack = [tree]
    while stack:
        node = stack.pop()
        meta = node.meta
        if not meta.empty:
            meta.line += lines
            meta.end_line += lines
            meta.start_pos += chars
            meta.end_pos += chars
        for child in node.children:
            if isinstance(child, Tree):
                stack.append(child)
            elif isinstance(child, Token) and child.line is not None:
                child.line += lines
                child.end_line += lines
                child.start_pos += chars
                child.end_pos += chars


def _parse_piece(text: str, start: str, report: Reporter, line_offset: int,
                 char_offset: int):
    parser = _parser()
    try:
        tree = parser.parse(text, start=start)
    except UnexpectedInput as error:
        _report_syntax(report, error, text, start, line_offset, text.count("\n") + 1)
        return None
    if _tree_depth(tree) > MAX_DEPTH:
        report.report("E0104", _point(line_offset + 1, 1), limit=MAX_DEPTH)
        return None
    _shift(tree, line_offset, char_offset)
    try:
        return _transformer().transform(tree)
    except VisitError as error:  # pragma: no cover - a bug in the AST classes
        raise error.orig_exc


def _defined_names(text: str) -> set[str]:
    """Names a broken statement meant to define, so they are not reported as unknown."""
    m = re.match(r"\s*(?:let|parameter|history|counter|reward)\s+(\w+)", text)
    if m:
        return {m.group(1)}
    m = re.match(r"\s*input\s+([\w\s,]+?)\s*:", text)
    if m:
        return {n.strip() for n in m.group(1).split(",") if n.strip()}
    m = re.match(r"\s*(baseline|project|leakage|reduction|points)\b", text)
    if m:
        return {m.group(1)}
    return set()


def parse(text: str, file: str, report: Reporter) -> Optional[ParseResult]:
    """Parse a whole file; every syntax error goes to ``report``."""
    size = len(text.encode("utf-8", errors="replace"))
    if size > MAX_BYTES:
        report.report("E0003", _point(1, 1), size=size, limit=MAX_BYTES)
        return None
    if not _within_limits(text, report):
        return None
    try:
        tree = _parser().parse(text, start="module")
        if _tree_depth(tree) <= MAX_DEPTH:
            module = _transformer().transform(tree)
            return ParseResult(module, set())
    except UnexpectedInput:
        pass
    return _parse_by_statement(text, report)


def _within_limits(text: str, report: Reporter) -> bool:
    """E0004 on the first line over MAX_LINE characters; E0005 when the file has more than
    MAX_TOKENS tokens (counted roughly, by a regular expression: it only has to be
    linear and never below the parser's count by much)."""
    if len(text) > MAX_LINE:
        for number, line in enumerate(text.split("\n"), start=1):
            if len(line) > MAX_LINE:
                report.report("E0004", _point(number, MAX_LINE + 1), length=len(line),
                              limit=MAX_LINE, help="break it into several lines; a long text "
                              "can be split into several strings or `note` lines")
                return False
    lines = text.count("\n") + 1
    if lines > MAX_LINES:
        report.report("E0005", _point(MAX_LINES + 1, 1), limit=f"{MAX_LINES:,}", what="lines",
                      help="a methodology this long is several methodologies")
        return False
    if len(text) > MAX_TOKENS:
        count = 0
        for match in _ROUGH_TOKEN.finditer(text):
            if match.group(1) is None:
                count += 1
                if count > MAX_TOKENS:
                    report.report("E0005", _point(text.count("\n", 0, match.start()) + 1, 1),
                                  limit=f"{MAX_TOKENS:,}", what="words, numbers and symbols",
                                  help="a methodology this long is several "
                                  "methodologies, or its tables belong in fewer rows")
                    return False
    return True


def _parse_by_statement(text: str, report: Reporter) -> ParseResult:
    starts = [m.start() for m in _ITEM_START.finditer(text)]
    header_end = starts[0] if starts else len(text)
    header = None
    failed: set[str] = set()
    broken: set[str] = set()
    head_text = text[:header_end]
    if head_text.strip():
        if re.match(r"(?:\s|#[^\n]*)*methodology\b", head_text):  # comments may come first
            header = _parse_piece(head_text, "header", report, 0, 0)
        else:
            report.report("E0002", _first_token_span(head_text))
    else:
        report.report("E0002", _point(1, 1))
    items = ast.ItemList()
    bounds = starts + [len(text)]
    line = text.count("\n", 0, header_end)
    for begin, end in zip(bounds, bounds[1:]):
        piece = text[begin:end]
        item = _parse_piece(piece, "item", report, line, begin)
        if item is None:
            failed |= _defined_names(piece)
            broken.add(piece.split(None, 1)[0])
        else:
            items.append(item)
        line += piece.count("\n")
    return ParseResult(ast.Module(header, items), failed, broken)


def _first_token_span(text: str):
    m = re.search(r"\S+", text)
    if not m:
        return _point(1, 1)
    line = text.count("\n", 0, m.start()) + 1
    column = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
    from ..diagnostics import Span
    return Span(line, column, line, column + len(m.group(0)))
