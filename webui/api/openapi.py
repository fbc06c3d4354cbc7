"""The OpenAPI 3.1 document of /api/v1, generated from the routes as they are declared.

    @operation(v1, "POST", "/evaluate", body=EvaluateRequest, response=EvaluateResponse,
               scope="evaluate", summary="Evaluate records")
    def evaluate(body: EvaluateRequest): ...

`operation` registers the Flask route and keeps its declaration: the request model (the
body is parsed with it, and the view gets the model), the response model and status, the
query, path and header parameters, the token scope it needs, the problems it may answer.
`document()` builds the OpenAPI document from those declarations and pydantic's JSON
Schemas, so the document cannot drift from what the views accept and answer.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from flask import Blueprint, g, request
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from engine.gc_pause import cycle_collector_paused

from . import models
from .service import ApiError

SCOPES = {
    "evaluate": "evaluate records (POST /evaluate); read methodologies and their schemas",
    "credit": "credit records to the ledger, read credits, batches and statements",
    "accounts": "create, change and read carbon accounts and their balances",
    "redeem": "redeem rewards, retire reductions, read wallets",
    "admin": "administration of the integrator's own accounts: reverse credits, manage rewards",
}


@dataclass
class Param:
    name: str
    where: str  # query, header, path
    schema: dict
    description: str = ""
    required: bool = False


@dataclass
class Operation:
    method: str
    path: str  # OpenAPI form: /accounts/{account_id}
    endpoint: str
    summary: str
    body: Optional[type[BaseModel]] = None
    response: Optional[type[BaseModel]] = None
    status: int = 200
    params: list[Param] = field(default_factory=list)
    scope: Optional[str] = None
    public: bool = False
    problems: tuple[int, ...] = ()
    extra_statuses: tuple[int, ...] = ()
    paged: bool = False
    # a body that is not JSON (a job's file) / a response that is a file: media type -> schema
    upload: Optional[dict] = None
    download: Optional[dict] = None


OPERATIONS: list[Operation] = []
_CONVERTER = re.compile(r"<(?:(\w+):)?(\w+)>")


def _openapi_path(rule: str) -> tuple[str, list[Param]]:
    params = []

    def replace(match):
        converter, name = match.group(1) or "string", match.group(2)
        big = name in ("batch_id", "entry_id")  # BIGINT columns; the others INTEGER
        schema = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1 if big else 2**31 - 1} \
            if converter == "int" else {"type": "string", "minLength": 1}
        params.append(Param(name, "path", schema, required=True))
        return "{" + name + "}"
    return _CONVERTER.sub(replace, rule), params


def query(name: str, schema: dict, description: str = "") -> Param:
    return Param(name, "query", schema, description)


def header(name: str, description: str, schema: Optional[dict] = None) -> Param:
    return Param(name, "header", schema or {"type": "string"}, description)


def operation(bp: Blueprint, method: str, rule: str, *, summary: str,
              body: Optional[type[BaseModel]] = None, response: Optional[type[BaseModel]] = None,
              status: int = 200, params: tuple[Param, ...] = (), scope: Optional[str] = None,
              public: bool = False, problems: tuple[int, ...] = (),
              extra_statuses: tuple[int, ...] = (), paged: bool = False,
              upload: Optional[dict] = None, download: Optional[dict] = None) -> Callable:
    """Registers `view` on `bp` for `method rule`, and declares it (see the module)."""
    def decorate(view: Callable) -> Callable:
        path, path_params = _openapi_path(rule)

        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            if scope is not None:
                granted = g.get("api_scopes") or ()
                if scope not in granted:
                    raise ApiError(403, "insufficient_scope",
                                   f"this token lacks the `{scope}` scope "
                                   f"(it has: {', '.join(sorted(granted)) or 'none'})")
            if body is None:
                return view(*args, **kwargs)
            # a body of 10,000 records makes some 100,000 objects that all live until the
            # answer is written; the cycle collector ran over them again and again (a
            # third of an evaluation's time), and they hold no cycles (engine/gc_pause.py)
            with cycle_collector_paused():
                kwargs["body"] = models.parse(body, request.get_data(cache=True))
                return view(*args, **kwargs)

        bp.add_url_rule(rule, view.__name__, wrapped, methods=[method])
        OPERATIONS.append(Operation(method, path, view.__name__, summary, body, response,
                                    status, path_params + list(params), scope, public,
                                    problems, extra_statuses, paged, upload, download))
        return wrapped
    return decorate


def _problem_response(status: int) -> dict:
    return {"description": {400: "bad request (problem details)", 401: "no valid token",
                            403: "forbidden or the token lacks the scope",
                            405: "method not allowed (with Allow)",
                            404: "not found", 409: "conflict", 412: "precondition failed",
                            413: "too large", 415: "not JSON", 422: "cannot accept this",
                            429: "too many requests"}.get(status, "problem"),
            "content": {"application/problem+json":
                        {"schema": {"$ref": "#/components/schemas/Problem"}}}}


RATE_HEADERS = {name: {"schema": {"type": "integer"}, "description": text} for name, text in (
    ("RateLimit-Limit", "requests allowed in the window"),
    ("RateLimit-Remaining", "requests left in the window"),
    ("RateLimit-Reset", "seconds until the window resets"))}


def document(server_url: str = "/") -> dict:
    """The OpenAPI 3.1 document of every declared operation."""
    wanted = {models.Problem}
    for op in OPERATIONS:
        wanted.update(m for m in (op.body, op.response) if m is not None)
    ordered = sorted(wanted, key=lambda m: m.__name__)
    modes = [(m, "validation") for m in ordered if issubclass(m, models.Request)] + \
            [(m, "serialization") for m in ordered if not issubclass(m, models.Request)]
    _, schemas = models_json_schema(modes, ref_template="#/components/schemas/{model}")
    components = schemas.get("$defs", {})

    paths: dict[str, dict] = {}
    for op in OPERATIONS:
        item: dict[str, Any] = {"operationId": op.endpoint, "summary": op.summary,
                                "tags": [op.scope or ("public" if op.public else "token")]}
        if op.params:
            item["parameters"] = [
                {"name": p.name, "in": p.where, "required": p.required or p.where == "path",
                 "schema": p.schema, **({"description": p.description} if p.description else {})}
                for p in op.params]
        if op.body is not None:
            item["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{op.body.__name__}"}}}}
        elif op.upload is not None:
            item["requestBody"] = {"required": True, "content": {
                media: {"schema": schema} for media, schema in op.upload.items()}}
        ok: dict[str, Any] = {"description": op.summary}
        if op.response is not None:
            ok["content"] = {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{op.response.__name__}"}}}
        elif op.download is not None:
            ok["content"] = {media: {"schema": schema} for media, schema in op.download.items()}
        headers = {"X-Request-Id": {"schema": {"type": "string"},
                                    "description": "the request's id (the client's if sent)"}}
        if not op.public:
            headers.update(RATE_HEADERS)
        if op.paged:
            headers["Link"] = {"schema": {"type": "string"},
                               "description": 'the next page: <url>; rel="next"'}
        ok["headers"] = headers
        responses: dict[str, Any] = {str(op.status): ok}
        for extra in op.extra_statuses:
            responses[str(extra)] = ok
        statuses = set(op.problems) | {400, 405, 422}  # 405: a malformed id may name another route
        if op.body is not None or op.upload is not None:
            statuses |= {404, 413, 415}
        if "{" in op.path:
            statuses.add(404)
        if not op.public:
            statuses |= {401, 403, 429}
        for status in sorted(statuses):
            if status == 304:
                responses["304"] = {"description": "not modified (If-None-Match)"}
                continue
            responses[str(status)] = _problem_response(status) if status != 500 else {
                "description": "server error (problem details)",
                "content": {"application/problem+json": {
                    "schema": {"$ref": "#/components/schemas/Problem"}}}}
        item["responses"] = responses
        if op.public:
            item["security"] = []
        else:
            item["security"] = [{"bearer": [op.scope] if op.scope else []}]
        paths.setdefault(op.path, {})[op.method.lower()] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tanpu integrator API", "version": "v1",
                 "description": "Evaluate activity records by published carbon-inclusion "
                 "methodologies and credit them to carbon accounts. Every error is "
                 "application/problem+json (RFC 9457). Send `Authorization: Bearer <token>` "
                 "(an integrator's token, from the tokens page); the scope each operation "
                 "needs is in its `security`."},
        "servers": [{"url": server_url.rstrip("/") + "/api/v1"}],
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {"bearer": {
            "type": "http", "scheme": "bearer",
            "description": "an integrator's API token (tanpu_...); scopes: " + "; ".join(
                f"{k}: {v}" for k, v in SCOPES.items())}}},
        "security": [{"bearer": []}],
    }
