"""Type and unit checking of expressions, and their lowering to the IR.

An expression that has an error is reported once and lowers to None; whatever contains
it lowers to None without a second message, so one typo gives one diagnostic.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from ..ir import ast as ir
from ..messages import Reporter
from ..suggestions import did_you_mean
from ..surface import ast
from ..types import (BOOLEAN, DATE, DATETIME, INTEGER, NUMBER, TEXT, Kind, Type, duration,
                     is_duration, quantity)
from ..units import ONE
from .literals import (INVALID, decimal_of, parse_date, parse_datetime, si_float, unit_of,
                       whole_value)
from ..surface.parse import MAX_DEPTH
from . import legs
from .scope import BUILTIN_TYPES, FUNCTIONS, Scope


@dataclass
class LookupSite:
    """A table lookup; ``where`` is the condition of the sum or count over legs it is
    inside (None elsewhere): the body is evaluated only for the legs where it holds, so
    it narrows the keys a leg field can ask for as a `require` narrows an input's."""
    parameter: str
    keys: tuple
    node: object
    where: Optional[object] = None


@dataclass
class Uses:
    """What an expression refers to: for ordering, unused warnings and narrowing."""
    inputs: set[str] = field(default_factory=set)
    parameters: set[str] = field(default_factory=set)
    definitions: set[str] = field(default_factory=set)
    lookups: list[LookupSite] = field(default_factory=list)


_ARITH_VERB = {"+": "add", "-": "subtract", "*": "multiply", "/": "divide", "×": "multiply",
               "÷": "divide"}
_COMPARE_OP = {"≤": "<=", "≥": ">=", "≠": "!="}


def _num_type(t: Type) -> Type:
    """An integer in unit arithmetic is a dimensionless number."""
    return NUMBER if t.kind == Kind.INTEGER else t


