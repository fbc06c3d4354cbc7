"""Which text cells may need str.strip(), found in C over Polars' string views.

Every chunk's ids and accounts are checked for leading or trailing whitespace (the
scalar path strips them). text.maybe_padded does it in NumPy, some ten passes over the
views per column, which was a third of reading a typed chunk; this fixed C function does
the same test in one pass. It gives the same superset of suspects (test_native_text.py
checks it against maybe_padded), so the rows it flags are still stripped by Python.

Like the formula kernels, the source is compiled by whoever holds a builder
(tanpu/kernels.py); without one, or for a column that is not one chunk of string views,
`padded` gives None and text.py's NumPy test runs.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any, Callable, Optional

import numpy as np
import polars as pl

from . import text as tx

SOURCE = r"""
#include <stdint.h>
#include <string.h>

/* what str.strip() removes, by the bytes text.py names: ASCII 9-13 and 28-32, and the
   first bytes of the UTF-8 encodings of the other whitespace characters */
static inline int ascii_ws(unsigned b) { return b <= 32 && (b >= 28 || (b >= 9 && b <= 13)); }
static inline int lead_multibyte_ws(unsigned b) { return b == 0xC2 || (b >= 0xE1 && b <= 0xE3); }

/* a[0]: the views (16 bytes a cell), a[1]: the data buffers' addresses, a[2]: one byte
   per cell, 0 for a null (whose view may hold anything), or NULL when there is none;
   a[3]: suspect (out), a[4]: present, i.e. not null and not empty (out) */
void tanpu_padded(int64_t n, void **a) {
    const uint8_t *views = (const uint8_t *)a[0];
    const uint8_t *const *buffers = (const uint8_t *const *)a[1];
    const uint8_t *valid = (const uint8_t *)a[2];
    uint8_t *suspect = (uint8_t *)a[3];
    uint8_t *present = (uint8_t *)a[4];
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *v = views + 16 * i;
        uint32_t len;
        memcpy(&len, v, 4);
        if (len == 0 || (valid && !valid[i])) { suspect[i] = 0; present[i] = 0; continue; }
        const uint8_t *p = v + 4;
        if (len > 12) {
            uint32_t buffer, offset;
            memcpy(&buffer, v + 8, 4);
            memcpy(&offset, v + 12, 4);
            p = buffers[buffer] + offset;
        }
        unsigned first = p[0], last = p[len - 1];
        int s = ascii_ws(first) || lead_multibyte_ws(first) || ascii_ws(last);
        if (!s && last >= 0x80 && last <= 0xBF)
            s = (len >= 2 && p[len - 2] == 0xC2) || (len >= 3 && lead_multibyte_ws(p[len - 3]));
        suspect[i] = (uint8_t)s;
        present[i] = 1;
    }
}
"""


class NativeText:
    """The compiled scan, built on first use."""

    def __init__(self, build: Callable[[str], Any]):
        self._build = build
        self._function = None
        self._tried = False
        self._lock = threading.Lock()

    def _get(self):
        if not self._tried:
            with self._lock:
                if not self._tried:
                    from .kernel import entry

                    library = self._build(SOURCE)
                    self._function = entry(library, "tanpu_padded") if library is not None else None
                    self._tried = True
        return self._function

    def padded(self, series: pl.Series) -> Optional[tuple[np.ndarray, np.ndarray]]:
        """(may need stripping, not empty) per cell, as text.maybe_padded and Edges give
        them; None when this column is left to them."""
        function = self._get()
        if function is None:
            return None
        views = tx._views(series)
        if views is None:
            return None
        view, _, data = views
        n = view.shape[0]
        suspect = np.zeros(n, dtype=np.uint8)
        present = np.zeros(n, dtype=np.uint8)
        if n == 0:
            return suspect.view(bool), present.view(bool)
        view = np.ascontiguousarray(view)
        buffers = (ctypes.c_void_p * max(1, len(data)))(*[b.ctypes.data for b in data])
        valid = series.is_not_null().to_numpy().astype(np.uint8) if series.null_count() else None
        arguments = (ctypes.c_void_p * 5)(view.ctypes.data, ctypes.cast(buffers, ctypes.c_void_p),
                                          None if valid is None else valid.ctypes.data,
                                          suspect.ctypes.data, present.ctypes.data)
        function(n, arguments)  # the GIL is let go of, as for the formula kernels
        return suspect.view(bool), present.view(bool)
