"""The carbon-account administration pages: the empty state, creating accounts with the
form, the filtered and paginated list, an account's page (parent chain, children,
domains, identities, the rolled-up balance in kg and points), freeze / unfreeze / close
with CSRF as in production; and every account route refused to non-administrators."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from registry import accounts, audit, users
from registry.models import CreditBatch, CreditEntry
from tests.webui.corekit import *  # noqa: F401,F403 - fixtures
from tests.webui.corekit import csrf_token, no_traceback, rows, text_of

SHENZHEN_ID = "cn.shenzhen.public-transit"


def _routes(account_id):
    return [("GET", "/admin/accounts", {}), ("GET", f"/admin/accounts/{account_id}", {}),
            ("POST", "/admin/accounts", {"kind": "region"}),
            ("POST", f"/admin/accounts/{account_id}/status", {"action": "freeze"})]


def _credit(site, account_id, mg, points):
    """A ledger entry of `account_id` under the seeded Shenzhen methodology."""
    with site.db.read() as s:
        from registry import workflow
        v = workflow.find_version(s, SHENZHEN_ID, "1.0.0")
    now = dt.datetime(2024, 5, 20, tzinfo=dt.timezone.utc)
    with site.db.engine.begin() as c:
        batch = c.execute(sa.insert(CreditBatch.__table__).returning(CreditBatch.__table__.c.id),
                          {"idempotency_key": f"k{account_id}", "request_digest": "d",
                           "actor_id": site.reg.integrator, "methodology_id": SHENZHEN_ID,
                           "version": v.version, "content_hash": v.content_hash,
                           "created_at": now}).scalar_one()
        c.execute(sa.insert(CreditEntry.__table__), {
            "batch_id": batch, "integrator_id": site.reg.integrator, "account": str(account_id), "methodology_id": SHENZHEN_ID,
            "version": v.version, "content_hash": v.content_hash, "record_id": f"r{account_id}",
            "activity_time": now, "reduction_mg": mg, "points": points, "bonus": 0,
            "status": "credited", "reason": "", "credited_at": now})


def test_create_list_and_show_accounts(site):
    reg = site.reg
    client = site.login(reg.admin)
    empty = client.get("/admin/accounts")
    assert empty.status_code == 200 and "还没有碳账户" in text_of(empty)
    # the form: a region, then a unit below it
    response = client.post("/admin/accounts", data={"kind": "region", "name": "衢州市",
                                                    "domains": ["transport", "forestry"]})
    assert response.status_code == 303
    region = int(response.location.rsplit("/", 1)[1])
    response = client.post("/admin/accounts", data={"kind": "unit", "parent": str(region),
                                                    "name": "公交集团"})
    unit = int(response.location.rsplit("/", 1)[1])
    bad = client.post("/admin/accounts", data={"kind": "region", "parent": str(unit)},
                      follow_redirects=True)
    assert "未能创建账户" in text_of(bad) and "账户只能挂在" in text_of(bad)
    with reg.uow() as s:
        person = accounts.resolve(s, reg.integrator, "rider-9")
        accounts.set_parent(s, reg.admin, person.id, unit)
        person = person.id
    _credit(site, person, 1_250_000, 1250)
    _credit(site, unit, 250_000, 250)

    page = client.get(f"/admin/accounts/{person}", query_string={"lang": "en"})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert rows(page, "ancestor") == [str(region), str(unit)]  # the chain, the top first
    assert rows(page, "identity") == ["rider-9"] and "integrator" in text_of(page)
    assert rows(page, "status") == ["active"]
    assert 'data-action="freeze"' in html and 'data-action="close"' in html
    assert 'data-action="unfreeze"' not in html
    unit_page = client.get(f"/admin/accounts/{unit}", query_string={"lang": "en"})
    assert rows(unit_page, "child") == [str(person)]
    text = text_of(unit_page)
    assert "0.250 kg" in text and "1.500 kg" in text and "1500" in text
    region_page = client.get(f"/admin/accounts/{region}")
    assert "1.500 kg" in text_of(region_page) and "衢州市" in text_of(region_page)
    assert rows(region_page, "domain") == ["transport", "forestry"]

    # the list: filters, and a page at a time
    assert rows(client.get("/admin/accounts"), "account") == [str(region), str(unit), str(person)]
    assert rows(client.get("/admin/accounts?kind=unit"), "account") == [str(unit)]
    assert rows(client.get(f"/admin/accounts?parent={unit}"), "account") == [str(person)]
    assert rows(client.get("/admin/accounts?parent=0"), "account") == [str(region)]
    nothing = client.get("/admin/accounts?status=frozen")
    assert rows(nothing, "account") == [] and "没有符合条件的账户" in text_of(nothing)
    with reg.uow() as s:
        for _ in range(60):
            accounts.create(s, reg.admin, "project", parent_id=region)
    second = client.get(f"/admin/accounts?parent={region}&page=2")
    assert len(rows(second, "account")) == 11 and 'rel="prev"' in second.get_data(as_text=True)
    assert len(rows(client.get(f"/admin/accounts?parent={region}&page=99"), "account")) == 11


def test_freeze_unfreeze_close_with_csrf(csrf_site):
    site = csrf_site
    reg = site.reg
    with reg.uow() as s:
        account = accounts.create(s, reg.admin, "unit", name="Depot").id
    client = site.login(reg.admin)
    url = f"/admin/accounts/{account}"
    assert client.post(f"{url}/status", data={"action": "freeze"}).status_code == 400  # no token
    for action, status in (("freeze", "frozen"), ("unfreeze", "active"), ("close", "closed")):
        token = csrf_token(client.get(url))
        response = client.post(f"{url}/status", data={"action": action, "csrf_token": token})
        assert response.status_code == 303, action
        with site.db.read() as s:
            assert accounts.get(s, account).status == status
    page = client.get(url, query_string={"lang": "en"})
    assert "data-action" not in page.get_data(as_text=True) and "status is final" in text_of(page)
    token = csrf_token(page)
    again = client.post(f"{url}/status", data={"action": "unfreeze", "csrf_token": token},
                        follow_redirects=True)
    assert "closed" in text_of(again)
    with site.db.read() as s:
        assert [e.action for e in audit.entries_for(s, "account", account)] == [
            "account.create"] + ["account.set_status"] * 3
    assert client.post(f"{url}/status", data={"action": "explode",
                                              "csrf_token": token}).status_code == 400


def test_only_administrators_see_or_change_accounts(site):
    reg = site.reg
    with reg.uow() as s:
        account = accounts.create(s, reg.integrator, "unit").id
    with site.db.read() as s:
        before = audit.head(s)
    for who in (reg.expert, reg.integrator, reg.outsider):
        client = site.new_client(who)
        for method, url, form in _routes(account):
            response = client.open(url, method=method, data=form)
            assert response.status_code == 403, (who, url)
            no_traceback(response)
    with site.db.read() as s:
        assert audit.head(s) == before
    assert site.new_client().get("/admin/accounts").status_code == 302
    assert site.login(reg.admin).get("/admin/accounts/999999").status_code == 404


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_account_pages_render(site, lang):
    reg = site.reg
    with reg.uow() as s:
        region = accounts.create(s, reg.admin, "region", name="R", domains=["energy"]).id
        accounts.link(s, reg.admin, reg.integrator, "r-1", region)
    client = site.login(reg.admin)
    for url in ("/admin/", "/admin/accounts", f"/admin/accounts/{region}"):
        response = client.get(url, query_string={"lang": lang})
        assert response.status_code == 200, url
    index = client.get("/admin/", query_string={"lang": lang}).get_data(as_text=True)
    assert 'href="/admin/accounts"' in index
    assert ("碳账户" in index) == (lang == "zh")
    with site.db.read() as s:
        assert users.get(s, reg.integrator).name in text_of(client.get(f"/admin/accounts/{region}"))
