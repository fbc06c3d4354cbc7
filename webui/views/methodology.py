"""A methodology's page: the version's source (highlighted), parameters with their sources
and effective dates, formulas, examples and their results, and the version history.

The document parts come from docgen (the same content `tanpu doc` prints); the actions an
administrator may take on the version (publish, suspend, reinstate, retire) post to the
admin blueprint, which checks the rights again.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, render_template
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from registry import audit, users, workflow
from registry.models import AuditEntry, Methodology, User

from .. import sources
from ..auth import current_user, login_required, require
from ..db import get_db
from ..i18n import lang
from .common import current_version, visible_versions

bp = Blueprint("methodology", __name__)

ADMIN_ACTIONS = ("publish", "suspend", "reinstate", "retire")
# lifecycle events everyone who sees the version sees; votes and comments only the review
_PUBLIC_ACTIONS = ("version.", "methodology.")


def _load(session, methodology_id: str) -> Methodology:
    methodology = session.scalar(select(Methodology).where(Methodology.id == methodology_id)
                                 .options(selectinload(Methodology.versions),
                                          selectinload(Methodology.committee)))
    if methodology is None:
        abort(404)
    return methodology


def _history(session, methodology, version, can_review: bool) -> list[dict]:
    entries = list(session.scalars(
        select(AuditEntry).where(
            ((AuditEntry.object_type == "methodology_version")
             & (AuditEntry.object_id == str(version.id)))
            | ((AuditEntry.object_type == "methodology")
               & (AuditEntry.object_id == methodology.id)))
        .order_by(AuditEntry.seq)))
    if not can_review:
        entries = [e for e in entries if e.action.startswith(_PUBLIC_ACTIONS)]
    actor_ids = {e.actor_id for e in entries if e.actor_id is not None}
    names = {u.id: u.name for u in session.scalars(select(User).where(User.id.in_(actor_ids)))} \
        if actor_ids else {}
    return [{"entry": e, "actor": names.get(e.actor_id, "") if e.actor_id else ""}
            for e in entries]


def _render(session, methodology: Methodology, version):
    require(users.can_view_version(current_user, version))
    versions = visible_versions(current_user, methodology)
    currency = workflow.currency(session, methodology.id)
    current = _current(versions, currency)
    info = sources.info(version.source)
    language = lang()
    document = sources.document(version.source, language, version.content_hash)
    can_review = bool(users.can_view_review(current_user, version))
    actions = {a: workflow.may(session, current_user, version, a) for a in ADMIN_ACTIONS}
    successor = version.superseded_by
    committee = methodology.committee
    authors = {u.id: u for u in session.scalars(
        select(User).where(User.id.in_({v.author_id for v in versions} | {version.author_id})))}
    return render_template(
        "methodology/show.html", methodology=methodology, version=version, versions=versions,
        current=current, standing=currency.standing, today=currency.today, info=info, doc=document, can_review=can_review, actions=actions,
        successor=successor, committee=committee, authors=authors,
        history=_history(session, methodology, version, can_review),
        source_html=sources.highlighted(version.source),
        source_lines=version.source.count("\n") + 1,
        can_edit=bool(users.can_edit(current_user, version)),
        default_effective=workflow.effective_date(session, version),
        grace_days=workflow.DEFAULT_GRACE_DAYS,
        quorum=workflow.quorum(session, version) if can_review and version.review_round else None)


def _current(versions, currency: workflow.Currency):
    """The version in force today (workflow.currency, which the API asks too), else the
    one the methodology is shown by (common.current_version)."""
    if currency.current is not None and any(v.id == currency.current.id for v in versions):
        return next(v for v in versions if v.id == currency.current.id)
    return current_version(versions)


@bp.get("/methodologies/<methodology_id>")
@login_required
def show(methodology_id: str):
    with get_db().read() as s:
        methodology = _load(s, methodology_id)
        version = _current(visible_versions(current_user, methodology),
                           workflow.currency(s, methodology.id))
        if version is None:
            abort(404)
        return _render(s, methodology, version)


@bp.get("/methodologies/<methodology_id>/versions/<version>")
@login_required
def show_version(methodology_id: str, version: str):
    with get_db().read() as s:
        methodology = _load(s, methodology_id)
        found = next((v for v in methodology.versions if v.version == version), None)
        if found is None:
            abort(404)
        return _render(s, methodology, found)


def _version(session, methodology_id: str, version: str):
    methodology = _load(session, methodology_id)
    found = next((v for v in methodology.versions if v.version == version), None)
    if found is None:
        abort(404)
    require(users.can_view_version(current_user, found))
    return found


@bp.get("/methodologies/<methodology_id>/versions/<version>/source.tanpu")
@login_required
def source(methodology_id: str, version: str):
    with get_db().read() as s:
        found = _version(s, methodology_id, version)
        filename = f"{methodology_id}-{version}.tanpu"
        return Response(found.source, mimetype="text/plain", headers={
            "Content-Disposition": f'inline; filename="{filename}"',
            "X-Content-Hash": found.content_hash or ""})


@bp.get("/methodologies/<methodology_id>/versions/<version>/document")
@login_required
def document(methodology_id: str, version: str):
    """The whole document, as `tanpu doc` writes it (printable)."""
    with get_db().read() as s:
        found = _version(s, methodology_id, version)
        html = sources.full_document(found.source, lang(), found.content_hash)
        if html is None:
            abort(404, description="this version does not compile: there is no document")
        return Response(html, mimetype="text/html")
