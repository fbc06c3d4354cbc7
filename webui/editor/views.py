"""The methodology editor.

    GET  /editor/                          your versions; start a new methodology or version
    POST /editor/methodologies             a new methodology (id, title, committee domain)
    GET  /editor/new?methodology=ID        a new version (the latest one's source, next number)
    POST /editor/new                       save it: a draft (workflow.create_version)
    GET  /editor/<version_id>              edit a version of yours that is not published
    POST /editor/<version_id>              save (workflow.revise: under review, a new content
                                           hash starts a new review round)
    POST /editor/<version_id>/submit       submit / resubmit (refused, with why, when it does
                                           not compile or an example fails)
    POST /editor/<version_id>/withdraw     back to draft
    POST /editor/check                     JSON: diagnostics as `tanpu check --format json`,
                                           examples, and whether it could be submitted
    POST /editor/try                       JSON: records (pasted text, JSON or an uploaded
                                           file) evaluated with the source, with explanations

Every action is checked on the server (registry.users.can_*, again in the workflow): only
experts author, only the author changes a version, and a published version is never
changed by any route.
"""

from __future__ import annotations

import re
from typing import Optional

from flask import (Blueprint, abort, current_app, flash, jsonify, redirect, render_template,
                   request, url_for)
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from registry import users, workflow
from registry.errors import InvalidTransition, RegistryError, SubmissionRejected
from registry.models import (DRAFT, FROZEN_STATES, Committee, Methodology, MethodologyVersion)

from .. import evaluation
from ..auth import current_user, login_required, require
from ..db import get_db
from ..i18n import for_reader, lang
from ..records import RecordsError, from_bytes, from_objects, from_text

bp = Blueprint("editor", __name__, url_prefix="/editor")

MAX_SOURCE = 512 * 1024
_HEADER_VERSION = re.compile(
    r"^(\s*methodology\s+\S+\s+(?:\"(?:[^\"\\\n]|\\.)*\"\s+)?version\s+)(\d+\.\d+\.\d+)",
    re.MULTILINE)

SKELETON = """# {title}
methodology {id} "{title}" version {version} {{
  title en "{title}"
  issuer "..."
  covers trip
  effective from 2025-01-01
  timezone Asia/Shanghai
}}

input distance: quantity [km] between 0 km and 100 km label "distance"

# where the factor comes from, and when it applies
parameter factor [g/km]
  from 2025-01-01 source "the source of the factor" [SRC] = 50

reduction = factor * distance
points = floor(reduction / 1 g)

example "E1 a 10 km trip" {{ distance: 10 km }} => reduction 500 g, points 500
"""

# ---------------------------------------------------------------- helpers
def _json_body() -> dict:
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else {}


