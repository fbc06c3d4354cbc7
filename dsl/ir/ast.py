"""The typed IR: what the checker produces and every evaluator consumes.

Plain frozen data, no Python callables, so that the scalar evaluator, the columnar
evaluator and the rules engine all read the same thing, and so that its canonical JSON
(dsl/ir/printer.py) can be hashed into the content hash the registry binds votes to.

Run-time values (the contract every evaluator implements):
- quantity: binary64 float in the coherent SI unit of its dimension (kg, m, s, J ...);
  unit conversions were folded into constants at compile time.
- integer: a whole number (int64); boolean: bool; text: str; choice: the value's name.
- date: a calendar date; datetime: an instant (UTC, microsecond precision).
- The outputs baseline, project, leakage and reduction are masses quantized to whole
  milligrams (round half away from zero) as soon as they are computed; expressions that
  refer to them see the quantized value. points is a whole number.

Rounding (``Round`` and the mg quantization): q = x / precision; if q is within a relative
2**-48 of a multiple of 0.5 it is snapped to it (so 0.3 / 0.1 counts as 3, not
2.9999999999999996); then floor, ceil, or round half away from zero; then q × precision.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Optional, Union

from ..types import Type
from ..zones import DEFAULT_TIMEZONE

Value = Union[float, int, bool, str, dt.date, dt.datetime, None]

SNAP_TOLERANCE = 2.0 ** -48  # 16 to 32 ulps of the value: a window that stays below a
# thousandth of a milligram for masses up to 10^12 mg (2**-40 was a quarter of a mg there)
MG_PER_KG = 1_000_000


# ---------------------------------------------------------------- expressions
@dataclass(frozen=True)
class Const:
    type: Type
    value: Value


@dataclass(frozen=True)
class Input:
    type: Type
    name: str


@dataclass(frozen=True)
class Ref:
    """A let or an output, evaluated once per record."""
    type: Type
    name: str


@dataclass(frozen=True)
class Negate:
    type: Type
    operand: "Expr"


@dataclass(frozen=True)
class Arith:
    type: Type
    op: str  # + - * /
    left: "Expr"
    right: "Expr"


@dataclass(frozen=True)
class Elapsed:
    """end - start of two dates or datetimes, in seconds."""
    type: Type
    end: "Expr"
    start: "Expr"


@dataclass(frozen=True)
class Compare:
    type: Type
    op: str  # < <= == != >= >
    left: "Expr"
    right: "Expr"


@dataclass(frozen=True)
class Logic:
    type: Type
    op: str  # and | or
    left: "Expr"
    right: "Expr"


@dataclass(frozen=True)
class Not:
    type: Type
    operand: "Expr"


@dataclass(frozen=True)
class InSet:
    type: Type
    operand: "Expr"
    values: tuple["Expr", ...]


@dataclass(frozen=True)
class If:
    type: Type
    cond: "Expr"
    then: "Expr"
    otherwise: "Expr"


@dataclass(frozen=True)
class MinMax:
    type: Type
    op: str  # min | max
    args: tuple["Expr", ...]


@dataclass(frozen=True)
class Abs:
    type: Type
    operand: "Expr"


@dataclass(frozen=True)
class Round:
    type: Type
    mode: str  # round (half away from zero) | floor | ceil
    operand: "Expr"
    precision: float  # in SI; 1.0 for a whole number


@dataclass(frozen=True)
class DatePart:
    """year, month, day, hour, weekday (1 = Monday) of a date or datetime, in the
    methodology's time zone."""
    type: Type
    part: str
    operand: "Expr"


@dataclass(frozen=True)
class Lookup:
    """The value of a parameter in force at the record's date, at the given keys."""
    type: Type
    parameter: str
    keys: tuple["Expr", ...]


@dataclass(frozen=True)
class LegField:
    """A field of the leg an aggregate is going over (`leg.distance`)."""
    type: Type
    group: str
    name: str


@dataclass(frozen=True)
class LegAggregate:
    """sum (of `body`) or count of the legs of a record's group for which `where` holds
    (every leg without one), in the legs' order. An empty sum is 0 of the body's type."""
    type: Type
    op: str  # sum | count
    group: str
    body: Optional["Expr"]  # None for count
    where: Optional["Expr"] = None


Expr = Union[Const, Input, Ref, Negate, Arith, Elapsed, Compare, Logic, Not, InSet, If,
             MinMax, Abs, Round, DatePart, Lookup, LegField, LegAggregate]


