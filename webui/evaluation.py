"""Compiling sources and evaluating records for the web UI (editor, review, API).

Pure: no Flask, no database. Compiled engines are cached by source text, so the review
page, the impact preview and the API do not compile the same version again and again.
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from dsl import compile_source
from engine import Engine, Result
from engine.explain import humanize, render
from engine.result import INVALID

from .records import Records

CREDIT_STATUSES = ("credited", "capped")
STATUS_ORDER = ("credited", "capped", "rejected", "duplicate", "not_applicable", "invalid")


# ---------------------------------------------------------------- compiling
def check(source: str, file: str = "<editor>", *, run_examples: bool = True) -> dict:
    """What `tanpu check --format json` says about one source, and its examples' outcomes
    when it compiles: {ok, content_hash, id, version, errors, warnings, diagnostics,
    examples, examples_passed}."""
    compiled = compile_source(source, file)
    meta = compiled.methodology.metadata if compiled.methodology else None
    out = {
        "file": file, "ok": compiled.ok, "content_hash": compiled.content_hash,
        "id": meta.id if meta else None, "version": meta.version if meta else None,
        "errors": len(compiled.errors), "warnings": len(compiled.warnings),
        "diagnostics": [d.to_json() for d in compiled.diagnostics],
        "examples": [], "examples_passed": None,
    }
    if compiled.ok and run_examples:
        from engine.examples import run_examples as run
        try:
            outcomes = run(engine_for(source, file))
        except Exception as error:  # an engine bug: say so, do not fail the request
            out["examples"] = [{"title": "(examples could not run)", "line": None,
                                "passed": False, "failures": [f"{type(error).__name__}: {error}"]}]
            out["examples_passed"] = False
        else:
            out["examples"] = [{"title": o.title, "line": o.line, "passed": o.passed,
                                "failures": list(o.failures)} for o in outcomes]
            out["examples_passed"] = bool(outcomes) and all(o.passed for o in outcomes)
    return out


class _Checker:
    """Checks run in two worker processes, so that one that takes too long is stopped
    (its process killed) instead of holding a web server thread: the editor checks what
    an author types, whatever it is (issue 17). The language's own limits (dsl/surface/
    parse.py: size, line length, tokens) keep every check well under a second; this is
    the guard behind them, for what they miss. Each server process (`tanpu serve
    --workers`) has its own, started at its first check; a check carries its whole
    source and is answered in the same request, so no other state is per process."""

    def __init__(self):
        self._pool = None
        self._lock = threading.Lock()

    def _current(self):
        import multiprocessing

        with self._lock:
            if self._pool is None:  # forkserver: no fork of a process with server threads
                import atexit

                context = multiprocessing.get_context("forkserver")
                # the forkserver imports the compiler and warms it up once (webui/
                # check_process.py), and each check process starts as a fork of it, warm:
                # else each did that at its first check, inside the check's time limit.
                # Pool() returns once its processes are forked, so that start is not
                # counted in the limit (run() starts the clock after _current()).
                context.set_forkserver_preload(["webui.check_process"])
                self._pool = context.Pool(2, maxtasksperchild=500)
                # ended before the interpreter tears its modules down (else the pool's own
                # finalizer runs too late and prints a traceback at exit)
                atexit.register(self._pool.terminate)
            return self._pool

    def stop(self) -> None:
        """Ends the worker processes (the next check starts new ones)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.terminate()

    def run(self, source: str, file: str, seconds: float) -> Optional[dict]:
        """check()'s answer, or None when it took more than `seconds` (then the pool is
        replaced: its processes are killed, and checks running in them answer None)."""
        import multiprocessing

        pool = self._current()
        try:
            return pool.apply_async(check, (source, file)).get(timeout=seconds)
        except multiprocessing.TimeoutError:
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            pool.terminate()
            return None
        except ValueError:  # the pool was terminated by another check's time-out
            return None


_checker = _Checker()


def stop_checks() -> None:
    """Ends check_in_time's worker processes; the next check starts them afresh (from
    the forkserver, warm: webui/check_process.py)."""
    _checker.stop()


def check_in_time(source: str, file: str, seconds: float) -> dict:
    """check() in a worker process, stopped after `seconds` with an error that says so."""
    out = _checker.run(source, file, seconds)
    if out is not None:
        return out
    message = (f"checking took longer than {seconds:g} s and was stopped; "
               f"shorten the file, or report it if it is short")
    return {"file": file, "ok": False, "content_hash": None, "id": None, "version": None,
            "errors": 1, "warnings": 0, "timed_out": True,
            "diagnostics": [{"code": "TIMEOUT", "severity": "error", "message": message,
                             "file": file, "line": None, "column": None, "end_line": None,
                             "end_column": None}],
            "examples": [], "examples_passed": None}


@functools.lru_cache(maxsize=128)
def _compiled(source: str, file: str):
    return compile_source(source, file)


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()
_MAX_ENGINES = 64


def compiled(source: str, file: str = "<source>"):
    return _compiled(source, file)


def engine_for(source: str, file: str = "<source>") -> Engine:
    """The Engine of a source that compiles (ValueError otherwise), cached."""
    with _engines_lock:
        found = _engines.get(source)
    if found is not None:
        return found
    result = _compiled(source, file)
    if not result.ok:
        first = result.errors[0] if result.errors else None
        where = f" (line {first.span.line}: {first.message})" if first and first.span else ""
        raise ValueError(f"the source does not compile{where}")
    engine = Engine(result.methodology)
    with _engines_lock:
        if len(_engines) >= _MAX_ENGINES:
            _engines.pop(next(iter(_engines)))
        _engines[source] = engine
    return engine


