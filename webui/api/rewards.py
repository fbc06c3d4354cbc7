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
from registry.models import Redemption, Reward

from ..db import get_db
from . import models
from .accounts import IDEMPOTENCY_KEY, idempotent
from .openapi import header, operation, query
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


def _created(payload: dict, status: int = 201):
    response = jsonify(payload)
    response.status_code = status
    return response


def register(api: Blueprint) -> None:
    """Adds the routes to the API blueprint (before the app registers it)."""

    @operation(api, "GET", "/rewards", summary="The rewards catalogue",
               response=models.RewardList, scope="redeem",
               params=(query("all", {"type": "string", "enum": ["0", "1"]},
                             "1: inactive rewards too (administrators)"),))
    def list_rewards():
        with get_db().read() as s:
            everything = (request.args.get("all") == "1"
                          and bool(rewards.can_manage_rewards(g.api_user)))
            return jsonify({"items": [reward_dict(s, r) for r in
                                      rewards.list_rewards(s, include_inactive=everything)]})

    @operation(api, "POST", "/rewards", summary="Add a reward (administrators)", status=201,
               body=models.RewardCreate, response=models.Reward, scope="admin",
               problems=(403, 409, 422), params=(IDEMPOTENCY_KEY,))
    def create_reward(body: models.RewardCreate):
        data = body.model_dump(exclude_unset=True)

        def change(s):
            return reward_dict(s, rewards.create_reward(s, g.api_user.id, **data))
        return idempotent("create_reward", body.model_dump(mode="json", exclude_unset=True), change)

    @operation(api, "POST", "/accounts/<int:account_id>/redemptions",
               summary="Redeem a reward (201; 200 when the key replays an earlier one)",
               status=201, extra_statuses=(200,), body=models.RedemptionRequest,
               response=models.RedemptionResponse, scope="redeem", problems=(403, 404, 409, 422),
               params=(header("Idempotency-Key", "required (or `idempotency_key` in the body)"),))
    def redeem(account_id: int, body: models.RedemptionRequest):
        key = request.headers.get("Idempotency-Key") or body.idempotency_key
        if not isinstance(key, str) or not key.strip():
            raise ApiError(400, "bad_idempotency_key",
                           "a redemption needs an Idempotency-Key header (a string)",
                           errors=[{"pointer": "#/header/Idempotency-Key",
                                    "detail": "required", "code": "missing"}])
        reward_id, user_id = body.reward, g.api_user.id

        def change(s) -> tuple[dict, bool]:
            out = rewards.redeem(s, user_id, account_id, reward_id, key)
            return ({"redemption": redemption_dict(out.redemption), "replayed": out.replayed,
                     "points": out.points.to_dict()}, out.replayed)
        # run again whole after a deadlock or serialization failure (Database.retried):
        # the failed attempt committed nothing, and the key makes a replay harmless
        payload, replayed = get_db().retried(change)
        return _created(payload, 200 if replayed else 201)

    @operation(api, "GET", "/accounts/<int:account_id>/wallet",
               summary="An account's points and retirable grams", response=models.Wallet,
               scope="redeem", problems=(404,))
    def wallet(account_id: int):
        with get_db().read() as s:
            accounts.visible(s, g.api_user.id, account_id)
            return jsonify({"account": account_id,
                            "points": rewards.points_of(s, account_id).to_dict(),
                            "retirable_mg": retirements.retirable_mg(s, account_id)})

    @operation(api, "POST", "/credits/<int:entry_id>/reversal",
               summary="Reverse a credit (administrators; a second reversal is a conflict)",
               status=201, body=models.ReversalRequest, response=models.ReversalResponse,
               scope="admin", problems=(403, 404, 409, 422), params=(IDEMPOTENCY_KEY,))
    def reverse(entry_id: int, body: models.ReversalRequest):
        reason = body.reason
        if not reason.strip():
            raise ApiError(400, "bad_request", "`reason`: why the credit is reversed",
                           errors=[{"pointer": "/reason", "detail": "empty", "code": "empty"}])

        def change(s):
            out = reversals.reverse(s, g.api_user.id, entry_id, reason=reason)
            r = out.reversal
            return {"reversal": {
                "id": r.id, "entry": r.entry_id, "account": r.account,
                "reduction_mg": r.reduction_mg, "points": r.points, "bonus": r.bonus,
                "reason": r.reason, "created_at": _time(r.created_at)},
                "caps": out.caps, "counters": out.counters, "points_balance": out.points_balance,
                "account_frozen": out.frozen}
        # a retry after a lost answer replays the reversal instead of a 409 "already reversed"
        return idempotent("reverse", body.model_dump(mode="json"), change)

    @operation(api, "POST", "/accounts/<int:account_id>/retirements",
               summary="Retire reductions: 201 with the certificate", status=201,
               body=models.RetirementRequest, response=models.Certificate, scope="redeem",
               problems=(403, 404, 409, 422), params=(IDEMPOTENCY_KEY,))
    def retire(account_id: int, body: models.RetirementRequest):
        data = body.model_dump(exclude_unset=True)
        amounts = {unit: data[key] for key, unit in (("reduction_mg", "mg"), ("g", "g"),
                                                     ("kg", "kg"), ("t", "t")) if key in data}
        purpose, beneficiary = body.purpose, body.beneficiary or ""
        mg = retirements.to_mg(**amounts)

        def change(s):
            retirement = retirements.retire(s, g.api_user.id, account_id, mg, purpose, beneficiary)
            return retirements.certificate(s, retirement.id).to_dict()
        return idempotent("retire", data, change)


def register_public(api: Blueprint = public) -> None:
    """The public part: anyone verifies a certificate, no token."""

    @operation(api, "GET", "/retirements/<retirement_id>",
               summary="A retirement certificate and whether its digest verifies (public)",
               response=models.Certificate, public=True, problems=(404,))
    def certificate(retirement_id: str):
        with get_db().read() as s:
            return jsonify(retirements.certificate(s, retirement_id).to_dict())
