"""The review pages.

    GET  /review/                               the versions you may review (or wrote)
    GET  /review/<version_id>                   the review page: side-by-side diff against the
                                                previous published version (?line=N prepares
                                                a comment on line N; ?full=1 every line),
                                                comments, votes and quorum, compile and example
                                                status, impact preview on the sample records
    POST /review/<version_id>/impact            the impact preview on uploaded records
    GET  /review/<version_id>/impact.json       the impact preview on the sample, as JSON
    GET  /review/<version_id>/diff.json         the diff and the changes in meaning, as JSON
    POST /review/<version_id>/comment           a comment (optionally on lines, with a suggested
                                                change, or a reply: reply_to); mode=draft adds
                                                it to your pending review instead
    POST /review/<version_id>/review            submit your pending review with a verdict
                                                (comment, approve, request_changes, reject)
    POST /review/<version_id>/drafts/<id>/delete           drop a pending comment
    POST /review/<version_id>/threads/<id>/resolve|reopen  resolve or reopen a thread
    POST /review/<version_id>/suggestions/<id>/apply       the author applies a suggestion
    POST /review/<version_id>/comments/<id>/edit|delete    its author edits or deletes a comment
    POST /review/<version_id>/vote              approve / request_changes / reject, with a comment
    POST /review/<version_id>/conflict          declare a conflict of interest (an abstention)
    POST /review/<version_id>/open              open a review round
    POST /review/<version_id>/request-changes   send it back to the author
    POST /review/<version_id>/approve           approve (an administrator, quorum met)
    POST /review/<version_id>/reject            reject
    POST /review/<version_id>/publish           publish (effective date, grace period)
    POST /review/<version_id>/withdraw          back to draft

Who may do what is decided on the server by registry.users / registry.workflow, for every
request: integrators see no review page (403), the author cannot vote or decide on their
own work, experts cannot vote, a published version cannot be changed.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Optional

from flask import (Blueprint, abort, flash, jsonify, redirect, render_template, request,
                   url_for)
from flask_babel import gettext as _
from sqlalchemy import select

from registry import discussion, ledger, users, workflow
import functools

from registry.errors import Conflict, Invalid, InvalidTransition, QuorumNotMet
from registry.models import (ADMINISTRATOR, COMMITTEE_MEMBER, EXPERT, FROZEN_STATES,
                             CommitteeMember, Methodology, MethodologyVersion, User)

from .. import evaluation
from ..auth import current_user, login_required, require
from ..db import get_db
from ..i18n import for_reader
from ..records import RecordsError, from_bytes, from_text
from . import diff as diffs
from . import impact as impacts

bp = Blueprint("review", __name__, url_prefix="/review")

IN_PROGRESS = ("submitted", "in_review", "changes_requested", "resubmitted", "approved")
DECISIONS = ("approve", "request_changes", "reject")


# ---------------------------------------------------------------- loading
def _may_see_reviews(user: Optional[User]) -> users.Decision:
    """Review pages are for authors, committee members and administrators; an integrator
    (a machine client) sees none."""
    if user is None or not user.active:
        return users.deny("not signed in")
    if user.roles & {EXPERT, COMMITTEE_MEMBER, ADMINISTRATOR}:
        return users.ALLOW
    return users.deny("review pages are for authors, committee members and administrators")


def previous_published(session, version: MethodologyVersion) -> Optional[MethodologyVersion]:
    """The latest published (or later) version before this one."""
    candidates = [v for v in session.scalars(select(MethodologyVersion).where(
        MethodologyVersion.methodology_id == version.methodology_id,
        MethodologyVersion.state.in_(FROZEN_STATES),
        MethodologyVersion.id != version.id)) if v.semver < version.semver]
    return max(candidates, key=lambda v: v.semver) if candidates else None


def _load(session, version_id: int) -> workflow.Review:
    require(_may_see_reviews(current_user))
    return workflow.review(session, current_user.id, version_id)


def _impact_of(session, version: MethodologyVersion, previous: Optional[MethodologyVersion],
               records=None) -> impacts.Impact:
    """The impact preview on `records` (an upload), else on records the methodology applies
    to: the ledger's of the last 30 days, its sample, or records generated from its inputs
    (impact.preview_records says which)."""
    compiled = evaluation.compiled(version.source)
    kind = "upload"
    if records is None:
        empty = impacts.SideTotals(None, None)
        if not compiled.ok:
            return impacts.Impact("", 0, empty, empty,
                                  error="the version does not compile: no impact preview")
        records, kind = impacts.preview_records(
            compiled.methodology, version.source,
            ledger.recent_records(session, version.methodology_id))
        if records is None:
            return impacts.Impact("", 0, empty, empty,
                                  error="no records for this methodology: upload some")
    return impacts.impact(previous.source if previous is not None else None, version.source,
                          records, kind=kind)


def _actions(session, version: MethodologyVersion, review: workflow.Review) -> dict:
    """What the current user may do now: {action: Decision}."""
    out = {name: workflow.may(session, current_user, version, name)
           for name in ("open_review", "request_changes", "approve", "reject", "publish",
                        "withdraw")}
    vote = users.can_vote(current_user, version)
    if vote and version.state != "in_review":
        vote = users.deny(f"votes are cast during a review; this version is {version.state}")
    if vote and any(v.voter_id == current_user.id and v.review_round == version.review_round
                    for v in review.votes):
        vote = users.deny("you have voted in this review round")
    out["vote"] = vote
    out["comment"] = users.can_comment(current_user, version)
    out["edit"] = users.can_edit(current_user, version)
    if out["edit"] and version.frozen:
        out["edit"] = users.deny("a published version is immutable")
    return out


def _resets(review: workflow.Review) -> list[dict]:
    """When the content changed under review (a new round; the votes before it no longer count)."""
    out = []
    for entry in review.history:
        details = entry.details or {}
        if entry.action == "version.revise" and details.get("review_reset"):
            out.append({"at": entry.at, "round": details.get("review_round"),
                        "old_hash": details.get("old_content_hash"),
                        "new_hash": details.get("content_hash")})
    return out


def _page(version_id: int, *, records=None, status: int = 200, records_error: str = "",
          refused: tuple[str, str] = ("", ""), typed: Optional[dict] = None):
    with get_db().read() as s:
        review = _load(s, version_id)
        version = review.version
        previous = previous_published(s, version)
        line_threads: dict[int, list] = defaultdict(list)  # on the current content, by line
        other_threads = []  # general, or on lines of an earlier content
        threads = discussion.threads(s, version)
        for thread in threads:
            if thread.line is not None and thread.current:
                line_threads[thread.line].append(thread)
            else:
                other_threads.append(thread)
        resolvable = {t.id for t in threads
                      if discussion.may_resolve(current_user, version, t.root)}
        drafts = discussion.drafts(s, current_user.id, version.id)
        full = request.args.get("full") == "1"
        rows = diffs.side_by_side(previous.source if previous else None, version.source,
                                  context=-1 if full else 4,
                                  keep_lines=frozenset(line_threads))
        stats = diffs.stats(diffs.full_rows(previous.source if previous else None, version.source))
        new_compiled = evaluation.compiled(version.source)
        old_compiled = evaluation.compiled(previous.source) if previous else None
        changes = diffs.semantic_changes(
            old_compiled.methodology if old_compiled is not None and old_compiled.ok else None,
            new_compiled.methodology if new_compiled.ok else None)
        problems = []
        if not version.frozen:
            problems = workflow.check_source(version.source, version.methodology_id,
                                             version.version).problems
        votes_by_round: dict[int, list] = defaultdict(list)
        for v in review.votes:
            votes_by_round[v.review_round].append(v)
        try:
            line = int(request.args.get("line", "") or 0) or None
        except ValueError:
            line = None
        return render_template(
            "review/show.html", review=review, version=version, previous=previous,
            methodology=version.methodology, rows=rows, stats=stats, changes=changes,
            line_threads=line_threads, other_threads=other_threads, resolvable=resolvable,
            drafts=drafts, verdicts=discussion.VERDICTS, source_lines=version.source.split("\n"),
            quorum=review.quorum, discounted={v.id for v, _ in review.quorum.discounted},
            votes_by_round=dict(sorted(votes_by_round.items(), reverse=True)),
            resets=_resets(review), problems=problems,
            diagnostics=for_reader(version.diagnostics or []), examples=version.example_results or [],
            impact=_impact_of(s, version, previous, records), records_error=records_error,
            actions=_actions(s, version, review), comment_line=line, full=full,
            effective=workflow.effective_date(s, version), caret=evaluation.caret_block,
            decisions=DECISIONS, default_grace=workflow.DEFAULT_GRACE_DAYS,
            refused=refused, typed=typed or {}), status


# ---------------------------------------------------------------- pages
@bp.get("/")
@login_required
def index():
    require(_may_see_reviews(current_user))
    show_all = request.args.get("all") == "1"
    with get_db().read() as s:
        query = select(MethodologyVersion).order_by(MethodologyVersion.updated_at.desc())
        if not show_all:
            query = query.where(MethodologyVersion.state.in_(IN_PROGRESS))
        else:
            query = query.where(MethodologyVersion.state != "draft")
        if ADMINISTRATOR not in current_user.roles:
            committees = select(CommitteeMember.committee_id).where(
                CommitteeMember.user_id == current_user.id)
            in_mine = select(Methodology.id).where(Methodology.committee_id.in_(committees))
            query = query.where((MethodologyVersion.author_id == current_user.id)
                                | MethodologyVersion.methodology_id.in_(in_mine))
        versions = list(s.scalars(query.limit(200)))
        for v in versions:
            _ = (v.methodology.title, v.author.name)
        return render_template("review/index.html", versions=versions, show_all=show_all)


@bp.get("/<int:version_id>")
@login_required
def show(version_id: int):
    return _page(version_id)


@bp.post("/<int:version_id>/impact")
@login_required
def impact_upload(version_id: int):
    upload = request.files.get("file")
    try:
        if upload is not None and upload.filename:
            records = from_bytes(upload.read(), upload.filename)
        else:
            records = from_text(request.form.get("records", ""), "pasted")
    except RecordsError as error:
        return _page(version_id, status=422, records_error=str(error))
    return _page(version_id, records=records)


@bp.get("/<int:version_id>/impact.json")
@login_required
def impact_json(version_id: int):
    with get_db().read() as s:
        review = _load(s, version_id)
        previous = previous_published(s, review.version)
        result = _impact_of(s, review.version, previous)
        return jsonify(result.to_dict())


@bp.get("/<int:version_id>/diff.json")
@login_required
def diff_json(version_id: int):
    with get_db().read() as s:
        review = _load(s, version_id)
        version = review.version
        previous = previous_published(s, version)
        rows = diffs.full_rows(previous.source if previous else None, version.source)
        new_compiled = evaluation.compiled(version.source)
        old_compiled = evaluation.compiled(previous.source) if previous else None
        changes = diffs.semantic_changes(
            old_compiled.methodology if old_compiled is not None and old_compiled.ok else None,
            new_compiled.methodology if new_compiled.ok else None)
        return jsonify({
            "version": version.version,
            "previous": previous.version if previous else None,
            "stats": diffs.stats(rows).to_dict(),
            "rows": [r.to_dict() for r in rows],
            "changes": [c.to_dict() for c in changes]})


# ---------------------------------------------------------------- actions
def _refused_on_the_page(form_id: str):
    """A refusal the user can mend (a comment missing, the state changed meanwhile) is
    shown at the form, on the review page, with what was typed kept: no dead end."""
    def wrap(view):
        @functools.wraps(view)
        def inner(version_id: int, **ids):
            try:
                return view(version_id, **ids)
            except (Invalid, InvalidTransition, Conflict, QuorumNotMet) as error:
                from ..errors import registry_status
                from ..i18n import server
                return _page(version_id, status=registry_status(error),
                             refused=(form_id, server(error)), typed=request.form.to_dict())
        return inner
    return wrap


def _back(version_id: int, anchor: str = ""):
    return redirect(url_for("review.show", version_id=version_id) + (f"#{anchor}" if anchor else ""),
                    code=303)


def _text(name: str) -> str:
    return (request.form.get(name) or "").strip()


def _number(name: str) -> Optional[int]:
    text = _text(name)
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise Invalid(_("Line %(text)s is not a number.", text=text)) from None


@bp.post("/<int:version_id>/comment")
@login_required
@_refused_on_the_page("comment-form")
def comment(version_id: int):
    """A comment now, or (mode=draft) a comment of your pending review; on lines
    (line, last_line), with a suggested change (suggestion), or a reply (reply_to)."""
    require(_may_see_reviews(current_user))
    line, last_line, reply_to = _number("line"), _number("last_line"), _number("reply_to")
    suggestion = request.form.get("suggestion")
    if suggestion is not None and not suggestion.strip() and not request.form.get("delete_lines"):
        suggestion = None  # an empty box is no suggestion; deleting lines is asked for
    draft = request.form.get("mode") == "draft"
    with get_db().unit_of_work() as s:
        if draft:
            discussion.add_draft(s, current_user.id, version_id, _text("body"), line=line,
                                 last_line=last_line, suggestion=suggestion, reply_to=reply_to)
        else:
            discussion.comment(s, current_user.id, version_id, _text("body"), line=line,
                               last_line=last_line, suggestion=suggestion, reply_to=reply_to)
    flash(_("Added to your pending review: it is sent when you submit the review.") if draft
          else _("Comment added."), "success")
    if draft:
        return _back(version_id, "pending-review")
    if reply_to:
        return _back(version_id, f"thread-{discussion_thread(reply_to)}")
    return _back(version_id, f"L{line}" if line else "comments")


def discussion_thread(comment_id: int) -> int:
    with get_db().read() as s:
        return discussion.thread_of(s, comment_id).id


@bp.post("/<int:version_id>/review")
@login_required
@_refused_on_the_page("pending-review-form")
def submit_review(version_id: int):
    """Your pending review, sent with its verdict: every pending comment and the vote (or
    a comment) together."""
    require(_may_see_reviews(current_user))
    with get_db().unit_of_work() as s:
        done = discussion.submit_review(s, current_user.id, version_id, _text("verdict"),
                                        _text("body"))
        count = len(done.comments)
    flash(_("Your review is submitted (%(n)d comment(s)).", n=count), "success")
    return _back(version_id, "votes" if _text("verdict") != "comment" else "comments")


@bp.post("/<int:version_id>/drafts/<int:draft_id>/delete")
@login_required
@_refused_on_the_page("pending-review-form")
def delete_draft(version_id: int, draft_id: int):
    with get_db().unit_of_work() as s:
        discussion.delete_draft(s, current_user.id, draft_id)
    flash(_("The pending comment is deleted."), "info")
    return _back(version_id, "pending-review")


def _edit(version_id: int, comment_id: int, delete: bool):
    with get_db().unit_of_work() as s:
        if discussion.thread_of(s, comment_id).version_id != version_id:
            abort(404)
        discussion.edit(s, current_user.id, comment_id, _text("body"), delete=delete)
        anchor = f"thread-{discussion.thread_of(s, comment_id).id}"
    flash(_("The comment is deleted.") if delete else _("The comment is changed."), "info")
    return _back(version_id, anchor)


@bp.post("/<int:version_id>/comments/<int:comment_id>/edit")
@login_required
@_refused_on_the_page("comment-form")
def edit_comment(version_id: int, comment_id: int):
    """The author of a comment changes its text (every version is kept)."""
    return _edit(version_id, comment_id, False)


@bp.post("/<int:version_id>/comments/<int:comment_id>/delete")
@login_required
@_refused_on_the_page("comment-form")
def delete_comment(version_id: int, comment_id: int):
    return _edit(version_id, comment_id, True)


def _resolution(version_id: int, thread_id: int, resolved: bool):
    with get_db().unit_of_work() as s:
        root = discussion.thread_of(s, thread_id)
        if root.version_id != version_id:
            abort(404)
        discussion.resolve(s, current_user.id, thread_id, resolved)
    flash(_("The thread is resolved.") if resolved else _("The thread is open again."), "info")
    return _back(version_id, f"thread-{thread_id}")


@bp.post("/<int:version_id>/threads/<int:thread_id>/resolve")
@login_required
@_refused_on_the_page("comment-form")
def resolve_thread(version_id: int, thread_id: int):
    return _resolution(version_id, thread_id, True)


@bp.post("/<int:version_id>/threads/<int:thread_id>/reopen")
@login_required
@_refused_on_the_page("comment-form")
def reopen_thread(version_id: int, thread_id: int):
    return _resolution(version_id, thread_id, False)


@bp.post("/<int:version_id>/suggestions/<int:comment_id>/apply")
@login_required
@_refused_on_the_page("comment-form")
def apply_suggestion(version_id: int, comment_id: int):
    """One click: the suggestion replaces its lines in a new revision of the source."""
    with get_db().unit_of_work() as s:
        root = discussion.thread_of(s, comment_id)
        if root.version_id != version_id:
            abort(404)
        version = discussion.apply_suggestion(s, current_user.id, comment_id)
        new_round = version.review_round
    flash(_("The suggestion is applied: a new revision of the source (review round %(n)d).",
            n=new_round), "success")
    return _back(version_id, f"thread-{comment_id}")


@bp.post("/<int:version_id>/vote")
@login_required
@_refused_on_the_page("vote-form")
def vote(version_id: int):
    require(_may_see_reviews(current_user))
    decision = _text("decision")
    if decision not in DECISIONS:
        abort(400, description=_("Choose approve, request changes or reject."))
    with get_db().unit_of_work() as s:
        workflow.vote(s, current_user.id, version_id, decision, _text("comment"))
    flash(_("Your vote is recorded."), "success")
    return _back(version_id, "votes")


@bp.post("/<int:version_id>/conflict")
@login_required
@_refused_on_the_page("conflict-form")
def conflict(version_id: int):
    require(_may_see_reviews(current_user))
    with get_db().unit_of_work() as s:
        workflow.declare_conflict(s, current_user.id, version_id, _text("comment"))
    flash(_("Your conflict of interest is recorded: you abstain in this round."), "info")
    return _back(version_id, "votes")


@bp.post("/<int:version_id>/open")
@login_required
@_refused_on_the_page("open-form")
def open_review(version_id: int):
    with get_db().unit_of_work() as s:
        workflow.open_review(s, current_user.id, version_id)
    flash(_("The review is open."), "success")
    return _back(version_id)


@bp.post("/<int:version_id>/request-changes")
@login_required
@_refused_on_the_page("request-changes-form")
def request_changes(version_id: int):
    with get_db().unit_of_work() as s:
        workflow.request_changes(s, current_user.id, version_id, _text("comment"))
    flash(_("Sent back to the author."), "info")
    return _back(version_id)


@bp.post("/<int:version_id>/approve")
@login_required
@_refused_on_the_page("approve-form")
def approve(version_id: int):
    with get_db().unit_of_work() as s:
        workflow.approve(s, current_user.id, version_id)
    flash(_("Approved."), "success")
    return _back(version_id)


@bp.post("/<int:version_id>/reject")
@login_required
@_refused_on_the_page("reject-form")
def reject(version_id: int):
    with get_db().unit_of_work() as s:
        workflow.reject(s, current_user.id, version_id, _text("reason"))
    flash(_("Rejected."), "info")
    return _back(version_id)


@bp.post("/<int:version_id>/publish")
@login_required
@_refused_on_the_page("publish-form")
def publish(version_id: int):
    effective = _text("effective_from")
    try:
        effective_from = dt.date.fromisoformat(effective) if effective else None
    except ValueError:
        raise Invalid(_("Not a date (YYYY-MM-DD): %(text)s", text=effective)) from None
    grace = _text("grace_days")
    try:
        grace_days = int(grace) if grace else workflow.DEFAULT_GRACE_DAYS
    except ValueError:
        raise Invalid(_("The grace period %(text)s is not a number of days.", text=grace)) from None
    with get_db().unit_of_work() as s:
        written = workflow.effective_date(s, workflow.get_version(s, version_id)).written
        publication = workflow.publish(s, current_user.id, version_id,
                                       effective_from=effective_from, grace_days=grace_days)
        taken = publication.effective_from
    flash(_("Published."), "success")
    if written and taken != written:
        flash(_("In force from %(date)s, not from the date the methodology says (%(written)s).",
                date=taken.isoformat(), written=written.isoformat()), "warning")
    return _back(version_id)


@bp.post("/<int:version_id>/withdraw")
@login_required
@_refused_on_the_page("withdraw-form")
def withdraw(version_id: int):
    with get_db().unit_of_work() as s:
        workflow.withdraw(s, current_user.id, version_id, _text("reason"))
    flash(_("Withdrawn: the version is a draft again."), "info")
    return _back(version_id)
