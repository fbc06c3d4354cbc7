"""The per-record formulas of a methodology as one C function over the rows: a fused kernel.

Why: program.py evaluates a formula as NumPy operations, one pass over memory each. For
a small methodology that is some forty passes per chunk, and they were most of the batch
path's time (about 45 ns a record against the 20 ns of a hand-written Polars expression
for the whole calculation). Generated C does every step of a record in registers.

What it computes: exactly what program.py computes (and so engine/scalar.py), row by
row in the scalar path's order (period, activity, input bounds, then each `require`
preceded by the definitions it needs, then the other definitions; the first failure is
the outcome). The numbers are the same IEEE-754 operations in the same order: C doubles
on x86-64 and AArch64 are IEEE binary64, the compiler is told not to fuse a multiply
and an add (-ffp-contract=off) nor to assume anything fast-math assumes; min/max,
floor/ceil, the snap and the mg rounding are written out as engine/numeric.py writes
them; int64 arithmetic wraps as NumPy's does; a float too large for int64 becomes
INT64_MIN, as NumPy's cast gives on x86-64.

What stays in NumPy: what needs the time zone's table or Python values, computed per
call by program.py's own code and passed in: the zone's offset (usually one for the
chunk), each parameter's period in force, date parts, the codes of number keys, and the
maps from a column's labels to table keys. Lookups themselves (the dense tables of
lookups.py), the local day and the activity check run in C. A lookup's rejection happens
where the record's evaluation reaches it (C's && || ?: are lazy, as the scalar path is).

What is not compiled (`Unsupported`; program.py runs instead): text or choice values
other than compared with a constant, lookups whose keys could reject, and any IR node
this module does not know. Rows a lookup without a value fails for a key the checker
proved impossible are handed back to program.py, which writes the message naming the key.

The C source is a pure function of the methodology and the column types; compiling and
loading it is the caller's (`BatchEngine(..., kernels=...)`, tanpu/kernels.py), so the
engine itself never runs a compiler or writes a file.
"""

from __future__ import annotations

import ctypes
import math
import threading
from pathlib import Path
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Optional

import numpy as np
import polars as pl

from dsl.ir import ast as ir
from dsl.types import Kind

from .. import records
from ..scalar import _ident
from .program import Outcome, Program, _Run
from .timezones import DAY_US
from .values import Cat

# returned by a kernel in `reason` for a row program.py must redo (an "impossible" key)
REDO = -1
MASSES = ir.MASS_OUTPUTS


class Unsupported(Exception):
    """The methodology uses something the kernel does not compile."""


@dataclass
class Arg:
    """One array the kernel reads, in the order of its `void **` argument."""

    # per row: input, period, keycodes (number keys), lookup_value (no keys), leaf, offset;
    # tables: dense, present (a parameter's), keymap (label -> key code), covered (activity)
    kind: str
    ctype: str        # d (double), i (int64), b (one byte), c (int32 code)
    node: Any = None  # an input or parameter name, an IR node, or (lookup id, key, input)


@dataclass
class KernelSource:
    text: str
    args: list[Arg]
    codes: list[tuple[str, str]]  # (input, label): int32 codes passed per call
    masses: list[str]             # the quantized mass outputs written, in order
    nodes: dict[int, Any]         # id -> the lookups compiled
    redo: bool                    # whether a row can come back as REDO


_C_TYPES = {"d": "double", "i": "int64_t", "b": "uint8_t", "c": "int32_t"}

PRELUDE = (Path(__file__).resolve().parent.parent / "native" / "numeric.h").read_text(encoding="utf-8")


def _float(value: float) -> str:
    if math.isnan(value):
        return "NAN"
    if math.isinf(value):
        return "INFINITY" if value > 0 else "(-INFINITY)"
    return f"({value.hex()})"


def _promote(a: str, b: str) -> str:
    if a not in "id" or b not in "id":
        raise Unsupported(f"arithmetic on {a}/{b} values")
    return "i" if a == b == "i" else "d"


