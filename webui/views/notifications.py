"""Notifications: what waits for the signed-in user (registry.notifications), with the
unread count in the top bar; and their e-mail, sent after the response of any POST that
may have made some, when an SMTP server is configured (TANPU_SMTP_HOST; off by default).

    GET  /notifications              the newest first, in the reader's language
    GET  /notifications/<id>         marks it read and opens the review it is about
    POST /notifications/read         marks them all read
"""

from __future__ import annotations

import logging

from flask import Blueprint, g, redirect, render_template, request, url_for

from registry import notifications

from ..auth import current_user, login_required
from ..db import get_db
from ..i18n import lang

log = logging.getLogger(__name__)

bp = Blueprint("notifications", __name__, url_prefix="/notifications")


@bp.get("/")
@login_required
def index():
    with get_db().read() as s:
        rows = notifications.listing(s, current_user.id)
        items = [{"id": n.id, "text": notifications.text(n, lang()), "at": n.created_at,
                  "read": n.read_at is not None, "version_id": n.version_id, "kind": n.kind}
                 for n in rows]
    return render_template("notifications/index.html", items=items)


@bp.get("/<int:notification_id>")
@login_required
def open_one(notification_id: int):
    with get_db().unit_of_work() as s:
        notifications.mark_read(s, current_user.id, [notification_id])
        row = s.get(notifications.Notification, notification_id)
        target = (url_for("review.show", version_id=row.version_id)
                  if row is not None and row.user_id == current_user.id and row.version_id
                  else url_for("notifications.index"))
    return redirect(target, code=303)


@bp.post("/read")
@login_required
def read_all():
    with get_db().unit_of_work() as s:
        notifications.mark_read(s, current_user.id)
    return redirect(url_for("notifications.index"), code=303)


def unread_count() -> int:
    """For the top bar: the signed-in user's unread notifications (once per request)."""
    if not current_user:
        return 0
    if "tanpu_unread" not in g:
        with get_db().read() as s:
            g.tanpu_unread = notifications.unread_count(s, current_user.id)
    return g.tanpu_unread


def send_email(app, base_url: str) -> None:
    """E-mails the notifications not sent yet (nothing when SMTP is not configured)."""
    smtp = app.config.get("SMTP")
    if smtp is None:
        return
    try:
        with app.app_context():
            notifications.deliver(get_db(), smtp, base_url=base_url)
    except Exception:  # noqa: BLE001 - e-mail never breaks a page; they stay unsent
        log.exception("notification e-mail failed")


def init_app(app) -> None:
    @app.context_processor
    def _unread():
        return {"unread_notifications": unread_count}

    @app.after_request
    def _mail(response):
        # after a change (a POST that went through), once the response has been sent
        if (request.method == "POST" and response.status_code < 400
                and app.config.get("SMTP") is not None):
            base_url = request.host_url
            response.call_on_close(lambda: send_email(app, base_url))
        return response
