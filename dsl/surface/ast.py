"""The surface AST: one dataclass per grammar rule of dsl/grammar.lark.

lark's ``ast_utils.create_transformer`` maps each class here to the rule of the same
name in snake_case (``LetDef`` <- ``let_def``), so adding a rule means adding a class,
with no glue code. Classes that subclass ``list`` are the grammar's ``*_list`` rules.

Names, numbers and strings stay lark ``Token``s: they are ``str`` and carry their own
line and column, which the checker needs to put a caret under the exact name that is
wrong rather than under the whole statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from lark import Token, ast_utils
from lark.tree import Meta


class _Ast(ast_utils.Ast):
    pass


class _List(_Ast, ast_utils.AsList, list):
    """A variable-length part of a rule; it is a plain list of its children."""


class _Node(_Ast, ast_utils.WithMeta):
    meta: Meta


# ---------------------------------------------------------------- lists
class ItemList(_List): ...
class MetaList(_List): ...
class CiteDetailList(_List): ...
class NameList(_List): ...
class MethIdList(_List): ...
class RegionList(_List): ...
class InputOptionList(_List): ...
class PeriodList(_List): ...
class EntryList(_List): ...
class KeyTuple(_List): ...
class ExampleStepList(_List): ...
class FieldList(_List): ...
class ExpectationList(_List): ...
class ExprList(_List): ...
class WhenList(_List): ...
class GroupFieldList(_List): ...
class LegList(_List): ...


# ---------------------------------------------------------------- literals
@dataclass
class QuantityLiteral(_Node):
    meta: Meta
    sign: Optional[Token]
    number: Token
    unit: Token


@dataclass
class NumberLiteral(_Node):
    meta: Meta
    sign: Optional[Token]
    number: Token


@dataclass
class TextLiteral(_Node):
    meta: Meta
    text: Token


@dataclass
class DateLiteral(_Node):
    meta: Meta
    text: Token


@dataclass
class DatetimeLiteral(_Node):
    meta: Meta
    text: Token


@dataclass
class BoolLiteral(_Node):
    meta: Meta
    value: Token


@dataclass
class NameLiteral(_Node):
    meta: Meta
    name: Token


Literal = Union[QuantityLiteral, NumberLiteral, TextLiteral, DateLiteral,
                DatetimeLiteral, BoolLiteral, NameLiteral]


@dataclass
class SignedNumber(_Node):
    meta: Meta
    sign: Optional[Token]
    number: Token


# ---------------------------------------------------------------- header
@dataclass
class TitleField(_Node):
    meta: Meta
    lang: Token
    text: Token


@dataclass
class IssuerField(_Node):
    meta: Meta
    text: Token


@dataclass
class CiteDetail(_Node):
    meta: Meta
    key: Token
    text: Token


@dataclass
class CiteField(_Node):
    meta: Meta
    text: Token
    details: CiteDetailList


@dataclass
class CoversField(_Node):
    meta: Meta
    names: NameList
    regions: Optional["RegionList"]  # `in CN-HB, CN-BJ`: where it applies (all when none)


@dataclass
class DescriptionField(_Node):
    meta: Meta
    lang: Optional[Token]
    text: Token


@dataclass
class EffectiveField(_Node):
    meta: Meta
    start: Token
    until: Optional[Token]


@dataclass
class TimezoneField(_Node):
    meta: Meta
    zone: Token


@dataclass
class PrecedenceField(_Node):
    meta: Meta
    ids: MethIdList


MetaField = Union[TitleField, IssuerField, CiteField, CoversField, DescriptionField,
                  EffectiveField, TimezoneField, PrecedenceField]


@dataclass
class Header(_Node):
    meta: Meta
    id: Token
    title: Token
    version: Token
    fields: MetaList


# ---------------------------------------------------------------- inputs
@dataclass
class Unit(_Node):
    meta: Meta
    text: Token


@dataclass
class QuantityType(_Node):
    meta: Meta
    unit: Unit


@dataclass
class SimpleType(_Node):
    meta: Meta
    name: Token


@dataclass
class ChoiceOption(_Node):
    meta: Meta
    name: Token
    label: Optional[Token]


@dataclass
class ChoiceType(_Node, ast_utils.AsList):
    meta: Meta
    options: list[ChoiceOption]


TypeSpec = Union[QuantityType, SimpleType, ChoiceType]


@dataclass
class OptionalOption(_Node):
    meta: Meta


@dataclass
class DefaultOption(_Node):
    meta: Meta
    value: Literal


@dataclass
class BetweenOption(_Node):
    meta: Meta
    low: Literal
    high: Literal


@dataclass
class BoundOption(_Node):
    meta: Meta
    kind: Token  # "least" | "most"
    value: Literal


@dataclass
class LabelOption(_Node):
    meta: Meta
    text: Token


InputOption = Union[OptionalOption, DefaultOption, BetweenOption, BoundOption, LabelOption]


@dataclass
class InputDecl(_Node):
    meta: Meta
    names: NameList
    type: TypeSpec
    options: InputOptionList


@dataclass
class GroupField(_Node):
    meta: Meta
    name: Token
    type: TypeSpec
    options: InputOptionList


@dataclass
class GroupDecl(_Node):
    """`input legs: list { mode: choice {...}, distance: quantity [km] } at most 8`."""
    meta: Meta
    names: NameList
    fields: GroupFieldList
    options: InputOptionList


# ---------------------------------------------------------------- parameters
@dataclass
class SourceClause(_Node):
    meta: Meta
    text: Token
    tag: Optional[Token]


@dataclass
class PeriodHead(_Node):
    meta: Meta
    start: Optional[Token]
    source: Optional[SourceClause]


@dataclass
class ByClause(_Node):
    meta: Meta
    names: NameList


@dataclass
class OtherwiseReject(_Node):
    meta: Meta
    code: Token
    message: Token


@dataclass
class OtherwiseValue(_Node):
    meta: Meta
    value: SignedNumber


@dataclass
class KeyAtom(_Node):
    meta: Meta
    token: Token


@dataclass
class Entry(_Node):
    meta: Meta
    key: Union[KeyAtom, KeyTuple]
    value: SignedNumber


@dataclass
class PeriodValue(_Node):
    meta: Meta
    value: SignedNumber


@dataclass
class Period(_Node):
    meta: Meta
    start: Token
    source: Optional[SourceClause]
    body: Union[PeriodValue, EntryList]


@dataclass
class ScalarBody(_Node):
    meta: Meta
    value: SignedNumber
    head: Optional[PeriodHead]


@dataclass
class EntriesBody(_Node):
    meta: Meta
    entries: EntryList


@dataclass
class PeriodsBody(_Node):
    meta: Meta
    periods: PeriodList


@dataclass
class ParameterDecl(_Node):
    meta: Meta
    name: Token
    unit: Optional[Unit]
    by: Optional[ByClause]
    head: Optional[PeriodHead]
    otherwise: Union[OtherwiseReject, OtherwiseValue, None]
    body: Union[ScalarBody, EntriesBody, PeriodsBody]


# ---------------------------------------------------------------- expressions
@dataclass
class IfExpr(_Node):
    meta: Meta
    cond: "Expr"
    then: "Expr"
    otherwise: "Expr"


@dataclass
class OrOp(_Node):
    meta: Meta
    left: "Expr"
    right: "Expr"


@dataclass
class AndOp(_Node):
    meta: Meta
    left: "Expr"
    right: "Expr"


@dataclass
class NotOp(_Node):
    meta: Meta
    operand: "Expr"


@dataclass
class Compare(_Node):
    meta: Meta
    left: "Expr"
    op: Token
    right: "Expr"


@dataclass
class InSet(_Node):
    meta: Meta
    subject: "Expr"
    negated: Optional[Token]
    values: ExprList


@dataclass
class BinaryAdd(_Node):
    meta: Meta
    left: "Expr"
    op: Token
    right: "Expr"


@dataclass
class BinaryMul(_Node):
    meta: Meta
    left: "Expr"
    op: Token
    right: "Expr"


@dataclass
class Negate(_Node):
    meta: Meta
    operand: "Expr"


@dataclass
class Lookup(_Node):
    meta: Meta
    table: "Expr"
    keys: ExprList


@dataclass
class NumberExpr(_Node):
    meta: Meta
    number: Token
    unit: Optional[Token]


@dataclass
class NameExpr(_Node):
    meta: Meta
    name: Token


@dataclass
class TextExpr(_Node):
    meta: Meta
    text: Token


@dataclass
class DateExpr(_Node):
    meta: Meta
    text: Token


@dataclass
class DatetimeExpr(_Node):
    meta: Meta
    text: Token


@dataclass
class BoolExpr(_Node):
    meta: Meta
    value: Token


@dataclass
class Call(_Node):
    meta: Meta
    func: Token
    args: ExprList


@dataclass
class WhenClause(_Node):
    meta: Meta
    values: ExprList
    result: "Expr"


@dataclass
class CaseExpr(_Node):
    meta: Meta
    subject: Optional["Expr"]
    whens: WhenList
    otherwise: Optional["Expr"]


@dataclass
class LegAggregate(_Node):
    """`sum(body for leg in legs where cond)`, `count(leg for leg in legs ...)`."""
    meta: Meta
    func: Token
    body: "Expr"
    var: Token
    group: Token
    where: Optional["LegWhere"]


@dataclass
class LegWhere(_Node):
    meta: Meta
    cond: "Expr"


@dataclass
class LegField(_Node):
    """`leg.distance`: a field of the leg an aggregate is going over."""
    meta: Meta
    var: Token
    field: Token


Expr = Union[IfExpr, OrOp, AndOp, NotOp, Compare, InSet, BinaryAdd, BinaryMul, Negate,
             Lookup, NumberExpr, NameExpr, TextExpr, DateExpr, DatetimeExpr, BoolExpr,
             Call, CaseExpr, LegAggregate, LegField]


# ---------------------------------------------------------------- definitions and rules
@dataclass
class LetDef(_Node):
    meta: Meta
    name: Token
    unit: Optional[Unit]
    expr: Expr


@dataclass
class OutputDef(_Node):
    meta: Meta
    name: Token  # baseline | project | leakage | reduction | points
    unit: Optional[Unit]
    expr: Expr


@dataclass
class RequireStmt(_Node):
    meta: Meta
    cond: Expr
    code: Token
    message: Token


@dataclass
class CapRule(_Node):
    meta: Meta
    target: Token  # reduction | points
    limit: Literal
    period: Token  # day | week | month | year
    zone: Optional[Token]


@dataclass
class CounterDef(_Node):
    meta: Meta
    name: Token
    unit: Optional[Unit]
    expr: Expr


@dataclass
class CounterCapRule(_Node):
    meta: Meta
    counter: Token
    limit: Literal
    period: Token  # day | week | month | year
    zone: Optional[Token]


@dataclass
class RewardRule(_Node):
    meta: Meta
    name: Token
    every: Token   # NUMBER: how many of the source make one reward
    source: Token  # `points` or a counter
    worth: Literal


@dataclass
class OverlapRule(_Node):
    meta: Meta
    start: Token
    end: Token
    code: Token
    message: Token


@dataclass
class DuplicateRule(_Node):
    meta: Meta
    keys: NameList
    code: Token
    message: Token


@dataclass
class DupWhere(_Node):
    meta: Meta
    cond: Expr


@dataclass
class DupArrival(_Node):
    meta: Meta
    name: Token


@dataclass
class NearDuplicateRule(_Node):
    """`forbid duplicate k1, t within 5 min per account [where c] [keep first by a] else ...`"""
    meta: Meta
    keys: NameList
    window: Literal
    where: Optional[DupWhere]
    arrival: Optional[DupArrival]
    code: Token
    message: Token


@dataclass
class ConditionalDuplicateRule(_Node):
    """`forbid duplicate k per account where c [keep first by a] else ...`"""
    meta: Meta
    keys: NameList
    where: DupWhere
    arrival: Optional[DupArrival]
    code: Token
    message: Token

    window = None


@dataclass
class BonusRule(_Node):
    meta: Meta
    points: Token
    ordinal: Token
    window: Literal


@dataclass
class FlagRule(_Node):
    meta: Meta
    count: Token
    window: Literal
    code: Token
    message: Token


# ---------------------------------------------------------------- history windows
@dataclass
class ShortReject(_Node):
    meta: Meta
    code: Token
    message: Token


@dataclass
class ShortPartial(_Node):
    meta: Meta


@dataclass
class ShortValue(_Node):
    meta: Meta
    value: Literal


@dataclass
class HistoryDef(_Node):
    """history NAME = AGG SUBJECT over the (previous|last) N (days|records) otherwise ..."""
    meta: Meta
    name: Token
    aggregate: Token
    subject: Token
    side: Token
    size: Token
    unit: Token
    short: Union[ShortReject, ShortPartial, ShortValue]


# ---------------------------------------------------------------- examples
@dataclass
class Field(_Node):
    meta: Meta
    name: Token
    value: Literal


@dataclass
class Record(_Node):
    meta: Meta
    fields: FieldList


@dataclass
class ExpectValue(_Node):
    meta: Meta
    output: Token
    value: Literal


@dataclass
class ExpectRejected(_Node):
    meta: Meta
    code: Token


@dataclass
class ExpectStatus(_Node):
    meta: Meta
    status: Token  # credited | capped | not applicable


@dataclass
class ExpectDuplicate(_Node):
    meta: Meta
    code: Optional[Token]


@dataclass
class ExpectFlagged(_Node):
    meta: Meta
    code: Token


@dataclass
class ExpectBonus(_Node):
    meta: Meta
    points: Token


@dataclass
class Decimals(_Node):
    meta: Meta
    count: Token


@dataclass
class ExpectRounded(_Node):
    """`reduction 12.35 kg to 2 decimals`"""
    meta: Meta
    output: Token
    value: Literal
    decimals: Decimals


@dataclass
class ExpectNamed(_Node):
    """`car_factor 271.82 g/km [to 2 decimals]`: any let or output by name."""
    meta: Meta
    name: Token
    value: Literal
    decimals: Optional[Decimals]


@dataclass
class ExpectTotal(_Node):
    """`total points 935`: the account's total after this record of the sequence."""
    meta: Meta
    output: Token
    value: Literal
    decimals: Optional[Decimals]


Expectation = Union[ExpectValue, ExpectRejected, ExpectStatus, ExpectDuplicate,
                    ExpectFlagged, ExpectBonus, ExpectRounded, ExpectNamed, ExpectTotal]


@dataclass
class ExampleStep(_Node):
    meta: Meta
    record: Record
    expectations: ExpectationList


@dataclass
class SingleExample(_Node):
    meta: Meta
    title: Token
    step: ExampleStep

    @property
    def steps(self) -> list[ExampleStep]:
        return [self.step]


@dataclass
class SequenceExample(_Node):
    meta: Meta
    title: Token
    steps: ExampleStepList


Item = Union[InputDecl, GroupDecl, ParameterDecl, LetDef, OutputDef, RequireStmt, CapRule,
             OverlapRule, DuplicateRule, NearDuplicateRule, ConditionalDuplicateRule, BonusRule, FlagRule,
             HistoryDef, SingleExample, SequenceExample]


@dataclass
class Module(_Ast):
    """A whole file. Built by the parser from the header and the items that parsed."""
    header: Optional[Header]
    items: ItemList