class _Gen:
    def __init__(self, program: Program, types: dict[str, str]):
        self.p = program
        self.m = program.m
        self.types = types
        self.args: list[Arg] = []
        self.arg_index: dict[Any, int] = {}
        self.codes: list[tuple[str, str]] = []
        self.lines: list[str] = []
        self.defined: dict[str, str] = {}  # definition -> ctype
        self.nodes: dict[int, Any] = {}
        self.redo = False
        self.temps = 0

    # ------------------------------------------------------------ arguments
    def pointer(self, kind: str, ctype: str, node=None) -> str:
        """The name of an array argument (added once per kind and node)."""
        key = (kind, node if isinstance(node, (str, tuple)) else id(node))
        index = self.arg_index.get(key)
        if index is None:
            index = self.arg_index[key] = len(self.args)
            self.args.append(Arg(kind, ctype, node))
        return f"a{index}"

    def arg(self, kind: str, ctype: str, node=None) -> str:
        """The row's value of a per-row argument: an array, or one value for every row
        (its mask M is then 0 instead of all ones: no array of n copies is made)."""
        name = self.pointer(kind, ctype, node)
        return f"{name}[i & m{name[1:]}]"

    def code_of(self, name: str, label: str) -> str:
        if (name, label) not in self.codes:
            self.codes.append((name, label))
        return f"K[{self.codes.index((name, label))}]"

    def temp(self) -> str:
        self.temps += 1
        return f"_t{self.temps}"

    def emit(self, line: str, depth: int = 2):
        self.lines.append("    " * depth + line)

    # ------------------------------------------------------------ expressions
    def may_reject(self, e) -> bool:
        return self.p.may_reject(e)

    def expr(self, e) -> tuple[str, str]:
        """(C expression, ctype) of an IR expression."""
        t = type(e)
        if t is ir.Const:
            value = records.runtime_value(e.value)
            if isinstance(value, bool):
                return ("1" if value else "0"), "b"
            if isinstance(value, int):
                if not -2 ** 63 <= value < 2 ** 63:
                    raise Unsupported("a whole number beyond int64")
                return f"INT64_C({value})", "i"
            if isinstance(value, float):
                return _float(value), "d"
            raise Unsupported(f"a {type(value).__name__} constant outside a comparison")
        if t is ir.Input:
            ctype = self.types.get(e.name)
            if ctype is None or ctype == "c":
                raise Unsupported(f"`{e.name}` as a value")
            return self.arg("input", ctype, e.name), ctype
        if t is ir.Ref:
            ctype = self.defined.get(e.name)
            if ctype is None:
                raise Unsupported(f"`{e.name}` is not a number or a truth value")
            return f"d_{_ident(e.name)}", ctype
        if t is ir.Arith:
            (a, ta), (b, tb) = self.pair(e.left, e.right)
            if e.op == "/":
                _promote(ta, tb)
                return f"((double)({a}) / (double)({b}))", "d"
            ctype = _promote(ta, tb)
            if ctype == "i":
                return f"t_{ {'+': 'add', '-': 'sub', '*': 'mul'}[e.op]}({a}, {b})", "i"
            return f"((double)({a}) {e.op} (double)({b}))", "d"
        if t is ir.Negate:
            return self.unary(e.operand, "t_neg({})", "(-({}))")
        if t is ir.Compare:
            return self.compare(e.op, e.left, e.right), "b"
        if t is ir.Logic:
            a, ta = self.expr(e.left)  # && and || are sequenced and lazy in C
            b, tb = self.expr(e.right)
            if ta != "b" or tb != "b":
                raise Unsupported("logic on non-truth values")
            return f"(({a}) {'&&' if e.op == 'and' else '||'} ({b}))", "b"
        if t is ir.Not:
            a, ta = self.expr(e.operand)
            if ta != "b":
                raise Unsupported("not of a non-truth value")
            return f"(!({a}))", "b"
        if t is ir.InSet:
            return self.in_set(e), "b"
        if t is ir.If:
            c, tc = self.expr(e.cond)
            a, ta = self.expr(e.then)
            b, tb = self.expr(e.otherwise)
            if tc != "b":
                raise Unsupported("a condition that is not a truth value")
            if ta == tb:
                return f"(({c}) ? ({a}) : ({b}))", ta
            ctype = _promote(ta, tb)
            return f"(({c}) ? (double)({a}) : (double)({b}))", ctype
        if t is ir.MinMax:
            return self.min_max(e)
        if t is ir.Abs:
            return self.unary(e.operand, "t_iabs({})", "fabs({})")
        if t is ir.Round:
            return self.rounding(e), "d"
        if t is ir.Elapsed:
            (end, te), (start, ts) = self.pair(e.end, e.start)
            if te != "i" or ts != "i":
                raise Unsupported("elapsed between non-integer times")
            if e.end.type.kind == Kind.DATE:
                return f"((double)t_sub({end}, {start}) * 86400.0)", "d"
            return f"((double)t_sub({end}, {start}) / 1000000.0)", "d"
        if t is ir.DatePart:
            if self.may_reject(e.operand):
                raise Unsupported("a date part of a value that can reject")
            return self.arg("leaf", "i", e), "i"
        if t is ir.Lookup:
            return self.lookup(e), "d"
        raise Unsupported(f"IR node {t.__name__}")

    def unary(self, operand, on_int: str, on_double: str) -> tuple[str, str]:
        """A one-operand number operation, with int64's or double's C form."""
        a, ta = self.expr(operand)
        if ta not in "id":
            raise Unsupported("a number operation on a non-number")
        return (on_int if ta == "i" else on_double).format(a), ta

    def pair(self, left, right) -> tuple[tuple[str, str], tuple[str, str]]:
        """Both operands of a binary node. C leaves the order of operands open, and where
        both could reject, the first rejection must be the scalar path's (the left one's):
        such a node stays with program.py."""
        if self.may_reject(left) and self.may_reject(right):
            raise Unsupported("two operands that can both reject")
        return self.expr(left), self.expr(right)

    def compare(self, op: str, left, right) -> str:
        lt, rt = left.type.kind, right.type.kind
        if lt in (Kind.CHOICE, Kind.TEXT) or rt in (Kind.CHOICE, Kind.TEXT):
            if op not in ("==", "!="):
                raise Unsupported("ordering text")
            if isinstance(left, ir.Input) and isinstance(right, ir.Const):
                name, label = left.name, records.runtime_value(right.value)
            elif isinstance(right, ir.Input) and isinstance(left, ir.Const):
                name, label = right.name, records.runtime_value(left.value)
            else:
                raise Unsupported("text compared with text other than a constant")
            if self.types.get(name) != "c" or not isinstance(label, str):
                raise Unsupported("text comparison")
            codes = self.arg("input", "c", name)
            return f"({codes} {'==' if op == '==' else '!='} {self.code_of(name, label)})"
        (a, ta), (b, tb) = self.pair(left, right)
        if ta == "c" or tb == "c":
            raise Unsupported("comparing codes")
        if ta != tb:
            a, b = f"(double)({a})", f"(double)({b})"
        return f"(({a}) {op} ({b}))"

    def in_set(self, e: ir.InSet) -> str:
        operand = e.operand
        if operand.type.kind in (Kind.CHOICE, Kind.TEXT):
            if not isinstance(operand, ir.Input) or self.types.get(operand.name) != "c":
                raise Unsupported("a set test of computed text")
            codes = self.arg("input", "c", operand.name)
            labels = []
            for v in e.values:
                label = records.runtime_value(v.value) if isinstance(v, ir.Const) else None
                if not isinstance(label, str):
                    raise Unsupported("a set of non-constant text")
                labels.append(label)
            return "(" + " || ".join(f"({codes} == {self.code_of(operand.name, label)})"
                                     for label in labels) + ")"
        a, ta = self.expr(operand)
        if self.may_reject(operand) or any(self.may_reject(v) for v in e.values):
            raise Unsupported("a set test that can reject")
        x = self.temp()
        tests = []
        for v in e.values:
            b, tb = self.expr(v)
            if tb == "c":
                raise Unsupported("a set of codes")
            tests.append(f"({x} == ({b}))" if tb == ta else f"((double){x} == (double)({b}))")
        return f"({{ {_C_TYPES[ta]} {x} = {a}; ({' || '.join(tests)}); }})"

    def min_max(self, e: ir.MinMax) -> tuple[str, str]:
        if sum(self.may_reject(arg) for arg in e.args) > 1:
            raise Unsupported("min/max of several values that can reject")
        out, to = self.expr(e.args[0])
        for arg in e.args[1:]:
            b, tb = self.expr(arg)
            ctype = _promote(to, tb)
            if ctype == "i":
                out = f"t_i{e.op}({out}, {b})"
            else:
                out = f"t_d{e.op}((double)({out}), (double)({b}))"
            to = ctype
        return out, to

    def rounding(self, e: ir.Round) -> str:
        x, tx = self.expr(e.operand)
        if tx not in "id":
            raise Unsupported("rounding a non-number")
        p = float(e.precision)
        fn = {"floor": "t_floor", "ceil": "t_ceil", "round": "t_half_away"}[e.mode]
        if p == 1.0:
            return f"{fn}(t_snap((double)({x})))"
        return f"({fn}(t_snap((double)({x}) / {_float(p)})) * {_float(p)})"

    def lookup(self, e: ir.Lookup) -> str:
        """The table's value for the row's period and keys, read in C from the dense table
        lookups.py builds: the row's period (-1: none in force), each key as its code in
        the table (from the choice's code through a small map, or computed in NumPy for
        number keys), then the policy of a missing value, where evaluation reaches it."""
        if any(self.may_reject(k) for k in e.keys):
            raise Unsupported("a lookup whose keys can reject")
        if not e.keys:  # program.py: a value per period, never a rejection
            return self.arg("lookup_value", "d", e)
        self.nodes[id(e)] = e
        table = self.p.tables[e.parameter]
        x = self.temp()
        parts = [f"int64_t {x}p = {self.arg('period', 'i', e.parameter)};"]
        codes = []
        for j, key in enumerate(e.keys):
            code = f"{x}k{j}"
            if isinstance(key, ir.Const):
                found = table.index[j].get(records.runtime_value(key.value), -1)
                parts.append(f"int64_t {code} = INT64_C({found});")
            elif isinstance(key, ir.Input) and self.types.get(key.name) in ("c", "b"):
                keymap = self.pointer("keymap", "i", (id(e), j, key.name))
                value = self.arg("input", self.types[key.name], key.name)
                if self.types[key.name] == "c":
                    parts.append(f"int32_t {code}c = {value}; "
                                 f"int64_t {code} = {code}c >= 0 ? {keymap}[{code}c] : -1;")
                else:
                    parts.append(f"int64_t {code} = {keymap}[{value} ? 1 : 0];")
            else:
                parts.append(f"int64_t {code} = {self.arg('keycodes', 'i', (id(e), j))};")
            codes.append(code)
        size = int(table.dense.shape[1])
        dense = self.pointer("dense", "d", e.parameter)
        present = self.pointer("present", "b", e.parameter)
        composite = " + ".join(f"{c} * INT64_C({int(table.strides[j])})" for j, c in enumerate(codes))
        known = " && ".join(f"{c} >= 0" for c in codes)
        policy = self.p.parameters[e.parameter].missing
        if policy.kind == "value":
            missing = f"{x} = {_float(float(policy.value))};"
        elif policy.kind == "reject":
            missing = f"{{ R[i] = {self.p.policy[e.parameter]}; goto next; }}"
        else:
            missing = f"{{ R[i] = {REDO}; goto next; }}"
            self.redo = True
        return ("({ " + " ".join(parts) + f" double {x}; "
                f"if ({x}p < 0) {{ R[i] = {self.p.in_force[e.parameter]}; goto next; }} "
                f"int64_t {x}c = {x}p * INT64_C({size}) + ({composite}); "
                f"if ({known} && {present}[{x}c]) {x} = {dense}[{x}c]; else {missing} "
                f"{x}; }})")

    # ------------------------------------------------------------ statements
    def reject_if(self, condition: str, index: int, depth: int = 2):
        self.emit(f"if ({condition}) {{ R[i] = {index}; goto next; }}", depth)

    def definition(self, d: ir.Definition):
        name = d.name
        value, ctype = self.expr(d.expr)
        kind = d.type.kind
        v = f"d_{_ident(name)}"  # ASCII: a methodology's names may be Chinese
        if kind in (Kind.QUANTITY, Kind.INTEGER):
            if ctype not in "id":
                raise Unsupported(f"`{name}` is not a number")
            self.emit(f"{_C_TYPES[ctype]} {v}_raw = {value};")
            if ctype == "d":
                self.reject_if(f"!isfinite({v}_raw)", self.p.not_finite[name])
            if d.quantized:
                self.emit(f"double {v}_mg = t_half_away(t_snap((double){v}_raw * 1000000.0));")
                self.reject_if(f"!({v}_mg >= -0x1p63 && {v}_mg < 0x1p63)", self.p.too_large[name])
                self.emit(f"int64_t m_{_ident(name)} = (int64_t){v}_mg;")
                self.emit(f"double {v} = (double)m_{_ident(name)} / 1000000.0;")
                self.defined[name] = "d"
            elif kind == Kind.INTEGER and ctype == "d":
                self.reject_if(f"!({v}_raw >= -0x1p63 && {v}_raw < 0x1p63)", self.p.too_large[name])
                self.emit(f"int64_t {v} = (int64_t){v}_raw;")
                self.defined[name] = "i"
            else:
                self.emit(f"{_C_TYPES[ctype]} {v} = {v}_raw;")
                self.defined[name] = ctype
        elif kind == Kind.BOOLEAN:
            if ctype != "b":
                raise Unsupported(f"`{name}` is not a truth value")
            self.emit(f"uint8_t {v} = {value};")
            self.defined[name] = "b"
        else:
            raise Unsupported(f"`{name}` is {kind.value}")

    def build(self) -> KernelSource:
        p = self.p
        if p.before is not None or p.after is not None:
            # the local day: UTC time plus the zone's offset (one for the chunk, usually)
            day = f"t_floordiv({self.arg('input', 'i', 'time')} + {self.arg('offset', 'i')}, INT64_C({DAY_US}))"
            if p.before is not None:
                self.reject_if(f"{day} < INT64_C({p.start_day})", p.before)
            if p.after is not None:
                self.reject_if(f"{day} > INT64_C({p.until_day})", p.after)
        if p.not_covered is not None:  # through a table of the activity's labels
            code = self.arg("input", "c", "activity")
            covered = self.pointer("covered", "b")
            self.reject_if(f"!({code} >= 0 && {covered}[{code}])", p.not_covered)
        for name, low, high, index in p.bounds:
            ctype = self.types.get(name)
            if ctype not in ("d", "i"):
                raise Unsupported(f"bounds on `{name}`")
            value = self.arg("input", ctype, name)
            tests = []
            for op, bound in (("<", low), (">", high)):
                if bound is None:
                    continue
                if isinstance(bound, bool) or not isinstance(bound, (int, float)):
                    raise Unsupported(f"a bound of `{name}`")
                literal = _float(float(bound)) if isinstance(bound, float) else f"INT64_C({bound})"
                tests.append(f"({value} {op} {literal})" if (ctype == "i") == isinstance(bound, int)
                             else f"((double)({value}) {op} (double){literal})")
            self.reject_if(" || ".join(tests), index)
        for kind, item in p.steps:
            if kind == "define":
                self.definition(item)
            else:
                cond, ctype = self.expr(item.cond)
                if ctype != "b":
                    raise Unsupported("a require that is not a truth value")
                self.reject_if(f"!({cond})", p.require_reason[id(item)])
        masses = [name for name in MASSES if name in self.defined and self.m.definition(name).quantized]
        for j, name in enumerate(masses):
            self.emit(f"O{j}[i] = m_{_ident(name)};")
        points = self.defined.get("points")
        if points == "i":
            self.emit("P[i] = d_points;")
        elif points == "d":
            self.emit("P[i] = isfinite(d_points) ? t_to_i64(d_points) : 0;")
        elif points == "b":
            self.emit("P[i] = d_points;")
        else:
            raise Unsupported("no numeric points")
        body = self.lines
        head = ["void tanpu_kernel(int64_t n, void **a) {"]
        # restrict: no two arrays overlap, so loads need not be repeated after each store;
        # the masks are read into locals once (they would otherwise be reloaded per row)
        k = len(self.args)
        head.append(f"    const int64_t *M = (const int64_t *)a[{k + 1}];")
        for j, arg in enumerate(self.args):
            ctype = _C_TYPES[arg.ctype]
            head.append(f"    const {ctype} *restrict a{j} = (const {ctype} *)a[{j}]; const int64_t m{j} = M[{j}];")
        head.append(f"    const int32_t *restrict K = (const int32_t *)a[{k}];")
        head.append(f"    int32_t *restrict R = (int32_t *)a[{k + 2}];")
        head.append(f"    int64_t *restrict P = (int64_t *)a[{k + 3}];")
        for j in range(len(masses)):
            head.append(f"    int64_t *restrict O{j} = (int64_t *)a[{k + 4 + j}];")
        head.append("    for (int64_t i = 0; i < n; i++) {")
        head.append("        if (R[i] != 0) continue;")
        tail = ["    next:;", "    }", "}"]
        text = PRELUDE + "\n".join(head + body + tail) + "\n"
        return KernelSource(text, self.args, self.codes, masses, self.nodes, self.redo)


