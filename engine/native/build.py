"""Compiles and loads the per-methodology C kernels (engine/batch/kernel.py writes them).

This is the engine's one impure module: `build` writes files to a cache folder and runs
a C compiler in a subprocess. The rest of the engine only writes C source, and takes
`build` as an argument (`BatchEngine(..., kernels=build)`, as `tanpu eval` does), so a
program that embeds the engine decides whether it may do either.

A library is kept in the cache folder (dsl/cache.py, subfolder `kernels`) under the
hash of its source, the compiler flags and the machine, so a methodology's kernel is
compiled once (about 0.1 s with gcc), not at every run. Whenever a kernel cannot be had,
`build` gives None and the engine evaluates the formulas row by row: the same results,
slower. Each cause says so in one RuntimeWarning per process, not once per methodology:

- no compiler: `$CC` (default `cc`) is split as a shell would (`CC="ccache gcc"`,
  `CC="gcc -m64"`) and its first word looked up on PATH; no warning when `cc` is simply
  absent, one when `$CC` names a program that is not there or cannot be split;
- the compiler fails, cannot be started, or does not finish within `$TANPU_CC_TIMEOUT`
  seconds (default 60; it is then killed with the processes it started);
- the cache folder cannot be created or written (read-only, a file in its place): the
  libraries go to a temporary folder of this process instead, gone at its exit, and a
  library already in the cache folder is still used;
- a compiled library cannot be loaded (a folder mounted noexec).

A cached library that cannot be loaded (a disk that filled up, a copy cut short) is
compiled again. `-msse4.1` (floor, ceil and rint as one instruction each) is given only
on an x86-64 CPU that reports SSE4.1 in /proc/cpuinfo, and the flags are part of the
cache key, so a library compiled on one machine is never loaded, and never runs into an
illegal instruction, on a CPU without it (a cache folder shared over the network).

The flags are part of the numeric contract: -ffp-contract=off (no fused multiply-add,
which rounds once where the scalar path rounds twice) and no fast-math option.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Optional

from dsl.cache import cache_dir

BASE_FLAGS = ["-O2", "-std=gnu11", "-fPIC", "-shared", "-ffp-contract=off", "-fno-fast-math"]
CPUINFO = Path("/proc/cpuinfo")
TIMEOUT = 60.0  # seconds a compilation may take ($TANPU_CC_TIMEOUT): gcc needs about 0.1
KEEP = 256  # libraries kept in the cache folder, newest first (an expert's every edit makes one)


def flags_for(machine: str, cpuinfo: Path = CPUINFO) -> list[str]:
    """The compiler flags for this machine and CPU: the base flags, and -msse4.1 where the
    CPU reports it (floor/ceil/rint inline instead of calls into libm)."""
    extra = []
    if machine in ("x86_64", "AMD64") and "sse4_1" in _cpu_features(cpuinfo):
        extra.append("-msse4.1")
    return BASE_FLAGS + extra


def _cpu_features(cpuinfo: Path) -> frozenset:
    """The feature names of the first CPU in /proc/cpuinfo; none where it cannot be read
    (another system): then no optional instruction set is assumed."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


FLAGS = flags_for(platform.machine())

_loaded: dict[str, ctypes.CDLL] = {}
_lock = threading.Lock()
_scratch: Optional[Path] = None
_warned: set = set()  # the causes already reported in this process
_unwritable: set = set()  # cache folders found read-only in this process


def compiler() -> Optional[list[str]]:
    """The compiler command ($CC split into words, the first found on PATH), or None."""
    words = _cc_words()
    found = shutil.which(words[0]) if words else None
    return [found, *words[1:]] if found else None


def _cc_words() -> Optional[list[str]]:
    text = os.environ.get("CC", "").strip() or "cc"
    try:
        return shlex.split(text) or None
    except ValueError:  # an unclosed quote
        return None


def timeout() -> float:
    """Seconds a compilation may take: $TANPU_CC_TIMEOUT if it is a positive number."""
    try:
        seconds = float(os.environ.get("TANPU_CC_TIMEOUT", ""))
    except ValueError:
        return TIMEOUT
    return seconds if seconds > 0 else TIMEOUT


def build(source: str) -> Optional[ctypes.CDLL]:
    """The loaded library of this C source, compiled if need be; None if it cannot be.

    Writes the library to the cache folder and runs the compiler (see the module's
    docstring); never raises for a machine that cannot compile or keep it."""
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


def _folder() -> Path:
    """The cache folder of kernels, or the process's own when there is none or it cannot
    be created (a regular file where it should be)."""
    base = cache_dir()
    if base is not None:
        folder = base / "kernels"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return folder
        except OSError as error:
            _warn_once(("folder", str(folder)), f"the kernel cache folder {folder} cannot be created "
                                                f"({error}); kernels are kept for this process only")
    return _scratch_folder()


