"""Signing in and out, the current user, and the checks every view makes on the server.

    from webui.auth import current_user, login_required, require, requires

    @bp.get("/things")
    @login_required                          # anonymous: redirect to the sign-in page
    def things(): ...                        # (401 JSON under /api/)

    @bp.post("/users/<int:uid>/roles")
    @requires(users.can_manage_users)        # signed in and the predicate allows, else 403
    def grant(uid): ...

    require(workflow.can(current_user, version, "publish"))   # 403 with the reason

`current_user` is the signed-in registry User (loaded once per request, detached; its
roles are loaded) or None. Pass `current_user.id` to registry functions: they load the
actor in their own session and check its rights again.

Sessions are signed cookies that expire: after SESSION_IDLE_MINUTES without a request
(default 30) and at the latest SESSION_MAX_HOURS after signing in (default 12). They end
at once when the user is deactivated or their password changes.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import time
from typing import Callable, Optional
from urllib.parse import urlsplit

from flask import (Blueprint, abort, current_app, flash, g, redirect, render_template,
                   request, session, url_for)
from flask.sessions import SecureCookieSessionInterface
from flask_babel import gettext as _
from werkzeug.local import LocalProxy

from registry import users
from registry.models import User
from registry.users import Decision

from .db import get_db
from .limits import address, login_email, sign_in_attempt

bp = Blueprint("auth", __name__)

_SESSION_KEY = "auth"


class Sessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, their signing serializer made once per secret key
    (and fallbacks) instead of on every request: Flask makes one to open the session even
    when the request sends no cookie (every API request), a sixtieth of a single-record
    credit's CPU (docs/ledger.md, Session 17). The serializer holds no request's state."""

    _made: Optional[tuple] = None

    def get_signing_serializer(self, app):
        keys = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        made = self._made
        if made is None or made[0] != keys:
            made = self._made = (keys, super().get_signing_serializer(app))
        return made[1]


# ---------------------------------------------------------------- the current user
def _current_user() -> Optional[User]:
    return g.get("user")


current_user: Optional[User] = LocalProxy(_current_user)  # type: ignore[assignment]


def _fingerprint(user: User) -> str:
    """Changes when the password does: a session made before a password change ends."""
    key = current_app.secret_key.encode() if isinstance(current_app.secret_key, str) \
        else current_app.secret_key
    return hmac.new(key, (user.password_hash or "").encode(), hashlib.sha256).hexdigest()[:20]


def wants_json() -> bool:
    """API requests get JSON errors (and 401 instead of a redirect to the sign-in page)."""
    if request.path.startswith("/api/") or (request.blueprint or "").split(".")[0] == "api":
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes[best] > \
        request.accept_mimetypes["text/html"]


def load_user() -> None:
    """before_request: the session's user, if the session is still valid."""
    g.user = None
    if request.endpoint == "static":  # no database round trip for a stylesheet
        return
    data = session.get(_SESSION_KEY)
    if not data:
        return
    now = time.time()
    config = current_app.config
    idle = config["SESSION_IDLE_MINUTES"] * 60
    longest = config["SESSION_MAX_HOURS"] * 3600
    try:
        uid, signed_in, seen, fingerprint = (int(data["uid"]), float(data["at"]),
                                             float(data["seen"]), str(data["fp"]))
    except (KeyError, TypeError, ValueError):
        session.pop(_SESSION_KEY, None)
        return
    if now - seen > idle or now - signed_in > longest:
        session.clear()
        g.session_expired = True
        return
    token = data.get("sid")
    with get_db().read() as s:
        # the session must still be open on the server: signing out, a password or role
        # change and a deactivation end it there, whatever a copied cookie says
        user = users.session_user(s, token) if isinstance(token, str) else None
        if user is not None and user.id != uid:
            user = None
        if user is not None:
            user.roles  # noqa: B018 - loaded now: the object is used after the session ends
    if user is None or not user.active or not hmac.compare_digest(fingerprint, _fingerprint(user)):
        session.clear()
        return
    g.user = user
    if now - seen > 30:  # do not rewrite the cookie on every request
        data["seen"] = now
        session[_SESSION_KEY] = data


def sign_in(user: User) -> None:
    session.clear()  # a new session: nothing from before signing in carries over
    session.permanent = True
    now = time.time()
    with get_db().unit_of_work() as s:
        token = users.start_session(s, user.id)
    session[_SESSION_KEY] = {"uid": user.id, "at": now, "seen": now, "fp": _fingerprint(user),
                             "sid": token}
    g.user = user


def sign_out() -> None:
    data = session.get(_SESSION_KEY) or {}
    if isinstance(data.get("sid"), str):
        with get_db().unit_of_work() as s:
            users.end_session(s, data["sid"])
    session.clear()
    g.user = None


# ---------------------------------------------------------------- checks
def _unauthenticated():
    if wants_json():
        from .api.problems import problem
        return problem(401, "unauthenticated", "sign in first")
    if g.get("session_expired"):
        flash(_("Your session has expired. Please sign in again."), "warning")
    else:
        flash(_("Please sign in to continue."), "info")
    target = request.full_path if request.query_string else request.path
    return redirect(url_for("auth.login", next=target))


def login_required(view: Callable) -> Callable:
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if g.get("user") is None:
            return _unauthenticated()
        return view(*args, **kwargs)
    return wrapped


def require(decision: Decision) -> None:
    """403 with the decision's reason when it does not allow."""
    if not decision:
        abort(403, description=decision.reason or None)


def requires(predicate: Callable[[Optional[User]], Decision]) -> Callable:
    """A view for signed-in users whom `predicate(user)` (a registry.users.can_*) allows."""
    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            if g.get("user") is None:
                return _unauthenticated()
            require(predicate(g.user))
            return view(*args, **kwargs)
        return wrapped
    return decorate


