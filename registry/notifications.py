"""Notifications: what waits for a user, in the web UI and, when an SMTP server is named in
the settings (TANPU_SMTP_HOST, off by default), by e-mail.

    notify(session, [user ids], "review.requested", version, actor, round=2)
    unread_count(session, user_id); listing(session, user_id); mark_read(session, user_id)
    deliver(db, smtp_settings)   # e-mails each notification not e-mailed yet, once

Rows are written in the transaction of the change they tell about, so a notification
exists exactly when its change was committed. E-mail is sent after the commit, by
`deliver`: a notification is claimed (emailed_at set in its own transaction) before it
is sent, so two processes never send it twice, and released when the server refuses it,
to be tried again at the next delivery.

The texts are here, in Chinese and English (zh first), so that the web UI and the e-mail
say the same thing; `text(row, lang)` renders one.
"""

from __future__ import annotations

import logging
import smtplib
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Iterable, Optional

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from .models import MethodologyVersion, Notification, User, utcnow
from .settings import SmtpSettings

log = logging.getLogger(__name__)

# kind: (zh, en); {actor}, {methodology}, {version} and the details' keys are filled in
TEXTS: dict[str, tuple[str, str]] = {
    "review.requested": ("{actor} 请你评审 {methodology} {version}（第 {round} 轮）",
                         "{actor} asks you to review {methodology} {version} (round {round})"),
    "review.submitted": ("{actor} 评审了 {methodology} {version}：{verdict}，{comments} 条评论",
                         "{actor} reviewed {methodology} {version}: {verdict}, {comments} comment(s)"),
    "comment.added": ("{actor} 评论了 {methodology} {version}：{excerpt}",
                      "{actor} commented on {methodology} {version}: {excerpt}"),
    "comment.reply": ("{actor} 回复了 {methodology} {version} 上的讨论：{excerpt}",
                      "{actor} replied in a thread on {methodology} {version}: {excerpt}"),
    "suggestion.applied": ("{actor} 采纳了你对 {methodology} {version} 的修改建议",
                           "{actor} applied your suggested change to {methodology} {version}"),
    "version.changed_state": ("{methodology} {version} 的状态：{state}（{actor}）",
                              "{methodology} {version} is now {state} ({actor})"),
}
VERDICTS = {"comment": ("评论", "comment"), "approve": ("通过", "approve"),
            "request_changes": ("要求修改", "request changes"), "reject": ("否决", "reject")}
STATES = {"submitted": ("已提交", "submitted"), "in_review": ("评审中", "in review"),
          "changes_requested": ("要求修改", "changes requested"),
          "resubmitted": ("已重新提交", "resubmitted"), "approved": ("已批准", "approved"),
          "rejected": ("已否决", "rejected"), "published": ("已发布", "published"),
          "draft": ("草稿", "draft")}


def notify(session: Session, recipients: Iterable[int], kind: str,
           version: Optional[MethodologyVersion], actor: Optional[User], **details) -> list[Notification]:
    """One notification per recipient, never to the actor, once per person."""
    if kind not in TEXTS:
        raise ValueError(f"unknown notification kind {kind!r}")
    actor_id = actor.id if actor is not None else None
    rows = []
    for user_id in dict.fromkeys(recipients):
        if user_id is None or user_id == actor_id:
            continue
        row = Notification(user_id=user_id, kind=kind, version_id=version.id if version else None,
                           actor_id=actor_id, details=details, created_at=utcnow())
        session.add(row)
        rows.append(row)
    session.flush()
    return rows


def unread_count(session: Session, user_id: int) -> int:
    return session.scalar(select(func.count()).select_from(Notification).where(
        Notification.user_id == user_id, Notification.read_at.is_(None))) or 0


def listing(session: Session, user_id: int, *, limit: int = 100) -> list[Notification]:
    """The newest first, unread or not."""
    return list(session.scalars(select(Notification).where(Notification.user_id == user_id)
                                .order_by(Notification.id.desc()).limit(limit)))


