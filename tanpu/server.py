"""`tanpu serve --workers N`: waitress in N processes accepting on one listening socket.

Why: one Python process runs one request's Python at a time (the GIL). A single-record
credit costs about 4 ms of the server's CPU, so at 200 requests/s one process is ~80 %
busy and the queueing alone made p99 73 ms where the plain-SQL reference takes 12-14 ms
(issue 13, item 10; docs/ledger.md has the figures of `bench/bench_ledger.py --server`).
Several processes use the machine's cores.

Why waitress in each process rather than gunicorn: waitress's settings are measured
and tested here (the connection limit and idle-connection timeout of issue 17, the
buffer sizes of large API batches in tanpu/cli.py), and each process keeps exactly
them; what this module adds is only the pre-fork part: the parent binds the socket,
forks the workers, starts one again when it dies and stops them when it stops.

Fork safety: the parent forks before it holds a database connection (its Database,
used to migrate and seed, is disposed first) and each worker builds its own app and
Database after the fork, so no pooled connection or thread is shared across processes
(modules that keep a thread pool forget it in the child: os.register_at_fork in
engine/batch and engine/recordfiles). The parent runs no thread but its main one, ever:
a fork copies the locks another thread holds at that moment (the logging module's, a
stream's buffer, a Popen's) into the child, where nothing will release them, and a
worker is forked again whenever one dies, not only at start. So what the parent must
watch besides its workers (the jobs worker of tanpu/cli.py) is polled from this loop
(`tick`), not from a thread, and a fork with another thread running is refused.

A worker dies with the parent (Linux PR_SET_PDEATHSIG, SIGKILL): a kill -9 of `tanpu
serve` ends the whole server at once, as it did with one process, and leaves no worker
holding the port.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import Callable

log = logging.getLogger("tanpu.serve")

_PR_SET_PDEATHSIG = 1


def default_workers(database_url: str) -> int:
    """The processes `tanpu serve` runs by default: one per CPU this process may use, at
    most 8 (each holds its own connection pool and a copy of what the app caches); one
    on SQLite, which takes one writer at a time whatever the processes (BEGIN IMMEDIATE,
    registry/db.py), so that more of them would mostly wait on its lock. More may be
    asked for (`--workers`): SQLite's locks hold across processes."""
    if database_url.startswith("sqlite"):
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def listening_socket(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """The socket every worker accepts on (bound and listening in the parent)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def _die_with_parent(parent: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the worker notices at its next accept
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def single_threaded() -> None:
    """Raises RuntimeError unless the calling process runs one thread (the fork point's
    condition: see the module's docstring)."""
    if threading.active_count() != 1:
        others = sorted(t.name for t in threading.enumerate() if t is not threading.current_thread())
        raise RuntimeError(f"a fork with other threads running ({', '.join(others)}): "
                           f"locks they hold would stay locked in the child")


class Prefork:
    """Runs `serve_one(sock)` in `workers` forked processes and keeps them running until
    SIGTERM or SIGINT (then it stops them and returns). `tick()`, when given, is called
    from the same loop about every 0.2 s (what else the parent watches, without a thread).
    """

    def __init__(self, sock: socket.socket, workers: int, serve_one: Callable[[socket.socket], None],
                 tick: Callable[[], None] | None = None):
        self.sock, self.workers, self.serve_one, self.tick = sock, workers, serve_one, tick
        self.children: dict[int, int] = {}  # pid -> slot
        self._stopping = False

    def _fork(self, slot: int) -> None:
        single_threaded()
        parent = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                _die_with_parent(parent)
                self.serve_one(self.sock)
            except KeyboardInterrupt:
                pass
            except BaseException:  # noqa: BLE001 - logged; the parent starts another
                log.exception("server worker %d failed", slot)
                code = 1
            finally:
                logging.shutdown()
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.children[pid] = slot
        log.info("server worker %d: process %d", slot, pid)

    def _stop(self, *_):
        self._stopping = True

    def run(self) -> None:
        previous = {s: signal.signal(s, self._stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in range(self.workers):
                self._fork(slot)
            while not self._stopping:
                # each worker by its pid (not waitpid(-1): that would also reap the jobs
                # worker, whose Popen is watched by tanpu/cli.py's supervisor)
                for pid in list(self.children):
                    try:
                        done, status = os.waitpid(pid, os.WNOHANG)
                    except ChildProcessError:
                        done, status = pid, 0
                    if not done:
                        continue
                    slot = self.children.pop(pid)
                    log.warning("server worker %d (process %d) ended (%s); starting another",
                                slot, pid, _status(status))
                    time.sleep(1.0)  # a worker failing at start is not restarted in a busy loop
                    if not self._stopping:
                        self._fork(slot)
                if self.tick is not None and not self._stopping:
                    self.tick()
                time.sleep(0.2)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self._terminate()

    def _terminate(self) -> None:
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                self.children.pop(pid, None)
        deadline = time.monotonic() + 10
        while self.children and time.monotonic() < deadline:
            for pid in list(self.children):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid
                if done:
                    self.children.pop(pid, None)
            time.sleep(0.05)
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            except OSError as error:  # pragma: no cover
                if error.errno != errno.ECHILD:
                    raise
        self.children.clear()


def _status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit {os.waitstatus_to_exitcode(status)}"
