"""Errors of /api/v1 as RFC 9457 problem details (application/problem+json), and the
request id every API response carries.

    {"type": "/api/v1/problems/bad_request", "title": "Bad request", "status": 400,
     "detail": "`explain`: expected a boolean, got 'yes'", "instance": "/api/v1/evaluate",
     "code": "bad_request", "request_id": "4f1c...",
     "errors": [{"pointer": "/explain", "detail": "...", "code": "bool_type"}]}

`code` is the short, stable name clients branch on (the last part of `type`); `errors`
lists each invalid field or record with a JSON pointer (RFC 6901) into the request body
(or `#/query/<name>`, `#/header/<name>` for those parts of a request).

Why one module: the API's views, its error handlers, the rate limiter and the site-wide
JSON errors all answer with the same shape, so a client has one parser for every error.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Iterable, Optional

from flask import Response, g, request

PROBLEM_JSON = "application/problem+json"
REQUEST_ID = "X-Request-Id"
_GOOD_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")

# code -> title (the titles are part of the contract: they do not change per occurrence)
TITLES = {
    "bad_request": "Bad request",
    "bad_pagination": "Bad pagination parameters",
    "bad_idempotency_key": "Bad idempotency key",
    "unauthenticated": "Authentication required",
    "invalid_token": "Invalid token",
    "insufficient_scope": "The token lacks the scope",
    "forbidden": "Forbidden",
    "not_found": "Not found",
    "methodology_not_found": "No such methodology",
    "version_not_found": "No such version",
    "method_not_allowed": "Method not allowed",
    "conflict": "Conflict",
    "precondition_failed": "Precondition failed",
    "payload_too_large": "Payload too large",
    "too_many_records": "Too many records",
    "unsupported_media_type": "Unsupported media type",
    "bad_format": "Bad format",
    "unreadable_file": "The file cannot be read",
    "invalid": "Cannot accept this",
    "invalid_unit": "Wrong unit",
    "too_many_requests": "Too many requests",
    "server_error": "Internal server error",
}


def request_id() -> str:
    """The request's id: the client's X-Request-Id when it is a sane token, else a new one."""
    found = g.get("request_id")
    if found:
        return found
    sent = request.headers.get(REQUEST_ID, "")
    g.request_id = sent if _GOOD_ID.match(sent) else uuid.uuid4().hex
    return g.request_id


def problem(status: int, code: str, detail: str, *, errors: Optional[Iterable[dict]] = None,
            headers: Optional[dict] = None, **extra) -> Response:
    """A problem-details response."""
    body = {"type": f"/api/v1/problems/{code}", "title": TITLES.get(code, code.replace("_", " ")),
            "status": status, "detail": detail, "instance": request.path, "code": code,
            "request_id": request_id()}
    if errors:
        body["errors"] = list(errors)
    body.update(extra)
    response = Response(json.dumps(body, ensure_ascii=False), status=status,
                        mimetype=PROBLEM_JSON)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def pointer(*parts) -> str:
    """A JSON pointer (RFC 6901) from path parts: pointer("records", 3, "a/b") -> /records/3/a~1b."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)
