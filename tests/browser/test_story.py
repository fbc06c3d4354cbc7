"""The whole story in a real browser, on SQLite and on PostgreSQL:

an expert writes version 1.1.0 of a bundled methodology in the editor (a new bike factor),
sees a unit error at its line, fixes it, tries it on records, saves and submits; a committee
member opens the review, comments on a line, votes to request changes and sends it back;
the expert revises and resubmits; the next round starts with no votes; three members
approve; the administrator approves and publishes; the catalogue and the methodology page
show 1.1.0 in force; the audit log shows every step and its chain verifies (the page's
button and `tanpu audit verify`). Along the way: the author cannot vote (no form; a
forged POST is refused with 403) and an integrator gets 403 on the review page.

Only the people are seeded (conftest.py); every other step is a click or a keystroke in
Chromium. Screenshots of the main pages: tests/browser/screenshots/<backend>/. With
TANPU_DOC_SCREENSHOTS=1 the SQLite run also refreshes docs/screenshots/ui-story-*.png.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import time as _time
from pathlib import Path

from .conftest import PASSWORD, PEOPLE, ROOT, SCREENSHOTS

METHODOLOGY = "cn.hello.shared-bike"
BUNDLED = (ROOT / "methodologies" / "hello-shared-bike.tanpu").read_text(encoding="utf-8")
FORMULA = "reduction = ef[vehicle] * distance"
OLD_SOURCE_TEXT = 'source "哈啰企业标准, 中国电力网 2022-07-21" [SRC] {'
NEW_SOURCE_TEXT = ('source "哈啰企业标准 2024 年更新 (2024 update of the enterprise standard), '
                   '中国电力网 2022-07-21" [SRC] {')
DOC_SHOTS = {  # screenshot name -> docs/screenshots/ui-story-<name>.png
    "editor-unit-error": "editor-unit-error",
    "try-it": "try-it",
    "review": "review",
    "catalogue": "catalogue",
    "audit-log": "audit-log",
}


def _replace(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} is not in the bundled source exactly once"
    return text.replace(old, new)


def version_110(*, unit_error: bool = False, revised: bool = False) -> str:
    """Version 1.1.0 of the Hello shared-bike methodology: the bike factor 33.88 -> 34.5 g/km,
    its examples updated. unit_error: `+` instead of `*` in the formula; revised: the
    parameter's source names the 2024 update (the change the reviewer asks for)."""
    text = _replace(BUNDLED, 'version 1.0.0 {', 'version 1.1.0 {')
    text = _replace(text, "    bike: 33.88\n", "    bike: 34.5\n")
    text = _replace(text, "{ vehicle: bike, distance: 2 km } => reduction 67.76 g, points 67",
                    "{ vehicle: bike, distance: 2 km } => reduction 69 g, points 69")
    text = _replace(text, "time: 2024-05-21T07:30 } => reduction 67.76 g",
                    "time: 2024-05-21T07:30 } => reduction 69 g")
    if unit_error:
        text = _replace(text, FORMULA, FORMULA.replace("*", "+"))
    if revised:
        text = _replace(text, OLD_SOURCE_TEXT, NEW_SOURCE_TEXT)
    return text


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.split("\n"), start=1) if needle in line)


RECORDS = """id,account,time,vehicle,distance[km]
try-1,acc-1,2024-06-03T08:10,bike,2
try-2,acc-1,2024-06-03T12:40,ebike,5
try-3,acc-2,2024-06-03T09:00,bike,80
"""


# ---------------------------------------------------------------- helpers
class Shots:
    def __init__(self, backend: str):
        self.folder = SCREENSHOTS / backend
        self.folder.mkdir(parents=True, exist_ok=True)  # files of an earlier run: overwritten
        (self.folder / "FAILED.png").unlink(missing_ok=True)
        self.count = 0
        self.saved: dict[str, Path] = {}

    def remove_others(self) -> None:
        """Screenshots of earlier runs that this one did not make (renamed steps)."""
        for path in self.folder.glob("*.png"):
            if path not in self.saved.values():
                path.unlink(missing_ok=True)

    def take(self, page, name: str, *, full_page: bool = False) -> Path:
        self.count += 1
        path = self.folder / (f"{self.count:02d}-{name}.png" if name != "FAILED" else "FAILED.png")
        page.screenshot(path=str(path), full_page=full_page)
        self.saved[name] = path
        return path