def _scratch_folder() -> Path:
    """A folder of this process's own, gone at its exit (raises OSError if there is none)."""
    global _scratch
    if _scratch is None:
        _scratch = Path(tempfile.mkdtemp(prefix="tanpu-kernels-"))
        atexit.register(shutil.rmtree, _scratch, True)
    return _scratch


def _load_or_compile(source: str, library: Path) -> Optional[ctypes.CDLL]:
    if library.exists():
        try:
            return _load(library)
        except OSError:  # damaged (a disk full, a copy cut short): compiled again
            try:
                library.unlink(missing_ok=True)
            except OSError:  # a folder that cannot be written: compiled to the scratch folder
                pass
    cc = compiler()
    if cc is None:
        named = os.environ.get("CC", "").strip()
        if named:
            _warn_once(("no compiler", named), f"CC={named!r} is not a command found on PATH (or cannot "
                                               f"be split into words); the formulas run row by row")
        return None
    work = _work_folder(library.parent)
    if work is None:
        return None
    try:
        built = _compile(work, source, cc)
        if built is None:
            return None
        library = work.parent / library.name  # the scratch folder's, where the cache is read-only
        os.replace(built, library)  # whole or not at all, for processes starting at once
    except OSError as error:  # a disk that is full
        _warn_once(("write", str(work.parent)), f"the C kernel could not be written to {work.parent} "
                                                f"({error}); the formulas run row by row")
        return None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _prune(library.parent)
    try:
        return _load(library)
    except OSError as error:  # e.g. a folder on a filesystem mounted noexec
        _warn_once(("load", str(library.parent)), f"a compiled C kernel cannot be loaded ({error}); "
                                                  f"the formulas run row by row")
        return None


def _work_folder(folder: Path) -> Optional[Path]:
    """A new folder to compile in, under `folder` so that the library can be renamed into
    place; under the process's scratch folder where `folder` cannot be written."""
    if folder not in _unwritable:
        try:
            return Path(tempfile.mkdtemp(prefix=".build-", dir=folder))
        except OSError as error:
            _unwritable.add(folder)
            _warn_once(("folder", str(folder)), f"the kernel cache folder {folder} cannot be written "
                                                f"({error}); kernels are kept for this process only")
    try:
        return Path(tempfile.mkdtemp(prefix=".build-", dir=_scratch_folder()))
    except OSError as error:
        _warn_once(("scratch", ""), f"no folder to compile a C kernel in ({error}); the formulas run row by row"
                                    f"the formulas")
        return None


def _compile(work: Path, source: str, cc: list[str]) -> Optional[Path]:
    """Compiles `source` in the folder `work`: the library's path, or None (warned)."""
    c_file = work / "kernel.c"
    c_file.write_text(source, encoding="utf-8")
    built = work / "kernel.so"
    command = [*cc, *FLAGS, "-o", str(built), str(c_file), "-lm"]
    cause = shlex.join(cc)
    seconds = timeout()
    try:
        done = _run(command, seconds)
    except subprocess.TimeoutExpired:
        _warn_once(("timeout", cause), f"the C compiler ({cause}) did not finish in {seconds:g} s "
                                       f"(TANPU_CC_TIMEOUT); the formulas run row by row")
        return None
    except OSError as error:  # not executable, not a program
        _warn_once(("start", cause), f"the C compiler ({cause}) cannot be started ({error}); "
                                     f"the formulas run row by row")
        return None
    if done.returncode != 0 or not built.exists():
        _warn_once(("fails", cause), f"the C kernel did not compile ({cause}); the formulas run "
                                     f"row by row:\n{done.stderr[-2000:]}")
        return None
    return built


def _run(command: list[str], seconds: float) -> subprocess.CompletedProcess:
    """Runs the compiler in a process group of its own, so that a compiler that hangs is
    killed with what it started (ccache's gcc, gcc's cc1) when the time is up."""
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except OSError:  # gone already
            process.kill()
        try:
            process.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # something that left the group holds the pipes open
            pass
        raise
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def _load(library: Path) -> ctypes.CDLL:
    return ctypes.CDLL(str(library))


def _prune(folder: Path) -> None:
    try:
        libraries = sorted(folder.glob("*.so"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in libraries[KEEP:]:
            old.unlink(missing_ok=True)
    except OSError:  # another process pruned first
        pass


def _warn_once(cause: tuple, message: str) -> None:
    """One RuntimeWarning per cause (a folder, a compiler command) in this process."""
    if cause not in _warned:
        _warned.add(cause)
        warnings.warn(message, RuntimeWarning, stacklevel=4)
