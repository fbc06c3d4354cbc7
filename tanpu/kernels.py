"""Compiles and loads the C kernels of the batch engine (engine/batch/kernel.py).

The engine only writes C source; running the compiler and keeping the shared library
are side effects, so they live here, at the edge, and `tanpu eval` hands `build` to the
engine. A library is kept in the cache folder (dsl/cache.py) under the hash of its
source, the compiler flags and the machine, so a methodology's kernel is compiled once
(about 0.1 s with gcc), not at every run. With no C compiler, or if it fails, `build`
gives None and the engine evaluates the formulas with NumPy: the same results, slower.

The flags are part of the numeric contract: -ffp-contract=off (no fused multiply-add,
which rounds once where the scalar path rounds twice) and no fast-math option.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Optional

from dsl.cache import cache_dir

FLAGS = ["-O2", "-std=gnu11", "-fPIC", "-shared", "-ffp-contract=off", "-fno-fast-math"]
if platform.machine() in ("x86_64", "AMD64"):
    # floor/ceil/rint as single instructions (every CPU NumPy 2 runs on has SSE4.1)
    FLAGS.append("-msse4.1")

_loaded: dict[str, ctypes.CDLL] = {}
_lock = threading.Lock()
_scratch: Optional[Path] = None


def compiler() -> Optional[str]:
    return shutil.which(os.environ.get("CC", "cc"))


def _folder() -> Path:
    global _scratch
    base = cache_dir()
    if base is not None:
        folder = base / "kernels"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return folder
        except OSError:
            pass
    if _scratch is None:  # no cache: a folder of this process's own, gone at its exit
        _scratch = Path(tempfile.mkdtemp(prefix="tanpu-kernels-"))
        atexit.register(shutil.rmtree, _scratch, True)
    return _scratch


KEEP = 256  # libraries kept in the cache folder, newest first (an expert's every edit makes one)


def build(source: str) -> Optional[ctypes.CDLL]:
    """The loaded library of this C source, compiled if need be; None if it cannot be."""
    with _lock:
        library = library_path(source)
        function = _loaded.get(library.name)
        if function is None:
            function = _load_or_compile(source, library)
            if function is not None:
                _loaded[library.name] = function
        return function


def library_path(source: str) -> Path:
    """Where the library of this source is kept: named by the hash of all it depends on."""
    key = hashlib.sha256("\0".join([source, *FLAGS, platform.machine()]).encode()).hexdigest()[:32]
    return _folder() / f"{key}.so"


def _load_or_compile(source: str, library: Path) -> Optional[ctypes.CDLL]:
    if library.exists():
        try:
            return _load(library)
        except OSError:  # damaged (a disk full, a copy cut short): compiled again
            library.unlink(missing_ok=True)
    cc = compiler()
    if cc is None:
        return None
    with tempfile.TemporaryDirectory(dir=library.parent) as work:
        c_file = Path(work) / "kernel.c"
        c_file.write_text(source, encoding="utf-8")
        built = Path(work) / "kernel.so"
        done = subprocess.run([cc, *FLAGS, "-o", str(built), str(c_file), "-lm"],
                              capture_output=True, text=True)
        if done.returncode != 0:
            warnings.warn(f"the C kernel did not compile; the formulas run row by row:\n"
                          f"{done.stderr[-2000:]}", RuntimeWarning, stacklevel=3)
            return None
        os.replace(built, library)  # whole or not at all, for processes starting at once
    _prune(library.parent)
    return _load(library)


def _load(library: Path) -> ctypes.CDLL:
    return ctypes.CDLL(str(library))


def _prune(folder: Path) -> None:
    try:
        libraries = sorted(folder.glob("*.so"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in libraries[KEEP:]:
            old.unlink(missing_ok=True)
    except OSError:  # another process pruned first
        pass
