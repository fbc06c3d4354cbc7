"""The JSON API for integrators, and the page where integrators manage their tokens.

    Authorization: Bearer tanpu_...              every /api/v1 request (an integrator's token)

    GET  /api/v1/                                what is here
    GET  /api/v1/methodologies?page=&per_page=   published methodologies, with their versions
    GET  /api/v1/methodologies/<id>/schema       describe() of the version in force (or
                                                 ?version=X.Y.Z), with the input JSON Schema
    POST /api/v1/evaluate                        {"methodology", "records": [...], "explain",
                                                 "as_of"}: each record evaluated by the version
                                                 applicable at its time; bad records are listed
                                                 in "errors" with their index and reason
    POST /api/v1/credits                         {"methodology", "records", "idempotency_key"}
                                                 (or the Idempotency-Key header): evaluated as
                                                 above, then credited in one transaction; a
                                                 record is credited at most once

    POST   /api/v1/accounts                      carbon accounts (accounts.py): create one
    GET    /api/v1/accounts?page=&per_page=&kind=&status=&parent=   those you see
    GET    /api/v1/accounts/<id>                 with its parent, children, domains, status
                                                 and your own ids for it (never another's)
    PATCH  /api/v1/accounts/<id>                 status, parent, name, domains
    PUT    /api/v1/accounts/<id>/identities/<external_id>   link your account id to it
    DELETE /api/v1/accounts/<id>/identities/<external_id>   unlink it
    GET    /api/v1/accounts/<id>/balance         its totals and its subtree's (computed)

    GET /api/v1/accounts/<id>/statement?after=&limit=&from=&to=&methodology=&subtree=
                                                 your entries of the account in the order
                                                 they were written (ledger.py; keyset pages)
    GET /api/v1/accounts/<id>/balances?period=day|week|month|year&from=&to=&timezone=
                                                 reduction, points and bonus per period
                                                 and methodology
    GET /api/v1/credits/<record_id>?methodology= your credits of one of your record ids
    GET /api/v1/batches/<id>?after=&limit=       one of your credit batches, its entries
    GET/POST /api/v1/rewards, POST /api/v1/accounts/<id>/redemptions, GET .../wallet,
    POST /api/v1/credits/<entry_id>/reversal, POST /api/v1/accounts/<id>/retirements,
    GET /api/v1/retirements/<id> (public): spending, reversal, retirement (rewards.py)
    POST /api/v1/jobs, GET /api/v1/jobs[/<id>[/results|/errors]]: large submissions
                                                 done by the worker (jobs.py)
    POST/GET /api/v1/webhooks, GET/DELETE /api/v1/webhooks/<id>, GET .../deliveries:
                                                 event subscriptions (webhooks.py)

    GET  /integrations/tokens                    (signed in) your API tokens; administrators
    POST /integrations/tokens                    see and make them for every integrator
    POST /integrations/tokens/<id>/revoke

Errors are JSON, {"error": code, "message": text, "details": {...}}, never a traceback.
"""

from __future__ import annotations

import datetime as dt
from typing import Optional

from flask import (Blueprint, current_app, flash, g, jsonify, redirect, render_template,
                   request, url_for)
from flask_babel import gettext as _
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from registry import tokens as api_tokens
from registry.errors import RegistryError
from registry.models import INTEGRATOR, User, UserRole

from ..auth import current_user, login_required, require
from ..db import get_db
from . import accounts, jobs, ledger, rewards, service, webhooks
from .service import ApiError

bp = Blueprint("integrations", __name__)
v1 = Blueprint("api", __name__, url_prefix="/api/v1")
pages = Blueprint("tokens", __name__, url_prefix="/integrations")

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


# ---------------------------------------------------------------- JSON errors
def _error(status: int, code: str, message: str, details: Optional[dict] = None,
           headers: Optional[dict] = None):
    body = {"error": code, "message": message}
    if details:
        body["details"] = details
    response = jsonify(body)
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


@v1.errorhandler(ApiError)
def _api_error(error: ApiError):
    return _error(error.status, error.code, error.message, error.details)


