"""Webhooks: an integrator's subscriptions to events, and the log of their deliveries.

    sub, secret = webhooks.subscribe(session, integrator_id, "https://ops.example/hook",
                                     ["job.finished", "credit.reversed"])
    webhooks.emit(session, "credit.reversed", data, integrator_id=7)   # in the event's transaction

Events: `methodology.published` and `methodology.superseded` (to every subscriber: the
catalogue is public), `job.finished` and `credit.reversed` (to the integrator whose job or
credit it is).

Why an outbox: `emit` writes one delivery row per subscription in the transaction of the
event itself, so a delivery exists exactly when the event happened (a rolled-back
publication sends nothing, a committed one is never forgotten by a crash). The worker
(webui/worker.py) sends them afterwards, outside any transaction, and retries a failure
with exponential backoff (`backoff`) until the receiver answers 2xx or MAX_ATTEMPTS
are spent. A receiver may see an event twice (a worker killed after the POST and before
it wrote the outcome): the `Tanpu-Delivery` header and the event's `id` tell it so.

Signature (`sign`): the header

    Tanpu-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>

where body is the request's bytes as sent. The receiver recomputes it with its secret,
compares in constant time, and refuses a `t` too far from its clock (replays).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
from typing import Optional
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit, bulk
from .errors import Invalid, NotFound
from .models import WEBHOOK_EVENTS, WebhookDelivery, WebhookSubscription, utcnow

MAX_ATTEMPTS = 10
SIGNATURE_HEADER = "Tanpu-Signature"
PUBLIC_EVENTS = ("methodology.published", "methodology.superseded")
MAX_SUBSCRIPTIONS = 20  # per integrator


def backoff_base() -> float:
    """Seconds before the first retry (TANPU_WEBHOOK_BACKOFF_SECONDS; small in tests)."""
    return float(os.environ.get("TANPU_WEBHOOK_BACKOFF_SECONDS") or 30)


def backoff(attempts: int) -> dt.timedelta:
    """The wait after the `attempts`-th failed attempt: base·2^(attempts-1), at most 6 h
    (30 s, 1 min, 2 min ... : 10 attempts span about 8.5 hours)."""
    return dt.timedelta(seconds=min(6 * 3600, backoff_base() * 2 ** max(0, attempts - 1)))


def sign(secret: str, body: bytes, timestamp: Optional[int] = None) -> str:
    """The Tanpu-Signature header's value for `body`."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode("utf-8"), f"{t}.".encode("ascii") + body, hashlib.sha256)
    return f"t={t},v1={mac.hexdigest()}"


