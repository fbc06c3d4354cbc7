"""A live `tanpu serve` (serverkit.py: waitress in a subprocess, as in production) with an
integrator's token, for the tests that must go through real HTTP: the fuzzer (test_api_fuzz.py) and
the examples of docs/api.md (test_api_docs.py)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from registry import tokens, users
from registry.db import Database
from tests.webui.serverkit import ROOT, start_server

__all__ = ["Live", "ROOT", "start"]


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


def start(database_url: str, log: Path, **env_extra: str) -> Live:
    """`tanpu serve` on a free port (migrates and seeds the bundled methodologies), an
    administrator and an integrator with a token of every scope."""
    process, url = start_server(database_url, log, env_extra=env_extra)
    database = Database(database_url)
    with database.unit_of_work() as s:
        admin = users.create_user(s, None, email="ops@tanpu.test", name="ops",
                                  roles=("administrator",))
        integrator = users.create_user(s, None, email="bus@tanpu.test", name="bus",
                                       roles=("integrator",))
        token = tokens.create(s, admin, integrator, "live")[1]
    return Live(url, token, log, process, database)
