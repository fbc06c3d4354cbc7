"""The rewards catalogue page for administrators, and the public certificate page.

    GET  /admin/rewards                      the catalogue, with each reward's stock left in
    POST /admin/rewards                      the current period; create a reward
    POST /admin/rewards/<id>/active          deactivate (or offer again) a reward
    GET  /certificates/<id>                  a retirement certificate, for anyone (no sign-in):
                                             what was retired from which credits, and whether
                                             the digest recomputed from the stored rows matches

A blueprint of its own rather than more routes in admin.py: the certificate page must be
reachable without signing in, and the catalogue belongs with it (registry/rewards.py,
registry/retirements.py).
"""

from __future__ import annotations

from typing import Optional

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from registry import retirements, rewards
from registry.errors import Forbidden, Invalid, InvalidTransition, NotFound
from registry.models import ADMINISTRATOR, REWARD_PERIODS

from ..auth import current_user, roles_required
from ..db import get_db
from ..i18n import lang

bp = Blueprint("rewards", __name__)

PERIOD_LABELS = {"day": _l("day"), "week": _l("week"), "month": _l("month"),
                 "year": _l("year")}


def _count(name: str) -> Optional[int]:
    """A whole number from the form; empty: None (no limit)."""
    raw = (request.form.get(name) or "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise Invalid(_("%(field)s: a whole number", field=name)) from None


@bp.get("/admin/rewards")
@roles_required(ADMINISTRATOR)
def catalogue():
    with get_db().read() as s:
        items = [(r, rewards.stock_left(s, r)) for r in rewards.list_rewards(s, include_inactive=True)]
        return render_template("rewards/catalogue.html", items=items, periods=REWARD_PERIODS,
                               period_labels=PERIOD_LABELS, english=lang() == "en")


@bp.post("/admin/rewards")
@roles_required(ADMINISTRATOR)
def create():
    try:
        with get_db().unit_of_work() as s:
            reward = rewards.create_reward(
                s, current_user.id, name=request.form.get("name", ""),
                name_en=request.form.get("name_en", ""), price_points=_count("price_points"),
                stock_per_period=_count("stock_per_period"),
                period=request.form.get("period", "month"),
                limit_per_account_per_period=_count("limit_per_account_per_period"))
            name = reward.name
    except (Invalid, Forbidden) as error:
        flash(_("The reward was not created: %(why)s", why=str(error)), "error")
    else:
        flash(_("Reward %(name)s created.", name=name), "success")
    return redirect(url_for("rewards.catalogue"), code=303)


@bp.post("/admin/rewards/<int:reward_id>/active")
@roles_required(ADMINISTRATOR)
def set_active(reward_id: int):
    offer = request.form.get("active") == "1"
    try:
        with get_db().unit_of_work() as s:
            rewards.update_reward(s, current_user.id, reward_id, active=offer)
    except NotFound:
        abort(404)
    except (Invalid, InvalidTransition) as error:
        flash(str(error), "error")
    else:
        flash(_("The reward is offered again.") if offer else _("The reward is no longer offered."),
              "success")
    return redirect(url_for("rewards.catalogue"), code=303)


@bp.get("/certificates/<certificate_id>")
def certificate(certificate_id: str):
    """Public: a certificate is meant to be shown to anyone who wants to check it."""
    try:
        with get_db().read() as s:
            cert = retirements.certificate(s, certificate_id)
    except NotFound:
        abort(404)
    return render_template("rewards/certificate.html", cert=cert, c=cert.content)