def verify(secret: str, body: bytes, header: str, *, tolerance: int = 300,
           now: Optional[float] = None) -> bool:
    """What a receiver does (here for the tests and for Python receivers to copy)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance:
        return False
    expected = sign(secret, body, t).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


# ---------------------------------------------------------------- subscriptions
def _check_url(url) -> str:
    if not isinstance(url, str) or len(url) > 2000:
        raise Invalid("url: an http or https URL of at most 2,000 characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Invalid(f"url: an http or https URL, not {url[:100]!r}")
    if any(ord(c) <= 32 for c in url):
        raise Invalid("url: no spaces or control characters")
    return url


def _check_events(events) -> list[str]:
    if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
        raise Invalid(f"events: a non-empty list of {', '.join(WEBHOOK_EVENTS)}")
    unknown = [e for e in events if e not in WEBHOOK_EVENTS]
    if unknown:
        raise Invalid(f"events: unknown {', '.join(map(repr, unknown))}; "
                      f"known: {', '.join(WEBHOOK_EVENTS)}")
    return sorted(set(events))


def subscribe(session: Session, integrator_id: int, url, events) -> tuple[WebhookSubscription, str]:
    """A new subscription and its secret (kept, to sign; given to the integrator once)."""
    url, events = _check_url(url), _check_events(events)
    count = len(of_integrator(session, integrator_id))
    if count >= MAX_SUBSCRIPTIONS:
        raise Invalid(f"at most {MAX_SUBSCRIPTIONS} active subscriptions")
    secret = "whsec_" + secrets.token_urlsafe(32)
    row = WebhookSubscription(integrator_id=integrator_id, url=url, events=" ".join(events),
                              secret=secret, active=True, created_at=utcnow())
    session.add(row)
    session.flush()
    audit.append(session, integrator_id, "webhook.subscribe", "webhook_subscription", row.id,
                 {"url": url, "events": events})
    return row, secret


def of_integrator(session: Session, integrator_id: int) -> list[WebhookSubscription]:
    return list(session.scalars(select(WebhookSubscription).where(
        WebhookSubscription.integrator_id == integrator_id, WebhookSubscription.active)
        .order_by(WebhookSubscription.id)))


def get(session: Session, integrator_id: int, subscription_id: int) -> WebhookSubscription:
    row = session.get(WebhookSubscription, subscription_id) if subscription_id < 2 ** 31 else None
    if row is None or row.integrator_id != integrator_id or not row.active:
        raise NotFound(f"you have no webhook {subscription_id}")
    return row


def unsubscribe(session: Session, integrator_id: int, subscription_id: int) -> None:
    """Deactivated: no new deliveries; the pending ones are not sent."""
    row = get(session, integrator_id, subscription_id)
    row.active = False
    audit.append(session, integrator_id, "webhook.unsubscribe", "webhook_subscription", row.id,
                 {"url": row.url})
    session.execute(WebhookDelivery.__table__.update().where(
        WebhookDelivery.subscription_id == row.id, WebhookDelivery.status == "pending")
        .values(status="failed", last_error="unsubscribed"))


def subscription_dict(row: WebhookSubscription) -> dict:
    return {"id": row.id, "url": row.url, "events": row.events.split(),
            "created_at": row.created_at.isoformat().replace("+00:00", "Z")}


def deliveries(session: Session, integrator_id: int, subscription_id: int, *,
               limit: int = 50, before: Optional[int] = None) -> list[WebhookDelivery]:
    """The delivery log of a subscription, newest first."""
    row = session.get(WebhookSubscription, subscription_id) if subscription_id < 2 ** 31 else None
    if row is None or row.integrator_id != integrator_id:
        raise NotFound(f"you have no webhook {subscription_id}")
    query = select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription_id)
    if before is not None:
        query = query.where(WebhookDelivery.id < before)
    return list(session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit)))


def delivery_dict(row: WebhookDelivery) -> dict:
    def when(t):
        return t.isoformat().replace("+00:00", "Z") if t else None
    return {"id": row.id, "event": row.event, "event_id": row.event_id, "status": row.status,
            "attempts": row.attempts, "last_status": row.last_status,
            "last_error": row.last_error or None, "created_at": when(row.created_at),
            "next_attempt_at": when(row.next_attempt_at) if row.status == "pending" else None,
            "delivered_at": when(row.delivered_at)}


# ---------------------------------------------------------------- events
def emit(session: Session, event: str, data: dict, *, integrator_id: Optional[int] = None) -> int:
    """Queues `event` for every active subscription to it (of `integrator_id` only, for an
    integrator's own event), in the caller's transaction. The number queued."""
    if event not in WEBHOOK_EVENTS:
        raise ValueError(f"unknown event {event!r}")
    query = select(WebhookSubscription).where(WebhookSubscription.active)
    if event not in PUBLIC_EVENTS:
        query = query.where(WebhookSubscription.integrator_id == integrator_id)
    now = utcnow()
    event_id = str(uuid.uuid4())
    body = json.dumps({"id": event_id, "type": event,
                       "created_at": now.isoformat().replace("+00:00", "Z"), "data": data},
                      ensure_ascii=False, separators=(",", ":"), default=str)
    count = 0
    for sub in session.scalars(query):
        if event in sub.events.split():
            session.add(WebhookDelivery(subscription_id=sub.id, event_id=event_id, event=event,
                                        payload=body, status="pending", attempts=0,
                                        next_attempt_at=now, last_error="", created_at=now))
            count += 1
    if count:
        session.flush()
    return count


# ---------------------------------------------------------------- the worker's side
SEND_LEASE = dt.timedelta(minutes=2)  # longer than a delivery's timeout


def due(session: Session, limit: int = 20) -> list[tuple[int, str, str, str, int]]:
    """Pending deliveries whose time has come, leased for SEND_LEASE (their next attempt
    moved past it, so another worker leaves them alone): (id, url, secret, payload,
    attempts) each."""
    now = utcnow()
    query = (select(WebhookDelivery.id).where(WebhookDelivery.status == "pending",
                                              WebhookDelivery.next_attempt_at <= now)
             .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(limit))
    if bulk.is_postgresql(session):
        query = query.with_for_update(skip_locked=True)
    ids = list(session.scalars(query))
    if not ids:
        return []
    out = []
    for row in session.scalars(select(WebhookDelivery).where(WebhookDelivery.id.in_(ids))
                               .order_by(WebhookDelivery.id)):
        sub = session.get(WebhookSubscription, row.subscription_id)
        row.next_attempt_at = now + SEND_LEASE
        out.append((row.id, sub.url, sub.secret, row.payload, row.attempts))
    session.flush()
    return out


def record_attempt(session: Session, delivery_id: int, *, status: Optional[int],
                   error: str = "") -> WebhookDelivery:
    """The outcome of one POST: delivered on 2xx, else retried after backoff() or, the
    attempts spent, failed."""
    row = session.get(WebhookDelivery, delivery_id)
    now = utcnow()
    row.attempts += 1
    row.last_status = status
    row.last_error = error[:2000]
    if status is not None and 200 <= status < 300:
        row.status, row.delivered_at, row.last_error = "delivered", now, ""
    elif row.attempts >= MAX_ATTEMPTS:
        row.status = "failed"
    else:
        row.next_attempt_at = now + backoff(row.attempts)
    return row

