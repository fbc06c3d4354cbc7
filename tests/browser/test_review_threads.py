"""Review like a pull request in a real browser (issue 15, items 5 and 9), on SQLite and
PostgreSQL, in Chinese at desktop width and in English at phone width: a reviewer comments
on a line with a suggested change in a pending review and submits it; the author sees the
inbox count, applies the suggestion with one click (a new revision, a new round), replies;
the reviewer is told in their inbox and resolves the thread. No element of the review page
is clipped (an element whose content is wider than it is and cut off).

The version under review is brought there with registry functions (the story test,
test_story.py, does those steps in the browser); everything about threads is clicks.
"""

from __future__ import annotations

import pytest

from .conftest import PASSWORD, PEOPLE, SCREENSHOTS
from .test_story import METHODOLOGY, NEW_SOURCE_TEXT, OLD_SOURCE_TEXT, line_of, version_110

# the reviewer suggests citing the 2024 update of the standard (a new content hash; the
# examples still pass, so the revision is accepted under review)
LINE = line_of(version_110(), OLD_SOURCE_TEXT)
FACTOR = version_110().split("\n")[LINE - 1]
SUGGESTED = FACTOR.replace(OLD_SOURCE_TEXT, NEW_SOURCE_TEXT)

# what a reader cannot read: an element whose content is wider than its box and cut off
# (scrollWidth > clientWidth with overflow hidden or clip; an ellipsis on purpose aside),
# and a page wider than the screen (then the elements sticking out, outside scroll areas)
CLIPPED_JS = """(width) => {
    const out = [];
    const scrolls = (el) => { for (let a = el.parentElement; a; a = a.parentElement) {
        if (['auto', 'scroll'].includes(getComputedStyle(a).overflowX)) return true; } return false; };
    const name = (el) => el.tagName + (el.id ? '#' + el.id : '') + (el.className && el.className.baseVal === undefined ? '.' + el.className.trim().replace(/\\s+/g, '.') : '');
    for (const el of document.querySelectorAll('body *')) {
        const style = getComputedStyle(el);
        if (style.display === 'none' || style.visibility === 'hidden' || style.textOverflow === 'ellipsis') continue;
        if (['hidden', 'clip'].includes(style.overflowX) && el.scrollWidth > el.clientWidth + 1)
            out.push('clipped ' + name(el) + ' ' + el.scrollWidth + '>' + el.clientWidth);
    }
    if (document.documentElement.scrollWidth > width + 1) {
        out.push('page ' + document.documentElement.scrollWidth + ' px wide');
        for (const el of document.querySelectorAll('body *')) {
            const box = el.getBoundingClientRect();
            if (box.width && box.right > width + 1 && !scrolls(el)
                && !Array.from(el.children).some(c => c.getBoundingClientRect().right > width + 1))
                out.push('sticks out ' + name(el) + ' ' + Math.round(box.right));
        }
    }
    return out.slice(0, 8);
}"""


def clipped(page, width: int) -> list[str]:
    return page.evaluate(CLIPPED_JS, width)


def in_review(server) -> int:
    """1.1.0 of the Hello shared-bike methodology, by the expert, in review (round 1)."""
    from registry import workflow
    from registry.db import Database
    from registry.models import User
    from sqlalchemy import select

    db = Database(server.database_url, durable=False)
    try:
        with db.unit_of_work() as s:
            ids = {p.key: s.scalar(select(User.id).where(User.email == p.email)) for p in PEOPLE}
            vid = workflow.create_version(s, ids["expert"], METHODOLOGY, "1.1.0", version_110()).id
        with db.unit_of_work() as s:
            workflow.submit(s, ids["expert"], vid)
        with db.unit_of_work() as s:
            workflow.open_review(s, ids["member1"], vid)
        return vid
    finally:
        db.dispose()


class Person:
    def __init__(self, browser, server, key: str, lang: str, width: int):
        self.person = next(p for p in PEOPLE if p.key == key)
        self.width = width
        self.context = browser.new_context(base_url=server.url,
                                           locale="zh-CN" if lang == "zh" else "en-US",
                                           viewport={"width": width, "height": 900})
        self.context.set_default_timeout(30_000)
        self.context.add_cookies([{"name": "tanpu_lang", "value": lang, "url": server.url}])
        self.page = self.context.new_page()
        page = self.page
        page.goto("/login")
        page.locator('input[name="email"]').fill(self.person.email)
        page.locator('input[name="password"]').fill(PASSWORD)
        page.locator('form button[type="submit"]').click()
        page.wait_for_url(lambda url: "/login" not in url)

    def readable(self) -> None:
        self.page.wait_for_load_state("load")  # the page's own style sheets applied
        assert clipped(self.page, self.width) == [], (self.page.url, clipped(self.page, self.width))


