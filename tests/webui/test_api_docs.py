"""Every example of docs/api.md runs against a live `tanpu serve` (waitress, SQLite): the
curl commands with bash, the Python ones with the client of clients/python, in the order
of the document (the Python examples share their names, as a reader's session would).
Each curl example has its client twin beside it."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.webui import livekit

DOC = livekit.ROOT / "docs" / "api.md"
BLOCK = re.compile(r"```(sh|python)\n# example: ([\w-]+)\n(.*?)```", re.S)


def examples() -> list[tuple[str, str, str]]:
    return [(m.group(1), m.group(2), m.group(3)) for m in BLOCK.finditer(DOC.read_text())]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    folder = tmp_path_factory.mktemp("docs")
    server = livekit.start(f"sqlite:///{folder / 'tanpu.db'}", folder / "server.log")
    yield server
    server.stop()


def test_every_curl_example_has_its_client_twin():
    found = examples()
    curl = {name for kind, name, _ in found if kind == "sh"}
    python = {name for kind, name, _ in found if kind == "python"}
    assert len(found) >= 15 and curl <= python, curl - python


def test_every_example_of_the_api_documentation_runs(live):
    from tanpu_client import Client
    client = Client(live.url, token=live.token)
    # an account with three credits on 2024-05-20, for the statement and balance examples
    account = client.create_account("individual", external_id="docs-rider")["id"]
    rides = [{"id": f"docs-{i}", "account": "docs-rider", "mode": "metro", "distance": "5 km",
              "boarded": f"2024-05-20T{7 + i:02d}:00", "alighted": f"2024-05-20T{7 + i:02d}:20"}
             for i in range(3)]
    assert client.credit("cn.shenzhen.public-transit", rides)["summary"]["credited"] == 3

    env = {**os.environ, "TANPU": live.url, "TOKEN": live.token, "ACCOUNT": str(account)}
    namespace = {"TANPU": live.url, "TOKEN": live.token, "ACCOUNT": account}
    ran = []
    for kind, name, code in examples():
        if kind == "sh":
            run = subprocess.run(["bash", "-euo", "pipefail", "-c", code], env=env,
                                 capture_output=True, text=True, timeout=120)
            assert run.returncode == 0, f"{name}: {run.stderr}\n{run.stdout}"
            expect = re.search(r"# expect: (\d+)", code)
            if expect:
                assert re.search(rf"^HTTP/1\.1 {expect.group(1)} ", run.stdout, re.M), run.stdout
                assert "application/problem+json" in run.stdout
            else:
                assert run.stdout.strip(), f"{name}: no output"
        else:
            exec(compile(code, f"docs/api.md:{name}", "exec"), namespace)  # noqa: S102
        ran.append((kind, name))
    assert len(ran) == len(examples())
    # the curl example's request id is in the server's log line for it
    assert "request_id=my-trace-1" in live.log.read_text()
