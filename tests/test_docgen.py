"""`tanpu doc`: the document a committee reads says what the rules that run do.

For the Shenzhen and rooftop PV methodologies the HTML must hold the formulas (MathML
with the parameter symbols), every parameter value with its unit, source and effective
date, every example with its result as the engine computed it, the content hash, and
the strings of the language asked for. Every bundled methodology must render in both
languages, and a methodology using every construct of the language must too.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from dsl import compile_source
from docgen import render_html
from docgen.formulas import Notation, Symbols, to_mathml
from docgen.i18n import pick, split_bilingual
from docgen.words import Words
from tanpu.cli import main
from tanpu.sources import compile_file

ROOT = Path(__file__).resolve().parent.parent
METHODOLOGIES = ROOT / "methodologies"
SHENZHEN = METHODOLOGIES / "shenzhen-public-transit.tanpu"
ROOFTOP = METHODOLOGIES / "rooftop-pv-grid.tanpu"

_cache: dict = {}


def compiled(path: Path):
    if path not in _cache:
        c = compile_file(path)
        assert c.ok, c.render()
        _cache[path] = c
    return _cache[path]


def doc(path: Path, lang: str) -> str:
    key = (path, lang)
    if key not in _cache:
        c = compiled(path)
        _cache[key] = render_html(c.methodology, lang=lang, content_hash=c.content_hash)
    return _cache[key]


def maths(page: str) -> list[str]:
    return re.findall(r"<math\b.*?</math>", page, flags=re.S)


def text_of(page: str) -> str:
    """The visible text, formulas left out, whitespace collapsed."""
    page = re.sub(r"<style>.*?</style>|<math\b.*?</math>", " ", page, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def rows(page: str) -> list[str]:
    return [text_of(r) for r in re.findall(r"<tr\b.*?</tr>", page, flags=re.S)]


def example_blocks(page: str) -> dict[str, str]:
    blocks = page.split('<div class="example">')[1:]
    out = {}
    for block in blocks:
        title = html.unescape(re.search(r'<span class="title">(.*?)</span>', block, flags=re.S).group(1))
        out[title] = text_of(block.split("</div>")[0])
    return out


# ---------------------------------------------------------------- the two documents
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_formulas_are_mathml_with_parameter_symbols(lang):
    shenzhen = maths(doc(SHENZHEN, lang))
    # ER = RF_mode × D, as one <math> with the symbols as identifiers
    assert any('<mi mathvariant="italic">ER</mi>' in m and '<mi mathvariant="italic">RF</mi>' in m
               and "<mtext>mode</mtext>" in m and "<mi>D</mi>" in m and "&#x000D7;" in m
               and 'display="block"' in m for m in shenzhen)
    # P = ⌊ER / 1 g⌋: a fraction inside floor brackets, the unit upright
    assert any("<mi>P</mi>" in m and "&#x0230A;" in m and "<mfrac>" in m and "<mtext>g</mtext>" in m
               for m in shenzhen)
    rooftop = maths(doc(ROOFTOP, lang))
    # BE = G × EF_grid,region; ER = BE − PE − LE
    assert any('<mi mathvariant="italic">BE</mi>' in m and '<mi mathvariant="italic">EF</mi>' in m
               and "<mtext>grid</mtext>" in m and "<mtext>region</mtext>" in m for m in rooftop)
    assert any(re.search(r'alttext="\\mathit\{ER\} = \\mathit\{BE\} - \\mathit\{PE\} - \\mathit\{LE\}"', m)
               for m in rooftop)
    # numbered equations, one per definition, in order
    page = doc(ROOFTOP, lang)
    numbers = re.findall(r'<span class="eqno">\((\d+)\)</span>', page)
    assert numbers == [str(i) for i in range(1, len(compiled(ROOFTOP).methodology.definitions) + 1)]


@pytest.mark.parametrize("path", [SHENZHEN, ROOFTOP], ids=["shenzhen", "rooftop"])
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_parameter_value_with_unit_source_and_date(path, lang):
    page = doc(path, lang)
    table_rows = rows(page)
    visible = text_of(page)
    for p in compiled(path).methodology.parameters:
        unit = p.type.unit.text
        for period in p.periods:
            assert period.start.isoformat() in visible
            assert period.source.text in visible
            assert f"{period.source.tag}" in visible
            for written, (key, _) in zip(period.written, period.entries):
                # the row of the key shows the value as written and the unit
                row = [r for r in table_rows if f" {key[0]} " in r and f" {written} " in r]
                assert row, (p.name, key, written)
                assert unit in row[0]


@pytest.mark.parametrize("path", [SHENZHEN, ROOFTOP], ids=["shenzhen", "rooftop"])
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_example_with_its_result(path, lang):
    blocks = example_blocks(doc(path, lang))
    m = compiled(path).methodology
    assert list(blocks) == [e.title for e in m.examples]
    passed = "通过" if lang == "zh" else "passed"
    for block in blocks.values():
        assert passed in block
    assert "✗" not in doc(path, lang)


def test_example_results_are_the_engines():
    zh = example_blocks(doc(SHENZHEN, "zh"))
    assert "减排量 220.58 g" in zh["E1.1 e-bus, 8.2 km"] and "积分 220" in zh["E1.1 e-bus, 8.2 km"]
    assert "计入" in zh["E1.2 metro, 12.5 km"] and "减排量 583.75 g" in zh["E1.2 metro, 12.5 km"]
    assert "拒绝 NOT_COVERED（只适用于纯电动公交和地铁）" in zh["E1.3 a diesel bus is not covered"]
    assert "拒绝 OVERLAP" in zh["two overlapping rides: the second is rejected"]
    en = example_blocks(doc(ROOFTOP, "en"))
    block = en["E8.1 深圳家庭 Shenzhen household, 南方 2022 (0.3869)"]
    assert "credited" in block and "baseline 386.9 kg" in block and "points 386900" in block
    assert "region = South China (incl. Guangdong, Shenzhen) south" in block
    assert "rejected CAPACITY_LIMIT" in en["exactly 6 MW is not below 6 MW"]


@pytest.mark.parametrize("path", [SHENZHEN, ROOFTOP], ids=["shenzhen", "rooftop"])
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_content_hash_and_version(path, lang):
    c = compiled(path)
    page = doc(path, lang)
    assert c.content_hash.startswith("sha256:")
    assert page.count(c.content_hash) >= 3  # meta tag, title block, section 7
    assert c.methodology.metadata.version in text_of(page)


def test_language_strings_zh():
    page = doc(SHENZHEN, "zh")
    visible = text_of(page)
    assert '<html lang="zh-Hans">' in page
    for heading in ("1 范围", "2 适用条件", "3 参数", "4 计算", "5 跨记录规则", "6 示例", "7 版本"):
        assert heading in visible
    assert "只适用于纯电动公交和地铁" in visible
    assert "only battery-electric buses and the metro are covered" not in visible
    assert "条件：出行方式为纯电动公交或地铁。" in visible
    assert "式中：" in visible and "深圳市生态环境局" in visible
    assert "<h1>深圳市低碳公共出行碳普惠方法学（试行）</h1>" in page
    assert "行程时间重叠" in visible and "this ride overlaps" not in visible


def test_language_strings_en():
    page = doc(SHENZHEN, "en")
    visible = text_of(page)
    assert '<html lang="en">' in page
    for heading in ("1 Scope", "2 Applicability", "3 Parameters", "4 Calculation",
                    "5 Cross-record rules", "6 Examples", "7 Version"):
        assert heading in visible
    assert "Only battery-electric buses and the metro are covered." in visible
    assert "只适用于" not in visible
    assert "Condition: Mode is battery-electric bus or metro." in visible
    assert "where:" in visible and "Shenzhen Municipal Ecology and Environment Bureau" in visible
    assert "<h1>Shenzhen low-carbon public transport (trial)</h1>" in page
    rooftop = text_of(doc(ROOFTOP, "en"))
    assert "The capacity at one grid-connection point must be below 6 MW." in rooftop
    assert "Installed capacity at the grid-connection point (MW) is less than 6 MW." in rooftop


def test_document_is_deterministic_and_self_contained():
    c = compiled(SHENZHEN)
    first = render_html(c.methodology, "zh")
    assert first == render_html(c.methodology, "zh")
    assert first == doc(SHENZHEN, "zh")  # the hash it computes is the compiled one
    assert "<script" not in first and 'src="' not in first and "<link" not in first
    with pytest.raises(ValueError):
        render_html(c.methodology, "fr")


# ---------------------------------------------------------------- every methodology
@pytest.mark.parametrize("path", sorted(METHODOLOGIES.glob("*.tanpu")), ids=lambda p: p.stem)
def test_every_bundled_methodology_renders(path):
    for lang in ("zh", "en"):
        page = doc(path, lang)
        assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
        m = compiled(path).methodology
        assert len(re.findall(r'<span class="eqno">', page)) == len(m.definitions)
        assert len(example_blocks(page)) == len(m.examples)


# ---------------------------------------------------------------- every construct
KITCHEN_SINK = """
methodology test.kitchen-sink "测试：各种写法" version 0.1.0 {
  title en "Test: every construct"
  issuer "测试单位 Test issuer"
  cite "A source" year "2024" note "说明 / a note" url "https://example.org/a?b=1&c=2"
  cite "Another" url "javascript:alert(1)"
  covers ride
  description zh "测试用方法学。"
  description en "A methodology for tests."
  effective from 2024-01-01 until 2025-12-31
  timezone Asia/Shanghai
}

