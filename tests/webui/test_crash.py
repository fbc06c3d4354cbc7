"""kill -9 of `tanpu serve` in the middle of a large credit request: nothing half written
(a request's credits are one transaction), and the same request sent again after a
restart credits every record exactly once (the real server, waitress, in a subprocess;
SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json
import signal
import threading
import time
import urllib.request

import pytest
import sqlalchemy as sa

from registry import tokens, users
from registry.db import Database
from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures (backend, empty_url)
from tests.webui.serverkit import start_server

METHODOLOGY = "cn.shenzhen.public-transit"  # published by the first start (the seeds)


def _rides(n: int) -> list[dict]:
    start = dt.datetime(2024, 5, 20, 6, 0)
    rides = []
    for i in range(n):
        boarded = start + dt.timedelta(minutes=40 * (i // 500))
        rides.append({"id": f"crash-{i}", "account": f"a{i % 500}", "mode": "metro",
                      "distance": f"{1 + i % 17} km", "boarded": boarded.isoformat(),
                      "alighted": (boarded + dt.timedelta(minutes=30)).isoformat()})
    return rides


def _post(url: str, token: str, body: dict, timeout: float = 300):
    request = urllib.request.Request(url + "/api/v1/credits", data=json.dumps(body).encode(),
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def test_kill_9_in_a_large_credit_request_loses_nothing_and_doubles_nothing(empty_url, tmp_path):
    log = tmp_path / "server.log"
    server, url = start_server(empty_url, log)  # migrates and seeds the bundled methodologies
    database = Database(empty_url)
    try:
        with database.unit_of_work() as s:
            admin = users.create_user(s, None, email="ops@tanpu.test", name="ops",
                                      roles=("administrator",))
            integrator = users.create_user(s, None, email="bus@tanpu.test", name="bus",
                                           roles=("integrator",))
            token = tokens.create(s, admin, integrator, "crash")[1]
        body = {"methodology": METHODOLOGY, "records": _rides(6000), "idempotency_key": "day-1"}

        def count() -> int:
            with database.engine.connect() as c:
                return c.execute(sa.text("SELECT COUNT(*) FROM credit_entries")).scalar_one()

        outcome = {}
        sender = threading.Thread(target=lambda: outcome.update(
            answer=_try(lambda: _post(url, token, body))))
        sender.start()
        # kill -9 while the request is being evaluated or written (or, on a fast machine,
        # just after it was answered: the assertions hold either way)
        time.sleep(0.8)
        server.send_signal(signal.SIGKILL)
        server.wait(30)
        sender.join(60)
        before = count()
        acknowledged = isinstance(outcome.get("answer"), dict)
        assert before in (0, 6000), "a request's credits are all written or none"
        assert not acknowledged or before == 6000, "an answered request lost credits"

        server, url = start_server(empty_url, log)
        again = _post(url, token, body)
        summary = again["summary"]
        assert summary["credited"] + summary["already_credited"] == 6000
        assert summary["credited"] == 6000 - before
        assert count() == 6000
        with database.engine.connect() as c:
            assert c.execute(sa.text("SELECT COUNT(DISTINCT record_id) FROM credit_entries")).scalar_one() == 6000
    finally:
        server.kill()
        server.wait(30)
        database.dispose()


def _try(call):
    try:
        return call()
    except Exception as error:  # noqa: BLE001 - the connection dies with the server
        return error