# ---------------------------------------------------------------- declarations
@dataclass(frozen=True)
class Citation:
    text: str
    details: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Metadata:
    id: str
    title: str
    version: str
    titles: tuple[tuple[str, str], ...] = ()  # (lang, title) besides the main title
    issuer: str = ""
    citations: tuple[Citation, ...] = ()
    covers: tuple[str, ...] = ()
    descriptions: tuple[tuple[str, str], ...] = ()
    effective_from: Optional[dt.date] = None
    effective_until: Optional[dt.date] = None
    timezone: str = DEFAULT_TIMEZONE
    precedes: tuple[str, ...] = ()
    # where it applies (`covers ... in CN-HB`): ISO 3166 codes with `.Place` parts; none:
    # everywhere. Left out of the content hash while empty (dsl/ir/printer.py)
    regions: tuple[str, ...] = ()


@dataclass(frozen=True)
class InputSpec:
    name: str
    type: Type
    required: bool = True
    default: Value = None
    low: Value = None  # inclusive bounds, in the run-time representation
    high: Value = None
    label: str = ""
    choice_labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Group:
    """A repeated group inside a record (the legs of a trip): each field is declared as
    an input is; `low`/`high` bound how many legs a record may carry."""
    name: str
    fields: tuple[InputSpec, ...]
    low: Optional[int] = None
    high: Optional[int] = None
    label: str = ""

    def field(self, name: str) -> InputSpec:
        return next(f for f in self.fields if f.name == name)


@dataclass(frozen=True)
class Source:
    text: str
    tag: str = ""  # SRC | DER | ASM | MEM


@dataclass(frozen=True)
class Period:
    start: dt.date
    source: Source
    scalar: Optional[float] = None  # SI
    entries: tuple[tuple[tuple[Value, ...], float], ...] = ()  # (key tuple, SI value)
    written: tuple[str, ...] = ()  # the values as written, for documents and explanations


@dataclass(frozen=True)
class Missing:
    """What a lookup of a key the table does not list gives."""
    kind: str  # "reject" | "value" | "impossible" (the checker proved every key is listed)
    code: str = ""
    message: str = ""
    value: Optional[float] = None


@dataclass(frozen=True)
class Parameter:
    name: str
    type: Type
    keys: tuple[str, ...] = ()
    key_types: tuple[Type, ...] = ()
    periods: tuple[Period, ...] = ()
    missing: Missing = field(default_factory=lambda: Missing("impossible"))


@dataclass(frozen=True)
class Definition:
    name: str
    kind: str  # let | output
    type: Type
    expr: Expr
    quantized: bool = False  # an output mass, held as whole milligrams
    line: int = 0


@dataclass(frozen=True)
class Require:
    cond: Expr
    code: str
    message: str
    line: int = 0


# ---------------------------------------------------------------- cross-record rules
@dataclass(frozen=True)
class Cap:
    target: str  # reduction | points
    limit: int  # mg for reduction, points for points
    period: str  # day | week | month | year
    timezone: str


@dataclass(frozen=True)
class Overlap:
    start: str
    end: str
    code: str
    message: str


@dataclass(frozen=True)
class Duplicate:
    keys: tuple[str, ...]
    code: str
    message: str


@dataclass(frozen=True)
class NearDuplicate:
    """One real event reported more than once, perhaps through different channels whose
    fields differ slightly (engine/channels.py): records of an account whose `keys` are
    equal and whose `near` datetimes are at most `window_us` apart (0: equal) are one
    event; only records for which `when` holds take part: (input, values, allowed?) —
    the input's value is (allowed) or is not (not allowed) one of `values`. The first
    record to arrive (by the `arrival` input when given, else the canonical order) is the
    event; the others are duplicates of it."""
    keys: tuple[str, ...]
    near: Optional[str]
    window_us: int
    when: Optional[tuple[str, tuple, bool]]
    arrival: Optional[str]
    code: str
    message: str


@dataclass(frozen=True)
class Bonus:
    points: int
    ordinal: int
    window_seconds: int


@dataclass(frozen=True)
class Flag:
    count: int
    window_seconds: int
    code: str
    message: str


@dataclass(frozen=True)
class Counter:
    """A named counter: what each credited record adds to it (a whole number of `unit`),
    summed per account (engine/counters.py)."""
    name: str
    unit: str  # as written ("" for a plain count)
    expr: Expr
    line: int = 0


@dataclass(frozen=True)
class CounterCap:
    counter: str
    limit: int  # whole units of the counter
    period: str  # day | week | month | year
    timezone: str


