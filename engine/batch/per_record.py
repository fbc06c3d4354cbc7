"""The batch engine's per-record results for a caller that applies the cross-record rules
itself, after each account's stored state: the ledger (registry/ledger.py), which judges
a credit's records after what the account's earlier credits left.

The ledger's rules read more of a result than its outcome: a duplicate rule's key fields,
an overlap's start and end, a near-duplicate rule's fields (`Result.values`), what the
formulas gave each counter (`Result.amounts`), and, for a record a reduction cap cuts, its
points computed again from the capped reduction. The scalar Engine's results carry all of
it (every input in `values`, the points recomputed by its formulas from them); these
carry the same, taken from the batch's columns: `values` holds only what the rules read
(Rules.needed_inputs, as Rules._with_state gives the reference when the batch engine
itself judges with a state) with the record's id, account and time, and a capped
record's points are recomputed from the record as sent, read again (PerRecordResults).
tests/engine/test_batch_per_record.py compares them with the scalar Engine's;
tests/webui/test_api_credit_batch.py credits the same streams both ways and compares
the ledgers.
"""

from __future__ import annotations

from itertools import repeat
from typing import Mapping, Optional, Sequence

import numpy as np
import polars as pl

from ..result import COLUMNS, Result
from .counters import COLUMN as COUNTER_COLUMN
from .part import Part
from .rules import Batch, Rules
from .values import Reasons

# the frame's columns in the order Result takes them positionally (row after counters)
_FIELDS = tuple(name for name in COLUMNS if name != "row")
assert _FIELDS == tuple(Result.__dataclass_fields__)[:len(_FIELDS)]
assert tuple(Result.__dataclass_fields__)[len(_FIELDS):] == ("row", "explanation", "values", "amounts")


class PerRecordResults:
    """`results`: the results of engine.Engine.evaluate(per_record_only=True) for the
    same records, in their order, equal in every field the ledger reads (module
    docstring); `recompute_points(result, capped mg)`: the points of one of them (or of
    a copy: found by its row) after a cap cut its reduction, as Engine.recompute_points
    gives them: the record as sent read again by the scalar reader and its formulas run
    with the capped reduction, which is what the scalar Engine's results did (their
    `values` are that reading). A credit caps a few records in a hundred; the batch's
    own recomputation over its columns (BatchEngine._recompute, for thousands at once)
    cost 1-5 ms a call for one record (its text columns coded again each time)."""

    def __init__(self, frame: pl.DataFrame, part: Part, batch: Batch, rules: Rules,
                 counters: tuple[str, ...], program, reader, records: Sequence[Mapping],
                 column_units: Optional[Mapping[str, str]]):
        self._program, self._reader = program, reader
        self._records, self._units = records, dict(column_units or {})
        self._rows = part.rows
        self._at: Optional[dict[int, int]] = None
        self.results = _results(frame, part, batch, rules, counters)

    def recompute_points(self, result: Result, reduction_mg: int) -> int:
        if self._at is None:
            self._at = {row: position for position, row in enumerate(self._rows.tolist())}
        row = result.row
        values = self._reader.read(self._records[self._at[row]], f"row-{row}", self._units)
        return self._program.run(values, None, reduction_mg)[4]  # the verdict's points


def _results(frame: pl.DataFrame, part: Part, batch: Batch, rules: Rules,
             counters: tuple[str, ...]) -> list[Result]:
    """Built column by column and by map() (no Python loop over a row's fields): a
    1,000-record credit makes 1,000 of each."""
    n = frame.height
    columns = [_listed(frame.get_column(name), n) if name in ("flags", "counters")
               else frame.get_column(name).to_list() for name in _FIELDS]
    rows = frame.get_column("row").to_list()

    # what the rules read, for the records that were read (an invalid one has no values)
    valid = part.reason != Reasons.INVALID
    every = bool(valid.all())
    positions = np.arange(n) if every else np.flatnonzero(valid)
    inputs = rules.input_values(batch, positions)
    names = tuple(inputs) + ("id", "account", "time")
    own = [columns[_FIELDS.index(name)] for name in ("id", "account", "time")]
    if not every:
        own = [[column[p] for p in positions.tolist()] for column in own]
    read = list(map(dict, map(zip, repeat(names), zip(*inputs.values(), *own))))
    if every:
        values: list[Optional[dict]] = read
    else:
        values = [None] * n
        for position, v in zip(positions.tolist(), read):
            values[position] = v

    # what the formulas gave each counter, for a credited record (the scalar Engine's
    # verdict of any other has none)
    amounts: list[tuple] = [()] * n
    if counters:
        kept = [part.columns[COUNTER_COLUMN + name].tolist() for name in counters]
        for position in np.flatnonzero(part.credited).tolist():
            amounts[position] = tuple(column[position] for column in kept)

    return list(map(Result, *columns, rows, repeat(None, n), values, amounts))


def _listed(series: pl.Series, n: int) -> list[tuple]:
    """A column of lists (flags, counters) as Result holds them: tuples; one empty tuple
    repeated when every list is empty (no rule has judged yet: the usual case)."""
    if n == 0 or not (series.list.len() > 0).any():
        return [()] * n
    return [tuple(x) for x in series.to_list()]
