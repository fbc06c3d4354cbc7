"""Webhooks (issue 14, item 7): an integrator subscribes to events; a version published
(and the one it supersedes), a job finished and a credit reversed are delivered to a real
HTTP receiver the test starts, signed with HMAC-SHA256 (the receiver verifies it as
docs/api.md says), retried with backoff after a failure, logged (the delivery log of the
API), and an integrator's own events go to that integrator only. SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from registry import reversals, webhooks
from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures
from tests.webui.reviewkit import METHODOLOGY
from tests.webui.test_api_state import _second_integrator, post, ride
from tests.webui.test_jobs import as_jsonl, rides, submit
from webui.worker import Worker


class Receiver:
    """An HTTP server in a thread that keeps what it is sent and answers `codes` in turn
    (then 200)."""

    def __init__(self, codes=()):
        self.received: list[tuple[dict, bytes]] = []
        self.codes = list(codes)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                code = receiver.codes.pop(0) if receiver.codes else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[dict]:
        return [json.loads(body) for _headers, body in self.received]


@pytest.fixture
def receivers():
    made = []

    def make(codes=()):
        made.append(Receiver(codes))
        return made[-1]
    yield make
    for r in made:
        r.close()


@pytest.fixture(autouse=True)
def _fast(tmp_path, monkeypatch):
    monkeypatch.setenv("TANPU_JOBS_DIR", str(tmp_path / "jobs"))
    monkeypatch.setenv("TANPU_WEBHOOK_BACKOFF_SECONDS", "0")
    monkeypatch.setenv("TANPU_WEBHOOK_ALLOW_PRIVATE", "1")  # the receivers are on 127.0.0.1


def subscribe(web, token, url, events) -> dict:
    response = web.app.test_client().post("/api/v1/webhooks", headers=web.api(token),
                                          json={"url": url, "events": events})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def deliver(web) -> None:
    Worker(web.reg.db).run_once()


def test_events_are_delivered_signed_retried_and_logged(web, reg, receivers):
    web.published("1.0.0", dt.date(2024, 1, 1))
    token = web.token()
    other = web.token(_second_integrator(reg))
    mine, theirs = receivers(codes=[500]), receivers()
    sub = subscribe(web, token, mine.url, ["methodology.published", "methodology.superseded",
                                           "job.finished", "credit.reversed"])
    assert sub["secret"].startswith("whsec_") and sub["events"] == sorted(sub["events"])
    their_sub = subscribe(web, other, theirs.url, ["methodology.published", "job.finished",
                                                   "credit.reversed"])

    web.published("1.1.0", dt.date(2024, 7, 1), grace_days=36500)  # supersedes 1.0.0
    job_id = submit(web, token, as_jsonl(rides(5)), "application/x-ndjson").get_json()["id"]
    deliver(web)  # the job runs; its event is queued and sent with the others
    credited = post(web, token, [ride("r-1", 0)])
    with web.reg.db.read() as s:
        entry_id = s.execute(sa.text("SELECT id FROM credit_entries WHERE record_id = 'r-1'")).scalar_one()
    with web.reg.db.unit_of_work() as s:
        reversals.reverse(s, reg.admin, entry_id, reason="a duplicate trip")
    assert credited["summary"]["credited"] == 1
    for _ in range(3):  # the first POST to `mine` failed: retried (backoff 0 s here)
        deliver(web)

    by_type = {e["type"]: e for e in mine.events()}
    assert set(by_type) == {"methodology.published", "methodology.superseded", "job.finished",
                            "credit.reversed"}
    assert by_type["methodology.published"]["data"]["version"] == "1.1.0"
    assert by_type["methodology.superseded"]["data"] == {**by_type["methodology.superseded"]["data"],
                                                        "version": "1.0.0", "successor": "1.1.0"}
    assert by_type["job.finished"]["data"]["id"] == job_id
    assert by_type["job.finished"]["data"]["status"] == "succeeded"
    assert by_type["credit.reversed"]["data"]["record_id"] == "r-1"
    # the other integrator: the public events, not this integrator's job or reversal
    assert [e["type"] for e in theirs.events()] == ["methodology.published"]

    for headers, body in mine.received:
        signature = headers["Tanpu-Signature"]
        assert webhooks.verify(sub["secret"], body, signature)
        assert not webhooks.verify(their_sub["secret"], body, signature)
        assert not webhooks.verify(sub["secret"], body.replace(b"1", b"2", 1), signature)
        assert headers["Tanpu-Event"] == json.loads(body)["type"]
    first = mine.received[0]
    again = [h for h, b in mine.received[1:] if b == first[1]]
    assert again and again[0]["Tanpu-Delivery"] == first[0]["Tanpu-Delivery"]
    assert again[0]["Tanpu-Attempt"] == "2"

    log = web.app.test_client().get(f"/api/v1/webhooks/{sub['id']}/deliveries",
                                    headers=web.api(token)).get_json()["items"]
    assert len(log) == 4 and {d["status"] for d in log} == {"delivered"}
    retried = [d for d in log if d["attempts"] == 2]
    assert len(retried) == 1 and retried[0]["last_status"] == 200
    assert retried[0]["id"] == int(first[0]["Tanpu-Delivery"])
    assert web.app.test_client().get(f"/api/v1/webhooks/{sub['id']}/deliveries",
                                     headers=web.api(other)).status_code == 404


def test_a_receiver_that_keeps_failing_is_retried_with_growing_waits_then_given_up(web, receivers, monkeypatch):
    monkeypatch.setattr(webhooks, "MAX_ATTEMPTS", 3)
    token = web.token()
    down = receivers(codes=[503, 503, 503, 503])
    sub = subscribe(web, token, down.url, ["methodology.published"])
    web.published("1.0.0", dt.date(2024, 1, 1))
    for _ in range(5):
        deliver(web)
    assert len(down.received) == 3
    log = web.app.test_client().get(f"/api/v1/webhooks/{sub['id']}/deliveries",
                                    headers=web.api(token)).get_json()["items"]
    assert [(d["status"], d["attempts"], d["last_status"]) for d in log] == [("failed", 3, 503)]
    monkeypatch.setenv("TANPU_WEBHOOK_BACKOFF_SECONDS", "30")
    assert [webhooks.backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert webhooks.backoff(40).total_seconds() == 6 * 3600


def test_after_a_failure_the_next_attempt_waits(web, receivers, monkeypatch):
    monkeypatch.setenv("TANPU_WEBHOOK_BACKOFF_SECONDS", "3600")
    token = web.token()
    down = receivers(codes=[500])
    subscribe(web, token, down.url, ["methodology.published"])
    web.published("1.0.0", dt.date(2024, 1, 1))
    deliver(web)
    deliver(web)  # not due yet: not sent again
    assert len(down.received) == 1
    with web.reg.db.read() as s:
        row = s.scalars(sa.select(webhooks.WebhookDelivery)).one()
    assert row.status == "pending" and row.attempts == 1
    assert row.next_attempt_at - row.created_at >= dt.timedelta(minutes=59)


def test_subscriptions_are_checked_and_each_integrator_s_own(web, reg, receivers):
    token, other = web.token(), web.token(_second_integrator(reg))
    client = web.app.test_client()
    for bad in ({"url": "ftp://x/y", "events": ["job.finished"]},
                {"url": "http://x/y", "events": ["job.started"]},
                {"url": "http://x/y", "events": []},
                {"url": "http://x/y", "events": ["job.finished"], "secret": "mine"}):
        response = client.post("/api/v1/webhooks", headers=web.api(token), json=bad)
        assert response.status_code in (400, 422), bad
    sub = subscribe(web, token, receivers().url, ["job.finished"])
    assert "secret" not in client.get(f"/api/v1/webhooks/{sub['id']}", headers=web.api(token)).get_json()
    assert client.get(f"/api/v1/webhooks/{sub['id']}", headers=web.api(other)).status_code == 404
    assert client.delete(f"/api/v1/webhooks/{sub['id']}", headers=web.api(other)).status_code == 404
    assert [s["id"] for s in client.get("/api/v1/webhooks", headers=web.api(token)).get_json()["items"]] == [sub["id"]]
    assert client.delete(f"/api/v1/webhooks/{sub['id']}", headers=web.api(token)).status_code == 204
    assert client.get("/api/v1/webhooks", headers=web.api(token)).get_json()["items"] == []
    with web.reg.db.unit_of_work() as s:
        assert webhooks.emit(s, "job.finished", {}, integrator_id=reg.integrator) == 0


def test_a_url_inside_the_server_s_network_is_not_posted_to(web, receivers, monkeypatch):
    monkeypatch.delenv("TANPU_WEBHOOK_ALLOW_PRIVATE")
    token = web.token()
    inside = receivers()
    sub = subscribe(web, token, inside.url, ["methodology.published"])
    web.published("1.0.0", dt.date(2024, 1, 1))
    deliver(web)
    assert inside.received == []
    log = web.app.test_client().get(f"/api/v1/webhooks/{sub['id']}/deliveries",
                                    headers=web.api(token)).get_json()["items"]
    # (retried without waiting here, until the attempts run out)
    assert log[0]["status"] == "failed" and log[0]["attempts"] == webhooks.MAX_ATTEMPTS
    assert "127.0.0.1" in log[0]["last_error"] and "not a public address" in log[0]["last_error"]
