"""Administration: users and roles, committees and their members and quorum, the
versions to publish, suspend, reinstate or retire, and the carbon accounts (a filtered
list, a form to create one, an account's page with its parents, children, identities,
status buttons and rolled-up balance).

Every route checks the registry predicate for what it does (users.can_manage_users,
users.can_manage_committees, the version transition's own predicate) and answers 403
otherwise; the registry function it calls checks again. A request the state does not
allow (409/422 from the registry) comes back to the form with the reason.
"""

from __future__ import annotations

import datetime as dt
from typing import Optional

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from registry import accounts, statements, users, workflow
from registry.errors import Conflict, Invalid, InvalidTransition, NotFound, QuorumNotMet
from registry.models import (ACCOUNT_DOMAINS, ACCOUNT_KINDS, ACCOUNT_STATUSES, ADMINISTRATOR,
                             APPROVED, PUBLISHED, ROLES, SUPERSEDED, SUSPENDED, Account,
                             Committee, Methodology, MethodologyVersion, User)

from .. import sources
from ..auth import current_user, require, requires, roles_required, safe_next
from ..db import get_db
from ..i18n import lang, server
from .common import Page, id_arg, keep_typed, page_number, paginate

bp = Blueprint("admin", __name__, url_prefix="/admin")

_EXPECTED = (Invalid, InvalidTransition, QuorumNotMet, Conflict)
VERSION_ACTIONS = ("publish", "suspend", "reinstate", "retire")


def _back(default: str):
    return redirect(safe_next(request.form.get("next") or default), code=303)


def _int(name: str, default: Optional[int] = None) -> Optional[int]:
    try:
        return int(request.form.get(name, ""))
    except ValueError:
        return default


# ---------------------------------------------------------------- overview
@bp.get("/")
@roles_required(ADMINISTRATOR)
def index():
    with get_db().read() as s:
        counts = {
            "users": s.scalar(select(func.count()).select_from(User)),
            "active": s.scalar(select(func.count()).select_from(User).where(User.active.is_(True))),
            "committees": s.scalar(select(func.count()).select_from(Committee)),
            "approved": s.scalar(select(func.count()).select_from(MethodologyVersion)
                                 .where(MethodologyVersion.state == APPROVED)),
            "published": s.scalar(select(func.count()).select_from(MethodologyVersion)
                                  .where(MethodologyVersion.state == PUBLISHED)),
            "suspended": s.scalar(select(func.count()).select_from(MethodologyVersion)
                                  .where(MethodologyVersion.state == SUSPENDED)),
        }
        return render_template("admin/index.html", counts=counts)


# ---------------------------------------------------------------- users
@bp.get("/users")
@requires(users.can_manage_users)
def users_list():
    q = (request.args.get("q") or "").strip().lower()
    role = request.args.get("role") or ""
    status = request.args.get("status") or ""
    with get_db().read() as s:
        everyone = s.scalars(select(User).order_by(User.email)).all()
        chosen = [u for u in everyone
                  if (not q or q in u.email.lower() or q in u.name.lower())
                  and (not role or role in u.roles)
                  and (not status or (status == "active") == u.active)]
        committees = {}
        for c in s.scalars(select(Committee)).all():
            for uid in c.member_ids:
                committees.setdefault(uid, []).append(c.domain)
        page = paginate(chosen, 50)
        return render_template("admin/users.html", page=page, q=q, role=role, status=status,
                               roles=ROLES, committees=committees, total=len(everyone),
                               min_password=users.MIN_PASSWORD_LENGTH)


@bp.post("/users")
@requires(users.can_manage_users)
def users_create():
    roles = [r for r in request.form.getlist("roles") if r]
    password = request.form.get("password") or None
    try:
        with get_db().unit_of_work() as s:
            user = users.create_user(s, current_user.id, email=request.form.get("email", ""),
                                     name=request.form.get("name", ""), roles=roles,
                                     password=password)
            email = user.email
    except _EXPECTED as error:
        keep_typed()
        flash(_("The user was not created: %(why)s", why=server(error)), "error")
        return redirect(url_for("admin.users_list"), code=303)
    flash(_("User %(email)s created.", email=email), "success")
    return redirect(url_for("admin.users_list"), code=303)


