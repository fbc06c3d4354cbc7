"""Error pages in the site's style (JSON under /api/), never a stack trace.

Registry errors map to statuses as registry/errors.py says: NotFound 404, Forbidden 403,
InvalidTransition / Conflict / QuorumNotMet 409, Invalid 422. A view may raise them
straight from a workflow call; their message is shown (it says what is wrong, in
English). Anything else is a 500 whose details go to the log only.
"""

from __future__ import annotations

from flask import render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from registry.errors import (Conflict, Forbidden, Invalid, InvalidTransition, NotFound,
                             QuorumNotMet, RegistryError)

from .auth import wants_json
from .i18n import server


def registry_status(error: RegistryError) -> int:
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, Forbidden):
        return 403
    if isinstance(error, (InvalidTransition, Conflict, QuorumNotMet)):
        return 409
    if isinstance(error, Invalid):
        return 422
    return 400


def _titles() -> dict[int, tuple[str, str]]:
    return {
        400: (_("Bad request"), _("The request could not be understood.")),
        401: (_("Please sign in"), _("This page is for signed-in users.")),
        403: (_("Not allowed"), _("Your account does not have the right to do this.")),
        404: (_("Page not found"), _("There is nothing at this address. It may have moved, "
                                     "or the link may be mistyped.")),
        405: (_("Not allowed here"), _("This address does not accept that kind of request.")),
        409: (_("Not possible now"), _("The current state does not allow this action.")),
        413: (_("Too large"), _("What you sent is too large.")),
        422: (_("Cannot accept this"), _("Some of what you entered is not valid.")),
        429: (_("Too many requests"), _("Please wait a moment and try again.")),
        500: (_("Something went wrong"), _("An unexpected error occurred on our side. It has "
                                           "been logged; please try again later.")),
    }


def render_error(status: int, detail: str = "", code: str = ""):
    titles = _titles()
    title, explanation = titles.get(status, titles[500 if status >= 500 else 400])
    if wants_json():  # problem details, as the API's own errors (webui/api/problems.py)
        from .api.problems import problem
        return problem(status, code or json_code(status), detail or explanation)
    return render_template("errors/error.html", status=status, title=title,
                           explanation=explanation, detail=server(detail)), status


def json_code(status: int) -> str:
    return {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
            405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
            422: "invalid", 429: "too_many_requests"}.get(
                status, "server_error" if status >= 500 else "bad_request")


def init_app(app) -> None:
    @app.before_request
    def _no_nul():
        """A NUL character is in no text any database stores (PostgreSQL refuses it in
        the middle of a query: a 500), so a path, query or form holding one is a 400
        before any view sees it, on every route (issue 17)."""
        values = list(request.args.items(multi=True)) if request.query_string else []
        if request.method in ("POST", "PUT", "PATCH") and request.mimetype in (
                "application/x-www-form-urlencoded", "multipart/form-data"):
            values += list(request.form.items(multi=True))
        if "\x00" in request.path or any("\x00" in k or "\x00" in v for k, v in values):
            return render_error(400, _("The address or the form holds a NUL character."))

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        if isinstance(error, InternalServerError):
            return _internal(error)
        detail = ""
        # abort(403, description=reason): show the reason, not werkzeug's generic text
        if error.description and error.description != type(error).description:
            detail = error.description
        response = render_error(error.code or 500, detail)
        if isinstance(response, tuple) and error.code == 405:
            body, status = response
            return body, status, {"Allow": ", ".join(error.valid_methods or [])}
        return response

    @app.errorhandler(CSRFError)
    def _csrf(error: CSRFError):
        return render_error(400, _("The form has expired or did not come from this site. "
                                   "Please go back, reload the page and try again."), "csrf")

    @app.errorhandler(RegistryError)
    def _registry(error: RegistryError):
        return render_error(registry_status(error), str(error))

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        if isinstance(error, HTTPException):  # pragma: no cover - handled above
            return _http(error)
        return _internal(error)

    def _internal(error):
        original = getattr(error, "original_exception", None) or error
        app.logger.error("unhandled error on %s %s", request.method, request.path,
                         exc_info=(type(original), original, original.__traceback__))
        return render_error(500)
