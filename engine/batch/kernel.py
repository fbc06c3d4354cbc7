"""The per-record formulas on a chunk's columns: the plan's C kernel (engine/to_c.py),
or, where it cannot be built, the scalar path's function row by row.

This module prepares what the kernel reads (each column as a contiguous array, the codes
of text columns in the kernel's label space, the UTC offsets of datetime columns in the
methodology's zone), calls it once per chunk (ctypes lets go of the GIL, so chunks run on
every core), and reads back the reasons, points and masses of every row. Nothing is
handed back to another evaluator: both ways give the same results (the differential
tests), the kernel about a hundred times faster.

Compiling and loading the source is the caller's (`BatchEngine(..., kernels=build)`),
so the engine itself never runs a compiler or writes a file.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any, Callable, Optional

import numpy as np

from ..plan import ast as p
from ..result import NO_VALUE, REJECTED
from ..scalar import ScalarProgram
from ..to_c import REASON_BASE, Kernel, generate
from .legs import FlatLegs, legs_lists
from .timezones import zone_table
from .values import Cat, Reasons

_DTYPES = {"double": np.float64, "int64_t": np.int64, "uint8_t": np.uint8, "int32_t": np.int32}


class Outcome:
    """Per-record results of one chunk: reason index, masses (mg), points; the amounts
    of rows that are not credited are zero."""

    def __init__(self, reason: np.ndarray, masses: dict[str, np.ndarray], points: np.ndarray,
                 counters: tuple = ()):
        self.reason = reason
        self.masses = masses
        self.points = points
        self.counters = counters  # the counters' amounts (int64), in plan.counters order


def entry(library, name: str):
    """A function of a loaded library that takes (int64 n, void **arguments)."""
    function = getattr(library, name)
    function.argtypes = (ctypes.c_int64, ctypes.c_void_p)
    function.restype = None
    return function


def _cat(column) -> Cat:
    return column if isinstance(column, Cat) else Cat.of_series(column)


class Kernels:
    """A plan's formulas for columns. `run` is the entry point; thread-safe."""

    def __init__(self, plan: p.Plan, reasons: Reasons, scalar: ScalarProgram,
                 build: Optional[Callable[[str], Any]] = None):
        self.plan = plan
        self.reasons = reasons
        self.scalar = scalar
        self.build = build
        self.zone = zone_table(plan.timezone)
        for k, item in enumerate(plan.reasons):  # the kernel writes REASON_BASE + k
            if reasons.add(*item) != REASON_BASE + k:  # pragma: no cover - the engine's own
                raise ValueError("the plan's reasons must come first")
        self._function = None
        self._kernel: Optional[Kernel] = None
        self._lock = threading.Lock()

    def kernel(self):
        """(source, function) of the C kernel, built on first use; None without one."""
        if self._function is None:
            with self._lock:
                if self._function is None:
                    kernel = generate(self.plan)
                    library = self.build(kernel.text) if self.build is not None else None
                    self._kernel = kernel
                    self._function = entry(library, "tanpu_kernel") if library is not None else False
        return (self._kernel, self._function) if self._function else None

    def compiles(self) -> bool:
        """Whether the formulas run in C."""
        return self.kernel() is not None

    def run(self, columns: dict, n: int, reason: np.ndarray,
            override_mg: Optional[np.ndarray] = None) -> Outcome:
        """Evaluates every row whose reason is 0 (credited so far) and writes the others'
        reasons. `override_mg`: the capped reduction of each row (points recomputed)."""
        found = self.kernel()
        if found is None:
            return self._scalar(columns, n, reason, override_mg)
        return self._call(*found, columns, n, reason, override_mg)

    # ------------------------------------------------------------ C
    def _call(self, kernel: Kernel, function, columns: dict, n: int, reason: np.ndarray,
              override_mg: Optional[np.ndarray]) -> Outcome:
        if reason.dtype != np.int32 or not reason.flags.c_contiguous:  # pragma: no cover
            raise TypeError("reason must be a contiguous int32 array")
        labels = {label: code for code, label in enumerate(kernel.labels)}
        keep, pointers, masks = [], [], []

        def add(array, dtype, per_row: bool = True):
            array = np.ascontiguousarray(array, dtype=dtype)
            if array.ndim == 0:
                array = array.reshape(1)
            keep.append(array)
            pointers.append(array.ctypes.data)
            masks.append(-1 if per_row and array.size == n and n > 1 else 0)

        cats: dict[str, Cat] = {}
        flat: dict[str, FlatLegs] = {}
        for arg in kernel.args:
            if arg.kind in ("leg", "legs"):  # a group's legs: flat arrays (legs.py)
                group = arg.name.partition(".")[0]
                if group not in flat:
                    flat[group] = FlatLegs.of(columns[group], n)
                legs = flat[group]
                if arg.kind == "legs":
                    add(legs.offsets, np.int64, per_row=False)
                elif arg.ctype == "int32_t":
                    cats[arg.name] = legs.cat(arg.name.partition(".")[2])
                    add(cats[arg.name].codes, np.int32, per_row=False)
                else:
                    add(legs.values(arg.name.partition(".")[2]), _DTYPES[arg.ctype], per_row=False)
                continue
            if arg.kind == "input":
                column = columns[arg.name]
                if arg.ctype == "int32_t":
                    cats[arg.name] = _cat(column)
                    add(cats[arg.name].codes, np.int32)
                else:
                    add(column, _DTYPES[arg.ctype])
            elif arg.kind == "remap":  # the column's labels in the kernel's label space
                remap = [labels.setdefault(label, len(labels)) for label in cats[arg.name].labels]
                add(np.array(remap or [0], dtype=np.int32), np.int32, per_row=False)
            else:  # offset: one for the chunk (usually) or per row
                column = columns[arg.name]
                add(self.zone.utc_offsets(column) if len(column) else 0, np.int64)
        mask = np.array(masks or [0], dtype=np.int64)
        points = np.zeros(n, dtype=np.int64)
        masses = {name: np.zeros(n, dtype=np.int64) for name in kernel.masses}
        override = (np.ascontiguousarray(override_mg, dtype=np.int64)
                    if override_mg is not None else None)
        spill = np.zeros(n * kernel.keys, dtype=np.int64) if kernel.keys else None
        keep.extend((mask, override, spill))
        pointers += [mask.ctypes.data, reason.ctypes.data, points.ctypes.data]
        pointers += [m.ctypes.data for m in masses.values()]
        counters = self._counter_columns(n)
        keep.extend(counters)
        pointers += [c.ctypes.data for c in counters]
        pointers += [override.ctypes.data if override is not None else None,
                     spill.ctypes.data if spill is not None else None]
        function(n, (ctypes.c_void_p * len(pointers))(*pointers))
        if kernel.keys:
            missed = np.flatnonzero(reason < 0)
            if missed.size:
                self._name_keys(kernel, missed, reason, spill, list(labels))
        return Outcome(reason, masses, points, counters)

    def _counter_columns(self, n: int) -> tuple:
        """The counters' amounts (int64), or the values of the definitions a window
        aggregates (engine/plan/history.py's subject_plan: a float's are float64)."""
        return tuple(np.zeros(n, dtype=np.float64 if self.plan.define(name).rep == p.F else np.int64)
                     for name in self.plan.counters)

    def _name_keys(self, kernel: Kernel, rows, reason, spill, labels: list[str]) -> None:
        """A key the checker proved every table lists was missing after all: the
        message names it, as the scalar path's does."""
        for row in rows.tolist():
            lookup = kernel.lookups[-int(reason[row]) - 1]
            parts = []
            for j, key in enumerate(lookup.keys):
                value = int(spill[row * kernel.keys + j])
                parts.append(labels[value] if key.rep == p.T and value >= 0 else
                             "" if key.rep == p.T else bool(value) if key.rep == p.B else value)
            name = self.plan.parameters[lookup.parameter].name
            reason[row] = self.reasons.add(REJECTED, NO_VALUE,
                                           f"`{name}` has no value for {', '.join(map(str, parts))}")

    # ------------------------------------------------------------ without a compiler
    def _scalar(self, columns: dict, n: int, reason: np.ndarray,
                override_mg: Optional[np.ndarray]) -> Outcome:
        """The scalar path's function on each row: slower, the same results."""
        values = {}
        for name, rep in self.plan.inputs:
            column = columns[name]
            if rep == p.LEGS:
                values[name] = legs_lists(column, n)
            elif rep == p.T:
                values[name] = _cat(column).strings()
            elif isinstance(column, np.ndarray) and column.ndim == 1 and column.size == n:
                values[name] = column.tolist()
            else:
                values[name] = [np.asarray(column).item()] * n
        points = np.zeros(n, dtype=np.int64)
        masses = {name: np.zeros(n, dtype=np.int64) for name in self.plan.masses}
        counters = self._counter_columns(n)
        run = self.scalar.run_plain
        names = list(values)
        overrides = override_mg.tolist() if override_mg is not None else None
        for row in np.flatnonzero(reason == 0).tolist():
            record = {name: values[name][row] for name in names}
            status, code, message, reduction, pts, baseline, project, leakage, amounts = run(
                record, None, overrides[row] if overrides is not None else None)
            if status != "credited":
                reason[row] = self.reasons.add(status, code, message)
                continue
            points[row] = pts
            got = {"reduction": reduction, "baseline": baseline, "project": project, "leakage": leakage}
            for name in masses:
                masses[name][row] = got[name]
            for column, amount in zip(counters, amounts):
                column[row] = amount
        return Outcome(reason, masses, points, counters)


