"""The review page: the diff against the previous published version, what changes in
meaning, the impact preview, line comments, votes and quorum, resets, and who may see and do
what (Flask test client, SQLite and PostgreSQL)."""

from __future__ import annotations

import io
import re

from registry import workflow
from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures
from tests.webui.reviewkit import METHODOLOGY, faster_metro, source, text_of


def _faster(web) -> tuple[int, int]:
    """1.0.0 published; 1.1.0 (metro factor 46.7 → 50.1 g/km) in review."""
    old = web.published("1.0.0")
    new = web.to_review(web.draft("1.1.0", faster_metro(source(METHODOLOGY, "1.1.0"))))
    return old, new


def _html(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def test_integrators_and_outsiders_see_no_review_page(web):
    reg = web.reg
    _, vid = _faster(web)
    for user in (reg.integrator, reg.expert, reg.outsider):
        client = web.login(user)
        assert client.get(f"/review/{vid}").status_code == 403
        assert client.get(f"/review/{vid}/impact.json").status_code == 403
        assert client.get(f"/review/{vid}/diff.json").status_code == 403
    assert web.login(reg.integrator).get("/review/").status_code == 403
    for user in (reg.author, reg.members[1], reg.admin):
        assert web.login(user).get(f"/review/{vid}").status_code == 200
    queue = _html(web.login(reg.members[1]).get("/review/"))
    assert f'data-version-id="{vid}"' in queue
    assert f'data-version-id="{vid}"' not in _html(web.login(reg.expert).get("/review/"))


def test_diff_against_the_previous_published_version_and_what_changes(web):
    reg = web.reg
    old, vid = _faster(web)
    client = web.login(reg.members[0])
    html = _html(client.get(f"/review/{vid}"))
    line = source().split("\n").index("    metro: 46.7") + 1
    row = re.search(rf'<tr class="replace" id="L{line}"[^>]*>(.*?)</tr>', html, re.S).group(1)
    assert "46" in row and "50" in row and '<span class="seg-changed new">50</span>' in row
    assert 'data-what="parameter" data-kind="changed"' in html
    text = text_of(client.get(f"/review/{vid}"))
    assert "reduction_factor[metro] from 2021-12-16 : 46.7 g/km → 50.1 g/km" in text
    assert "Compared with 1.0.0, the previous published version" in text
    # unchanged stretches are folded, and shown on demand
    assert '<tr class="fold">' in html and '<tr class="fold">' not in _html(client.get(f"/review/{vid}?full=1"))
    body = client.get(f"/review/{vid}/diff.json").get_json()
    assert body["previous"] == "1.0.0" and body["version"] == "1.1.0"
    assert body["stats"]["changed"] >= 4  # the header, the factor and two examples
    replaced = [r for r in body["rows"] if r["kind"] == "replace"]
    assert {"old": "    metro: 46.7", "new": "    metro: 50.1"}.items() <= \
        next(r for r in replaced if r["new_no"] == line).items()
    assert body["changes"] == [{"what": "parameter", "name": "reduction_factor[metro] from 2021-12-16",
                                "old": "46.7 g/km", "new": "50.1 g/km", "kind": "changed"}]


def test_the_first_version_has_nothing_to_compare_with(web):
    vid = web.to_review(web.draft("1.0.0", source()))
    client = web.login(web.reg.admin)
    text = text_of(client.get(f"/review/{vid}"))
    assert "The first version of this methodology" in text
    body = client.get(f"/review/{vid}/impact.json").get_json()
    assert body["old"] == {"ref": None, "totals": None} and body["delta_reduction_mg"] is None
    assert body["new"]["totals"]["records"] == 338
    html = _html(client.get(f"/review/{vid}"))
    assert 'class="diff single"' in html  # one column, not an empty left half
    assert re.search(r'id="impact-check" data-kind="sample" data-changed="0"', html)


def test_impact_preview_shows_the_change_in_total_and_the_records_that_changed(web):
    reg = web.reg
    _, vid = _faster(web)
    client = web.login(reg.members[0])
    body = client.get(f"/review/{vid}/impact.json").get_json()
    assert body["records_name"] == "methodologies/samples/shenzhen-public-transit.csv"
    assert body["records"] == 338
    old, new = body["old"]["totals"], body["new"]["totals"]
    assert body["delta_reduction_mg"] == new["reduction_mg"] - old["reduction_mg"] > 0
    assert new["by_status"] == old["by_status"]  # the same records pass, with more reduction
    changed = body["changed"]
    assert body["changed_count"] == len(changed) > 0
    assert sum(c["delta_reduction_mg"] for c in changed) == body["delta_reduction_mg"]
    first = changed[0]
    assert first["id"] == "sz-00001" and first["old"]["status"] == first["new"]["status"] == "credited"
    # metro rides only, by 50.1/46.7
    assert first["new"]["reduction_mg"] * 467 == first["old"]["reduction_mg"] * 501
    html = _html(client.get(f"/review/{vid}"))
    assert f'id="impact-delta" data-delta-mg="{body["delta_reduction_mg"]}"' in html
    assert f'data-id="sz-00001" data-row="1" data-delta-mg="{first["delta_reduction_mg"]}"' in html
    assert f'id="impact-changed-count">{body["changed_count"]}<' in html


def test_impact_preview_on_uploaded_records(web):
    reg = web.reg
    _, vid = _faster(web)
    client = web.login(reg.members[0])
    csv = ("id,account,mode,distance[km],boarded,alighted\n"
           "u1,a,metro,10,2024-05-20T08:00,2024-05-20T08:30\n"
           "u2,a,ebus,10,2024-05-20T09:00,2024-05-20T09:30\n")
    response = client.post(f"/review/{vid}/impact",
                           data={"file": (io.BytesIO(csv.encode()), "mine.csv")},
                           content_type="multipart/form-data")
    html = _html(response)
    assert 'data-records="2" data-changed="1"' in html
    assert 'id="impact-delta" data-delta-mg="34000"' in html  # 10 km × 3.4 g/km
    assert 'data-id="u1"' in html and 'data-id="u2"' not in html
    bad = client.post(f"/review/{vid}/impact", data={"records": "[1,"})
    assert bad.status_code == 422 and 'id="records-error"' in bad.get_data(as_text=True)


def test_compile_and_example_status_and_why_a_draft_cannot_be_submitted(web):
    reg = web.reg
    vid = web.draft("1.0.0", source(failing_example=True))
    html = _html(web.login(reg.author).get(f"/review/{vid}"))
    assert 'id="compile-status" data-ok="true"' in html
    assert 'id="example-status" data-passed="3" data-failed="1"' in html
    assert "expected reduction 221 g, got 220.58 g (-420 mg)" in html
    assert 'id="submission-problems"' in html
    broken = web.draft("1.1.0", source(METHODOLOGY, "1.1.0", broken=True))
    html = _html(web.login(reg.author).get(f"/review/{broken}"))
    assert 'id="compile-status" data-ok="false"' in html and "E0101" in html


def test_votes_quorum_and_who_may_vote(web):
    reg = web.reg
    _, vid = _faster(web)
    # an expert who is not on the committee, the author, an integrator: refused on the server
    for user in (reg.expert, reg.author, reg.integrator, reg.outsider):
        response = web.login(user).post(f"/review/{vid}/vote",
                                        data={"decision": "approve", "comment": ""})
        assert response.status_code == 403, user
    author_page = _html(web.login(reg.author).get(f"/review/{vid}"))
    assert 'id="vote-form"' not in author_page
    assert "the author cannot vote on their own submission" in author_page
    member = web.new_client(reg.members[0])
    assert member.post(f"/review/{vid}/vote", data={"decision": "approve"}).status_code == 303
    again = member.post(f"/review/{vid}/vote", data={"decision": "reject", "comment": "no"})
    assert again.status_code == 409
    no_reason = web.login(reg.members[1]).post(f"/review/{vid}/vote",
                                               data={"decision": "reject", "comment": ""})
    assert no_reason.status_code == 422
    assert web.login(reg.members[1]).post(
        f"/review/{vid}/vote", data={"decision": "request_changes",
                                     "comment": "cite the 2024 factor"}).status_code == 303
    # a conflict of interest abstains: it counts neither way
    assert web.login(reg.members[2]).post(
        f"/review/{vid}/conflict", data={"comment": "I advised the operator"}).status_code == 303
    html = _html(web.login(reg.admin).get(f"/review/{vid}"))
    assert 'id="quorum" data-met="false" data-counted="2" data-approvals="1" data-min-votes="3"' in html
    assert 'data-decision="abstain" data-round="1" data-voter="member3@tanpu.test"' in html
    assert "conflict of interest" in html
    with reg.db.read() as s:
        q = workflow.quorum(s, vid)
        assert (q.counted, q.abstentions, q.conflicts) == (2, 1, 1)
    assert web.login(reg.admin).post(f"/review/{vid}/approve").status_code == 409  # no quorum
    assert web.login(reg.members[3]).post(f"/review/{vid}/vote",
                                          data={"decision": "approve"}).status_code == 303
    # 3 counted, 2 approving: two thirds
    html = _html(web.login(reg.admin).get(f"/review/{vid}"))
    assert 'data-met="true"' in html
    # a member cannot approve (administrators decide)
    assert web.login(reg.members[0]).post(f"/review/{vid}/approve").status_code == 403
    assert web.login(reg.admin).post(f"/review/{vid}/approve").status_code == 303
    assert reg.state(vid) == "approved"
    assert web.login(reg.admin).post(f"/review/{vid}/publish",
                                     data={"effective_from": "2024-06-01"}).status_code == 303
    assert reg.state(vid) == "published"


def test_an_author_cannot_approve_or_publish_their_own_work(web):
    reg = web.reg
    with reg.uow() as s:  # admin2 is an administrator and an expert: the author here
        vid = workflow.create_version(s, reg.admin2, METHODOLOGY, "1.0.0", source()).id
        workflow.submit(s, reg.admin2, vid)
    client = web.new_client(reg.admin2)
    assert client.post(f"/review/{vid}/open").status_code == 403
    with reg.uow() as s:
        workflow.open_review(s, reg.members[0], vid)
    reg.votes(vid, "approve", "approve", "approve")
    html = _html(client.get(f"/review/{vid}"))
    assert 'id="approve-form"' not in html and "an author cannot approve or publish their own work" in html
    response = client.post(f"/review/{vid}/approve")
    assert response.status_code == 403 and "their own work" in text_of(response)
    assert reg.state(vid) == "in_review"
    assert web.login(reg.admin).post(f"/review/{vid}/approve").status_code == 303
    assert client.post(f"/review/{vid}/publish").status_code == 403
    assert reg.state(vid) == "approved"


def test_a_change_after_a_vote_resets_the_review(web):
    reg = web.reg
    _, vid = _faster(web)
    reg.votes(vid, "approve", "approve")
    author = web.new_client(reg.author)
    response = author.post(f"/editor/{vid}", data={"source": faster_metro(source(METHODOLOGY, "1.1.0"), "51")})
    assert response.status_code == 302
    flashed = text_of(author.get(response.headers["Location"]))
    assert "a new review round has started" in flashed
    v = reg.version(vid)
    assert v.review_round == 2 and v.state == "in_review"
    html = _html(web.login(reg.members[3]).get(f"/review/{vid}"))
    assert 'id="review-reset"' in html
    assert 'data-met="false" data-counted="0"' in html
    assert html.count('data-counts="false"') == 2 and "no longer counts" in html
    assert 'id="review-round" data-round="2"' in html
    # those who voted before vote again
    assert web.login(reg.members[0]).post(f"/review/{vid}/vote",
                                          data={"decision": "approve"}).status_code == 303
    # a comment-only change keeps the content hash: no reset
    author.post(f"/editor/{vid}", data={"source": "# a note\n" + faster_metro(
        source(METHODOLOGY, "1.1.0"), "51")})
    assert reg.version(vid).review_round == 2


def test_comments_on_lines_are_shown_at_their_line(web):
    reg = web.reg
    _, vid = _faster(web)
    line = source().split("\n").index("    metro: 46.7") + 1
    member = web.new_client(reg.members[0])
    page = _html(member.get(f"/review/{vid}?line={line}"))
    assert re.search(rf'name="line" min="1" max="\d+" value="{line}"', page)
    response = member.post(f"/review/{vid}/comment", data={"line": str(line),
                                                           "body": "which year is 50.1 from?"})
    assert response.status_code == 303 and response.headers["Location"].endswith(f"#L{line}")
    assert member.post(f"/review/{vid}/comment", data={"body": "overall fine"}).status_code == 303
    html = _html(web.login(reg.author).get(f"/review/{vid}"))
    block = re.search(rf'<tr class="line-comments" data-line="{line}">(.*?)</tr>', html, re.S).group(1)
    assert "which year is 50.1 from?" in block and "member1" in block
    assert f'class="replace commented" id="L{line}"' in html
    general = html[html.index('id="comment-list"'):html.index('id="comment-form"')]
    assert "overall fine" in general and "which year" not in general
    assert member.post(f"/review/{vid}/comment", data={"line": "9999", "body": "x"}).status_code == 422
    assert member.post(f"/review/{vid}/comment", data={"body": " "}).status_code == 422
    assert web.login(reg.integrator).post(f"/review/{vid}/comment",
                                          data={"body": "hi"}).status_code == 403
    assert reg.count("comment_lines") == 1


def test_a_published_version_is_not_changed_through_the_review(web):
    reg = web.reg
    vid = web.published("1.0.0")
    admin = web.login(reg.admin)
    html = _html(admin.get(f"/review/{vid}"))
    assert 'id="frozen-note"' in html and 'id="vote-form"' not in html
    for action in ("withdraw", "open", "approve", "publish"):
        assert admin.post(f"/review/{vid}/{action}").status_code == 409, action
    assert admin.post(f"/review/{vid}/reject", data={"reason": "x"}).status_code == 409
    assert admin.post(f"/review/{vid}/request-changes", data={"comment": "x"}).status_code == 409
    assert web.login(reg.members[0]).post(f"/review/{vid}/vote",
                                          data={"decision": "approve"}).status_code == 409
    assert reg.state(vid) == "published"


def test_request_changes_and_resubmit_round_trip(web):
    reg = web.reg
    _, vid = _faster(web)
    member = web.new_client(reg.members[0])
    assert member.post(f"/review/{vid}/request-changes", data={"comment": ""}).status_code == 422
    assert member.post(f"/review/{vid}/request-changes",
                       data={"comment": "cite the factor's year"}).status_code == 303
    assert reg.state(vid) == "changes_requested"
    author = web.login(reg.author)
    page = _html(author.get(f"/editor/{vid}"))
    assert "Resubmit for review" in page
    assert author.post(f"/editor/{vid}/submit").status_code == 302
    assert reg.state(vid) == "resubmitted"
    assert web.login(reg.expert).post(f"/review/{vid}/open").status_code == 403
    assert member.post(f"/review/{vid}/open").status_code == 303
    v = reg.version(vid)
    assert (v.state, v.review_round) == ("in_review", 2)


def test_the_pages_speak_chinese_by_default_and_english_on_request(web):
    reg = web.reg
    _, vid = _faster(web)
    zh = web.new_client(reg.members[0], lang="zh")
    text = text_of(zh.get(f"/review/{vid}"))
    assert "影响预览" in text and "投票与法定人数" in text and "与上一个已发布版本 1.0.0 相比" in text
    assert "Impact preview" not in text
    editor = text_of(web.new_client(reg.author, lang="zh").get(f"/editor/{vid}"))
    assert "试算" in editor and "诊断" in editor
    en = text_of(web.new_client(reg.members[0], lang="en").get(f"/review/{vid}"))
    assert "Impact preview" in en and "影响预览" not in en


# ---------------------------------------------------------------- quorum integrity on the page (issue 15)
def test_the_page_offers_approve_and_publish_only_when_the_server_allows_them(web):
    """Never an action the server will refuse: approve appears once the quorum is met,
    publish disappears when an approving member leaves the committee after approval
    (publish re-checks the quorum), and each says why not."""
    reg = web.reg
    _, vid = _faster(web)
    admin = web.login(reg.admin)
    reg.votes(vid, "approve", "approve")
    html = _html(admin.get(f"/review/{vid}"))
    assert 'id="approve-form"' not in html and 'id="approve-why-not"' in html
    assert "2 of 3 votes" in html
    assert admin.post(f"/review/{vid}/approve").status_code == 409  # as the page said
    reg.votes(vid, "approve", voters=[reg.members[2]])
    html = _html(admin.get(f"/review/{vid}"))
    assert 'id="approve-form"' in html
    assert admin.post(f"/review/{vid}/approve").status_code == 303
    assert 'id="publish-form"' in _html(admin.get(f"/review/{vid}"))
    with reg.uow() as s:
        workflow.remove_member(s, reg.admin, reg.committee, reg.members[0])
    html = _html(admin.get(f"/review/{vid}"))
    assert 'id="publish-form"' not in html and 'id="publish-why-not"' in html
    assert 'id="quorum-discounted"' in html
    assert re.search(r'data-voter="member1@tanpu.test" data-counts="false"', html)
    assert admin.post(f"/review/{vid}/publish").status_code == 409
    assert reg.state(vid) == "approved"


def test_the_page_warns_when_the_quorum_can_no_longer_be_met(web, lang_client=None):
    reg = web.reg
    _, vid = _faster(web)
    for member, why in zip(reg.members[:2], ("I wrote the data", "I work for the operator")):
        with reg.uow() as s:
            workflow.declare_conflict(s, member, vid, why)
    html = _html(web.login(reg.members[2]).get(f"/review/{vid}"))
    assert 'id="quorum-unreachable"' in html and "(2 left)" in html
    zh = web.new_client(reg.members[2], lang="zh").get(f"/review/{vid}").get_data(as_text=True)
    assert 'id="quorum-unreachable"' in zh and "法定人数" in zh
    with reg.uow() as s:
        from registry import users
        users.grant_role(s, reg.admin, reg.expert, "committee_member")
        workflow.add_member(s, reg.admin, reg.committee, reg.expert)
    assert 'id="quorum-unreachable"' not in _html(web.login(reg.members[2]).get(f"/review/{vid}"))


def test_a_refusal_is_shown_at_its_form_with_what_was_typed(web):
    """No dead end (issue 15, item 7): request changes without a comment, a vote to reject
    without a reason, a comment on a line that is not there: the review page again, the
    reason at the form (in the reader's language), the text typed still in it."""
    reg = web.reg
    _, vid = _faster(web)
    member = web.new_client(reg.members[0])
    page = member.post(f"/review/{vid}/request-changes", data={"comment": "  "})
    html = page.get_data(as_text=True)
    assert page.status_code == 422 and 'id="request-changes-form"' in html
    assert 'data-refused="request-changes-form"' in html and "needs a comment saying why" in html
    assert 'class="error-page"' not in html
    page = member.post(f"/review/{vid}/vote", data={"decision": "reject", "comment": ""})
    html = page.get_data(as_text=True)
    assert page.status_code == 422 and 'data-refused="vote-form"' in html
    assert 'value="reject" checked' in html
    page = member.post(f"/review/{vid}/comment", data={"line": "99999", "body": "the 2024 factor?"})
    html = page.get_data(as_text=True)
    assert page.status_code == 422 and 'data-refused="comment-form"' in html
    assert ">the 2024 factor?</textarea>" in html
    zh = web.new_client(reg.members[0], lang="zh")
    html = (zh.post(f"/review/{vid}/request-changes", data={"comment": ""})).get_data(as_text=True)
    assert "要求修改需要填写意见说明理由" in html
    assert reg.state(vid) == "in_review"


def test_an_error_page_links_back_to_the_page_the_user_came_from(web):
    client = web.new_client(web.reg.expert)
    page = client.get("/admin/users", headers={"Referer": "http://localhost/methodologies?q=bus"})
    assert page.status_code == 403
    assert 'href="/methodologies?q=bus" id="error-back"' in page.get_data(as_text=True)
    elsewhere = client.get("/admin/users", headers={"Referer": "https://evil.example/x"})
    assert 'id="error-back"' not in elsewhere.get_data(as_text=True)


def test_the_impact_preview_runs_on_the_credited_records_anonymised(web):
    """Issue 15, item 1: records of the ledger (the last 30 days) before the sample, their
    accounts and ids replaced, and the page says which records it used and how many apply."""
    from tests.webui.test_api_state import post, ride
    old = web.published("1.0.0")
    token = web.token()
    post(web, token, [ride(f"secret-{n}", 40 * n, km=5 + n, account=f"1380000000{n % 2}",
                           mode="metro" if n % 2 else "ebus") for n in range(6)])
    vid = web.to_review(web.draft("1.1.0", faster_metro(source(METHODOLOGY, "1.1.0"))))
    client = web.login(web.reg.members[0])
    body = client.get(f"/review/{vid}/impact.json").get_json()
    assert (body["kind"], body["records"], body["applied"]) == ("ledger", 6, 6)
    assert body["changed_count"] == 3  # the metro rides
    assert {c["id"] for c in body["changed"]} <= {f"rec-{n}" for n in range(1, 7)}
    assert {c["account"] for c in body["changed"]} <= {"acct-1", "acct-2"}
    html = _html(client.get(f"/review/{vid}"))
    assert 'id="impact-kind" data-kind="ledger" data-applied="6"' in html
    assert "secret-" not in html and "1380000000" not in html
    assert old
