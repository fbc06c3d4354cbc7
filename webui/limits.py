"""Rate limits (Flask-Limiter): the JSON API per token and per address, and failed
sign-ins per email and per address.

    API_RATE_LIMIT_TOKEN    "600 per minute"    requests of one token
    API_RATE_LIMIT_ADDRESS  "1200 per minute"   requests from one address (with or without
                                                a token: a flood of bad tokens is limited too)
    LOGIN_MAX_FAILURES, LOGIN_FAILURE_WINDOW_SECONDS   failed sign-ins (10 in 15 min)

The counters live in the limiter's storage (RATELIMIT_STORAGE_URI, default tanpu-memory://, per
process; a redis:// URI shares them between processes), whose entries expire with their
window: nothing grows without bound, unlike the dictionary this replaces. API responses
carry RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset (seconds); a request over a
limit is a 429 problem (webui/api/views.py) with Retry-After.
"""

from __future__ import annotations

import hashlib
import threading
import time
import weakref
from contextlib import contextmanager

from flask import current_app, request
from flask_limiter import HeaderNames, Limiter
from limits.storage import MemoryStorage


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


class _SweptMemory(MemoryStorage):
    """limits' memory storage, its old entries swept at most once a second in the thread
    of a request instead of by a timer thread it starts (for 10 ms) whenever none is
    running: at 200 requests/s that was a new thread for nearly every request, the
    largest single cost of a one-record evaluation (measured, docs/api.md). The sweep
    only frees memory: every check compares the entries' times itself. Should limits
    rename the method overridden here, its own timer simply keeps working."""

    STORAGE_SCHEME = ["tanpu-memory"]
    _swept = 0.0

    def _MemoryStorage__schedule_expiry(self) -> None:
        now = time.monotonic()
        if now - self._swept >= 1.0:
            self._swept = now
            self._MemoryStorage__expire_events()


limiter = Limiter(
    # no storage_uri here: Flask-Limiter prefers its constructor's to the app's
    # RATELIMIT_STORAGE_URI (webui/__init__.py: TANPU_RATELIMIT_STORAGE_URI, default
    # tanpu-memory://), which was then never read
    address, headers_enabled=True, strategy="moving-window",
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


# ---------------------------------------------------------------- failed sign-ins
class _Lock:
    __slots__ = ("lock", "__weakref__")

    def __init__(self):
        self.lock = threading.Lock()


_attempt_locks: "weakref.WeakValueDictionary[str, _Lock]" = weakref.WeakValueDictionary()
_attempt_guard = threading.Lock()


class SignInAttempt:
    """One sign-in attempt under the failure limits: `allowed` is decided before the
    password is checked, and `failed()` counts the failure, both under the keys' locks."""

    def __init__(self, limit, keys: list[str]):
        self._limit, self._keys = limit, keys
        self.allowed = all(limiter.limiter.test(limit, key) for key in keys)

    def failed(self) -> None:
        for key in self._keys:
            limiter.limiter.hit(self._limit, key)


@contextmanager
def sign_in_attempt(*keys: str):
    """Checking a password is slow on purpose (argon2), and Flask-Limiter counts a failure
    only after the response: 200 concurrent wrong passwords for one account all passed
    the check before the first was counted (17 checks through a limit of 10 in issue 17).
    Here the test, the password check and the count of a failure run under one lock per
    key (the email, the address), so at most the limit's number of passwords are ever
    checked, in this process. (Several processes share counts through a shared
    RATELIMIT_STORAGE_URI, but not these locks: each may let the limit's number through.)"""
    from limits import parse

    limit = parse(login_limit())
    scoped = [f"sign-in/{key}" for key in keys]
    holders = []
    with _attempt_guard:
        for key in sorted(scoped):  # one order: no deadlock between two keys
            holder = _attempt_locks.get(key)
            if holder is None:
                holder = _attempt_locks[key] = _Lock()
            holders.append(holder)
    for holder in holders:
        holder.lock.acquire()
    try:
        yield SignInAttempt(limit, scoped)
    finally:
        for holder in reversed(holders):
            holder.lock.release()
