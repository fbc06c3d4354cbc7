"""The plan (engine/plan/) as the C source of one function over a chunk's rows.

Why C: evaluated as NumPy operations, a formula is one pass over memory per operation
(some forty a chunk for a small methodology); a C function does every step of a record
in registers. What it computes is what engine/to_python.py's function computes, row by
row, from the same plan: the same steps in the same order, the same reasons, the same
IEEE-754 operations (kernels are compiled with -ffp-contract=off and no fast-math; the
numeric contract is engine/native/numeric.h, tested bit for bit against
engine/numeric.py), int64 arithmetic wrapping. Laziness is C's own: && || ?: evaluate
the operand taken; every other node evaluates operands that can reject into
temporaries, left to right, so the first rejection is the scalar path's.

The parameters' tables are constants of the source (they are part of the plan). Text
values are int32 codes in one label space per call: the plan's own labels (text
constants and table keys, `Kernel.labels`) are codes 0..S-1, fixed in the source; other
labels a chunk's columns hold get codes from S on, given per call through each text
column's `remap` (column code -> code). An instant is a `t_instant`, UTC and local
microseconds, the local time from the per-call offsets of each datetime column.

The function's arguments, `void **a`: the per-call arrays of `Kernel.args` in order,
then the masks M (-1: an array per row, 0: one value for every row), the reasons R
(int32; rows not 0 on entry are skipped), points P, the mass outputs O0.., the capped
reduction OV (mg, or NULL; after the counters' amounts C0.., if any) and, for lookups the checker proved cannot miss, X (the key
codes of a row that missed after all; R is then -(lookup + 1)).

The source is a pure function of the plan; compiling it is engine/batch/kernel.py's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources

from .plan import ast as p
from .plan.ast import ident

REASON_BASE = 2  # the batch engine's reasons 0 (credited) and 1 (invalid) come first
_CTYPE = {p.F: "double", p.I: "int64_t", p.B: "uint8_t", p.T: "int32_t", p.DAY: "int64_t",
          p.DT: "t_instant"}
_PARTS = {"year": 0, "month": 1, "day": 2, "weekday": 3, "hour": 4, "days_in_year": 5}
DAY_US = 86_400_000_000


def prelude() -> str:
    """The fixed C every kernel starts with. Read as the package's resources, not by path:
    the package may be imported from a zip (Spark's --py-files, docs/spark.md)."""
    native = resources.files(__package__).joinpath("native")
    return "".join(native.joinpath(name).read_text(encoding="utf-8") for name in ("numeric.h", "calendar.h"))


@dataclass(frozen=True)
class Arg:
    kind: str  # input | remap | offset
    name: str
    ctype: str  # double, int64_t, uint8_t, int32_t


@dataclass
class Kernel:
    text: str
    args: list[Arg]
    labels: tuple[str, ...]   # text codes 0..S-1
    masses: tuple[str, ...]   # O0.. in this order
    keys: int                 # key slots per row in X (0: no X)
    lookups: tuple[p.Lookup, ...]  # the lookups that can write X, by number


def _float(value: float) -> str:
    if math.isnan(value):
        return "NAN"
    if math.isinf(value):
        return "INFINITY" if value > 0 else "(-INFINITY)"
    return f"({float(value).hex()})"


def _int(value: int) -> str:
    return f"INT64_C({int(value)})" if value != -2 ** 63 else "INT64_MIN"


class _Gen:
    def __init__(self, plan: p.Plan):
        self.plan = plan
        self.args: list[Arg] = []
        self.statics: list[str] = []
        self._zone_offset = None
        self.lines: list[str] = []
        self.temps = 0
        self.labels: dict[str, int] = {}
        self.impossible: list[p.Lookup] = []
        self.keys = 0
        for step in plan.steps:  # the plan's own labels first: codes fixed in the source
            for node in p.nodes(step.expr if isinstance(step, p.Define) else step.cond):
                if isinstance(node, p.Const) and node.rep == p.T:
                    self.label(node.value)
        for prm in plan.parameters:
            for entries in prm.tables:
                for key, _ in entries:
                    for part in key:
                        if isinstance(part, str):
                            self.label(part)

    def label(self, text: str) -> int:
        return self.labels.setdefault(text, len(self.labels))

    def arg(self, kind: str, name: str, ctype: str) -> str:
        a = Arg(kind, name, ctype)
        if a not in self.args:
            self.args.append(a)
        return f"a{self.args.index(a)}"

    def temp(self) -> str:
        self.temps += 1
        return f"_t{self.temps}"

    def emit(self, line: str, depth: int = 2):
        self.lines.append("    " * depth + line)

    def reject(self, index: int) -> str:
        return f"{{ R[i] = {REASON_BASE + index}; goto next; }}"

    # ------------------------------------------------------------ expressions
    def operands(self, nodes, temporaries: bool = False) -> tuple[str, list[str]]:
        """C for operands evaluated left to right: temporaries where one can reject (or
        where asked for: a value used more than once)."""
        if not temporaries and not any(n.rejects for n in nodes):
            return "", [self.expr(n) for n in nodes]
        head, names = [], []
        for n in nodes:
            x = self.temp()
            head.append(f"{_CTYPE[n.rep]} {x} = {self.expr(n)};")
            names.append(x)
        return " ".join(head), names

    @staticmethod
    def wrap(head: str, body: str) -> str:
        return f"({{ {head} {body}; }})" if head else body

    def number(self, code: str, rep: str, to: str) -> str:
        return f"(double)({code})" if rep != to and to == p.F else code

    def expr(self, e: p.Expr) -> str:
        t = type(e)
        if t is p.Const:
            return self.const(e)
        if t is p.Input:
            return self.input(e.name, e.rep)
        if t is p.Ref:
            return f"d_{ident(e.name)}"
        if t is p.Day:
            return f"t_floordiv({self.input('time', p.DT)}.local, INT64_C({DAY_US}))"
        if t is p.Unary:
            x = self.expr(e.operand)
            if e.op == "not":
                return f"(!({x}))"
            if e.rep == p.I:  # -INT64_MIN is beyond int64: the plan's reason
                v = self.temp()
                return (f"({{ int64_t {v} = {x}; if ({v} == INT64_MIN) {self.reject(e.overflow)} "
                        f"{'-' if e.op == 'neg' else f'{v} < 0 ? -{v} : '}{v}; }})")
            return f"(-({x}))" if e.op == "neg" else f"fabs({x})"
        if t is p.Arith:
            head, (a, b) = self.operands((e.left, e.right))
            if e.rep == p.I:  # checked: a whole number beyond int64 rejects the record
                v = self.temp()
                fn = {"+": "add", "-": "sub", "*": "mul"}[e.op]
                body = (f"({{ int64_t {v}; if (__builtin_{fn}_overflow((int64_t)({a}), (int64_t)({b}), &{v})) "
                        f"{self.reject(e.overflow)} {v}; }})")
            else:
                body = f"((double)({a}) {e.op} (double)({b}))"
            return self.wrap(head, body)
        if t is p.Compare:
            return self.compare(e)
        if t is p.Logic:
            return f"(({self.expr(e.left)}) {'&&' if e.op == 'and' else '||'} ({self.expr(e.right)}))"
        if t is p.InSet:
            head, names = self.operands((e.operand,) + e.values)
            if not head:  # nothing rejects: the operand once, then lazy tests
                x = self.temp()
                head = f"{_CTYPE[e.operand.rep]} {x} = {names[0]};"
                names = [x] + names[1:]
            tests = " || ".join(self.equal(names[0], e.operand.rep, v, e.values[j].rep)
                                for j, v in enumerate(names[1:]))
            return self.wrap(head, f"({tests})")
        if t is p.If:
            a = self.number(self.expr(e.then), e.then.rep, e.rep)
            b = self.number(self.expr(e.otherwise), e.otherwise.rep, e.rep)
            return f"(({self.expr(e.cond)}) ? ({a}) : ({b}))"
        if t is p.MinMax:
            head, names = self.operands(e.args)
            out, rep = names[0], e.args[0].rep
            for j, arg in enumerate(e.args[1:], start=1):
                if rep == arg.rep == p.I:
                    out = f"t_i{e.op}({out}, {names[j]})"
                else:
                    out = f"t_d{e.op}((double)({out}), (double)({names[j]}))"
                    rep = p.F
            return self.wrap(head, out)
        if t is p.Round:
            x = f"(double)({self.expr(e.operand)})"
            fn = {"floor": "t_floor", "ceil": "t_ceil", "round": "t_half_away"}[e.mode]
            if e.precision == 1.0:
                return f"{fn}(t_snap({x}))"
            prec = _float(e.precision)
            return f"({fn}(t_snap({x} / {prec})) * {prec})"
        if t is p.Elapsed:
            head, (end, start) = self.operands((e.end, e.start))
            if e.end.rep == p.DAY:
                return self.wrap(head, f"((double)t_sub({end}, {start}) * 86400.0)")
            return self.wrap(head, f"((double)t_sub(({end}).utc, ({start}).utc) / 1000000.0)")
        if t is p.DateShift and e.rep == p.DT:  # as scalar.py's shift_us, operation for operation
            head, (d, s) = self.operands((e.date, e.duration), temporaries=True)
            q, out = self.temp(), self.temp()
            sign = "-" if e.op == "-" else ""
            return (f"({{ {head} double {q} = ({sign}(double)({s})) * 1000000.0; "
                    f"if (!({q} >= -1e17 && {q} <= 1e17)) {self.reject(e.overflow)} "
                    f"int64_t {out} = ({d}).utc + (int64_t)floor({q}); "
                    f"if ({out} < {_int(p.FIRST_US)} || {out} >= {_int(p.END_US)}) "
                    f"{self.reject(e.overflow)} (t_instant){{{out}, {out} + {self.zone_offset()}({out})}}; }})")
        if t is p.DateShift:  # as scalar.py's shift_days, operation for operation
            head, (d, s) = self.operands((e.date, e.duration), temporaries=True)
            q, out = self.temp(), self.temp()
            sign = "-" if e.op == "-" else ""
            return (f"({{ {head} double {q} = ({sign}(double)({s})) / 86400.0; "
                    f"if (!({q} >= -1e8 && {q} <= 1e8)) {self.reject(e.overflow)} "
                    f"int64_t {out} = {d} + (int64_t)floor({q}); "
                    f"if ({out} < INT64_C({p.FIRST_DAY}) || {out} > INT64_C({p.LAST_DAY})) "
                    f"{self.reject(e.overflow)} {out}; }})")
        if t is p.DatePart:
            x = self.expr(e.operand)
            if e.part == "date":
                return f"t_floordiv(({x}).local, INT64_C({DAY_US}))"
            if e.operand.rep == p.DAY:
                return f"t_day_part({x}, {_PARTS[e.part]})"
            return f"t_local_part(({x}).local, {_PARTS[e.part]})"
        if t is p.Lookup:
            return self.lookup(e)
        if t is p.LegField:
            return self.leg_field(e)
        if t is p.LegAggregate:
            return self.leg_aggregate(e)
        raise TypeError(f"unknown plan node {t.__name__}")  # pragma: no cover

    def leg_field(self, e: p.LegField) -> str:
        """The field of leg `_j` (aggregates do not nest): one flat array per field over
        every leg of the chunk, text as codes with their remap."""
        name = f"{e.group}.{e.name}"
        if e.rep == p.T:
            codes = self.arg("leg", name, "int32_t")
            remap = self.arg("remap", name, "int32_t")
            return f"({codes}[_j] >= 0 ? {remap}[{codes}[_j]] : -1)"
        ctype = {p.F: "double", p.I: "int64_t", p.B: "uint8_t"}[e.rep]
        return f"{self.arg('leg', name, ctype)}[_j]"

    def leg_aggregate(self, e: p.LegAggregate) -> str:
        """A loop over the row's legs `offsets[i] .. offsets[i + 1]`: the where test,
        then the body, added in order (f: binary64; i: checked against int64)."""
        offsets = self.arg("legs", e.group, "int64_t")
        acc = self.temp()
        where = f"if (!({self.expr(e.where)})) continue; " if e.where is not None else ""
        if e.op == "count":
            init, add = f"int64_t {acc} = 0;", f"{acc}++;"
        elif e.rep == p.I:
            b = self.temp()
            init = f"int64_t {acc} = 0;"
            add = (f"int64_t {b} = {self.expr(e.body)}; "
                   f"if (__builtin_add_overflow({acc}, {b}, &{acc})) {self.reject(e.overflow)}")
        else:
            init, add = f"double {acc} = 0.0;", f"{acc} += (double)({self.expr(e.body)});"
        return (f"({{ {init} for (int64_t _j = {offsets}[i]; _j < {offsets}[i + 1]; _j++) "
                f"{{ {where}{add} }} {acc}; }})")

    def const(self, e: p.Const) -> str:
        if e.rep == p.T:
            return str(self.label(e.value))
        if e.rep == p.B:
            return "1" if e.value else "0"
        if e.rep == p.F:
            return _float(e.value)
        if e.rep == p.DT:
            return f"((t_instant){{{_int(e.value)}, {_int(e.local)}}})"
        return _int(e.value)

    def input(self, name: str, rep: str) -> str:
        if rep == p.T:
            codes = self.arg("input", name, "int32_t")
            remap = self.arg("remap", name, "int32_t")
            return f"({codes}[i & m{codes[1:]}] >= 0 ? {remap}[{codes}[i & m{codes[1:]}]] : -1)"
        if rep == p.DT:
            utc = self.arg("input", name, "int64_t")
            off = self.arg("offset", name, "int64_t")
            return (f"((t_instant){{{utc}[i & m{utc[1:]}], "
                    f"t_add({utc}[i & m{utc[1:]}], {off}[i & m{off[1:]}])}})")
        ctype = {p.F: "double", p.I: "int64_t", p.DAY: "int64_t", p.B: "uint8_t"}[rep]
        a = self.arg("input", name, ctype)
        return f"{a}[i & m{a[1:]}]"

    def equal(self, a: str, ra: str, b: str, rb: str) -> str:
        if ra == p.DT:
            return f"(({a}).utc == ({b}).utc)"
        if ra != rb and p.F in (ra, rb):
            return f"((double)({a}) == (double)({b}))"
        return f"(({a}) == ({b}))"

    def compare(self, e: p.Compare) -> str:
        head, (a, b) = self.operands((e.left, e.right))
        ra, rb = e.left.rep, e.right.rep
        if ra == p.DT:
            a, b = f"({a}).utc", f"({b}).utc"
        elif ra != rb and p.F in (ra, rb):
            a, b = f"(double)({a})", f"(double)({b})"
        return self.wrap(head, f"(({a}) {e.op} ({b}))")

    def zone_offset(self) -> str:
        """The name of a function giving the zone's UTC offset (µs) of a UTC instant in
        FIRST_US … END_US, from the zone's table of changes (engine/batch/timezones.py:
        the offsets the per-call `offset` arguments come from), written once."""
        if self._zone_offset is None:
            from .batch.timezones import zone_table
            changes, offsets = zone_table(self.plan.timezone).changes_us()
            t = self.static("int64_t", [_int(v) for v in changes])
            off = self.static("int64_t", [_int(v) for v in offsets])
            self._zone_offset = "t_zone_offset"
            self.statics.append(
                f"static inline int64_t t_zone_offset(int64_t u) {{ int64_t lo = 0, hi = {len(changes)}; "
                f"while (lo < hi) {{ int64_t mid = (lo + hi) / 2; if ({t}[mid] <= u) lo = mid + 1; else hi = mid; }} "
                f"return {off}[lo]; }}")
        return self._zone_offset

    def static(self, ctype: str, values: list[str]) -> str:
        name = f"s{len(self.statics)}"
        self.statics.append(f"static const {ctype} {name}[{max(len(values), 1)}] = "
                            f"{{{', '.join(values) or '0'}}};")
        return name

    def lookup(self, e: p.Lookup) -> str:
        """The parameter's value in the period in force (`p{i}`, computed once per row)
        at the keys' codes, from a dense table in the source; then the lookup's policy."""
        prm = self.plan.parameters[e.parameter]
        period = f"p{e.parameter}"
        if not e.keys:
            values = [_float(v) for v in prm.scalars]
            if len(values) == 1:
                return values[0]  # one period: its value whatever the index
            table = self.static("double", values)
            return f"{table}[{period} >= 0 ? {period} : {len(values) - 1}]"
        head, names = self.operands(e.keys, temporaries=True)  # a key is read twice
        # every key value any period lists, per key position, in a fixed order
        domains: list[dict] = [{} for _ in e.keys]
        for entries in prm.tables:
            for key, _ in entries:
                for j, part in enumerate(key):
                    domains[j].setdefault(part, len(domains[j]))
        dims = [max(len(d), 1) for d in domains]
        strides = [1] * len(dims)
        for j in range(len(dims) - 2, -1, -1):
            strides[j] = strides[j + 1] * dims[j + 1]
        size = strides[0] * dims[0]
        dense, present = [0.0] * (size * len(prm.tables)), [0] * (size * len(prm.tables))
        for k, entries in enumerate(prm.tables):
            for key, value in entries:
                at = k * size + sum(domains[j][part] * strides[j] for j, part in enumerate(key))
                dense[at], present[at] = value, 1
        x = self.temp()
        parts = [head]
        codes = []
        for j, (key, name) in enumerate(zip(e.keys, names)):
            code = f"{x}k{j}"
            codes.append(code)
            if key.rep == p.T:
                mapping = [-1] * len(self.labels)
                for part, c in domains[j].items():
                    if isinstance(part, str):
                        mapping[self.label(part)] = c
                km = self.static("int64_t", [str(c) for c in mapping] + ["-1"] * (len(self.labels) - len(mapping)))
                parts.append(f"int64_t {code} = ({name} >= 0 && {name} < {len(mapping)}) ? {km}[{name}] : -1;")
            elif key.rep == p.B:
                parts.append(f"int64_t {code} = ({name}) ? {domains[j].get(True, -1)} : {domains[j].get(False, -1)};")
            else:
                numbers = sorted((float(v), c) for v, c in domains[j].items()
                                 if isinstance(v, (int, float)) and not isinstance(v, bool))
                ks = self.static("double", [_float(v) for v, _ in numbers])
                cs = self.static("int64_t", [str(c) for _, c in numbers])
                value = f"({name}).utc" if key.rep == p.DT else name
                parts.append(f"int64_t {code} = t_find({ks}, {cs}, {len(numbers)}, (double)({value}));")
        dv = self.static("double", [_float(v) for v in dense])
        pv = self.static("uint8_t", [str(v) for v in present])
        composite = " + ".join(f"{c} * {strides[j]}" for j, c in enumerate(codes))
        known = " && ".join(f"{c} >= 0" for c in codes)
        if e.default is not None:
            missing = f"{x} = {_float(e.default)};"
        elif e.missing is not None:
            missing = self.reject(e.missing)
        else:
            n = len(self.impossible)
            self.impossible.append(e)
            self.keys = max(self.keys, len(e.keys))
            writes = " ".join(f"X[i * {{KEYS}} + {j}] = (int64_t)({f'({v}).utc' if k.rep == p.DT else v});"
                              for j, (k, v) in enumerate(zip(e.keys, names)))
            missing = f"{{ {writes} R[i] = {-(n + 1)}; goto next; }}"
        return ("({ " + " ".join(parts) + f" double {x}; "
                f"if ({period} < 0) {self.reject(e.in_force)} "
                f"int64_t {x}c = {period} * INT64_C({size}) + ({composite}); "
                f"if ({known} && {pv}[{x}c]) {x} = {dv}[{x}c]; else {missing} "
                f"{x}; }})")

    # ------------------------------------------------------------ steps
    def define(self, d: p.Define):
        v = f"d_{ident(d.name)}"
        raw = _CTYPE[d.expr.rep]
        self.emit(f"{_CTYPE[d.rep]} {v};" + (f" int64_t m_{ident(d.name)};" if d.quantize else ""))
        body = [f"{raw} {v}_raw = {self.expr(d.expr)};"]
        if d.not_finite is not None:
            body.append(f"if (!isfinite({v}_raw)) {self.reject(d.not_finite)}")
        if d.quantize:
            body.append(f"double {v}_mg = t_half_away(t_snap((double){v}_raw * 1000000.0));")
            body.append(f"if (!({v}_mg >= -0x1p63 && {v}_mg < 0x1p63)) {self.reject(d.too_large)}")
            body.append(f"m_{ident(d.name)} = (int64_t){v}_mg;")
            body.append(f"{v} = (double)m_{ident(d.name)} / 1000000.0;")
        elif d.whole:
            body.append(f"if (!({v}_raw >= -0x1p63 && {v}_raw < 0x1p63)) {self.reject(d.too_large)}")
            body.append(f"{v} = (int64_t){v}_raw;")
        else:
            body.append(f"{v} = {v}_raw;")
        if d.overridable and d.quantize:
            self.emit(f"if (OV) {{ m_{ident(d.name)} = OV[i]; {v} = (double)m_{ident(d.name)} / 1000000.0; }} else {{")
            for line in body:
                self.emit(line, 3)
            self.emit("}")
        else:
            self.emit("{ " + " ".join(body) + " }")

    def build(self) -> Kernel:
        plan = self.plan
        first = [s for s in plan.steps if isinstance(s, p.Check) and s.kind in ("period", "activity")]
        for step in first:
            self.emit(f"if (!({self.expr(step.cond)})) {self.reject(step.reason)}")
        if plan.used_parameters:  # the record's local day, once for every parameter's period
            self.emit(f"const int64_t day = {self.expr(p.Day())};")
        day = "day"
        for i in plan.used_parameters:
            starts = plan.parameters[i].starts
            if len(starts) == 1:
                self.emit(f"int64_t p{i} = {day} >= {_int(starts[0])} ? 0 : -1;")
            else:
                s = self.static("int64_t", [_int(v) for v in starts])
                self.emit(f"int64_t p{i} = -1; "
                          f"while (p{i} + 1 < {len(starts)} && {s}[p{i} + 1] <= {day}) p{i}++;")
        for step in plan.steps[len(first):]:
            if isinstance(step, p.Check):
                self.emit(f"if (!({self.expr(step.cond)})) {self.reject(step.reason)}")
            else:
                self.define(step)
        for j, name in enumerate(plan.masses):
            self.emit(f"O{j}[i] = m_{ident(name)};")
        for j, name in enumerate(plan.counters):
            self.emit(f"C{j}[i] = d_{ident(name)};")
        points = plan.define("points")
        self.emit("P[i] = isfinite(d_points) ? t_to_i64(d_points) : 0;" if points.rep == p.F
                  else "P[i] = d_points;")
        k = len(self.args)
        head = ["void tanpu_kernel(int64_t n, void **a) {",
                f"    const int64_t *M = (const int64_t *)a[{k}];"]
        for j, arg in enumerate(self.args):
            head.append(f"    const {arg.ctype} *restrict a{j} = (const {arg.ctype} *)a[{j}]; "
                        f"const int64_t m{j} = M[{j}];")
        head.append(f"    int32_t *restrict R = (int32_t *)a[{k + 1}];")
        head.append(f"    int64_t *restrict P = (int64_t *)a[{k + 2}];")
        for j in range(len(plan.masses)):
            head.append(f"    int64_t *restrict O{j} = (int64_t *)a[{k + 3 + j}];")
        for j, name in enumerate(plan.counters):  # whole numbers; a definition a window
            ctype = _CTYPE[plan.define(name).rep]  # aggregates may be a float (plan/history.py)
            head.append(f"    {ctype} *restrict C{j} = ({ctype} *)a[{k + 3 + len(plan.masses) + j}];")
        base = k + 3 + len(plan.masses) + len(plan.counters)
        head.append(f"    const int64_t *restrict OV = (const int64_t *)a[{base}];")
        head.append(f"    int64_t *restrict X = (int64_t *)a[{base + 1}];")
        head.append("    (void)OV; (void)X;")
        head.append("    for (int64_t i = 0; i < n; i++) {")
        head.append("        if (R[i] != 0) continue;")
        tail = ["    next:;", "    }", "}"]
        body = "\n".join(self.lines).replace("{KEYS}", str(max(self.keys, 1)))
        text = (prelude() + "\n".join(self.statics) + "\n" + "\n".join(head) + "\n" + body + "\n"
                + "\n".join(tail) + "\n")
        labels = tuple(sorted(self.labels, key=self.labels.get))
        return Kernel(text, self.args, labels, plan.masses, self.keys, tuple(self.impossible))


def generate(plan: p.Plan) -> Kernel:
    """The C source of a plan's kernel. Pure."""
    return _Gen(plan).build()
