"""Issue 13: the administration pages of reversals and retirements (lists with pagination
and empty states, the reversal form with its reason, the account page's links), in
English and Chinese (Flask test client, SQLite and PostgreSQL)."""

from __future__ import annotations

import re

from registry import retirements
from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures
from tests.webui.reviewkit import text_of
from tests.webui.test_api_rewards import call, entry_id, platform_id
from tests.webui.test_api_state import capped, post, reg, ride  # noqa: F401 - the capped fixture (and its reg)


def test_empty_lists_say_what_to_do(web):
    admin = web.new_client(web.reg.admin)
    reversals = admin.get("/admin/reversals")
    assert reversals.status_code == 200 and "data-empty" in reversals.get_data(as_text=True)
    assert "No reversals" in text_of(reversals)
    retired = admin.get("/admin/retirements")
    assert "No retirements" in text_of(retired) and "tanpu retire" in text_of(retired)
    zh = web.new_client(web.reg.admin, lang="zh")
    assert "暂无冲正" in text_of(zh.get("/admin/reversals"))
    assert "暂无注销" in text_of(zh.get("/admin/retirements"))
    for user in (web.reg.integrator, web.reg.members[0]):  # administrators only
        assert web.new_client(user).get("/admin/reversals").status_code == 403
        assert web.new_client(user).get("/admin/retirements").status_code == 403


def test_an_administrator_reverses_a_credit_from_its_account_page(capped):
    web, token = capped
    post(web, token, [ride("r0", 0), ride("r1", 60, km=2)])
    account = platform_id(web)
    admin = web.new_client(web.reg.admin)
    page = admin.get(f"/admin/accounts/{account}").get_data(as_text=True)
    assert f'href="/admin/reversals?account={account}"' in page
    assert f'href="/admin/retirements?account={account}"' in page
    target = entry_id(web, "r0")
    assert f'href="/admin/credits/{target}/reversal" data-reverse' in page

    form = admin.get(f"/admin/credits/{target}/reversal")
    assert form.status_code == 200 and 'id="reverse-form"' in form.get_data(as_text=True)
    empty = admin.post(f"/admin/credits/{target}/reversal", data={"reason": "  "})
    assert empty.status_code == 422 and "reason is required" in text_of(empty)
    assert web.reg.count("reversals") == 0
    for user in (web.reg.integrator, web.reg.members[0]):
        assert web.new_client(user).post(f"/admin/credits/{target}/reversal",
                                         data={"reason": "x"}).status_code == 403
    done = admin.post(f"/admin/credits/{target}/reversal", data={"reason": "GPS track faked"})
    assert done.status_code == 303 and done.headers["Location"].endswith(f"/admin/accounts/{account}#statement")
    assert web.reg.count("reversals") == 1
    page = admin.get(f"/admin/accounts/{account}").get_data(as_text=True)
    assert re.search(rf'<tr data-entry="{target}">.*?data-reversed', page)
    again = admin.post(f"/admin/credits/{target}/reversal", data={"reason": "twice"})
    assert again.status_code == 409 and "GPS track faked" in text_of(again)  # says when and why
    assert admin.get("/admin/credits/999999/reversal").status_code == 404

    listed = admin.get(f"/admin/reversals?account={account}")
    text = text_of(listed)
    assert "GPS track faked" in text and "r0" in text and "467.000 g" in text and "admin" in text
    assert "冲正" in text_of(web.new_client(web.reg.admin, lang="zh").get("/admin/reversals"))
    other = admin.get(f"/admin/reversals?account={account + 1000}")
    assert "No reversals" in text_of(other)


def test_retired_credits_are_not_offered_for_reversal_and_lists_paginate(capped):
    web, token = capped
    post(web, token, [ride(f"r{i}", 60 * i, km=1) for i in range(3)])
    account = platform_id(web)
    with web.reg.uow() as s:
        for n in range(55):  # 55 retirements of 1 g: two pages of 50
            retirements.retire(s, web.reg.admin, account, 1_000, f"purpose {n}")
    admin = web.new_client(web.reg.admin)
    first = admin.get("/admin/retirements").get_data(as_text=True)
    assert first.count("<tr data-retirement=") == 50 and 'data-total="55"' in first
    assert 'rel="next"' in first and "purpose 54" in first
    second = admin.get("/admin/retirements?page=2").get_data(as_text=True)
    assert second.count("<tr data-retirement=") == 5 and "purpose 0" in second
    beyond = admin.get("/admin/retirements?page=99999999999").get_data(as_text=True)
    assert beyond.count("<tr data-retirement=") == 5  # past the end: the last page
    cert = re.search(r'href="/certificates/([0-9a-f-]+)"', second).group(1)
    assert web.new_client().get(f"/certificates/{cert}").status_code == 200  # public
    form = admin.get(f"/admin/credits/{entry_id(web, 'r0')}/reversal").get_data(as_text=True)
    assert 'id="retired-credit"' in form and 'id="reverse-form"' not in form
    refused = admin.post(f"/admin/credits/{entry_id(web, 'r0')}/reversal", data={"reason": "x"})
    assert refused.status_code == 409
    assert call(web, "get", f"/api/v1/accounts/{account}/wallet", token).get_json()["retirable_mg"] \
        == 3 * 46_700 - 55_000