class Actor:
    """One person in a browser context of their own (their own cookies), in English."""

    def __init__(self, browser, server, key: str):
        self.person = next(p for p in PEOPLE if p.key == key)
        self.server = server
        self.context = browser.new_context(base_url=server.url, locale="en-US",
                                           viewport={"width": 1280, "height": 900})
        self.context.set_default_timeout(30_000)
        self.context.add_cookies([{"name": "tanpu_lang", "value": "en", "url": server.url}])
        self.page = self.context.new_page()

    def sign_in(self) -> "Actor":
        from playwright.sync_api import expect

        page = self.page
        page.goto("/login")
        page.get_by_label("Email").fill(self.person.email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator(".flash.success")).to_have_text(f"Welcome, {self.person.name}.")
        expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")
        return self

    def nav(self, name: str) -> None:
        self.page.get_by_role("navigation", name="Main").get_by_role("link", name=name,
                                                                    exact=True).click()

    def flash(self, text: str):
        from playwright.sync_api import expect
        expect(self.page.locator(".flashes")).to_contain_text(text)

    def state(self, state: str):
        from playwright.sync_api import expect
        expect(self.page.locator("#version-state")).to_have_attribute("data-state", state)


# ---------------------------------------------------------------- the story
def test_story(browser, server):
    from playwright.sync_api import expect

    shots = Shots(server.backend)
    people: dict[str, Actor] = {}
    current = None
    started = _time.monotonic()

    def step(label: str) -> None:  # shown with the captured output when the test fails
        print(f"[{_time.monotonic() - started:5.1f}s] {server.backend}: {label}")

    def actor(key: str) -> Actor:
        nonlocal current
        if key not in people:
            people[key] = Actor(browser, server, key).sign_in()
        current = people[key]
        return current

    try:
        _story(actor, step, shots, server, expect)
    except BaseException:
        if current is not None:
            try:
                shots.take(current.page, "FAILED", full_page=True)
            except Exception:  # noqa: BLE001 - the failure itself is what matters
                pass
        print(f"--- tanpu serve log ---\n{server.log_tail(60)}")
        raise
    finally:
        for a in people.values():
            a.context.close()

    step("done")
    shots.remove_others()
    if server.backend == "sqlite" and os.environ.get("TANPU_DOC_SCREENSHOTS") == "1":
        docs = ROOT / "docs" / "screenshots"
        for name, doc_name in DOC_SHOTS.items():
            shutil.copyfile(shots.saved[name], docs / f"ui-story-{doc_name}.png")


