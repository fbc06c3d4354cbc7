"""Finding and reading methodology files: the file-system edge of the language."""

from __future__ import annotations

from pathlib import Path

from dsl import Compiled, compile_bytes

SUFFIX = ".tanpu"


class SourceError(Exception):
    """A path given on the command line that is not a methodology file or folder."""


def find(paths) -> list[Path]:
    """Files named on the command line, and every *.tanpu below the folders named."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.rglob(f"*{SUFFIX}") if p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise SourceError(f"no such file or folder: {raw}")
    return found


def compile_file(path: Path) -> Compiled:
    """A methodology file, compiled; the result is kept between runs (dsl/compile_cache.py)."""
    from dsl import compile_cache

    data = path.read_bytes()
    file = str(path)
    compiled = compile_cache.load(data, file)
    if compiled is None:
        compiled = compile_bytes(data, file)
        compile_cache.store(data, file, compiled)
    return compiled


def compile_paths(paths) -> list[Compiled]:
    return [compile_file(p) for p in find(paths)]
