"""Languages (zh by default, en), dates in Asia/Shanghai, error pages without tracebacks,
the message catalogs, the blueprint registry, the seed (idempotent, through the workflow),
and the real server (`tanpu serve`) answering over HTTP."""

from __future__ import annotations

import datetime as dt
import http.cookiejar
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import func, select

from registry import audit
from registry.models import AuditEntry, MethodologyVersion, User
from tests.webui.corekit import *  # noqa: F401,F403 - fixtures
from tests.webui.corekit import BUNDLED, PASSWORD, make_app, no_traceback, text_of

ROOT = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------- languages and dates
def test_chinese_by_default_english_when_switched(site):
    client = site.login(site.reg.admin)
    page = client.get("/methodologies")
    html = page.get_data(as_text=True)
    assert '<html lang="zh-Hans">' in html and "方法学目录" in html
    assert page.headers["Content-Language"] == "zh-Hans"
    response = client.get("/lang/en?next=/methodologies")
    assert response.status_code == 302 and response.location == "/methodologies"
    assert "tanpu_lang=en" in response.headers["Set-Cookie"]
    page = client.get("/methodologies")
    html = page.get_data(as_text=True)
    assert '<html lang="en">' in html and "Methodology catalogue" in html
    assert "方法学目录" not in html and page.headers["Content-Language"] == "en"
    assert "Shenzhen low-carbon public transport (trial)" in html  # the methodology's own title
    # back to Chinese; an unknown language changes nothing; never off site
    client.get("/lang/zh")
    assert "方法学目录" in client.get("/methodologies").get_data(as_text=True)
    assert client.get("/lang/xx?next=https://evil.example").location == "/"
    # once, without the switch
    assert "Dashboard" in text_of(site.new_client(site.reg.admin).get("/?lang=en"))


def test_every_page_has_both_languages(site):
    client = site.login(site.reg.admin)
    anonymous = site.new_client()
    for url in ("/", "/methodologies", "/methodologies/cn.hello.shared-bike", "/audit",
                "/admin/", "/login"):
        who = anonymous if url == "/login" else client
        zh = text_of(who.get(url, query_string={"lang": "zh"}))
        en = text_of(who.get(url, query_string={"lang": "en"}))
        assert zh != en, url
        assert ("碳普" in zh) and ("Tanpu" in en), url


def test_times_are_shown_in_shanghai_time(site):
    from webui.i18n import format_date, format_datetime
    with site.app.app_context():
        moment = dt.datetime(2024, 5, 20, 16, 30, tzinfo=dt.timezone.utc)
        assert format_datetime(moment) == "2024-05-21 00:30"
        assert format_datetime(moment, seconds=True) == "2024-05-21 00:30:00"
        assert format_date(moment) == "2024-05-21"
    with site.db.read() as s:
        entry = s.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
    shown = (entry.at.astimezone(dt.timezone(dt.timedelta(hours=8)))).strftime("%Y-%m-%d %H:%M:%S")
    page = site.login(site.reg.admin).get("/audit")
    assert shown in text_of(page) and "时间按 Asia/Shanghai" in text_of(page)


def test_the_compiled_catalogs_match_their_sources():
    """The committed .mo files say what the .po files say (`make i18n` compiles them)."""
    from babel.messages.mofile import read_mo
    from babel.messages.pofile import read_po
    for po in (ROOT / "webui").glob("**/translations/*/LC_MESSAGES/*.po"):
        mo = po.with_suffix(".mo")
        assert mo.exists(), f"{mo} is missing: run make i18n"
        with po.open("rb") as f:
            source = {m.id: m.string for m in read_po(f) if m.id and m.string and not m.fuzzy}
        with mo.open("rb") as f:
            compiled = {m.id: m.string for m in read_mo(f) if m.id}
        assert compiled == source, f"{mo} is older than {po}: run make i18n"


def test_the_core_pages_strings_are_all_translated():
    from babel.messages.pofile import read_po
    po = ROOT / "webui" / "translations" / "zh" / "LC_MESSAGES" / "messages.po"
    core = ("webui/auth.py", "webui/errors.py", "webui/views/", "webui/templates/base.html",
            "webui/templates/admin/", "webui/templates/audit/", "webui/templates/auth/",
            "webui/templates/catalogue/", "webui/templates/dashboard/", "webui/templates/errors/",
            "webui/templates/methodology/", "webui/templates/partials/")
    with po.open("rb") as f:
        missing = [m.id for m in read_po(f) if m.id and not m.string
                   and any(loc.startswith(core) for loc, _ in m.locations)]
    assert missing == []


# ---------------------------------------------------------------- error pages
def test_404_and_405_pages_in_the_site_style(site):
    client = site.login(site.reg.admin)
    for lang, words in (("zh", "页面不存在"), ("en", "Page not found")):
        response = client.get("/no/such/page", query_string={"lang": lang})
        assert response.status_code == 404 and words in text_of(response)
        assert 'class="error-page"' in response.get_data(as_text=True)
        no_traceback(response)
    anonymous = site.new_client().get("/no/such/page")
    assert anonymous.status_code == 404 and "登录" in text_of(anonymous)
    response = client.put("/methodologies")
    assert response.status_code == 405 and "GET" in response.headers["Allow"]
    as_json = client.get("/no/such/thing", headers={"Accept": "application/json"})
    assert as_json.status_code == 404 and as_json.get_json()["code"] == "not_found"


