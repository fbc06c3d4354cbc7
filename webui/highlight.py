"""Syntax highlighting of Tanpu methodology sources: a Pygments lexer and an HTML helper.

    >>> from webui.highlight import TanpuLexer, highlight_source
    >>> html = highlight_source(text)                  # a table: line numbers | code

Also registered as the Pygments lexer `tanpu` (entry point), so
`pygmentize -l tanpu methodologies/hello-shared-bike.tanpu` works.

Tokens (Pygments types, CSS short names in webui/static/tanpu.css):
  keywords                       Keyword (.k), Keyword.Declaration (.kd) for statements,
                                 Keyword.Type (.kt) for input types, Keyword.Constant (.kc)
  units, in brackets or after a number   Name.Tag (.nt): [g/km], 8.2 km, 500 g
  numbers                        Number (.m, .mf, .mi); version numbers Number.Other (.mo)
  dates and date-times           Literal.Date (.ld): 2021-12-16, 2024-05-20T08:00
  strings                        String.Double (.s2)
  comments                       Comment.Single (.c1)
  provenance tags                Name.Decorator (.nd): [SRC] [DER] [ASM] [MEM]
  reason codes                   Name.Label (.nl): NOT_COVERED, OVERLAP
  output names                   Name.Builtin (.nb): reduction, points, baseline ...
  methodology ids, time zones    Name.Class (.nc), Name.Constant (.no)
  language of a title/description  Name.Attribute (.na): title en "..."
"""

from __future__ import annotations

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import (Comment, Keyword, Literal, Name, Number, Operator, Punctuation,
                            String, Text, Whitespace)

DECLARATIONS = ("methodology", "input", "parameter", "let", "require", "cap", "forbid",
                "bonus", "flag", "example", "counter", "reward")
TYPES = ("quantity", "number", "integer", "boolean", "text", "date", "datetime", "duration",
         "choice")
OUTPUTS = ("baseline", "project", "leakage", "reduction", "points")
WORD_OPERATORS = ("and", "or", "not", "in")
KEYWORDS = (
    # header
    "version", "title", "issuer", "cite", "url", "year", "table", "equation", "section", "doi",
    "note", "status", "covers", "description", "effective", "from", "until", "timezone",
    "precedes",
    # inputs and parameters
    "optional", "between", "at", "least", "most", "label", "by", "source", "otherwise",
    "reject",
    # rules
    "else", "per", "account", "day", "week", "month", "overlap", "duplicate", "on", "the",
    "record", "within", "more", "than", "records", "as",
    # expressions
    "if", "then", "case", "when", "end",
    # examples
    "credited", "capped", "applicable", "rejected", "flagged",
)
# words that end a quantity: `between 0 km and 200 km`, never `0 and`
_NOT_UNITS = set(DECLARATIONS + TYPES + WORD_OPERATORS + KEYWORDS + ("true", "false")) - {
    "points", "day", "week", "month", "year"}
_UNIT = r"(?:[A-Za-zµ°%][A-Za-z0-9µ°%_]*(?:\^-?[0-9]+)?(?:[/·*][A-Za-zµ°%][A-Za-z0-9µ°%_]*(?:\^-?[0-9]+)?)*|%)"
_NUMBER = r"[0-9]+(?:\.[0-9]+)?(?:[eE][+\-]?[0-9]+)?"
_NOT_UNIT_LOOKAHEAD = r"(?!(?:" + "|".join(sorted(_NOT_UNITS, key=len, reverse=True)) + r")\b)"


