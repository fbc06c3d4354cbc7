"""The audit log page (filters, pages, CSV export, chain check) and the dashboard (counts
by state, what waits for the signed-in user, recent activity)."""

from __future__ import annotations

import csv
import datetime as dt
import io

from sqlalchemy import func, select

from registry import users, workflow
from registry.models import AuditEntry
from tests.webui.corekit import *  # noqa: F401,F403 - fixtures
from tests.webui.corekit import BUNDLED, METHODOLOGY, rows, text_of


def _count(site, *where) -> int:
    with site.db.read() as s:
        return s.scalar(select(func.count()).select_from(AuditEntry).where(*where))


def _seqs(response) -> list[int]:
    return [int(x) for x in rows(response, "seq")]


# ---------------------------------------------------------------- audit
def test_audit_page_lists_the_newest_first_with_pages(site):
    site.app.config["AUDIT_PAGE_SIZE"] = 25
    client = site.login(site.reg.admin)
    total = _count(site)
    first = client.get("/audit")
    assert first.status_code == 200
    seqs = _seqs(first)
    assert seqs == list(range(total, total - 25, -1))
    last = client.get(f"/audit?page={-(-total // 25)}")
    assert _seqs(last)[-1] == 1
    assert f"共 {total} 条" in text_of(first)


def test_audit_filters_actor_action_object_and_dates(site):
    reg = site.reg
    client = site.login(reg.admin)
    # the system (the seed and the command line)
    system = _seqs(client.get("/audit?actor=system"))
    assert system and len(system) == _count(site, AuditEntry.actor_id.is_(None))
    # an actor by email (part of it), by name, by id
    seeder = site.user_id("system@tanpu.local")
    by_email = _seqs(client.get("/audit?actor=system@tanpu"))
    assert by_email and len(by_email) == min(50, _count(site, AuditEntry.actor_id == seeder))
    assert _seqs(client.get(f"/audit?actor={seeder}")) == by_email
    # an action, and a family of actions
    published = client.get("/audit?action=version.publish")
    assert rows(published, "action") == ["version.publish"] * BUNDLED
    family = set(rows(client.get("/audit?action=committee."), "action"))
    assert family == {"committee.create", "committee.add_member"}
    # an object
    with site.db.read() as s:
        vid = workflow.find_version(s, "cn.hello.shared-bike", "1.0.0").id
    about = client.get(f"/audit?object_type=methodology_version&object_id={vid}")
    assert rows(about, "action") == ["version.publish", "version.approve", "vote.cast",
                                     "vote.cast", "vote.cast", "version.open_review",
                                     "version.submit", "version.create"]
    # dates are local (Asia/Shanghai) days
    today = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))).date()
    assert len(_seqs(client.get(f"/audit?from={today}&to={today}"))) == min(50, _count(site))
    future = client.get(f"/audit?from={today + dt.timedelta(days=1)}")
    assert _seqs(future) == [] and "没有符合条件的记录" in text_of(future)
    assert _seqs(client.get(f"/audit?to={today - dt.timedelta(days=1)}")) == []
    bad = client.get("/audit?from=yesterday")
    assert bad.status_code == 200 and "yesterday 不是日期" in text_of(bad)


def test_audit_csv_export_follows_the_filters(site):
    reg = site.reg
    with site.db.unit_of_work() as s:  # a name a spreadsheet would run as a formula
        users.create_user(s, reg.admin, email="formula@tanpu.test",
                          name='=HYPERLINK("http://evil.example","点我")', roles=["expert"])
    client = site.login(reg.admin)
    response = client.get("/audit.csv?action=version.publish")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="tanpu-audit-')
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")
    table = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    assert len(table) == BUNDLED
    assert {r["action"] for r in table} == {"version.publish"}
    assert {r["actor_email"] for r in table} == {"system@tanpu.local"}
    first = table[0]
    assert first["at_utc"].endswith("Z") and first["hash"] and first["prev_hash"]
    assert '"methodology": "cn.' in first["details"]
    everything = list(csv.DictReader(io.StringIO(
        client.get("/audit.csv").get_data(as_text=True).lstrip("\ufeff"))))
    assert len(everything) == _count(site)
    assert [int(r["seq"]) for r in everything] == list(range(1, len(everything) + 1))
    created = next(r for r in everything if r["action"] == "user.create"
                   and "formula@" in r["details"])
    assert created["details"].startswith("{")  # JSON does not start a formula
    assert "点我" in created["details"]  # Chinese kept as it is
    # the page links to the export with the same filters
    page = client.get("/audit?action=version.publish&actor=system")
    assert "/audit.csv?actor=system&amp;action=version.publish" in page.get_data(as_text=True)