class ExpressionChecker:
    def __init__(self, scope: Scope, report: Reporter):
        self.scope = scope
        self.report = report
        self.uses = Uses()
        self.leg_binding: Optional[tuple[str, str]] = None  # (leg variable, group) inside an aggregate
        self.leg_where = None  # the `where` of that aggregate, once checked (narrows its body's lookups)

    # ------------------------------------------------------------ entry
    def check(self, node, hint: Optional[Type] = None) -> Optional[ir.Expr]:
        method = getattr(self, "_" + type(node).__name__)
        return method(node, hint)

    # ------------------------------------------------------------ atoms
    def _NumberExpr(self, node: ast.NumberExpr, hint):
        value = decimal_of(node.number)
        if node.unit is not None:
            unit = unit_of(node.unit, self.report)
            if unit is None:
                return None
            si = si_float(unit, value, node, self.report)
            return None if si is INVALID else ir.Const(quantity(unit), si)
        text = str(node.number)
        if "." in text or "e" in text or "E" in text:
            si = si_float(ONE, value, node, self.report)
            return None if si is INVALID else ir.Const(NUMBER, si)
        whole = whole_value(value, node, self.report)
        return None if whole is INVALID else ir.Const(INTEGER, whole)

    def _TextExpr(self, node, hint):
        return ir.Const(TEXT, str(node.text))

    def _BoolExpr(self, node, hint):
        return ir.Const(BOOLEAN, str(node.value) == "true")

    def _DateExpr(self, node, hint):
        value = parse_date(node.text)
        if value is None:
            self.report.report("E0504", node, text=str(node.text), kind="date")
            return None
        return ir.Const(DATE, value)

    def _DatetimeExpr(self, node, hint):
        value = parse_datetime(node.text, self.scope.timezone)
        if value is None:
            self.report.report("E0504", node, text=str(node.text), kind="datetime")
            return None
        return ir.Const(DATETIME, value)

    def _NameExpr(self, node: ast.NameExpr, hint):
        name = str(node.name)
        scope = self.scope
        if hint is not None and hint.kind == Kind.CHOICE and name in hint.choices:
            return ir.Const(hint, name)
        input_type = scope.input_type(name)
        if input_type is not None:
            self.uses.inputs.add(name)
            return ir.Input(input_type, name)
        if name in scope.histories:  # a history window: given to the formulas as an input
            self.uses.inputs.add(name)
            return ir.Input(scope.histories[name], name)
        if name in scope.definitions:
            self.uses.definitions.add(name)
            return ir.Ref(scope.definitions[name], name)
        if name in scope.parameters:
            parameter = scope.parameters[name]
            self.uses.parameters.add(name)
            if parameter.keys:
                self.report.report("E0208", node, name=name,
                                   keys=", ".join(f"`{k}`" for k in parameter.keys))
                return None
            return ir.Lookup(parameter.type, name, ())
        if name in scope.failed or name in scope.definition_names:
            return None  # its own definition is broken and already reported
        if legs.bare_name(self, node):
            return None
        if hint is not None and hint.kind == Kind.CHOICE:
            self.report.report("E0204", node, value=name, choice=hint.choice_of or "the choice",
                               help=did_you_mean(name, hint.choices)
                               or "the values are " + ", ".join(hint.choices))
            return None
        owner = scope.choice_owner(name)
        if owner is not None:
            return ir.Const(owner, name)
        self.report.report("E0201", node, name=name, label="not defined",
                           help=did_you_mean(name, scope.all_names()))
        return None

    # ------------------------------------------------------------ operators
    def _Negate(self, node: ast.Negate, hint):
        operand = self.check(node.operand)
        if operand is None:
            return None
        if not operand.type.is_numeric:
            self.report.report("E0303", node.operand, expected="a number or quantity",
                               found=operand.type.describe())
            return None
        return ir.Negate(operand.type, operand)

    def _binary(self, node, hint):
        left = self.check(node.left)
        right = self.check(node.right)
        if left is None or right is None:
            return None
        op = {"×": "*", "÷": "/"}.get(str(node.op), str(node.op))
        lt, rt = left.type, right.type
        if op == "-" and lt.kind in (Kind.DATE, Kind.DATETIME) and rt.kind == lt.kind:
            return ir.Elapsed(duration(), left, right)
        if op in "+-" and lt.kind in (Kind.DATE, Kind.DATETIME) and rt.kind == Kind.QUANTITY \
                and is_duration(rt):
            # a date moved by a duration: the date of its midnight moved (whole days down);
            # a datetime: the instant moved (whole microseconds down)
            return ir.Arith(lt, op, left, right)
        if not lt.is_numeric or not rt.is_numeric:
            self._cannot(node, op, lt, rt)
            return None
        if op in "+-":
            if lt.dimension != rt.dimension:
                self._cannot(node, op, lt, rt)
                return None
            if lt.kind == Kind.INTEGER and rt.kind == Kind.INTEGER:
                return ir.Arith(INTEGER, op, left, right)
            result = lt if lt.kind == Kind.QUANTITY else rt
            return ir.Arith(result, op, left, right)
        if op == "*":
            if lt.kind == Kind.INTEGER and rt.kind == Kind.INTEGER:
                return ir.Arith(INTEGER, op, left, right)
            unit = _num_type(lt).unit.times(_num_type(rt).unit)
            return ir.Arith(quantity(unit), op, left, right)
        unit = _num_type(lt).unit.per(_num_type(rt).unit)
        return ir.Arith(quantity(unit), op, left, right)

    _BinaryAdd = _BinaryMul = _binary

    def _cannot(self, node, op, lt: Type, rt: Type):
        self.report.report("E0302", node.op, action=_ARITH_VERB.get(op, op),
                           left=lt.describe(), right=rt.describe(),
                           label=f"{lt.describe()} {op} {rt.describe()}",
                           help=_unit_help(op, lt, rt))

    def _pair(self, a, b):
        """Check two operands; a bare choice value on one side takes its type from the other."""
        if isinstance(a, ast.NameExpr) and not self._is_variable(str(a.name)):
            right = self.check(b)
            left = self.check(a, right.type if right is not None else None)
        else:
            left = self.check(a)
            right = self.check(b, left.type if left is not None else None)
        return left, right

    def _is_variable(self, name: str) -> bool:
        s = self.scope
        return (name in BUILTIN_TYPES or name in s.inputs or name in s.definitions
                or name in s.parameters or name in s.definition_names)

    def _Compare(self, node: ast.Compare, hint):
        left, right = self._pair(node.left, node.right)
        if left is None or right is None:
            return None
        op = _COMPARE_OP.get(str(node.op), str(node.op))
        lt, rt = left.type, right.type
        if not lt.same_shape(rt):
            self.report.report("E0302", node.op, action="compare", left=lt.describe(),
                               right=rt.describe(), label=f"{lt.describe()} {op} {rt.describe()}",
                               help=_unit_help(op, lt, rt))
            return None
        if op not in ("==", "!=") and lt.kind in (Kind.CHOICE, Kind.BOOLEAN, Kind.TEXT):
            self.report.report("E0303", node.op, expected="`==` or `!=`",
                               found=f"`{op}` between {lt.describe()} values")
            return None
        return ir.Compare(BOOLEAN, op, left, right)

    def _InSet(self, node: ast.InSet, hint):
        subject = self.check(node.subject)
        if subject is None:
            return None
        values = []
        for value_node in node.values:
            value = self.check(value_node, subject.type)
            if value is None:
                return None
            if not subject.type.same_shape(value.type):
                self.report.report("E0303", value_node, expected=subject.type.describe(),
                                   found=value.type.describe())
                return None
            values.append(value)
        result = ir.InSet(BOOLEAN, subject, tuple(values))
        return ir.Not(BOOLEAN, result) if node.negated else result

    def _boolean(self, node, hint) -> Optional[ir.Expr]:
        value = self.check(node, hint)
        if value is not None and value.type.kind != Kind.BOOLEAN:
            self.report.report("E0303", node, expected="a condition (true or false)",
                               found=value.type.describe())
            return None
        return value

    def _logic(self, node, hint):
        left = self._boolean(node.left, None)
        right = self._boolean(node.right, None)
        if left is None or right is None:
            return None
        return ir.Logic(BOOLEAN, "and" if isinstance(node, ast.AndOp) else "or", left, right)

    _AndOp = _OrOp = _logic

    def _NotOp(self, node, hint):
        operand = self._boolean(node.operand, None)
        return None if operand is None else ir.Not(BOOLEAN, operand)

    # ------------------------------------------------------------ conditionals
    def _unify(self, node_a, a: ir.Expr, node_b, b: ir.Expr) -> Optional[Type]:
        at, bt = a.type, b.type
        if not at.same_shape(bt):
            self.report.report("E0308", node_b, left=at.describe(), right=bt.describe())
            return None
        if at.kind == Kind.INTEGER and bt.kind == Kind.INTEGER:
            return INTEGER
        return at if at.kind != Kind.INTEGER else bt

    def _IfExpr(self, node: ast.IfExpr, hint):
        cond = self._boolean(node.cond, None)
        then = self.check(node.then, hint)
        otherwise = self.check(node.otherwise, then.type if then is not None else hint)
        if cond is None or then is None or otherwise is None:
            return None
        if isinstance(cond, ir.Const):
            self.report.report("W0202", node.cond, value="true" if cond.value else "false")
        result = self._unify(node.then, then, node.otherwise, otherwise)
        return None if result is None else ir.If(result, cond, then, otherwise)

    def _CaseExpr(self, node: ast.CaseExpr, hint):
        subject = self.check(node.subject) if node.subject is not None else None
        if node.subject is not None and subject is None:
            return None
        arms: list[tuple[ir.Expr, ir.Expr, object]] = []
        covered: set[str] = set()
        result_type: Optional[Type] = None
        ok = True
        for when in node.whens:
            conds = []
            for value_node in when.values:
                if subject is None:
                    cond = self._boolean(value_node, None)
                else:
                    cond = self.check(value_node, subject.type)
                    if cond is not None and not subject.type.same_shape(cond.type):
                        self.report.report("E0303", value_node, expected=subject.type.describe(),
                                           found=cond.type.describe())
                        cond = None
                if cond is None:
                    ok = False
                    continue
                if subject is not None and isinstance(cond, ir.Const) and subject.type.kind == Kind.CHOICE:
                    if cond.value in covered:
                        self.report.report("W0201", value_node)
                    covered.add(cond.value)
                conds.append(cond)
            result = self.check(when.result, result_type or hint)
            if result is None or not conds:
                ok = False
                continue
            if result_type is None:
                result_type = result.type
            elif self._unify(when.result, ir.Const(result_type, None), when.result, result) is None:
                ok = False
                continue
            else:
                result_type = self._unify(when.result, ir.Const(result_type, None), when.result, result)
            if subject is None:
                cond_expr = conds[0]
                for extra in conds[1:]:
                    cond_expr = ir.Logic(BOOLEAN, "or", cond_expr, extra)
            else:
                cond_expr = ir.InSet(BOOLEAN, subject, tuple(conds))
            arms.append((cond_expr, result, when))
        exhaustive = (subject is not None and subject.type.kind == Kind.CHOICE
                      and covered == set(subject.type.choices))
        otherwise = None
        if node.otherwise is not None:
            if exhaustive:
                self.report.report("W0201", node.otherwise, label="every value is covered above")
            otherwise = self.check(node.otherwise, result_type or hint)
            if otherwise is None:
                return None
            if result_type is not None:
                result_type = self._unify(node.otherwise, ir.Const(result_type, None), node.otherwise, otherwise)
                if result_type is None:
                    return None
        elif not ok:
            return None
        elif subject is None:
            self.report.report("E0313", node)
            return None
        elif not exhaustive:
            if subject.type.kind == Kind.CHOICE:
                missing = [c for c in subject.type.choices if c not in covered]
                self.report.report("E0312", node, missing=", ".join(f"`{m}`" for m in missing))
            else:
                self.report.report("E0316", node, kind=subject.type.describe())
            return None
        if not ok or result_type is None:
            return None
        # lower to nested ifs, last arm innermost; an exhaustive case's last arm is its else
        if otherwise is None:
            *arms, (_, otherwise, _) = arms
        expr = otherwise
        for cond_expr, result, _ in reversed(arms):
            expr = ir.If(result_type, cond_expr, _retype(result, result_type), _retype(expr, result_type))
        return _retype(expr, result_type)

    # ------------------------------------------------------------ lookups and calls
    def _Lookup(self, node: ast.Lookup, hint):
        table = node.table
        if not isinstance(table, ast.NameExpr) or str(table.name) not in self.scope.parameters:
            name = str(table.name) if isinstance(table, ast.NameExpr) else "this"
            if isinstance(table, ast.NameExpr) and (name in self.scope.failed):
                return None
            if isinstance(table, ast.NameExpr) and not self._is_variable(name):
                self.report.report("E0201", table, name=name, label="not defined",
                                   help=did_you_mean(name, self.scope.parameters))
                return None
            self.report.report("E0209", table, name=name)
            return None
        name = str(table.name)
        parameter = self.scope.parameters[name]
        self.uses.parameters.add(name)
        if not parameter.keys:
            self.report.report("E0409", node, problem=f"`{name}` is a single value, not a table: write `{name}` without brackets")
            return None
        if len(node.keys) != len(parameter.keys):
            self.report.report("E0407", node, name=name, expected=len(parameter.keys),
                               found=len(node.keys))
            return None
        keys = []
        for key_node, key_type in zip(node.keys, parameter.key_types):
            key = self.check(key_node, key_type)
            if key is None:
                return None
            if not key.type.same_shape(key_type):
                self.report.report("E0303", key_node, expected=key_type.describe(),
                                   found=key.type.describe())
                return None
            keys.append(key)
        self.uses.lookups.append(LookupSite(name, tuple(keys), node, self.leg_where))
        return ir.Lookup(parameter.type, name, tuple(keys))

    def _LegAggregate(self, node: ast.LegAggregate, hint):
        return legs.check_aggregate(self, node, hint)

    def _LegField(self, node: ast.LegField, hint):
        return legs.check_field(self, node)

    def _Call(self, node: ast.Call, hint):
        func = str(node.func)
        if func not in FUNCTIONS:
            self.report.report("E0203", node.func, name=func,
                               help=did_you_mean(func, FUNCTIONS) or
                               "the functions are " + ", ".join(FUNCTIONS))
            return None
        args = [self.check(a) for a in node.args]
        if any(a is None for a in args):
            return None
        if func in ("min", "max"):
            if len(args) < 2:
                self.report.report("E0306", node, func=func, expected="2 or more", found=len(args))
                return None
            result = args[0].type
            for arg_node, arg in zip(node.args[1:], args[1:]):
                if not arg.type.is_numeric or not result.is_numeric:
                    self.report.report("E0303", arg_node, expected="a number or quantity",
                                       found=arg.type.describe())
                    return None
                result = self._unify(node.args[0], ir.Const(result, None), arg_node, arg)
                if result is None:
                    return None
            return ir.MinMax(result, func, tuple(args))
        if func == "abs":
            if len(args) != 1:
                self.report.report("E0306", node, func=func, expected="1", found=len(args))
                return None
            if not args[0].type.is_numeric:
                self.report.report("E0303", node.args[0], expected="a number or quantity",
                                   found=args[0].type.describe())
                return None
            return ir.Abs(args[0].type, args[0])
        if func in ("round", "floor", "ceil"):
            return self._rounding(node, func, args)
        # date parts
        if len(args) != 1:
            self.report.report("E0306", node, func=func, expected="1", found=len(args))
            return None
        if func == "date" and args[0].type.kind == Kind.DATE:
            return args[0]  # a date's date is itself
        allowed = (Kind.DATETIME,) if func in ("hour", "date") else (Kind.DATE, Kind.DATETIME)
        if args[0].type.kind not in allowed:
            self.report.report("E0303", node.args[0],
                               expected="a datetime" if func in ("hour", "date") else "a date or datetime",
                               found=args[0].type.describe())
            return None
        if func == "date":  # the local date of an instant, in the methodology's zone
            return ir.DatePart(DATE, func, args[0])
        return ir.DatePart(INTEGER, func, args[0])

    def _rounding(self, node: ast.Call, func: str, args):
        if len(args) not in (1, 2):
            self.report.report("E0306", node, func=func, expected="1 or 2", found=len(args))
            return None
        value = args[0]
        if not value.type.is_numeric:
            self.report.report("E0303", node.args[0], expected="a number or quantity",
                               found=value.type.describe())
            return None
        if len(args) == 1:
            if value.type.dimension:
                self.report.report("E0307", node, func=func,
                                   help=f"say to what it is rounded, e.g. `{func}(x, 1 g)`, "
                                        f"or make it a number first, e.g. `{func}(x / 1 g)`")
                return None
            if value.type.kind == Kind.INTEGER:
                return value
            return ir.Round(INTEGER, func, value, 1.0)
        precision = args[1]
        if not isinstance(precision, ir.Const) or not precision.type.is_numeric:
            self.report.report("E0307", node.args[1], func=func)
            return None
        if precision.type.dimension != value.type.dimension:
            self.report.report("E0302", node.args[1], action=f"round to", left=value.type.describe(),
                               right=precision.type.describe())
            return None
        step = float(precision.value)
        if not step > 0:
            self.report.report("E0307", node.args[1], func=func)
            return None
        if not value.type.dimension and step == 1.0:
            return ir.Round(INTEGER, func, value, 1.0)
        return ir.Round(_num_type(value.type), func, value, step)