def generate(program: Program, types: dict[str, str]) -> KernelSource:
    """The C source of `program` for inputs of these kinds (name -> d/i/b/c). Pure."""
    return _Gen(program, types).build()


def entry(library, name: str):
    """A function of a loaded library that takes (int64 n, void **arguments)."""
    function = getattr(library, name)
    function.argtypes = (ctypes.c_int64, ctypes.c_void_p)
    function.restype = None
    return function


def column_type(column) -> Optional[str]:
    if isinstance(column, (Cat, pl.Series)):
        return "c"
    if isinstance(column, np.ndarray):
        return {np.dtype(np.float64): "d", np.dtype(np.int64): "i", np.dtype(bool): "b"}.get(column.dtype)
    return None


@dataclass
class Kernels:
    """Kernels of one program, built on first use for each set of column types."""

    program: Program
    build: Callable[[str], Any]  # C source -> the loaded library (ctypes.CDLL), or None
    _built: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, columns: dict):
        types = {name: column_type(column) for name, column in columns.items()}
        key = tuple(sorted(types.items()))
        found = self._built.get(key, False)
        if found is False:
            with self._lock:
                found = self._built.get(key, False)
                if found is False:
                    try:
                        source = generate(self.program, {k: v for k, v in types.items() if v})
                        library = self.build(source.text)
                        found = (source, entry(library, "tanpu_kernel")) if library is not None else None
                    except Unsupported:
                        found = None
                    self._built[key] = found
        return found

    def compiles(self) -> bool:
        """Whether the kernel builds for the columns ingest gives this methodology."""
        kinds = {Kind.QUANTITY: np.zeros(1), Kind.INTEGER: np.zeros(1, np.int64),
                 Kind.BOOLEAN: np.zeros(1, bool), Kind.DATE: np.zeros(1, np.int64),
                 Kind.DATETIME: np.zeros(1, np.int64), Kind.CHOICE: Cat(np.zeros(1, np.int32), ()),
                 Kind.TEXT: Cat(np.zeros(1, np.int32), ())}
        columns = {s.name: kinds[s.type.kind] for s in self.program.m.inputs}
        columns.update(time=kinds[Kind.DATETIME], activity=kinds[Kind.TEXT],
                       id=kinds[Kind.TEXT], account=kinds[Kind.TEXT])
        return self.get(columns) is not None

    def compiles_for(self, columns: dict) -> bool:
        """Whether run() takes the kernel for these columns: its outcome then holds amounts
        for the credited rows only (zero elsewhere), for every quantized mass output."""
        return self.get(columns) is not None

    def run(self, columns: dict, n: int, reason: np.ndarray,
            override_mg: Optional[np.ndarray] = None) -> Outcome:
        """As Program.run; the kernel where there is one, else program.py."""
        found = None if override_mg is not None else self.get(columns)
        if found is None:
            return self.program.run(columns, n, reason, override_mg)
        source, function = found
        with np.errstate(all="ignore"):
            return _call(self.program, source, function, columns, n, reason)


