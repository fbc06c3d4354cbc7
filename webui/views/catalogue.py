"""The catalogue: every methodology the user may see, with search, filters and pages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from flask import Blueprint, current_app, render_template, request
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from registry import workflow
from registry.models import STATES, Committee, Methodology, MethodologyVersion

from .. import sources
from ..auth import current_user, login_required
from ..db import get_db
from ..i18n import lang
from .common import current_version, paginate, visible_versions

bp = Blueprint("catalogue", __name__)

SORTS = ("title", "id", "updated", "effective")


@dataclass
class Row:
    methodology: Methodology
    version: MethodologyVersion
    info: sources.SourceInfo
    domain: str
    newer: Optional[MethodologyVersion]  # a newer version in the workflow (visible to the user)
    versions: int

    @property
    def title(self) -> str:
        return self.info.title_in(lang(), self.methodology.title)


def rows_for(session, user) -> list[Row]:
    methodologies = session.scalars(select(Methodology).options(
        selectinload(Methodology.versions), selectinload(Methodology.committee))).all()
    rows = []
    for m in methodologies:
        versions = visible_versions(user, m)
        current = workflow.currency(session, m.id).current  # in force today, as the API says
        shown = next((v for v in versions if current is not None and v.id == current.id), None) \
            or current_version(versions)
        if shown is None:
            continue
        newer = [v for v in versions if v.semver > shown.semver]
        rows.append(Row(m, shown, sources.info(shown.source), m.committee.domain,
                        newer[-1] if newer else None, len(versions)))
    return rows


def _matches(row: Row, words: list[str]) -> bool:
    text = row.info.search_text() + " " + row.methodology.id.lower() + " " + \
        row.methodology.title.lower()
    return all(w in text for w in words)


@bp.get("/methodologies")
@login_required
def index():
    q = (request.args.get("q") or "").strip()
    state = request.args.get("state") or ""
    domain = request.args.get("domain") or ""
    activity = request.args.get("activity") or ""
    sort = request.args.get("sort") if request.args.get("sort") in SORTS else "title"
    with get_db().read() as s:
        rows = rows_for(s, current_user)
        domains = sorted(s.scalars(select(Committee.domain)).all())
        activities = sorted({c for r in rows for c in r.info.covers})
        states_present = {r.version.state for r in rows}
        selected = rows
        if q:
            selected = [r for r in selected if _matches(r, q.lower().split())]
        if state:
            selected = [r for r in selected if r.version.state == state]
        if domain:
            selected = [r for r in selected if r.domain == domain]
        if activity:
            selected = [r for r in selected if activity in r.info.covers]
        keys = {
            "title": lambda r: (r.title.lower(), r.methodology.id),
            "id": lambda r: r.methodology.id,
            "updated": lambda r: r.version.updated_at,
            "effective": lambda r: (r.version.effective_from or r.info.effective_from
                                    or r.version.created_at.date()),
        }
        selected = sorted(selected, key=keys[sort], reverse=sort in ("updated", "effective"))
        page = paginate(selected, current_app.config["CATALOGUE_PAGE_SIZE"])
        return render_template(
            "catalogue/index.html", page=page, total=len(rows), q=q, state=state,
            domain=domain, activity=activity, sort=sort, domains=domains,
            activities=activities, states=[st for st in STATES if st in states_present or st == state],
            filtered=bool(q or state or domain or activity))
