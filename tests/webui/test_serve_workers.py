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


# ---------------------------------------------------------------- the editor's live check
class _Browser:
    """A signed-in author's cookies and CSRF token, as the editor's script sends them;
    each request on a new connection (urllib keeps none), so that the two processes share
    them as they would share many browsers' requests."""

    def __init__(self, url: str, email: str, password: str):
        import http.cookiejar
        import re
        import urllib.parse

        self.url = url
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        page = self.opener.open(url + "/login", timeout=60).read().decode()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode({"email": email, "password": password,
                                       "csrf_token": token}).encode()
        page = self.opener.open(url + "/login", data=form, timeout=60).read().decode()
        self.csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)

    def check(self, text: str) -> dict:
        request = urllib.request.Request(
            self.url + "/editor/check",
            data=json.dumps({"source": text, "methodology": METHODOLOGY, "version": "1.1.0"}).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json",
                     "X-CSRFToken": self.csrf})
        with self.opener.open(request, timeout=120) as response:
            return json.loads(response.read())


def test_two_server_processes_answer_each_live_check_for_the_source_it_carried(web, tmp_path):
    """The editor's live check on `tanpu serve --workers 2` with its jobs worker (whose
    supervisor was a thread running at the forks; now polled from the parent's loop):
    checks of a source with a unit error and of its fix, alternating, each from a new
    connection, are served by both processes, and each answers for the source it carried:
    never a time-out, though each process's first check starts its check processes
    (webui/evaluation.py: that start is not counted in the check's time limit). The story
    test once saw the status of the source before an edit here (tests/browser)."""
    from dsl import compile_source
    from registry import users
    from tests.registry.helpers import source

    password = "live check password"
    with web.reg.db.unit_of_work() as s:
        users.set_password(s, None, web.reg.author, password)
        email = users.get(s, web.reg.author).email
    fixed = source(METHODOLOGY, "1.1.0")
    assert "reduction = reduction_factor[mode] * distance" in fixed
    broken = fixed.replace("reduction = reduction_factor[mode] * distance",
                           "reduction = reduction_factor[mode] + distance")
    log = tmp_path / "server.log"
    server, url = start_server(web.reg.db.url, log, "--workers", "2", "--no-seed")
    try:
        children = _children(server.pid)
        servers = {pid for pid in children if " serve " in _cmdline(pid)}
        assert len(servers) == 2 and len(children) == 3, log.read_text()[-2000:]  # and the jobs worker
        browser = _Browser(url, email, password)

        def one(n: int) -> tuple[str, dict]:
            # a new text each time (a comment), so that no cache answers for another one
            text = (broken if n % 2 else fixed) + f"\n# edit {n}\n"
            return text, browser.check(text)

        from concurrent.futures import ThreadPoolExecutor

        checking: set[int] = set()
        n = 0
        with ThreadPoolExecutor(4) as pool:
            while n < 80 and (n < 16 or len(checking) < 2):
                for text, answer in pool.map(one, range(n, n + 4)):
                    expected = compile_source(text, f"{METHODOLOGY}@1.1.0.tanpu")
                    assert not answer.get("timed_out"), answer["diagnostics"]
                    assert answer["ok"] is expected.ok
                    assert answer["content_hash"] == expected.content_hash
                    assert answer["errors"] == len(expected.errors)
                    assert answer["submission"]["submittable"] is expected.ok
                    said = [(d["code"], d["line"]) for d in answer["diagnostics"]]
                    assert said == [(d["code"], d["line"])
                                    for d in (x.to_json() for x in expected.diagnostics)]
                    assert answer["examples_passed"] is (True if expected.ok else None)
                n += 4
                # a server process that has run a check has its check processes' forkserver
                checking = {pid for pid in servers if _children(pid)}
        assert checking == servers, "both server processes ran checks"
        assert _children(server.pid) == children, "no process was started again"
    finally:
        server.terminate()
        server.wait(30)


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
