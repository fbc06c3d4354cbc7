"""The dashboard: versions by state, what waits for the signed-in user (reviews to vote
on, reviews to open, versions to publish, their own drafts), and recent activity."""

from __future__ import annotations

from collections import Counter

from flask import Blueprint, render_template
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from registry import users
from registry.models import (ADMINISTRATOR, APPROVED, CHANGES_REQUESTED, DRAFT, IN_REVIEW,
                             RESUBMITTED, STATES, SUBMITTED, AuditEntry, Methodology,
                             MethodologyVersion, User, Vote)

from .. import sources
from ..auth import current_user, login_required
from ..db import get_db
from ..i18n import lang

bp = Blueprint("dashboard", __name__)

RECENT = 12


def _title(version: MethodologyVersion) -> str:
    return sources.info(version.source).title_in(lang(), version.methodology.title)


@bp.get("/")
@login_required
def index():
    user = current_user
    with get_db().read() as s:
        versions = s.scalars(select(MethodologyVersion).options(
            selectinload(MethodologyVersion.methodology).selectinload(Methodology.committee)
        )).all()
        visible = [v for v in versions if users.can_view_version(user, v)]
        counts = Counter(v.state for v in visible)
        methodologies = len({v.methodology_id for v in visible})

        voted = {(vote.version_id, vote.review_round) for vote in s.scalars(
            select(Vote).where(Vote.voter_id == user.id))}
        to_vote = [v for v in visible if v.state == IN_REVIEW and users.can_vote(user, v)
                   and (v.id, v.review_round) not in voted]
        voted_open = [v for v in visible if v.state == IN_REVIEW and users.can_vote(user, v)
                      and (v.id, v.review_round) in voted]
        to_open = [v for v in visible if v.state in (SUBMITTED, RESUBMITTED)
                   and users.can_open_review(user, v)]
        to_publish = [v for v in visible if v.state == APPROVED and users.can_decide(user, v)]
        mine = [v for v in visible if v.author_id == user.id
                and v.state in (DRAFT, CHANGES_REQUESTED, SUBMITTED, RESUBMITTED, IN_REVIEW,
                                APPROVED)]

        # recent activity: administrators see everything, others what concerns the
        # versions they can see (their lifecycle) and their own actions
        if user.has_role(ADMINISTRATOR):
            recent = s.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())
                               .limit(RECENT)).all()
        else:
            by_id = {str(v.id): v for v in visible}
            candidates = s.scalars(select(AuditEntry).where(
                ((AuditEntry.object_type == "methodology_version")
                 & AuditEntry.action.like("version.%")) | (AuditEntry.actor_id == user.id))
                .order_by(AuditEntry.seq.desc()).limit(400)).all()
            recent = [e for e in candidates if e.actor_id == user.id
                      or e.object_id in by_id][:RECENT]
        version_of = {str(v.id): v for v in versions}
        actor_ids = {e.actor_id for e in recent if e.actor_id}
        actors = {u.id: u for u in s.scalars(select(User).where(User.id.in_(actor_ids)))} \
            if actor_ids else {}
        titles = {v.id: _title(v) for v in
                  {*to_vote, *voted_open, *to_open, *to_publish, *mine,
                   *(version_of[e.object_id] for e in recent
                     if e.object_type == "methodology_version" and e.object_id in version_of)}}
        return render_template(
            "dashboard/index.html", counts=counts, states=STATES, methodologies=methodologies,
            to_vote=to_vote, voted_open=voted_open, to_open=to_open, to_publish=to_publish,
            mine=mine, recent=recent, actors=actors, version_of=version_of, titles=titles,
            is_member=user.has_role("committee_member"), is_admin=user.has_role(ADMINISTRATOR),
            is_expert=user.has_role("expert"))
