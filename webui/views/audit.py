"""The audit log: filters (actor, action, object, date range), pages, CSV export, and a
check of the hash chain. For administrators."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass
from typing import Optional

from flask import (Blueprint, Response, current_app, flash, jsonify, redirect, render_template,
                   request, stream_with_context, url_for)
from flask_babel import gettext as _
from sqlalchemy import false, func, or_, select

from registry import audit
from registry.models import ADMINISTRATOR, AuditEntry, User

from ..auth import roles_required
from ..db import get_db
from ..i18n import format_datetime, iso_utc, local_day_start, parse_local_date
from .common import Page, page_number

bp = Blueprint("audit", __name__)

SYSTEM = "system"


@dataclass
class Filters:
    actor: str = ""
    action: str = ""
    object_type: str = ""
    object_id: str = ""
    date_from: Optional[dt.date] = None
    date_to: Optional[dt.date] = None
    problems: tuple[str, ...] = ()

    @classmethod
    def from_request(cls) -> "Filters":
        args = request.args
        problems = []
        dates = {}
        for key in ("from", "to"):
            text = (args.get(key) or "").strip()
            dates[key] = parse_local_date(text) if text else None
            if text and dates[key] is None:
                problems.append(_("%(text)s is not a date (YYYY-MM-DD).", text=text))
        def text(key: str) -> str:  # a NUL is in no stored text (PostgreSQL refuses it)
            return (args.get(key) or "").replace("\x00", "").strip()

        return cls(actor=text("actor"), action=text("action"), object_type=text("object_type"),
                   object_id=text("object_id"),
                   date_from=dates["from"], date_to=dates["to"], problems=tuple(problems))

    @property
    def active(self) -> bool:
        return bool(self.actor or self.action or self.object_type or self.object_id
                    or self.date_from or self.date_to)

    def query_args(self) -> dict:
        return {k: v for k, v in {
            "actor": self.actor, "action": self.action, "object_type": self.object_type,
            "object_id": self.object_id,
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else ""}.items() if v}

    def where(self, query):
        if self.actor:
            if self.actor.lower() == SYSTEM:
                query = query.where(AuditEntry.actor_id.is_(None))
            elif self.actor.isdigit():  # a user id: beyond the column's integers, nobody
                number = int(self.actor)
                query = query.where(AuditEntry.actor_id == number if number < 2 ** 31 else false())
            else:
                pattern = f"%{self.actor.lower()}%"
                ids = select(User.id).where(or_(func.lower(User.email).like(pattern),
                                                func.lower(User.name).like(pattern)))
                query = query.where(AuditEntry.actor_id.in_(ids))
        if self.action:
            if self.action.endswith("."):  # a family: version.
                query = query.where(AuditEntry.action.like(self.action + "%"))
            else:
                query = query.where(AuditEntry.action == self.action)
        if self.object_type:
            query = query.where(AuditEntry.object_type == self.object_type)
        if self.object_id:
            query = query.where(AuditEntry.object_id == self.object_id)
        if self.date_from:
            query = query.where(AuditEntry.at >= local_day_start(self.date_from))
        if self.date_to and self.date_to < dt.date.max:
            query = query.where(AuditEntry.at < local_day_start(self.date_to + dt.timedelta(days=1)))
        return query


def _actors(session, entries) -> dict[int, User]:
    ids = {e.actor_id for e in entries if e.actor_id is not None}
    if not ids:
        return {}
    return {u.id: u for u in session.scalars(select(User).where(User.id.in_(ids)))}


@bp.get("/audit")
@roles_required(ADMINISTRATOR)
def index():
    filters = Filters.from_request()
    size = current_app.config["AUDIT_PAGE_SIZE"]
    with get_db().read() as s:
        total_all = s.scalar(select(func.count()).select_from(AuditEntry))
        total = s.scalar(filters.where(select(func.count()).select_from(AuditEntry)))
        pages = max(1, -(-total // size))
        number = min(page_number(), pages)
        entries = s.scalars(filters.where(select(AuditEntry)).order_by(AuditEntry.seq.desc())
                            .offset((number - 1) * size).limit(size)).all()
        actions = s.scalars(select(AuditEntry.action).distinct().order_by(AuditEntry.action)).all()
        object_types = s.scalars(select(AuditEntry.object_type).distinct()
                                 .order_by(AuditEntry.object_type)).all()
        head = audit.head(s)
        return render_template(
            "audit/index.html", page=Page(list(entries), number, size, total), filters=filters,
            actors=_actors(s, entries), actions=actions, object_types=object_types,
            total_all=total_all, head=head, csv_url=url_for("audit.export", **filters.query_args()))


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value) -> str:
    """Text as a spreadsheet will not run it as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


CSV_COLUMNS = ("seq", "at_utc", "at_local", "actor_id", "actor_email", "actor_name", "action",
               "object_type", "object_id", "details", "prev_hash", "hash")


@bp.get("/audit.csv")
@roles_required(ADMINISTRATOR)
def export():
    filters = Filters.from_request()
    db = get_db()
    zone = current_app.config["DISPLAY_TIMEZONE"]

    def rows():
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        buffer.write("\ufeff")  # spreadsheets read the Chinese text as UTF-8
        writer.writerow(CSV_COLUMNS)
        yield buffer.getvalue()
        after = None
        with db.read() as s:
            users = {u.id: u for u in s.scalars(select(User))}
            while True:
                query = filters.where(select(AuditEntry)).order_by(AuditEntry.seq).limit(1000)
                if after is not None:
                    query = query.where(AuditEntry.seq > after)
                batch = s.scalars(query).all()
                if not batch:
                    return
                buffer.seek(0)
                buffer.truncate()
                for e in batch:
                    user = users.get(e.actor_id)
                    writer.writerow([
                        e.seq, iso_utc(e.at), format_datetime(e.at, seconds=True), e.actor_id or "",
                        _cell(user.email if user else SYSTEM if e.actor_id is None else ""),
                        _cell(user.name if user else ""), _cell(e.action), _cell(e.object_type),
                        _cell(e.object_id),
                        _cell(json.dumps(e.details, ensure_ascii=False, sort_keys=True)),
                        e.prev_hash, e.hash])
                yield buffer.getvalue()
                after = batch[-1].seq

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Response(stream_with_context(rows()), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="tanpu-audit-{stamp}.csv"',
        "X-Display-Timezone": zone})


@bp.post("/audit/verify")
@roles_required(ADMINISTRATOR)
def verify():
    with get_db().read() as s:
        result = audit.verify(s)
    if result.ok:
        flash(_("The audit chain is intact: %(n)d entries checked, %(rows)d ledger rows covered.",
                n=result.checked, rows=result.ledger_rows), "success")
    elif result.ledger_problems:
        flash(_("The ledger is not what the audit chain recorded (%(n)d problems), first: "
                "%(problem)s", n=len(result.ledger_problems),
                problem=result.ledger_problems[0]), "error")
    else:
        seq = result.first_broken.seq if result.first_broken is not None else "?"
        flash(_("The audit chain is broken at entry %(seq)s: %(problem)s", seq=seq,
                problem=result.problem), "error")
    return redirect(url_for("audit.index"), code=303)


@bp.get("/audit/head")
def head():
    """The chain's newest entry, for anyone without signing in: copies of it kept outside
    the database (a notary, a newspaper, another organisation's log) let `tanpu audit
    verify --head HASH` prove later that the chain was not rewritten since. JSON, not
    cached."""
    with get_db().read() as s:
        response = jsonify(audit.head_entry(s))
    response.headers["Cache-Control"] = "no-store"
    return response
