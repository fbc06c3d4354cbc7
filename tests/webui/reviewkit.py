"""Fixtures and helpers for the editor, review and API tests (tests/webui/test_editor*.py,
test_review*.py, test_api*.py):

    from tests.webui.reviewkit import *   # noqa: F401,F403 - the fixtures below

    def test_something(web):              # on migrated SQLite and on PostgreSQL
        web.login(web.reg.author)
        web.client.get("/editor/")

`web` is the Flask app built by create_app() on the registry test database `reg`
(tests/registry: migrated by Alembic, seeded with an administrator, authors, a transport
committee and the methodology test.transit), a test client, and helpers to sign in and to
bring versions along.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import tests.registry.conftest as _registry_fixtures
from registry import migrate, tokens, users, workflow
from registry.db import Database
from registry.models import User
from tests.registry.helpers import METHODOLOGY, Registry, source

# Every fixture of the registry tests (the databases on SQLite and PostgreSQL) is usable here.
_FIXTURES = {name: value for name, value in vars(_registry_fixtures).items()
             if type(value).__name__ == "FixtureFunctionDefinition"}
globals().update(_FIXTURES)

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "methodologies" / "samples" / "shenzhen-public-transit.csv"


def faster_metro(text: str, factor: str = "50.1") -> str:
    """The test methodology with another metro factor (46.7 g/km in the original)."""
    assert "metro: 46.7" in text
    return text.replace("metro: 46.7", f"metro: {factor}", 1).replace(
        "=> reduction 583.75 g, points 583",
        f"=> reduction {round(float(factor) * 12.5, 4):g} g, points {int(float(factor) * 12.5)}", 1
    ).replace("=> reduction 467 g", f"=> reduction {round(float(factor) * 10, 4):g} g", 1)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.split("\n"), start=1) if needle in line)


@dataclass
class Web:
    reg: Registry
    app: object
    client: object

    def login(self, user_id: int | None, client=None):
        """Signs `user_id` in on the client (None: signs out)."""
        from webui import auth
        client = client or self.client
        if user_id is None:
            with client.session_transaction() as session:
                session.clear()
            return client
        with self.app.app_context():
            with self.reg.db.read() as s:
                user = s.get(User, user_id)
            fingerprint = auth._fingerprint(user)
        with self.reg.db.unit_of_work() as s:  # a session open on the server, as signing in makes
            token = users.start_session(s, user_id)
        now = time.time()
        with client.session_transaction() as session:
            session["auth"] = {"uid": user_id, "at": now, "seen": now, "fp": fingerprint,
                               "sid": token}
        return client

    def new_client(self, user_id: int | None = None, lang: str = "en"):
        client = self.app.test_client()
        client.set_cookie("tanpu_lang", lang)
        if user_id is not None:
            self.login(user_id, client)
        return client

    def token(self, owner: int | None = None) -> str:
        with self.reg.uow() as s:
            return tokens.create(s, self.reg.admin, owner or self.reg.integrator, "tests")[1]

    def api(self, token: str):
        return {"Authorization": f"Bearer {token}"}

    # ------------------------------------------------------------ versions
    def published(self, version: str = "1.0.0", effective_from=dt.date(2024, 1, 1),
                  text: str | None = None, methodology_id: str = METHODOLOGY,
                  grace_days: int = 30) -> int:
        """A version brought to published through the workflow (text: its source)."""
        reg = self.reg
        with reg.uow() as s:
            vid = workflow.create_version(s, reg.author, methodology_id, version,
                                          text or source(methodology_id, version)).id
        return self.to_published(vid, effective_from, grace_days)

    def to_review(self, vid: int) -> int:
        reg = self.reg
        with reg.uow() as s:
            workflow.submit(s, reg.author, vid)
        with reg.uow() as s:
            workflow.open_review(s, reg.members[0], vid)
        return vid

    def to_published(self, vid: int, effective_from=dt.date(2024, 1, 1),
                     grace_days: int = 30) -> int:
        reg = self.reg
        self.to_review(vid)
        reg.votes(vid, "approve", "approve", "approve")
        with reg.uow() as s:
            workflow.approve(s, reg.admin, vid)
        with reg.uow() as s:
            workflow.publish(s, reg.admin, vid, effective_from=effective_from,
                             grace_days=grace_days)
        return vid

    def draft(self, version: str = "1.1.0", text: str | None = None,
              author: int | None = None) -> int:
        with self.reg.uow() as s:
            return workflow.create_version(s, author or self.reg.author, METHODOLOGY, version,
                                           text or source(METHODOLOGY, version)).id


def make_web(reg: Registry) -> Web:
    """The app on `reg`'s database, with a test client."""
    from webui import create_app
    app = create_app({"TESTING": True, "WTF_CSRF_ENABLED": False, "SECRET_KEY": "test-secret",
                      "DATABASE_URL": reg.db.url}, database=reg.db)
    client = app.test_client()
    client.set_cookie("tanpu_lang", "en")  # the tests read English; test_i18n reads Chinese
    return Web(reg, app, client)


@pytest.fixture
def web(reg) -> Web:
    return make_web(reg)


def built_copy(request, backend, tmp_path, kind: str, build):
    """A generator for a `reg` fixture of its own (a module overrides `reg` with it): the
    seeded database of `reg` on which `build(web)` brought its tests' common start (published
    versions, credits through the API) once per test session and backend, the registry
    fixtures' template named `kind`; each test gets a copy of it (SQLite: the file copied;
    PostgreSQL: the rows put back after the test, or the schema made again when the test
    changed it). Yields (Registry on the copy, what build returned)."""
    def prepare(url: str):
        database = Database(url, durable=False, pool_pre_ping=False)
        try:
            migrate.upgrade(database)
            reg = Registry.setup(database)
            extra = build(make_web(reg))
            return dataclasses.replace(reg, db=None), extra
        finally:
            database.dispose()  # no connection may stay open on a template

    url, (template, extra), release = _registry_fixtures._copy(request, backend, tmp_path, kind,
                                                               prepare)
    database = Database(url, durable=False, pool_pre_ping=False)
    yield dataclasses.replace(template, db=database), extra
    database.dispose()
    release()


def reg_built_for(fixture: str, kind: str, build):
    """A `reg` fixture for a module: for the tests that use `fixture`, the copy of `build`'s
    template (built_copy); for the others, the seeded database of tests/registry.

        reg = reg_built_for("api", "webui-published", lambda web: web.published("1.0.0"))

    The same `kind` must always mean the same `build` (one template per kind and backend)."""
    @pytest.fixture
    def reg(request, backend, tmp_path):
        if fixture in request.fixturenames:
            yield from (r for r, _ in built_copy(request, backend, tmp_path, kind, build))
            return
        yield from _registry_fixtures.reg.__wrapped__(request, backend, tmp_path)
    return reg


def publish_first(web) -> None:
    """The methodology's 1.0.0, effective from 2024-01-01, published through the workflow."""
    web.published("1.0.0", dt.date(2024, 1, 1))


def text_of(response) -> str:
    """The page's text without tags (to look for sentences)."""
    html = response.get_data(as_text=True)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


__all__ = sorted(_FIXTURES) + ["web", "Web", "make_web", "built_copy", "reg_built_for", "publish_first", "text_of", "faster_metro", "line_of", "SAMPLE",
                                "METHODOLOGY", "source"]
