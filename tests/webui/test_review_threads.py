"""Review like a pull request on the review page (issue 15, item 5): threads with replies,
resolving, a suggestion the author applies with one click, a pending review sent with its
verdict, and notifications (the inbox, its unread count, e-mail through a real SMTP server
started by the test). Flask test client, SQLite and PostgreSQL."""

from __future__ import annotations

import re
import socket

import sqlalchemy as sa

from registry.models import Notification
from registry.settings import SmtpSettings
from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures
from tests.webui.reviewkit import METHODOLOGY, faster_metro, line_of, source, text_of

TITLE = '  title en "Shenzhen low-carbon public transport (trial)"'


def _in_review(web) -> int:
    web.published("1.0.0")
    return web.to_review(web.draft("1.1.0", faster_metro(source(METHODOLOGY, "1.1.0"))))


def _html(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def _thread(html: str, thread_id: int) -> str:
    start = html.index(f'id="thread-{thread_id}"')
    return html[start:html.index('<div class="thread', start + 10)
                if '<div class="thread' in html[start + 10:] else len(html)]


def test_a_thread_with_replies_a_suggestion_applied_with_one_click_and_resolved(web):
    reg = web.reg
    vid = _in_review(web)
    line = line_of(reg.version(vid).source, TITLE)
    member = web.new_client(reg.members[0])
    # the + of a line prepares the comment with the line's text in the suggestion box
    page = _html(member.get(f"/review/{vid}?line={line}"))
    assert f'id="comment-suggestion" translate="no">{TITLE.replace(chr(34), "&#34;")}</textarea>' in page
    response = member.post(f"/review/{vid}/comment", data={
        "line": str(line), "body": "a clearer title", "mode": "now",
        "suggestion": '  title en "Shenzhen green public transport (trial)"'})
    assert response.status_code == 303 and response.headers["Location"].endswith(f"#L{line}")
    with reg.db.read() as s:
        from registry import discussion
        (thread,) = [t for t in discussion.threads(s, reg.version(vid)) if t.line == line]
        tid = thread.id
    reply = web.new_client(reg.author).post(f"/review/{vid}/comment", data={
        "reply_to": str(tid), "body": "good idea", "mode": "now"})
    assert reply.status_code == 303 and reply.headers["Location"].endswith(f"#thread-{tid}")
    author = web.new_client(reg.author)
    html = _html(author.get(f"/review/{vid}"))
    block = re.search(rf'<tr class="line-comments" data-line="{line}">(.*?)</tr>', html, re.S).group(1)
    assert "a clearer title" in block and "good idea" in block and 'class="line-comment reply"' in block
    assert f'id="apply-{tid}"' in block  # the author may apply
    assert f'id="apply-{tid}"' not in _html(member.get(f"/review/{vid}"))  # a reviewer may not
    assert member.post(f"/review/{vid}/suggestions/{tid}/apply").status_code == 403
    round_before = reg.version(vid).review_round
    assert author.post(f"/review/{vid}/suggestions/{tid}/apply").status_code == 303
    after = reg.version(vid)
    assert '  title en "Shenzhen green public transport (trial)"' in after.source.split("\n")
    assert after.review_round == round_before + 1
    html = _html(author.get(f"/review/{vid}"))
    thread_html = _thread(html, tid)
    assert 'data-resolved="true"' in thread_html and 'data-applied="true"' in thread_html
    # applied twice: refused at the form, nothing changes
    again = author.post(f"/review/{vid}/suggestions/{tid}/apply")
    assert again.status_code == 409 and 'data-refused="comment-form"' in again.get_data(as_text=True)
    # reopen and resolve again by the thread's author
    assert member.post(f"/review/{vid}/threads/{tid}/reopen").status_code == 303
    assert 'data-resolved="false"' in _thread(_html(author.get(f"/review/{vid}")), tid)
    assert web.new_client(reg.members[1]).post(
        f"/review/{vid}/threads/{tid}/resolve").status_code == 403  # not theirs to resolve
    assert member.post(f"/review/{vid}/threads/{tid}/resolve").status_code == 303


def test_a_pending_review_stays_private_until_submitted_with_its_verdict(web):
    reg = web.reg
    vid = _in_review(web)
    reviewer = web.new_client(reg.members[1])
    votes_before = reg.count("votes")  # those of 1.0.0
    assert reviewer.post(f"/review/{vid}/comment", data={
        "line": "9", "last_line": "10", "body": "why these two lines?", "mode": "draft"}).status_code == 303
    mine = _html(reviewer.get(f"/review/{vid}"))
    assert 'id="pending-review" data-drafts="1"' in mine and "why these two lines?" in mine
    assert "why these two lines?" not in _html(web.new_client(reg.author).get(f"/review/{vid}"))
    # request changes without a summary: refused at the form, what was typed kept, drafts kept
    refused = reviewer.post(f"/review/{vid}/review", data={"verdict": "request_changes",
                                                           "body": ""})
    assert refused.status_code == 422
    assert 'data-refused="pending-review-form"' in refused.get_data(as_text=True)
    assert (reg.count("review_drafts"), reg.count("votes")) == (1, votes_before)
    assert reviewer.post(f"/review/{vid}/review", data={"verdict": "approve"}).status_code == 303
    assert (reg.count("review_drafts"), reg.count("votes")) == (0, votes_before + 1)
    html = _html(web.new_client(reg.author).get(f"/review/{vid}"))
    assert "why these two lines?" in html and 'data-first-line="9" data-last-line="10"' in html
    assert 'data-voter="member2@tanpu.test"' in html
    # an expert who is neither the author nor in the committee sees no review at all
    assert web.new_client(reg.expert).post(f"/review/{vid}/review",
                                           data={"verdict": "comment", "body": "x"}).status_code == 403


def test_the_inbox_counts_what_is_unread_in_chinese_and_english(web):
    reg = web.reg
    vid = _in_review(web)  # member1 opened the review: the other members are asked
    zh = web.new_client(reg.members[2], lang="zh")
    page = _html(zh.get("/"))
    assert 'id="unread-count">2<' in page and ">通知" in page  # the reviews of 1.0.0 and 1.1.0
    listing = _html(zh.get("/notifications/"))
    assert "member1 请你评审 test.transit 1.1.0（第 1 轮）" in listing
    en = text_of(web.new_client(reg.members[2]).get("/notifications/"))
    assert "member1 asks you to review test.transit 1.1.0 (round 1)" in en
    notification = re.search(r'href="/notifications/(\d+)"', listing).group(1)
    opened = zh.get(f"/notifications/{notification}")
    assert opened.status_code == 303 and opened.headers["Location"].endswith(f"/review/{vid}")
    assert 'id="unread-count">1<' in _html(zh.get("/"))
    # a comment tells the author; marking all read clears the count
    web.new_client(reg.members[2]).post(f"/review/{vid}/comment", data={"body": "looks fine"})
    author = web.new_client(reg.author)
    assert 'id="unread-count">' in _html(author.get("/"))
    assert "member3 commented on test.transit 1.1.0: looks fine" in text_of(author.get("/notifications/"))
    assert author.post("/notifications/read").status_code == 303
    assert 'id="unread-count"' not in _html(author.get("/"))
    # another's notification is not opened (nor marked) by someone else
    other = web.new_client(reg.members[3])
    assert other.get(f"/notifications/{notification}").headers["Location"].endswith("/notifications/")


class _Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, envelope.content.decode("utf-8")))
        return "250 OK"


