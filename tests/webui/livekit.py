"""A live `tanpu serve` (waitress in a subprocess, as in production) with an integrator's
token, for the tests that must go through real HTTP: the fuzzer (test_api_fuzz.py) and
the examples of docs/api.md (test_api_docs.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from registry import tokens, users
from registry.db import Database

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Live:
    url: str
    token: str
    log: Path
    process: subprocess.Popen
    database: Database

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(30)
        self.database.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(database_url: str, log: Path, **env_extra: str) -> Live:
    """`tanpu serve` on a free port (migrates and seeds the bundled methodologies), an
    administrator and an integrator with a token of every scope."""
    port = _free_port()
    env = {**os.environ, "SECRET_KEY": "live-test", **env_extra}
    env.pop("DATABASE_URL", None)
    with open(log, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "tanpu.cli", "serve", "--database-url",
                                    database_url, "--port", str(port)],
                                   cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"tanpu serve exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2):
                break
        except (urllib.error.URLError, ConnectionError, OSError):
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"tanpu serve did not answer: {log.read_text()[-2000:]}")
            time.sleep(0.2)
    database = Database(database_url)
    with database.unit_of_work() as s:
        admin = users.create_user(s, None, email="ops@tanpu.test", name="ops",
                                  roles=("administrator",))
        integrator = users.create_user(s, None, email="bus@tanpu.test", name="bus",
                                       roles=("integrator",))
        token = tokens.create(s, admin, integrator, "live")[1]
    return Live(url, token, log, process, database)
