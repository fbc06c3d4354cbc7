"""Compiled methodology files kept between runs (dsl/compile_cache.py via tanpu/sources.py).

The kept result must be the compilation itself (same IR, same diagnostics, same content
hash), must never be served for other bytes or another file name, and an entry that does
not load must be compiled again.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dsl import compile_bytes, compile_cache, render_text
from dsl.ir.printer import to_json
from tanpu import sources

from .kit import ROOT, SHENZHEN


def _outcome(compiled):
    return ([render_text(d, compiled.source) for d in compiled.diagnostics],
            to_json(compiled.methodology) if compiled.methodology else None,
            compiled.content_hash if compiled.ok else None, compiled.file)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    directory = tmp_path / "cache"
    monkeypatch.setenv("TANPU_CACHE_DIR", str(directory))
    return directory


def _entries(directory: Path) -> list[Path]:
    return sorted(directory.glob("compiled-*.pickle")) if directory.exists() else []


def test_a_kept_compilation_is_the_compilation(cache_dir, tmp_path):
    path = tmp_path / "shenzhen.tanpu"
    path.write_text(SHENZHEN, encoding="utf-8")
    first = sources.compile_file(path)
    assert len(_entries(cache_dir)) == 1
    kept = compile_cache.load(path.read_bytes(), str(path))
    assert kept is not None
    assert _outcome(kept) == _outcome(first) == _outcome(compile_bytes(path.read_bytes(), str(path)))
    assert _outcome(sources.compile_file(path)) == _outcome(first)
    assert len(_entries(cache_dir)) == 1


def test_diagnostics_are_kept_with_their_positions(cache_dir, tmp_path):
    path = tmp_path / "broken.tanpu"
    path.write_text(SHENZHEN.replace("* distance", "* * distance"), encoding="utf-8")
    first = sources.compile_file(path)
    assert not first.ok
    again = sources.compile_file(path)
    assert _outcome(again) == _outcome(first)
    assert "broken.tanpu:" in again.render() and "^" in again.render()


def test_other_bytes_or_another_name_are_not_served(cache_dir, tmp_path):
    path = tmp_path / "a.tanpu"
    path.write_text(SHENZHEN, encoding="utf-8")
    sources.compile_file(path)
    changed = SHENZHEN.replace("ebus: 26.9", "ebus: 27.9")
    assert compile_cache.load(changed.encode("utf-8"), str(path)) is None
    assert compile_cache.load(SHENZHEN.encode("utf-8"), str(tmp_path / "b.tanpu")) is None
    path.write_text(changed, encoding="utf-8")
    assert _outcome(sources.compile_file(path)) == _outcome(compile_bytes(changed.encode("utf-8"), str(path)))
    assert len(_entries(cache_dir)) == 2


@pytest.mark.parametrize("damage", [lambda b: b[:len(b) // 2], lambda b: b[:40] + b"garbage" + b[47:],
                                    lambda b: b"not an entry at all"])
def test_a_damaged_entry_is_compiled_again(cache_dir, tmp_path, damage):
    path = tmp_path / "shenzhen.tanpu"
    path.write_text(SHENZHEN, encoding="utf-8")
    expected = _outcome(sources.compile_file(path))
    [entry] = _entries(cache_dir)
    entry.write_bytes(damage(entry.read_bytes()))
    assert _outcome(sources.compile_file(path)) == expected
    assert compile_cache.load(path.read_bytes(), str(path)) is not None  # written anew


def test_no_cache_directory_still_compiles(tmp_path, monkeypatch):
    monkeypatch.setenv("TANPU_CACHE_DIR", "")
    path = tmp_path / "shenzhen.tanpu"
    path.write_text(SHENZHEN, encoding="utf-8")
    assert sources.compile_file(path).ok
    assert compile_cache.load(path.read_bytes(), str(path)) is None


def test_the_fingerprint_covers_the_grammar_and_every_module():
    """Editing any file of the compiler must change the key (checked on a copy of dsl/)."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import dsl.compile_cache as c; "
        "print(c.compiler_fingerprint().hex())")

    def fingerprint(root):
        done = subprocess.run([sys.executable, "-c", script, str(root)], capture_output=True,
                              text=True, check=True)
        return done.stdout.strip()

    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder)
        shutil.copytree(ROOT / "dsl", copy / "dsl", ignore=shutil.ignore_patterns("__pycache__"))
        base = fingerprint(copy)
        assert base == fingerprint(copy)
        for name in ("grammar.lark", "check/expressions.py", "units.py"):
            target = copy / "dsl" / name
            original = target.read_bytes()
            target.write_bytes(original + b"\n")
            assert fingerprint(copy) != base, name
            target.write_bytes(original)
        assert fingerprint(copy) == base


def test_only_the_newest_compilations_are_kept(cache_dir, tmp_path, monkeypatch):
    import os

    monkeypatch.setattr(compile_cache, "KEPT", 3)
    paths = []
    for i in range(5):
        path = tmp_path / f"m{i}.tanpu"
        path.write_text(SHENZHEN, encoding="utf-8")
        before = set(_entries(cache_dir))
        sources.compile_file(path)
        (new,) = set(_entries(cache_dir)) - before
        os.utime(new, ns=(i * 10 ** 9, i * 10 ** 9))  # written one second apart
        paths.append(path)
    assert len(_entries(cache_dir)) == 3
    kept = [compile_cache.load(p.read_bytes(), str(p)) is not None for p in paths]
    assert kept == [False, False, True, True, True]