def test_500_shows_no_traceback_and_is_logged(site, caplog):
    app = make_app(site.db)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals: password=hunter2")

    client = app.test_client()
    with caplog.at_level("ERROR"):
        response = client.get("/boom")
    body = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "出错了" in body and "hunter2" not in body and "RuntimeError" not in body
    no_traceback(response)
    assert any("hunter2" in (r.exc_text or "") or "boom" in r.getMessage() for r in caplog.records)
    response = client.get("/boom", headers={"Accept": "application/json"})
    assert response.status_code == 500 and response.get_json()["code"] == "server_error"


def test_registry_errors_become_their_statuses():
    from registry import errors
    from webui.errors import registry_status
    assert registry_status(errors.NotFound("x")) == 404
    assert registry_status(errors.Forbidden("x")) == 403
    for error in (errors.InvalidTransition("x"), errors.Conflict("x"), errors.QuorumNotMet("x")):
        assert registry_status(error) == 409
    assert registry_status(errors.Invalid("x")) == 422


def test_security_headers(site):
    response = site.login(site.reg.admin).get("/methodologies")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Cache-Control"] == "no-store"
    cookie = site.new_client().get("/login").headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


# ---------------------------------------------------------------- blueprints
def test_missing_blueprints_are_skipped_broken_ones_are_not(site):
    from flask import Flask

    from webui.blueprints import register_all
    app = Flask("x")
    done = register_all(app, [("webui.auth", None), ("webui.not_there_yet", None)])
    assert [d.name for d in done] == ["auth", None]
    with pytest.raises(ModuleNotFoundError):  # a blueprint that imports what is missing
        register_all(Flask("y"), [("tests.webui.broken_blueprint_fixture", None)])
    assert {d.module for d in site.app.extensions["tanpu.blueprints"] if d.name} >= {
        "webui.auth", "webui.views.catalogue", "webui.views.methodology",
        "webui.views.dashboard", "webui.views.audit", "webui.views.admin"}


# ---------------------------------------------------------------- seed
def test_the_seed_is_idempotent_and_goes_through_the_workflow(site):
    from tanpu.seed import SYSTEM_EMAIL, ensure_first_admin, seed

    def state():
        with site.db.read() as s:
            return (s.scalar(select(func.count()).select_from(MethodologyVersion)),
                    s.scalar(select(func.count()).select_from(User)), audit.head(s))

    before = state()
    report = seed(site.db)
    assert report.published == [] and len(report.present) == BUNDLED and not report.skipped
    assert not report.users_created and not report.committees_created
    assert state() == before  # nothing written, not even an audit entry
    with site.db.read() as s:
        assert audit.verify(s).ok
        versions = s.scalars(select(MethodologyVersion)).all()
        bundled = [v for v in versions if v.methodology_id.startswith("cn.")]
        assert len(bundled) == BUNDLED and {v.state for v in bundled} == {"published"}
        domains = {v.methodology_id: v.methodology.committee.domain for v in bundled}
        assert domains["cn.rooftop-pv-grid"] == "energy" and domains["cn.ev-trip"] == "transport"
        system = s.scalar(select(User).where(User.email == SYSTEM_EMAIL))
        assert system.password_hash is None  # cannot sign in
        publish = s.scalars(select(AuditEntry).where(AuditEntry.action == "version.publish")).all()
        assert len(publish) == BUNDLED and {e.actor_id for e in publish} == {system.id}
        effective = {v.methodology_id: v.effective_from for v in bundled}
        assert effective["cn.shenzhen.public-transit"] == dt.date(2021, 12, 16)  # as written
    assert ensure_first_admin(site.db) is None  # administrators can sign in already


def test_the_first_administrator_is_made_once(empty_url):
    from registry import migrate, users
    from registry.db import Database
    from tanpu.seed import ensure_first_admin
    database = Database(empty_url, durable=False)
    try:
        migrate.upgrade(database)
        email, password = ensure_first_admin(database)
        assert email == "admin@tanpu.local" and len(password) >= 12
        assert ensure_first_admin(database) is None
        with database.unit_of_work() as s:
            user = users.authenticate(s, email, password)
            assert user is not None and user.roles == {"administrator"}
    finally:
        database.dispose()


# ---------------------------------------------------------------- the real server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tanpu_serve_answers_over_http(tmp_path, sqlite_files):
    """`tanpu serve` (waitress) on a free port with an SQLite file: it migrates, seeds
    (finding everything there), and serves the catalogue to a signed-in user."""
    from tests.webui.corekit import _prepare
    # start from the seeded template, so the server's own seed finds everything present
    url, _ = sqlite_files.copy("webui-core", _prepare, tmp_path / "serve.db")
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SECRET_KEY": "smoke-test"}
    env.pop("DATABASE_URL", None)
    command = [sys.executable, "-m", "tanpu.cli", "serve", "--port", str(port),
               "--database-url", url, "--threads", "2"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    output = []
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            if "Tanpu web UI on" in line:
                break
        text = "".join(output)
        assert f"http://127.0.0.1:{port}/" in text, text
        assert f"seed: 0 published, {BUNDLED} already present" in text
        assert "First administrator" not in text  # there are administrators already
        email, password = "admin@tanpu.test", PASSWORD
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=2)
                break
            except OSError:
                time.sleep(0.1)
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        login = opener.open(base + "/login", timeout=10)
        assert login.headers["Server"].startswith("tanpu") or "waitress" in login.headers["Server"]
        token = re.search(r'name="csrf_token" value="([^"]+)"', login.read().decode())[1]
        opener.open(base + "/login", urllib.parse.urlencode(
            {"email": email, "password": password, "csrf_token": token}).encode(), timeout=10)
        page = opener.open(base + "/methodologies", timeout=20)
        body = page.read().decode()
        assert page.status == 200 and page.url.endswith("/methodologies")
        assert body.count('data-methodology="') == BUNDLED
        assert "深圳市低碳公共出行碳普惠方法学（试行）" in body
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()