@v1.errorhandler(RegistryError)
def _registry_error(error: RegistryError):
    from ..errors import registry_status
    status = registry_status(error)
    code = {403: "forbidden", 404: "not_found", 409: "conflict", 422: "invalid"}.get(status,
                                                                                      "bad_request")
    return _error(status, code, str(error))


@v1.errorhandler(HTTPException)
def _http_error(error: HTTPException):
    from ..errors import json_code
    message = error.description if error.description != type(error).description else error.name
    headers = {"Allow": ", ".join(error.valid_methods)} if getattr(error, "valid_methods", None) else None
    return _error(error.code or 500, json_code(error.code or 500), message, headers=headers)


@v1.errorhandler(Exception)
def _unexpected(error: Exception):
    current_app.logger.error("API error on %s %s", request.method, request.path,
                             exc_info=(type(error), error, error.__traceback__))
    return _error(500, "server_error", "an unexpected error occurred; it has been logged")


# ---------------------------------------------------------------- authentication
@v1.before_request
def _authenticate():
    header = request.headers.get("Authorization", "")
    scheme, _sep, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _error(401, "unauthenticated",
                      "send an integrator's API token: Authorization: Bearer <token>",
                      headers={"WWW-Authenticate": 'Bearer realm="tanpu"'})
    with get_db().read() as s:
        user = api_tokens.authenticate(s, token.strip())
    if user is None:
        return _error(401, "invalid_token", "the token is unknown, revoked, or its user is no "
                      "longer an active integrator",
                      headers={"WWW-Authenticate": 'Bearer realm="tanpu", error="invalid_token"'})
    g.api_user = user


def _body() -> dict:
    try:
        data = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the parser goes: not a record anyway
        raise ApiError(400, "bad_request", "the JSON body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_request", "send a JSON object (Content-Type: application/json)")
    return data


def _methodology(data: dict) -> str:
    methodology = data.get("methodology")
    if not isinstance(methodology, str) or not methodology:
        raise ApiError(400, "bad_request", "`methodology`: the id of a published methodology")
    return methodology


# ---------------------------------------------------------------- endpoints
@v1.get("/")
def index():
    return jsonify({"version": "v1", "user": g.api_user.email, "endpoints": [
        "GET /api/v1/methodologies", "GET /api/v1/methodologies/<id>/schema",
        "POST /api/v1/evaluate", "POST /api/v1/credits", "POST /api/v1/accounts",
        "GET /api/v1/accounts", "GET /api/v1/accounts/<id>", "PATCH /api/v1/accounts/<id>",
        "PUT /api/v1/accounts/<id>/identities/<external_id>",
        "DELETE /api/v1/accounts/<id>/identities/<external_id>",
        "GET /api/v1/accounts/<id>/balance", "GET /api/v1/accounts/<id>/statement",
        "GET /api/v1/accounts/<id>/balances", "GET /api/v1/credits/<record_id>",
        "GET /api/v1/batches/<id>", "GET /api/v1/rewards", "POST /api/v1/rewards",
        "POST /api/v1/accounts/<id>/redemptions", "GET /api/v1/accounts/<id>/wallet",
        "POST /api/v1/credits/<entry_id>/reversal", "POST /api/v1/accounts/<id>/retirements",
        "GET /api/v1/retirements/<id>", "POST /api/v1/jobs", "GET /api/v1/jobs",
        "GET /api/v1/jobs/<id>", "GET /api/v1/jobs/<id>/results", "GET /api/v1/jobs/<id>/errors",
        "POST /api/v1/webhooks", "GET /api/v1/webhooks", "GET /api/v1/webhooks/<id>",
        "DELETE /api/v1/webhooks/<id>", "GET /api/v1/webhooks/<id>/deliveries"]})


@v1.get("/methodologies")
def methodologies():
    try:
        page = int(request.args.get("page", 1))
        per_page = int(request.args.get("per_page", 20))
    except ValueError:
        raise ApiError(400, "bad_pagination", "page and per_page are numbers") from None
    with get_db().read() as s:
        return jsonify(service.list_methodologies(s, page, per_page))


