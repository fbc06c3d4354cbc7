"""Administration pages: users and roles, committees (members, quorum), publish / suspend /
reinstate / retire; every action audited; and every admin route refused (403) to anyone
who is not an administrator, whatever the page shows."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from registry import audit, users, workflow
from registry.models import AuditEntry, Committee, User
from tests.webui.corekit import *  # noqa: F401,F403 - fixtures
from tests.webui.corekit import METHODOLOGY, PASSWORD, make_app, no_traceback, rows, text_of

SHENZHEN = "cn.shenzhen.public-transit"


def _version_id(site, methodology_id=SHENZHEN, version="1.0.0") -> int:
    with site.db.read() as s:
        return workflow.find_version(s, methodology_id, version).id


def _routes(site):
    """Every admin route: (method, url, form)."""
    vid = _version_id(site)
    uid, cid = site.reg.expert, site.reg.committee
    return [
        ("GET", "/admin/", {}), ("GET", "/admin/users", {}), ("GET", f"/admin/users/{uid}", {}),
        ("POST", "/admin/users", {"email": "x@tanpu.test", "name": "X", "roles": "expert"}),
        ("POST", f"/admin/users/{uid}/roles", {"role": "administrator", "op": "grant"}),
        ("POST", f"/admin/users/{uid}/active", {"active": "0"}),
        ("POST", f"/admin/users/{uid}/password", {"password": "a new password!",
                                                  "confirm": "a new password!"}),
        ("GET", "/admin/committees", {}), ("GET", f"/admin/committees/{cid}", {}),
        ("POST", "/admin/committees", {"domain": "waste", "name": "W"}),
        ("POST", f"/admin/committees/{cid}/quorum", {"min_votes": "1", "numerator": "1",
                                                     "denominator": "2"}),
        ("POST", f"/admin/committees/{cid}/members", {"user_id": str(site.reg.outsider)}),
        ("POST", f"/admin/committees/{cid}/members/{site.reg.members[0]}/remove", {}),
        ("GET", "/admin/versions", {}),
        ("POST", f"/admin/versions/{vid}/suspend", {"reason": "r"}),
        ("POST", f"/admin/versions/{vid}/retire", {"reason": "r"}),
        ("POST", f"/admin/versions/{vid}/reinstate", {"reason": "r"}),
        ("POST", f"/admin/versions/{vid}/publish", {"effective_from": "2030-01-01"}),
        ("GET", "/audit", {}), ("GET", "/audit.csv", {}), ("POST", "/audit/verify", {}),
    ]


def test_non_administrators_get_403_on_every_admin_route(site):
    reg = site.reg
    with site.db.read() as s:
        before = audit.head(s)
    routes = _routes(site)
    for who in (reg.expert, reg.author, reg.members[0], reg.integrator, reg.outsider):
        client = site.new_client(who)
        for method, url, form in routes:
            response = client.open(url, method=method, data=form)
            assert response.status_code == 403, (who, method, url, response.status_code)
            no_traceback(response)
    with site.db.read() as s:
        assert audit.head(s) == before  # nothing happened
    # signed out: to the sign-in page, not the action
    for method, url, form in routes:
        response = site.new_client().open(url, method=method, data=form)
        assert response.status_code == 302 and "/login" in response.location, url
    # and the nav does not offer what they may not use
    page = site.new_client(reg.expert).get("/")
    assert 'href="/admin/"' not in page.get_data(as_text=True)
    assert 'href="/audit"' not in page.get_data(as_text=True)


def test_the_403_page_says_why(site):
    response = site.new_client(site.reg.expert).get("/admin/users")
    assert response.status_code == 403
    assert "无权操作" in text_of(response) and "需要管理员角色" in text_of(response)
    english = site.new_client(site.reg.expert).get("/admin/users?lang=en")
    assert "needs the administrator role" in text_of(english)


def test_create_a_user_who_can_then_sign_in(site):
    client = site.login(site.reg.admin)
    response = client.post("/admin/users", data={
        "email": "New.Person@Tanpu.test", "name": "新用户", "roles": ["expert", "committee_member"],
        "password": "a long enough password"})
    assert response.status_code == 303
    page = client.get("/admin/users?q=new.person")
    assert rows(page, "user") == ["new.person@tanpu.test"]
    with site.db.read() as s:
        user = users.by_email(s, "new.person@tanpu.test")
        assert user.roles == {"expert", "committee_member"}
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "user.create")
                          .order_by(AuditEntry.seq.desc())).first()
        assert entry.actor_id == site.reg.admin and entry.object_id == str(user.id)
    other = make_app(site.db).test_client()
    response = other.post("/login", data={"email": "new.person@tanpu.test",
                                          "password": "a long enough password"})
    assert response.status_code == 302
    # a bad one comes back with the reason
    response = client.post("/admin/users", data={"email": "not an email", "name": "x",
                                                  "roles": "expert"}, follow_redirects=True)
    assert "未能创建用户" in text_of(response) and "不是电子邮箱地址" in text_of(response)
    # what was typed is still in the form (Chinese first; the English reason with ?lang=en)
    html = response.get_data(as_text=True)
    assert 'name="email" required value="not an email"' in html
    assert 'value="expert" checked' in html
    again = client.get("/admin/users").get_data(as_text=True)  # once only
    assert 'value="not an email"' not in again
    response = client.post("/admin/users?lang=en", data={"email": "not an email", "name": "x",
                                                          "roles": "expert"}, follow_redirects=True)
    assert "not an email address" in text_of(response)


def test_grant_revoke_roles_deactivate_and_set_password(site):
    reg = site.reg
    client = site.login(reg.admin)
    url = f"/admin/users/{reg.expert}"
    client.post(f"{url}/roles", data={"role": "committee_member", "op": "grant"})
    with site.db.read() as s:
        assert "committee_member" in s.get(User, reg.expert).roles
    client.post(f"{url}/roles", data={"role": "committee_member", "op": "revoke"})
    with site.db.read() as s:
        assert "committee_member" not in s.get(User, reg.expert).roles
    response = client.post(f"{url}/roles", data={"role": "wizard", "op": "grant"},
                           follow_redirects=True)
    assert "未知角色 wizard" in text_of(response)
    # password: both fields must agree
    response = client.post(f"{url}/password", data={"password": "one long password",
                                                    "confirm": "another long password"},
                           follow_redirects=True)
    assert "两次输入的密码不一致" in text_of(response)
    client.post(f"{url}/password", data={"password": "one long password",
                                         "confirm": "one long password"})
    login = make_app(site.db).test_client().post("/login", data={
        "email": site.email(reg.expert), "password": "one long password"})
    assert login.status_code == 302
    # deactivate: no sign-in any more; an administrator cannot deactivate themselves
    client.post(f"{url}/active", data={"active": "0"})
    login = make_app(site.db).test_client().post("/login", data={
        "email": site.email(reg.expert), "password": "one long password"})
    assert login.status_code == 401
    response = client.post(f"/admin/users/{reg.admin}/active", data={"active": "0"})
    assert response.status_code == 403
    with site.db.read() as s:
        assert s.get(User, reg.admin).active
    actions = [e.action for e in _audit(site) if e.object_type == "user"
               and e.object_id == str(reg.expert) and e.actor_id == reg.admin]
    assert actions == ["user.grant_role", "user.revoke_role", "user.set_password",
                       "user.deactivate"]


def _audit(site):
    with site.db.read() as s:
        return list(s.scalars(select(AuditEntry).order_by(AuditEntry.seq)))


def test_committees_members_and_quorum(site):
    reg = site.reg
    client = site.login(reg.admin)
    response = client.post("/admin/committees", data={
        "domain": "waste", "name": "废弃物委员会", "min_votes": "2", "numerator": "1",
        "denominator": "2"})
    assert response.status_code == 303
    with site.db.read() as s:
        waste = s.scalar(select(Committee).where(Committee.domain == "waste"))
        assert (waste.min_votes, waste.approval_numerator, waste.approval_denominator) == (2, 1, 2)
    page = client.get("/admin/committees")
    assert "waste" in rows(page, "committee")
    # members: only committee members can join
    client.post(f"/admin/committees/{waste.id}/members", data={"user_id": str(reg.outsider)})
    response = client.post(f"/admin/committees/{waste.id}/members",
                           data={"user_id": str(reg.expert)}, follow_redirects=True)
    assert "需要先拥有委员会成员角色" in text_of(response)
    page = client.get(f"/admin/committees/{waste.id}")
    assert rows(page, "member") == [site.email(reg.outsider)]
    assert "委员会成员人数少于表决规则所需票数" in text_of(page)
    client.post(f"/admin/committees/{waste.id}/members/{reg.outsider}/remove")
    assert rows(client.get(f"/admin/committees/{waste.id}"), "member") == []
    # quorum: a share above one is refused, and nothing changes
    response = client.post(f"/admin/committees/{waste.id}/quorum", data={
        "min_votes": "3", "numerator": "4", "denominator": "3"}, follow_redirects=True)
    assert "未能修改表决规则" in text_of(response)
    client.post(f"/admin/committees/{waste.id}/quorum", data={
        "min_votes": "5", "numerator": "3", "denominator": "4"})
    with site.db.read() as s:
        waste = s.get(Committee, waste.id)
        assert (waste.min_votes, waste.approval_numerator, waste.approval_denominator) == (5, 3, 4)
    actions = [e.action for e in _audit(site) if e.object_type == "committee"
               and e.object_id == str(waste.id)]
    assert actions == ["committee.create", "committee.add_member", "committee.remove_member",
                       "committee.set_quorum"]
    # a domain taken already
    response = client.post("/admin/committees", data={"domain": "waste", "name": "again"},
                           follow_redirects=True)
    assert "已有 waste 领域的委员会" in text_of(response)


def test_suspend_reinstate_retire_a_published_version(site):
    reg = site.reg
    vid = _version_id(site)
    client = site.login(reg.admin)
    page = f"/methodologies/{SHENZHEN}"
    # a reason is required
    response = client.post(f"/admin/versions/{vid}/suspend", data={"reason": " ", "next": page},
                           follow_redirects=True)
    assert "需要填写意见说明理由" in text_of(response)
    assert reg.state(vid) == "published"
    response = client.post(f"/admin/versions/{vid}/suspend",
                           data={"reason": "因子待核实", "next": page})
    assert response.status_code == 303 and response.location == page
    assert reg.state(vid) == "suspended"
    shown = client.get(page)
    assert "此版本已暂停" in text_of(shown) and rows(shown, "state")[0] == "suspended"
    assert "因子待核实" in text_of(shown)  # the reason, in the history
    client.post(f"/admin/versions/{vid}/reinstate", data={"reason": "已核实"})
    assert reg.state(vid) == "published"
    client.post(f"/admin/versions/{vid}/retire", data={"reason": "项目结束"})
    assert reg.state(vid) == "retired"
    # retired is final: the form is gone and a forged request is refused with the reason
    response = client.post(f"/admin/versions/{vid}/reinstate", data={"reason": "x"},
                           follow_redirects=True)
    assert "不能恢复" in text_of(response)
    assert reg.state(vid) == "retired"
    entries = [e for e in _audit(site) if e.object_id == str(vid)
               and e.object_type == "methodology_version"]
    assert [e.action for e in entries][-3:] == ["version.suspend", "version.reinstate",
                                                "version.retire"]
    assert entries[-3].details["reason"] == "因子待核实" and entries[-3].actor_id == reg.admin
    assert client.post(f"/admin/versions/{vid}/explode").status_code == 404
    assert client.post("/admin/versions/999999/suspend", data={"reason": "x"}).status_code == 404


def test_publish_an_approved_version_from_the_publication_page(site):
    reg = site.reg
    vid = reg.to_state("approved", "1.0.0", METHODOLOGY)
    client = site.login(reg.admin)
    page = client.get("/admin/versions")
    assert str(vid) in rows(page, "version-id") and "表决规则已达到" in text_of(page)
    response = client.post(f"/admin/versions/{vid}/publish", data={
        "effective_from": "2030-02-01", "grace_days": "10"})
    assert response.status_code == 303
    version = reg.version(vid)
    assert version.state == "published" and version.effective_from == dt.date(2030, 2, 1)
    # the author, though an administrator, may not publish their own work
    vid2 = reg.to_state("approved", "1.0.0", "test.other", author=reg.admin2)
    response = site.login(reg.admin2).post(f"/admin/versions/{vid2}/publish",
                                           data={"effective_from": "2030-01-01"})
    assert response.status_code == 403 and reg.state(vid2) == "approved"
    # a malformed date comes back with the reason
    response = site.login(reg.admin).post(f"/admin/versions/{vid2}/publish",
                                          data={"effective_from": "tomorrow"},
                                          follow_redirects=True)
    assert "不是日期" in text_of(response) and reg.state(vid2) == "approved"


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_admin_pages_render(site, lang):
    client = site.login(site.reg.admin)
    for url in ("/admin/", "/admin/users", f"/admin/users/{site.reg.expert}",
                "/admin/committees", f"/admin/committees/{site.reg.committee}",
                "/admin/versions"):
        response = client.get(url, query_string={"lang": lang})
        assert response.status_code == 200, url
    users_page = client.get("/admin/users", query_string={"role": "committee_member", "lang": lang})
    listed = rows(users_page, "user")
    assert "member1@tanpu.test" in listed and "expert@tanpu.test" not in listed