@bp.get("/users/<int:user_id>")
@requires(users.can_manage_users)
def user_detail(user_id: int):
    from registry.models import AuditEntry
    with get_db().read() as s:
        user = s.get(User, user_id)
        if user is None:
            abort(404)
        committees = [c for c in s.scalars(select(Committee).order_by(Committee.domain)).all()
                      if user.id in c.member_ids]
        activity = s.scalars(select(AuditEntry).where(AuditEntry.actor_id == user.id)
                             .order_by(AuditEntry.seq.desc()).limit(20)).all()
        about = s.scalars(select(AuditEntry).where(AuditEntry.object_type == "user",
                                                   AuditEntry.object_id == str(user.id))
                          .order_by(AuditEntry.seq.desc()).limit(20)).all()
        return render_template("admin/user.html", user=user, roles=ROLES,
                               committees=committees, activity=activity, about=about,
                               min_password=users.MIN_PASSWORD_LENGTH)


@bp.post("/users/<int:user_id>/roles")
@requires(users.can_manage_users)
def user_roles(user_id: int):
    role = request.form.get("role", "")
    grant = request.form.get("op") != "revoke"
    try:
        with get_db().unit_of_work() as s:
            (users.grant_role if grant else users.revoke_role)(s, current_user.id, user_id, role)
    except _EXPECTED as error:
        flash(server(error), "error")
    else:
        flash(_("Role granted.") if grant else _("Role revoked."), "success")
    return _back(url_for("admin.user_detail", user_id=user_id))


@bp.post("/users/<int:user_id>/active")
@requires(users.can_manage_users)
def user_active(user_id: int):
    active = request.form.get("active") == "1"
    try:
        with get_db().unit_of_work() as s:
            users.set_active(s, current_user.id, user_id, active)
    except _EXPECTED as error:
        flash(server(error), "error")
    else:
        flash(_("Account activated.") if active else _("Account deactivated."), "success")
    return _back(url_for("admin.user_detail", user_id=user_id))


@bp.post("/users/<int:user_id>/password")
@requires(users.can_manage_users)
def user_password(user_id: int):
    password = request.form.get("password") or ""
    if password != (request.form.get("confirm") or ""):
        flash(_("The two passwords differ."), "error")
        return _back(url_for("admin.user_detail", user_id=user_id))
    try:
        with get_db().unit_of_work() as s:
            users.set_password(s, current_user.id, user_id, password)
    except _EXPECTED as error:
        flash(server(error), "error")
    else:
        flash(_("Password set."), "success")
    return _back(url_for("admin.user_detail", user_id=user_id))


