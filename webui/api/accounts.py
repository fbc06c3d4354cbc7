"""The carbon-account endpoints of /api/v1 (registered on the API blueprint by views.py):

    POST  /api/v1/accounts                           create: {"kind", "parent", "name",
                                                     "domains", "external_id"}
    GET   /api/v1/accounts?page=&per_page=&kind=&status=&parent=
    GET   /api/v1/accounts/<id>
    PATCH /api/v1/accounts/<id>                      {"status", "parent", "name", "domains"}
    PUT   /api/v1/accounts/<id>/identities/<external_id>   link your account id
    DELETE /api/v1/accounts/<id>/identities/<external_id>  unlink it
    GET   /api/v1/accounts/<id>/balance              own and subtree totals

What an integrator sees and may change is registry/accounts.py's (what it created or has
an id for); an account it may not see is a 404, as if it did not exist, so that account
ids reveal nothing. An account shows the caller's own identities only, never another
integrator's external ids.
"""

from __future__ import annotations

from typing import Optional

import json

from flask import Blueprint, Response, g, jsonify, request, url_for

from registry import accounts, idempotency
from registry.errors import Invalid
from registry.models import Account

from ..db import get_db
from . import models
from .openapi import header, operation, query
from .service import MAX_PAGE, ApiError

MAX_PER_PAGE = 100
IDEMPOTENCY_KEY = header("Idempotency-Key", "optional: a retry with the same key and body "
                         "answers the first answer (Idempotent-Replayed: true) and changes "
                         "nothing; with another body, 409")
MAX_INTEGER = 2**63 - 1  # the largest id a BIGINT column holds (entries, batches)
MAX_ID = 2**31 - 1  # the largest id an INTEGER column holds (accounts, rewards, users)
BIG_IDS = ("after", "batch_id", "entry_id")  # ids of BIGINT columns


def largest(name: str) -> int:
    """The largest value of the id or number `name` that the database can compare."""
    return MAX_INTEGER if name in BIG_IDS else MAX_ID


def _time(value) -> Optional[str]:
    return value.isoformat().replace("+00:00", "Z") if value else None


def account_dict(session, account: Account, caller_id: int) -> dict:
    """An account as the API shows it to `caller_id`."""
    parent = account.parent
    return {
        "id": account.id, "kind": account.kind, "name": account.name,
        "status": account.status, "domains": list(account.domains),
        "parent": ({"id": parent.id, "kind": parent.kind, "name": parent.name}
                   if parent is not None else None),
        "children": accounts.children_count(session, account.id),
        "created_at": _time(account.created_at), "updated_at": _time(account.updated_at),
        "created_by_you": account.created_by == caller_id,
        "identities": [{"external_id": i.external_id, "linked_at": _time(i.created_at)}
                       for i in accounts.identities(session, account.id, caller_id)],
    }


def int_arg(name: str, default: Optional[int]) -> Optional[int]:
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    code = "bad_pagination" if name in ("page", "per_page") else "bad_request"
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, code, f"{name} is a number",
                       errors=[{"pointer": f"#/query/{name}", "detail": "not a whole number",
                                "code": "int_parsing"}]) from None
    if not (-largest(name) - 1 <= value <= largest(name)):  # beyond the database's integers
        raise ApiError(400, code, f"{name} is beyond any id or count (at most {largest(name)})",
                       errors=[{"pointer": f"#/query/{name}", "detail": "too large",
                                "code": "too_large"}])
    return value


def idempotent(operation: str, sent: dict, change, status: int = 201):
    """`change(session) -> answer` in one transaction (run again whole after a deadlock or
    a serialization failure: `change` must keep nothing from a failed attempt), once per
    Idempotency-Key header:
    a retry with the same key and body answers the stored answer (header
    Idempotent-Replayed: true) and writes nothing; with another body it is a 409
    (registry/idempotency.py). Without the header: no key, as before."""
    key = request.headers.get("Idempotency-Key")
    if key is not None:
        try:
            idempotency.check_key(key)
        except Invalid as error:
            raise ApiError(400, "bad_idempotency_key", str(error),
                           errors=[{"pointer": "#/header/Idempotency-Key", "detail": str(error),
                                    "code": "bad_idempotency_key"}]) from None
    fingerprint = idempotency.digest({"path": request.path, "body": sent})
    user_id = g.api_user.id

    def unit(s) -> tuple[int, str, bool]:
        if key is not None:
            found = idempotency.replay(s, user_id, operation, key, fingerprint)
            if found is not None:
                return found[0], found[1], True
        text = json.dumps(change(s), ensure_ascii=False) + "\n"  # as jsonify ends its answers
        if key is not None:
            idempotency.remember(s, user_id, operation, key, fingerprint, status, text)
        return status, text, False
    # the whole transaction again after a deadlock or serialization failure
    # (Database.retried): the failed attempt committed nothing, so the change, the
    # replay check and the remembered answer are redone together, once
    code, text, replayed = get_db().retried(unit)
    response = Response(text, status=code, mimetype="application/json")
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def link_next(response, **changes):
    """Link: <this URL with `changes`>; rel="next" (the next page)."""
    args = request.args.to_dict()
    args.update({k: str(v) for k, v in changes.items()})
    url = url_for(request.endpoint, **(request.view_args or {}), **args)
    response.headers["Link"] = f'<{url}>; rel="next"'
    return response


