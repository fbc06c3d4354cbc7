"""Reading text cells in C: text.py's parsers, each as one pass over the cells.

Reading a CSV chunk is mostly turning text into values: the ISO datetimes, the numbers
and units of quantities, choices, and the whitespace test of every id and account (the
scalar path strips them). text.py does each in NumPy, grouped by cell width and a pass
per byte position, which was most of the batch path's time on a CSV. The fixed C
functions of engine/native/text.c do the same tests in one pass each, with the same
acceptance rules (a cell either one is not sure of goes to engine/records.py, as before):
test_native_text.py checks every function against its text.py counterpart on generated
cells, bit for bit where a cell is accepted.

The C is not per-methodology, so it is built at install time into the extension
engine.native._fixed (setup.py) and called here through ctypes; in an installation
built without it each method of NativeText runs text.py's version (one warning, from
engine.native.fixed).
"""

from __future__ import annotations

import ctypes
import threading
from typing import Callable, Optional

import numpy as np
import polars as pl

from ..native import fixed
from . import text as tx
from .kernel import entry

SYMBOLS = ("tanpu_padded", "tanpu_decimals", "tanpu_iso_datetimes", "tanpu_match", "tanpu_unit_codes")


class NativeText:
    """text.py's readers under the same names, in C; each falls back to text.py's NumPy
    version where the C cannot run (the extension not built, a column that is not one
    chunk of string views), so a caller never chooses between the two."""

    def __init__(self, load: Callable[[], Optional[ctypes.CDLL]] = fixed):
        """`load`: the library of text.c, or None (the extension is not built)."""
        self._load = load
        self._functions: Optional[dict] = None
        self._lock = threading.Lock()

    def _function(self, symbol: str):
        if self._functions is None:
            with self._lock:
                if self._functions is None:
                    library = self._load()
                    self._functions = {s: entry(library, s) for s in SYMBOLS} if library is not None else {}
        return self._functions.get(symbol)

    def padded(self, series: pl.Series) -> tuple[np.ndarray, np.ndarray]:
        """text.padded: (may need stripping, not empty) per cell."""
        function = self._function("tanpu_padded")
        views = tx._views(series) if function is not None else None
        if views is None:
            return tx.padded(series)
        view, _, data = views
        n = view.shape[0]
        suspect = np.zeros(n, dtype=np.uint8)
        present = np.zeros(n, dtype=np.uint8)
        if n:
            view = np.ascontiguousarray(view)
            buffers = (ctypes.c_void_p * max(1, len(data)))(*[b.ctypes.data for b in data])
            valid = series.is_not_null().to_numpy().astype(np.uint8) if series.null_count() else None
            arguments = (ctypes.c_void_p * 5)(view.ctypes.data, ctypes.cast(buffers, ctypes.c_void_p),
                                              None if valid is None else valid.ctypes.data,
                                              suspect.ctypes.data, present.ctypes.data)
            function(n, arguments)  # the GIL is let go of, as for the formula kernels
        return suspect.view(bool), present.view(bool)

    def decimals(self, text: "tx.Bytes") -> "tx.Decimals":
        """text.decimals. The outputs of a cell that is not ok are unspecified, as there."""
        function = self._function("tanpu_decimals")
        if function is None:
            return tx.decimals(text)
        n = text.start.size
        out = tx.Decimals(np.zeros(n), np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.uint8),
                          np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.uint8))
        _run(function, text, [out.value, out.mantissa, out.negative, out.dots, out.unit_start, out.ok])
        out.negative, out.ok = out.negative.view(bool), out.ok.view(bool)
        return out

    def iso_datetimes(self, text: "tx.Bytes"):
        """text.iso_datetimes: (local µs, offset µs, has_offset, ok)."""
        function = self._function("tanpu_iso_datetimes")
        if function is None:
            return tx.iso_datetimes(text)
        n = text.start.size
        local, offset = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        has_offset, ok = np.zeros(n, dtype=np.uint8), np.zeros(n, dtype=np.uint8)
        _run(function, text, [local, offset, has_offset, ok])
        return local, offset, has_offset.view(bool), ok.view(bool)

    def match_strings(self, text: "tx.Bytes", candidates) -> np.ndarray:
        """text.match_strings."""
        function = self._function("tanpu_match")
        if function is None:
            return tx.match_strings(text, candidates)
        encoded = [c.encode("utf-8") for c in candidates]
        words = np.frombuffer(b"".join(encoded) or b"\0", dtype=np.uint8)
        offsets = np.cumsum([0] + [len(e) for e in encoded], dtype=np.int64)
        k = np.array([len(encoded)], dtype=np.int64)
        index = np.full(text.start.size, -1, dtype=np.int32)
        _run(function, text, [words, offsets, k, index])
        return index

    def unit_codes(self, text: "tx.Bytes", unit_start: np.ndarray, ok: np.ndarray, limit: int = 16):
        """text.unit_codes: (code per cell or -1, unit texts)."""
        function = self._function("tanpu_unit_codes")
        if function is None:
            return tx.unit_codes(text, unit_start, ok, limit)
        n = text.start.size
        codes = np.full(n, -1, dtype=np.int32)
        first = np.zeros(max(1, limit), dtype=np.int64)
        count = np.zeros(1, dtype=np.int64)
        if n:
            arrays = [np.ascontiguousarray(text.data, dtype=np.uint8), np.ascontiguousarray(unit_start, dtype=np.int64),
                      np.ascontiguousarray(text.end, dtype=np.int64), np.ascontiguousarray(ok, dtype=np.uint8),
                      np.array([limit], dtype=np.int64), codes, first, count]
            function(n, (ctypes.c_void_p * len(arrays))(*[x.ctypes.data for x in arrays]))
        units = [bytes(text.data[unit_start[i]:text.end[i]]).decode("utf-8", "replace")
                 for i in first[:int(count[0])].tolist()]
        return codes, units


def _run(function, text: "tx.Bytes", outputs: list) -> None:
    """Calls a reader with the cells' (data, start, end, valid) and its output arrays."""
    n = text.start.size
    if n == 0:
        return
    data = np.ascontiguousarray(text.data, dtype=np.uint8)
    start = np.ascontiguousarray(text.start, dtype=np.int64)
    end = np.ascontiguousarray(text.end, dtype=np.int64)
    valid = np.ascontiguousarray(text.valid, dtype=np.uint8)
    arrays = [data, start, end, valid, *outputs]
    function(n, (ctypes.c_void_p * len(arrays))(*[x.ctypes.data for x in arrays]))