input mode: choice { bike "单车 bike", scooter "滑板车 scooter", walk "步行 walk" } label "方式 / mode"
input distance: quantity [km] between 0 km and 50 km label "距离 / distance"
input started: datetime label "开始 / started"
input ended: datetime label "结束 / ended"
input peak: boolean = false label "高峰 / peak hour"
input riders: integer at least 1 = 1 label "人数 / riders"
input note: text optional label "备注 / note"

parameter factor [g/km] by mode otherwise reject NO_FACTOR "没有因子 / no factor" {
  from 2024-01-01 source "Source <A> & co" [SRC]:
    bike: 50
    scooter: 20.5
  from 2025-01-01 source "Source B" [DER]:
    bike: 55
    scooter: 21
}
parameter bonus_rate = 1.5 from 2024-01-01 source "assumed" [ASM]
parameter by_riders by riders from 2024-01-01 source "recalled" [MEM] otherwise 1 {
  1: 1
  2: 1.8
}

let duration_h = (ended - started) / 1 h
let speed [km/h] = distance / (ended - started)
let weight = case mode when bike then 1.0 when scooter then 0.5 else 0.25 end
let boost = if peak and not (mode in {walk}) then bonus_rate else 1
let adjusted [g] = max(factor[mode] * distance * weight * boost * by_riders[riders] - 0 g, 0 g)