def register(api: Blueprint) -> None:
    """Adds the account routes to the API blueprint (before the app registers it)."""

    @operation(api, "POST", "/accounts", summary="Create a carbon account", status=201,
               body=models.AccountCreate, response=models.Account, scope="accounts",
               problems=(403, 409, 422), params=(IDEMPOTENCY_KEY,))
    def create_account(body: models.AccountCreate):
        def change(s):
            account = accounts.create(s, g.api_user.id, body.kind, parent_id=body.parent,
                                      name=body.name or "", domains=body.domains or ())
            if body.external_id is not None:
                accounts.link(s, g.api_user.id, g.api_user.id, body.external_id, account.id)
            return account_dict(s, account, g.api_user.id)
        return idempotent("create_account", body.model_dump(mode="json"), change)

    @operation(api, "GET", "/accounts", summary="The accounts you see, a page at a time",
               response=models.AccountList, scope="accounts", paged=True,
               params=(query("page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
                       query("per_page", {"type": "integer", "minimum": 1,
                                          "maximum": MAX_PER_PAGE}),
                       query("kind", {"type": "string"}), query("status", {"type": "string"}),
                       query("parent", {"type": "integer"})))
    def list_accounts():
        page, per_page = int_arg("page", 1), int_arg("per_page", 20)
        if not (1 <= page <= MAX_PAGE) or not (1 <= per_page <= MAX_PER_PAGE):
            raise ApiError(400, "bad_pagination",
                           f"1 ≤ page ≤ {MAX_PAGE:,} and 1 ≤ per_page ≤ {MAX_PER_PAGE}")
        parent = int_arg("parent", None)
        with get_db().read() as s:
            items, total = accounts.list_accounts(
                s, g.api_user.id, kind=request.args.get("kind") or None,
                status=request.args.get("status") or None, parent_id=parent,
                page=page, per_page=per_page)
            pages = (total + per_page - 1) // per_page
            response = jsonify({"items": [account_dict(s, a, g.api_user.id) for a in items],
                                "page": page, "per_page": per_page, "total": total,
                                "pages": pages})
        return link_next(response, page=page + 1) if page < pages else response

    @operation(api, "GET", "/accounts/<int:account_id>", summary="An account",
               response=models.Account, scope="accounts", problems=(404,))
    def show_account(account_id: int):
        with get_db().read() as s:
            return jsonify(account_dict(s, accounts.visible(s, g.api_user.id, account_id),
                                        g.api_user.id))

    @operation(api, "PATCH", "/accounts/<int:account_id>", summary="Change an account",
               body=models.AccountChange, response=models.Account, scope="accounts",
               problems=(403, 404, 409, 422))
    def change_account(account_id: int, body: models.AccountChange):
        given = body.model_fields_set
        actor = g.api_user.id
        with get_db().unit_of_work() as s:
            if body.name is not None or body.domains is not None:
                accounts.update(s, actor, account_id, name=body.name, domains=body.domains)
            if "parent" in given:
                accounts.set_parent(s, actor, account_id, body.parent)
            if body.status is not None:
                accounts.update_status(s, actor, account_id, body.status)
            return jsonify(account_dict(s, accounts.visible(s, actor, account_id), actor))

    @operation(api, "PUT", "/accounts/<int:account_id>/identities/<path:external_id>",
               summary="Link your id for an account (idempotent)", response=models.Account,
               scope="accounts", problems=(403, 404, 409, 422))
    def link_identity(account_id: int, external_id: str):
        with get_db().unit_of_work() as s:
            accounts.link(s, g.api_user.id, g.api_user.id, external_id, account_id)
            return jsonify(account_dict(s, accounts.get(s, account_id), g.api_user.id))

    @operation(api, "DELETE", "/accounts/<int:account_id>/identities/<path:external_id>",
               summary="Unlink your id for an account", response=models.Account,
               scope="accounts", problems=(403, 404, 409))
    def unlink_identity(account_id: int, external_id: str):
        with get_db().unit_of_work() as s:
            accounts.visible(s, g.api_user.id, account_id)
            found = [i for i in accounts.identities(s, account_id, g.api_user.id)
                     if i.external_id == external_id]
            if not found:
                raise ApiError(404, "not_found",
                               f"account {account_id} has no account id {external_id!r} of yours")
            accounts.unlink(s, g.api_user.id, g.api_user.id, external_id)
            return jsonify(account_dict(s, accounts.get(s, account_id), g.api_user.id))

    @operation(api, "GET", "/accounts/<int:account_id>/balance",
               summary="An account's totals and its subtree's", response=models.Balance,
               scope="accounts", problems=(404,))
    def account_balance(account_id: int):
        with get_db().read() as s:
            accounts.visible(s, g.api_user.id, account_id)
            return jsonify(accounts.balances(s, account_id).to_dict())