_batch_engines: dict[str, object] = {}


def batch_engine_for(source: str, file: str = "<source>"):
    """The batch engine (engine/batch: the formulas as a generated C kernel over columns,
    as `tanpu eval` runs them) of a source that compiles, cached like engine_for. Its
    results are the scalar Engine's, bit for bit (the engine's own differential tests;
    tests/webui/test_api_batch.py through the API); it gives no explanations."""
    with _engines_lock:
        found = _batch_engines.get(source)
    if found is not None:
        return found
    from engine.batch import BatchEngine
    from engine.native.build import build

    engine = BatchEngine(engine_for(source, file).methodology, kernels=build)
    with _engines_lock:
        if len(_batch_engines) >= _MAX_ENGINES:
            _batch_engines.pop(next(iter(_batch_engines)))
        _batch_engines[source] = engine
    return engine


# ---------------------------------------------------------------- evaluating
def evaluate(engine: Engine, records: Records, *, explain: bool = False,
             per_record_only: bool = False) -> list[Result]:
    """The records' results in their order (row numbers from 1). A row that could not be
    read as an object (a JSON line that is not one) is `invalid` with that reason.
    `per_record_only`: without the cross-record rules (the ledger applies them)."""
    unreadable = {i: row["__invalid__"] for i, row in enumerate(records.rows)
                  if "__invalid__" in row}
    rows = [{} if i in unreadable else row for i, row in enumerate(records.rows)]
    results = engine.evaluate(rows, explain=explain, column_units=records.column_units or None,
                              per_record_only=per_record_only)
    for i, reason in unreadable.items():
        r = results[i]
        r.status, r.code, r.message = INVALID, "INVALID_RECORD", reason
        r.reduction_mg = r.points = r.bonus = 0
    if explain:
        zone = engine.methodology.metadata.timezone
        for r in results:
            if r.explanation is not None:
                humanize(r.explanation, zone)
    return results


def result_dict(engine: Engine, result: Result, *, explain: bool = False,
                lang: str = "en") -> dict:
    """A result as JSON; with its explanation, whose text is in `lang` (en or zh)."""
    out = result.to_dict(engine.ref)
    if explain:
        out["explanation"] = result.explanation or []
        out["explanation_text"] = render(list(result.explanation or []),
                                         engine.methodology.metadata.timezone, lang=lang)
    else:
        out.pop("explanation", None)
    return out


@dataclass
class Totals:
    records: int = 0
    reduction_mg: int = 0  # credited and capped results
    points: int = 0  # with bonuses
    by_status: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"records": self.records, "reduction_mg": self.reduction_mg,
                "reduction_kg": self.reduction_mg / 1_000_000, "points": self.points,
                "by_status": dict(self.by_status)}


def totals(results: list[Result]) -> Totals:
    counts = Counter(r.status for r in results)
    counted = [r for r in results if r.status in CREDIT_STATUSES]
    return Totals(len(results), sum(r.reduction_mg for r in counted),
                  sum(r.points + r.bonus for r in counted),
                  {s: counts[s] for s in STATUS_ORDER if counts.get(s)})


def try_it(source: str, records: Records, *, explain: bool = True, limit: int = 500,
           lang: str = "en") -> dict:
    """The try-it panel: the records evaluated with a source that compiles.

    {ok, ref, totals, results (the first `limit`, each with its explanation), truncated}.
    When the source does not compile: {ok: false, diagnostics}."""
    result = _compiled(source, "<editor>")
    if not result.ok:
        return {"ok": False, "diagnostics": [d.to_json() for d in result.diagnostics],
                "error": "the source does not compile: fix the errors first"}
    engine = engine_for(source, "<editor>")
    results = evaluate(engine, records, explain=explain)
    shown = results[:limit]
    return {
        "ok": True,
        "ref": {"id": engine.ref.id, "version": engine.ref.version,
                "content_hash": engine.ref.content_hash},
        "totals": totals(results).to_dict(),
        "results": [result_dict(engine, r, explain=explain, lang=lang) for r in shown],
        "truncated": len(results) > len(shown),
    }


def first_error(diagnostics: list[dict]) -> Optional[dict]:
    return next((d for d in diagnostics if d.get("severity") == "error"), None)


def caret_block(source: str, diagnostic: dict) -> str:
    """The diagnostic's line with carets under its columns (wide characters count two),
    as `tanpu check` prints it."""
    import unicodedata

    from dsl.diagnostics import source_lines

    line = diagnostic.get("line")
    lines = source_lines(source)
    if not line or not (1 <= line <= len(lines)):
        return ""
    text = lines[line - 1].replace("\t", " ")
    start = max((diagnostic.get("column") or 1) - 1, 0)
    if diagnostic.get("end_line") == line and diagnostic.get("end_column"):
        end = max(diagnostic["end_column"] - 1, start + 1)
    else:
        end = max(len(text), start + 1)

    def width(s: str) -> int:
        return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)

    if width(text[:start]) > 32:  # a long line: a window around the columns
        cut = start - 16
        text = "…" + text[cut:]
        start, end = start - cut + 1, end - cut + 1
    if len(text) > end + 24:
        text = text[:end + 16] + "…"
    gutter = str(line)
    label = diagnostic.get("label") or ""
    return (f"{gutter} | {text}\n{' ' * len(gutter)} | {' ' * width(text[:start])}"
            f"{'^' * max(width(text[start:end]), 1)}{' ' + label if label else ''}")
