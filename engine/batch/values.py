"""Columns of the batch evaluator, and the table of outcome reasons.

A number is a NumPy array (int64 where the scalar path holds a Python int, float64
where it holds a float). Text and choices are `Cat`: codes into a tuple of labels.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import polars as pl

from ..result import CREDITED, INVALID


@dataclass
class Cat:
    codes: np.ndarray          # int32; -1: none of the labels (only in rows that do not count)
    labels: tuple[str, ...]

    @staticmethod
    def of_series(series: pl.Series) -> "Cat":
        values = series.fill_null("") if series.null_count() else series
        labels = values.unique(maintain_order=True).to_list()
        if not labels:
            return Cat(np.zeros(0, dtype=np.int32), ())
        codes = values.cast(pl.Enum(labels)).to_physical().cast(pl.Int32).to_numpy()
        return Cat(codes, tuple(labels))

    def strings(self) -> list[str]:
        labels = list(self.labels) + [""]
        return [labels[c] for c in self.codes.tolist()]








class Reasons:
    """(status, code, message) of every outcome, by index; 0 is credited, 1 invalid.

    Shared by the chunks of one run, so that an index means the same everywhere.
    """

    CREDITED = 0
    INVALID = 1

    def __init__(self):
        self.items: list[tuple[str, str, str]] = [(CREDITED, "", ""), (INVALID, "INVALID_RECORD", "")]
        self._index = {item: i for i, item in enumerate(self.items)}
        self._lock = threading.Lock()  # chunks are evaluated in threads

    def add(self, status: str, code: str, message: str) -> int:
        item = (status, code, message)
        index = self._index.get(item)
        if index is None:
            with self._lock:
                index = self._index.get(item)
                if index is None:
                    index = len(self.items)
                    self.items.append(item)
                    self._index[item] = index
        return index

    def column(self, part: int) -> pl.Series:
        return pl.Series([item[part] for item in self.items], dtype=pl.String)


def nulls(n: int, dtype=pl.Int64) -> pl.Series:
    """n nulls: one null repeated (`new_from_index`), not `pl.repeat`, which runs on
    Polars' thread pool, shared with the chunk threads' Polars work: 0.1-0.5 ms a call
    for 262k rows against 0.005 ms (2026-12-07), four calls a chunk shown."""
    return pl.Series("", [None], dtype=dtype).new_from_index(0, n)


def empty_lists(name: str, n: int) -> pl.Series:
    """n empty lists of text (the `flags` and `counters` of records that have none).

    Made as n rows of zero width reshaped from an empty column, then cast to a list:
    0.6 ms for a million rows where repeating one empty list (`new_from_index`) took
    142 ms, a tenth of a 7-day-window frame's whole evaluation (bench/bench_history.py);
    the same Series (tests/engine/test_batch_differential.py compares every column)."""
    return pl.Series(name, [], dtype=pl.String).reshape((n, 0)).cast(pl.List(pl.String)).alias(name)
