"""The engine's C, in two kinds.

- The fixed C, the same for every methodology: numeric.h (the numeric contract, included
  by every generated kernel), text.c (the batch engine's text readers) and numeric.c
  (numeric.h's functions exported one by one, for the tests). setup.py builds text.c and
  numeric.c at install time into the extension module `engine.native._fixed`; `fixed()`
  opens it for ctypes.
- The per-methodology kernels (engine/batch/kernel.py writes their source): compiled at
  run time and kept in a cache folder by build.py, the engine's one module that writes
  files and runs a program.
"""

from __future__ import annotations

import ctypes
import importlib
import threading
import warnings
from typing import Optional

_library: Optional[ctypes.CDLL] = None
_tried = False
_lock = threading.Lock()


def fixed() -> Optional[ctypes.CDLL]:
    """The fixed C's shared library, loaded once; None, with one RuntimeWarning per
    process, in an installation built without it (the callers then run NumPy code that
    gives the same results, slower)."""
    global _library, _tried
    if not _tried:
        with _lock:
            if not _tried:
                _library = _open()
                _tried = True
    return _library


def _open() -> Optional[ctypes.CDLL]:
    try:
        return ctypes.CDLL(importlib.import_module(f"{__name__}._fixed").__file__)
    except (ImportError, OSError) as error:
        warnings.warn(f"the engine's C text readers are not built ({error}); the batch engine "
                      f"reads text with NumPy instead (reinstall with a C compiler: "
                      f"`pip install -e .` or `make install`)", RuntimeWarning, stacklevel=3)
        return None
