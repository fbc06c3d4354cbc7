"""Webhooks: an integrator's subscriptions to events, and their delivery log (the work is
registry/webhooks.py's; the worker sends). Registered on the API blueprint by views.py.

    POST   /api/v1/webhooks                 {"url", "events": [...]}: 201, with the
                                            `secret` that signs the deliveries (shown once)
    GET    /api/v1/webhooks                 your subscriptions
    GET    /api/v1/webhooks/<id>            one of them
    DELETE /api/v1/webhooks/<id>            unsubscribe (pending deliveries are dropped)
    GET    /api/v1/webhooks/<id>/deliveries?limit=&before=   the delivery log, newest first

Events: methodology.published, methodology.superseded, job.finished, credit.reversed.
Each delivery is a POST of {"id", "type", "created_at", "data"} with the headers
Tanpu-Event, Tanpu-Delivery, Tanpu-Attempt and Tanpu-Signature (t=<unix>,v1=<hex
HMAC-SHA256 of "<t>.<body>" with the secret>; docs/api.md shows how to verify it).
"""

from __future__ import annotations

from typing import Literal, Optional

from flask import Blueprint, g, jsonify
from pydantic import Field

from registry import webhooks

from ..db import get_db
from . import models
from .accounts import IDEMPOTENCY_KEY, idempotent, int_arg
from .openapi import operation, query
from .service import ApiError

Event = Literal["methodology.published", "methodology.superseded", "job.finished",
                "credit.reversed"]


class WebhookSubscribe(models.Request):
    url: str = Field(max_length=2000, description="where to POST the events (http or https)")
    events: list[Event] = Field(min_length=1, description="the events to receive")


class Webhook(models.Response):
    id: int
    url: str
    events: list[str]
    created_at: str


class WebhookCreated(Webhook):
    secret: str = Field(description="signs every delivery (HMAC-SHA256); shown in this "
                                    "answer only")


class WebhookList(models.Response):
    items: list[Webhook]


class Delivery(models.Response):
    id: int
    event: str
    event_id: str = Field(description="the event's id: the same on every attempt")
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status: Optional[int] = Field(description="the receiver's HTTP status, last attempt")
    last_error: Optional[str]
    created_at: str
    next_attempt_at: Optional[str]
    delivered_at: Optional[str]


class DeliveryLog(models.Response):
    items: list[Delivery]
    next_before: Optional[int] = Field(description="the `before` of the next page")


def register(api: Blueprint) -> None:
    """Adds the webhook routes to the API blueprint."""

    @operation(api, "POST", "/webhooks", body=WebhookSubscribe, response=WebhookCreated,
               status=201, summary="Subscribe a URL to events (the answer holds its secret)",
               params=(IDEMPOTENCY_KEY,))
    def subscribe(body: WebhookSubscribe):
        def change(s):
            row, secret = webhooks.subscribe(s, g.api_user.id, body.url, list(body.events))
            return {**webhooks.subscription_dict(row), "secret": secret}
        # a retry with the key gets the same subscription (and secret), not a second one
        return idempotent("subscribe_webhook", body.model_dump(mode="json"), change)

    @operation(api, "GET", "/webhooks", response=WebhookList, summary="Your subscriptions")
    def list_webhooks():
        with get_db().read() as s:
            return jsonify({"items": [webhooks.subscription_dict(r)
                                      for r in webhooks.of_integrator(s, g.api_user.id)]})

    @operation(api, "GET", "/webhooks/<int:subscription_id>", response=Webhook,
               summary="One of your subscriptions")
    def webhook(subscription_id: int):
        with get_db().read() as s:
            return jsonify(webhooks.subscription_dict(
                webhooks.get(s, g.api_user.id, subscription_id)))

    @operation(api, "DELETE", "/webhooks/<int:subscription_id>", status=204,
               summary="End a subscription (its pending deliveries are dropped)")
    def unsubscribe(subscription_id: int):
        with get_db().unit_of_work() as s:
            webhooks.unsubscribe(s, g.api_user.id, subscription_id)
        return "", 204

    @operation(api, "GET", "/webhooks/<int:subscription_id>/deliveries", response=DeliveryLog,
               summary="A subscription's delivery log, newest first",
               params=(query("limit", {"type": "integer", "minimum": 1, "maximum": 200}),
                       query("before", {"type": "integer"}, "the `next_before` of the page before")))
    def webhook_deliveries(subscription_id: int):
        limit = int_arg("limit", 50)
        if not (1 <= limit <= 200):
            raise ApiError(400, "bad_pagination", "1 ≤ limit ≤ 200")
        with get_db().read() as s:
            rows = webhooks.deliveries(s, g.api_user.id, subscription_id, limit=limit,
                                       before=int_arg("before", None))
            items = [webhooks.delivery_dict(r) for r in rows]
        return jsonify({"items": items,
                        "next_before": items[-1]["id"] if len(items) == limit else None})
