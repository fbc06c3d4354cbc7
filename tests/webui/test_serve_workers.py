"""`tanpu serve --workers 2` as a real process on PostgreSQL (tanpu/server.py): 16
concurrent clients over HTTP, whose requests the two processes share, never exceed a
daily cap and never credit a record twice (the database's locks serialize an account
across processes as across threads); a worker killed with -9 is started again; and a
kill -9 of `tanpu serve` ends its workers with it (none is left holding the port)."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures
from tests.webui.reviewkit import METHODOLOGY
from tests.webui.serverkit import start_server
from tests.webui.test_api_state import (  # noqa: F401 - capped and its reg
    assert_each_ride_once_and_caps_held, capped, concurrent_rides, reg, ride, send_all_at_once)

pytestmark = pytest.mark.parametrize(
    "backend", [pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)])


def _post(url: str, token: str, records: list[dict]) -> dict:
    request = urllib.request.Request(
        url + "/api/v1/credits", data=json.dumps({"methodology": METHODOLOGY, "records": records}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(p) for p in (task / "children").read_text().split())
    return found


def _database_sockets(pid: int, port: int) -> int:
    """How many of process `pid`'s sockets are TCP connections to `port` (its pooled
    database connections: a worker opens them only when it serves a request)."""
    remote = f":{port:04X}"
    inodes = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[2].endswith(remote) and fields[3] == "01":  # ESTABLISHED
                inodes.add(fields[9])
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            count += 1
    return count


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _until(condition, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def test_two_server_processes_keep_caps_and_exactly_once(capped, tmp_path):
    web, token = capped
    server, url = start_server(web.reg.db.url, tmp_path / "server.log",
                               "--workers", "2", "--no-seed", "--no-worker")
    try:
        workers = _children(server.pid)
        assert len(workers) == 2, (tmp_path / "server.log").read_text()[-2000:]
        port = sa.engine.make_url(web.reg.db.url).port or 5432

        jobs = concurrent_rides("w", seed=99)

        def send(batch):
            for record in batch:  # one record a request, as integrators send them
                _post(url, token, [record])
            _post(url, token, batch)  # a retry of all of them: nothing twice

        send_all_at_once(jobs, send)
        assert all(_database_sockets(pid, port) > 0 for pid in workers), \
            "both processes served credits"
        assert_each_ride_once_and_caps_held(web, jobs)

        # a worker killed with -9 is replaced, and the server keeps answering
        killed = sorted(workers)[0]
        os.kill(killed, signal.SIGKILL)
        assert _until(lambda: len(_children(server.pid) - {killed}) == 2)
        answer = _post(url, token, [ride("after", 600, km=1, account="acct-9")])
        assert answer["results"][0]["status"] == "credited"

        # kill -9 of tanpu serve: its workers end with it
        workers = _children(server.pid)
        server.send_signal(signal.SIGKILL)
        server.wait(30)
        assert _until(lambda: not any(_alive(pid) for pid in workers))
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(30)
