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
from ..records import RecordError
from .values import Cat

_DTYPE = {Kind.QUANTITY: pl.Float64, Kind.INTEGER: pl.Int64, Kind.BOOLEAN: pl.Boolean,
          Kind.TEXT: pl.String, Kind.CHOICE: pl.String}


def dtype_of(group: ir.Group) -> pl.DataType:
    return pl.List(pl.Struct({s.name: _DTYPE[s.type.kind] for s in group.fields}))


def legs_column(frame: pl.DataFrame, group: ir.Group, units: Mapping[str, str],
                tz: str) -> tuple[pl.Series, np.ndarray]:
    """(the group's legs per row, ok): ok False where a row's legs cannot be read (the
    row is then read by engine/records.py, which gives its error)."""
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
