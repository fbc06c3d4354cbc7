"""IR expressions in standard mathematical notation: LaTeX, then MathML (latex2mathml).

Notation: a fraction for division, × for multiplication, min/max, ⌊x⌋ and ⌈x⌉, a brace
of cases for `if` and `case`, a parameter lookup as a symbol subscripted with its keys
(RF_mode), and a constant with its unit (1 g). Every name of the methodology gets a
symbol (see ``Symbols``) that the document explains below each equation.

The LaTeX is generated, never written by an author, so it only uses what latex2mathml
converts faithfully; text inside ``\\text{}`` is escaped here because latex2mathml passes
it through as it is.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Optional

import latex2mathml.converter

from dsl.ir import ast as ir
from dsl.types import Kind, Type
from dsl.units import Unit

from . import i18n, values

# CDM / CCER notation for the outputs
OUTPUT_SYMBOLS = {"baseline": "BE", "project": "PE", "leakage": "LE", "reduction": "ER",
                  "points": "P"}
# parts of a name that are themselves a symbol: grid_ef -> EF_grid
ABBREVIATIONS = {"ef", "rf", "er", "be", "pe", "le", "eg", "ncv", "gwp", "cf", "fc", "sfc",
                 "cop", "cod", "tdl", "ghg", "co2", "ch4", "n2o", "pm"}

# precedence: what an operand must at least have to go without parentheses
P_CASES, P_OR, P_AND, P_NOT, P_REL, P_ADD, P_MUL, P_NEG, P_FRAC, P_ATOM = range(10)


# ---------------------------------------------------------------- escaping
def text(s: str) -> str:
    """``\\text{...}`` of any string."""
    cleaned = s.replace("\\", "∖").replace("{", "(").replace("}", ")")
    return r"\text{" + html.escape(cleaned, quote=False) + "}"


def unit_latex(unit_text: str) -> str:
    """``kg/kWh`` -> ``\\text{kg}/\\text{kWh}``; ``m^2`` -> ``{\\text{m}}^{2}``."""
    if unit_text in ("", "1"):
        return ""
    if unit_text == "%":
        return r"\%"
    if "^" not in unit_text and "**" not in unit_text:
        return text(unit_text.replace("*", "·"))
    out = []
    for token in re.split(r"(/|·|\*(?!\*))", unit_text.replace("**", "^")):
        if token == "/":
            out.append("/")
        elif token in ("·", "*"):
            out.append(r"\cdot ")
        elif token:
            m = re.fullmatch(r"\s*(.+?)\s*(?:\^\s*(-?\d+))?\s*", token)
            base, power = (m.group(1), m.group(2)) if m else (token, None)
            atom = "{" + text(base) + "}"
            out.append(atom + (f"^{{{power}}}" if power else ""))
    return "".join(out)


# ---------------------------------------------------------------- symbols
@dataclass(frozen=True)
class Symbol:
    name: str
    kind: str  # input | builtin | parameter | let | output
    main: str  # LaTeX of the symbol proper: D, \mathit{RF}, \text{mode}
    sub: tuple[str, ...] = ()  # LaTeX of its own subscript parts (EF_grid: \text{grid})

    def latex(self, keys: tuple[str, ...] = ()) -> str:
        parts = self.sub + tuple(keys)
        if not parts:
            return self.main
        return "{" + self.main + "}_{" + ",".join(parts) + "}"


def _abbreviation(letters: str) -> str:
    return letters if len(letters) == 1 else r"\mathit{" + letters + "}"


class Symbols:
    """One symbol per name of the methodology, unique within it.

    Outputs take the CDM symbols (BE, PE, LE, ER) and P for points; a name of several
    words its initials (reduction_factor -> RF) or its abbreviation with the other words
    as subscript (grid_ef -> EF_grid); a one-word name its initial (distance -> D).
    Choices, booleans and text are shown by name (mode); dates and times as t_name.
    A symbol already taken gets the name as subscript (D_duration).
    """

    def __init__(self, methodology: ir.Methodology):
        self.by_name: dict[str, Symbol] = {}
        taken: set[str] = set()

        def add(name: str, kind: str, main: str, sub: tuple[str, ...] = ()):
            candidates = [(main, sub), (main, (text(name),)), (text(name), ())]
            for cand_main, cand_sub in candidates:
                symbol = Symbol(name, kind, cand_main, cand_sub)
                if symbol.latex() not in taken:
                    break
            taken.add(symbol.latex())
            self.by_name[name] = symbol

        for d in methodology.definitions:
            if d.kind == "output":
                add(d.name, "output", _abbreviation(OUTPUT_SYMBOLS.get(d.name, d.name.upper())))
        add("time", "builtin", "t")
        for name in ("id", "account", "activity"):
            add(name, "builtin", text(name))
        for p in methodology.parameters:
            add(p.name, "parameter", *self._derive(p.name))
        for spec in methodology.inputs:
            kind = spec.type.kind
            if kind in (Kind.CHOICE, Kind.BOOLEAN, Kind.TEXT):
                add(spec.name, "input", text(spec.name))
            elif kind in (Kind.DATE, Kind.DATETIME):
                add(spec.name, "input", "t", (text(spec.name),))
            else:
                add(spec.name, "input", *self._derive(spec.name))
        for d in methodology.definitions:
            if d.kind == "let":
                if d.type.kind in (Kind.CHOICE, Kind.BOOLEAN, Kind.TEXT):
                    add(d.name, "let", text(d.name))
                else:
                    add(d.name, "let", *self._derive(d.name))

    @staticmethod
    def _derive(name: str) -> tuple[str, tuple[str, ...]]:
        parts = [p for p in name.split("_") if p]
        if not parts:
            return text(name), ()
        if len(parts) == 1:
            word = parts[0]
            if word.lower() in ABBREVIATIONS:
                return _abbreviation(word.upper()), ()
            return word[0].upper(), ()
        for i, part in enumerate(parts):
            if part.lower() in ABBREVIATIONS:
                rest = parts[:i] + parts[i + 1:]
                return _abbreviation(part.upper()), ((text(" ".join(rest)),) if rest else ())
        initials = "".join(p[0] for p in parts if p[0].isalpha()).upper()
        return (_abbreviation(initials), ()) if initials else (text(name), ())

    def __getitem__(self, name: str) -> Symbol:
        return self.by_name[name]


# ---------------------------------------------------------------- expressions
@dataclass
class Use:
    """A name as it appears in a formula (a lookup with its keys)."""
    name: str
    latex: str


@dataclass
class Formula:
    latex: str
    uses: list[Use] = field(default_factory=list)  # first appearance of each name, in order

    def mathml(self, display: str = "block") -> str:
        return to_mathml(self.latex, display)


class Notation:
    """Renders expressions of one methodology in one language."""

    def __init__(self, methodology: ir.Methodology, lang: str = i18n.DEFAULT_LANG,
                 symbols: Optional[Symbols] = None):
        self.m = methodology
        self.lang = lang
        self.symbols = symbols or Symbols(methodology)
        self.timezone = methodology.metadata.timezone
        self._uses: list[Use] = []

    # ------------------------------------------------------------ entry points
    def formula(self, expr: ir.Expr) -> Formula:
        self._uses = []
        latex = self._ex(expr)
        return Formula(latex, self._dedupe(self._uses))

    def definition(self, d: ir.Definition) -> Formula:
        self._uses = []
        lhs = self._name(d.name)
        rhs = self._ex(d.expr)
        return Formula(f"{lhs} = {rhs}", self._dedupe(self._uses))

    def symbol(self, name: str) -> str:
        return self.symbols[name].latex()

    @staticmethod
    def _dedupe(uses: list[Use]) -> list[Use]:
        seen, out = set(), []
        for use in uses:
            if use.name not in seen:
                seen.add(use.name)
                out.append(use)
        return out

    # ------------------------------------------------------------ helpers
    def _name(self, name: str, keys: tuple[str, ...] = ()) -> str:
        symbol = self.symbols.by_name.get(name)
        latex = symbol.latex(keys) if symbol else text(name)
        self._uses.append(Use(name, latex))
        return latex

    def _op(self, e: ir.Expr, at_least: int) -> str:
        latex, prec = self._render(e)
        return latex if prec >= at_least else r"\left(" + latex + r"\right)"

    def _ex(self, e: ir.Expr) -> str:
        return self._render(e)[0]

    def const(self, value: ir.Value, t: Type) -> str:
        if value is None:
            return text("—")
        if t.kind == Kind.QUANTITY:
            unit = unit_latex(t.unit.text)
            shown = values.in_unit(float(value), t.unit) if unit else values.number(float(value))
            return shown + (r"\," + unit if unit else "")
        if t.kind == Kind.INTEGER:
            return str(value)
        if t.kind == Kind.BOOLEAN:
            return text("true" if value else "false")
        if t.kind == Kind.CHOICE:
            return text(str(value))
        if t.kind == Kind.TEXT:
            return text(f"“{value}”")
        return text(values.value(value, t, self.timezone))

    # ------------------------------------------------------------ the cases
    def _render(self, e: ir.Expr) -> tuple[str, int]:
        if isinstance(e, ir.Const):
            latex = self.const(e.value, e.type)
            negative = isinstance(e.value, (int, float)) and not isinstance(e.value, bool) and e.value < 0
            return latex, P_NEG if negative else P_ATOM
        if isinstance(e, ir.Input):
            return self._name(e.name), P_ATOM
        if isinstance(e, ir.Ref):
            return self._name(e.name), P_ATOM
        if isinstance(e, ir.Lookup):
            at = len(self._uses)  # the parameter is listed before its keys
            keys = tuple(self._key(k) for k in e.keys)
            latex = self._name(e.parameter, keys)
            self._uses.insert(at, self._uses.pop())
            return latex, P_ATOM
        if isinstance(e, ir.Negate):
            return "-" + self._op(e.operand, P_FRAC), P_NEG
        if isinstance(e, ir.Arith):
            return self._arith(e)
        if isinstance(e, ir.Elapsed):
            return f"{self._op(e.end, P_ADD)} - {self._op(e.start, P_MUL)}", P_ADD
        if isinstance(e, ir.Compare):
            op = {"<": "<", "<=": r"\leq", "==": "=", "!=": r"\neq", ">=": r"\geq", ">": ">"}[e.op]
            return f"{self._op(e.left, P_ADD)} {op} {self._op(e.right, P_ADD)}", P_REL
        if isinstance(e, ir.InSet):
            return self._in_set(e, negated=False), P_REL
        if isinstance(e, ir.Not):
            if isinstance(e.operand, ir.InSet):
                return self._in_set(e.operand, negated=True), P_REL
            return r"\lnot " + self._op(e.operand, P_ADD), P_NOT  # ¬(a < b), ¬(a ∧ b)
        if isinstance(e, ir.Logic):
            if e.op == "and":
                return rf"{self._op(e.left, P_AND)} \land {self._op(e.right, P_AND)}", P_AND
            left = self._ex(e.left) if isinstance(e.left, ir.Logic) and e.left.op == "or" else self._op(e.left, P_NOT)
            right = self._ex(e.right) if isinstance(e.right, ir.Logic) and e.right.op == "or" else self._op(e.right, P_NOT)
            return rf"{left} \lor {right}", P_OR
        if isinstance(e, ir.If):
            return self._cases(e), P_CASES
        if isinstance(e, ir.MinMax):
            args = ", ".join(self._ex(a) for a in e.args)
            return rf"\{e.op}\left({args}\right)", P_ATOM
        if isinstance(e, ir.Abs):
            return r"\left|" + self._ex(e.operand) + r"\right|", P_ATOM
        if isinstance(e, ir.Round):
            return self._round(e), P_ATOM if e.precision == 1.0 and not e.type.dimension else P_MUL
        if isinstance(e, ir.DatePart):
            return rf"\operatorname{{{e.part}}}\left({self._ex(e.operand)}\right)", P_ATOM
        if isinstance(e, ir.LegField):  # the field of leg k
            return f"{text(e.name)}_{{k}}", P_ATOM
        if isinstance(e, ir.LegAggregate):  # over the legs k of the record's list
            where = rf",\; {self._ex(e.where)}" if e.where is not None else ""
            over = rf"k \in {text(e.group)}{where}"
            if e.op == "count":
                return rf"\left|\left\{{{over}\right\}}\right|", P_ATOM
            return rf"\sum_{{{over}}} {self._op(e.body, P_MUL)}", P_ADD
        raise TypeError(f"unknown expression {type(e).__name__}")

    def _key(self, k: ir.Expr) -> str:
        if isinstance(k, ir.Input) and k.type.kind in (Kind.CHOICE, Kind.BOOLEAN, Kind.TEXT):
            return self._name(k.name)
        return self._ex(k)

    def _arith(self, e: ir.Arith) -> tuple[str, int]:
        if e.op == "/":
            return rf"\frac{{{self._ex(e.left)}}}{{{self._ex(e.right)}}}", P_FRAC
        if e.op == "*" and isinstance(e.right, ir.Const) and e.right.type.kind == Kind.QUANTITY \
                and not e.right.type.dimension and e.right.value == 1.0:
            return self._render(e.left)  # an integer widened to a number (checker's _retype)
        if e.op == "*":
            left = self._op(e.left, P_MUL)
            return rf"{left} \times {self._op(e.right, P_FRAC)}", P_MUL
        left = self._op(e.left, P_ADD)
        return f"{left} {e.op} {self._op(e.right, P_MUL)}", P_ADD

    def _in_set(self, e: ir.InSet, negated: bool) -> str:
        subject = self._op(e.operand, P_ADD)
        items = [self._ex(v) for v in e.values]
        if len(items) == 1:
            rel = r"\neq" if negated else "="
            return f"{subject} {rel} {items[0]}"
        rel = r"\notin" if negated else r"\in"
        return rf"{subject} {rel} \left\{{{', '.join(items)}\right\}}"

    def _cases(self, e: ir.If) -> str:
        rows = []
        node: ir.Expr = e
        while isinstance(node, ir.If):
            rows.append(f"{self._ex(node.then)}, & {text(i18n.t('if', self.lang) + ' ')}{self._ex(node.cond)}")
            node = node.otherwise
        rows.append(f"{self._ex(node)}, & {text(i18n.t('otherwise', self.lang))}")
        return r"\begin{cases} " + r" \\ ".join(rows) + r" \end{cases}"

    def _round(self, e: ir.Round) -> str:
        whole = e.precision == 1.0 and not e.type.dimension
        if whole:
            inner = self._ex(e.operand)
        else:
            step = self.const(e.precision, e.type)
            inner = rf"\frac{{{self._ex(e.operand)}}}{{{step}}}"
        if e.mode == "floor":
            core = r"\left\lfloor " + inner + r"\right\rfloor"
        elif e.mode == "ceil":
            core = r"\left\lceil " + inner + r"\right\rceil"
        else:
            core = r"\operatorname{round}\left(" + inner + r"\right)"
        return core if whole else rf"{core} \times {self.const(e.precision, e.type)}"


# ---------------------------------------------------------------- MathML
_ITALIC_RUN = re.compile(r'<mrow>((?:<mi mathvariant="(?:italic|normal)">[^<]*</mi>)+)</mrow>')
_MI = re.compile(r'<mi mathvariant="(italic|normal)">([^<]*)</mi>')


def _merge_identifiers(mathml: str) -> str:
    """latex2mathml splits ``\\mathit{RF}`` into one <mi> per letter; a symbol is one
    identifier (screen readers and searches see "RF", and it is kerned as a word)."""
    def merge(match: re.Match) -> str:
        parts = _MI.findall(match.group(1))
        variants = {v for v, _ in parts}
        if len(variants) != 1:
            return match.group(0)
        return f'<mi mathvariant="{variants.pop()}">' + "".join(c for _, c in parts) + "</mi>"
    return _ITALIC_RUN.sub(merge, mathml)


def to_mathml(latex: str, display: str = "block") -> str:
    mathml = latex2mathml.converter.convert(latex, display=display)
    mathml = _merge_identifiers(mathml)
    alt = html.escape(latex, quote=True)
    return mathml.replace("<math ", f'<math alttext="{alt}" ', 1)


def unit_mathml(unit: Unit) -> str:
    """A unit typeset inline (kg/kWh), or "" for a plain number."""
    latex = unit_latex(unit.text)
    return to_mathml(latex, "inline") if latex else ""