def test_a_change_on_the_page_is_emailed_when_smtp_is_configured(web):
    from aiosmtpd.controller import Controller
    reg = web.reg
    vid = _in_review(web)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with reg.uow() as s:  # what the review's opening made was e-mailed earlier
        s.execute(sa.update(Notification).values(emailed_at=sa.func.now()))
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        web.app.config["SMTP"] = SmtpSettings(host="127.0.0.1", port=port, sender="tanpu@test")
        response = web.new_client(reg.members[1]).post(f"/review/{vid}/comment",
                                                       data={"body": "one question"})
        assert response.status_code == 303
        response.close()  # the e-mail goes once the response is sent
    finally:
        controller.stop()
    # the author, told of the comment, once
    (to_author,) = [m for rcpts, m in inbox.messages if rcpts == ["author@tanpu.test"]]
    assert len(inbox.messages) == 1
    assert "one question" in to_author and f"/review/{vid}" in to_author


def test_the_author_of_a_comment_edits_and_deletes_it_on_the_page(web):
    reg = web.reg
    vid = _in_review(web)
    member = web.new_client(reg.members[1])
    member.post(f"/review/{vid}/comment", data={"line": "9", "body": "first words"})
    html = _html(member.get(f"/review/{vid}"))
    cid = int(re.search(r'/comments/(\d+)/edit', html).group(1))
    assert f"/comments/{cid}/edit" not in _html(web.new_client(reg.author).get(f"/review/{vid}"))
    assert web.new_client(reg.author).post(f"/review/{vid}/comments/{cid}/edit",
                                           data={"body": "x"}).status_code == 403
    assert member.post(f"/review/{vid}/comments/{cid}/edit",
                       data={"body": "better words"}).status_code == 303
    html = _html(web.new_client(reg.author).get(f"/review/{vid}"))
    assert "better words" in html and 'data-edited="true"' in html and "first words" not in html
    assert member.post(f"/review/{vid}/comments/{cid}/delete").status_code == 303
    html = _html(web.new_client(reg.author).get(f"/review/{vid}"))
    assert 'data-deleted="true"' in html and "better words" not in html
    again = member.post(f"/review/{vid}/comments/{cid}/edit", data={"body": "undo"})
    assert again.status_code == 409 and 'data-refused="comment-form"' in again.get_data(as_text=True)