class TanpuLexer(RegexLexer):
    """Tanpu methodology sources (*.tanpu)."""

    name = "Tanpu"
    aliases = ["tanpu"]
    filenames = ["*.tanpu"]
    mimetypes = ["text/x-tanpu"]
    url = "https://github.com/"  # the language is documented in docs/ of the project
    version_added = ""

    tokens = {
        "root": [
            (r"[ \t\f\r\n\u3000]+", Whitespace),
            (r"#[^\n]*", Comment.Single),
            (r'"(?:[^"\\\n]|\\.)*"', String.Double),
            (r'"[^"\n]*', String.Double),  # unterminated: up to the end of the line
            (r"\[(?:SRC|DER|ASM|MEM)\]", Name.Decorator),
            # a unit in brackets after a space: quantity [km], parameter ef [g/km]
            (r"(?<=\s)(\[)(\s*)(" + _UNIT + r"|1)(\s*)(\])",
             bygroups(Punctuation, Whitespace, Name.Tag, Whitespace, Punctuation)),
            (r"(methodology)(\s+)([A-Za-z][A-Za-z0-9_.\-]*)",
             bygroups(Keyword.Declaration, Whitespace, Name.Class)),
            (r"(version)(\s+)([0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z.\-]+)?)",
             bygroups(Keyword, Whitespace, Number.Other)),
            (r"(precedes)(\s+)([A-Za-z][A-Za-z0-9_.\-]*)",
             bygroups(Keyword, Whitespace, Name.Class)),
            # title en "...", description zh "...": the language of the text
            (r'(title|description)(\s+)([a-z]{2}(?:-[A-Za-z]{2,4})?)(?=\s+")',
             bygroups(Keyword, Whitespace, Name.Attribute)),
            (r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?"
             r"(?:Z|[+\-][0-9]{2}:[0-9]{2})?", Literal.Date),
            (r"[0-9]{4}-[0-9]{2}-[0-9]{2}", Literal.Date),
            (r"[0-9]+(?:st|nd|rd|th)\b", Number.Integer),
            # a quantity: 8.2 km, 500 g, 1 h, 25 % (the unit is the word right after)
            (r"(" + _NUMBER + r")([ \t]*)" + _NOT_UNIT_LOOKAHEAD + r"(" + _UNIT + r")(?![\w(\[])",
             bygroups(Number, Whitespace, Name.Tag)),
            (r"[0-9]+\.[0-9]+(?:[eE][+\-]?[0-9]+)?", Number.Float),
            (r"[0-9]+(?:[eE][+\-]?[0-9]+)?", Number.Integer),
            (r"(?:UTC|[A-Z][A-Za-z_]+(?:/[A-Za-z_+\-0-9]+)+)(?![\w/])", Name.Constant),
            (r"[A-Z][A-Z0-9]*_[A-Z0-9_]*\b|[A-Z]{2,}[0-9]*\b", Name.Label),
            (words(("true", "false"), suffix=r"\b"), Keyword.Constant),
            (words(DECLARATIONS, suffix=r"\b"), Keyword.Declaration),
            (words(TYPES, suffix=r"\b"), Keyword.Type),
            (words(WORD_OPERATORS, suffix=r"\b"), Operator.Word),
            (words(OUTPUTS, suffix=r"\b"), Name.Builtin),
            (words(KEYWORDS, suffix=r"\b"), Keyword),
            (r"(?!\d)\w+(?=\s*\()", Name.Function),
            (r"(?!\d)\w+", Name),
            (r"=>|<=|>=|==|!=|[≤≥≠×÷+\-*/<>=^]", Operator),
            (r"[{}()\[\],:;.]", Punctuation),
            (r".", Text),
        ],
    }


def highlight_source(source: str, *, line_anchors: str = "L") -> str:
    """The source as HTML: a table of line numbers (links to #L-n) and highlighted code."""
    formatter = HtmlFormatter(linenos="table", lineanchors=line_anchors, anchorlinenos=True,
                              cssclass="highlight", wrapcode=True)
    return highlight(source, TanpuLexer(), formatter)


def highlight_inline(source: str) -> str:
    """Highlighted code without line numbers (a snippet)."""
    return highlight(source, TanpuLexer(), HtmlFormatter(cssclass="highlight", wrapcode=True))
