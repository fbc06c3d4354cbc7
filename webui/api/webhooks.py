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

from flask import Blueprint, g, jsonify, request

from registry import webhooks

from ..db import get_db
from .accounts import int_arg
from .service import ApiError


def register(api: Blueprint) -> None:
    """Adds the webhook routes to the API blueprint."""

    @api.post("/webhooks")
    def subscribe():
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise ApiError(400, "bad_request", "send a JSON object (Content-Type: application/json)")
        unknown = sorted(set(data) - {"url", "events"})
        if unknown:
            raise ApiError(400, "bad_request", f"unknown field {unknown[0]!r}: url, events")
        with get_db().unit_of_work() as s:
            row, secret = webhooks.subscribe(s, g.api_user.id, data.get("url"), data.get("events"))
            body = {**webhooks.subscription_dict(row), "secret": secret}
        response = jsonify(body)
        response.status_code = 201
        return response

    @api.get("/webhooks")
    def list_webhooks():
        with get_db().read() as s:
            return jsonify({"items": [webhooks.subscription_dict(r)
                                      for r in webhooks.of_integrator(s, g.api_user.id)]})

    @api.get("/webhooks/<int:subscription_id>")
    def webhook(subscription_id: int):
        with get_db().read() as s:
            return jsonify(webhooks.subscription_dict(
                webhooks.get(s, g.api_user.id, subscription_id)))

    @api.delete("/webhooks/<int:subscription_id>")
    def unsubscribe(subscription_id: int):
        with get_db().unit_of_work() as s:
            webhooks.unsubscribe(s, g.api_user.id, subscription_id)
        return "", 204

    @api.get("/webhooks/<int:subscription_id>/deliveries")
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
