"""The methodology page: highlighted source, parameter tables with sources and effective
dates, formulas, examples and their results, version history; who sees what. And the
Pygments lexer of the language on its own."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pygments.token import Comment, Error, Keyword, Literal, Name, Number, Operator, String

from registry import workflow
from tests.webui.corekit import *  # noqa: F401,F403 - fixtures
from tests.webui.corekit import METHODOLOGY, no_traceback, rows, source, text_of
from webui.highlight import TanpuLexer, highlight_source

ROOT = Path(__file__).resolve().parents[2]
SHENZHEN = "cn.shenzhen.public-transit"


# ---------------------------------------------------------------- the lexer
def _tokens(text):
    return [(t, v) for t, v in TanpuLexer().get_tokens(text) if v.strip()]


def test_lexer_keywords_units_quantities_strings_comments_dates():
    text = ('# a comment\n'
            'methodology cn.x.y "标题" version 1.2.0 {\n  effective from 2021-12-16\n'
            '  timezone Asia/Shanghai\n}\n'
            'input distance: quantity [km] between 0 km and 200 km label "距离"\n'
            'parameter ef [g/km] by mode from 2021-12-16 source "报告" [SRC] { ebus: 26.9 }\n'
            'require mode in { ebus } else NOT_COVERED "只适用于"\n'
            'points = floor(reduction / 1 g)\n'
            'example "e" { distance: 8.2 km, boarded: 2024-05-20T08:00 } => reduction 220.58 g\n')
    tokens = _tokens(text)
    assert tokens[0] == (Comment.Single, "# a comment")
    kinds = dict((v, t) for t, v in tokens)
    assert kinds["methodology"] is Keyword.Declaration and kinds["cn.x.y"] is Name.Class
    assert kinds["1.2.0"] is Number.Other and kinds['"标题"'] is String.Double
    assert kinds["2021-12-16"] is Literal.Date and kinds["2024-05-20T08:00"] is Literal.Date
    assert kinds["Asia/Shanghai"] is Name.Constant
    assert kinds["quantity"] is Keyword.Type and kinds["between"] is Keyword
    assert kinds["and"] is Operator.Word  # a word operator
    # units: in brackets, and after a number (a quantity)
    units = [v for t, v in tokens if t is Name.Tag]
    assert units == ["km", "km", "km", "g/km", "g", "km", "g"]
    quantities = [(tokens[i][1], tokens[i + 1][1]) for i in range(len(tokens) - 1)
                  if tokens[i + 1][0] is Name.Tag and tokens[i][0] in Number]
    assert ("200", "km") in quantities and ("8.2", "km") in quantities and ("1", "g") in quantities
    assert kinds["[SRC]"] is Name.Decorator and kinds["NOT_COVERED"] is Name.Label
    assert kinds["reduction"] is Name.Builtin and kinds["floor"] is Name.Function
    assert kinds["ef"] is Name and kinds["26.9"] is Number.Float


def test_lexer_reads_every_bundled_methodology_without_an_error_token():
    for path in sorted((ROOT / "methodologies").glob("*.tanpu")):
        text = path.read_text(encoding="utf-8")
        tokens = list(TanpuLexer().get_tokens(text))
        assert "".join(v for _, v in tokens).rstrip("\n") == text.rstrip("\n"), path.name
        assert not [v for t, v in tokens if t in Error], path.name
        assert not [v for t, v in tokens if str(t) == "Token.Text" and v.strip()], path.name


def test_lookups_are_not_units_and_words_after_numbers_are_not_always_units():
    tokens = _tokens("reduction = ef[vehicle] * distance\nexample \"x\" { a: 3 } => points 3\n")
    assert (Name, "vehicle") in tokens and not [v for t, v in tokens if t is Name.Tag]
    tokens = _tokens("input d: quantity [km] between 0 km and 5 km\n")
    assert (Name.Tag, "and") not in tokens


def test_highlighted_html_has_line_numbers_and_anchors():
    html = highlight_source('methodology a.b "t" version 1.0.0 {\n}\n')
    assert 'id="L-1"' in html and 'href="#L-2"' in html
    assert '<span class="kd">methodology</span>' in html


# ---------------------------------------------------------------- the page
def test_the_page_shows_the_highlighted_source(site):
    page = site.login(site.reg.integrator).get(f"/methodologies/{SHENZHEN}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert '<span class="kd">methodology</span>' in html
    assert '<span class="nc">cn.shenzhen.public-transit</span>' in html
    assert '<span class="nt">g/km</span>' in html  # a unit in brackets
    assert '<span class="m">8.2</span><span class="w"> </span><span class="nt">km</span>' in html
    assert '<span class="ld">2021-12-16</span>' in html  # a date
    assert '<span class="c1"># RF_mode: average reduction per passenger-km, by mode</span>' in html
    assert '<span class="s2">"地铁 metro"</span>' in html
    assert '<span class="nd">[SRC]</span>' in html and '<span class="nl">NOT_COVERED</span>' in html
    assert 'id="L-1"' in html


def test_the_page_shows_parameters_with_sources_and_effective_dates(site):
    page = site.login(site.reg.expert).get("/methodologies/cn.rooftop-pv-grid")
    html = page.get_data(as_text=True)
    assert 'data-parameter="grid_ef"' in html or 'data-parameter=' in html
    text = text_of(page)
    # effective-dated by year: one column per period, with its source and provenance tag
    assert "自 2022-01-01 起" in text and "2023" in text
    assert "SRC" in text and "参数" in text
    shenzhen = text_of(site.client.get(f"/methodologies/{SHENZHEN}"))
    assert "reduction_factor" in shenzhen and "26.9" in shenzhen and "46.7" in shenzhen
    assert "深圳商报 2022-09-22, SZ EEB factors for pure-electric bus and metro" in shenzhen
    assert "g/km" in shenzhen and "2021-12-16" in shenzhen


def test_the_page_shows_formulas_and_examples_with_their_results(site):
    page = site.login(site.reg.expert).get(f"/methodologies/{SHENZHEN}")
    html, text = page.get_data(as_text=True), text_of(page)
    assert "<math" in html  # formulas as MathML, from docgen
    for title in ("E1.1 e-bus, 8.2 km", "E1.2 metro, 12.5 km", "E1.3 a diesel bus is not covered",
                  "two overlapping rides: the second is rejected"):
        assert title in text
    assert "220.58 g" in text and "583.75 g" in text and "OVERLAP" in text
    assert html.count('class="badge ok"') >= 4 and 'class="badge fail"' not in html
    assert "4 个中 4 个通过" in text  # the results stored at submission


def test_the_page_shows_the_version_history(site):
    reg = site.reg
    page = site.login(reg.expert).get(f"/methodologies/{SHENZHEN}")
    assert rows(page, "version") == ["1.0.0"]
    actions = rows(page, "action")
    assert actions[0] == "methodology.create" and "version.publish" in actions
    for action in ("version.create", "version.submit", "version.open_review", "version.approve"):
        assert action in actions
    assert "vote.cast" not in actions  # votes are part of the review, not for everyone
    text = text_of(page)
    assert "Tanpu 系统 system" in text and "内置方法学维护 Bundled methodologies" in text
    # the committee sees the votes too
    member = site.user_id("transport.reviewer1@tanpu.local")
    assert "vote.cast" in rows(site.new_client(member).get(f"/methodologies/{SHENZHEN}"),
                               "action")


def test_a_superseded_version_points_to_its_successor(site):
    reg = site.reg
    new = source(SHENZHEN, "1.1.0").replace(
        "methodology cn.shenzhen.public-transit", "methodology cn.shenzhen.public-transit", 1)
    with reg.uow() as s:
        vid = workflow.create_version(s, reg.author, SHENZHEN, "1.1.0", new).id
    with reg.uow() as s:
        workflow.submit(s, reg.author, vid)
    with reg.uow() as s:
        workflow.open_review(s, reg.members[0], vid)
    reg.votes(vid, "approve", "approve", "approve")
    with reg.uow() as s:
        workflow.approve(s, reg.admin, vid)
    with reg.uow() as s:
        workflow.publish(s, reg.admin, vid, effective_from=dt.date(2030, 1, 1))
    client = site.login(reg.integrator)
    # 1.1.0 takes effect in 2030: 1.0.0 is in force until then (issue 15: the page called
    # 1.1.0 current while the API said 1.0.0)
    current = client.get(f"/methodologies/{SHENZHEN}")
    assert rows(current, "version") == ["1.1.0", "1.0.0"]
    text = text_of(current)
    assert "施行至 2029-12-31" in text and "版本 1.1.0 自 2030-01-01 起施行" in text
    assert "您正在查看版本" not in text
    scheduled = text_of(client.get(f"/methodologies/{SHENZHEN}/versions/1.1.0"))
    assert "已排期：此版本自 2030-01-01 起施行" in scheduled and "您正在查看版本 1.1.0" in scheduled


def test_drafts_are_visible_to_the_review_only(site):
    reg = site.reg
    with reg.uow() as s:
        workflow.create_version(s, reg.author, METHODOLOGY, "1.0.0", source(METHODOLOGY, "1.0.0"))
    url = f"/methodologies/{METHODOLOGY}/versions/1.0.0"
    assert site.new_client(reg.author).get(url).status_code == 200
    assert site.new_client(reg.members[0]).get(url).status_code == 200
    for outsider in (reg.expert, reg.integrator, reg.outsider):
        response = site.new_client(outsider).get(url)
        assert response.status_code == 403
        no_traceback(response)
    # the methodology without a version the user may see does not exist for them
    assert site.new_client(reg.expert).get(f"/methodologies/{METHODOLOGY}").status_code == 404


def test_unknown_methodologies_and_versions_are_404(site):
    client = site.login(site.reg.admin)
    for url in ("/methodologies/no.such", f"/methodologies/{SHENZHEN}/versions/9.9.9",
                f"/methodologies/{SHENZHEN}/versions/9.9.9/source.tanpu"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert "页面不存在" in text_of(response)


def test_source_download_and_full_document(site):
    client = site.login(site.reg.integrator)
    raw = client.get(f"/methodologies/{SHENZHEN}/versions/1.0.0/source.tanpu")
    assert raw.status_code == 200 and raw.mimetype == "text/plain"
    assert raw.get_data(as_text=True) == (ROOT / "methodologies" /
                                          "shenzhen-public-transit.tanpu").read_text("utf-8")
    assert raw.headers["X-Content-Hash"].startswith("sha256:")
    document = client.get(f"/methodologies/{SHENZHEN}/versions/1.0.0/document")
    assert document.status_code == 200
    assert '<meta name="tanpu-methodology" content="cn.shenzhen.public-transit 1.0.0">' in \
        document.get_data(as_text=True)
    english = client.get(f"/methodologies/{SHENZHEN}/versions/1.0.0/document?lang=en")
    assert "Shenzhen low-carbon public transport (trial)" in english.get_data(as_text=True)


@pytest.mark.parametrize("lang,heading", [("zh", "版本历史"), ("en", "Version history")])
def test_the_page_in_both_languages(site, lang, heading):
    page = site.login(site.reg.expert).get(f"/methodologies/{SHENZHEN}?lang={lang}")
    text = text_of(page)
    assert heading in text
    if lang == "en":
        assert "Shenzhen low-carbon public transport (trial)" in text
        assert "Parameters" in text and "Examples" in text
    else:
        assert "深圳市低碳公共出行碳普惠方法学（试行）" in text
