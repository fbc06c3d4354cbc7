"""Rate limits (Flask-Limiter): the JSON API per token and per address, and failed
sign-ins per email and per address.

    API_RATE_LIMIT_TOKEN    "600 per minute"    requests of one token
    API_RATE_LIMIT_ADDRESS  "1200 per minute"   requests from one address (with or without
                                                a token: a flood of bad tokens is limited too)
    LOGIN_MAX_FAILURES, LOGIN_FAILURE_WINDOW_SECONDS   failed sign-ins (10 in 15 min)

The counters live in the limiter's storage (RATELIMIT_STORAGE_URI, default memory://, per
process; a redis:// URI shares them between processes), whose entries expire with their
window: nothing grows without bound, unlike the dictionary this replaces. API responses
carry RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset (seconds); a request over a
limit is a 429 problem (webui/api/views.py) with Retry-After.
"""

from __future__ import annotations

import hashlib
import time

from flask import current_app, request
from flask_limiter import HeaderNames, Limiter


def address() -> str:
    return request.remote_addr or "unknown"


def token_key() -> str:
    """The bearer token's digest (no database read: the limit applies before the token is
    checked), or the address when none is sent."""
    scheme, _sep, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return "token:" + hashlib.sha256(token.strip().encode()).hexdigest()[:32]
    return "addr:" + address()


def login_email() -> str:
    return "email:" + (request.form.get("email") or "").strip().lower()


def token_limit() -> str:
    return current_app.config["API_RATE_LIMIT_TOKEN"]


def address_limit() -> str:
    return current_app.config["API_RATE_LIMIT_ADDRESS"]


def login_limit() -> str:
    config = current_app.config
    return f"{config['LOGIN_MAX_FAILURES']} per {config['LOGIN_FAILURE_WINDOW_SECONDS']} second"


limiter = Limiter(
    address, headers_enabled=True, storage_uri="memory://", strategy="moving-window",
    header_name_mapping={HeaderNames.LIMIT: "RateLimit-Limit",
                         HeaderNames.REMAINING: "RateLimit-Remaining",
                         HeaderNames.RESET: "RateLimit-Reset"})


def init_app(app) -> None:
    app.config.setdefault("API_RATE_LIMIT_TOKEN", "600 per minute")
    app.config.setdefault("API_RATE_LIMIT_ADDRESS", "1200 per minute")

    @app.after_request  # registered first: after_request functions run last-first
    def _reset_in_seconds(response):
        """Flask-Limiter writes the reset as a Unix time; RateLimit-Reset is seconds."""
        reset = response.headers.get("RateLimit-Reset")
        if reset and reset.isdigit() and int(reset) > 1_000_000_000:
            response.headers["RateLimit-Reset"] = str(max(0, int(reset) - int(time.time())))
        return response

    limiter.init_app(app)
