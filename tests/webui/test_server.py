"""The production server's connection settings (issue 17): idle connections are closed
after `--channel-timeout`, so more idle sockets than `--connection-limit` lock nobody out
for long (with waitress' defaults, 110 idle sockets locked every client out for minutes).
The real `tanpu serve` in a subprocess, on SQLite."""

from __future__ import annotations

import socket
import urllib.request

from tests.webui.serverkit import start_server


def test_idle_connections_beyond_the_limit_time_out_and_a_client_gets_through(tmp_path):
    server, url = start_server(f"sqlite:///{tmp_path / 'tanpu.db'}", tmp_path / "server.log",
                               "--no-seed", "--connection-limit", "20", "--channel-timeout", "2")
    port = int(url.rsplit(":", 1)[1])
    idle = []
    try:
        for _ in range(40):  # twice the limit, never sending a byte
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            idle.append(s)
        # the server accepts again once the idle ones are closed: this request is served
        with urllib.request.urlopen(url + "/healthz", timeout=60) as response:
            assert response.status == 200
        # and the idle sockets it accepted were closed by the server (EOF), not left open
        closed = 0
        for s in idle[:20]:
            s.settimeout(30)
            try:
                closed += s.recv(1) == b""
            except (ConnectionResetError, socket.timeout):
                closed += 0
        assert closed == 20
    finally:
        for s in idle:
            s.close()
        server.terminate()
        server.wait(timeout=30)


def test_prefork_refuses_to_fork_while_another_thread_runs():
    """A fork copies the locks another thread holds into the child, where nothing will
    release them (tanpu/server.py): `tanpu serve` runs no thread in the process that forks
    its workers, and Prefork refuses a fork when one runs, naming it, with no child made."""
    import threading

    import pytest

    from tanpu.server import Prefork

    served = []
    release = threading.Event()
    held = threading.Thread(target=release.wait, name="holding-a-lock")
    held.start()
    try:
        with socket.socket() as sock:
            prefork = Prefork(sock, 2, served.append)
            with pytest.raises(RuntimeError, match="holding-a-lock"):
                prefork.run()
            assert prefork.children == {} and served == []
    finally:
        release.set()
        held.join()
