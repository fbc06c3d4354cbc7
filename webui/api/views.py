"""The JSON API for integrators, and the page where integrators manage their tokens.

    Authorization: Bearer tanpu_...              every /api/v1 request (an integrator's token)

    GET  /api/v1/                                what is here, and the token's scopes
    GET  /api/v1/openapi.json                    (public, no token) the OpenAPI 3.1 document;
    GET  /api/v1/docs                            its browsable reference (Swagger UI)
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

Every body is a declared pydantic model (models.py); the OpenAPI document is generated
from the declarations (openapi.py). Every error is application/problem+json (problems.py)
and every response carries X-Request-Id, also written in the server's log line.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import json
import logging
import os
import threading
import time
from typing import Optional

import orjson
from flask import (Blueprint, Response, current_app, flash, g, jsonify, redirect,
                   render_template, request, send_from_directory, url_for)
from flask_babel import gettext as _
from sqlalchemy import select
from werkzeug.exceptions import HTTPException, NotFound

from registry import tokens as api_tokens
from registry.errors import Invalid, RegistryError
from registry.models import INTEGRATOR, User, UserRole, utcnow

from ..auth import current_user, login_required, require
from ..db import get_db
from .. import limits
from . import accounts, jobs, ledger, models, openapi, rewards, service, webhooks
from .openapi import header, operation, query
from .problems import REQUEST_ID, TITLES, problem, request_id
from .service import ApiError

bp = Blueprint("integrations", __name__)
v1 = Blueprint("api", __name__, url_prefix="/api/v1")
meta = Blueprint("api_meta", __name__, url_prefix="/api/v1")  # public: the API's own description
pages = Blueprint("tokens", __name__, url_prefix="/integrations")

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
log = logging.getLogger("webui.api")


# ---------------------------------------------------------------- problems
def _handle_api_error(error: ApiError):
    return problem(error.status, error.code, error.message, errors=error.errors,
                   **({"details": error.details} if error.details else {}))


def _handle_registry_error(error: RegistryError):
    from ..errors import registry_status
    status = registry_status(error)
    code = {403: "forbidden", 404: "not_found", 409: "conflict", 422: "invalid"}.get(status,
                                                                                      "bad_request")
    return problem(status, code, str(error))


def _handle_http_error(error: HTTPException):
    from ..errors import json_code
    message = error.description if error.description != type(error).description else error.name
    headers = {"Allow": ", ".join(error.valid_methods)} if getattr(error, "valid_methods", None) else {}
    if error.code == 429:
        message = f"over the rate limit ({error.description}); wait and try again"
        retry = (error.get_response().headers.get("Retry-After")
                 if hasattr(error, "get_response") else None)
        if retry:
            headers["Retry-After"] = retry
    return problem(error.code or 500, json_code(error.code or 500), message, headers=headers)


def _handle_unexpected(error: Exception):
    current_app.logger.error("API error on %s %s request_id=%s", request.method, request.path,
                             request_id(), exc_info=(type(error), error, error.__traceback__))
    return problem(500, "server_error", "an unexpected error occurred; it has been logged "
                   f"with request id {request_id()}")


for _blueprint in (v1, meta, rewards.public):
    _blueprint.register_error_handler(ApiError, _handle_api_error)
    _blueprint.register_error_handler(RegistryError, _handle_registry_error)
    _blueprint.register_error_handler(HTTPException, _handle_http_error)
    _blueprint.register_error_handler(Exception, _handle_unexpected)


# ---------------------------------------------------------------- authentication, limits
def reading():
    """The request's read-only session, opened on first use and closed when the request
    ends (init_app): checking the token and evaluating read in the same one. A session
    each (a pool checkout, BEGIN, ROLLBACK, close) was a sixth of a single-record
    evaluation, and under 8 clients each database call is one more wait for the GIL
    (docs/api.md, bench/bench_api.py)."""
    session = g.get("api_read")
    if session is None:
        db = get_db()
        if request.endpoint == _CREDITS and db.dialect == "postgresql":
            # a credit's token check and evaluation read in the credit's own transaction
            # (credits(): _credit_session), its first pipeline with its BEGIN: a read-only
            # transaction of their own was one session, a ROLLBACK and its round trip
            # more (docs/ledger.md, Session 16). Not on SQLite: its write transaction
            # takes the database's one write lock at BEGIN, for the evaluation's time too
            session = g.api_read = db.session()
            g.api_read_close = session.close
            g.api_read_writes = True
        else:
            block = db.read()
            session = g.api_read = block.__enter__()
            g.api_read_close = lambda: block.__exit__(None, None, None)
    return session


def done_reading() -> None:
    """Close the request's read session now (before a write transaction, so that a
    request holds one connection at a time); reading() opens another if asked."""
    close = g.pop("api_read_close", None)
    g.pop("api_read", None)
    g.pop("api_read_writes", None)
    if close is not None:
        close()


def _credit_session():
    """The request's session for the credit's unit of work (Database.retried's first
    attempt) when reading() opened a read-write one, else None (the read session closed)."""
    if g.pop("api_read_writes", False):
        g.pop("api_read_close", None)
        return g.pop("api_read")
    done_reading()
    return None


# the endpoints whose view reads in reading() too; every other one opens its own sessions
# (a read after a write in the same request must not see an older SQLite snapshot), so the
# token's session is closed before its view runs: a request holds one connection at a time
_CREDITS = "integrations.api.credits"
_READ_ON = frozenset({"integrations.api.evaluate", _CREDITS})

_grants: dict[str, tuple[tuple, api_tokens.Grant, float]] = {}
_grants_lock = threading.Lock()
GRANT_SECONDS = 60.0  # a kept grant's user (its roles, name) is read again after this


def _grant(token: str) -> Optional[api_tokens.Grant]:
    """tokens.grant(), kept per token while the token's standing (tokens.standing: one
    query, no rows loaded) is what it was: a revoked or expired token, a deactivated user
    or a removed role is refused on the next request, as before. Loading the token, its
    user and the user's roles took three queries, a third of a single-record evaluation."""
    s = reading()
    digest = api_tokens.hash_token(token)
    # the versions' fingerprint of the methodology this token evaluated or credited last,
    # read in the same round trip as the token's standing (PostgreSQL), for the view to
    # give to service.evaluate when its body names the same methodology (_fingerprint)
    methodology = _methodology_of.get(digest) if request.endpoint in _READ_ON else None
    answers: list = []
    now = api_tokens.standing(s, token, answers=answers, also=(
        [service.fingerprint_statement(methodology)] if methodology else ()))
    if answers:
        g.api_fingerprint = (methodology, answers[0])
    g.api_token_digest = digest
    if now is None:
        return None
    kept = _grants.get(digest)
    if kept is not None and kept[0] == now and time.monotonic() - kept[2] < GRANT_SECONDS:
        grant = kept[1]
    else:
        grant = api_tokens.grant(s, token)
        if grant is None:
            return None
        with _grants_lock:
            if len(_grants) >= 4096:
                _grants.clear()
            _grants[digest] = (now, grant, time.monotonic())
    if grant.expires_at is not None and grant.expires_at <= utcnow():
        return None
    return grant


