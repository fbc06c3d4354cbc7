"""Review like a pull request (issue 15, item 5): threads on the lines of a version's
source, suggested changes the author applies with one click, pending reviews, and who
is told (registry.notifications).

    discussion.comment(s, actor, version_id, body, line=3, last_line=5,
                       suggestion="replacement text")      # a comment on lines 3-5
    discussion.comment(s, actor, version_id, "agreed", reply_to=thread_id)
    discussion.resolve(s, actor, thread_id) / reopen(...)
    discussion.apply_suggestion(s, author, comment_id)    # a new revision of the source
    discussion.add_draft(...); discussion.submit_review(s, actor, version_id, "approve", "")
    discussion.threads(s, version)                         # for the review page

Comments stay append-only: a reply's thread (comment_replies), a thread's resolutions
(thread_resolutions) and a comment's lines and suggestion (comment_spans) are rows of
their own, written with the comment in one transaction. Every change is in the audit
chain. A pending review's comments are drafts (review_drafts) that only their author
sees, until submitted together with a verdict: then the vote (if the verdict is one) and
every draft become visible in one transaction, or none does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit, notifications, users, workflow
from .errors import Conflict, Forbidden, Invalid, NotFound
from .models import (ADMINISTRATOR, Comment, CommentEdit, CommentLine, CommentReply,
                     CommentSpan, MethodologyVersion, ReviewDraft, ThreadResolution, User, Vote,
                     utcnow)
from .users import require

VERDICTS = ("comment", "approve", "request_changes", "reject")


# ---------------------------------------------------------------- anchors
@dataclass(frozen=True)
class Anchor:
    first_line: Optional[int] = None
    last_line: Optional[int] = None
    suggestion: Optional[str] = None
    reply_to: Optional[int] = None  # the thread (its first comment)


def _normalise(suggestion: Optional[str]) -> Optional[str]:
    if suggestion is None:
        return None
    text = suggestion.replace("\r\n", "\n").replace("\r", "\n")
    return text[:-1] if text.endswith("\n") else text


def thread_of(session: Session, comment_id: int) -> Comment:
    """The first comment of the thread a comment is in."""
    row = session.get(Comment, comment_id)
    if row is None:
        raise NotFound(f"no comment {comment_id}")
    reply = session.get(CommentReply, comment_id)
    return session.get(Comment, reply.thread_id) if reply is not None else row


def _anchor(session: Session, version: MethodologyVersion, *, line: Optional[int],
            last_line: Optional[int], suggestion: Optional[str],
            reply_to: Optional[int]) -> Anchor:
    suggestion = _normalise(suggestion)
    if reply_to is not None:
        if line is not None or suggestion is not None:
            raise Invalid("a reply answers its thread: it has no line or suggestion of its own")
        root = thread_of(session, reply_to)
        if root.version_id != version.id:
            raise Invalid(f"comment {reply_to} is not on {version.methodology_id} {version.version}")
        return Anchor(reply_to=root.id)
    if line is None:
        if last_line is not None or suggestion is not None:
            raise Invalid("a range of lines or a suggested change needs its first line")
        return Anchor()
    count = len(version.source.split("\n"))
    last = line if last_line is None else last_line
    if not 1 <= line <= count:
        raise Invalid(f"line {line} is not in the source (1 to {count})")
    if not line <= last <= count:
        raise Invalid(f"the last line {last} is not between {line} and {count}")
    if suggestion is not None and suggestion == _lines(version.source, line, last):
        suggestion = None  # a suggestion that changes nothing is a plain comment
    return Anchor(line, last, suggestion)


def _lines(source: str, first: int, last: int) -> str:
    return "\n".join(source.split("\n")[first - 1:last])


def _post(session: Session, actor: User, version: MethodologyVersion, body: str,
          anchor: Anchor) -> Comment:
    row = workflow.comment(session, actor, version.id, body)
    if anchor.first_line is not None:
        session.add(CommentLine(comment_id=row.id, version_id=version.id, line=anchor.first_line,
                                content_hash=version.content_hash))
        if anchor.last_line != anchor.first_line or anchor.suggestion is not None:
            session.add(CommentSpan(comment_id=row.id, version_id=version.id,
                                    first_line=anchor.first_line, last_line=anchor.last_line,
                                    original=_lines(version.source, anchor.first_line,
                                                    anchor.last_line),
                                    suggestion=anchor.suggestion))
    if anchor.reply_to is not None:
        session.add(CommentReply(comment_id=row.id, thread_id=anchor.reply_to))
    session.flush()
    if anchor.first_line is not None or anchor.reply_to is not None:
        audit.append(session, actor, "comment.anchor", "methodology_version", version.id, {
            "comment_id": row.id, "first_line": anchor.first_line, "last_line": anchor.last_line,
            "suggestion": anchor.suggestion, "reply_to": anchor.reply_to})
    return row


def _participants(session: Session, thread_id: int) -> list[int]:
    ids = [session.get(Comment, thread_id).author_id]
    ids += list(session.scalars(select(Comment.author_id).join(
        CommentReply, CommentReply.comment_id == Comment.id).where(
        CommentReply.thread_id == thread_id)))
    return ids


def comment(session: Session, actor: User | int, version_id: int, body: str, *,
            line: Optional[int] = None, last_line: Optional[int] = None,
            suggestion: Optional[str] = None, reply_to: Optional[int] = None) -> Comment:
    """A comment now (not part of a pending review): on the version, on lines (with a
    suggested change), or a reply in a thread. The author and the thread's people are told."""
    actor = users.actor_in(session, actor)
    version = workflow.get_version(session, version_id)
    require(users.can_comment(actor, version))
    anchor = _anchor(session, version, line=line, last_line=last_line, suggestion=suggestion,
                     reply_to=reply_to)
    row = _post(session, actor, version, body, anchor)
    excerpt = notifications.excerpt(row.body)
    if anchor.reply_to is not None:
        notifications.notify(session, [version.author_id, *_participants(session, anchor.reply_to)],
                             "comment.reply", version, actor, excerpt=excerpt)
    else:
        notifications.notify(session, [version.author_id], "comment.added", version, actor,
                             excerpt=excerpt)
    return row