def _call(program: Program, source: KernelSource, function, columns: dict, n: int,
          reason: np.ndarray) -> Outcome:
    run = _Run(program, columns, n, reason, None)  # program.py's leaves: its own code
    keep = []  # every array handed to C stays referenced until the call returns
    pointers = []
    masks = []
    offset = _Offset(program, columns["time"])

    def add(array, dtype, whole: bool = False):
        """A per-row array, a value for every row (mask 0), or with `whole` a table."""
        array = np.ascontiguousarray(array, dtype=dtype)
        if array.ndim == 0:
            array = array.reshape(1)
        keep.append(array)
        pointers.append(array.ctypes.data)
        masks.append(-1 if not whole and array.size == n and n > 1 else 0)

    for arg in source.args:
        kind, node = arg.kind, arg.node
        if kind == "input":
            if arg.ctype == "c":
                add(run.cat(node).codes, np.int32)
            else:
                add(columns[node], {"d": np.float64, "i": np.int64, "b": np.uint8}[arg.ctype])
        elif kind == "lookup_value":  # a parameter without keys: its value per period
            add(program.tables[node.parameter].values[_period(run, node.parameter, offset)], np.float64)
        elif kind == "period":
            add(_period(run, node, offset), np.int64)
        elif kind == "offset":
            add(offset.value, np.int64)
        elif kind == "keymap":
            lookup_id, j, name = node
            add(_keymap(program, source, lookup_id, j, columns[name], run), np.int64, whole=True)
        elif kind == "keycodes":
            lookup = source.nodes[node[0]]
            j = node[1]
            add(program.tables[lookup.parameter].key_codes(j, run.ev(lookup.keys[j], None), n), np.int64)
        elif kind == "dense":
            add(program.tables[node].dense, np.float64, whole=True)
        elif kind == "present":
            add(program.tables[node].present, np.uint8, whole=True)
        elif kind == "covered":
            labels = run.cat("activity").labels
            add(np.array([label == "" or label in program.m.metadata.covers for label in labels] or [False],
                         dtype=np.uint8), np.uint8, whole=True)
        elif kind == "leaf":
            add(np.asarray(run.ev(node, None)), np.int64)
    codes = np.array([run.cat(name).index(label) for name, label in source.codes] or [0], dtype=np.int32)
    mask = np.array(masks or [0], dtype=np.int64)
    keep.extend((codes, mask))
    pointers.extend((codes.ctypes.data, mask.ctypes.data))
    if reason.dtype != np.int32 or not reason.flags.c_contiguous:  # pragma: no cover - engine's own
        raise TypeError("reason must be a contiguous int32 array")
    pointers.append(reason.ctypes.data)
    points = np.zeros(n, dtype=np.int64)
    pointers.append(points.ctypes.data)
    masses = {name: np.zeros(n, dtype=np.int64) for name in source.masses}
    pointers.extend(m.ctypes.data for m in masses.values())
    table = (ctypes.c_void_p * len(pointers))(*pointers)
    function(n, table)  # ctypes lets go of the GIL: chunks run on every core
    redo = np.flatnonzero(reason == REDO) if source.redo else ()
    if len(redo):  # a key the checker proved impossible: program.py says which
        reason[redo] = 0
        sub_reason = np.zeros(redo.size, dtype=np.int32)
        outcome = program.run(_gather(columns, redo), redo.size, sub_reason)
        reason[redo] = sub_reason
        credited = sub_reason == 0  # amounts of credited rows only, as the kernel writes them
        points[redo] = np.where(credited, outcome.points, 0)
        for name in masses:
            masses[name][redo] = np.where(credited, outcome.masses[name], 0)
    return Outcome(reason, masses, points)