def test_csv_cells_that_would_be_formulas_are_quoted():
    from webui.views.audit import _cell
    assert _cell('=HYPERLINK("x")') == "'=HYPERLINK(\"x\")"
    assert _cell("+1") == "'+1" and _cell("@a") == "'@a" and _cell("ok") == "ok"


def test_verify_the_chain_from_the_page(site):
    client = site.login(site.reg.admin)
    response = client.post("/audit/verify", follow_redirects=True)
    assert "审计链完整" in text_of(response) and "条账本记录" in text_of(response)


def test_the_chain_head_is_public(site):
    """Anyone can copy the head without signing in (to check the chain against later)."""
    response = site.app.test_client().get("/audit/head")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    with site.db.read() as s:
        newest = s.scalar(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1))
        assert response.get_json() == {"seq": newest.seq, "hash": newest.hash,
                                       "at": newest.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}


# ---------------------------------------------------------------- dashboard
def test_dashboard_counts_versions_by_state(site):
    reg = site.reg
    reg.to_state("in_review", "1.0.0", METHODOLOGY)
    page = site.login(reg.admin).get("/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    text = text_of(page)
    assert "各状态版本数" in text
    assert f'data-state="published"><div class="n">{BUNDLED}</div>' in html
    assert 'data-state="in_review"><div class="n">1</div>' in html
    # an integrator counts only what they may see
    html = site.new_client(reg.integrator).get("/").get_data(as_text=True)
    assert 'data-state="in_review"><div class="n">0</div>' in html


def test_dashboard_lists_the_reviews_waiting_for_the_members_vote(site):
    reg = site.reg
    vid = reg.to_state("in_review", "1.0.0", METHODOLOGY)
    member = site.new_client(reg.members[0])
    assert rows(member.get("/"), "pending-vote") == ["test.transit 1.0.0"]
    # once they voted it no longer waits for them
    with reg.uow() as s:
        workflow.vote(s, reg.members[0], vid, "approve")
    page = member.get("/")
    assert rows(page, "pending-vote") == []
    assert "您已在 1 个进行中的评审中投票" in text_of(page)
    assert rows(site.new_client(reg.members[1]).get("/"), "pending-vote") == ["test.transit 1.0.0"]
    # the author and the members of other committees are not asked
    for who in (reg.author, reg.outsider, reg.expert):
        assert rows(site.new_client(who).get("/"), "pending-vote") == []
    # the author sees it among their versions in progress
    assert rows(site.new_client(reg.author).get("/"), "mine") == ["test.transit 1.0.0"]


def test_dashboard_shows_what_waits_for_an_administrator(site):
    reg = site.reg
    reg.to_state("approved", "1.0.0", METHODOLOGY)
    reg.to_state("submitted", "1.0.0", "test.other")
    page = site.login(reg.admin).get("/")
    assert rows(page, "to-publish") == ["test.transit 1.0.0"]
    assert rows(page, "to-open") == ["test.other 1.0.0"]
    assert "已批准，待发布" in text_of(page)
    # a committee member may open the review of their committee's submissions
    assert rows(site.new_client(reg.members[0]).get("/"), "to-open") == ["test.other 1.0.0"]
    assert rows(site.new_client(reg.integrator).get("/"), "to-open") == []


def test_dashboard_recent_activity(site):
    reg = site.reg
    page = site.login(reg.admin).get("/")
    recent = rows(page, "action")
    assert recent and len(recent) <= 12
    assert recent[0] == "version.publish"  # the seed's last step
    # others see lifecycle events of what they may see, not user administration
    other = rows(site.new_client(reg.integrator).get("/"), "action")
    assert other and all(a.startswith("version.") for a in other)


def test_hostile_filters_find_nothing_instead_of_failing(site):
    """Issue 17: /audit?actor=99999999999999999999 answered 500 (and the CSV broke mid-way);
    a NUL in a filter did on PostgreSQL."""
    client = site.login(site.reg.admin)
    for query in ("actor=99999999999999999999", "from=0001-01-01&to=9999-12-31"):
        page = client.get(f"/audit?{query}")
        assert page.status_code == 200, query
        export = client.get(f"/audit.csv?{query}")
        assert export.status_code == 200 and export.get_data(as_text=True).lstrip("\ufeff").startswith("seq,"), query
    for query in ("actor=x%00y", "action=a%00", "object_id=%00"):  # a NUL: refused on every route
        for path in ("/audit", "/audit.csv"):
            refused = client.get(f"{path}?{query}")
            assert refused.status_code == 400 and "NUL" in refused.get_data(as_text=True), query
    assert _seqs(client.get("/audit?actor=99999999999999999999")) == []
