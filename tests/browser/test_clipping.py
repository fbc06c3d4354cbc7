"""Nothing clipped, on every page (issue 15, item 9): every page an administrator and an
expert reach by following the site's links (from the dashboard, two links deep and more,
up to PAGES each) is shown in Chinese and in English, at desktop width (1280 px) and at
phone width (375 px), and fails when an element's content is wider than the element and
cut off (scrollWidth > clientWidth with overflow hidden or clip, not an ellipsis on
purpose), or when something sticks out of the screen outside a scroll area. A screenshot
of each page is kept for a human eye (tests/browser/screenshots/clipping/).

It runs on SQLite only: the layout does not depend on the database (the other browser
tests run on both).
"""

from __future__ import annotations

import re
from collections import deque
from urllib.parse import urlsplit

import pytest

from .conftest import SCREENSHOTS
from .test_review_threads import Person, clipped, in_review

PAGES = 40  # page kinds: one page per path shape (/methodologies/<id>: one methodology)
SKIP = ("/logout", "/lang/", "/static/", "/api/", "/healthz", "/audit/head", ".json", ".csv",
        ".jsonl", ".parquet", ".tanpu", ".md", "/export", "/download")


def _shape(path: str) -> str:
    """/methodologies/cn.x.y/versions/1.0.0 -> /methodologies/*/versions/*: pages of one
    template with other data are checked once."""
    parts = urlsplit(path)
    segments = ["*" if re.search(r"\d|\.", s) else s for s in parts.path.split("/")]
    query = "&".join(sorted(q.split("=")[0] for q in parts.query.split("&") if q))
    return "/".join(segments) + ("?" + query if query else "")


def _crawl(page, limit: int, known: set[str]) -> list[str]:
    """Paths reached from the dashboard through the links of the pages (GET only, one page
    per shape, none of the shapes in `known`)."""
    seen: list[str] = []
    shapes = set(known)
    queue = deque(["/"])
    while queue and len(seen) < limit:
        path = queue.popleft()
        if _shape(path) in shapes and path != "/":
            continue
        shapes.add(_shape(path))
        response = page.goto(path)
        if response is None or response.status != 200 or "text/html" not in response.headers.get("content-type", ""):
            continue
        seen.append(path)
        for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))"):
            parts = urlsplit(href)
            if parts.netloc or not parts.path.startswith("/") or any(s in parts.path for s in SKIP):
                continue
            target = parts.path + ("?" + parts.query if parts.query else "")
            if _shape(target) not in shapes and "page=" not in target:
                queue.append(target)
    return seen


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)
def test_no_page_clips_anything_in_either_language_at_either_width(browser, server):
    vid = in_review(server)  # a review with a thread, so that its page has one
    folder = SCREENSHOTS / "clipping"
    folder.mkdir(parents=True, exist_ok=True)
    for key in ("member2", ):
        person = Person(browser, server, key, "zh", 1280)
        try:
            person.page.goto(f"/review/{vid}")
            person.page.locator("#comment-body").fill("一条很长的意见" * 40)
            person.page.locator("#comment-now").click()
        finally:
            person.context.close()
    problems = []
    checked = 0
    known: set[str] = set()
    for key in ("admin", "expert"):  # the expert's: the pages the administrator has not
        crawler = Person(browser, server, key, "zh", 1280)
        try:
            paths = _crawl(crawler.page, PAGES, known)
        finally:
            crawler.context.close()
        known |= {_shape(p) for p in paths}
        assert len(paths) >= (15 if key == "admin" else 1), (key, paths)
        for lang in ("zh", "en"):
            person = Person(browser, server, key, lang, 1280)
            try:
                for path in paths:
                    person.page.goto(path)
                    for width in (1280, 375):  # the same page, the window resized
                        person.page.set_viewport_size({"width": width, "height": 900})
                        checked += 1
                        found = clipped(person.page, width)
                        if found:
                            problems.append(f"{key} {lang} {width} {path}: {found}")
                            name = f"{key}-{lang}-{width}-{path.strip('/').replace('/', '-').replace('?', '-') or 'home'}.png"
                            person.page.screenshot(path=str(folder / name[:120]), full_page=True)
                    person.page.set_viewport_size({"width": 1280, "height": 900})
            finally:
                person.context.close()
    assert checked >= 4 * 17
    assert problems == [], "\n".join(problems)