class _Offset:
    """The zone's UTC offset for a chunk's times and its first and last local day,
    computed once per call and only if asked for."""

    def __init__(self, program: Program, time: np.ndarray):
        self.program, self.time = program, time

    @cached_property
    def value(self):
        """One offset (an int) when the zone keeps it for the whole chunk, else per row."""
        return self.program.zone.utc_offsets(self.time) if self.time.size else 0

    @cached_property
    def day_range(self) -> Optional[np.ndarray]:
        if not isinstance(self.value, int) or not self.time.size:
            return None
        return (np.array([self.time.min(), self.time.max()], dtype=np.int64) + self.value) // DAY_US


def _period(run: _Run, parameter: str, offset: _Offset):
    """The index of the parameter's period in force: one for all rows when the chunk's
    local days lie in one period, else program.py's per-row array."""
    if offset.day_range is not None:
        found = run.p.tables[parameter].period(offset.day_range)
        if isinstance(found, int):
            return found
    return run.period(parameter)


def _keymap(program: Program, source: KernelSource, lookup_id: int, j: int, column, run: _Run) -> np.ndarray:
    """Key position j's code in the table for each code of the column (a choice or text:
    per label; a boolean: for false and true); -1 where the table lists no such key."""
    table = program.tables[source.nodes[lookup_id].parameter]
    index = table.index[j]
    if isinstance(column, np.ndarray) and column.dtype == bool:
        return np.array([index.get(False, -1), index.get(True, -1)], dtype=np.int64)
    labels = run.cat(source.nodes[lookup_id].keys[j].name).labels
    return np.array([index.get(label, -1) for label in labels] or [-1], dtype=np.int64)


def _gather(columns: dict, rows: np.ndarray) -> dict:
    out = {}
    for name, column in columns.items():
        if isinstance(column, Cat):
            out[name] = Cat(column.codes[rows], column.labels)
        elif isinstance(column, pl.Series):
            out[name] = column.gather(rows)
        elif isinstance(column, np.ndarray) and column.ndim == 1 and column.size > 0:
            out[name] = column[rows]
        else:
            out[name] = column
    return out

