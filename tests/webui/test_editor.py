"""The editor: live diagnostics, the try-it panel, saving drafts and revisions through the
workflow, submission refused with the reasons, and who may do what (on SQLite and
PostgreSQL, through the Flask test client)."""

from __future__ import annotations

import html as htmllib
import io
import re

from registry import workflow
from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures
from tests.webui.reviewkit import METHODOLOGY, SAMPLE, line_of, source, text_of
from webui import evaluation

UNIT_ERROR = "reduction = reduction_factor[mode] * distance + 1 kg/km"


def _check(client, text, **extra):
    return client.post("/editor/check", json={"source": text, **extra},
                       headers={"Accept": "application/json"})


def test_diagnostics_endpoint_reports_a_unit_error_at_its_line_and_column(web):
    client = web.login(web.reg.author)
    text = source(METHODOLOGY, "1.1.0").replace(
        "reduction = reduction_factor[mode] * distance", UNIT_ERROR, 1)
    response = _check(client, text)
    assert response.status_code == 200
    body = response.get_json()
    assert body["ok"] is False and body["errors"] == 1 and body["content_hash"] is None
    [d] = [d for d in body["diagnostics"] if d["severity"] == "error"]
    line = line_of(text, UNIT_ERROR)
    column = UNIT_ERROR.index("+") + 1
    assert (d["code"], d["line"], d["column"], d["end_line"], d["end_column"]) == (
        "E0302", line, column, line, column + 1)
    assert d["message"] == "cannot add a mass (g) and a mass per length (kg/km)"
    assert "same kind of quantity" in d["help"]
    assert body["examples"] == [] and body["examples_passed"] is None


def test_check_of_a_good_source_runs_its_examples_and_says_it_could_be_submitted(web):
    client = web.login(web.reg.author)
    text = source(METHODOLOGY, "1.1.0")
    body = _check(client, text, methodology=METHODOLOGY, version="1.1.0").get_json()
    assert body["ok"] and body["id"] == METHODOLOGY and body["version"] == "1.1.0"
    assert body["content_hash"].startswith("sha256:")
    assert body["examples_passed"] and len(body["examples"]) == 4
    assert body["submission"] == {"submittable": True, "problems": [],
                                  "examples": body["submission"]["examples"]}
    # a failing example: it compiles, but it cannot be submitted, and says why
    failing = source(METHODOLOGY, "1.1.0", failing_example=True)
    body = _check(client, failing, methodology=METHODOLOGY, version="1.2.0").get_json()
    assert body["ok"] and body["examples_passed"] is False
    failed = [e for e in body["examples"] if not e["passed"]]
    assert failed[0]["title"] == "E1.1 e-bus, 8.2 km"
    assert failed[0]["failures"] == ["expected reduction 221 g, got 220.58 g (-420 mg)"]
    problems = body["submission"]["problems"]
    assert body["submission"]["submittable"] is False
    assert any("declares version 1.1.0, not 1.2.0" in p for p in problems)
    assert any("1 of 4 example(s) fail" in p for p in problems)


def test_a_check_that_runs_too_long_is_stopped_and_says_so(web):
    """The editor's check runs in a worker process with a time limit (issue 17): the
    limit made tiny here, and the workers stopped first, so that the check is of a source
    its new worker has not compiled, tens of milliseconds, over it (a worker answers a
    check it has compiled before in under 1 ms)."""
    client = web.login(web.reg.author)
    evaluation.stop_checks()
    web.app.config["EDITOR_CHECK_SECONDS"] = 0.001
    body = _check(client, source(METHODOLOGY, "1.1.0")).get_json()
    assert body["ok"] is False and body["timed_out"] is True
    (d,) = body["diagnostics"]
    assert d["code"] == "TIMEOUT" and "took longer than 0.001 s and was stopped" in d["message"]
    web.app.config["EDITOR_CHECK_SECONDS"] = 60  # a new worker, and the check gets through
    assert _check(client, source(METHODOLOGY, "1.1.0")).get_json()["ok"] is True


