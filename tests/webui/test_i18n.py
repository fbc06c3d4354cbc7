"""Chinese first: every message of the web UI has a zh translation, the zh pages show no
English message, and neither the tests nor the server rewrite the committed .mo files."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from babel.messages.pofile import read_po

from tests.webui.corekit import *  # noqa: F401,F403 - fixtures
from tests.webui.corekit import make_app

ROOT = Path(__file__).resolve().parents[2]
CATALOGS = sorted((ROOT / "webui").glob("**/translations/zh/LC_MESSAGES/messages.po"))


@pytest.fixture(scope="module")
def extracted(tmp_path_factory) -> dict[str, list]:
    """The msgids the code and templates use now (pybabel extract into a temporary file)."""
    pot = tmp_path_factory.mktemp("i18n") / "messages.pot"
    subprocess.run([str(Path(sys.executable).with_name("pybabel")), "extract",
                    "-F", str(ROOT / "webui" / "babel.cfg"), "-k", "_l", "-o", str(pot), "webui"],
                   cwd=ROOT, check=True, capture_output=True)
    with pot.open("rb") as f:
        return {m.id: m.locations for m in read_po(f) if m.id}


def _translations(po: Path) -> dict[str, str]:
    with po.open("rb") as f:
        return {m.id: m.string for m in read_po(f) if m.id}


def test_every_extracted_msgid_has_a_chinese_translation(extracted):
    merged: dict[str, str] = {}
    for po in CATALOGS:
        for msgid, text in _translations(po).items():
            if text:
                merged.setdefault(msgid, text)
    missing = sorted(m for m in extracted if not merged.get(m))
    assert missing == [], f"{len(missing)} msgids without zh: {missing[:20]}"


def test_no_catalog_has_an_empty_or_obsolete_entry(extracted):
    for po in CATALOGS:
        entries = _translations(po)
        assert [m for m, text in entries.items() if not text] == [], po
        assert sorted(set(entries) - set(extracted)) == [], f"{po}: obsolete msgids"


def test_one_word_for_one_decision():
    """Approve/reject are 通过/否决 on every page (not 赞成/反对 on some), and the audit
    action "Password set" is an event, not the button "Set password"."""
    for po in CATALOGS:
        entries = _translations(po)
        assert not [m for m, t in entries.items() if "赞成" in t or "反对" in t], po
        if "Approve" in entries:
            assert entries["Approve"] == entries["approve"] == "通过", po
            assert entries["Reject"] == entries["reject"] == "否决", po
        if "Password set" in entries:
            assert entries["Password set"] != entries.get("Set password")


# ---------------------------------------------------------------- the .mo files
def _snapshot(paths):
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}


def test_starting_the_app_never_rewrites_the_committed_catalogs(site, tmp_path):
    mos = [po.with_suffix(".mo") for po in CATALOGS]
    before = _snapshot(mos)
    for po in CATALOGS:  # a checkout can leave a .po newer than its .mo
        os.utime(po, ns=(po.stat().st_atime_ns, max(m.stat().st_mtime_ns for m in mos) + 10**9))
    try:
        make_app(site.db).test_client().get("/login")
    finally:
        for po in CATALOGS:
            os.utime(po, ns=(po.stat().st_atime_ns, min(m.stat().st_mtime_ns for m in mos) - 10**9))
    assert _snapshot(mos) == before


def test_an_out_of_date_catalog_is_compiled_elsewhere(tmp_path):
    from webui.i18n import compiled_directories
    copy = tmp_path / "translations"
    shutil.copytree(ROOT / "webui" / "translations", copy)
    po = copy / "zh" / "LC_MESSAGES" / "messages.po"
    mo = po.with_suffix(".mo")
    po.write_text(po.read_text(encoding="utf-8").replace('msgstr "方法学目录"', 'msgstr "目录X"'),
                  encoding="utf-8")
    before = _snapshot([mo])
    (used,) = compiled_directories([copy])
    assert used != str(copy) and _snapshot([mo]) == before
    from babel.messages.mofile import read_mo
    with (Path(used) / "zh" / "LC_MESSAGES" / "messages.mo").open("rb") as f:
        assert {m.id: m.string for m in read_mo(f)}["Methodology catalogue"] == "目录X"
    assert compiled_directories([ROOT / "webui" / "translations"]) == [
        str(ROOT / "webui" / "translations")]  # the committed ones are current


# ---------------------------------------------------------------- the pages in zh
class _Visible(HTMLParser):
    """The text a reader sees: text nodes outside code, scripts and user content, and the
    attributes shown as text (title, placeholder, aria-label, alt, button values)."""

    HIDDEN = {"script", "style", "code", "pre", "textarea", "option", "kbd", "samp", "math",
              "no-translate"}  # the last: an element marked translate="no" (user content)
    ATTRIBUTES = ("title", "placeholder", "aria-label", "alt", "data-confirm")

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.texts: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag not in ("br", "img", "input", "meta", "link", "hr", "wbr", "col", "source"):
            self.stack.append("no-translate" if attrs.get("translate") == "no" else tag)
        for name in self.ATTRIBUTES:
            if attrs.get(name):
                self.texts.append(attrs[name])
        if tag == "input" and attrs.get("type") in ("submit", "button") and attrs.get("value"):
            self.texts.append(attrs["value"])

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop() in (tag, "no-translate"):
                break

    def handle_data(self, data):
        if not self.HIDDEN.intersection(self.stack) and data.strip():
            self.texts.append(" ".join(data.split()))


def _english_matcher(extracted: dict[str, list]):
    """A regex matching a text node that is entirely one English msgid (its %(x)s filled)."""
    patterns = []
    for msgid in extracted:
        words = re.sub(r"%\([a-z_]+\)[sd]|%[sd]", "", msgid)
        if not re.search(r"[A-Za-z]{3}", words) or msgid.isupper():
            continue  # a symbol, an abbreviation (CSV, API)
        if words != msgid and len(words.split()) < 2:
            continue  # "%(n)d points": as likely an author's own text (an example's title)
        pattern = re.escape(" ".join(msgid.split()))
        pattern = re.sub(r"%\\\([a-z_]+\\\)[sd]|%[sd]", ".+?", pattern)
        patterns.append(pattern)
    return re.compile("|".join(sorted(patterns, key=len, reverse=True)))


SKIP = re.compile(r"^/(lang/|logout|static/|api/|healthz)|\.(csv|json|tanpu)$|/document$")


def test_the_zh_pages_show_no_english_message(site, extracted):
    """A crawl from the dashboard (as an administrator, then as an integrator and a signed-out
    visitor): no text node of a zh page is an English msgid."""
    matcher = _english_matcher(extracted)
    versions = site.db  # noqa: F841 - the crawl finds the versions through the links
    found: dict[str, list[str]] = {}
    for who, starts in ((site.reg.admin, ["/", "/admin/", "/editor/", "/review/", "/audit",
                                          "/editor/new", "/admin/rewards"]),
                        (site.reg.integrator, ["/", "/integrations/tokens"]),
                        (site.reg.author, ["/", "/editor/"]),
                        (None, ["/login", "/no/such/page"])):
        client = site.new_client(who)
        queue, seen, pages = list(starts), set(), 0
        while queue and pages < 70:
            url = queue.pop(0)
            if url in seen or SKIP.search(urlsplit(url).path):
                continue
            seen.add(url)
            response = client.get(url)
            pages += 1
            if not response.content_type.startswith("text/html"):
                continue
            html = response.get_data(as_text=True)
            parser = _Visible()
            parser.feed(html)
            english = [t for t in parser.texts if matcher.fullmatch(t)]
            if english:
                found[url] = english
            for link in re.findall(r'href="(/[^"#]*)', html):
                path = urlsplit(link.replace("&amp;", "&"))
                if not path.query or path.path in ("/audit",) and pages < 5:
                    queue.append(path.path + (("?" + path.query) if path.query else ""))
        assert pages > (1 if who is None else 3), (who, pages)
    assert found == {}, {u: sorted(set(t)) for u, t in found.items()}


# ---------------------------------------------------------------- the registry's refusals
@pytest.mark.parametrize("english", [
    "unknown role wizard (roles: expert, committee_member, administrator, integrator)",
    "there is already a waste committee",
    "asking for changes needs a comment saying why",
    "a vote to request changes needs a comment saying why",
    "cannot reinstate cn.x 1.0.0: it is retired (a published version is immutable); "
    "reinstate applies to suspended",
    "cannot approve cn.x 1.0.0: quorum not met: 1 vote(s), 1 approving, 1 abstention(s); "
    "needs 3 votes with 2/3 approving, from at least 2 people (1 of 3 votes; "
    "1 approving people, 2 needed)",
    "a individual account can be under a unit or a region account or none, not under a project",
    "a password needs at least 10 characters",
    "an author cannot approve or publish their own work",
    "cn.x 1.1.0 cannot be submitted: does not compile: 2 error(s)",
])
def test_a_registry_refusal_reads_in_chinese(english):
    from webui.messages_zh import server_text
    zh = server_text(english, "zh")
    words = re.sub(r"`[^`]*`|cn\.x|\b(expert|committee_member|administrator|integrator|waste|wizard)\b",
                   "", zh)
    assert not re.search(r"[A-Za-z]{3}", words), zh
    assert server_text(english, "en") == english


def test_every_audit_action_has_a_label():
    """Each action the registry records (audit.append(..., "x.y", ...), the workflow's
    version.<transition>) is named in the reader's language on the audit pages."""
    from registry.workflow import TRANSITIONS
    from webui.views.common import ACTION_LABELS
    written = set()
    for path in list((ROOT / "registry").glob("*.py")) + list((ROOT / "webui").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        written |= set(re.findall(r'audit\.append\(\s*\w+,\s*[\w.]+,\s*"([a-z_]+\.[a-z_]+)"', text))
    written |= {f"version.{name}" for name in TRANSITIONS}
    written |= {"account.set_status", "account.set_parent"}  # f"account.set_{column}"
    assert len(written) > 30
    assert sorted(written - set(ACTION_LABELS)) == []


# ---------------------------------------------------------------- explanations (issue 15, item 9)
ENGLISH_WORDS = re.compile(r"\b(input|parameter|let|output|counter|history|require|rule|counted|"
                           r"reward|in force from|source|line|passed|FAILED|account total|every|"
                           r"kept|none|credited|capped|rejected|duplicate)\b")


def _zh_words(line: str, step: dict) -> str:
    """The line without what stays as written: the step's names, values, units, codes."""
    for value in sorted((str(v) for v in step.values() if v not in (None, "")), key=len, reverse=True):
        line = line.replace(value, "")
    return line


def test_the_explanation_trace_reads_in_chinese_and_the_english_is_unchanged():
    """engine/explain.render in zh (engine/explain_zh.py) for every bundled methodology's
    sample: one line per step as in English, and none of the English words left."""
    import copy

    from engine.explain import render
    from webui import evaluation
    from webui.records import from_path
    checked = 0
    for source in sorted((ROOT / "methodologies").glob("*.tanpu")):
        sample = ROOT / "methodologies" / "samples" / f"{source.stem}.csv"
        if not sample.is_file():
            continue
        engine = evaluation.engine_for(source.read_text(encoding="utf-8"))
        records = from_path(sample)
        zone = engine.methodology.metadata.timezone
        for result in engine.evaluate(records.rows[:60], explain=True,
                                      column_units=records.column_units or None):
            trace = result.explanation or []
            english = render(copy.deepcopy(trace), zone)
            chinese = render(copy.deepcopy(trace), zone, lang="zh")
            assert len(chinese) == len(english)
            steps = [s for s in trace if s["kind"] in ("input", "parameter", "let", "output",
                                                       "counter", "history", "require", "rule",
                                                       "counted", "reward")]
            for line, step in zip(chinese, steps):
                words = _zh_words(line, step)
                assert not ENGLISH_WORDS.search(words), (source.name, line)
                checked += 1
    assert checked > 1000


def test_try_it_explains_in_the_readers_language(site):
    source = (ROOT / "methodologies" / "shenzhen-public-transit.tanpu").read_text(encoding="utf-8")
    records = ("id,account,mode,distance[km],boarded,alighted\n"
               "r1,a1,metro,27.3,2024-05-06T07:41,2024-05-06T08:37\n")
    texts = {}
    for lang in ("zh", "en"):
        client = site.new_client(site.reg.author)
        client.set_cookie("tanpu_lang", lang)
        body = client.post("/editor/try", json={"source": source, "records": records}).get_json()
        texts[lang] = "\n".join(body["results"][0]["explanation_text"])
    assert "  input      mode = metro" in texts["en"] and "line" in texts["en"]
    assert "  输入　　 mode = metro" in texts["zh"] and "第" in texts["zh"]
    assert not re.search(r"\b(input|line|passed|in force from)\b", texts["zh"]), texts["zh"]
