"""The evaluation plan: a methodology lowered for evaluation, the one thing both formula
backends are written from (engine/to_python.py and engine/to_c.py).

Decided here, once, so that no backend decides it again:
- the order of the steps: the period test, the activity test, input bounds, each
  `require` preceded by the definitions it needs, then the remaining definitions; the
  first step that fails is the record's outcome;
- every outcome that is not a credit, as an index into `Plan.reasons`;
- which expressions can reject a record (`rejects`) and with which reason;
- where values are checked for finiteness, converted to whole numbers and quantized to
  whole milligrams;
- the representation of every value (`rep`): how a backend holds it.

Representations:
  f    a binary64 float (a quantity, in SI)      i    a 64-bit whole number (wraps)
  b    a truth value                             t    a text or a choice's name
  day  a date, as days since 1970-01-01          dt   an instant, as UTC microseconds
Lazy nodes are `Logic` (and, or) and `If` (if, case): a backend evaluates only the
operand or branch taken, so a lookup in a branch not taken never rejects the record.
Every other node evaluates its operands left to right.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from dsl.ir import ast as ir

F, I, B, T, DAY, DT = "f", "i", "b", "t", "day", "dt"
NUMBERS = (F, I)


@dataclass(frozen=True)
class Const:
    rep: str
    value: Union[float, int, bool, str]
    rejects: bool = False
    local: Optional[int] = None  # an instant's local time (µs) in the methodology's zone


def ident(name: str) -> str:
    """An ASCII identifier for any methodology name (Chinese names included), for the
    generated Python and C alike."""
    if name.isidentifier() and name.isascii():
        return name
    return "u" + "".join(c if c.isalnum() and c.isascii() else f"_{ord(c):x}" for c in name)


@dataclass(frozen=True)
class Input:
    """An input or a built-in field (time, activity) of the record."""
    rep: str
    name: str
    rejects: bool = False


@dataclass(frozen=True)
class Ref:
    """A definition computed by an earlier step."""
    rep: str
    name: str
    rejects: bool = False


@dataclass(frozen=True)
class Day:
    """The local calendar day of the record's time, in the methodology's zone."""
    rep: str = I
    rejects: bool = False


@dataclass(frozen=True)
class Unary:
    rep: str
    op: str  # neg | abs | not
    operand: "Expr"
    rejects: bool = False
    overflow: Optional[int] = None  # an i result beyond int64 rejects with this reason


@dataclass(frozen=True)
class Arith:
    """+ - * on numbers (f if either operand is f, else i), / always f. A whole-number
    result beyond int64 rejects the record with `overflow` (NOT_FINITE), at the operation
    itself: the columnar paths hold whole numbers in int64 and must not wrap."""
    rep: str
    op: str
    left: "Expr"
    right: "Expr"
    rejects: bool = False
    overflow: Optional[int] = None


@dataclass(frozen=True)
class Compare:
    """Numbers compare as numbers (an i against an f as floats); text, truth values,
    days and instants only with their own kind."""
    rep: str
    op: str  # < <= == != >= >
    left: "Expr"
    right: "Expr"
    rejects: bool = False


@dataclass(frozen=True)
class Logic:
    rep: str
    op: str  # and | or (lazy)
    left: "Expr"
    right: "Expr"
    rejects: bool = False


@dataclass(frozen=True)
class InSet:
    rep: str
    operand: "Expr"
    values: tuple["Expr", ...]
    rejects: bool = False


@dataclass(frozen=True)
class If:
    rep: str
    cond: "Expr"
    then: "Expr"
    otherwise: "Expr"
    rejects: bool = False


@dataclass(frozen=True)
class MinMax:
    rep: str
    op: str  # min | max (numeric.minimum / maximum: nan propagates, ties give the second)
    args: tuple["Expr", ...]
    rejects: bool = False


@dataclass(frozen=True)
class Round:
    """numeric.round_to: snap(x / precision), then floor, ceil or half away, × precision."""
    rep: str
    mode: str  # round | floor | ceil
    operand: "Expr"
    precision: float
    rejects: bool = False


@dataclass(frozen=True)
class Elapsed:
    """end - start in seconds (f): of two days (× 86400) or two instants (/ 10⁶)."""
    rep: str
    end: "Expr"
    start: "Expr"
    rejects: bool = False


@dataclass(frozen=True)
class DateShift:
    """A date (day) moved by a duration (f, seconds): day ± floor(seconds / 86400), the
    quotient first checked to lie within ±10⁸ days and the result within the dates a
    record can hold (0001-01-01 … 9999-12-31), else the record is rejected with
    `overflow` (NOT_FINITE). Both backends do exactly these operations.

    With rep dt, an instant moved: utc ± floor(seconds × 10⁶) µs, the product first
    checked to lie within ±10¹⁷ µs and the result within FIRST_US … END_US (where every
    zone's table of offset changes is complete, engine/batch/timezones.py), else
    `overflow`; its local time is that instant's in the methodology's zone (C looks the
    offset up in the zone's table of changes, Python asks zoneinfo: the same offsets)."""
    rep: str
    op: str  # + | -
    date: "Expr"
    duration: "Expr"
    rejects: bool = True
    overflow: Optional[int] = None


FIRST_DAY, LAST_DAY = -719_162, 2_932_896  # 0001-01-01 and 9999-12-31, days since 1970
# a moved instant: 0001-01-03T00:00Z up to (not including) 2200-01-01T00:00Z, in UTC µs
FIRST_US, END_US = (-719_162 + 2) * 86_400_000_000, 84_006 * 86_400_000_000


@dataclass(frozen=True)
class DatePart:
    """year, month, day, weekday (1 = Monday), days_in_year (365 or 366) or hour of a day
    or of an instant's local time in the methodology's zone; `date` (rep day): an
    instant's local date."""
    rep: str
    part: str
    operand: "Expr"
    rejects: bool = False


@dataclass(frozen=True)
class Lookup:
    """A parameter's value (f) in the period in force at the record's local day.

    Without keys: the period's value (before the first period, the last one's: the
    checker makes that unreachable). With keys: a missing period rejects with
    `in_force`; a key the table does not list gives `default`, rejects with `missing`
    (a reason), or, where the checker proved every key listed (`impossible`), rejects
    with NO_VALUE and a message naming the key."""
    rep: str
    parameter: int  # index into Plan.parameters
    keys: tuple["Expr", ...]
    in_force: Optional[int] = None   # reason: no period in force (keyed tables)
    missing: Optional[int] = None    # reason: the key is not listed ("reject" policy)
    default: Optional[float] = None  # value of an unlisted key ("value" policy)
    impossible: bool = False
    rejects: bool = False


@dataclass(frozen=True)
class LegField:
    """A field of the leg an aggregate is at (aggregates do not nest: one leg at a time)."""
    rep: str
    group: str
    name: str
    rejects: bool = False


@dataclass(frozen=True)
class LegAggregate:
    """Over the legs of a record's group in their order: `count` (i) of those where
    `where` holds, or `sum` of `body` over them, from 0 (0.0 for f) adding left to right
    (f: binary64 additions, never a compensated sum; i: beyond int64 rejects with
    `overflow`). `where` is evaluated before `body`, and `body` only where it holds."""
    rep: str
    op: str  # sum | count
    group: str
    body: Optional["Expr"]
    where: Optional["Expr"]
    rejects: bool = False
    overflow: Optional[int] = None


LEGS = "legs"  # the rep of a group in Plan.inputs: a list of legs (dicts) per record

Expr = Union[Const, Input, Ref, Day, Unary, Arith, Compare, Logic, InSet, If, MinMax, Round,
             Elapsed, DateShift, DatePart, Lookup, LegField, LegAggregate]


# ---------------------------------------------------------------- steps
@dataclass(frozen=True)
class Check:
    """Rejects the record with `reason` unless `cond` holds."""
    kind: str  # period | activity | bound | require
    cond: Expr
    reason: int
    code: str = ""  # a require's code, for explanations
    line: int = 0


@dataclass(frozen=True)
class Define:
    """A let or an output. The value is computed (`expr`), then, in this order:
    - `not_finite`: a reason if the value is a float that must be finite;
    - `quantize`: a mass held as whole milligrams (numeric.whole_mg); beyond int64:
      `too_large`; the definition's value is then mg / 10⁶;
    - `whole`: a whole number computed as a float becomes an int64; beyond: `too_large`.
    `overridable`: the reduction, which a cap may replace by a smaller amount in mg
    before the definitions that follow it are computed again."""
    name: str
    kind: str  # let | output | counter
    rep: str   # of the value after this step
    expr: Expr
    type: object  # dsl.types.Type, for explanations (unit shown)
    not_finite: Optional[int] = None
    quantize: bool = False
    whole: bool = False
    too_large: Optional[int] = None
    overridable: bool = False
    line: int = 0


Step = Union[Check, Define]


@dataclass(frozen=True)
class Parameter:
    """A parameter as lookups see it: its periods' first days and values."""
    name: str
    starts: tuple[int, ...]  # first day of each period, days since 1970-01-01, ascending
    keyed: bool
    scalars: tuple[float, ...] = ()  # unkeyed: each period's value
    tables: tuple[tuple[tuple[tuple, float], ...], ...] = ()  # keyed: each period's entries
    source: Optional[ir.Parameter] = None  # for explanations: units, sources


@dataclass(frozen=True)
class CrossRecord:
    """The rules that judge a record against the account's other records, applied after
    the per-record steps in the order engine/cross_record.py (the reference) states:
    duplicate keys, overlaps, flags, bonuses, then caps in source order."""
    duplicates: tuple[ir.Duplicate, ...] = ()
    overlaps: tuple[ir.Overlap, ...] = ()
    flags: tuple[ir.Flag, ...] = ()
    bonuses: tuple[ir.Bonus, ...] = ()
    caps: tuple[ir.Cap, ...] = ()
    near_duplicates: tuple[ir.NearDuplicate, ...] = ()  # judged first (engine/channels.py)
    # history windows (engine/history.py): judged before the formulas, not after them,
    # but kept here because what they remember is part of the account's state
    histories: tuple[ir.History, ...] = ()
    # then the counters and rewards (engine/counters.py)
    counters: tuple[str, ...] = ()
    counter_units: tuple[str, ...] = ()
    counter_caps: tuple[ir.CounterCap, ...] = ()
    rewards: tuple[ir.Reward, ...] = ()

    @property
    def has_record_rules(self) -> bool:
        """Rules that judge records against each other (the counters aside)."""
        return bool(self.caps or self.overlaps or self.duplicates or self.bonuses or self.flags
                    or self.near_duplicates)

    @property
    def has_cross_record_rules(self) -> bool:
        """Anything that depends on the account's other records (counters included)."""
        return self.has_record_rules or bool(self.counters or self.rewards)

    @property
    def has_account_state(self) -> bool:
        """Anything a record is judged by that depends on the account's other records:
        the cross-record rules, counters and rewards, and history windows (which judge
        before the formulas). A path that splits the records up (Spark's Arrow batches)
        must bring each account's records together for any of them."""
        return self.has_cross_record_rules or bool(self.histories)


@dataclass(frozen=True)
class Plan:
    id: str
    timezone: str
    inputs: tuple[tuple[str, str], ...]  # (name, rep) of every field the steps read
    parameters: tuple[Parameter, ...]
    steps: tuple[Step, ...]
    masses: tuple[str, ...]   # the quantized mass outputs computed, in MASS_OUTPUTS order
    reasons: tuple[tuple[str, str, str], ...] = field(default=())  # (status, code, message)
    rules: CrossRecord = field(default_factory=CrossRecord)
    methodology: Optional[ir.Methodology] = field(default=None, repr=False, compare=False)
    # the counters' Define steps (kind "counter", whole numbers >= 0), in declaration
    # order: what each credited record adds to them, before the counter rules
    counters: tuple[str, ...] = ()

    @property
    def used_parameters(self) -> tuple[int, ...]:
        """Indexes of the parameters some step looks up."""
        found = set()
        for step in self.steps:
            for node in nodes(step.expr if isinstance(step, Define) else step.cond):
                if isinstance(node, Lookup):
                    found.add(node.parameter)
        return tuple(sorted(found))

    def define(self, name: str) -> Define:
        return next(s for s in self.steps if isinstance(s, Define) and s.name == name)


def children(e: Expr) -> tuple:
    """The operands of a node, left to right."""
    t = type(e)
    if t in (Unary, Round, DatePart):
        return (e.operand,)
    if t in (Arith, Compare, Logic):
        return (e.left, e.right)
    if t is InSet:
        return (e.operand,) + e.values
    if t is If:
        return (e.cond, e.then, e.otherwise)
    if t is MinMax:
        return e.args
    if t is Elapsed:
        return (e.end, e.start)
    if t is DateShift:
        return (e.date, e.duration)
    if t is Lookup:
        return e.keys
    if t is LegAggregate:
        return tuple(x for x in (e.where, e.body) if x is not None)
    return ()


def nodes(e: Expr):
    """Every node of an expression, the node before its operands."""
    stack = [e]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(children(node)))
