"""Run-time values of the columnar evaluator, and the table of outcome reasons.

A number is a NumPy array (int64 where the scalar path holds a Python int, float64
where it holds a float) or a Python scalar (a constant, broadcast). Text and choices are
`Cat`: codes into a tuple of labels (a constant is a plain str).
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

    def index(self, label: str) -> int:
        try:
            return self.labels.index(label)
        except ValueError:
            return -1

    def recode(self, labels: tuple[str, ...]) -> np.ndarray:
        """These values as codes into other labels (-1 where a value is not among them)."""
        if labels == self.labels:
            return self.codes
        where = {label: i for i, label in enumerate(labels)}
        mapping = np.array([where.get(label, -1) for label in self.labels] + [-1], dtype=np.int32)
        return mapping[np.where(self.codes >= 0, self.codes, len(self.labels))]

    def strings(self) -> list[str]:
        labels = list(self.labels) + [""]
        return [labels[c] for c in self.codes.tolist()]


def as_cat(value, n: int) -> Cat:
    if isinstance(value, Cat):
        return value
    if isinstance(value, str):
        return Cat(np.zeros(n, dtype=np.int32), (value,))
    raise TypeError(f"not text: {type(value).__name__}")  # pragma: no cover


def union(a: Cat, b: Cat) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    labels = tuple(dict.fromkeys(a.labels + b.labels))
    return labels, a.recode(labels), b.recode(labels)


def full(value, n: int) -> np.ndarray:
    """A value (array or scalar) as an array of n."""
    array = np.asarray(value)
    if array.shape == (n,):
        return array
    return np.full(n, array.item() if array.ndim == 0 else array, dtype=array.dtype)


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