@bp.post("/users/<int:user_id>/reset-link")
@requires(users.can_manage_users)
def user_reset_link(user_id: int):
    """A one-time link (webui/auth.py reset_link) the administrator hands to the user,
    who then chooses a password nobody else has seen. Recorded in the audit log."""
    from registry import audit

    from ..auth import RESET_SECONDS, reset_link
    with get_db().unit_of_work() as s:
        user = users.get(s, user_id)
        link = reset_link(user)
        audit.append(s, current_user.id, "user.reset_link", "user", user.id,
                     {"valid_hours": RESET_SECONDS // 3600})
    flash(_("A one-time link for %(email)s, valid for %(hours)d hours: %(link)s",
            email=user.email, hours=RESET_SECONDS // 3600, link=link), "success")
    return _back(url_for("admin.user_detail", user_id=user_id))


# ---------------------------------------------------------------- committees
@bp.get("/committees")
@requires(users.can_manage_committees)
def committees_list():
    with get_db().read() as s:
        committees = s.scalars(select(Committee).order_by(Committee.domain)).all()
        methodologies = dict(s.execute(select(Methodology.committee_id, func.count())
                                       .group_by(Methodology.committee_id)).all())
        return render_template("admin/committees.html", committees=committees,
                               methodologies=methodologies)


@bp.post("/committees")
@requires(users.can_manage_committees)
def committees_create():
    try:
        with get_db().unit_of_work() as s:
            committee = workflow.create_committee(
                s, current_user.id, domain=request.form.get("domain", ""),
                name=request.form.get("name", ""), min_votes=_int("min_votes", 3),
                approval_share=(_int("numerator", 2), _int("denominator", 3)))
            committee_id = committee.id
    except _EXPECTED as error:
        keep_typed()
        flash(_("The committee was not created: %(why)s", why=server(error)), "error")
        return redirect(url_for("admin.committees_list"), code=303)
    flash(_("Committee created."), "success")
    return redirect(url_for("admin.committee_detail", committee_id=committee_id), code=303)


@bp.get("/committees/<int:committee_id>")
@requires(users.can_manage_committees)
def committee_detail(committee_id: int):
    with get_db().read() as s:
        committee = s.get(Committee, committee_id)
        if committee is None:
            abort(404)
        members = sorted((m.user for m in committee.member_rows), key=lambda u: u.email)
        candidates = [u for u in s.scalars(select(User).order_by(User.email)).all()
                      if u.has_role("committee_member") and u.id not in committee.member_ids]
        methodologies = s.scalars(select(Methodology).where(Methodology.committee_id == committee.id)
                                  .order_by(Methodology.id)).all()
        titles = {}
        for m in methodologies:
            shown = max(m.versions, key=lambda v: v.semver, default=None)
            titles[m.id] = sources.info(shown.source).title_in(lang(), m.title) if shown else m.title
        return render_template("admin/committee.html", committee=committee, members=members,
                               candidates=candidates, methodologies=methodologies,
                               titles=titles)


@bp.post("/committees/<int:committee_id>/quorum")
@requires(users.can_manage_committees)
def committee_quorum(committee_id: int):
    try:
        with get_db().unit_of_work() as s:
            workflow.set_quorum(s, current_user.id, committee_id,
                                min_votes=_int("min_votes", 0),
                                approval_share=(_int("numerator", 0), _int("denominator", 0)))
    except _EXPECTED as error:
        flash(_("The quorum was not changed: %(why)s", why=server(error)), "error")
    else:
        flash(_("Quorum changed; it applies to every decision from now on."), "success")
    return _back(url_for("admin.committee_detail", committee_id=committee_id))


@bp.post("/committees/<int:committee_id>/members")
@requires(users.can_manage_committees)
def committee_add(committee_id: int):
    member = _int("user_id")
    try:
        with get_db().unit_of_work() as s:
            if member is None:
                raise Invalid(_("Choose a user."))
            workflow.add_member(s, current_user.id, committee_id, member)
    except _EXPECTED as error:
        flash(server(error), "error")
    else:
        flash(_("Member added."), "success")
    return _back(url_for("admin.committee_detail", committee_id=committee_id))


@bp.post("/committees/<int:committee_id>/members/<int:user_id>/remove")
@requires(users.can_manage_committees)
def committee_remove(committee_id: int, user_id: int):
    try:
        with get_db().unit_of_work() as s:
            workflow.remove_member(s, current_user.id, committee_id, user_id)
    except _EXPECTED as error:
        flash(server(error), "error")
    else:
        flash(_("Member removed."), "success")
    return _back(url_for("admin.committee_detail", committee_id=committee_id))


# ---------------------------------------------------------------- versions
@bp.get("/versions")
@roles_required(ADMINISTRATOR)
def versions():
    with get_db().read() as s:
        rows = s.scalars(select(MethodologyVersion)
                         .where(MethodologyVersion.state.in_((APPROVED, PUBLISHED, SUPERSEDED,
                                                              SUSPENDED)))
                         .options(selectinload(MethodologyVersion.methodology))
                         .order_by(MethodologyVersion.methodology_id,
                                   MethodologyVersion.major, MethodologyVersion.minor,
                                   MethodologyVersion.patch)).all()
        groups = {state: [v for v in rows if v.state == state]
                  for state in (APPROVED, PUBLISHED, SUSPENDED, SUPERSEDED)}
        titles = {v.id: sources.info(v.source).title_in(lang(), v.methodology.title) for v in rows}
        actions = {v.id: {a: workflow.may(s, current_user, v, a) for a in VERSION_ACTIONS}
                   for v in rows}
        quorums = {v.id: workflow.quorum(s, v) for v in groups[APPROVED]}
        effective = {v.id: workflow.effective_date(s, v) for v in groups[APPROVED]}
        return render_template("admin/versions.html", groups=groups, titles=titles,
                               actions=actions, quorums=quorums, effective=effective,
                               grace_days=workflow.DEFAULT_GRACE_DAYS)


@bp.post("/versions/<int:version_id>/<action>")
@roles_required(ADMINISTRATOR)
def version_action(version_id: int, action: str):
    if action not in VERSION_ACTIONS:
        abort(404)
    reason = (request.form.get("reason") or "").strip()
    label = ""
    try:
        with get_db().unit_of_work() as s:
            version = workflow.get_version(s, version_id)
            require(workflow.TRANSITIONS[action].who(current_user, version))
            label = f"{version.methodology_id} {version.version}"
            default = url_for("methodology.show_version", methodology_id=version.methodology_id,
                              version=version.version)
            if action == "publish":
                effective = request.form.get("effective_from") or ""
                try:
                    effective_from = dt.date.fromisoformat(effective) if effective else None
                except ValueError:
                    raise Invalid(_("Not a date (YYYY-MM-DD): %(text)s", text=effective)) from None
                written = workflow.effective_date(s, version).written
                publication = workflow.publish(s, current_user.id, version_id,
                                               effective_from=effective_from,
                                               grace_days=_int("grace_days", workflow.DEFAULT_GRACE_DAYS))
                if written and publication.effective_from != written:
                    flash(_("%(v)s takes effect on %(date)s, not on the date its source says (%(written)s).",
                            v=label, date=publication.effective_from.isoformat(),
                            written=written.isoformat()), "warning")
            else:
                getattr(workflow, action)(s, current_user.id, version_id, reason)
    except _EXPECTED as error:
        flash(server(error), "error")
        return _back(url_for("admin.versions"))
    messages = {"publish": _("%(v)s is published.", v=label),
                "suspend": _("%(v)s is suspended.", v=label),
                "reinstate": _("%(v)s is reinstated.", v=label),
                "retire": _("%(v)s is retired.", v=label)}
    flash(messages[action], "success")
    return _back(default)


# ---------------------------------------------------------------- carbon accounts
KIND_LABELS = {"individual": _l("Individual"), "unit": _l("Unit"), "project": _l("Project"),
               "region": _l("Region")}
ACCOUNT_STATUS_LABELS = {"active": _l("Active"), "frozen": _l("Frozen"), "closed": _l("Closed")}
ACCOUNT_DOMAIN_LABELS = {"industry": _l("Industry"), "agriculture": _l("Agriculture"),
                         "energy": _l("Energy"), "buildings": _l("Buildings"),
                         "transport": _l("Transport"), "residential": _l("Residential life"),
                         "forestry": _l("Forestry sinks")}
ACCOUNTS_PER_PAGE = 50
STATEMENT_PER_PAGE = 50


def _account_labels() -> dict:
    return {"kinds": ACCOUNT_KINDS, "statuses": ACCOUNT_STATUSES, "domains": ACCOUNT_DOMAINS,
            "kind_labels": KIND_LABELS, "status_labels": ACCOUNT_STATUS_LABELS,
            "domain_labels": ACCOUNT_DOMAIN_LABELS}


@bp.get("/accounts")
@roles_required(ADMINISTRATOR)
def accounts_list():
    """Filtered and paginated in SQL: there may be millions of accounts."""
    kind = request.args.get("kind") if request.args.get("kind") in ACCOUNT_KINDS else ""
    status = request.args.get("status") if request.args.get("status") in ACCOUNT_STATUSES else ""
    parent = id_arg("parent")
    number = page_number()
    with get_db().read() as s:
        items, total = accounts.list_accounts(s, current_user.id, kind=kind or None,
                                              status=status or None, parent_id=parent,
                                              page=number, per_page=ACCOUNTS_PER_PAGE)
        if not items and total and number > 1:  # past the end: the last page
            number = -(-total // ACCOUNTS_PER_PAGE)
            items, total = accounts.list_accounts(
                s, current_user.id, kind=kind or None, status=status or None,
                parent_id=parent, page=number, per_page=ACCOUNTS_PER_PAGE)
        page = Page(items, number, ACCOUNTS_PER_PAGE, total)
        parent_account = s.get(Account, parent) if parent else None
        children = {a.id: accounts.children_count(s, a.id) for a in items}
        return render_template("admin/accounts.html", page=page, kind=kind, status=status,
                               parent=parent, parent_account=parent_account, children=children,
                               **_account_labels())


@bp.post("/accounts")
@roles_required(ADMINISTRATOR)
def accounts_create():
    parent = _int("parent")
    try:
        with get_db().unit_of_work() as s:
            account = accounts.create(s, current_user.id, request.form.get("kind", ""),
                                      parent_id=parent, name=request.form.get("name", ""),
                                      domains=[d for d in request.form.getlist("domains") if d])
            account_id = account.id
    except (*_EXPECTED, NotFound) as error:
        keep_typed()
        flash(_("The account was not created: %(why)s", why=server(error)), "error")
        return redirect(url_for("admin.accounts_list"), code=303)
    flash(_("Account %(id)d created.", id=account_id), "success")
    return redirect(url_for("admin.account_detail", account_id=account_id), code=303)


@bp.get("/accounts/<int:account_id>")
@roles_required(ADMINISTRATOR)
def account_detail(account_id: int):
    from registry.models import AuditEntry
    with get_db().read() as s:
        account = s.get(Account, account_id)
        if account is None:
            abort(404)
        identities = accounts.identities(s, account.id)
        integrators = {u.id: u for u in s.scalars(select(User).where(
            User.id.in_({i.integrator_id for i in identities})))}
        history = s.scalars(select(AuditEntry).where(AuditEntry.object_type == "account",
                                                     AuditEntry.object_id == str(account.id))
                            .order_by(AuditEntry.seq.desc()).limit(20)).all()
        creator = s.get(User, account.created_by) if account.created_by else None
        # the statement, newest first, by keyset (`before`: the last id shown), and the
        # account's own balances by month (registry/statements.py)
        statement = statements.statement(s, current_user.id, account.id,
                                         before=id_arg("before"),
                                         limit=STATEMENT_PER_PAGE, newest_first=True)
        months = statements.period_balances(s, current_user.id, account.id, "month")
        from registry.models import Reversal
        shown = [e.id for e in statement.entries]
        reversed_ids = set(s.scalars(select(Reversal.entry_id).where(Reversal.entry_id.in_(shown)))) \
            if shown else set()
        return render_template(
            "admin/account.html", account=account, chain=accounts.ancestors(s, account.id),
            children=accounts.children(s, account.id),
            children_total=accounts.children_count(s, account.id), identities=identities,
            integrators=integrators, balances=accounts.balances(s, account.id),
            history=history, creator=creator, actions=accounts.STATUS_ACTIONS,
            statement=statement, months=months, reversed_ids=reversed_ids, **_account_labels())


@bp.post("/accounts/<int:account_id>/status")
@roles_required(ADMINISTRATOR)
def account_status(account_id: int):
    action = request.form.get("action", "")
    if action not in accounts.STATUS_ACTIONS:
        abort(400)
    try:
        with get_db().unit_of_work() as s:
            accounts.update_status(s, current_user.id, account_id, accounts.STATUS_ACTIONS[action])
    except (*_EXPECTED, NotFound) as error:
        flash(server(error), "error")
    else:
        flash({"freeze": _("Account frozen."), "unfreeze": _("Account unfrozen."),
               "close": _("Account closed.")}[action], "success")
    return _back(url_for("admin.account_detail", account_id=account_id))
