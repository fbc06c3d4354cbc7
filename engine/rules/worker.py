"""The worker process that hosts durable_rules, and its handle in the calling process.

durable_rules runs in a process of its own (multiprocessing, spawn context) so that what
it can do wrong stays there: a segfault, a leak (rulesets are never freed), a session
left behind. The caller sends a request (a ruleset and batches, one account's records
each, with that account's prior ledger); the worker runs short-lived sessions and sends
back the decisions. The handle restarts the process when it dies, hangs past a timeout,
reports an error, or has served `max_rulesets` rulesets, `max_sessions` sessions or grown
past `max_rss_mb`; the caller (client.py) decides whether to retry.

Protocol (pickled over a Pipe): the worker says ("ready", pid) once imported; then
request ("run", rules, methodology-or-None, batches, chunk_size) -> ("ok", decisions per
batch, stats) or ("error", text); ("stop",) ends it.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import sys
import threading
import traceback
import uuid
from dataclasses import dataclass
from typing import Optional

READY_TIMEOUT = 120.0  # seconds for a new worker to import durable_rules and say so


class WorkerFailure(RuntimeError):
    """The worker died, hung, or could not run a request. It has been stopped."""


# ---------------------------------------------------------------- inside the worker
def _rss_mb() -> float:
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes / kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def main(conn) -> None:
    """The worker's loop (the spawn target)."""
    import faulthandler
    faulthandler.enable()  # a crash in durable_rules leaves a Python traceback on stderr

    from .host import RulesHost
    from .session import AccountRun

    host = RulesHost()
    engines: dict = {}  # methodology content -> Engine, for recomputing points
    prefix = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    counter = [0]

    def new_sid() -> str:
        counter[0] += 1
        return f"{prefix}-{counter[0]}"

    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message[0] == "stop":
            return
        try:
            _, rules, methodology, batches, chunk_size = message
            new = host.load(rules)
            recompute = None
            if rules.needs_recompute:
                recompute = _recomputer(engines, methodology)
            out, sessions = [], 0
            for records, ledger in batches:
                run = AccountRun(host, rules, ledger, recompute)
                out.append(run.run(records, chunk_size, new_sid))
                sessions += run.sessions
            conn.send(("ok", out, {"sessions": sessions, "new_ruleset": new, "rss_mb": _rss_mb()}))
        except Exception as error:  # reported to the caller, which recycles this process
            conn.send(("error", f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))


def _recomputer(engines: dict, methodology):
    from types import SimpleNamespace

    from dsl.ir.printer import content_hash
    from engine.evaluate import Engine

    key = content_hash(methodology)
    engine = engines.get(key)
    if engine is None:
        engine = engines[key] = Engine(methodology)
    return lambda values, reduction_mg: engine.recompute_points(SimpleNamespace(values=values), reduction_mg)


# ---------------------------------------------------------------- in the caller
@dataclass
class Limits:
    max_rulesets: int = 50  # distinct rulesets before a restart (they are never freed)
    max_sessions: int = 20_000  # sessions before a restart (insurance against leaks)
    max_rss_mb: float = 2048.0  # resident memory before a restart


class Worker:
    """One worker process, started on first use and restarted when it must be."""

    def __init__(self, limits: Optional[Limits] = None):
        self.limits = limits or Limits()
        self.lock = threading.Lock()  # one request at a time (held by the client)
        self._process = None
        self._conn = None
        self.rulesets = 0
        self.sessions = 0
        self.restarts = 0

    @property
    def pid(self) -> Optional[int]:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(target=main, args=(child,), name="tanpu-rules-worker",
                                  daemon=True)
        process.start()
        child.close()
        self._process, self._conn = process, parent
        self.rulesets = self.sessions = 0
        try:
            reply = self._receive(READY_TIMEOUT)
        except WorkerFailure as failure:
            raise WorkerFailure(f"the rules worker did not start: {failure}") from None
        if reply[0] != "ready":
            self.stop()
            raise WorkerFailure(f"the rules worker said {reply[0]!r} instead of ready")

    def run(self, rules, methodology, batches, chunk_size: int, timeout: float) -> list:
        """Decisions per batch. Raises WorkerFailure (the process is then stopped)."""
        if not self.alive:
            if self._process is not None:
                self.stop()
                self.restarts += 1
            self.start()
        try:
            self._conn.send(("run", rules, methodology, batches, chunk_size))
        except (OSError, ValueError) as error:
            self.stop(force=True)
            raise WorkerFailure(f"the rules worker died while taking the request ({error})") from None
        reply = self._receive(timeout)
        if reply[0] == "error":
            self.stop()
            raise WorkerFailure(f"the rules worker failed: {reply[1]}")
        _, decisions, stats = reply
        self.sessions += stats["sessions"]
        self.rulesets += 1 if stats["new_ruleset"] else 0
        if (self.rulesets >= self.limits.max_rulesets or self.sessions >= self.limits.max_sessions
                or stats["rss_mb"] >= self.limits.max_rss_mb):
            self.stop()  # recycled: the next request starts a fresh process
        return decisions

    def _receive(self, timeout: float):
        try:
            if not self._conn.poll(timeout):
                self.stop(force=True)
                raise WorkerFailure(f"no answer within {timeout:g} s; the worker was stopped")
            return self._conn.recv()
        except (EOFError, OSError) as error:
            code = None
            if self._process is not None:
                self._process.join(1.0)
                code = self._process.exitcode
            self.stop(force=True)
            raise WorkerFailure(f"the rules worker died (exit code {code})"
                                if code is not None else f"the rules worker died ({error!r})") from None

    def stop(self, force: bool = False) -> None:
        """Ends the process (politely unless `force`, then by force) and forgets it."""
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if process is None:
            return
        try:
            if process.is_alive() and not force:
                try:
                    conn.send(("stop",))
                except (OSError, ValueError):
                    pass
                process.join(1.0)
            if process.is_alive():
                process.kill()
                process.join(5.0)
        finally:
            try:
                conn.close()
            except OSError:
                pass
