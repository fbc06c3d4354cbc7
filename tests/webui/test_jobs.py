"""Jobs (issue 14, item 4), in process: a file sent to POST /api/v1/jobs is answered 202
at once and done by the worker (webui/worker.py, run here with run_once); the results
and errors download as JSON Lines and CSV; a job gives what POST /api/v1/evaluate gives
for the same records; crediting credits each record once, also when a worker loses its
job to another mid-way; one integrator never sees another's jobs. SQLite and
PostgreSQL. The kill -9 of a real worker process: test_jobs_crash.py."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from registry import jobs
from webui.worker import LostLease, Worker
from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures
from tests.webui.reviewkit import METHODOLOGY, publish_first, reg_built_for
from tests.webui.test_api_state import _second_integrator, ride


@pytest.fixture(autouse=True)
def _jobs_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TANPU_JOBS_DIR", str(tmp_path / "jobs"))


# Published once per session and backend (reviewkit.reg_built_for); each test of `published` gets a copy.
reg = reg_built_for("published", "webui-published", publish_first)


@pytest.fixture
def published(web):
    return web, web.token()


def rides(n: int, prefix: str = "r") -> list[dict]:
    return [ride(f"{prefix}{i}", (i * 7) % 900, km=1 + i % 13, account=f"p{i % 9}",
                 day=f"2024-06-{10 + i % 15}") for i in range(n)]


def as_csv(records: list[dict]) -> bytes:
    """Distances as plain numbers under a `distance[km]` header (the unit from the header)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "account", "mode", "distance[km]", "boarded", "alighted"])
    for r in records:
        writer.writerow([r["id"], r["account"], r["mode"], r["distance"].split()[0],
                         r["boarded"], r["alighted"]])
    return out.getvalue().encode()


def as_jsonl(records: list) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()


def submit(web, token, data: bytes, content_type: str, status: int = 202, **params):
    response = web.app.test_client().post(
        "/api/v1/jobs", query_string={"methodology": METHODOLOGY, **params}, data=data,
        headers={**web.api(token), "Content-Type": content_type})
    assert response.status_code == status, response.get_data(as_text=True)
    return response


def run_worker(web) -> None:
    Worker(web.reg.db).run_once()


