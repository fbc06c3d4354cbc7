"""Lets and outputs: their order, cycles, types, and the rules on outputs.

Definitions may be written in any order, like the formulas of a published methodology;
they are evaluated dependencies first. A cycle is an error naming the whole loop.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from ..ir import ast as ir
from ..messages import Reporter
from ..surface import ast
from ..types import Kind, Type, is_mass, quantity
from .expressions import ExpressionChecker, Uses, within_depth
from .literals import unit_of
from .scope import Scope, declare


def names_in(node) -> set[str]:
    """Every bare name an expression mentions (an over-approximation of what it uses)."""
    found: set[str] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, ast.NameExpr):
            found.add(str(current.name))
        elif isinstance(current, list):
            stack.extend(current)
        elif dataclasses.is_dataclass(current):
            for f in dataclasses.fields(current):
                if f.name != "meta":
                    value = getattr(current, f.name)
                    if isinstance(value, (list, tuple)) or dataclasses.is_dataclass(value):
                        stack.append(value)
    return found


def collect(items, scope: Scope, report: Reporter, declared: dict) -> dict:
    """name -> LetDef/OutputDef, reporting duplicates against everything declared."""
    definitions = {}
    for item in items:
        if not isinstance(item, (ast.LetDef, ast.OutputDef)):
            continue
        name = str(item.name)
        if not declare(name, item.name, declared, report):
            continue
        definitions[name] = item
        scope.definition_names.add(name)
    return definitions


def order(definitions: dict, report: Reporter) -> tuple[list[str], set[str]]:
    """Dependencies-first order (stable: source order among equals) and the names in cycles."""
    position = {name: index for index, name in enumerate(definitions)}
    graph = {name: sorted(names_in(node.expr) & definitions.keys(), key=position.__getitem__)
             for name, node in definitions.items()}
    state: dict[str, int] = {}  # 1 visiting, 2 done
    ordered: list[str] = []
    cyclic: set[str] = set()
    for root in definitions:
        if state.get(root):
            continue
        stack = [(root, iter(graph[root]))]
        state[root] = 1
        path = [root]
        while stack:
            name, deps = stack[-1]
            nxt = next(deps, None)
            if nxt is None:
                stack.pop()
                path.pop()
                state[name] = 2
                ordered.append(name)
                continue
            if state.get(nxt) == 1:
                loop = path[path.index(nxt):] + [nxt]
                if not (set(loop) & cyclic):
                    node = definitions[nxt]
                    report.report("E0205", node.name, name=nxt,
                                  label="  ->  ".join(loop),
                                  notes=[report.note(f"`{a}` uses `{b}`", definitions[a].name)
                                         for a, b in zip(loop, loop[1:])])
                cyclic |= set(loop)
                continue
            if not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(graph[nxt])))
    return [n for n in ordered if n not in cyclic], cyclic


def check_definitions(definitions: dict, scope: Scope, report: Reporter
                      ) -> tuple[list[ir.Definition], dict[str, Uses]]:
    ordered, cyclic = order(definitions, report)
    scope.failed |= cyclic
    lowered: list[ir.Definition] = []
    uses: dict[str, Uses] = {}
    for name in ordered:
        node = definitions[name]
        checker = ExpressionChecker(scope, report)
        expr = within_depth(checker.check(node.expr), node.expr, report)
        uses[name] = checker.uses  # kept even when it fails, so its lookups still count
        if expr is None:
            scope.failed.add(name)
            continue
        t = expr.type
        if node.unit is not None:
            unit = unit_of(node.unit.text, report)
            if unit is None:
                scope.failed.add(name)
                continue
            if not t.is_numeric or unit.dimension != t.dimension:
                report.report("E0303", node.unit, expected=quantity(unit).describe(),
                              found=t.describe(), label=f"`{name}` is {t.describe()}")
                scope.failed.add(name)
                continue
            t = quantity(unit)
            expr = dataclasses.replace(expr, type=t) if expr.type.kind == Kind.QUANTITY else expr
        kind = "output" if isinstance(node, ast.OutputDef) else "let"
        if kind == "output" and not _output_ok(name, t, node, report):
            scope.failed.add(name)
            continue
        scope.definitions[name] = t
        lowered.append(ir.Definition(name, kind, t, expr, quantized=kind == "output" and name != "points",
                                     line=node.meta.line))
    return lowered, uses


def _text(e) -> str:
    """An expression written back as text, for the common shapes ("" for the others)."""
    if isinstance(e, (ast.NameExpr, ast.NameLiteral)):
        return str(e.name)
    if isinstance(e, ast.NumberExpr):
        return f"{e.number} {e.unit}" if e.unit is not None else str(e.number)
    if isinstance(e, (ast.BinaryAdd, ast.BinaryMul)):
        left, right = _text(e.left), _text(e.right)
        return f"{left} {e.op} {right}" if left and right else ""
    if isinstance(e, ast.Call):
        args = [_text(a) for a in e.args]
        return f"{e.func}({', '.join(args)})" if all(args) else ""
    return ""


def _points_help(t: Type, expr) -> str:
    """A conversion that applies to what `points` was given: a number is rounded down as it
    is, a mass per gram; the expression by its name where it is one."""
    what = _text(expr) or "..."
    if t.is_number:
        return f"convert explicitly, e.g. `points = floor({what})` or `round({what})`"
    if is_mass(t):
        return f"convert explicitly, e.g. `points = floor({what} / 1 g)`"
    return "convert explicitly, e.g. `points = floor(reduction / 1 g)`"


def _output_ok(name: str, t: Type, node, report: Reporter) -> bool:
    if name == "points":
        if t.kind != Kind.INTEGER:
            report.report("E0305", node.expr, found=t.describe(), help=_points_help(t, node.expr))
            return False
        return True
    if not is_mass(t):
        report.report("E0304", node.expr, name=name, found=t.describe(),
                      help="multiply a factor by an activity amount so that the units give a mass, "
                           "e.g. `26.9 g/km * distance`")
        return False
    return True


def synthesize_reduction(definitions: dict) -> None:
    """`reduction = baseline - project - leakage` when only the parts are written.

    It is built as surface syntax placed at `baseline`, so it is checked, typed and
    ordered like any written definition, and `points` can refer to it.
    """
    if "reduction" in definitions or "baseline" not in definitions:
        return
    baseline = definitions["baseline"]
    from lark import Token

    def name(text):
        return ast.NameExpr(baseline.meta, Token("NAME", text, line=baseline.name.line,
                                                 column=baseline.name.column,
                                                 end_line=baseline.name.end_line,
                                                 end_column=baseline.name.end_column))
    expr = name("baseline")
    for part in ("project", "leakage"):
        if part in definitions:
            expr = ast.BinaryAdd(baseline.meta, expr, Token("SIGN", "-"), name(part))
    definitions["reduction"] = ast.OutputDef(baseline.meta, Token("KEYWORD", "reduction"), None, expr)


def synthesize_zero(definitions: dict, header, failed: set) -> None:
    """`reduction = 0 g` and `points = 0` where the file does not write them: a points-only
    scheme credits no mass, a project methodology giving tonnes no points. Built as
    surface syntax at the header, so every path evaluates them like written ones."""
    from lark import Token

    def token(kind, text):
        return Token(kind, text, line=header.id.line, column=header.id.column,
                     end_line=header.id.end_line, end_column=header.id.end_column)
    if not {"reduction", "baseline"} & (set(definitions) | failed):
        definitions["reduction"] = ast.OutputDef(
            header.meta, token("KEYWORD", "reduction"), None,
            ast.NumberExpr(header.meta, token("NUMBER", "0"), token("NAME", "g")))
    if "points" not in definitions and "points" not in failed:
        definitions["points"] = ast.OutputDef(
            header.meta, token("KEYWORD", "points"), None,
            ast.NumberExpr(header.meta, token("NUMBER", "0"), None))
