"""The ledger's reading endpoints of /api/v1 (registered on the API blueprint by views.py):

    GET /api/v1/accounts/<id>/statement?after=&limit=&from=&to=&methodology=&subtree=
                                   the account's entries in the order they were written,
                                   a page at a time (`next`: the `after` of the next page)
    GET /api/v1/accounts/<id>/balances?period=day|week|month|year&from=&to=&timezone=&subtree=
                                   reduction, points and bonus per period and methodology
    GET /api/v1/credits/<record_id>?methodology=
                                   your credits of one of your record ids
    GET /api/v1/batches/<id>?after=&limit=
                                   one of your credit batches, with its entries

The work is registry/statements.py's; what a caller sees is its own entries only, of the
accounts it may see (an account, a batch or a record it may not see is a 404, as if it
did not exist). `from` and `to` bound the activity time: an ISO date (midnight in the
time zone) or datetime, `from` included, `to` excluded.
"""

from __future__ import annotations

from typing import Optional

from flask import Blueprint, g, jsonify, request

from dsl.zones import DEFAULT_TIMEZONE
from registry import statements

from ..db import get_db
from . import models
from .accounts import int_arg, link_next
from .openapi import operation, query
from .service import ApiError

LIMIT = query("limit", {"type": "integer", "minimum": 1, "maximum": statements.MAX_LIMIT},
              "entries per page")
AFTER = query("after", {"type": "integer"}, "the `next` of the page before (a cursor)")
TIME_BOUNDS = (query("from", {"type": "string"}, "activity time from (ISO date or datetime)"),
               query("to", {"type": "string"}, "activity time before (ISO date or datetime)"))


def _paged(response, page: dict):
    return link_next(response, after=page["next"]) if page.get("next") is not None else response


def _limit() -> int:
    limit = int_arg("limit", 100)
    if not (1 <= limit <= statements.MAX_LIMIT):
        raise ApiError(400, "bad_pagination", f"1 ≤ limit ≤ {statements.MAX_LIMIT}")
    return limit


def _flag(name: str) -> bool:
    return request.args.get(name, "").lower() in ("1", "true", "yes")


def _bounds(timezone: str):
    return (statements.parse_time(request.args.get("from"), timezone, "from"),
            statements.parse_time(request.args.get("to"), timezone, "to"))


def register(api: Blueprint) -> None:
    """Adds the ledger's reading routes to the API blueprint."""

    @operation(api, "GET", "/accounts/<int:account_id>/statement",
               summary="An account's entries in the order they were written (cursor pages)",
               response=models.Statement, scope="credit", paged=True, problems=(404,),
               params=(AFTER, LIMIT, *TIME_BOUNDS, query("methodology", {"type": "string"}),
                       query("subtree", {"type": "boolean"})))
    def account_statement(account_id: int):
        start, end = _bounds(DEFAULT_TIMEZONE)
        with get_db().read() as s:
            page = statements.statement(
                s, g.api_user.id, account_id, after=int_arg("after", None), limit=_limit(),
                start=start, end=end, subtree=_flag("subtree"),
                methodology=request.args.get("methodology") or None).to_dict()
        return _paged(jsonify({"account": account_id, **page}), page)

    @operation(api, "GET", "/accounts/<int:account_id>/balances",
               summary="Reduction, points and bonus per period and methodology",
               response=models.PeriodBalances, scope="credit", problems=(404,),
               params=(query("period", {"type": "string", "enum": ["day", "week", "month", "year"]}),
                       *TIME_BOUNDS, query("timezone", {"type": "string"}),
                       query("subtree", {"type": "boolean"})))
    def account_balances(account_id: int):
        timezone = request.args.get("timezone") or DEFAULT_TIMEZONE
        start, end = _bounds(timezone)
        with get_db().read() as s:
            return jsonify(statements.period_balances(
                s, g.api_user.id, account_id, request.args.get("period") or "month",
                timezone=timezone, start=start, end=end, subtree=_flag("subtree")).to_dict())

    @operation(api, "GET", "/credits/<path:record_id>", summary="Your credits of a record id",
               response=models.RecordCredits, scope="credit", problems=(404,),
               params=(query("methodology", {"type": "string"}),))
    def credit_of_record(record_id: str):
        with get_db().read() as s:
            found = statements.by_record(s, g.api_user.id, record_id,
                                         methodology=request.args.get("methodology") or None)
            if not found:
                raise ApiError(404, "not_found", f"you have no credited record {record_id!r}")
            return jsonify({"record_id": record_id,
                            "items": [statements.entry_dict(e) for e in found]})

    @operation(api, "GET", "/batches/<int:batch_id>",
               summary="One of your credit batches, its entries a page at a time",
               response=models.BatchDetail, scope="credit", paged=True, problems=(404,),
               params=(AFTER, LIMIT))
    def credit_batch(batch_id: int):
        with get_db().read() as s:
            out = statements.batch(s, g.api_user.id, batch_id, after=int_arg("after", None),
                                   limit=_limit()).to_dict()
        return _paged(jsonify(out), out["entries"])