def test_try_it_evaluates_pasted_records_with_the_explanation(web):
    client = web.login(web.reg.author)
    records = ("id,account,mode,distance[km],boarded,alighted\n"
               "r1,a1,ebus,8.2,2024-05-20T08:00,2024-05-20T08:30\n"
               "r2,a1,diesel_bus,3,2024-05-20T09:00,2024-05-20T09:30\n"
               "r3,a2,metro,far,2024-05-20T09:00,2024-05-20T09:30\n")
    response = client.post("/editor/try", json={"source": source(), "records": records})
    body = response.get_json()
    assert response.status_code == 200 and body["ok"]
    assert body["totals"]["records"] == 3 and body["totals"]["reduction_mg"] == 220_580
    assert body["totals"]["by_status"] == {"credited": 1, "rejected": 1, "invalid": 1}
    r1, r2, r3 = body["results"]
    assert (r1["id"], r1["status"], r1["reduction_mg"], r1["points"]) == ("r1", "credited", 220_580, 220)
    assert r1["version"] == "1.0.0" and r1["content_hash"] == body["ref"]["content_hash"]
    text = "\n".join(r1["explanation_text"])
    assert "input      distance = 8.2 km" in text
    assert "parameter  reduction_factor[ebus] = 26.9 g/km" in text
    assert "output     reduction = 220.58 g" in text
    assert any(step["kind"] == "parameter" and step["shown"] == "26.9 g/km"
               for step in r1["explanation"])
    assert (r2["status"], r2["code"]) == ("rejected", "NOT_COVERED")
    assert "require    NOT_COVERED FAILED" in "\n".join(r2["explanation_text"])
    assert r3["status"] == "invalid" and r3["row"] == 3 and "distance" in r3["message"]


def test_try_it_takes_json_records_or_a_file_and_unsaved_sources(web):
    client = web.login(web.reg.author)
    changed = source().replace("ebus: 26.9", "ebus: 30")
    records = [{"id": "j1", "account": "a", "mode": "ebus", "distance": "10 km",
                "boarded": "2024-05-20T08:00", "alighted": "2024-05-20T08:30"}, "not an object"]
    body = client.post("/editor/try", json={"source": changed, "records": records,
                                            "explain": False}).get_json()
    assert body["results"][0]["reduction_mg"] == 300_000  # the unsaved factor
    assert "explanation" not in body["results"][0]
    assert body["results"][1]["status"] == "invalid"
    # an uploaded file: the bundled sample, units in the headers
    data = {"source": source(), "file": (io.BytesIO(SAMPLE.read_bytes()), "sample.csv")}
    body = client.post("/editor/try", data=data, content_type="multipart/form-data").get_json()
    assert body["ok"] and body["totals"]["records"] == 338
    assert body["totals"]["by_status"]["credited"] == 292 and body["truncated"] is False
    # records that cannot be read at all, and a source that does not compile
    bad = client.post("/editor/try", json={"source": source(), "records": "[1, 2"})
    assert bad.status_code == 422 and bad.get_json()["error"] == "bad_records"
    broken = client.post("/editor/try", json={"source": source(broken=True), "records": "[]"})
    assert broken.get_json()["ok"] is False and broken.get_json()["diagnostics"]


def test_the_editor_is_for_experts(web):
    reg = web.reg
    for user in (reg.integrator, reg.members[0], reg.admin):
        client = web.login(user)
        assert client.get(f"/editor/new?methodology={METHODOLOGY}").status_code == 403
        assert _check(client, source()).status_code == 403
        assert client.post("/editor/try", json={"source": source(), "records": "[]"}).status_code == 403
        response = client.post("/editor/new", data={"methodology": METHODOLOGY, "version": "1.0.0",
                                                    "source": source()})
        assert response.status_code == 403
    assert reg.count("methodology_versions") == 0
    web.login(None)
    assert web.client.get("/editor/").status_code == 302  # to the sign-in page
    assert _check(web.client, source()).status_code == 401