# ---------------------------------------------------------------- editing
def edit(session: Session, actor: User | int, comment_id: int, body: str = "", *,
         delete: bool = False) -> CommentEdit:
    """The author of a comment changes its text, or deletes it (its thread's replies stay;
    a deleted comment shows as deleted). Append-only: every version is kept."""
    actor = users.actor_in(session, actor)
    row = session.get(Comment, comment_id)
    if row is None:
        raise NotFound(f"no comment {comment_id}")
    version = workflow.get_version(session, row.version_id)
    require(users.can_comment(actor, version))
    if row.author_id != actor.id:
        raise Forbidden("only its author edits or deletes a comment")
    last = session.scalar(select(CommentEdit).where(CommentEdit.comment_id == comment_id)
                          .order_by(CommentEdit.id.desc()).limit(1))
    if last is not None and last.deleted:
        raise Conflict(f"comment {comment_id} is deleted")
    body = "" if delete else (body or "").strip()
    if not delete and not body:
        raise Invalid("an empty comment")
    out = CommentEdit(comment_id=comment_id, body=body, deleted=delete, at=utcnow())
    session.add(out)
    session.flush()
    audit.append(session, actor, "comment.delete" if delete else "comment.edit",
                 "methodology_version", version.id, {"comment_id": comment_id, "body": body})
    return out


def shown(session: Session, comments: list[Comment]) -> dict[int, CommentEdit]:
    """The last edit of each comment that has one."""
    ids = [c.id for c in comments]
    out: dict[int, CommentEdit] = {}
    if ids:
        for e in session.scalars(select(CommentEdit).where(CommentEdit.comment_id.in_(ids))
                                 .order_by(CommentEdit.id)):
            out[e.comment_id] = e
    return out


# ---------------------------------------------------------------- resolving
def _resolutions(session: Session, thread_id: int) -> list[ThreadResolution]:
    return list(session.scalars(select(ThreadResolution).where(
        ThreadResolution.thread_id == thread_id).order_by(ThreadResolution.id)))


def may_resolve(actor: Optional[User], version: MethodologyVersion, root: Comment) -> users.Decision:
    ok = users.can_comment(actor, version)
    if not ok:
        return ok
    if actor.id in (root.author_id, version.author_id) or ADMINISTRATOR in actor.roles:
        return users.ALLOW
    return users.deny("only the thread's author, the version's author or an administrator "
                      "resolves a thread")


def _set_resolved(session: Session, actor: User, version: MethodologyVersion, root: Comment,
                  resolved: bool, *, why: str = "") -> ThreadResolution:
    row = ThreadResolution(thread_id=root.id, resolved=resolved, actor_id=actor.id, at=utcnow())
    session.add(row)
    session.flush()
    audit.append(session, actor, "thread.resolve" if resolved else "thread.reopen",
                 "methodology_version", version.id,
                 {"thread_id": root.id, **({"why": why} if why else {})})
    return row


