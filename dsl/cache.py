"""A small on-disk cache for work that is the same at every start (the LALR tables), and
the folder where a file the checker failed on is kept for a bug report.

The cache only ever saves time: every entry is keyed by the content it was built from,
an entry that cannot be read (missing, stale, truncated, corrupt) is rebuilt, and a
directory that cannot be written is silently not used. Entries are written to a temporary
file and renamed into place, so two processes that start at once never see half a file.

Where: ``$TANPU_CACHE_DIR`` if set (empty: no cache), else ``$XDG_CACHE_HOME/tanpu``, else
``~/.cache/tanpu``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional


def cache_dir() -> Optional[Path]:
    """The cache directory (not created here), or None when caching is off."""
    explicit = os.environ.get("TANPU_CACHE_DIR")
    if explicit is not None:
        return Path(explicit) if explicit.strip() else None
    base = os.environ.get("XDG_CACHE_HOME")
    if base and os.path.isabs(base):
        return Path(base) / "tanpu"
    try:
        home = Path.home()
    except (RuntimeError, KeyError, OSError):
        return None
    return home / ".cache" / "tanpu"


def read(name: str) -> Optional[bytes]:
    """The bytes of entry ``name``, or None (no cache, no entry, unreadable)."""
    directory = cache_dir()
    if directory is None:
        return None
    try:
        return (directory / name).read_bytes()
    except (OSError, ValueError):
        return None


def write(name: str, data: bytes) -> None:
    """Store entry ``name`` atomically; any failure is ignored (the cache is optional)."""
    directory = cache_dir()
    if directory is None:
        return
    import tempfile

    temporary = None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(temporary, directory / name)
        temporary = None
    except (OSError, ValueError):
        pass
    finally:
        if temporary is not None:
            try:
                os.unlink(temporary)
            except OSError:
                pass


def crash_report(source: str, trace: str) -> Optional[Path]:
    """Keeps a file the checker failed on, with the traceback, for a bug report: the
    folder `crashes/<sha256 of the file>` under the cache directory (the same file
    twice: one folder). None when it cannot be written."""
    import hashlib

    directory = cache_dir()
    if directory is None:
        return None
    folder = directory / "crashes" / hashlib.sha256(source.encode("utf-8", "replace")).hexdigest()[:16]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "input.tanpu").write_text(source, encoding="utf-8", errors="replace")
        (folder / "traceback.txt").write_text(trace, encoding="utf-8", errors="replace")
    except (OSError, ValueError):
        return None
    return folder


def installed_version(distribution: str) -> Optional[str]:
    """An installed library's version, read from its dist-info folder without importing it
    (importing Pint alone takes 0.1 s); cache keys carry it, so that an upgrade rebuilds."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(distribution)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    site = os.path.dirname(os.path.dirname(spec.origin))
    try:
        names = os.listdir(site)
    except OSError:
        names = []
    prefix = distribution.lower() + "-"
    for name in names:
        lower = name.lower()
        if lower.startswith(prefix) and lower.endswith(".dist-info"):
            return name[len(prefix):-len(".dist-info")]
    try:
        from importlib.metadata import version
        return version(distribution)
    except Exception:
        return None