@v1.get("/methodologies/<path:methodology_id>/schema")
def methodology_schema(methodology_id: str):
    with get_db().read() as s:
        return jsonify(service.schema(s, methodology_id, request.args.get("version") or None))


@v1.post("/evaluate")
def evaluate():
    data = _body()
    methodology_id = _methodology(data)
    explain = data.get("explain") is True
    as_of = None
    if data.get("as_of") is not None:
        try:
            as_of = dt.date.fromisoformat(str(data["as_of"]))
        except ValueError:
            raise ApiError(400, "bad_request", "`as_of`: a date, YYYY-MM-DD") from None
    with get_db().read() as s:
        result = service.evaluate(s, methodology_id, data.get("records"), as_of=as_of,
                                  explain=explain)
        return jsonify(service.evaluation_response(result, explain))


@v1.post("/credits")
def credits():
    data = _body()
    methodology_id = _methodology(data)
    key = request.headers.get("Idempotency-Key") or data.get("idempotency_key")
    if key is not None and not isinstance(key, str):
        raise ApiError(400, "bad_idempotency_key", "an idempotency key is a string")
    # evaluate outside the write transaction; the ledger checks the versions again inside it
    with get_db().read() as s:
        result = service.evaluate(s, methodology_id, data.get("records"), require_ids=True)
    with get_db().unit_of_work() as s:
        return jsonify(service.credit(s, g.api_user.id, result, idempotency_key=key))


accounts.register(v1)
ledger.register(v1)
rewards.register(v1)
jobs.register(v1)
webhooks.register(v1)


@v1.route("/<path:rest>", methods=ALL_METHODS)
def unknown(rest: str):
    adapter = current_app.url_map.bind("")
    allowed = []
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        try:
            endpoint, _args = adapter.match(request.path, method=method)
        except HTTPException:
            continue
        if endpoint != "integrations.api.unknown":
            allowed.append(method)
    if allowed:
        return _error(405, "method_not_allowed", f"{request.method} is not allowed here",
                      headers={"Allow": ", ".join(allowed)})
    return _error(404, "not_found", f"no API endpoint {request.path}")


# ---------------------------------------------------------------- token pages
def _integrators(session) -> list[User]:
    return list(session.scalars(select(User).join(UserRole).where(UserRole.role == INTEGRATOR)
                                .order_by(User.email)))


@pages.get("/tokens")
@login_required
def tokens_page():
    with get_db().read() as s:
        is_admin = current_user.has_role("administrator")
        if not is_admin and not current_user.has_role(INTEGRATOR):
            require(api_tokens.can_manage_tokens(current_user, current_user))
        owners = _integrators(s) if is_admin else [s.get(User, current_user.id)]
        rows = [(owner, api_tokens.of_user(s, owner)) for owner in owners]
        return render_template("api/tokens.html", rows=rows, is_admin=is_admin,
                               new_token=g.pop("new_token", None))


@pages.post("/tokens")
@login_required
def create_token():
    owner = request.form.get("user_id", type=int) or current_user.id
    with get_db().unit_of_work() as s:
        row, token = api_tokens.create(s, current_user.id, owner, request.form.get("name", ""))
        prefix = row.prefix
    flash(_("Token %(prefix)s… created. Copy it now: it is not shown again.", prefix=prefix), "success")
    g.new_token = token
    return tokens_page()


@pages.post("/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id: int):
    with get_db().unit_of_work() as s:
        api_tokens.revoke(s, current_user.id, token_id)
    flash(_("Token revoked."), "info")
    return redirect(url_for("integrations.tokens.tokens_page"), code=303)


bp.register_blueprint(v1)
bp.register_blueprint(rewards.public)  # no token: anyone verifies a certificate
bp.register_blueprint(pages)


def init_app(app) -> None:
    from ..extensions import csrf
    csrf.exempt(v1)  # token-authenticated, never from a browser's cookie