def test_new_version_page_starts_from_the_latest_with_the_next_number(web):
    web.published("1.0.0")
    client = web.login(web.reg.author)
    page = client.get(f"/editor/new?methodology={METHODOLOGY}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="source"' in html and 'value="1.1.0"' in html
    assert f"methodology {METHODOLOGY} " in html and "version 1.1.0 {" in html
    assert 'id="initial-diagnostics">[]<' in html
    assert "sz-00001" in html  # the try-it panel starts with the sample's first rows
    assert client.get("/editor/new?methodology=nope").status_code == 404


def test_save_creates_a_draft_and_revises_it(web):
    reg = web.reg
    client = web.login(reg.author)
    response = client.post("/editor/new", data={"methodology": METHODOLOGY, "version": "1.0.0",
                                                "source": source()})
    assert response.status_code == 302
    vid = int(response.headers["Location"].rstrip("/").split("/")[-1])
    v = reg.version(vid)
    assert (v.state, v.author_id, v.version, v.source) == ("draft", reg.author, "1.0.0", source())
    # a draft may be saved broken: the editor shows why
    response = client.post(f"/editor/{vid}", data={"source": source(broken=True)})
    assert response.status_code == 302
    assert reg.version(vid).content_hash is None
    page = client.get(f"/editor/{vid}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'class="diagnostic error"' in html and "cannot be submitted yet" in html
    # a JSON save (the script's Ctrl+S)
    response = client.post(f"/editor/{vid}", json={"source": source(title="Renamed")})
    assert response.get_json() == {"saved": True, "version_id": vid, "review_reset": False}
    assert reg.version(vid).content_hash is not None
    # numbers never go backwards
    again = client.post("/editor/new", data={"methodology": METHODOLOGY, "version": "1.0.0",
                                             "source": source()})
    assert again.status_code == 422 and "must be greater than 1.0.0" in text_of(again)


def test_only_the_author_changes_a_version(web):
    reg = web.reg
    vid = web.draft("1.0.0", source())
    for user in (reg.expert, reg.admin2, reg.members[0], reg.integrator):
        client = web.login(user)
        assert client.get(f"/editor/{vid}").status_code == 403
        assert client.post(f"/editor/{vid}", data={"source": source(title="x")}).status_code == 403
        assert client.post(f"/editor/{vid}/submit").status_code == 403
    assert reg.version(vid).source == source() and reg.state(vid) == "draft"


def test_a_published_version_cannot_be_edited_through_the_editor(web):
    reg = web.reg
    vid = web.published("1.0.0")
    before = reg.version(vid)
    client = web.login(reg.author)
    page = client.get(f"/editor/{vid}")
    assert page.status_code == 409 and "immutable" in text_of(page)
    for data in ({"source": source(title="changed")}, {"source": source(comment="a note")}):
        response = client.post(f"/editor/{vid}", data=data)
        assert response.status_code == 409
    assert client.post(f"/editor/{vid}/submit").status_code == 409
    assert client.post(f"/editor/{vid}/withdraw").status_code == 409
    after = reg.version(vid)
    assert (after.source, after.content_hash, after.state) == (before.source, before.content_hash,
                                                               "published")


def test_a_version_that_does_not_compile_cannot_be_submitted_and_the_page_says_why(web):
    reg = web.reg
    client = web.login(reg.author)
    vid = web.draft("1.0.0", source(broken=True))
    response = client.post(f"/editor/{vid}/submit")
    assert response.status_code == 422
    text = text_of(response)
    assert "cannot be submitted: does not compile: 1 error(s)" in text
    assert 'id="submission-refused"' in response.get_data(as_text=True)
    assert reg.state(vid) == "draft"


def test_a_version_whose_example_fails_cannot_be_submitted(web):
    reg = web.reg
    client = web.login(reg.author)
    vid = web.draft("1.0.0", source(failing_example=True))
    response = client.post(f"/editor/{vid}/submit")
    assert response.status_code == 422
    text = text_of(response)
    assert "1 of 4 example(s) fail: E1.1 e-bus, 8.2 km: expected reduction 221 g, got 220.58 g" in text
    assert reg.state(vid) == "draft"
    # fixed: it goes through, to the review page
    assert client.post(f"/editor/{vid}", data={"source": source()}).status_code == 302
    response = client.post(f"/editor/{vid}/submit")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/review/{vid}")
    assert reg.state(vid) == "submitted"


def test_under_review_a_save_must_stay_submittable(web):
    reg = web.reg
    vid = web.to_review(web.draft("1.0.0", source()))
    client = web.login(reg.author)
    response = client.post(f"/editor/{vid}", data={"source": source(broken=True)})
    assert response.status_code == 422
    assert "must still compile" in text_of(response)
    assert reg.version(vid).source == source()
    assert reg.state(vid) == "in_review" and reg.version(vid).review_round == 1


def test_a_new_methodology_from_the_editor(web):
    reg = web.reg
    client = web.login(reg.expert)
    response = client.post("/editor/methodologies", data={"id": "test.new-one", "title": "New",
                                                          "domain": "transport"})
    assert response.status_code == 302 and "methodology=test.new-one" in response.headers["Location"]
    page = client.get(response.headers["Location"])
    assert page.status_code == 200 and "methodology test.new-one" in page.get_data(as_text=True)
    # the skeleton compiles and its example passes: a starting point, not a puzzle
    html = page.get_data(as_text=True)
    skeleton = re.search(r'<textarea name="source"[^>]*>(.*?)</textarea>', html, re.S).group(1)
    check = workflow.check_source(htmllib.unescape(skeleton).lstrip("\n"), "test.new-one", "1.0.0")
    assert check.ok, check.problems
    assert client.post("/editor/methodologies", data={"id": "Bad Id", "title": "x",
                                                      "domain": "transport"}).status_code == 422


def test_diagnostics_and_try_it_speak_the_readers_language(web):
    """zh (the default): message, label and help from the Chinese catalogue; en: as
    `tanpu check` says them. The codes and positions are the same."""
    client = web.login(web.reg.author)
    text = source(METHODOLOGY, "1.1.0").replace(
        "reduction = reduction_factor[mode] * distance", UNIT_ERROR, 1)
    zh = [d for d in client.post("/editor/check?lang=zh", json={"source": text}).get_json()[
        "diagnostics"] if d["severity"] == "error"]
    en = [d for d in client.post("/editor/check?lang=en", json={"source": text}).get_json()[
        "diagnostics"] if d["severity"] == "error"]
    assert [(d["code"], d["line"], d["column"]) for d in zh] == [
        (d["code"], d["line"], d["column"]) for d in en]
    assert en[0]["message"] == "cannot add a mass (g) and a mass per length (kg/km)"
    assert zh[0]["message"] == "不能相加 质量（g） 与 单位长度质量（kg/km）"
    assert "两边必须是同一类量" in zh[0]["help"] and "质量（g） + 单位长度质量（kg/km）" == zh[0]["label"]
    body = client.post("/editor/try?lang=zh", json={"source": text, "records": "[]"}).get_json()
    assert body["ok"] is False and body["message"] == "源文本无法编译：请先修正错误。"
    assert body["diagnostics"][0]["message"].startswith("不能")


def test_a_capped_record_says_what_was_credited_and_which_cap_cut_it(web):
    """Issue 15, item 8: 430 g + 430 g, then a ride of 215 g under a cap of 1 kg a day."""
    from pathlib import Path
    text = (Path(__file__).resolve().parents[2] / "methodologies" / "chongqing-shared-ebike.tanpu"
            ).read_text(encoding="utf-8")
    records = ("id,account,time,activity,distance,started,ended\n"
               "r1,a,2024-04-10T07:30:00+08:00,chongqing_ebike_ride,10 km,2024-04-10T07:30,2024-04-10T08:10\n"
               "r2,a,2024-04-10T12:00:00+08:00,chongqing_ebike_ride,10 km,2024-04-10T12:00,2024-04-10T12:40\n"
               "r3,a,2024-04-10T18:00:00+08:00,chongqing_ebike_ride,5 km,2024-04-10T18:00,2024-04-10T18:20\n")
    client = web.login(web.reg.author)
    body = client.post("/editor/try", json={"source": text, "records": records}).get_json()
    assert body["ok"], body
    third = body["results"][2]
    assert third["status"] == "capped", third["message"]
    assert "cap_note" not in body["results"][0]
    assert third["cap_note"] == ("Credited 140.000 g of the 215.000 g computed: the cap of "
                                 "1000.000 g per account per day cut it (860.000 g credited "
                                 "earlier in that day).")
    assert third["explanation_text"][0] == third["cap_note"]
    zh = client.post("/editor/try?lang=zh", json={"source": text, "records": records}).get_json()
    assert zh["results"][2]["cap_note"].startswith("计入 140.000 g")


def test_the_check_processes_warm_up_source_compiles_and_its_example_passes():
    """webui/check_process.py checks a small source in the check processes' forkserver so
    that each starts warm; a source that no longer compiled would still warm the parser
    but not the later stages (and say nothing): it must compile, its example pass."""
    from webui import check_process

    assert check_process.warm_up_check is not None
    assert check_process.warm_up_check["ok"] and check_process.warm_up_check["examples_passed"]
    assert check_process.warm_up_check["warnings"] == 0