# token digest -> the methodology of its last evaluation or credit (_grant, _fingerprint)
_methodology_of: dict[str, str] = {}


def _fingerprint(methodology: str) -> Optional[list]:
    """The rows of the versions' fingerprint of `methodology` if _grant read them with the
    token's standing in this request's read transaction, else None (service.evaluate
    reads them then): one round trip and one pipeline less a request (docs/ledger.md,
    Session 16). Remembers the methodology for the token's next request."""
    digest = g.get("api_token_digest")
    if digest is not None and _methodology_of.get(digest) != methodology:
        if len(_methodology_of) >= 4096:
            _methodology_of.clear()
        _methodology_of[digest] = methodology
    read = g.pop("api_fingerprint", None)
    return read[1] if read is not None and read[0] == methodology else None


# per token (before the token is checked: its digest is the key) and per address; the
# first of v1's hooks, so that a flood of bad tokens is refused before any is checked
v1.before_request(limits.check_api)
v1.after_request(limits.api_headers)


@v1.before_request
def _authenticate():
    header_value = request.headers.get("Authorization", "")
    scheme, _sep, token = header_value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return problem(401, "unauthenticated",
                       "send an integrator's API token: Authorization: Bearer <token>",
                       headers={"WWW-Authenticate": 'Bearer realm="tanpu"'})
    grant = _grant(token.strip())
    if grant is None:
        return problem(401, "invalid_token", "the token is unknown, revoked, expired, or its "
                       "user is no longer an active integrator",
                       headers={"WWW-Authenticate": 'Bearer realm="tanpu", error="invalid_token"'})
    g.api_user = grant.user
    g.api_scopes = grant.scopes
    g.api_grant = grant
    if request.endpoint not in _READ_ON:
        done_reading()


@v1.before_request
def _ids_in_range():
    """An id in the path beyond any database integer is no account, entry or batch (and
    not a database error)."""
    for name, value in (request.view_args or {}).items():
        if isinstance(value, int) and not (0 <= value <= accounts.largest(name)):
            raise ApiError(404, "not_found", f"no such {name.replace('_id', '')} {value}")


