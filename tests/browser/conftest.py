"""Browser tests: the real server (`tanpu serve`, waitress, in a subprocess) driven by a real
headless Chromium through Playwright, on SQLite and on PostgreSQL.

Chromium: Debian's package (`apt-get install -y chromium`, which `bash .ci/run` does when
/usr/bin/chromium is missing); TANPU_CHROMIUM names another executable. Playwright's own
browser download is never used. When Chromium (or the playwright package) is missing the
tests are skipped with the reason, except under CI (env CI set), where they fail.

PostgreSQL: $TANPU_TEST_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test),
as in tests/registry: each server gets a fresh schema, migrated by `tanpu serve` itself.

The database is prepared the way an operator would: migrated (registry/migrate.py), then
the story's people created with registry functions (users.create_user, workflow.add_member
to the transport committee); `tanpu serve` then seeds the bundled methodologies through
the workflow, as it does on every start. Everything after that goes through the browser.

Screenshots go to tests/browser/screenshots/<backend>/ (ignored by git).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
PASSWORD = "e2e story password"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]


# ---------------------------------------------------------------- Chromium and Playwright
def chromium_path() -> str | None:
    wanted = os.environ.get("TANPU_CHROMIUM")
    if wanted:
        return wanted if Path(wanted).is_file() else None
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _unavailable() -> str:
    """Why the browser tests cannot run here ("" when they can)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as error:
        return f"the playwright package is missing ({error}): pip install -e '.[test]'"
    if chromium_path() is None:
        where = os.environ.get("TANPU_CHROMIUM") or "/usr/bin/chromium"
        return (f"Chromium is not installed ({where} is missing): apt-get install -y chromium "
                "(bash .ci/run installs it)")
    return ""


@pytest.fixture(scope="session")
def browser():
    problem = _unavailable()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run under CI: {problem}")
        pytest.skip(f"browser tests skipped: {problem}")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # generous: CI machines can be busy
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                              args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


# ---------------------------------------------------------------- the people of the story
@dataclass(frozen=True)
class Person:
    key: str
    email: str
    name: str
    roles: tuple[str, ...]
    committee: bool = False  # a member of the transport committee


PEOPLE = (
    # the expert also sits on the transport committee: the author of a version must still
    # not vote on it, nor open its review
    Person("expert", "li.expert@e2e.test", "李专家 Li (expert)", ("expert", "committee_member"), True),
    Person("member1", "wang.member@e2e.test", "王委员 Wang (member 1)", ("committee_member",), True),
    Person("member2", "zhao.member@e2e.test", "赵委员 Zhao (member 2)", ("committee_member",), True),
    Person("member3", "chen.member@e2e.test", "陈委员 Chen (member 3)", ("committee_member",), True),
    Person("admin", "zhou.admin@e2e.test", "周管理员 Zhou (administrator)", ("administrator",)),
    Person("integrator", "api.client@e2e.test", "积分平台 Points platform (integrator)",
           ("integrator",)),
)


def _prepare(url: str) -> None:
    """Migrations, then the story's people (registry functions, as `tanpu admin create-user`
    does; committee membership has no command)."""
    from registry import migrate, users, workflow
    from registry.db import Database

    database = Database(url, durable=False)
    try:
        migrate.upgrade(database)
        # one argon2 hash (the server's parameters: no rehash at sign-in) for everyone, as
        # hashing costs about a second each on a small machine
        password_hash = users.hash_password(PASSWORD)
        with database.unit_of_work() as s:
            made = {p.key: users.create_user(s, None, email=p.email, name=p.name,
                                             roles=list(p.roles))
                    for p in PEOPLE}
            for user in made.values():
                user.password_hash = password_hash
            committee = workflow.create_committee(
                s, made["admin"], domain="transport",
                name="交通出行专家委员会 Transport committee")
            for p in PEOPLE:
                if p.committee:
                    workflow.add_member(s, made["admin"], committee, made[p.key])
    finally:
        database.dispose()


# ---------------------------------------------------------------- the server
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    backend: str
    url: str  # http://127.0.0.1:port
    database_url: str
    log: Path
    process: subprocess.Popen

    def tanpu(self, *args: str) -> subprocess.CompletedProcess:
        """A `tanpu` command against the server's database."""
        return subprocess.run([sys.executable, "-m", "tanpu.cli", *args,
                               "--database-url", self.database_url],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _start(backend: str, database_url: str, folder: Path) -> Server:
    port = _free_port()
    log = folder / "server.log"
    env = {**os.environ, "SECRET_KEY": "browser-tests-" + os.urandom(8).hex(),
           "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)
    env.pop("TANPU_DEMO_PASSWORD", None)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tanpu.cli", "serve", "--database-url", database_url,
             # the default processes: one on SQLite, one per CPU on PostgreSQL (a check
             # once timed out there under load, answering like the source before the edit:
             # each process's first check started its check processes inside its time
             # limit; webui/check_process.py)
             "--host", "127.0.0.1", "--port", str(port), "--threads", "8"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    server = Server(backend, f"http://127.0.0.1:{port}", database_url, log, process)
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"tanpu serve exited with {process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if time.monotonic() > deadline:
            _stop(process)
            raise RuntimeError(f"tanpu serve did not answer in 120 s:\n{server.log_tail()}")
        time.sleep(0.2)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


BACKENDS = [pytest.param("sqlite", id="sqlite"),
            pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def server(request, tmp_path):
    """`tanpu serve` on a fresh database of the backend, with the story's people."""
    backend = request.param
    if backend == "sqlite":
        database_url = f"sqlite:///{tmp_path / 'tanpu.db'}"
        drop = None
    else:
        from tests.registry.conftest import PostgresServer, _postgres

        url, problem = _postgres()
        if problem and url is not None:
            pytest.fail(problem)
        if url is None:
            pytest.skip(problem)
        postgres = PostgresServer(url)
        request.addfinalizer(postgres.close)
        database_url, drop = postgres.empty()
    _prepare(database_url)
    running = _start(backend, database_url, tmp_path)
    try:
        yield running
    finally:
        _stop(running.process)
        if drop is not None:
            drop()