# Each language at one width on one backend (both backends, both languages, both widths
# covered; all four pairings took 80 s of the suite for no other path).
@pytest.mark.parametrize("server,lang,width", [
    pytest.param("postgresql", "zh", 1280, id="postgresql-zh-desktop", marks=pytest.mark.postgres),
    pytest.param("sqlite", "en", 375, id="sqlite-en-phone"),
], indirect=["server"])
def test_a_suggestion_from_a_pending_review_applied_with_one_click(browser, server, lang, width):
    from playwright.sync_api import expect

    zh = lang == "zh"
    shots = SCREENSHOTS / server.backend
    shots.mkdir(parents=True, exist_ok=True)
    vid = in_review(server)
    line = LINE
    reviewer = Person(browser, server, "member2", lang, width)
    author = Person(browser, server, "expert", lang, width)
    try:
        page = reviewer.page
        # the reviewer was asked (the review opened): the inbox says so
        expect(page.locator("#unread-count")).to_have_text("1")
        page.goto(f"/review/{vid}")
        page.locator(f"#L{line}").hover()  # the + of a line shows on hover
        page.locator(f'#L{line} a.comment-line').click()
        expect(page.locator("#comment-line")).to_have_value(str(line))
        page.locator("#comment-body").fill("请引用 2024 年更新的标准 (cite the 2024 update)")
        page.locator("details.suggest > summary").click()
        expect(page.locator("#comment-suggestion")).to_have_value(FACTOR)
        page.locator("#comment-suggestion").fill(SUGGESTED)
        page.locator("#comment-draft").click()  # add to the pending review
        expect(page.locator("#pending-review")).to_have_attribute("data-drafts", "1")
        reviewer.readable()
        page.locator('#pending-review-form input[value="comment"]').check()
        page.locator("#submit-review").click()
        expect(page.locator("#pending-review")).to_have_attribute("data-drafts", "0")
        thread = page.locator(f'tr.line-comments[data-line="{line}"] .thread')
        expect(thread).to_have_count(1)
        expect(thread.locator("pre.added")).to_have_text(SUGGESTED)
        page.screenshot(path=str(shots / f"review-thread-{lang}-{width}.png"), full_page=True)

        page = author.page
        page.goto("/")
        expect(page.locator("#unread-count")).to_be_visible()
        page.locator("#notifications-link").click()
        expect(page.locator("#notification-list li").first).to_contain_text(
            "评审了" if zh else "reviewed")
        author.readable()
        page.locator("#notification-list li a").first.click()
        expect(page).to_have_url(f"{server.url}/review/{vid}")
        apply = page.locator(f'tr.line-comments[data-line="{line}"] .apply-form button')
        expect(apply).to_have_text("采纳建议" if zh else "Apply suggestion")
        apply.click()
        expect(page.locator("#review-round")).to_have_attribute("data-round", "2")
        expect(page.locator(f"#L{line} td.new")).to_have_text(SUGGESTED)
        resolved = page.locator(f'.thread[data-resolved="true"]')
        expect(resolved).to_have_count(1)
        resolved.locator("details.resolved-thread > summary").click()
        expect(resolved.locator(".suggestion")).to_have_attribute("data-applied", "true")
        resolved.locator(".reply-form textarea").fill("已采纳 (applied), thanks")
        resolved.locator('.reply-form button[value="now"]').click()
        page.wait_for_url(f"**/review/{vid}#thread-*")
        expect(page.locator(".thread .line-comment.reply")).to_have_count(1)
        author.readable()
        page.screenshot(path=str(shots / f"review-applied-{lang}-{width}.png"), full_page=True)

        page = reviewer.page
        page.goto("/notifications/")
        expect(page.locator("#notification-list")).to_contain_text(
            "采纳了你对" if zh else "applied your suggested change")
        expect(page.locator("#notification-list")).to_contain_text("已采纳 (applied), thanks")
        page.goto(f"/review/{vid}")
        thread = page.locator(".thread").first
        thread.locator("details.resolved-thread > summary").click()
        thread.locator(".resolve-form button").click()  # reopen it
        expect(page.locator('.thread[data-resolved="false"]')).to_have_count(1)
        reviewer.readable()
    finally:
        reviewer.context.close()
        author.context.close()
