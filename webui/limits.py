"""Rate limits (the `limits` library): the JSON API per token and per address, and failed
sign-ins per email and per address.

    API_RATE_LIMIT_TOKEN    requests of one token
    API_RATE_LIMIT_ADDRESS  requests from one address (with or without a token: a flood of
                            bad tokens is limited too)
    (their defaults are set once, by the app factory: webui/__init__.py)
    LOGIN_MAX_FAILURES, LOGIN_FAILURE_WINDOW_SECONDS   failed sign-ins (10 in 15 min)

The counters live in the limits' storage (RATELIMIT_STORAGE_URI, default tanpu-memory://, per
process; a redis:// URI shares them between processes), whose entries expire with their
window: nothing grows without bound, unlike the dictionary this replaces. API responses
carry RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset (seconds) of the limit
nearest to being spent (and Retry-After); a request over a limit is a 429 problem
(webui/api/views.py) with Retry-After.

Until 2026-12-07 Flask-Limiter applied the API's limits: resolving which limits apply to a
request (its blueprint's, the decorated view's, the exemptions, the dynamic limits parsed
again) took 6-8 % of a single-record credit's CPU (docs/ledger.md, Session 17); the two
limits here are known in advance, so `check_api` hits them directly with the same
moving-window strategy and the same storage keys (a limit, its key and its scope).
"""

from __future__ import annotations

import hashlib
import threading
import time
import weakref
from contextlib import contextmanager
from functools import lru_cache

from flask import current_app, g, request
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from werkzeug.exceptions import TooManyRequests

EXTENSION = "tanpu.limits"
TOKEN_SCOPE, ADDRESS_SCOPE = "api-token", "api-address"


def address() -> str:
    return request.remote_addr or "unknown"


def token_key() -> str:
    """The bearer token's digest (no database read: the limit applies before the token is
    checked), or the address when none is sent."""
    scheme, _sep, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return "token:" + _digest(token.strip())
    return "addr:" + address()


@lru_cache(maxsize=4096)
def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def login_email() -> str:
    return "email:" + (request.form.get("email") or "").strip().lower()


def login_limit() -> str:
    config = current_app.config
    return f"{config['LOGIN_MAX_FAILURES']} per {config['LOGIN_FAILURE_WINDOW_SECONDS']} second"


@lru_cache(maxsize=64)
def _parsed(text: str) -> RateLimitItem:
    return parse(text)


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


def strategy() -> MovingWindowRateLimiter:
    """The app's moving-window limiter on its storage (init_app)."""
    return current_app.extensions[EXTENSION]


def check_api() -> None:
    """before_request of /api/v1 (before the token is checked): one hit on the token's
    limit, then one on the address's; over either, a 429 (the other not counted, as
    Flask-Limiter did). What the response's headers say is left in `g` for
    `api_headers`."""
    config = current_app.config
    limiter = current_app.extensions[EXTENSION]
    checks = ((_parsed(config["API_RATE_LIMIT_TOKEN"]), token_key(), TOKEN_SCOPE),
              (_parsed(config["API_RATE_LIMIT_ADDRESS"]), address(), ADDRESS_SCOPE))
    for limit, key, scope in checks:
        if not limiter.hit(limit, key, scope):
            g.api_limit = (limit, key, scope)
            reset = limiter.get_window_stats(limit, key, scope).reset_time
            raise TooManyRequests(str(limit), retry_after=max(1, int(reset - time.time())))
    g.api_limit = checks


def api_headers(response):
    """after_request of /api/v1: RateLimit-Limit, -Remaining, -Reset (seconds) of the
    limit over which the request was refused, else of the one with the fewest requests
    left; and Retry-After, the seconds until that limit's window moves on."""
    checked = g.get("api_limit")
    if checked is None:
        return response
    limiter = current_app.extensions[EXTENSION]
    if isinstance(checked[0], RateLimitItem):  # refused over this limit
        limit, stats = checked[0], limiter.get_window_stats(*checked)
    else:
        limit, stats = None, None
        for item, key, scope in checked:
            now = limiter.get_window_stats(item, key, scope)
            if stats is None or now.remaining < stats.remaining:
                limit, stats = item, now
    now = time.time()
    headers = response.headers
    headers.add("RateLimit-Limit", str(limit.amount))
    headers.add("RateLimit-Remaining", str(stats.remaining))
    headers.add("RateLimit-Reset", str(max(0, int(stats.reset_time) - int(now))))
    retry = headers.get("Retry-After")
    headers["Retry-After"] = str(max(int(retry) if retry and retry.isdigit() else 0,
                                     int(stats.reset_time - now)))
    return response


def init_app(app) -> None:
    app.extensions[EXTENSION] = MovingWindowRateLimiter(
        storage_from_string(app.config["RATELIMIT_STORAGE_URI"]))


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
        self._strategy = strategy()
        self.allowed = all(self._strategy.test(limit, key) for key in keys)

    def failed(self) -> None:
        for key in self._keys:
            self._strategy.hit(self._limit, key)


@contextmanager
def sign_in_attempt(*keys: str):
    """Checking a password is slow on purpose (argon2), and Flask-Limiter (before 2026-12-07)
    counted a failure only after the response: 200 concurrent wrong passwords for one account all passed
    the check before the first was counted (17 checks through a limit of 10 in issue 17).
    Here the test, the password check and the count of a failure run under one lock per
    key (the email, the address), so at most the limit's number of passwords are ever
    checked, in this process. (Several processes share counts through a shared
    RATELIMIT_STORAGE_URI, but not these locks: each may let the limit's number through.)"""
    limit = _parsed(login_limit())
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