def _int_query(name: str, description: str, minimum: int = 1, maximum: Optional[int] = None):
    schema = {"type": "integer", "minimum": minimum}
    if maximum is not None:
        schema["maximum"] = maximum
    return query(name, schema, description)


def _link_next(response: Response, **changes) -> Response:
    """Link: <this URL with `changes`>; rel="next"."""
    args = request.args.to_dict()
    args.update({k: str(v) for k, v in changes.items()})
    url = url_for(request.endpoint, _external=False, **(request.view_args or {}), **args)
    response.headers["Link"] = f'<{url}>; rel="next"'
    return response


def _json(out: dict) -> Response:
    """A large answer (10,000 results) written without jsonify's key sorting and indent,
    by orjson: the standard library's encoder took about half of a 10,000-record
    evaluation once the batch engine evaluated it (bench/bench_api.py). A value orjson
    does not write (an integer beyond 64 bits) is written by the standard library."""
    try:
        data = orjson.dumps(out)
    except TypeError:
        data = json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(data, mimetype="application/json")


# ---------------------------------------------------------------- endpoints
@operation(v1, "GET", "/", summary="What is here, and what this token may do",
           response=models.Index)
def index():
    return jsonify({"version": "v1", "user": g.api_user.email, "scopes": sorted(g.api_scopes),
                    "openapi": url_for("integrations.api_meta.openapi_document"),
                    "endpoints": [f"{op.method} /api/v1{op.path}" for op in openapi.OPERATIONS]})


@operation(v1, "GET", "/methodologies", summary="Published methodologies, a page at a time",
           response=models.MethodologyList, scope="evaluate", paged=True,
           params=(_int_query("page", "page number", 1, service.MAX_PAGE),
                   _int_query("per_page", "items per page", 1, 100)))
def methodologies():
    try:
        page = int(request.args.get("page", 1))
        per_page = int(request.args.get("per_page", 20))
    except ValueError:
        raise ApiError(400, "bad_pagination", "page and per_page are numbers") from None
    with get_db().read() as s:
        out = service.list_methodologies(s, page, per_page)
    response = jsonify(out)
    if out["page"] < out["pages"]:
        _link_next(response, page=page + 1)
    return response


@operation(v1, "GET", "/methodologies/<path:methodology_id>/schema",
           summary="A version's description and the JSON Schema of its records",
           response=models.MethodologySchema, scope="evaluate", problems=(304,),
           params=(query("version", {"type": "string"}, "a published version (default: the "
                         "one in force today)"),
                   header("If-None-Match", "an ETag of this schema: 304 when it is the same")))
def methodology_schema(methodology_id: str):
    with get_db().read() as s:
        out = service.schema(s, methodology_id, request.args.get("version") or None)
    # the schema of a version is fixed by its content hash; which version is in force is not
    tag = hashlib.sha256(f"{out['content_hash']}|{out['reason']}".encode()).hexdigest()[:32]
    response = jsonify(out)
    response.set_etag(tag)
    response.headers["Cache-Control"] = "private, max-age=0, must-revalidate"
    return response.make_conditional(request)


@operation(v1, "POST", "/evaluate", summary="Evaluate records (nothing is credited)",
           body=models.EvaluateRequest, response=models.EvaluateResponse, scope="evaluate",
           problems=(404, 413))
def evaluate(body: models.EvaluateRequest):
    result = service.evaluate(reading(), body.methodology, body.records, as_of=body.as_of,
                              explain=body.explain, fingerprint=_fingerprint(body.methodology))
    return Response(service.evaluation_json(result, body.explain, body.compact),
                    mimetype="application/json")


@operation(v1, "POST", "/credits", summary="Evaluate and credit records, idempotently",
           body=models.CreditRequest, response=models.CreditResponse, scope="credit",
           problems=(404, 409, 413),
           params=(header("Idempotency-Key", "the request's idempotency key (1 to 150 "
                          "characters): a replay writes nothing and answers the same"),))
def credits(body: models.CreditRequest):
    key = request.headers.get("Idempotency-Key") or body.idempotency_key
    # evaluated before the ledger's work (in its transaction's first attempt on PostgreSQL,
    # reading()); the ledger checks the versions again inside it
    result = service.evaluate(reading(), body.methodology, body.records, require_ids=True,
                              fingerprint=_fingerprint(body.methodology))
    # the whole transaction again after a deadlock or serialization failure (Database.retried):
    # the evaluation is kept, the ledger's work redone; the key makes a replay harmless
    user_id = g.api_user.id
    return _json(get_db().retried(
        # committed as soon as it returns: the entries go with the COMMIT (at_commit)
        lambda s: service.credit(s, user_id, result, idempotency_key=key, at_commit=True),
        first=_credit_session()))


