"""Parameter tables as arrays: the period in force by searchsorted on the local day, the
value by the codes of the keys into a dense table per period."""

from __future__ import annotations

import numpy as np

from dsl.ir import ast as ir

from .. import records
from .values import Cat


class Table:
    def __init__(self, parameter: ir.Parameter):
        self.parameter = parameter
        self.starts = np.array([p.start.toordinal() - records.EPOCH_DAY for p in parameter.periods],
                               dtype=np.int64)
        periods = parameter.periods
        if not parameter.keys:
            # the scalar path indexes its list with the period index: -1 is the last one
            self.values = np.array([p.scalar for p in periods], dtype=np.float64)
            return
        # every key value any period lists, per key position, in a fixed order
        self.domains: list[list] = [[] for _ in parameter.keys]
        seen: list[dict] = [{} for _ in parameter.keys]
        for period in periods:
            for key, _ in period.entries:
                for j, part in enumerate(key):
                    part = records.runtime_value(part)
                    if part not in seen[j]:
                        seen[j][part] = len(self.domains[j])
                        self.domains[j].append(part)
        self.index = seen
        self.dims = [max(len(d), 1) for d in self.domains]
        self.strides = np.cumprod([1] + self.dims[::-1][:-1])[::-1].astype(np.int64)
        size = int(np.prod(self.dims))
        self.dense = np.zeros((len(periods), size), dtype=np.float64)
        self.present = np.zeros((len(periods), size), dtype=bool)
        for p, period in enumerate(periods):
            for key, value in period.entries:
                code = sum(seen[j][records.runtime_value(part)] * int(self.strides[j])
                           for j, part in enumerate(key))
                self.dense[p, code] = value
                self.present[p, code] = True

    def period(self, day: np.ndarray):
        """Index of the period in force at each local day (an int when one for all)."""
        if day.size:
            low, high = np.searchsorted(self.starts, [day.min(), day.max()], side="right") - 1
            if low == high:
                return int(low)
        return np.searchsorted(self.starts, day, side="right") - 1

    def key_codes(self, j: int, value, n: int) -> np.ndarray:
        """Codes of key position j (-1: a value no period lists)."""
        index = self.index[j]
        if isinstance(value, Cat):
            # code -1 (a row that does not count) wraps to the -1 at the end
            mapping = np.array([index.get(label, -1) for label in value.labels] + [-1], dtype=np.int64)
            return np.take(mapping, value.codes, mode="wrap")
        if isinstance(value, (str, bool, int, float, np.generic)):
            scalar = value.item() if isinstance(value, np.generic) else value
            found = index.get(scalar, -1) if not (isinstance(scalar, float) and scalar != scalar) else -1
            return np.full(n, found, dtype=np.int64)
        array = np.asarray(value)
        if array.dtype == bool:
            mapping = np.array([index.get(False, -1), index.get(True, -1)], dtype=np.int64)
            return mapping[array.astype(np.int64)]
        # whole numbers (an int64 array, or a float64 array holding them)
        keys = [k for k in self.domains[j] if isinstance(k, (int, float)) and not isinstance(k, bool)]
        if not keys:
            return np.full(n, -1, dtype=np.int64)
        order = np.argsort(np.asarray(keys, dtype=np.float64), kind="stable")
        sorted_keys = np.asarray(keys, dtype=np.float64)[order]
        codes = np.asarray([index[keys[i]] for i in order], dtype=np.int64)
        at = np.searchsorted(sorted_keys, array.astype(np.float64))
        at_c = np.minimum(at, sorted_keys.size - 1)
        hit = (at < sorted_keys.size) & (sorted_keys[at_c] == array)
        return np.where(hit, codes[at_c], -1)

    def lookup(self, period, keys: list, n: int):
        """(values, missing) for the rows' period indexes (or one for all) and key values."""
        if not self.parameter.keys:
            return self.values[period], np.zeros(n, dtype=bool)
        composite = None
        missing = None
        for j, value in enumerate(keys):
            codes = self.key_codes(j, value, n)
            bad = codes < 0
            missing = bad if missing is None else missing | bad
            part = np.where(bad, 0, codes) * self.strides[j] if j + 1 < len(keys) or self.strides[j] != 1 \
                else np.where(bad, 0, codes)
            composite = part if composite is None else composite + part
        if isinstance(period, int):
            if period < 0:
                return np.zeros(n), np.ones(n, dtype=bool)
            missing |= ~self.present[period][composite]
            return self.dense[period][composite], missing
        missing |= period < 0
        p = np.maximum(period, 0)
        missing |= ~self.present[p, composite]
        return self.dense[p, composite], missing
