"""kill -9 of the worker in the middle of a credit job, and then of the web process
(`tanpu serve`, which starts the worker and starts it again): the job still ends, every
record credited exactly once, its results complete with every record once (real
processes, SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request

import sqlalchemy as sa

from registry import tokens, users
from registry.db import Database
from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures (backend, empty_url)
from tests.webui.serverkit import start_server as _start
from tests.webui.test_crash import METHODOLOGY, _rides

N = 12_000


def _request(url: str, token: str, path: str, data=None, headers=None):
    request = urllib.request.Request(url + path, data=data, headers={
        "Authorization": f"Bearer {token}", **(headers or {})})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, response.read()


def _job(url: str, token: str, job_id: str) -> dict:
    return json.loads(_request(url, token, f"/api/v1/jobs/{job_id}")[1])


def _wait(condition, what: str, seconds: float = 180):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _worker_pid(database: Database, job_id: str):
    with database.engine.connect() as c:
        owner = c.execute(sa.text("SELECT lease_owner FROM jobs WHERE id = :i"), {"i": job_id}).scalar()
    return int(owner.split(":")[1]) if owner else None


def test_kill_9_of_the_worker_and_the_server_mid_job_credits_each_record_once(empty_url, tmp_path, monkeypatch):
    monkeypatch.setenv("TANPU_JOBS_DIR", str(tmp_path / "jobs"))
    monkeypatch.setenv("TANPU_JOB_CHUNK_ROWS", "300")
    monkeypatch.setenv("TANPU_JOB_LEASE_SECONDS", "2")
    log = tmp_path / "server.log"
    server, url = _start(empty_url, log)
    database = Database(empty_url)
    try:
        with database.unit_of_work() as s:
            admin = users.create_user(s, None, email="ops@tanpu.test", name="ops",
                                      roles=("administrator",))
            integrator = users.create_user(s, None, email="bus@tanpu.test", name="bus",
                                           roles=("integrator",))
            token = tokens.create(s, admin, integrator, "crash")[1]
        # a stream of records (chunked transfer encoding: no length said beforehand)
        body = ((json.dumps(r) + "\n").encode() for r in _rides(N))
        status, answer = _request(url, token, f"/api/v1/jobs?methodology={METHODOLOGY}&mode=credit",
                                  body, {"Content-Type": "application/x-ndjson"})
        assert status == 202
        job_id = json.loads(answer)["id"]

        # the worker killed mid-job (with a chunk, or its part files, half done)
        _wait(lambda: _job(url, token, job_id)["progress"]["chunks_done"] >= 3, "three chunks")
        first = _wait(lambda: _worker_pid(database, job_id), "a worker holding the job")
        os.kill(first, signal.SIGKILL)
        killed_at = _job(url, token, job_id)["progress"]["rows_done"]
        assert killed_at < N, "the job ended before the worker was killed"

        # `tanpu serve` starts another, which takes the job over when the lease runs out
        _wait(lambda: _job(url, token, job_id)["progress"]["rows_done"] > killed_at + 600,
              "the job resumed by another worker")
        assert _worker_pid(database, job_id) not in (None, first)

        # the web process killed too, then started again: its new worker ends the job
        server.send_signal(signal.SIGKILL)
        server.wait(30)
        server, url = _start(empty_url, log)
        done = _wait(lambda: (lambda j: j if j["status"] in ("succeeded", "failed") else None)(
            _job(url, token, job_id)), "the job's end")
        assert done["status"] == "succeeded", done
        assert done["attempts"] >= 2
        assert done["progress"]["rows_done"] == done["progress"]["rows_total"] == N

        with database.engine.connect() as c:
            count, distinct, total = c.execute(sa.text(
                "SELECT COUNT(*), COUNT(DISTINCT record_id), COALESCE(SUM(reduction_mg), 0) "
                "FROM credit_entries")).one()
        results = [json.loads(line) for line in
                   _request(url, token, f"/api/v1/jobs/{job_id}/results")[1].splitlines()]
        errors = _request(url, token, f"/api/v1/jobs/{job_id}/errors")[1].splitlines()
        assert sorted(r["index"] for r in results) == list(range(N)) and errors == []
        credited = [r for r in results if r["credit"] == "credited"]
        assert count == distinct == len(credited) == done["summary"]["credited"]
        assert total == sum(r["reduction_mg"] for r in credited) == done["summary"]["reduction_mg"]
        assert {r["credit"] for r in results} <= {"credited", "not_creditable"}
        assert len(credited) > N // 2
    finally:
        server.kill()
        server.wait(30)
        database.dispose()
