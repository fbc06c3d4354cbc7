"""engine/native/build.py on machines that cannot compile or keep a kernel.

Each case is real (a real compiler, real files, fake compilers as shell scripts): the
build gives a library or None, never raises, says so in one RuntimeWarning per cause
(not per methodology), and the engine's results are the same as without a kernel.
"""

from __future__ import annotations

import contextlib
import io
import os
import platform
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import polars as pl
import pytest

from dsl import compile_source
from engine.batch import BatchEngine
from engine.batch.rules import ORDER_SOURCE
from engine.native import build as kernels

pytestmark = pytest.mark.skipif(kernels.compiler() is None, reason="no C compiler")

ROOT = Path(__file__).resolve().parents[2]
SHENZHEN = ROOT / "methodologies" / "shenzhen-public-transit.tanpu"
SAMPLES = ROOT / "methodologies" / "samples" / "shenzhen-public-transit.csv"
OTHER = ROOT / "methodologies" / "guangzhou-metro-trip.tanpu"


def _methodology(path: Path):
    compiled = compile_source(path.read_text(encoding="utf-8"), path.name)
    assert compiled.ok, compiled.render()
    return compiled.methodology


METHODOLOGY = _methodology(SHENZHEN)
EXPECTED = pl.concat(list(BatchEngine(METHODOLOGY).evaluate_file(SAMPLES)))  # no kernel: NumPy


