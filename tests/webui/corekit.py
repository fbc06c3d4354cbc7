"""Fixtures for the core web pages' tests (sign-in, catalogue, methodology page, admin,
audit, dashboard, languages, errors, seed, serve):

    from tests.webui.corekit import *   # noqa: F401,F403 - the fixtures below

    def test_something(site):            # on migrated SQLite and on PostgreSQL
        client = site.login(site.reg.admin)
        client.get("/methodologies")

`site` is the app from create_app() on a database made by the migrations, with the
registry test world (tests/registry/helpers.Registry: administrators, authors, a
transport committee of members, an energy committee, an integrator) and the bundled
methodologies published by `tanpu seed` (through the workflow). The database is made
once per test session and backend, and each test gets it as it was (the registry
fixtures: a copy of the SQLite file; PostgreSQL rows put back after the test).
Every user of `reg` can sign in with PASSWORD.
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

import tests.registry.conftest as _registry_fixtures
from registry import users
from registry.db import Database
from registry.models import User
from tests.registry.helpers import METHODOLOGY, Registry, source

_FIXTURES = {name: value for name, value in vars(_registry_fixtures).items()
             if type(value).__name__ == "FixtureFunctionDefinition"}
globals().update(_FIXTURES)

PASSWORD = "correct horse battery"
# the bundled methodologies/*.tanpu, which `tanpu seed` publishes
BUNDLED = len(list((Path(__file__).resolve().parents[2] / "methodologies").glob("*.tanpu")))


@dataclass(frozen=True)
class SeedInfo:
    reg: Registry
    published: tuple[str, ...]


def _prepare(url: str) -> SeedInfo:
    from registry import migrate
    from tanpu.seed import seed

    database = Database(url, durable=False, pool_pre_ping=False)
    try:
        migrate.upgrade(database)
        reg = Registry.setup(database)
        with database.unit_of_work() as s:
            for uid in [reg.admin, reg.admin2, reg.author, reg.expert, *reg.members,
                        reg.outsider, reg.integrator]:
                users.set_password(s, None, uid, PASSWORD)
        report = seed(database)
        assert not report.skipped, report.skipped
        return SeedInfo(dataclasses.replace(reg, db=None), tuple(report.published))
    finally:
        database.dispose()


@dataclass
class Site:
    reg: Registry
    app: object
    client: object
    published: tuple[str, ...]

    @property
    def db(self) -> Database:
        return self.reg.db

    def login(self, user_id: Optional[int], client=None):
        """Signs `user_id` in (without the form: a valid session cookie); None: signs out."""
        from webui import auth
        client = client or self.client
        if user_id is None:
            with client.session_transaction() as session:
                session.clear()
            return client
        with self.app.app_context():
            with self.db.read() as s:
                user = s.get(User, user_id)
            fingerprint = auth._fingerprint(user)
        with self.db.unit_of_work() as s:  # a session open on the server, as signing in makes
            token = users.start_session(s, user_id)
        now = time.time()
        with client.session_transaction() as session:
            session["auth"] = {"uid": user_id, "at": now, "seen": now, "fp": fingerprint,
                               "sid": token}
        return client

    def new_client(self, user_id: Optional[int] = None):
        client = self.app.test_client()
        if user_id is not None:
            self.login(user_id, client)
        return client

    def email(self, user_id: int) -> str:
        with self.db.read() as s:
            return s.get(User, user_id).email

    def user_id(self, email: str) -> int:
        with self.db.read() as s:
            return users.by_email(s, email).id


def make_app(database: Database, **config):
    from webui import create_app
    settings = {"TESTING": True, "WTF_CSRF_ENABLED": False, "SECRET_KEY": "test-secret",
                "DATABASE_URL": database.url, **config}
    return create_app(settings, database=database)


def _site(request, backend, tmp_path, **config) -> Site:
    url, info, release = _registry_fixtures._copy(request, backend, tmp_path, "webui-core",
                                                  _prepare)
    database = Database(url, durable=False, pool_pre_ping=False)
    request.addfinalizer(release)
    request.addfinalizer(database.dispose)
    app = make_app(database, **config)
    return Site(dataclasses.replace(info.reg, db=database), app, app.test_client(),
                info.published)


@pytest.fixture
def site(request, backend, tmp_path) -> Site:
    return _site(request, backend, tmp_path)


@pytest.fixture
def csrf_site(request, backend, tmp_path) -> Site:
    """The same, with CSRF protection on (as in production)."""
    return _site(request, backend, tmp_path, WTF_CSRF_ENABLED=True)


def csrf_token(response) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', response.get_data(as_text=True))
    assert match, "no CSRF token in the page"
    return match[1]


def text_of(response) -> str:
    """The page's text without tags (to look for sentences)."""
    html = response.get_data(as_text=True)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def rows(response, attribute: str) -> list[str]:
    """The values of data-<attribute> in the page, in order."""
    return re.findall(rf'data-{attribute}="([^"]*)"', response.get_data(as_text=True))


def no_traceback(response) -> None:
    body = response.get_data(as_text=True)
    assert "Traceback" not in body and 'File "' not in body and "Error:" not in body[:200]


__all__ = sorted(_FIXTURES) + ["site", "csrf_site", "Site", "make_app", "csrf_token", "text_of",
                                "rows", "no_traceback", "PASSWORD", "BUNDLED", "METHODOLOGY",
                                "source"]
