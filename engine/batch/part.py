"""What per-record evaluation keeps of one chunk (a Part), and parts joined into one.

Its own module so that engine.py, which makes parts, and store.py, which keeps them
(on disk for big files), both import it and neither imports the other's back: engine.py
uses store.py, store.py only the engine object it is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import polars as pl

from .values import Cat


@dataclass
class Part:
    """The kept columns of one chunk after per-record evaluation."""

    rows: np.ndarray
    ids: pl.Series
    accounts: pl.Series
    time: np.ndarray
    reason: np.ndarray
    messages: pl.Series            # String; the reason of invalid rows, null elsewhere
    reduction_mg: np.ndarray
    points: np.ndarray
    masses: dict[str, np.ndarray]  # baseline/project/leakage mg, where defined
    credited: np.ndarray           # credited by the formulas (the masses are shown)
    columns: dict = field(default_factory=dict)
    # the valid records in canonical order, their account codes and times along it, when
    # the history windows sorted them already (engine/batch/history.py): the counters
    # reuse it (rules.Batch.ordered)
    ordered: Optional[tuple[np.ndarray, np.ndarray, np.ndarray]] = None
    # a Future of rules.find_duplicate_ids' positions, when the chunk is the whole batch
    # and they were sought beside its history windows (BatchEngine._evaluate)
    duplicate_ids: Optional[Any] = None
    # the kept text columns that were read as codes (a Cat: an input the file does not
    # have, as `activity` mostly), as read: `columns` holds them as text (the store joins
    # and spills chunks of other labels), and the carried rules' points recomputed after a
    # cap read these instead, without Polars making the codes again (carried._prepare)
    coded: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.rows.size)


def concat_parts(parts: list[Part]) -> Part:
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    columns = {}
    for name, column in first.columns.items():
        if isinstance(column, Cat):
            columns[name] = Cat(np.concatenate([p.columns[name].codes for p in parts]), column.labels)
        elif isinstance(column, pl.Series):
            columns[name] = pl.concat([p.columns[name] for p in parts], rechunk=False)
        else:
            columns[name] = np.concatenate([p.columns[name] for p in parts])
    return Part(
        np.concatenate([p.rows for p in parts]), pl.concat([p.ids for p in parts], rechunk=False),
        pl.concat([p.accounts for p in parts], rechunk=False), np.concatenate([p.time for p in parts]),
        np.concatenate([p.reason for p in parts]), pl.concat([p.messages for p in parts], rechunk=False),
        np.concatenate([p.reduction_mg for p in parts]), np.concatenate([p.points for p in parts]),
        {k: np.concatenate([p.masses[k] for p in parts]) for k in first.masses},
        np.concatenate([p.credited for p in parts]), columns)