def job_of(web, token, job_id: str) -> dict:
    response = web.app.test_client().get(f"/api/v1/jobs/{job_id}", headers=web.api(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def download(web, token, job_id: str, kind: str, fmt: str = "jsonl"):
    response = web.app.test_client().get(f"/api/v1/jobs/{job_id}/{kind}",
                                         query_string={"format": fmt}, headers=web.api(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    text = response.get_data(as_text=True)
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(text)))
    return [json.loads(line) for line in text.splitlines()]


def entries(web) -> list[tuple]:
    with web.reg.db.engine.connect() as c:
        return c.execute(sa.text("SELECT record_id, reduction_mg FROM credit_entries "
                                 "ORDER BY record_id")).all()


def test_a_job_is_answered_at_once_and_gives_what_evaluate_gives(published):
    web, token = published
    records = rides(120)
    response = submit(web, token, as_jsonl(records), "application/x-ndjson")
    job = response.get_json()
    assert response.headers["Location"] == f"/api/v1/jobs/{job['id']}" == job["links"]["self"]
    assert job["status"] == "queued" and job["progress"]["rows_done"] == 0
    run_worker(web)
    done = job_of(web, token, job["id"])
    assert done["status"] == "succeeded", done
    assert done["progress"] == {"rows_done": 120, "rows_total": 120, "chunks_done": 1,
                                "chunk_rows": jobs.CHUNK_ROWS}
    direct = web.app.test_client().post("/api/v1/evaluate", headers=web.api(token), json={
        "methodology": METHODOLOGY, "records": records}).get_json()
    got = download(web, token, job["id"], "results")
    assert [dict(r, row=None) for r in got] == [dict(r, row=None) for r in direct["results"]]
    assert [r["row"] for r in got] == list(range(1, 121))
    assert done["summary"]["reduction_mg"] == direct["summary"]["reduction_mg"] > 0
    assert entries(web) == []  # evaluated, not credited
    with web.reg.db.engine.connect() as c:
        audited = c.execute(sa.text("SELECT action, actor_id FROM audit_log WHERE object_id = :j "
                                    "ORDER BY seq"), {"j": job["id"]}).all()
    assert audited == [("job.submit", web.reg.integrator), ("job.finish", None)]


def test_a_credit_job_from_csv_credits_each_record_once_and_lists_the_bad_ones(published, monkeypatch):
    web, token = published
    monkeypatch.setenv("TANPU_JOB_CHUNK_ROWS", "40")
    records = rides(130)
    records[17]["boarded"] = "yesterday"  # an error of its record; the rest goes on
    data = as_csv(records)
    response = web.app.test_client().post(
        "/api/v1/jobs", headers=web.api(token),
        data={"methodology": METHODOLOGY, "mode": "credit", "file": (io.BytesIO(data), "rides.csv")},
        content_type="multipart/form-data")
    assert response.status_code == 202, response.get_data(as_text=True)
    job_id = response.get_json()["id"]
    run_worker(web)
    done = job_of(web, token, job_id)
    assert done["status"] == "succeeded"
    assert done["progress"]["chunks_done"] == 4 and done["progress"]["rows_done"] == 130
    errors = download(web, token, job_id, "errors")
    assert [(e["index"], e["id"], e["code"]) for e in errors] == [(17, "r17", "invalid_record")]
    assert "boarded" in errors[0]["reason"]
    results = download(web, token, job_id, "results")
    assert sorted(r["index"] for r in results) == [i for i in range(130) if i != 17]
    credited = {r["id"]: r["reduction_mg"] for r in results if r["credit"] == "credited"}
    assert dict(entries(web)) == credited and len(credited) == done["summary"]["credited"]
    assert sum(credited.values()) == done["summary"]["reduction_mg"] > 0
    as_csv_rows = download(web, token, job_id, "results", "csv")
    assert [(r["id"], int(r["reduction_mg"])) for r in as_csv_rows] == \
        [(r["id"], r["reduction_mg"]) for r in results]
    # the same file again, as another job: nothing is credited twice
    again = submit(web, token, data, "text/csv", mode="credit").get_json()["id"]
    run_worker(web)
    assert job_of(web, token, again)["summary"]["credited"] == 0
    assert {r["credit"] for r in download(web, token, again, "results")} == {"already_credited"}
    assert dict(entries(web)) == credited


def test_a_worker_that_loses_its_lease_leaves_the_job_to_the_next_one(published, monkeypatch):
    web, token = published
    monkeypatch.setenv("TANPU_JOB_CHUNK_ROWS", "25")
    job_id = submit(web, token, as_jsonl(rides(100)), "application/x-ndjson",
                    mode="credit").get_json()["id"]
    first = Worker(web.reg.db)
    with web.reg.db.unit_of_work() as s:
        jobs.claim(s, first.name)
    with web.reg.db.read() as s:
        job = s.get(jobs.Job, job_id)
        s.expunge(job)
    records = [json.loads(line) for line in as_jsonl(rides(100)).splitlines()]
    first._chunk(job, 0, 0, records[:25], {})  # one chunk done, then the worker stalls
    with web.reg.db.unit_of_work() as s:  # its lease runs out
        s.execute(sa.update(jobs.Job).values(lease_until=jobs.utcnow() - dt.timedelta(seconds=1)))
    run_worker(web)  # another worker resumes at row 25
    with pytest.raises(LostLease):  # the first one wakes up: its chunk is refused
        first._chunk(job, 1, 25, records[25:50], {})
    done = job_of(web, token, job_id)
    assert done["status"] == "succeeded" and done["attempts"] == 2
    results = download(web, token, job_id, "results")
    assert [r["index"] for r in results] == list(range(100))
    assert len(entries(web)) == done["summary"]["credited"] == 100


def test_one_integrator_never_sees_another_s_jobs(published, reg):
    web, token = published
    other = web.token(_second_integrator(reg))
    job_id = submit(web, token, as_jsonl(rides(3)), "application/x-ndjson").get_json()["id"]
    run_worker(web)
    client = web.app.test_client()
    for path in (f"/api/v1/jobs/{job_id}", f"/api/v1/jobs/{job_id}/results",
                 f"/api/v1/jobs/{job_id}/errors"):
        assert client.get(path, headers=web.api(other)).status_code == 404
        assert client.get(path, headers=web.api(token)).status_code == 200
    assert client.get("/api/v1/jobs", headers=web.api(other)).get_json()["items"] == []
    assert [j["id"] for j in client.get("/api/v1/jobs", headers=web.api(token)).get_json()["items"]] == [job_id]


def test_parquet_and_bad_lines_and_idempotency(published):
    web, token = published
    records = rides(10)
    table = pa.Table.from_pylist(records)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    response = web.app.test_client().post(
        "/api/v1/jobs", query_string={"methodology": METHODOLOGY},
        data=sink.getvalue(), headers={**web.api(token), "Content-Type": "application/vnd.apache.parquet",
                                       "Idempotency-Key": "day-1"})
    assert response.status_code == 202
    first = response.get_json()["id"]
    replay = web.app.test_client().post(
        "/api/v1/jobs", query_string={"methodology": METHODOLOGY},
        data=sink.getvalue(), headers={**web.api(token), "Content-Type": "application/vnd.apache.parquet",
                                       "Idempotency-Key": "day-1"})
    assert replay.status_code == 200 and replay.get_json()["id"] == first
    other_file = web.app.test_client().post(
        "/api/v1/jobs", query_string={"methodology": METHODOLOGY}, data=as_jsonl(records),
        headers={**web.api(token), "Content-Type": "application/x-ndjson", "Idempotency-Key": "day-1"})
    assert other_file.status_code == 409 and "another job" in other_file.get_json()["detail"]
    jsonl = as_jsonl([records[0], "not json", "[1, 2]", records[1]])
    second = submit(web, token, jsonl, "application/x-ndjson").get_json()["id"]
    run_worker(web)
    assert job_of(web, token, first)["summary"]["results"] == 10
    errors = download(web, token, second, "errors")
    assert [(e["index"], e["code"]) for e in errors] == [(1, "invalid_record"), (2, "invalid_record")]
    assert "not a JSON object" in errors[0]["reason"]
    assert [r["index"] for r in download(web, token, second, "results")] == [0, 3]


def test_what_cannot_be_a_job_is_refused_at_once(published):
    web, token = published
    bad = submit(web, token, b"PAR1 this is no parquet", "application/vnd.apache.parquet", 400)
    assert bad.get_json()["code"] == "unreadable_file"
    assert submit(web, token, b"{}", "application/octet-stream", 415).get_json()["code"] == \
        "unsupported_media_type"
    response = web.app.test_client().post(
        "/api/v1/jobs", query_string={"methodology": "no.such"}, data=b"{}\n",
        headers={**web.api(token), "Content-Type": "application/x-ndjson"})
    assert response.status_code == 404
    assert submit(web, token, b"{}\n", "application/x-ndjson", 400, mode="twice").status_code == 400
    with web.reg.db.engine.connect() as c:
        assert c.execute(sa.text("SELECT COUNT(*) FROM jobs")).scalar_one() == 0
    assert not any((jobs.jobs_dir()).glob("*/input.*"))


def test_the_operator_lists_and_shows_jobs_from_the_command_line(published):
    from click.testing import CliRunner

    from tanpu.cli import main
    web, token = published
    job_id = submit(web, token, as_jsonl(rides(4)), "application/x-ndjson").get_json()["id"]
    run_worker(web)
    runner = CliRunner()
    listed = runner.invoke(main, ["jobs", "list", "--database-url", web.reg.db.url, "--json"])
    assert listed.exit_code == 0, listed.output
    assert [(j["id"], j["status"], j["progress"]["rows_done"]) for j in json.loads(listed.output)] == \
        [(job_id, "succeeded", 4)]
    assert json.loads(runner.invoke(main, ["jobs", "list", "--database-url", web.reg.db.url,
                                           "--status", "queued", "--json"]).output) == []
    table = runner.invoke(main, ["jobs", "list", "--database-url", web.reg.db.url])
    assert job_id in table.output and "4/4" in table.output
    shown = runner.invoke(main, ["jobs", "show", job_id, "--database-url", web.reg.db.url])
    assert json.loads(shown.output)["folder"] == str(jobs.folder(job_id))
    missing = runner.invoke(main, ["jobs", "show", "nope", "--database-url", web.reg.db.url])
    assert missing.exit_code == 1 and "no job nope" in missing.output


def test_a_file_that_breaks_mid_way_or_is_too_long_fails_its_job_with_the_reason(published, monkeypatch):
    web, token = published
    good = as_csv(rides(6)).decode()
    broken = good + 'r-x,p1,metro,3,"2024-06-20T06:00,2024-06-20T06:30\n'  # a quote never closed
    first = submit(web, token, broken.encode(), "text/csv").get_json()["id"]
    monkeypatch.setattr(jobs, "MAX_RECORDS", 5)
    second = submit(web, token, good.encode(), "text/csv", mode="credit").get_json()["id"]
    run_worker(web)
    failed = job_of(web, token, first)
    assert failed["status"] == "failed" and "cannot be read" in failed["failure"]
    assert failed["failure"] == (
        "body: cannot be read (FileFormatError: body: line 8 (byte 356): a quoted cell opens "
        'here and is never closed (the file has an odd number of " characters))')
    too_long = job_of(web, token, second)
    assert too_long["status"] == "failed"
    assert too_long["failure"] == "6 records: at most 5 in a job"
    assert too_long["progress"]["rows_done"] == 0 and entries(web) == []


def test_two_workers_share_the_queue_and_never_take_the_same_job(published, monkeypatch):
    import threading
    web, token = published
    monkeypatch.setenv("TANPU_JOB_CHUNK_ROWS", "20")
    ids = [submit(web, token, as_jsonl([dict(r, account=f"{n}-{r['account']}")
                                        for r in rides(60, prefix=f"j{n}-")]),
                  "application/x-ndjson", mode="credit").get_json()["id"] for n in range(4)]
    workers = [Worker(web.reg.db), Worker(web.reg.db)]
    threads = [threading.Thread(target=w.run_once) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    done = [job_of(web, token, job_id) for job_id in ids]
    assert [(j["status"], j["attempts"], j["progress"]["rows_done"]) for j in done] == \
        [("succeeded", 1, 60)] * 4
    assert len(entries(web)) == sum(j["summary"]["credited"] for j in done)
    assert {j["summary"]["credited"] for j in done} == {done[0]["summary"]["credited"]}


def test_a_long_count_renews_the_lease(published, monkeypatch):
    web, token = published
    monkeypatch.setattr(Worker, "RENEW_EVERY", 10)
    monkeypatch.setenv("TANPU_JOB_LEASE_SECONDS", "3600")
    job_id = submit(web, token, as_jsonl(rides(45)), "application/x-ndjson").get_json()["id"]
    worker = Worker(web.reg.db)
    with web.reg.db.unit_of_work() as s:
        jobs.claim(s, worker.name)
        s.execute(sa.update(jobs.Job).values(lease_until=jobs.utcnow() + dt.timedelta(seconds=5)))
    with web.reg.db.read() as s:
        job = s.get(jobs.Job, job_id)
        s.expunge(job)
    source = jobs.input_path(job_id, "jsonl")
    from engine.recordfiles import open_records
    assert worker._pass(job, open_records(source).rows) == 45
    with web.reg.db.read() as s:
        renewed = s.get(jobs.Job, job_id).lease_until
    assert renewed - jobs.utcnow() > dt.timedelta(minutes=50)
    with web.reg.db.unit_of_work() as s:  # another worker took it meanwhile: the count stops
        s.execute(sa.update(jobs.Job).values(lease_owner="someone else"))
    with pytest.raises(LostLease):
        worker._pass(job, open_records(source).rows)


def test_a_token_needs_the_scope_of_what_its_job_does(published):
    from registry import tokens
    web, _token = published
    with web.reg.uow() as s:
        evaluate_only = tokens.create(s, web.reg.integrator, web.reg.integrator, "eval",
                                      scopes=["evaluate"])[1]
    refused = submit(web, evaluate_only, as_jsonl(rides(2)), "application/x-ndjson", 403,
                     mode="credit").get_json()
    assert refused["code"] == "insufficient_scope" and "`credit`" in refused["detail"]
    job_id = submit(web, evaluate_only, as_jsonl(rides(2)), "application/x-ndjson").get_json()["id"]
    assert job_of(web, evaluate_only, job_id)["mode"] == "evaluate"
    with web.reg.db.engine.connect() as c:
        assert c.execute(sa.text("SELECT COUNT(*) FROM jobs")).scalar_one() == 1


def test_an_evaluate_job_written_from_columns_gives_the_dictionaries_lines(published, monkeypatch):
    """An evaluate job's chunks the batch engine evaluated are written from its columns
    (service.evaluation_lines); the same job written from the dictionaries gives the same
    lines: keys in the same order, the same values (floats to their repr), `index` and
    `row` counted from the chunk's offset, and the same summary."""
    from webui.api import service
    web, token = published
    monkeypatch.setenv("TANPU_JOB_CHUNK_ROWS", "100")
    records = rides(270)  # chunks of 100, 100 and 70: each from 64 records on a batch
    records[3] = {**records[3], "distance": "3 kg"}       # invalid: an error, not a result
    records[120] = {**records[120], "mode": "walk"}       # not a mode: an error
    records[180] = {**records[180], "distance": "0.000467 km"}  # 0.467 mg: kilograms' repr
    written = []
    real = service.evaluation_lines

    def counted(result, offset=0):
        out = real(result, offset)
        written.append(out is not None)
        return out
    got = []
    for lines in (counted, lambda result, offset=0: None):
        monkeypatch.setattr(service, "evaluation_lines", lines)
        job = submit(web, token, as_jsonl(records), "application/x-ndjson").get_json()
        run_worker(web)
        done = job_of(web, token, job["id"])
        assert done["status"] == "succeeded", done
        text = web.app.test_client().get(f"/api/v1/jobs/{job['id']}/results",
                                         headers=web.api(token)).get_data(as_text=True)
        got.append(([list(json.loads(line).items()) for line in text.splitlines()],
                    download(web, token, job["id"], "errors"), done["summary"],
                    download(web, token, job["id"], "results", "csv")))
    assert written == [True, True, True]  # three chunks, each from columns
    columns, dictionaries = got
    assert [[(k, repr(v)) for k, v in r] for r in columns[0]] == \
        [[(k, repr(v)) for k, v in r] for r in dictionaries[0]]
    rows = [dict(r) for r in columns[0]]
    assert [r["row"] for r in rows] == [r["index"] + 1 for r in rows]
    assert sorted([r["index"] for r in rows] + [e["index"] for e in columns[1]]) == list(range(270))
    assert columns[1:] == dictionaries[1:]
    assert columns[1][0]["index"] == 3
