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

from flask import Blueprint, g, jsonify, request

from registry import accounts
from registry.models import Account

from ..db import get_db
from .service import MAX_PAGE, ApiError

MAX_PER_PAGE = 100


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


def _body() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "bad_request", "send a JSON object (Content-Type: application/json)")
    return data


def _optional(data: dict, key: str, kind, what: str):
    value = data.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise ApiError(400, "bad_request", f"`{key}`: {what}")
    return value


def _domains(data: dict):
    domains = data.get("domains")
    if domains is not None and (not isinstance(domains, list)
                                or not all(isinstance(d, str) for d in domains)):
        raise ApiError(400, "bad_request", "`domains`: a list of domains")
    return domains


def int_arg(name: str, default: Optional[int]) -> Optional[int]:
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, "bad_pagination" if name in ("page", "per_page") else "bad_request",
                       f"{name} is a number") from None


def register(api: Blueprint) -> None:
    """Adds the account routes to the API blueprint (before the app registers it)."""

    @api.post("/accounts")
    def create_account():
        data = _body()
        kind = _optional(data, "kind", str, "individual, unit, project or region")
        if not kind:
            raise ApiError(400, "bad_request", "`kind`: individual, unit, project or region")
        parent = _optional(data, "parent", int, "the id of the parent account, or null")
        name = _optional(data, "name", str, "a display name (no personal data)")
        external_id = _optional(data, "external_id", str, "your id for this account")
        with get_db().unit_of_work() as s:
            account = accounts.create(s, g.api_user.id, kind, parent_id=parent, name=name or "",
                                      domains=_domains(data) or ())
            if external_id is not None:
                accounts.link(s, g.api_user.id, g.api_user.id, external_id, account.id)
            response = jsonify(account_dict(s, account, g.api_user.id))
        response.status_code = 201
        return response

    @api.get("/accounts")
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
            return jsonify({"items": [account_dict(s, a, g.api_user.id) for a in items],
                            "page": page, "per_page": per_page, "total": total,
                            "pages": (total + per_page - 1) // per_page})

    @api.get("/accounts/<int:account_id>")
    def show_account(account_id: int):
        with get_db().read() as s:
            return jsonify(account_dict(s, accounts.visible(s, g.api_user.id, account_id),
                                        g.api_user.id))

    @api.patch("/accounts/<int:account_id>")
    def change_account(account_id: int):
        data = _body()
        unknown = sorted(set(data) - {"status", "parent", "name", "domains"})
        if unknown:
            raise ApiError(400, "bad_request", f"cannot change {', '.join(unknown)} "
                           "(status, parent, name, domains)")
        status = _optional(data, "status", str, "active, frozen or closed")
        parent = _optional(data, "parent", int, "the id of the parent account, or null")
        name = _optional(data, "name", str, "a display name (no personal data)")
        domains = _domains(data)
        actor = g.api_user.id
        with get_db().unit_of_work() as s:
            if name is not None or domains is not None:
                accounts.update(s, actor, account_id, name=name, domains=domains)
            if "parent" in data:
                accounts.set_parent(s, actor, account_id, parent)
            if status is not None:
                accounts.update_status(s, actor, account_id, status)
            return jsonify(account_dict(s, accounts.visible(s, actor, account_id), actor))

    @api.put("/accounts/<int:account_id>/identities/<path:external_id>")
    def link_identity(account_id: int, external_id: str):
        with get_db().unit_of_work() as s:
            accounts.link(s, g.api_user.id, g.api_user.id, external_id, account_id)
            return jsonify(account_dict(s, accounts.get(s, account_id), g.api_user.id))

    @api.delete("/accounts/<int:account_id>/identities/<path:external_id>")
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

    @api.get("/accounts/<int:account_id>/balance")
    def account_balance(account_id: int):
        with get_db().read() as s:
            accounts.visible(s, g.api_user.id, account_id)
            return jsonify(accounts.balances(s, account_id).to_dict())