def mark_read(session: Session, user_id: int, ids: Optional[Iterable[int]] = None) -> int:
    """Marks the user's notifications read (only theirs: another's id is ignored)."""
    query = update(Notification).where(Notification.user_id == user_id,
                                       Notification.read_at.is_(None))
    if ids is not None:
        query = query.where(Notification.id.in_(list(ids)))
    return session.execute(query.values(read_at=utcnow())).rowcount or 0


def forget(session: Session, version_id: int) -> int:
    """Drops every notification about a version: for steps that wait for nobody, such as
    the bundled methodologies reviewed and published by the system in one transaction
    (tanpu/seed.py)."""
    return session.execute(delete(Notification).where(
        Notification.version_id == version_id)).rowcount or 0


def text(row: Notification, lang: str = "zh") -> str:
    """The notification's sentence in `lang` (zh or en)."""
    index = 0 if lang == "zh" else 1
    details = dict(row.details or {})
    if "verdict" in details:
        details["verdict"] = VERDICTS.get(details["verdict"], (details["verdict"],) * 2)[index]
    if "state" in details:
        details["state"] = STATES.get(details["state"], (details["state"],) * 2)[index]
    version = row.version
    values = {"round": "", "comments": 0, "excerpt": "", "verdict": "", "state": "",
              **details,
              "actor": row.actor.name if row.actor is not None else ("系统" if index == 0 else "the system"),
              "methodology": version.methodology_id if version is not None else "",
              "version": version.version if version is not None else ""}
    return TEXTS[row.kind][index].format(**values)


def excerpt(body: str, limit: int = 80) -> str:
    body = " ".join(body.split())
    return body if len(body) <= limit else body[: limit - 1] + "…"


# ---------------------------------------------------------------- e-mail
@dataclass
class Delivery:
    sent: int = 0
    failed: int = 0


def _message(row: Notification, user: User, smtp: SmtpSettings, link: str) -> EmailMessage:
    zh, en = text(row, "zh"), text(row, "en")
    message = EmailMessage()
    message["Subject"] = f"[碳普 Tanpu] {zh}"
    message["From"] = smtp.sender
    message["To"] = user.email
    body = f"{zh}\n\n{en}\n"
    if link:
        body += f"\n{link}\n"
    message.set_content(body)
    return message


def deliver(db, smtp: Optional[SmtpSettings], *, base_url: str = "",
            limit: int = 200) -> Delivery:
    """Sends each notification that has not been e-mailed yet, once. Off (nothing sent,
    nothing marked) when `smtp` is None. `base_url` (e.g. https://tanpu.example.org)
    makes the e-mail link to the review page."""
    done = Delivery()
    if smtp is None:
        return done
    with db.read() as s:
        pending = list(s.scalars(select(Notification.id).where(Notification.emailed_at.is_(None))
                                 .order_by(Notification.id).limit(limit)))
    if not pending:
        return done
    client: Optional[smtplib.SMTP] = None
    try:
        for notification_id in pending:
            with db.unit_of_work() as s:  # claim it: another process skips it
                claimed = s.execute(update(Notification).where(
                    Notification.id == notification_id, Notification.emailed_at.is_(None))
                    .values(emailed_at=utcnow())).rowcount
            if not claimed:
                continue
            with db.read() as s:
                row = s.get(Notification, notification_id)
                user = s.get(User, row.user_id)
                if not user.active or not user.email:
                    continue
                link = (f"{base_url.rstrip('/')}/review/{row.version_id}"
                        if base_url and row.version_id else "")
                message = _message(row, user, smtp, link)
            try:
                if client is None:
                    client = smtplib.SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
                    if smtp.starttls:
                        client.starttls()
                    if smtp.user:
                        client.login(smtp.user, smtp.password)
                client.send_message(message)
                done.sent += 1
            except (OSError, smtplib.SMTPException) as error:
                log.warning("notification %s not e-mailed: %s", notification_id, error)
                done.failed += 1
                with db.unit_of_work() as s:  # release it: tried again next time
                    s.execute(update(Notification).where(Notification.id == notification_id)
                              .values(emailed_at=None))
                if client is not None:
                    try:
                        client.close()
                    finally:
                        client = None
    finally:
        if client is not None:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()
    return done
