"""The Tanpu web UI: browse, review and audit methodologies and their results.

    from webui import create_app
    app = create_app()                                    # settings from the environment
    app = create_app({"DATABASE_URL": "sqlite:///x.db"})  # or Flask config overrides
    app = create_app(Settings(...))                       # or a registry.settings.Settings

`tanpu serve` runs it under waitress (`make run`).

Writing a blueprint (see webui/blueprints.py for how it is found):
  - templates `{% extends "base.html" %}` and fill `{% block content %}` (also `title`,
    `head` for extra CSS/JS, `scripts` at the end of the body); wrap strings in `_()`;
    the page's main heading is an <h1>.
  - every POST form carries `<input type="hidden" name="csrf_token" value="{{ csrf_token() }}">`
    (htmx: the base template sends the X-CSRFToken header on every htmx request).
  - `from webui.auth import current_user, login_required, requires, require` and
    `from webui.db import get_db`; call registry functions with current_user.id: they
    check the actor's rights again. Registry errors raised from a view become 403/404/
    409/422 pages (JSON under /api/) on their own.
  - `nav_link(endpoint)` in templates: the URL of an endpoint, or None when its
    blueprint is not there, for links across blueprints.
"""

from __future__ import annotations

import logging
import os
from datetime import timedelta
from typing import Any, Mapping, Optional, Union

from flask import Flask, url_for
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import BuildError, IntegerConverter

from registry.db import Database
from registry.settings import Settings

from .db import EXTENSION

__all__ = ["create_app"]


def _flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in ("1", "true", "yes", "on")


def _config(settings: Union[Settings, Mapping[str, Any], None]) -> dict[str, Any]:
    if isinstance(settings, Settings):
        base, overrides = settings, {}
    else:
        base, overrides = Settings.from_env(), dict(settings or {})
    config: dict[str, Any] = {
        "DATABASE_URL": base.database_url,
        "SECRET_KEY": base.secret_key,
        "SECRET_KEY_IS_EPHEMERAL": base.secret_key_is_ephemeral,
        # notification e-mail (registry.notifications): None, the default, sends none
        "SMTP": base.smtp,
        # sessions: signed cookies that expire
        "SESSION_COOKIE_NAME": "tanpu_session",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": _flag("TANPU_SECURE_COOKIES"),  # on behind HTTPS
        "SESSION_IDLE_MINUTES": int(os.environ.get("TANPU_SESSION_IDLE_MINUTES") or 30),
        "SESSION_MAX_HOURS": int(os.environ.get("TANPU_SESSION_MAX_HOURS") or 12),
        # forms: the CSRF token lives as long as the session
        "WTF_CSRF_TIME_LIMIT": None,
        "LOGIN_MAX_FAILURES": 10,
        "LOGIN_FAILURE_WINDOW_SECONDS": 15 * 60,
        # /api/v1 rate limits (webui/limits.py): Flask-Limiter's "N per second|minute|hour"
        "API_RATE_LIMIT_TOKEN": os.environ.get("TANPU_API_RATE_LIMIT_TOKEN") or "6000 per minute",
        "API_RATE_LIMIT_ADDRESS": os.environ.get("TANPU_API_RATE_LIMIT_ADDRESS") or "12000 per minute",
        # default: limits' memory storage without its timer thread (webui/limits.py)
        "RATELIMIT_STORAGE_URI": os.environ.get("TANPU_RATELIMIT_STORAGE_URI") or "tanpu-memory://",
        "MAX_CONTENT_LENGTH": 16 * 1024 * 1024,
        "CATALOGUE_PAGE_SIZE": 20,
        "AUDIT_PAGE_SIZE": 50,
        # the editor's check runs in a worker process stopped after this long (issue 17)
        "EDITOR_CHECK_SECONDS": float(os.environ.get("TANPU_EDITOR_CHECK_SECONDS") or 10),
        "TRUST_PROXY": _flag("TANPU_TRUST_PROXY"),
        # a blueprint that needs more (a CDN, inline scripts) changes it here, not per page
        "CONTENT_SECURITY_POLICY": (
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'self'"),
    }
    config.update(overrides)
    config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=config["SESSION_MAX_HOURS"])
    return config


class _Id(IntegerConverter):
    def __init__(self, map, *args, **kwargs):
        kwargs.setdefault("max", 2 ** 63 - 1)
        super().__init__(map, *args, **kwargs)


def create_app(settings: Union[Settings, Mapping[str, Any], None] = None, *,
               database: Optional[Database] = None) -> Flask:
    """The web application. `settings`: a tanpu Settings, or a mapping of Flask config
    overrides (DATABASE_URL, SECRET_KEY, TESTING, ...); None: from the environment.
    `database`: an existing registry Database to use (else one for DATABASE_URL)."""
    app = Flask(__name__)
    from .auth import Sessions
    app.session_interface = Sessions()
    # `<int:id>` in every route: at most a 64-bit id, so that a larger number is a 404
    # here rather than an overflow in the database driver (a 500; issue 17)
    app.url_map.converters["int"] = _Id
    app.config.update(_config(settings))
    if app.config["TRUST_PROXY"]:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore
    if not app.debug and not app.testing:
        logging.getLogger("webui").setLevel(logging.INFO)

    db = database or Database(app.config["DATABASE_URL"])
    app.extensions[EXTENSION] = db

    from . import errors, i18n, limits
    from .auth import current_user, has_role, load_user
    from .blueprints import register_all
    from .extensions import csrf
    from .views import common

    csrf.init_app(app)
    limits.init_app(app)
    i18n.init_app(app)
    errors.init_app(app)
    common.init_app(app)
    app.before_request(load_user)
    register_all(app)

    def nav_link(endpoint: str, **values) -> Optional[str]:
        if endpoint not in app.view_functions:
            return None
        try:
            return url_for(endpoint, **values)
        except BuildError:
            return None

    @app.context_processor
    def _globals():
        return {"current_user": current_user, "has_role": has_role, "nav_link": nav_link}

    @app.after_request
    def _security_headers(response):
        # the names already set read in one pass (each setdefault scanned every header)
        headers = response.headers
        present = {key.lower() for key in headers.keys()}
        policy = app.config["CONTENT_SECURITY_POLICY"]
        for name, value in (("X-Content-Type-Options", "nosniff"), ("X-Frame-Options", "DENY"),
                            ("Referrer-Policy", "same-origin"), ("Content-Security-Policy", policy),
                            ("Cache-Control", "no-store" if response.mimetype == "text/html" else None)):
            if value and name.lower() not in present:
                headers.add(name, value)
        return response

    app.add_url_rule("/healthz", "healthz", lambda: {"ok": True})
    return app