def _story(actor, step, shots: Shots, server, expect) -> None:
    with_error = version_110(unit_error=True)
    formula_line = line_of(with_error, "reduction = ef[vehicle] + distance")
    formula_column = with_error.split("\n")[formula_line - 1].index("+") + 1
    factor_line = line_of(with_error, "bike: 34.5")

    step('the catalogue before: 1.0.0 in force (and the Chinese interface, the default)')
    expert = actor("expert")
    page = expert.page
    expert.nav("Catalogue")
    expect(page.get_by_role("heading", level=1)).to_have_text("Methodology catalogue")
    row = page.locator(f'tr[data-methodology="{METHODOLOGY}"]')
    expect(row.locator("td").nth(1)).to_have_text("1.0.0")
    page.goto("/methodologies?lang=zh")
    expect(page.locator("html")).to_have_attribute("lang", "zh-Hans")
    shots.take(page, "catalogue-zh")
    page.goto("/")  # the cookie's English again

    step('the expert starts version 1.1.0 in the editor (from the dashboard)')
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")
    page.get_by_role("link", name="New methodology").click()  # was a 404 (/editor/new)
    expect(page.get_by_role("heading", level=1)).to_have_text("Editor")
    expect(page.get_by_role("heading", name="New methodology")).to_be_visible()
    page.locator("#new-version-form").get_by_label("Methodology").select_option(METHODOLOGY)
    page.get_by_role("button", name="Start a new version").click()
    expect(page).to_have_url(re.compile(r"/editor/new\?methodology=" + re.escape(METHODOLOGY)))
    expect(page.get_by_label("Version number")).to_have_value("1.1.0")
    source = page.get_by_label("Methodology source")
    expect(source).to_have_value(re.compile(r"version 1\.1\.0 \{"))

    step('types it with a unit error: the diagnostic shows at its line')
    source.fill(with_error)
    status = page.locator("#check-status")
    expect(status).to_have_attribute("data-ok", "false")
    diagnostic = page.locator("#diagnostics li.diagnostic.error")
    expect(diagnostic).to_have_count(1)
    expect(diagnostic).to_have_attribute("data-line", str(formula_line))
    expect(diagnostic.locator(".where")).to_have_text(f"line {formula_line}:{formula_column}")
    expect(diagnostic.locator(".message")).to_have_text(
        "cannot add a mass per length (g/km) and a length (km)")
    expect(diagnostic.locator("pre.caret")).to_contain_text(
        f"{formula_line} | reduction = ef[vehicle] + distance")
    expect(page.locator(f'.tp-gutter .ln.has-error[data-line="{formula_line}"]')).to_have_count(1)
    expect(page.locator("#submission .verdict")).to_have_text("cannot be submitted yet")
    shots.take(page, "editor-unit-error")

    step('fixes it: the diagnostic takes the caret to the error; `+` becomes `*`')
    diagnostic.click()
    expect(source).to_be_focused()
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.type("*")
    expect(source).to_have_value(version_110())
    expect(status).to_have_attribute("data-ok", "true")
    expect(status.locator(".summary")).to_have_text("compiles")
    expect(page.locator("#diagnostics li.diagnostic")).to_have_count(0)
    expect(page.locator(f'.tp-gutter .ln.has-error')).to_have_count(0)
    expect(page.locator("#examples li.pass")).to_have_count(3)
    expect(page.locator("#examples li.fail")).to_have_count(0)
    expect(page.locator("#submission .verdict")).to_have_text("can be submitted")

    step('tries it on a few records, with explanations')
    page.get_by_label("Records", exact=True).fill(RECORDS)
    page.get_by_role("button", name="Evaluate").click()
    summary = page.locator("#try-results .try-summary")
    expect(summary).to_have_attribute("data-records", "3")
    expect(summary).to_have_attribute("data-reduction-mg", str(69_000 + 175_050))
    first = page.locator('#try-results tr[data-id="try-1"]')
    expect(first).to_have_attribute("data-status", "credited")
    expect(first.locator("td.num").first).to_have_text("69 g")
    expect(page.locator('#try-results tr[data-id="try-3"]')).to_have_attribute(
        "data-status", "rejected")
    expect(page.locator('#try-results tr[data-id="try-3"]')).to_contain_text("OUT_OF_RANGE")
    first.get_by_text("why").click()
    explanation = first.locator("pre.explanation")
    expect(explanation).to_be_visible()
    expect(explanation).to_contain_text("parameter  ef[bike] = 34.5 g/km")
    expect(explanation).to_contain_text("output     reduction = 69 g")
    page.locator("#tryit").evaluate("card => card.scrollIntoView()")
    shots.take(page, "try-it")

    step('saves the draft and submits it')
    page.get_by_role("button", name="Save as draft").click()
    expert.flash("Saved as draft 1.1.0.")
    expect(page).to_have_url(re.compile(r"/editor/\d+$"))
    version_id = int(re.search(r"/editor/(\d+)$", page.url)[1])
    expert.state("draft")
    page.get_by_role("button", name="Submit for review").click()
    expert.flash("Submitted for review.")
    expect(page).to_have_url(re.compile(rf"/review/{version_id}$"))
    expert.state("submitted")
    # the author (a committee member too) may neither open the review nor vote
    expect(page.get_by_role("button", name="Open the review")).to_have_count(0)
    expect(page.locator("#vote-form")).to_have_count(0)
    expect(page.locator("#vote-why-not")).to_have_text(
        "You cannot vote: the author cannot vote on their own submission")
    review_path = f"/review/{version_id}"

    step('an integrator sees no review page')
    integrator = actor("integrator")
    response = integrator.page.goto(review_path)
    assert response.status == 403
    expect(integrator.page.locator(".error-page .status")).to_have_text("403")
    expect(integrator.page.locator("#vote-form")).to_have_count(0)
    shots.take(integrator.page, "integrator-403")

    step('member 1 opens the review from the dashboard, comments on a line, asks for changes')
    member1 = actor("member1")
    page = member1.page
    waiting = page.locator("#pending li").filter(has_text=f"{METHODOLOGY} 1.1.0")
    waiting.get_by_role("link").first.click()
    expect(page).to_have_url(re.compile(rf"{review_path}$"))
    member1.state("submitted")
    page.get_by_role("button", name="Open the review").click()
    member1.flash("The review is open.")
    member1.state("in_review")
    expect(page.locator("#review-round")).to_have_attribute("data-round", "1")
    # the diff against 1.0.0 and the impact preview on the bundled sample
    changed = page.locator(f'#diff tr[data-new-line="{factor_line}"]')
    expect(changed.locator("td.new")).to_have_text("    bike: 34.5")
    expect(changed.locator("td.old")).to_have_text("    bike: 33.88")
    expect(changed.locator(".seg-changed.new").first).to_be_visible()
    impact = page.locator("#impact")
    expect(impact.locator("#impact-delta")).to_contain_text("+")
    assert int(impact.get_attribute("data-changed")) > 0
    changed.hover()  # the row's "+" shows on hover
    page.get_by_title(f"Comment on line {factor_line}").click()
    expect(page.get_by_label("Line (optional)")).to_have_value(str(factor_line))
    line_comment = "34.5 g/km: which publication is this from? Name the 2024 update."
    page.get_by_label("Comment", exact=True).fill(line_comment)
    page.get_by_role("button", name="Add comment").click()
    member1.flash("Comment added.")
    expect(page.locator(f'#diff tr.line-comments[data-line="{factor_line}"]')).to_contain_text(
        line_comment)
    page.get_by_role("radio", name="request changes").check()
    page.get_by_label("Comment (needed unless you approve)").fill(
        "The new factor needs its source: see my comment on the line.")
    page.get_by_role("button", name="Cast vote").click()
    member1.flash("Your vote is recorded.")
    expect(page.locator('#votes li.vote[data-counts="true"]')).to_have_count(1)
    expect(page.locator('#votes li.vote[data-decision="request_changes"]')).to_contain_text(
        "Wang (member 1)")
    # voted: the form now offers to change the vote (the last one counts)
    expect(page.locator("#my-vote")).to_have_attribute("data-decision", "request_changes")
    expect(page.get_by_role("button", name="Change vote")).to_be_visible()

    step('meanwhile the author sees the review but no vote form, and a forged vote is refused')
    page = actor("expert").page
    page.goto(review_path)
    expect(page.locator("#version-state")).to_have_attribute("data-state", "in_review")
    expect(page.locator("#vote-form")).to_have_count(0)
    expect(page.locator("#vote-why-not")).to_contain_text("the author cannot vote")
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    forged = page.request.post(f"{review_path}/vote", form={
        "csrf_token": token, "decision": "approve", "comment": ""})
    assert forged.status == 403, forged.status
    page.reload()
    expect(page.locator('#votes li.vote[data-decision="approve"]')).to_have_count(0)

    step('member 1 sends it back to the author')
    page = actor("member1").page
    page.get_by_label("What must change").fill("Cite the 2024 update of the bike factor.")
    page.get_by_role("button", name="Request changes", exact=True).click()
    member1.flash("Sent back to the author.")
    member1.state("changes_requested")
    page.locator(f'#diff tr.line-comments[data-line="{factor_line}"]').scroll_into_view_if_needed()
    shots.take(page, "review-changes-requested")

    step('the expert revises and resubmits')
    expert = actor("expert")
    page = expert.page
    page.goto(review_path)
    expert.state("changes_requested")
    expect(page.locator("#comments")).to_contain_text("Cite the 2024 update")
    page.get_by_role("link", name="Edit", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/editor/{version_id}$"))
    source = page.get_by_label("Methodology source")
    source.fill(version_110(revised=True))
    expect(page.locator("#submission")).to_have_attribute("data-submittable", "true")
    page.get_by_role("button", name="Save", exact=True).click()
    expert.flash("Saved 1.1.0.")
    expect(page.get_by_label("Methodology source")).to_have_value(version_110(revised=True))
    page.get_by_role("button", name="Resubmit for review").click()
    expert.flash("Submitted for review.")
    expert.state("resubmitted")

    step('member 1 opens round 2: no vote counts any more')
    page = actor("member1").page
    page.goto(review_path)
    page.get_by_role("button", name="Open the review").click()
    member1.flash("The review is open.")
    member1.state("in_review")
    expect(page.locator("#review-round")).to_have_attribute("data-round", "2")
    quorum = page.locator("#quorum")
    expect(quorum).to_have_attribute("data-counted", "0")
    expect(quorum.locator(".verdict")).to_have_text("quorum not met")
    expect(page.locator('#votes li.vote[data-counts="true"]')).to_have_count(0)
    old_vote = page.locator('#votes li.vote[data-round="1"]')
    expect(old_vote).to_contain_text("no longer counts")
    expect(page.locator("#vote-form")).to_be_visible()
    shots.take(page, "review-round-2")

    step('three members approve')
    for n, key in enumerate(["member1", "member2", "member3"], start=1):
        member = actor(key)
        page = member.page
        if key != "member1":  # the review waits on their dashboard
            page.goto("/")
            page.locator("#pending .pending-votes li").filter(
                has_text=f"{METHODOLOGY} 1.1.0").get_by_role("link").first.click()
            expect(page).to_have_url(re.compile(rf"{review_path}$"))
        page.get_by_role("radio", name="approve", exact=True).check()
        page.get_by_role("button", name="Cast vote").click()
        member.flash("Your vote is recorded.")
        expect(page.locator("#quorum")).to_have_attribute("data-approvals", str(n))
    expect(page.locator("#quorum")).to_have_attribute("data-met", "true")
    expect(page.locator("#quorum .verdict")).to_have_text("quorum met")
    expect(page.locator('#votes li.vote[data-counts="true"][data-decision="approve"]')
           ).to_have_count(3)
    shots.take(page, "review-quorum-met", full_page=True)
    page.evaluate("window.scrollTo(0, 0)")
    shots.take(page, "review")

    step('the administrator approves and publishes')
    admin = actor("admin")
    page = admin.page
    page.goto(review_path)
    expect(page.locator("#vote-why-not")).to_be_visible()  # not a member: no vote
    page.get_by_role("button", name="Approve", exact=True).click()
    admin.flash("Approved.")
    admin.state("approved")
    today = page.get_by_label("In effect from").input_value()
    assert dt.date.fromisoformat(today) >= dt.date.today() - dt.timedelta(days=1)
    page.get_by_role("button", name="Publish", exact=True).click()
    admin.flash("Published.")
    admin.state("published")
    expect(page.locator("#frozen-note")).to_be_visible()
    expect(page.locator("#edit-link")).to_have_count(0)

    step('the catalogue shows 1.1.0 published; the methodology page too, 1.0.0 superseded')
    admin.nav("Catalogue")
    page.get_by_label("Search").fill("shared-bike")
    page.get_by_role("button", name="Search", exact=True).click()
    row = page.locator(f'tr[data-methodology="{METHODOLOGY}"]')
    expect(row.locator("td").nth(1)).to_have_text("1.1.0")
    expect(row.locator("td").nth(2)).to_have_text(re.compile("published", re.I))
    shots.take(page, "catalogue")
    row.get_by_role("link").first.click()
    expect(page).to_have_url(re.compile(rf"/methodologies/{re.escape(METHODOLOGY)}"))
    history = page.locator("#history")
    expect(history.locator('tr[data-version="1.1.0"]')).to_contain_text(
        re.compile("published", re.I))
    expect(history.locator('tr[data-version="1.0.0"]')).to_contain_text(
        re.compile("superseded", re.I))
    expect(page.locator("#source")).to_contain_text("2024 update of the enterprise standard")
    shots.take(page, "methodology-page")

    step('the dashboard')
    admin.nav("Dashboard")
    expect(page.locator("#recent")).to_contain_text(f"{METHODOLOGY} 1.1.0")
    shots.take(page, "dashboard")

    step('the audit log shows the story, and the chain verifies')
    admin.nav("Audit log")
    page.goto(f"/audit?object_type=methodology_version&object_id={version_id}")
    actions = set(page.locator("table.audit tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.action)"))
    assert {"version.create", "version.submit", "version.open_review", "comment.add",
            "vote.cast", "version.request_changes", "version.revise", "version.resubmit",
            "version.approve", "version.publish"} <= actions, actions
    page.goto("/audit")
    page.get_by_role("button", name="Verify the chain").click()
    admin.flash("The audit chain is intact")
    shots.take(page, "audit-log")
    verified = server.tanpu("audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "audit chain ok" in verified.stdout
