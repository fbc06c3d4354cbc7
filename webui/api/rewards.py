"""Spending, reversal and retirement in /api/v1 (registered on the API blueprint by
views.py, as accounts.py is):

    GET  /api/v1/rewards                             the catalogue (?all=1: inactive too,
                                                     for administrators)
    POST /api/v1/rewards                             (administrator) {"name", "name_en",
                                                     "price_points", "stock_per_period",
                                                     "period", "limit_per_account_per_period"}
    POST /api/v1/accounts/<id>/redemptions           {"reward"} with an Idempotency-Key header
                                                     (or "idempotency_key"): 201, or 200 when
                                                     the key replays an earlier redemption
    GET  /api/v1/accounts/<id>/wallet                points (credited, redeemed, reversed,
                                                     balance) and grams (retirable)
    POST /api/v1/credits/<entry_id>/reversal         (administrator) {"reason"}
    POST /api/v1/accounts/<id>/retirements           {"reduction_mg" | "kg" | "t", "purpose",
                                                     "beneficiary"}: 201 with the certificate
    GET  /api/v1/retirements/<id>                    public, no token: the certificate and
                                                     whether its digest verifies

The token is an integrator's (views.py); "administrator" endpoints want a token whose
user is also an administrator (registry/rewards.py decides, 403 otherwise). An account
the caller may not see is a 404, as in accounts.py.
"""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from registry import accounts, retirements, reversals, rewards
from registry.errors import NotFound
from registry.models import Redemption, Reward

from ..db import get_db
from .service import ApiError

# the public part of /api/v1: outside the token-checked blueprint, registered beside it
public = Blueprint("public_api", __name__, url_prefix="/api/v1")


def _time(value) -> str:
    return value.isoformat().replace("+00:00", "Z")


def reward_dict(session, reward: Reward) -> dict:
    return {"id": reward.id, "name": reward.name, "name_en": reward.name_en,
            "price_points": reward.price_points, "stock_per_period": reward.stock_per_period,
            "stock_left": rewards.stock_left(session, reward), "period": reward.period,
            "limit_per_account_per_period": reward.limit_per_account_per_period,
            "timezone": reward.timezone, "active": reward.active,
            "created_at": _time(reward.created_at)}


def redemption_dict(redemption: Redemption) -> dict:
    return {"id": redemption.id, "account": redemption.account_id,
            "reward": redemption.reward_id, "points": redemption.points,
            "idempotency_key": redemption.idempotency_key, "period_key": redemption.period_key,
            "created_at": _time(redemption.created_at)}


def body() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(400, "bad_request", "send a JSON object (Content-Type: application/json)")
    return data


def _created(payload: dict, status: int = 201):
    response = jsonify(payload)
    response.status_code = status
    return response


def register(api: Blueprint) -> None:
    """Adds the routes to the API blueprint (before the app registers it)."""

    @api.get("/rewards")
    def list_rewards():
        with get_db().read() as s:
            everything = (request.args.get("all") == "1"
                          and bool(rewards.can_manage_rewards(g.api_user)))
            return jsonify({"items": [reward_dict(s, r) for r in
                                      rewards.list_rewards(s, include_inactive=everything)]})

    @api.post("/rewards")
    def create_reward():
        data = body()
        unknown = sorted(set(data) - set(rewards.REWARD_FIELDS))
        if unknown:
            raise ApiError(400, "bad_request", f"a reward has no {', '.join(unknown)} "
                           f"({', '.join(rewards.REWARD_FIELDS)})")
        with get_db().unit_of_work() as s:
            reward = rewards.create_reward(s, g.api_user.id, **data)
            return _created(reward_dict(s, reward))

    @api.post("/accounts/<int:account_id>/redemptions")
    def redeem(account_id: int):
        data = body()
        key = request.headers.get("Idempotency-Key") or data.get("idempotency_key")
        if not isinstance(key, str) or not key.strip():
            raise ApiError(400, "bad_idempotency_key",
                           "a redemption needs an Idempotency-Key header (a string)")
        reward_id = data.get("reward")
        if isinstance(reward_id, bool) or not isinstance(reward_id, int):
            raise ApiError(400, "bad_request", "`reward`: the id of a reward")
        with get_db().unit_of_work() as s:
            out = rewards.redeem(s, g.api_user.id, account_id, reward_id, key)
            return _created({"redemption": redemption_dict(out.redemption),
                             "replayed": out.replayed, "points": out.points.to_dict()},
                            200 if out.replayed else 201)

    @api.get("/accounts/<int:account_id>/wallet")
    def wallet(account_id: int):
        with get_db().read() as s:
            accounts.visible(s, g.api_user.id, account_id)
            return jsonify({"account": account_id,
                            "points": rewards.points_of(s, account_id).to_dict(),
                            "retirable_mg": retirements.retirable_mg(s, account_id)})

    @api.post("/credits/<int:entry_id>/reversal")
    def reverse(entry_id: int):
        data = body()
        reason = data.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise ApiError(400, "bad_request", "`reason`: why the credit is reversed")
        with get_db().unit_of_work() as s:
            out = reversals.reverse(s, g.api_user.id, entry_id, reason=reason)
            r = out.reversal
            return _created({"reversal": {
                "id": r.id, "entry": r.entry_id, "account": r.account,
                "reduction_mg": r.reduction_mg, "points": r.points, "bonus": r.bonus,
                "reason": r.reason, "created_at": _time(r.created_at)},
                "caps": out.caps, "points_balance": out.points_balance,
                "account_frozen": out.frozen})

    @api.post("/accounts/<int:account_id>/retirements")
    def retire(account_id: int):
        data = body()
        amounts = {unit: data[key] for key, unit in (("reduction_mg", "mg"), ("g", "g"),
                                                     ("kg", "kg"), ("t", "t")) if key in data}
        purpose = data.get("purpose")
        beneficiary = data.get("beneficiary") or ""
        if not isinstance(purpose, str) or not isinstance(beneficiary, str):
            raise ApiError(400, "bad_request", "`purpose` (and `beneficiary`): text")
        mg = retirements.to_mg(**amounts)
        with get_db().unit_of_work() as s:
            retirement = retirements.retire(s, g.api_user.id, account_id, mg, purpose, beneficiary)
            return _created(retirements.certificate(s, retirement.id).to_dict())


@public.get("/retirements/<retirement_id>")
def certificate(retirement_id: str):
    """Anyone may verify a certificate: no token."""
    try:
        with get_db().read() as s:
            return jsonify(retirements.certificate(s, retirement_id).to_dict())
    except NotFound as error:
        response = jsonify({"error": "not_found", "message": str(error)})
        response.status_code = 404
        return response
