"""The rewards catalogue page for administrators, and the public certificate page.

    GET  /admin/rewards                      the catalogue, with each reward's stock left in
    POST /admin/rewards                      the current period; create a reward
    POST /admin/rewards/<id>/active          deactivate (or offer again) a reward
    GET  /admin/reversals[?account=]         reversals, newest first, paginated (one account's)
    GET  /admin/retirements[?account=]       retirements and their certificates, likewise
    GET  /admin/credits/<entry_id>/reversal  a credit and the form to reverse it (with a reason)
    POST /admin/credits/<entry_id>/reversal  reverse it (registry/reversals.py)
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
from sqlalchemy import select
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from registry import retirements, reversals, rewards
from registry.errors import Conflict, Forbidden, Invalid, InvalidTransition, NotFound
from registry.models import ADMINISTRATOR, REWARD_PERIODS, Account, RetirementPart, User

from ..auth import current_user, roles_required
from ..db import get_db
from ..i18n import lang, server
from .common import Page, id_arg, keep_typed, page_number

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
        keep_typed()
        flash(_("The reward was not created: %(why)s", why=server(error)), "error")
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
        flash(server(error), "error")
    else:
        flash(_("The reward is offered again.") if offer else _("The reward is no longer offered."),
              "success")
    return redirect(url_for("rewards.catalogue"), code=303)


LIST_PER_PAGE = 50
MAX_PAGE = 1_000_000  # an offset every database's integers hold


def _listing(lister, account_id: Optional[int]) -> tuple[Page, dict[int, str]]:
    """A page of `lister`'s rows (past the end: the last page), and the names of who did them."""
    number = min(page_number(), MAX_PAGE)
    with get_db().read() as s:
        items, total = lister(s, account_id=account_id, page=number, per_page=LIST_PER_PAGE)
        last = max(1, -(-total // LIST_PER_PAGE))
        if number > last:
            number = last
            items, total = lister(s, account_id=account_id, page=number, per_page=LIST_PER_PAGE)
        names = {u.id: u.name for u in s.scalars(
            select(User).where(User.id.in_({_actor(i) for i in items} - {None}))).all()}
    return Page(items, number, LIST_PER_PAGE, total), names


def _actor(item) -> Optional[int]:
    return (item[0] if isinstance(item, tuple) else item).actor_id


def _account_filter() -> Optional[int]:
    return id_arg("account") or None  # (0: no account filter)


@bp.get("/admin/reversals")
@roles_required(ADMINISTRATOR)
def reversals_list():
    account = _account_filter()
    page, names = _listing(reversals.list_reversals, account)
    return render_template("rewards/reversals.html", page=page, names=names, account=account)


@bp.get("/admin/retirements")
@roles_required(ADMINISTRATOR)
def retirements_list():
    account = _account_filter()
    page, names = _listing(retirements.list_retirements, account)
    return render_template("rewards/retirements.html", page=page, names=names, account=account)


def _reverse_page(entry_id: int, reason: str = "", error: str = "", status: int = 200):
    with get_db().read() as s:
        try:
            entry = reversals.find_entry(s, entry_id)
        except NotFound:
            abort(404)
        done = reversals.reversal_of(s, entry.id)
        retired = sorted(set(s.scalars(select(RetirementPart.retirement_id).where(
            RetirementPart.entry_id == entry.id))))
        account = s.get(Account, int(entry.account)) if entry.account.isdigit() else None
        return render_template("rewards/reverse.html", entry=entry, done=done, retired=retired,
                               account=account, reason=reason, error=error), status


@bp.get("/admin/credits/<int:entry_id>/reversal")
@roles_required(ADMINISTRATOR)
def reverse_form(entry_id: int):
    return _reverse_page(entry_id)


@bp.post("/admin/credits/<int:entry_id>/reversal")
@roles_required(ADMINISTRATOR)
def reverse(entry_id: int):
    """Reverses the credit; a refusal shows the form again with the reason as typed."""
    reason = request.form.get("reason", "")
    try:
        user_id = current_user.id

        def change(s):
            out = reversals.reverse(s, user_id, entry_id, reason=reason)
            return out.entry.account, out.frozen
        # run again whole after a deadlock or serialization failure (Database.retried)
        account, frozen = get_db().retried(change)
    except NotFound:
        abort(404)
    except Invalid as error:
        return _reverse_page(entry_id, reason, server(error), 422)
    except (Conflict, InvalidTransition) as error:
        return _reverse_page(entry_id, reason, server(error), 409)
    flash(_("Credit %(id)d reversed.", id=entry_id), "success")
    if frozen:
        flash(_("The points balance went below zero: the account is frozen until an "
                "administrator unfreezes it."), "warning")
    if account.isdigit():
        return redirect(url_for("admin.account_detail", account_id=int(account)) + "#statement",
                        code=303)
    return redirect(url_for("rewards.reversals_list"), code=303)


@bp.get("/certificates/<certificate_id>")
def certificate(certificate_id: str):
    """Public: a certificate is meant to be shown to anyone who wants to check it."""
    try:
        with get_db().read() as s:
            cert = retirements.certificate(s, certificate_id)
    except NotFound:
        abort(404)
    return render_template("rewards/certificate.html", cert=cert, c=cert.content)