def resolve(session: Session, actor: User | int, thread_id: int, resolved: bool = True) -> ThreadResolution:
    """Resolves (or, resolved False, reopens) a thread: by its author, the version's author
    or an administrator. A reply is not a thread; resolving twice is a conflict."""
    actor = users.actor_in(session, actor)
    root = session.get(Comment, thread_id)
    if root is None:
        raise NotFound(f"no comment {thread_id}")
    if session.get(CommentReply, thread_id) is not None:
        raise Invalid(f"comment {thread_id} is a reply: resolve its thread")
    version = workflow.get_version(session, root.version_id)
    require(may_resolve(actor, version, root))
    history = _resolutions(session, thread_id)
    now = bool(history and history[-1].resolved)
    if now == resolved:
        raise Conflict(f"the thread is {'already resolved' if resolved else 'not resolved'}")
    return _set_resolved(session, actor, version, root, resolved)


def reopen(session: Session, actor: User | int, thread_id: int) -> ThreadResolution:
    return resolve(session, actor, thread_id, False)


# ---------------------------------------------------------------- suggestions
def suggested_source(source: str, span: CommentSpan) -> str:
    """The source with the suggestion in place of its lines; Conflict when those lines
    changed since the suggestion was made."""
    if span.suggestion is None:
        raise Invalid(f"comment {span.comment_id} suggests no change")
    lines = source.split("\n")
    if "\n".join(lines[span.first_line - 1:span.last_line]) != span.original:
        raise Conflict(f"lines {span.first_line}-{span.last_line} changed since the suggestion "
                       "was made: apply it by hand in the editor")
    middle = span.suggestion.split("\n") if span.suggestion != "" else []
    return "\n".join(lines[:span.first_line - 1] + middle + lines[span.last_line:])


def apply_suggestion(session: Session, actor: User | int, comment_id: int) -> MethodologyVersion:
    """The author applies a suggested change: a new revision of the source
    (workflow.revise: checked, and under review a new content hash starts a new round),
    the suggestion marked applied, its thread resolved, its author told."""
    actor = users.actor_in(session, actor)
    span = session.get(CommentSpan, comment_id)
    if span is None or span.suggestion is None:
        raise NotFound(f"comment {comment_id} suggests no change")
    if span.applied_at is not None:
        raise Conflict(f"the suggestion of comment {comment_id} is applied already")
    version = workflow.get_version(session, span.version_id, lock=True)
    require(users.can_edit(actor, version))
    new_source = suggested_source(version.source, span)
    workflow.revise(session, actor, version.id, new_source)
    span.applied_at = utcnow()
    span.applied_by = actor.id
    span.applied_content_hash = version.content_hash
    session.flush()
    audit.append(session, actor, "suggestion.apply", "methodology_version", version.id, {
        "comment_id": comment_id, "content_hash": version.content_hash})
    root = thread_of(session, comment_id)
    history = _resolutions(session, root.id)
    if not (history and history[-1].resolved):
        _set_resolved(session, actor, version, root, True, why="suggestion applied")
    notifications.notify(session, [session.get(Comment, comment_id).author_id],
                         "suggestion.applied", version, actor)
    return version


# ---------------------------------------------------------------- pending reviews
def add_draft(session: Session, actor: User | int, version_id: int, body: str, *,
              line: Optional[int] = None, last_line: Optional[int] = None,
              suggestion: Optional[str] = None, reply_to: Optional[int] = None) -> ReviewDraft:
    """A comment of the actor's pending review: seen by them only until submitted."""
    actor = users.actor_in(session, actor)
    version = workflow.get_version(session, version_id)
    require(users.can_comment(actor, version))
    body = (body or "").strip()
    if not body:
        raise Invalid("an empty comment")
    anchor = _anchor(session, version, line=line, last_line=last_line, suggestion=suggestion,
                     reply_to=reply_to)
    row = ReviewDraft(version_id=version.id, author_id=actor.id, body=body,
                      first_line=anchor.first_line, last_line=anchor.last_line,
                      suggestion=anchor.suggestion, reply_to=anchor.reply_to, created_at=utcnow())
    session.add(row)
    session.flush()
    return row


def drafts(session: Session, actor: User | int, version_id: int) -> list[ReviewDraft]:
    actor_id = actor if isinstance(actor, int) else actor.id
    return list(session.scalars(select(ReviewDraft).where(
        ReviewDraft.version_id == version_id, ReviewDraft.author_id == actor_id)
        .order_by(ReviewDraft.id)))


def delete_draft(session: Session, actor: User | int, draft_id: int) -> None:
    actor = users.actor_in(session, actor)
    row = session.get(ReviewDraft, draft_id)
    if row is None:
        raise NotFound(f"no pending comment {draft_id}")
    if row.author_id != actor.id:
        raise Forbidden("a pending comment is its author's only")
    session.delete(row)
    session.flush()