def ir_depth(expr: ir.Expr, limit: int) -> int:
    """How deep the lowered expression nests, counted without recursion; stops past ``limit``."""
    deepest = 0
    stack = [(expr, 1)]
    while stack:
        current, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            break
        for f in dataclasses.fields(current):
            value = getattr(current, f.name)
            for child in (value if isinstance(value, tuple) else (value,)):
                if dataclasses.is_dataclass(child) and not isinstance(child, Type):
                    stack.append((child, depth + 1))
    return deepest


def within_depth(expr: Optional[ir.Expr], node, report: Reporter) -> Optional[ir.Expr]:
    """The expression, or None (reported) when it lowers deeper than the parser allows.

    A `case` lowers to one `if` per arm and a `when` with many values to a chain of
    `or`s, so a flat source can make a deep IR; every consumer of the IR (hash,
    evaluators) walks it, and must not run out of stack.
    """
    if expr is not None and ir_depth(expr, MAX_DEPTH) > MAX_DEPTH:
        report.report("E0104", node, limit=MAX_DEPTH,
                      help="a `case` nests one level per `when`: a table (`parameter ... by`) "
                           "holds many values better")
        return None
    return expr


def _retype(expr: ir.Expr, t: Type) -> ir.Expr:
    """A branch of a conditional takes the conditional's unified type (int -> number)."""
    if expr.type == t or expr.type.kind != Kind.INTEGER or t.kind == Kind.INTEGER:
        return expr
    return ir.Arith(t, "*", expr, ir.Const(NUMBER, 1.0))


def _unit_help(op: str, lt: Type, rt: Type) -> str:
    if lt.is_numeric and rt.is_numeric and op in "+-<><=>===!=" and lt.dimension != rt.dimension:
        if not lt.dimension or not rt.dimension:
            return "a plain number needs a unit here, e.g. `2 km` rather than `2`"
        return "both sides must be the same kind of quantity; units convert automatically (g and kg, km and mile)"
    return ""


__all__ = ["ExpressionChecker", "Uses", "LookupSite", "within_depth", "ir_depth"]