def _source_from_request() -> str:
    if request.is_json:
        source = _json_body().get("source")
    else:
        source = request.form.get("source")
    if not isinstance(source, str):
        abort(400, description=_("No source was sent."))
    if len(source) > MAX_SOURCE:
        abort(413, description=_("The source is larger than %(n)d KB.", n=MAX_SOURCE // 1024))
    return source.replace("\r\n", "\n")


def with_version(source: str, version: str) -> str:
    """The source with its header's version number replaced."""
    return _HEADER_VERSION.sub(lambda m: m.group(1) + version, source, count=1)


def next_version(session, methodology_id: str) -> str:
    last = session.execute(
        select(MethodologyVersion.major, MethodologyVersion.minor, MethodologyVersion.patch)
        .where(MethodologyVersion.methodology_id == methodology_id)
        .order_by(MethodologyVersion.major.desc(), MethodologyVersion.minor.desc(),
                  MethodologyVersion.patch.desc()).limit(1)).first()
    if last is None:
        return "1.0.0"
    return f"{last.major}.{last.minor + 1}.0"


def _latest(session, methodology_id: str) -> Optional[MethodologyVersion]:
    return session.scalar(
        select(MethodologyVersion).where(MethodologyVersion.methodology_id == methodology_id)
        .order_by(MethodologyVersion.major.desc(), MethodologyVersion.minor.desc(),
                  MethodologyVersion.patch.desc()).limit(1))


def _sample_text(source: str, rows: int = 5) -> str:
    """The first rows of the methodology's sample file, to start the try-it panel with."""
    from ..review.impact import sample_for
    try:
        compiled = evaluation.compiled(source)
        path = sample_for(compiled.methodology) if compiled.ok else None
    except Exception:  # noqa: BLE001 - a suggestion only
        path = None
    if path is None:
        return ""
    with open(path, encoding="utf-8-sig") as handle:
        lines = [handle.readline() for _ in range(rows + 1)]
    return "".join(line for line in lines if line)


def _submission(source: str, methodology_id: str, version: str) -> dict:
    """Whether the source could be submitted as this version, and why not."""
    check = workflow.check_source(source, methodology_id, version)
    return {"submittable": check.ok, "problems": list(check.problems),
            "examples": check.example_results}


def _editor_page(*, methodology: Methodology, version: Optional[MethodologyVersion],
                 source: str, version_number: str, status: int = 200,
                 rejection: Optional[SubmissionRejected] = None):
    check = evaluation.check(source, f"{methodology.id}@{version_number}.tanpu")
    check["diagnostics"] = for_reader(check["diagnostics"])
    submission = _submission(source, methodology.id, version_number)
    actions = {}
    if version is not None:
        for action in ("submit", "resubmit", "withdraw"):
            actions[action] = workflow.can(current_user, version, action)
    return render_template(
        "editor/edit.html", methodology=methodology, version=version, source=source,
        version_number=version_number, check=check, submission=submission,
        actions=actions, rejection=rejection, sample=_sample_text(source),
        caret=evaluation.caret_block,
        review_url=url_for("review.show", version_id=version.id)
        if version is not None and "review.show" in _endpoints() else None), status


def _endpoints():
    from flask import current_app
    return current_app.view_functions


def _require_author() -> None:
    require(users.can_author(current_user))


# ---------------------------------------------------------------- pages
@bp.get("/")
@login_required
def index():
    with get_db().read() as s:
        mine = list(s.scalars(
            select(MethodologyVersion).where(MethodologyVersion.author_id == current_user.id)
            .order_by(MethodologyVersion.updated_at.desc())))
        methodologies = list(s.scalars(select(Methodology).order_by(Methodology.id)))
        committees = list(s.scalars(select(Committee).order_by(Committee.domain)))
        for v in mine:
            _ = v.methodology.title
        return render_template(
            "editor/index.html", mine=mine, methodologies=methodologies, committees=committees,
            can_author=users.can_author(current_user),
            can_create=users.can_create_methodology(current_user))


@bp.post("/methodologies")
@login_required
def create_methodology():
    _require_author()
    form = request.form
    with get_db().unit_of_work() as s:
        methodology = workflow.create_methodology(
            s, current_user.id, id=(form.get("id") or "").strip(),
            title=form.get("title") or "", domain=(form.get("domain") or "").strip())
        methodology_id = methodology.id
    flash(_("Methodology %(id)s created: write its first version.", id=methodology_id), "success")
    return redirect(url_for("editor.new", methodology=methodology_id))


@bp.get("/new")
@login_required
def new():
    _require_author()
    methodology_id = request.args.get("methodology", "")
    with get_db().read() as s:
        methodology = s.get(Methodology, methodology_id)
        if methodology is None:
            abort(404, description=_("There is no methodology %(id)s.", id=methodology_id))
        number = next_version(s, methodology_id)
        latest = _latest(s, methodology_id)
        if latest is not None and (latest.frozen or latest.author_id == current_user.id
                                   or users.can_view_review(current_user, latest)):
            source = with_version(latest.source, number)
        elif latest is not None:  # a draft someone else is writing: start from the published one
            published = s.scalar(
                select(MethodologyVersion).where(
                    MethodologyVersion.methodology_id == methodology_id,
                    MethodologyVersion.state.in_(FROZEN_STATES))
                .order_by(MethodologyVersion.major.desc(), MethodologyVersion.minor.desc(),
                          MethodologyVersion.patch.desc()).limit(1))
            source = with_version(published.source, number) if published else \
                SKELETON.format(id=methodology_id, title=methodology.title, version=number)
        else:
            source = SKELETON.format(id=methodology_id, title=methodology.title, version=number)
        return _editor_page(methodology=methodology, version=None, source=source,
                            version_number=number)


@bp.post("/new")
@login_required
def create():
    _require_author()
    methodology_id = request.form.get("methodology", "")
    number = (request.form.get("version") or "").strip()
    source = _source_from_request()
    with get_db().unit_of_work() as s:
        row = workflow.create_version(s, current_user.id, methodology_id, number, source)
        version_id = row.id
    flash(_("Saved as draft %(version)s.", version=number), "success")
    return redirect(url_for("editor.edit", version_id=version_id))


def _load_editable(s, version_id: int) -> MethodologyVersion:
    version = workflow.get_version(s, version_id)
    require(users.can_edit(current_user, version))
    if version.frozen:
        raise InvalidTransition(
            f"{version.methodology_id} {version.version} is {version.state}: a published "
            "version is immutable; start a new version instead")
    return version


@bp.get("/<int:version_id>")
@login_required
def edit(version_id: int):
    with get_db().read() as s:
        version = _load_editable(s, version_id)
        return _editor_page(methodology=version.methodology, version=version,
                            source=version.source, version_number=version.version)


@bp.post("/<int:version_id>")
@login_required
def save(version_id: int):
    source = _source_from_request()
    try:
        with get_db().unit_of_work() as s:
            version = _load_editable(s, version_id)
            old_round = version.review_round
            workflow.revise(s, current_user.id, version_id, source)
            reset = version.review_round != old_round
            number = version.version
    except SubmissionRejected as error:
        with get_db().read() as s:
            version = _load_editable(s, version_id)
            flash(_("Not saved: under review, the new source must still compile and pass its "
                    "examples."), "error")
            return _editor_page(methodology=version.methodology, version=version, source=source,
                                version_number=version.version, status=422, rejection=error)
    if request.is_json:
        return jsonify(saved=True, version_id=version_id, review_reset=reset)
    if reset:
        flash(_("Saved. The content changed under review: a new review round has started and "
                "the earlier votes no longer count."), "warning")
    else:
        flash(_("Saved %(version)s.", version=number), "success")
    return redirect(url_for("editor.edit", version_id=version_id))


@bp.post("/<int:version_id>/submit")
@login_required
def submit(version_id: int):
    try:
        with get_db().unit_of_work() as s:
            version = workflow.get_version(s, version_id)
            action = "resubmit" if version.state == "changes_requested" else "submit"
            if action == "resubmit":
                workflow.resubmit(s, current_user.id, version_id)
            else:
                workflow.submit(s, current_user.id, version_id)
    except SubmissionRejected as error:
        with get_db().read() as s:
            version = workflow.get_version(s, version_id)
            require(users.can_edit(current_user, version))
            flash(_("It cannot be submitted yet: see why below."), "error")
            return _editor_page(methodology=version.methodology, version=version,
                                source=version.source, version_number=version.version,
                                status=422, rejection=error)
    flash(_("Submitted for review."), "success")
    if "review.show" in _endpoints():
        return redirect(url_for("review.show", version_id=version_id))
    return redirect(url_for("editor.edit", version_id=version_id))


@bp.post("/<int:version_id>/withdraw")
@login_required
def withdraw(version_id: int):
    with get_db().unit_of_work() as s:
        workflow.withdraw(s, current_user.id, version_id, request.form.get("reason", ""))
    flash(_("Withdrawn: the version is a draft again."), "info")
    return redirect(url_for("editor.edit", version_id=version_id))


# ---------------------------------------------------------------- JSON for the editor's script
@bp.post("/check")
@login_required
def check():
    _require_author()
    source = _source_from_request()
    data = _json_body() if request.is_json else request.form
    methodology_id = (data.get("methodology") or "").strip()
    number = (data.get("version") or "").strip()
    out = evaluation.check_in_time(source, f"{methodology_id or 'source'}@{number or '?'}.tanpu",
                                   current_app.config["EDITOR_CHECK_SECONDS"])
    out["diagnostics"] = for_reader(out["diagnostics"])
    if methodology_id and number:
        out["submission"] = _submission(source, methodology_id, number)
    return jsonify(out)


@bp.post("/try")
@login_required
def try_records():
    _require_author()
    if request.is_json:
        data = _json_body()
        source = data.get("source")
        records = data.get("records")
        explain = data.get("explain", True) is not False
    else:
        data = request.form
        source = data.get("source")
        records = data.get("records", "")
        explain = data.get("explain", "1") not in ("0", "false", "")
    if not isinstance(source, str):
        return jsonify(error="bad_request", message="no source"), 400
    upload = request.files.get("file")
    try:
        if upload is not None and upload.filename:
            parsed = from_bytes(upload.read(), upload.filename)
        elif isinstance(records, list):
            parsed = from_objects(records, "json")
        elif isinstance(records, str):
            parsed = from_text(records)
        else:
            raise RecordsError("send records as text (CSV, JSON Lines, a JSON array) or a file")
    except RecordsError as error:
        return jsonify(ok=False, error="bad_records", message=str(error)), 422
    out = evaluation.try_it(source.replace("\r\n", "\n"), parsed, explain=explain, lang=lang())
    for result in out.get("results", []):
        note = cap_note(result)
        if note:
            result["cap_note"] = note
            result["explanation_text"] = [note] + list(result.get("explanation_text") or [])
    if not out["ok"]:
        out["diagnostics"] = for_reader(out["diagnostics"])
        out["message"] = _("The source does not compile: fix the errors first.")
    return jsonify(out)


def _amount(value: int, target: str) -> str:
    return _("%(n)d points", n=value) if target == "points" else f"{value / 1000:.3f} g"


def cap_note(result: dict) -> str:
    """What a capped record was credited and which cap cut it, in the reader's language:
    the amount computed (the explanation's output step), the amount credited, the cap, and
    what the account had already been credited in the cap's period."""
    if result.get("status") != "capped":
        return ""
    step = next((s for s in reversed(result.get("explanation") or [])
                 if s.get("kind") == "rule" and s.get("status") == "capped"), None)
    if step is None or "allowed" not in step:
        return ""
    target = "points" if (step.get("message") or "").startswith("points") else "reduction"
    computed = next((s for s in result.get("explanation") or []
                     if s.get("kind") == "output" and s.get("name") == target), None)
    computed_value = None if computed is None else (
        computed["mg"] if computed.get("mg") is not None else computed.get("value"))
    period = str(PERIOD_LABELS.get(step.get("period"), step.get("period")))
    cap = _amount(int(step["limit"]), target)
    credited, before = _amount(int(step["allowed"]), target), _amount(int(step["before"]), target)
    if isinstance(computed_value, int):
        return _("Credited %(credited)s of the %(computed)s computed: the cap of %(cap)s per "
                 "account per %(period)s cut it (%(before)s credited earlier in that %(period)s).",
                 credited=credited, computed=_amount(computed_value, target), cap=cap,
                 period=period, before=before)
    return _("Credited %(credited)s: the cap of %(cap)s per account per %(period)s cut it "
             "(%(before)s credited earlier in that %(period)s).",
             credited=credited, cap=cap, period=period, before=before)


PERIOD_LABELS = {"day": _l("day"), "week": _l("week"), "month": _l("month"), "year": _l("year")}


def init_app(app) -> None:
    pass


__all__ = ["bp", "init_app", "with_version", "next_version", "DRAFT", "RegistryError"]