require mode not in { walk } else NOT_COVERED "步行不适用 / walking is not covered"
require ended > started else BAD_TIMES "结束须晚于开始 / must end after it starts"
require speed <= 40 km/h or mode == bike else TOO_FAST "太快 / too fast"
require not (hour(started) < 5) and abs(-duration_h) < 12 and note != "x<y" else NIGHT "夜间不计 / not at night"

reduction = round(adjusted, 0.01 g)
points = ceil(reduction / 1 g) + min(riders, 3) - 1

cap reduction at 2 kg per account per day
cap points at 5000 per account per month
forbid duplicate started, mode per account else DUP "重复 / duplicate"
forbid overlap between started and ended per account else OVERLAP "重叠 / overlap"
bonus 10 points on the 3rd record per account within 7 days
flag more than 20 records per account within 1 h as TOO_MANY "太多 / too many"

example "a bike ride" {
  mode: bike, distance: 10 km, started: 2024-05-01T08:00, ended: 2024-05-01T08:40, note: "ok"
} => reduction 500 g, points 500

example "walking is not covered" {
  mode: walk, distance: 2 km, started: 2024-05-01T08:00, ended: 2024-05-01T08:40, note: "ok"
} => rejected NOT_COVERED

example "a wrong expectation <b>" {
  mode: scooter, distance: 10 km, started: 2024-05-01T09:00, ended: 2024-05-01T09:20, note: "ok"
} => reduction 1 g
"""


@pytest.fixture(scope="module")
def sink():
    c = compile_source(KITCHEN_SINK, "sink.tanpu")
    assert c.ok, c.render()
    return c.methodology


def test_every_construct_renders(sink):
    for lang in ("zh", "en"):
        page = render_html(sink, lang)
        visible = text_of(page)
        # text from the source is escaped, never markup
        assert "Source &lt;A&gt; &amp; co" in page and "<A>" not in page
        assert "a wrong expectation &lt;b&gt;" in page
        assert "x&lt;y" in page and "x<y" not in page.replace("alttext", "")
        assert 'href="https://example.org/a?b=1&amp;c=2"' in page and 'href="javascript' not in page
        # a failing example is shown as failing, with the engine's reason
        blocks = example_blocks(page)
        assert ("未通过" if lang == "zh" else "FAILED") in blocks["a wrong expectation <b>"]
        assert "expected reduction 1 g, got 102.5 g" in blocks["a wrong expectation <b>"]
        # cross-record rules in words
        for code in ("CAP_REACHED", "DUP", "OVERLAP", "TOO_MANY"):
            assert code in visible
        assert ("10 奖励积分" if lang == "zh" else "earns 10 bonus points") in visible
        assert ("2025-12-31" in visible) and ("NO_FACTOR" in visible)
        assert ("半数时远离零" if lang == "zh" else "halves away from zero") in visible  # round()


def test_notation(sink):
    n = Notation(sink, "en")
    latex = {d.name: n.definition(d).latex for d in sink.definitions}
    assert latex["duration_h"] == r"\mathit{DH} = \frac{{t}_{\text{ended}} - {t}_{\text{started}}}{1\,\text{h}}"
    assert r"\begin{cases} 1, & \text{if }\text{mode} = \text{bike} \\ 0.5, & \text{if }\text{mode} = \text{scooter} \\ 0.25, & \text{otherwise} \end{cases}" in latex["weight"]
    assert r"\text{peak} \land \text{mode} \neq \text{walk}" in latex["boost"]
    assert latex["adjusted"].startswith(r"A = \max\left({F}_{\text{mode}} \times D \times W")
    assert latex["reduction"] == r"\mathit{ER} = \operatorname{round}\left(\frac{A}{0.01\,\text{g}}\right) \times 0.01\,\text{g}"
    assert latex["points"] == r"P = \left\lceil \frac{\mathit{ER}}{1\,\text{g}}\right\rceil + \min\left(R, 3\right) - 1"
    night = n.formula(sink.requires[3].cond).latex
    assert night.startswith(r"\lnot \left(\operatorname{hour}\left({t}_{\text{started}}\right) < 5\right) \land \left|-\mathit{DH}\right| < 12")
    # the legend lists a lookup before its keys, the defined name first
    uses = [u.name for u in n.definition(sink.definition("adjusted")).uses]
    assert uses[:4] == ["adjusted", "factor", "mode", "distance"]


def test_symbols_are_unique(sink):
    symbols = Symbols(sink)
    latex = [s.latex() for s in symbols.by_name.values()]
    assert len(latex) == len(set(latex))
    assert symbols["by_riders"].latex() != symbols["bonus_rate"].latex()


def test_identifiers_are_merged_in_mathml():
    mathml = to_mathml(r"\mathit{EF}_{\text{grid}} = 1", "inline")
    assert '<mi mathvariant="italic">EF</mi>' in mathml and 'alttext="\\mathit{EF}' in mathml


def test_conditions_in_words(sink):
    zh, en = Words(sink, "zh"), Words(sink, "en")
    walk, times, fast = (r.cond for r in sink.requires[:3])
    assert zh.condition(walk) == "方式不为步行"
    assert en.condition(walk) == "mode is not walk"
    assert zh.condition(times) == "结束晚于开始"
    assert en.condition(fast) == "speed is at most 40 km/h, or mode is bike"
    assert zh.condition(fast) == "speed 不大于 40 km/h，或方式为单车"
    assert zh.condition(sink.requires[3].cond) is None  # no wording for hour(); formula only


def test_bilingual_split():
    assert split_bilingual("只适用于纯电动公交和地铁 / only buses") == {"zh": "只适用于纯电动公交和地铁", "en": "only buses"}
    assert pick("单个并网点须小于 6 MW / below 6 MW", "zh") == "单个并网点须小于 6 MW"
    assert pick("节约电量 / saved, as measured by 惠节电 (kWh)", "en") == "saved, as measured by 惠节电 (kWh)"
    assert pick("华中 Central China (incl. Hubei, Wuhan)", "en") == "Central China (incl. Hubei, Wuhan)"
    assert pick("深圳商报 2022-09-22, SZ EEB factors", "en") == "深圳商报 2022-09-22, SZ EEB factors"
    assert pick("only English", "zh") == "only English"


def test_template_is_package_data():
    from importlib.resources import files
    assert (files("docgen") / "templates" / "methodology.html.j2").is_file()


# ---------------------------------------------------------------- the command
def test_cli_doc(tmp_path):
    runner = CliRunner()
    out = tmp_path / "shenzhen.html"
    result = runner.invoke(main, ["doc", str(SHENZHEN), "-o", str(out), "--lang", "en"])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == doc(SHENZHEN, "en")
    result = runner.invoke(main, ["doc", str(SHENZHEN)])
    assert result.exit_code == 0 and result.output == doc(SHENZHEN, "zh")
    result = runner.invoke(main, ["doc", str(SHENZHEN), "-o", str(tmp_path / "x.pdf")])
    assert result.exit_code == 2 and "HTML" in result.output


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_history_over_a_definition_renders(lang):
    """A window over a `let` (docs/language.md §9.6) is explained by the let's name in
    the legend, where one over an input gives the input's label."""
    text = (Path(__file__).resolve().parent.parent / "docs" / "language.md").read_text(encoding="utf-8")
    start = text.index("methodology demo.history_per_person")
    c = compile_source(text[start:text.index("```", start)])
    assert c.ok, c.render()
    page = render_html(c.methodology, lang)
    assert "per_person" in page and "history_per_person" in page