accounts.register(v1)
ledger.register(v1)
rewards.register(v1)
rewards.register_public(rewards.public)
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
        return problem(405, "method_not_allowed", f"{request.method} is not allowed here",
                       headers={"Allow": ", ".join(allowed)})
    return problem(404, "not_found", f"no API endpoint {request.path}")


# ---------------------------------------------------------------- the API's description
def _swagger_dir() -> str:
    """Swagger UI 5 as the flask-openapi3-swagger package ships it (not imported: only its
    files are used)."""
    spec = importlib.util.find_spec("flask_openapi3_swagger")
    if spec is None or spec.origin is None:
        raise NotFound("the API reference page needs the flask-openapi3-swagger package")
    return os.path.join(os.path.dirname(spec.origin), "templates", "swagger")


@meta.get("/openapi.json")
def openapi_document():
    document = openapi.document(request.script_root or "/")
    text = json.dumps(document, ensure_ascii=False, sort_keys=True)
    response = Response(text, mimetype="application/json")
    response.set_etag(hashlib.sha256(text.encode()).hexdigest()[:32])
    return response.make_conditional(request)


@meta.get("/docs")
def reference():
    return render_template("api/reference.html")


@meta.get("/docs/assets/<path:filename>")
def reference_assets(filename: str):
    return send_from_directory(_swagger_dir(), filename, max_age=3600)


@meta.get("/problems/<code>")
def problem_type(code: str):
    """What a problem `type` names (its URI resolves here)."""
    if code not in TITLES:
        raise ApiError(404, "not_found", f"no problem type {code!r}")
    return jsonify({"type": f"/api/v1/problems/{code}", "code": code, "title": TITLES[code]})


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
                               new_token=g.pop("new_token", None), scopes=openapi.SCOPES)


@pages.post("/tokens")
@login_required
def create_token():
    owner = request.form.get("user_id", type=int) or current_user.id
    # the form lists the scopes as checkboxes (none checked is an error); without them, all
    scopes = request.form.getlist("scope") if request.form.get("scopes_given") else None
    expires_at = None
    if request.form.get("expires"):
        try:
            day = dt.date.fromisoformat(request.form["expires"])
        except ValueError:
            raise Invalid("the expiry is a date, YYYY-MM-DD") from None
        expires_at = dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=dt.timezone.utc)
    with get_db().unit_of_work() as s:
        row, token = api_tokens.create(s, current_user.id, owner, request.form.get("name", ""),
                                       scopes=scopes, expires_at=expires_at)
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
bp.register_blueprint(meta)  # no token: the document, the reference page
bp.register_blueprint(rewards.public)  # no token: anyone verifies a certificate
bp.register_blueprint(pages)


def init_app(app) -> None:
    from ..extensions import csrf
    csrf.exempt(v1)  # token-authenticated, never from a browser's cookie

    app.wsgi_app = _Timed(app.wsgi_app)

    @app.before_request
    def _start():
        request_id()

    @app.teardown_request
    def _done_reading(_error=None):
        done_reading()

    @app.after_request
    def _request_id(response):
        """Every response says its request id; every API request is one log line with it
        (written by _Timed once the request is done)."""
        rid = request_id()
        response.headers[REQUEST_ID] = rid
        if request.path.startswith("/api/"):
            grant = g.get("api_grant")
            request.environ[_Timed.KEY] = (request.method, request.path, response.status_code,
                                           grant.token_id if grant else "-", rid)
        return response


class _Timed:
    """The app (WSGI) timed from the moment the server's thread calls it to the moment it
    has its answer, Flask's request set-up, the rate limits, the hooks and the closing of
    the request's database session included: each API request's log line says that time
    and the CPU time its thread spent in it (`cpu=`). The difference is what the request
    waited for inside the app (the GIL held by other threads, the database, a lock, the
    machine's other processes): bench/bench_api.py reads it, to tell a wait in the app
    from a wait outside it (waitress' queue and sockets)."""

    KEY = "tanpu.api_log"

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        started, started_cpu = time.perf_counter(), time.thread_time()
        try:
            return self.wsgi_app(environ, start_response)
        finally:
            line = environ.pop(self.KEY, None)
            if line is not None:
                method, path, status, token_id, rid = line
                log.info("%s %s %s %.1fms cpu=%.1fms token=%s request_id=%s", method, path,
                         status, (time.perf_counter() - started) * 1000,
                         (time.thread_time() - started_cpu) * 1000, token_id, rid)
