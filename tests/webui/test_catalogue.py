"""The catalogue: every methodology with its state, version, domain, activity types and
issuer; search, filters, sorting, pages; who sees drafts; empty states."""

from __future__ import annotations

from registry import migrate, users, workflow
from registry.db import Database
from tests.webui.corekit import *  # noqa: F401,F403 - fixtures
from tests.registry.helpers import Registry
from tests.webui.corekit import BUNDLED, METHODOLOGY, Site, make_app, rows, source, text_of


def test_every_bundled_methodology_is_listed_with_what_describes_it(site):
    page = site.login(site.reg.integrator).get("/methodologies")
    assert page.status_code == 200
    listed = rows(page, "methodology")
    assert len(listed) == BUNDLED and "cn.shenzhen.public-transit" in listed
    assert METHODOLOGY not in listed  # no version yet
    text = text_of(page)
    assert "深圳市低碳公共出行碳普惠方法学（试行）" in text
    assert "transit_trip" in text and "深圳市生态环境局" in text and "2021-12-16" in text
    assert rows(page, "state") == ["published"] * BUNDLED
    assert "交通" in text and "能源" in text  # domains, in Chinese by default


def test_search_by_title_id_issuer_and_activity(site):
    client = site.login(site.reg.expert)
    def found(q):
        return rows(client.get("/methodologies", query_string={"q": q}), "methodology")
    assert set(found("深圳")) == {"cn.shenzhen.household-electricity", "cn.shenzhen.public-transit"}
    assert found("SHENZHEN public") == ["cn.shenzhen.public-transit"]  # words, any case
    assert set(found("武碳江湖")) == {"cn.wuhan.metro-bike", "cn.wuhan.electricity-saving",
                                  "cn.wuhan.green-commute-loan"}
    assert found("pv_generation") == ["cn.rooftop-pv-grid"]
    assert found("T/CSAE 235") == ["cn.ev-trip"]
    page = client.get("/methodologies", query_string={"q": "no such thing"})
    assert rows(page, "methodology") == []
    assert "没有匹配的方法学" in text_of(page) and "清除筛选条件" in text_of(page)


def test_filters_by_domain_activity_and_state(site):
    client = site.login(site.reg.admin)
    energy = rows(client.get("/methodologies?domain=energy"), "methodology")
    assert set(energy) == {"cn.rooftop-pv-grid", "cn.wuhan.electricity-saving",
                           "cn.shenzhen.household-electricity"}
    assert rows(client.get("/methodologies?activity=bike_ride"), "methodology") == [
        "cn.hello.shared-bike"]
    assert len(rows(client.get("/methodologies?state=published"), "methodology")) == BUNDLED
    assert rows(client.get("/methodologies?state=suspended"), "methodology") == []
    both = rows(client.get("/methodologies?domain=transport&q=metro"), "methodology")
    assert set(both) == {"cn.wuhan.metro-bike", "cn.guangzhou.metro-trip",
                         "cn.shenzhen.public-transit", "cn.beijing.maas-green-trip",
                         "cn.wuhan.green-commute-loan"}


def test_pages(site):
    site.app.config["CATALOGUE_PAGE_SIZE"] = 4
    client = site.login(site.reg.admin)
    pages = -(-BUNDLED // 4)
    first = client.get("/methodologies?sort=id")
    third = client.get(f"/methodologies?sort=id&page={pages}")  # the last
    seen = sum((rows(client.get(f"/methodologies?sort=id&page={p}"), "methodology")
                for p in range(1, pages + 1)), [])
    assert seen == sorted(seen) and len(seen) == BUNDLED and len(set(seen)) == BUNDLED
    assert len(rows(first, "methodology")) == 4 and len(rows(third, "methodology")) == BUNDLED - 4 * (pages - 1)
    assert f"第 1–4 项，共 {BUNDLED} 项方法学" in text_of(first)
    assert 'href="/methodologies?sort=id&amp;page=2"' in first.get_data(as_text=True)
    # a page past the end shows the last; a bad page number the first
    assert rows(client.get("/methodologies?sort=id&page=99"), "methodology") == rows(
        third, "methodology")
    assert rows(client.get("/methodologies?sort=id&page=x"), "methodology") == rows(
        first, "methodology")


def test_drafts_are_listed_only_for_those_who_may_see_them(site):
    reg = site.reg
    with reg.uow() as s:
        workflow.create_version(s, reg.author, METHODOLOGY, "1.0.0", source(METHODOLOGY, "1.0.0"))
    for user, sees in ((reg.author, True), (reg.admin, True), (reg.members[0], True),
                       (reg.expert, False), (reg.integrator, False), (reg.outsider, False)):
        page = site.new_client(user).get("/methodologies")
        assert (METHODOLOGY in rows(page, "methodology")) is sees, user
    page = site.new_client(reg.author).get("/methodologies?state=draft")
    assert rows(page, "methodology") == [METHODOLOGY]


def test_a_newer_version_in_review_is_mentioned_beside_the_published_one(site):
    reg = site.reg
    text = source("cn.shenzhen.public-transit", "1.1.0").replace(
        "methodology cn.shenzhen.public-transit", "methodology cn.shenzhen.public-transit", 1)
    with reg.uow() as s:
        workflow.create_version(s, reg.author, "cn.shenzhen.public-transit", "1.1.0", text)
    page = site.new_client(reg.admin).get("/methodologies?q=shenzhen public")
    assert rows(page, "state") == ["published"]  # the version in force is shown
    assert "版本 1.1.0：草稿" in text_of(page)


def test_an_empty_catalogue_says_how_to_fill_it(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'empty.db'}", durable=False)
    try:
        migrate.upgrade(database)
        with database.unit_of_work() as s:
            uid = users.create_user(s, None, email="a@tanpu.test", name="A",
                                    roles=["administrator"]).id
        app = make_app(database)
        client = Site(Registry(database), app, app.test_client(), ()).login(uid)
        page = client.get("/methodologies")
        assert page.status_code == 200 and "尚无方法学" in text_of(page)
        assert "tanpu seed" in text_of(page)
        dashboard = client.get("/")
        assert dashboard.status_code == 200 and "暂无待办事项" not in text_of(dashboard)
        audit_page = client.get("/audit?from=2000-01-01&to=2000-01-02")
        assert "没有符合条件的记录" in text_of(audit_page)
    finally:
        database.dispose()