def roles_required(*roles: str) -> Callable:
    """A view for signed-in users with at least one of `roles`."""
    def predicate(user: Optional[User]) -> Decision:
        if user is not None and user.active and user.roles & set(roles):
            return users.ALLOW
        return users.deny("needs the " + " or ".join(r.replace("_", " ") for r in roles) + " role")
    return requires(predicate)


def has_role(role: str) -> bool:
    user = g.get("user")
    return user is not None and user.has_role(role)


# ---------------------------------------------------------------- brute force
def _too_many(_limit):
    """Over the limit: the sign-in page again, with why (the right password waits too)."""
    flash(_("Too many failed sign-ins. Please wait a few minutes and try again."), "error")
    email = (request.form.get("email") or "").strip()
    return render_template("auth/login.html", email=email,
                           next_url=request.values.get("next", "")), 429


def _safe_next(target: Optional[str]) -> str:
    """Only a path on this site: never an absolute URL (an open redirect)."""
    if not target:
        return url_for("dashboard.index") if "dashboard.index" in current_app.view_functions \
            else "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") \
            or "\\" in target:
        return "/"
    return target


safe_next = _safe_next


# ---------------------------------------------------------------- views
@bp.route("/login", methods=["GET", "POST"])
# the failure limits are counted in the view (webui/limits.sign_in_attempt)
def login():
    next_url = request.values.get("next", "")
    if g.get("user") is not None and request.method == "GET":
        return redirect(_safe_next(next_url))
    email = ""
    status = 200
    if request.method == "POST":
        email = (request.form.get("email") or "").strip()
        password = request.form.get("password") or ""
        with sign_in_attempt(login_email(), "address:" + address()) as attempt:
            if not attempt.allowed:
                return _too_many(None)
            with get_db().unit_of_work() as s:
                user = users.authenticate(s, email, password)
                if user is not None:
                    user.roles  # noqa: B018 - loaded while the session is open
            if user is None:
                attempt.failed()
        if user is not None:
            sign_in(user)
            current_app.logger.info("sign-in: user %s", user.id)
            flash(_("Welcome, %(name)s.", name=user.name), "success")
            return redirect(_safe_next(next_url))
        current_app.logger.info("failed sign-in for %r from %s", email, request.remote_addr)
        flash(_("The email or password is not right."), "error")
        status = 401
    return render_template("auth/login.html", email=email, next_url=next_url), status


@bp.post("/logout")
def logout():
    sign_out()
    flash(_("You have signed out."), "info")
    return redirect(url_for("auth.login"))


# ---------------------------------------------------------------- passwords
RESET_SECONDS = 24 * 3600  # a reset link's life


def _reset_serializer():
    from itsdangerous import URLSafeTimedSerializer
    return URLSafeTimedSerializer(current_app.secret_key, salt="tanpu-password-reset")


def reset_link(user: User) -> str:
    """A link that lets `user` choose a new password once, within RESET_SECONDS: it names
    the password it replaces (its fingerprint), so it stops working once used, or once the
    password changes some other way. Signed with the secret key: no table to keep."""
    token = _reset_serializer().dumps({"uid": user.id, "fp": _fingerprint(user)})
    return url_for("auth.reset_password", token=token, _external=True)


def _user_of_reset(token: str) -> Optional[User]:
    from itsdangerous import BadSignature
    try:
        data = _reset_serializer().loads(token, max_age=RESET_SECONDS)
    except BadSignature:  # SignatureExpired is one
        return None
    with get_db().read() as s:
        user = s.get(User, data.get("uid")) if isinstance(data, dict) else None
        if user is None or not user.active or not hmac.compare_digest(
                _fingerprint(user), str(data.get("fp", ""))):
            return None
        user.roles  # noqa: B018 - loaded while the session is open
        return user


def _new_password(user_id: int) -> Optional[str]:
    """Sets the password typed twice in the form (None, with a message flashed, if not)."""
    password = request.form.get("password") or ""
    if password != (request.form.get("confirm") or ""):
        flash(_("The two passwords differ."), "error")
        return None
    from registry.errors import RegistryError

    from .i18n import server
    try:
        with get_db().unit_of_work() as s:
            users.set_password(s, user_id, user_id, password)
    except RegistryError as error:
        flash(server(error), "error")
        return None
    return password


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    """Every user changes their own password, giving the current one first."""
    status = 200
    if request.method == "POST":
        with get_db().read() as s:
            known = users.authenticate(s, current_user.email, request.form.get("current") or "")
        if known is None or known.id != current_user.id:
            flash(_("The current password is not right."), "error")
            status = 422
        elif _new_password(current_user.id) is None:
            status = 422
        else:
            with get_db().read() as s:
                user = s.get(User, current_user.id)
                user.roles  # noqa: B018
            sign_in(user)  # the change ended every session: this one goes on
            flash(_("Your password is changed; your other sessions are signed out."), "success")
            return redirect(_safe_next(None), code=303)
    return render_template("auth/password.html", min_password=users.MIN_PASSWORD_LENGTH, reset=False), status


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
def reset_password(token: str):
    """The page of a one-time link an administrator made: choose a new password."""
    user = _user_of_reset(token)
    if user is None:
        return render_template("auth/password.html", min_password=users.MIN_PASSWORD_LENGTH, reset=True, invalid=True), 410
    if request.method == "POST":
        if _new_password(user.id) is not None:
            sign_out()
            flash(_("Your password is set: sign in with it."), "success")
            return redirect(url_for("auth.login"), code=303)
        return render_template("auth/password.html", min_password=users.MIN_PASSWORD_LENGTH, reset=True, user=user), 422
    return render_template("auth/password.html", min_password=users.MIN_PASSWORD_LENGTH, reset=True, user=user)