@dataclass
class Submitted:
    verdict: str
    vote: Optional[Vote]
    comments: list[Comment] = field(default_factory=list)


def submit_review(session: Session, actor: User | int, version_id: int, verdict: str,
                  body: str = "") -> Submitted:
    """Submits the actor's pending review: the verdict (a vote: approve, request_changes,
    reject, with `body` as its comment; or `comment`: `body` as a comment) and every draft,
    in one transaction. The author is told once."""
    actor = users.actor_in(session, actor)
    version = workflow.get_version(session, version_id)
    require(users.can_comment(actor, version))
    if verdict not in VERDICTS:
        raise Invalid(f"verdict {verdict!r}: one of {', '.join(VERDICTS)}")
    pending = drafts(session, actor, version_id)
    body = (body or "").strip()
    out = Submitted(verdict, None)
    if verdict == "comment":
        if not pending and not body:
            raise Invalid("an empty review: write a comment or add comments on lines")
        if body:
            out.comments.append(_post(session, actor, version, body, Anchor()))
    else:
        out.vote = workflow.vote(session, actor, version_id, verdict, body)
    repliers: list[int] = []
    for draft in pending:
        anchor = _anchor(session, version, line=draft.first_line, last_line=draft.last_line,
                         suggestion=draft.suggestion, reply_to=draft.reply_to)
        out.comments.append(_post(session, actor, version, draft.body, anchor))
        if anchor.reply_to is not None:
            repliers += _participants(session, anchor.reply_to)
        session.delete(draft)
    session.flush()
    audit.append(session, actor, "review.submit", "methodology_version", version.id, {
        "verdict": verdict, "vote_id": out.vote.id if out.vote else None,
        "comment_ids": [c.id for c in out.comments]})
    notifications.notify(session, [version.author_id, *repliers], "review.submitted", version,
                         actor, verdict=verdict, comments=len(out.comments))
    return out


# ---------------------------------------------------------------- reading
@dataclass
class Thread:
    root: Comment
    replies: list[Comment]
    line: Optional[int]  # the first line, in the content it was made on
    last_line: Optional[int]
    content_hash: Optional[str]  # of that content
    span: Optional[CommentSpan]
    resolutions: list[ThreadResolution]
    current: bool = True  # made on the version's current content (its line still means it)
    edits: dict = field(default_factory=dict)  # comment id -> its last CommentEdit

    @property
    def resolved(self) -> bool:
        return bool(self.resolutions and self.resolutions[-1].resolved)

    @property
    def resolved_by(self) -> Optional[User]:
        return self.resolutions[-1].actor if self.resolved else None

    @property
    def suggestion(self) -> Optional[str]:
        return self.span.suggestion if self.span is not None else None

    @property
    def id(self) -> int:
        return self.root.id


def threads(session: Session, version: MethodologyVersion) -> list[Thread]:
    """Every thread of a version, oldest first, with its replies, lines and resolution."""
    comments = list(session.scalars(select(Comment).where(Comment.version_id == version.id)
                                    .order_by(Comment.id)))
    ids = [c.id for c in comments]
    if not ids:
        return []
    replies = {r.comment_id: r.thread_id for r in session.scalars(
        select(CommentReply).where(CommentReply.comment_id.in_(ids)))}
    lines = {r.comment_id: r for r in session.scalars(
        select(CommentLine).where(CommentLine.version_id == version.id))}
    spans = {r.comment_id: r for r in session.scalars(
        select(CommentSpan).where(CommentSpan.version_id == version.id))}
    resolutions: dict[int, list[ThreadResolution]] = {}
    for r in session.scalars(select(ThreadResolution).where(ThreadResolution.thread_id.in_(ids))
                             .order_by(ThreadResolution.id)):
        resolutions.setdefault(r.thread_id, []).append(r)
    edits = shown(session, comments)
    out: dict[int, Thread] = {}
    for c in comments:
        if c.id in replies:
            thread = out.get(replies[c.id])
            if thread is not None:
                thread.replies.append(c)
            continue
        anchor = lines.get(c.id)
        span = spans.get(c.id)
        out[c.id] = Thread(
            root=c, replies=[], line=anchor.line if anchor else None,
            last_line=span.last_line if span else (anchor.line if anchor else None),
            content_hash=anchor.content_hash if anchor else None, span=span,
            resolutions=resolutions.get(c.id, []), edits=edits,
            current=anchor is None or (anchor.content_hash == version.content_hash and (
                span is None or span.applied_at is not None
                or _lines(version.source, span.first_line, span.last_line) == span.original)))
    return list(out.values())

