"""The curl examples of docs/api.md's "Jobs" and "Webhooks" sections run as written, in
order, in one shell, against a live `tanpu serve` (with its worker): a CSV file submitted
as a credit job, waited for, its results downloaded; a webhook subscribed and its log read."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

from registry import tokens, users
from registry.db import Database
from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures (backend, empty_url)
from tests.webui.reviewkit import ROOT, SAMPLE
from tests.webui.serverkit import start_server as _start


def _blocks() -> list[str]:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    part = text[text.index("## Jobs: large submissions"):text.index("## Errors")]
    return [b for b in re.findall(r"```sh\n(.*?)```", part, re.S) if "$TANPU" in b]


def test_the_jobs_and_webhooks_examples_run_against_a_live_server(empty_url, tmp_path, monkeypatch):
    if "postgresql" in empty_url:  # the server's side is tested on both elsewhere; once is enough
        return
    monkeypatch.setenv("TANPU_JOBS_DIR", str(tmp_path / "jobs"))
    blocks = _blocks()
    assert len(blocks) >= 4
    server, url = _start(empty_url, tmp_path / "server.log")
    database = Database(empty_url)
    try:
        with database.unit_of_work() as s:
            admin = users.create_user(s, None, email="ops@tanpu.test", name="ops",
                                      roles=("administrator",))
            integrator = users.create_user(s, None, email="bus@tanpu.test", name="bus",
                                           roles=("integrator",))
            token = tokens.create(s, admin, integrator, "docs")[1]
        work = tmp_path / "work"
        work.mkdir()
        shutil.copy(SAMPLE, work / "rides.csv")
        script = "set -euo pipefail\n" + "\n".join(blocks)
        done = subprocess.run(["bash", "-c", script], cwd=work, capture_output=True, text=True,
                              timeout=300, env={**os.environ, "TANPU": url, "TOKEN": token})
        assert done.returncode == 0, done.stderr + done.stdout
        lines = done.stdout.splitlines()
        job_path = lines[0]
        assert re.fullmatch(r"/api/v1/jobs/[0-9a-f-]{36}", job_path)
        job = json.loads(lines[1])
        rows = sum(1 for _ in open(SAMPLE, encoding="utf-8")) - 1
        assert job["status"] == "succeeded"
        summary = job["summary"]
        assert job["progress"]["rows_done"] == rows == summary["results"] + summary["errors"]
        assert 0 < summary["credited"] <= summary["results"]
        assert (work / "results.csv").read_text().count("\n") == summary["results"] + 1
        errors = [json.loads(line) for line in (work / "errors.jsonl").read_text().splitlines()]
        assert len(errors) == summary["errors"] and all(e["reason"] for e in errors)
        assert lines[2].startswith("index,row,id,account")
        subscription = json.loads(lines[4])
        assert subscription["secret"].startswith("whsec_")
        assert json.loads(lines[5])["items"][0]["id"] == subscription["id"]
        assert json.loads(lines[6]) == {"items": [], "next_before": None}
    finally:
        server.kill()
        server.wait(30)
        database.dispose()
