"""Issue 15, item 3: which version is current is decided once (workflow.currency), and the
methodology page, the catalogue and the API agree; the page shows "in force", "scheduled
from <date>" and "in grace until <date>" with the dates (Flask test client, SQLite and
PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

from registry import workflow
from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures
from tests.webui.reviewkit import METHODOLOGY, source, text_of


def shanghai_today() -> dt.date:
    return dt.datetime.now(ZoneInfo("Asia/Shanghai")).date()


def standing_cells(html: str) -> dict[str, str]:
    rows = re.findall(r'<tr[^>]*data-version="([^"]+)">(.*?)</tr>', html, re.S)
    return {version: re.search(r'data-standing="([^"]*)"', row).group(1) for version, row in rows}


def test_a_version_taking_effect_tomorrow_is_scheduled_and_its_predecessor_in_force(web):
    today = shanghai_today()
    tomorrow = today + dt.timedelta(days=1)
    web.published("1.0.0", dt.date(2024, 1, 1))
    web.published("1.1.0", tomorrow, source(METHODOLOGY, "1.1.0"))
    with web.reg.db.read() as s:
        found = workflow.currency(s, METHODOLOGY)
        assert found.current.version == "1.0.0"
        by_version = {v.version: found.standing[v.id] for v in
                      s.scalars(workflow.select(workflow.MethodologyVersion))}
    assert by_version["1.0.0"] == workflow.Standing("in_force", dt.date(2024, 1, 1), today)
    assert by_version["1.1.0"] == workflow.Standing("scheduled", tomorrow, None)

    page = web.login(web.reg.members[0]).get(f"/methodologies/{METHODOLOGY}")
    html = page.get_data(as_text=True)
    assert 'data-version="1.0.0"' in html and '<tr class="selected" data-version="1.0.0">' in html
    assert standing_cells(html) == {"1.1.0": "scheduled", "1.0.0": "in_force"}
    text = text_of(page)
    assert f"scheduled from {tomorrow.isoformat()}" in text
    assert f"in force until {today.isoformat()}" in text
    assert f"version 1.1.0 takes effect on {tomorrow.isoformat()}" in text
    scheduled = text_of(web.client.get(f"/methodologies/{METHODOLOGY}/versions/1.1.0"))
    assert f"Scheduled: this version takes effect on {tomorrow.isoformat()}" in scheduled
    catalogue = web.client.get("/methodologies").get_data(as_text=True)
    assert "1.0.0" in catalogue

    api = web.client.get("/api/v1/methodologies", headers=web.api(web.token())).get_json()
    [item] = api["items"]
    assert item["current_version"] == "1.0.0"
    assert {v["version"]: v["standing"] for v in item["versions"]} == {
        "1.0.0": {"kind": "in_force", "since": "2024-01-01", "until": today.isoformat()},
        "1.1.0": {"kind": "scheduled", "since": tomorrow.isoformat(), "until": None}}


def test_a_superseded_version_in_grace_shows_the_grace_periods_last_day(web):
    today = shanghai_today()
    took_effect = today - dt.timedelta(days=10)
    web.published("1.0.0", dt.date(2024, 1, 1))
    web.published("1.1.0", took_effect, source(METHODOLOGY, "1.1.0"), grace_days=30)
    last = took_effect + dt.timedelta(days=29)
    page = web.login(web.reg.members[0]).get(f"/methodologies/{METHODOLOGY}/versions/1.0.0")
    html = page.get_data(as_text=True)
    assert standing_cells(html) == {"1.1.0": "in_force", "1.0.0": "in_grace"}
    assert f"in grace until {last.isoformat()}" in text_of(page)
    assert 'id="standing-notice" data-standing="in_grace"' in html
    zh = web.new_client(web.reg.members[0], lang="zh").get(
        f"/methodologies/{METHODOLOGY}/versions/1.0.0").get_data(as_text=True)
    assert "宽限期至" in zh
    api = web.client.get("/api/v1/methodologies", headers=web.api(web.token())).get_json()
    standing = {v["version"]: v["standing"] for v in api["items"][0]["versions"]}
    assert standing["1.0.0"] == {"kind": "in_grace", "since": "2024-01-01", "until": last.isoformat()}
    assert api["items"][0]["current_version"] == "1.1.0"
    # the grace period over: ended
    with web.reg.db.read() as s:
        later = workflow.currency(s, METHODOLOGY, as_of=last + dt.timedelta(days=1))
        old = workflow.find_version(s, METHODOLOGY, "1.0.0")
        assert later.standing[old.id].kind == "ended"


# ---------------------------------------------------------------- the effective date (issue 15, item 2)
def _publish_form(html: str, form_id: str = "publish-form") -> str:
    return re.search(rf'<form[^>]*id="{form_id}".*?</form>', html, re.S).group(0)


def test_the_publish_form_defaults_to_the_methodologys_own_effective_date(web):
    reg = web.reg
    vid = web.to_review(web.draft("1.0.0", source(METHODOLOGY, "1.0.0")))  # effective from 2021-12-16
    reg.votes(vid, "approve", "approve", "approve")
    admin = web.login(reg.admin)
    assert admin.post(f"/review/{vid}/approve").status_code == 303
    form = _publish_form(admin.get(f"/review/{vid}").get_data(as_text=True))
    assert 'value="2021-12-16"' in form and 'data-written="2021-12-16"' in form
    assert "The methodology says: effective from 2021-12-16" in form
    assert re.search(r'class="small warning effective-differs" hidden', form)  # the same date
    versions = admin.get("/admin/versions").get_data(as_text=True)
    assert 'name="effective_from" value="2021-12-16"' in versions
    # before the methodology's own date: refused, it would apply to nothing
    refused = admin.post(f"/review/{vid}/publish", data={"effective_from": "2021-01-01"})
    assert refused.status_code == 422 and "effective from 2021-12-16" in text_of(refused)
    # a later date: published, with a warning; one date shown afterwards
    later = admin.post(f"/review/{vid}/publish", data={"effective_from": "2022-03-01"},
                       follow_redirects=True)
    assert "not from the date the methodology says (2021-12-16)" in text_of(later)
    page = text_of(admin.get(f"/methodologies/{METHODOLOGY}"))
    assert "from 2022-03-01" in page and "2021-12-16 (as written)" not in page
    api = web.client.get("/api/v1/methodologies", headers=web.api(web.token())).get_json()
    assert api["items"][0]["versions"][0]["effective_from"] == "2022-03-01"


def test_a_new_version_keeping_the_header_date_defaults_to_today_and_warns(web):
    """1.1.0 keeps `effective from 2021-12-16`, which 1.0.0 already covers: the default is
    the first day it may take effect (today), and the warning shows without typing."""
    reg = web.reg
    web.published("1.0.0", dt.date(2024, 1, 1))
    vid = web.to_review(web.draft("1.1.0", source(METHODOLOGY, "1.1.0")))
    reg.votes(vid, "approve", "approve", "approve")
    admin = web.login(reg.admin)
    assert admin.post(f"/review/{vid}/approve").status_code == 303
    form = _publish_form(admin.get(f"/review/{vid}").get_data(as_text=True))
    assert f'value="{shanghai_today().isoformat()}"' in form
    assert re.search(r'class="small warning effective-differs">', form)  # shown, not hidden
    with reg.db.read() as s:
        dates = workflow.effective_date(s, workflow.get_version(s, vid))
        assert (dates.written, dates.earliest, dates.differs) == (
            dt.date(2021, 12, 16), dt.date(2024, 1, 2), True)
