"""A record's legs in the batch evaluator: read per row, kept as a list column, flattened
for the C kernel.

Reading goes row by row through engine/legs.py (the one reader of legs, so a leg is
refused with the scalar path's `legs[2].distance: ...`); what is kept of a chunk is a
Polars List(Struct) column, which chunks concatenate, the cross-record rules gather and
the disk store writes like any other column. The kernel reads it flattened: one array
per field over every leg of the chunk, and each row's legs `offsets[i] .. offsets[i+1]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import polars as pl

from dsl.ir import ast as ir
from dsl.types import Kind

from ..legs import reader
from ..records import FieldSpec, RecordError
from ..records import runtime_value as records_value
from .values import Cat

_DTYPE = {Kind.QUANTITY: pl.Float64, Kind.INTEGER: pl.Int64, Kind.BOOLEAN: pl.Boolean,
          Kind.TEXT: pl.String, Kind.CHOICE: pl.String}


def dtype_of(group: ir.Group) -> pl.DataType:
    return pl.List(pl.Struct({s.name: _DTYPE[s.type.kind] for s in group.fields}))


def legs_column(frame: pl.DataFrame, group: ir.Group, units: Mapping[str, str],
                tz: str, cells=None) -> tuple[pl.Series, np.ndarray]:
    """(the group's legs per row, ok): ok False where a row's legs cannot be read (the
    row is then read by engine/records.py, which gives its error). `cells`: ingest.py's
    column reader, for the repeated text columns of a CSV file (`_columns_fast`)."""
    if cells is not None:
        fast = _columns_fast(frame, group, units, tz, cells)
        if fast is not None:
            return fast
    n = frame.height
    legs_reader = reader(group)
    prefix = group.name + "["
    names = [c for c in frame.columns if c == group.name or c.startswith(prefix)]
    ok = np.ones(n, dtype=bool)
    lists: list = [[] for _ in range(n)]
    if names:
        for i, raw in enumerate(frame.select(names).iter_rows(named=True)):
            try:
                lists[i] = legs_reader.read(raw, tz, units)
            except RecordError:
                ok[i] = False
    return list_column(group, lists), ok


_FAST_KINDS = (Kind.QUANTITY, Kind.INTEGER, Kind.CHOICE)
_EMPTY = {Kind.QUANTITY: 0.0, Kind.INTEGER: 0}


def _columns_fast(frame: pl.DataFrame, group: ir.Group, units, tz, cells):
    """Repeated text columns (`legs[k].field`) read column by column with the inputs'
    own column readers, the legs flattened in (row, k) order with NumPy; rows the column
    readers are not sure of, or whose legs break a rule (a blank required field, a bound,
    the number of legs), are read by engine/legs.py one at a time (which gives the same
    legs or the row's error). None where this does not apply (a list column, a field
    kind or a column type it does not read)."""
    legs_reader = reader(group)
    if group.name in frame.columns or any(f.type.kind not in _FAST_KINDS for f in group.fields):
        return None
    columns: dict[tuple[int, str], str] = {}
    fields = {f.name: f for f in group.fields}
    for c in frame.columns:
        match = legs_reader.column.match(c)
        if match:
            if match.group(2) not in fields or frame.get_column(c).dtype != pl.String:
                return None
            columns[(int(match.group(1)), match.group(2))] = c
    if not columns:
        return None
    n, ks = frame.height, sorted({k for k, _ in columns})
    present = np.zeros((n, len(ks)), dtype=bool)
    ok = np.ones(n, dtype=bool)
    matrices, given = {}, {}
    for f in group.fields:
        t = f.type
        default = records_value(f.default) if f.default is not None else _EMPTY.get(t.kind)
        matrix = np.zeros((n, len(ks)), dtype=np.int32 if t.kind == Kind.CHOICE else
                          np.int64 if t.kind == Kind.INTEGER else np.float64)
        there = np.zeros((n, len(ks)), dtype=bool)
        for j, k in enumerate(ks):
            c = columns.get((k, f.name))
            if c is None:
                if default is not None:
                    matrix[:, j] = t.choices.index(default) if t.kind == Kind.CHOICE else default
                continue
            series = frame.get_column(c)
            there[:, j] = (series.is_not_null() & (series.str.len_bytes() > 0)).to_numpy()
            spec = FieldSpec(c, t.kind, t.dimension, t.unit.text, t.choices, False,
                             default if default is not None else (t.choices[0] if t.choices else 0))
            values, cell_ok = cells.field(spec)
            matrix[:, j] = values.codes if isinstance(values, Cat) else values
            ok &= cell_ok | ~there[:, j]
        present |= there
        matrices[f.name], given[f.name] = matrix, there
    for f in group.fields:
        if f.required:
            ok &= ~(present & ~given[f.name]).any(axis=1)
        low, high = legs_reader.bounds[f.name]
        if low is not None or high is not None:
            m = matrices[f.name]
            out = (m < low if low is not None else False) | (m > high if high is not None else False)
            ok &= ~(present & given[f.name] & out).any(axis=1)
    counts = present.sum(axis=1)
    if group.low is not None:
        ok &= counts >= group.low
    if group.high is not None:
        ok &= counts <= group.high
    # rows the readers were not sure of: engine/legs.py, row by row
    slow = np.flatnonzero(~ok)
    mask = present & ok[:, None]
    flat = {name: m[mask] for name, m in matrices.items()}
    if slow.size:
        raws = frame.select(list(columns.values())).gather(slow).iter_rows(named=True)
        inserts: dict[str, list] = {name: [] for name in fields}
        at: list[int] = []
        done = np.cumsum(mask.sum(axis=1)) - mask.sum(axis=1)  # fast legs before each row
        for position, raw in zip(slow.tolist(), raws):
            try:
                legs = legs_reader.read(raw, tz, units)
            except RecordError:
                continue
            ok[position] = True
            counts[position] = len(legs)
            for leg in legs:
                at.append(int(done[position]))
                for name, f in fields.items():
                    value = leg[name]
                    inserts[name].append(f.type.choices.index(value) if f.type.kind == Kind.CHOICE else value)
        for name in fields:
            flat[name] = np.insert(flat[name], at, np.array(inserts[name], dtype=flat[name].dtype)) \
                if at else flat[name]
        counts = np.where(ok, np.where(np.isin(np.arange(n), slow), counts, mask.sum(axis=1)), 0)
    else:
        counts = mask.sum(axis=1)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return _arrow_column(group, offsets, flat), ok


def _arrow_column(group: ir.Group, offsets: np.ndarray, flat: dict) -> pl.Series:
    import pyarrow as pa
    arrays = []
    for f in group.fields:
        values = flat[f.name]
        if f.type.kind == Kind.CHOICE:
            values = np.array(f.type.choices, dtype=object)[values] if values.size else np.array([], dtype=object)
            arrays.append(pa.array(values.tolist(), type=pa.large_string()))
        else:
            arrays.append(pa.array(values))
    struct = pa.StructArray.from_arrays(arrays, names=[f.name for f in group.fields])
    column = pl.from_arrow(pa.LargeListArray.from_arrays(pa.array(offsets, type=pa.int64()), struct))
    return column.alias(group.name).cast(dtype_of(group))


_ARROW = {Kind.QUANTITY: "float64", Kind.INTEGER: "int64", Kind.BOOLEAN: "bool_",
          Kind.TEXT: "large_string", Kind.CHOICE: "large_string"}


def list_column(group: ir.Group, lists: list) -> pl.Series:
    """Rows' legs (lists of dicts) as a List(Struct) column, built through Arrow arrays
    (one per field) and the rows' offsets: building it from the dicts themselves cost
    more than reading them."""
    import pyarrow as pa
    names = [f.name for f in group.fields]
    flat: dict[str, list] = {name: [] for name in names}
    offsets = [0]
    for legs in lists:
        for leg in legs:
            for name in names:
                flat[name].append(leg[name])
        offsets.append(offsets[-1] + len(legs))
    arrays = [pa.array(flat[f.name], type=getattr(pa, _ARROW[f.type.kind])()) for f in group.fields]
    struct = pa.StructArray.from_arrays(arrays, names=names) if names else pa.array([{}] * offsets[-1])
    column = pl.from_arrow(pa.LargeListArray.from_arrays(pa.array(offsets, type=pa.int64()), struct))
    return column.alias(group.name).cast(dtype_of(group))


def legs_lists(column, n: int) -> list[list[dict]]:
    """The legs column as the scalar path's values: a list of dicts per row."""
    if isinstance(column, pl.Series):
        return [legs or [] for legs in column.to_list()]
    return [list(legs or []) for legs in column] if column is not None else [[]] * n


@dataclass
class FlatLegs:
    """A chunk's legs for the kernel: offsets (n + 1) and each field over every leg."""
    offsets: np.ndarray
    fields: pl.DataFrame
    _cats: dict = field(default_factory=dict)

    @staticmethod
    def of(column, n: int) -> "FlatLegs":
        series = column if isinstance(column, pl.Series) else pl.Series(legs_lists(column, n))
        lengths = series.list.len().fill_null(0).to_numpy().astype(np.int64)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        flat = series.explode(empty_as_null=False, keep_nulls=False)  # the legs themselves
        if flat.len() != offsets[-1]:  # pragma: no cover - Polars' contract
            raise ValueError("legs: the flattened legs do not match their counts")
        fields = flat.struct.unnest() if flat.len() else pl.DataFrame(
            {f.name: pl.Series([], dtype=f.dtype) for f in series.dtype.inner.fields})
        return FlatLegs(offsets, fields)

    def values(self, name: str) -> np.ndarray:
        column = self.fields.get_column(name)
        if column.dtype == pl.Boolean:
            return column.fill_null(False).to_numpy().astype(np.uint8)
        return column.fill_null(0).to_numpy()

    def cat(self, name: str) -> Cat:
        if name not in self._cats:
            self._cats[name] = Cat.of_series(self.fields.get_column(name))
        return self._cats[name]
