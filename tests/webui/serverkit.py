"""A real `tanpu serve` (waitress) in a subprocess, for the tests that need the server
itself: kill -9 (test_crash.py), idle connections (test_server.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(database_url: str, log: Path, *options: str,
                 env_extra: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """`tanpu serve` on a free port, once it answers /healthz: (process, base url).
    `options`: more `tanpu serve` options; `env_extra`: more environment (settings such
    as TANPU_API_RATE_LIMIT_TOKEN). Its output is appended to `log`."""
    port = free_port()
    env = {**os.environ, "SECRET_KEY": "server-test", **(env_extra or {})}
    env.pop("DATABASE_URL", None)
    with open(log, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "tanpu.cli", "serve", "--database-url",
                                    database_url, "--port", str(port), *options],
                                   cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"tanpu serve exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2):
                return process, url
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"tanpu serve did not answer: {log.read_text()[-2000:]}")