@pytest.fixture(autouse=True)
def fresh_process(tmp_path, monkeypatch):
    """A new process's builder: nothing loaded, nothing warned, its own cache folder."""
    monkeypatch.setenv("TANPU_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.delenv("TANPU_CC_TIMEOUT", raising=False)
    for name, value in (("_loaded", {}), ("_warned", set()), ("_unwritable", set()), ("_scratch", None)):
        monkeypatch.setattr(kernels, name, value)


def _script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def _evaluate(compiles: bool) -> pl.DataFrame:
    """The sample rides through the batch engine with the builder, whose kernel is (or is
    not) expected; the results must be the NumPy path's either way."""
    batch = BatchEngine(METHODOLOGY, kernels=kernels.build)
    assert batch.formulas.compiles() is compiles
    results = pl.concat(list(batch.evaluate_file(SAMPLES)))
    assert results.equals(EXPECTED)
    return results


def _formula_kernels(folder: Path) -> list[Path]:
    """The formulas' libraries in `folder`: not the canonical order's C pass (rules.py's
    ORDER_SOURCE), which a methodology with cross-record rules builds when it sorts."""
    order = kernels.library_path(ORDER_SOURCE).name
    return [p for p in folder.glob("*.so") if p.name != order]


def _runtime_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def test_a_kernel_gives_the_results_of_numpy():
    assert EXPECTED.height > 100 and EXPECTED.get_column("reduction_mg").sum() > 0
    _evaluate(compiles=True)


def test_a_compiler_with_arguments_is_split_as_a_shell_would(tmp_path, monkeypatch):
    # what ccache does: a program that runs the compiler given as its first argument
    wrapper = _script(tmp_path, "wrap", f'touch "{tmp_path}/wrapped"\nexec "$@"\n')
    cc = "gcc -m64" if platform.machine() == "x86_64" and shutil.which("gcc") else "cc -O2"
    monkeypatch.setenv("CC", f"{wrapper} {cc}")
    assert kernels.compiler() == [str(wrapper), *cc.split()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _evaluate(compiles=True)
    assert (tmp_path / "wrapped").exists() and not _runtime_warnings(caught)
    monkeypatch.setenv("CC", "'unclosed")  # cannot be split: no compiler, one warning
    monkeypatch.setattr(kernels, "_loaded", {})
    monkeypatch.setenv("TANPU_CACHE_DIR", str(tmp_path / "other-cache"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _evaluate(compiles=False)
        _evaluate(compiles=False)
    assert len(_runtime_warnings(caught)) == 1 and "is not a command" in _runtime_warnings(caught)[0]


def test_a_compiler_that_hangs_is_stopped_and_warns_once(tmp_path, monkeypatch):
    hanging = _script(tmp_path, "cc", f'echo $$ > "{tmp_path}/pid"\nsleep 30 &\necho $! > "{tmp_path}/child"\nwait\n')
    monkeypatch.setenv("CC", str(hanging))
    monkeypatch.setenv("TANPU_CC_TIMEOUT", "0.5")
    assert kernels.timeout() == 0.5
    started = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _evaluate(compiles=False)
        # another methodology: no new warning
        assert not BatchEngine(_methodology(OTHER), kernels=kernels.build).formulas.compiles()
    assert time.monotonic() - started < 20  # two timeouts, not two sleeps of 30 s
    messages = _runtime_warnings(caught)
    assert len(messages) == 1 and messages[0].startswith(f"the C compiler ({hanging}) did not finish in 0.5 s")
    for name in ("pid", "child"):  # the compiler and what it started are gone
        pid = int((tmp_path / name).read_text())
        status = Path(f"/proc/{pid}/status")
        assert not status.exists() or "State:\tZ" in status.read_text(), name
    monkeypatch.setenv("TANPU_CC_TIMEOUT", "soon")
    assert kernels.timeout() == kernels.TIMEOUT


def test_a_cache_path_that_is_a_file_falls_back_to_a_folder_of_the_process(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("TANPU_CACHE_DIR", str(blocker))  # even root cannot make a folder under it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _evaluate(compiles=True)
        assert BatchEngine(_methodology(OTHER), kernels=kernels.build).formulas.compiles()
    assert len(_runtime_warnings(caught)) == 1 and "cannot be created" in _runtime_warnings(caught)[0]
    libraries = _formula_kernels(kernels._scratch)
    assert len(libraries) == 2 and kernels._scratch.name.startswith("tanpu-kernels-")
    assert blocker.read_text() == "a file where the cache folder should be"


def test_a_kernels_folder_that_is_a_file_falls_back_too(tmp_path, monkeypatch):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "kernels").write_text("")  # the cache folder is writable, its kernels/ is not a folder
    with pytest.warns(RuntimeWarning, match="cannot be created"):
        _evaluate(compiles=True)
    assert len(_formula_kernels(kernels._scratch)) == 1


@contextlib.contextmanager
def _read_only(folder: Path):
    """The folder made read-only for this process: by its mode, or, for root (whom modes
    do not stop), as a read-only bind mount of itself; skips where neither is possible."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    mount = shutil.which("mount")
    if mount is None or subprocess.run([mount, "--bind", str(folder), str(folder)], capture_output=True).returncode:
        pytest.skip("root writes to a read-only folder, and no bind mount can stop it here")
    try:
        if subprocess.run([mount, "-o", "remount,ro,bind", str(folder)], capture_output=True).returncode:
            pytest.skip("no read-only bind mount here")
        yield
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


def test_a_read_only_cache_folder_is_read_but_not_written(tmp_path):
    folder = tmp_path / "cache" / "kernels"
    _evaluate(compiles=True)  # a library kept in the cache folder
    kept = list(folder.glob("*.so"))
    with _read_only(folder):
        with pytest.raises(OSError):
            (folder / "probe").write_text("")  # really read-only
        kernels._loaded.clear()  # a new process: the kept library is loaded, nothing written
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _evaluate(compiles=True)
            assert not _runtime_warnings(caught)
            # new methodologies are compiled into the process's folder, with one warning
            assert BatchEngine(_methodology(OTHER), kernels=kernels.build).formulas.compiles()
            assert BatchEngine(_methodology(ROOT / "methodologies" / "hello-shared-bike.tanpu"),
                               kernels=kernels.build).formulas.compiles()
        assert len(_runtime_warnings(caught)) == 1 and "cannot be written" in _runtime_warnings(caught)[0]
        assert list(folder.glob("*.so")) == kept and len(list(kernels._scratch.glob("*.so"))) == 2


def test_the_sse4_flag_follows_the_cpu_and_keys_the_cache(tmp_path, monkeypatch):
    with_sse = tmp_path / "cpuinfo-sse"
    with_sse.write_text("processor\t: 0\nflags\t\t: fpu sse2 ssse3 sse4_1 sse4_2 avx\n\nprocessor\t: 1\n")
    without = tmp_path / "cpuinfo-old"
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 ssse3\n")
    assert kernels.flags_for("x86_64", with_sse) == kernels.BASE_FLAGS + ["-msse4.1"]
    assert kernels.flags_for("x86_64", without) == kernels.BASE_FLAGS
    assert kernels.flags_for("x86_64", tmp_path / "no-such-file") == kernels.BASE_FLAGS
    assert kernels.flags_for("aarch64", with_sse) == kernels.BASE_FLAGS
    source = "int f(void) { return 1; }\n"
    libraries = {}
    for name, cpuinfo in (("sse", with_sse), ("old", without)):
        monkeypatch.setattr(kernels, "FLAGS", kernels.flags_for("x86_64", cpuinfo))
        libraries[name] = kernels.library_path(source)
    assert libraries["sse"] != libraries["old"]  # a library built for one CPU is not the other's
    # this CPU as if it had no SSE4.1: a kernel of its own, and the same results
    monkeypatch.setattr(kernels, "FLAGS", kernels.BASE_FLAGS)
    _evaluate(compiles=True)


def test_a_failing_compiler_warns_once_for_every_methodology(tmp_path, monkeypatch):
    failing = _script(tmp_path, "cc", "echo 'cc1: out of memory' >&2\nexit 1\n")
    monkeypatch.setenv("CC", str(failing))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _evaluate(compiles=False)
        assert not BatchEngine(_methodology(OTHER), kernels=kernels.build).formulas.compiles()
    assert len(_runtime_warnings(caught)) == 1 and "out of memory" in _runtime_warnings(caught)[0]
    not_a_program = tmp_path / "cc-text"
    not_a_program.write_text("not a program")
    not_a_program.chmod(0o755)
    monkeypatch.setenv("CC", str(not_a_program))
    monkeypatch.setattr(kernels, "_loaded", {})
    with pytest.warns(RuntimeWarning, match="cannot be started"):
        _evaluate(compiles=False)


def test_the_engine_imported_from_a_zip_builds_its_kernel(tmp_path):
    """Spark's --py-files puts the wheel, renamed .zip, on the executors' path
    (docs/spark.md): the engine is imported from inside the zip, and its kernel's fixed C
    (numeric.h, calendar.h) must be read from there too. The results: the NumPy path's."""
    import json
    import zipfile

    archive = tmp_path / "tanpu.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for package in ("dsl", "engine"):
            for path in sorted((ROOT / package).rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".so":
                    zipped.write(path, path.relative_to(ROOT).as_posix())
    program = f"""
import json, sys, warnings
sys.path.insert(0, {str(archive)!r})
import engine
assert engine.__file__.startswith({str(archive)!r}), engine.__file__
from dsl import compile_source
from engine.batch import BatchEngine
from engine.native.build import build
import polars as pl
compiled = compile_source(open({str(SHENZHEN)!r}, encoding="utf-8").read(), "shenzhen.tanpu")
with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)  # no _fixed in the zip: NumPy text readers
    batch = BatchEngine(compiled.methodology, kernels=build)
    results = pl.concat(list(batch.evaluate_file({str(SAMPLES)!r})))
print(json.dumps({{"compiles": batch.formulas.compiles(), "results": results.write_json()}}))
"""
    done = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "TANPU_CACHE_DIR": str(tmp_path / "cache"),
                               "PYTHONPATH": ""}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["compiles"] is True
    assert pl.read_json(io.StringIO(got["results"]), schema=EXPECTED.schema).equals(EXPECTED)