@dataclass(frozen=True)
class Reward:
    """Every `every` accumulated units of `source` (`points` or a counter) give one
    `name`, worth `worth` `unit` each; the remainder stays on the account."""
    name: str
    every: int
    source: str
    worth: str  # the decimal as written
    unit: str


@dataclass(frozen=True)
class History:
    """`history NAME = AGG SUBJECT over the (previous|last) SIZE (days|records)
    otherwise ...`: an aggregate of an input over the account's own earlier records
    (engine/history.py evaluates it; docs/language.md §9.6 says what it means).

    Formulas refer to it by its name as an `Input` of type `type`: its value is given to
    the per-record formulas beside the record's own inputs."""
    name: str
    type: Type
    aggregate: str  # mean | sum | count | min | max
    subject: str    # a numeric input
    side: str       # previous (the current day or record excluded) | last (included)
    size: int       # days or records, >= 1
    unit: str       # days | records
    short: str      # reject | partial | value: what a history shorter than the window gives
    timezone: str   # the methodology's: calendar days are its local days
    code: str = ""
    message: str = ""
    value: Value = None  # `otherwise VALUE`, in the run-time representation
    line: int = 0


# ---------------------------------------------------------------- examples
@dataclass(frozen=True)
class ValueCheck:
    """An example's expectation on a named value (dsl/check/expectations.py): a
    definition (`let` or output) of the record, or the account's total of an output
    after it, compared by engine/expectations.py: with `decimals`, the computed value in
    `unit` rounded half away from zero to that many decimals equals the written one;
    without, exactly (the float nearest the written value; whole mg for a mass output)."""
    kind: str  # definition | total
    name: str
    value: Value  # as written: a decimal number's text, a whole number, true/false, a name
    unit: str = ""
    decimals: Optional[int] = None


@dataclass(frozen=True)
class Expected:
    status: str = "credited"  # credited | rejected | capped | duplicate | not_applicable
    code: str = ""
    outputs: tuple[tuple[str, Value], ...] = ()  # mg for masses, whole number for points
    flags: tuple[str, ...] = ()
    bonus: Optional[int] = None
    status_given: bool = False
    checks: tuple[ValueCheck, ...] = ()  # named values and totals (left out of hashes while empty)


@dataclass(frozen=True)
class ExampleStep:
    record: tuple[tuple[str, Value], ...]
    expected: Expected
    line: int = 0


@dataclass(frozen=True)
class Example:
    title: str
    steps: tuple[ExampleStep, ...]
    line: int = 0


@dataclass(frozen=True)
class Methodology:
    metadata: Metadata
    inputs: tuple[InputSpec, ...]
    parameters: tuple[Parameter, ...]
    definitions: tuple[Definition, ...]  # in evaluation order (dependencies first)
    requires: tuple[Require, ...]
    caps: tuple[Cap, ...] = ()
    overlaps: tuple[Overlap, ...] = ()
    duplicates: tuple[Duplicate, ...] = ()
    bonuses: tuple[Bonus, ...] = ()
    flags: tuple[Flag, ...] = ()
    examples: tuple[Example, ...] = ()
    # counters and rewards (engine/counters.py); empty ones are left out of the content
    # hash (dsl/ir/printer.py), so the methodologies written before them keep theirs
    counters: tuple[Counter, ...] = ()
    counter_caps: tuple[CounterCap, ...] = ()
    rewards: tuple[Reward, ...] = ()
    histories: tuple[History, ...] = ()
    groups: tuple[Group, ...] = ()  # repeated groups (legs) of a record
    near_duplicates: tuple[NearDuplicate, ...] = ()  # one event through several channels

    def input(self, name: str) -> InputSpec:
        return next(i for i in self.inputs if i.name == name)

    def parameter(self, name: str) -> Parameter:
        return next(p for p in self.parameters if p.name == name)

    def definition(self, name: str) -> Definition:
        return next(d for d in self.definitions if d.name == name)

    @property
    def outputs(self) -> tuple[Definition, ...]:
        return tuple(d for d in self.definitions if d.kind == "output")

    @property
    def has_cross_record_rules(self) -> bool:
        return bool(self.caps or self.overlaps or self.duplicates or self.bonuses or self.flags
                    or self.near_duplicates)


BUILTIN_FIELDS = ("id", "account", "time", "activity")
OUTPUT_NAMES = ("baseline", "project", "leakage", "reduction", "points")
MASS_OUTPUTS = ("baseline", "project", "leakage", "reduction")
