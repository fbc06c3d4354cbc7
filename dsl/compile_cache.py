"""Compiled methodology files kept between runs, as Python keeps bytecode.

Every command that reads a methodology file (`tanpu eval`, `inspect`, `test`, ...) used to
import the parser, the checkers and Lark and compile the file again: about 0.3 s of a
start, where loading the compiled result takes a few milliseconds. An entry is keyed by
everything the result depends on: the file's bytes and name (diagnostics carry it), the
compiler's own code (every file of dsl/), the Lark and Pint versions, and the Python
version. A changed compiler or library therefore never serves an old result, and an
entry that does not load is compiled again (dsl/cache.py keeps the files).
"""

from __future__ import annotations

import hashlib
import pickle
import sys
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from . import cache

if TYPE_CHECKING:
    from . import Compiled

_MAGIC = b"tanpu-compiled 1\n"
KEPT = 256  # compilations kept; the least recently written beyond this are removed


@lru_cache(maxsize=1)
def compiler_fingerprint() -> bytes:
    """A digest of the compiler's code and of the libraries whose answers it keeps."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*")):
        if path.suffix in (".py", ".lark") and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(root)).encode("utf-8") + b"\0")
            digest.update(path.read_bytes() + b"\0")
    for name in ("lark", "pint"):
        digest.update(f"{name} {cache.installed_version(name)}".encode("utf-8") + b"\0")
    digest.update(("%d.%d" % sys.version_info[:2]).encode("ascii"))
    return digest.digest()


def _entry(data: bytes, file: str) -> tuple[str, bytes]:
    key = hashlib.sha256(compiler_fingerprint() + file.encode("utf-8") + b"\0" + data).hexdigest()
    return f"compiled-{key[:40]}.pickle", _MAGIC + key.encode("ascii") + b"\n"


def load(data: bytes, file: str) -> Optional["Compiled"]:
    """The compilation of these bytes kept by an earlier run, or None."""
    name, header = _entry(data, file)
    kept = cache.read(name)
    if kept is None or not kept.startswith(header):
        return None
    try:
        return pickle.loads(kept[len(header):])
    except Exception:  # a truncated or foreign entry: compile instead
        return None


def store(data: bytes, file: str, compiled: "Compiled") -> None:
    name, header = _entry(data, file)
    try:
        payload = pickle.dumps(compiled, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # pragma: no cover - everything in a Compiled pickles today
        return
    cache.write(name, header + payload)
    _prune()


def _prune() -> None:
    """An expert who checks a file at every save writes an entry each time: keep the
    newest KEPT, so that the folder does not grow without end."""
    directory = cache.cache_dir()
    if directory is None:
        return
    try:
        entries = list(directory.glob("compiled-*.pickle"))
        if len(entries) <= KEPT:
            return
        entries.sort(key=lambda p: p.stat().st_mtime_ns)
        for stale in entries[:len(entries) - KEPT]:
            stale.unlink()
    except OSError:  # another process pruned at the same time: nothing is lost but time
        pass
