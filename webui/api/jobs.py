"""Jobs: large submissions, evaluated (and credited, if asked) in the background by the
worker (webui/worker.py). Registered on the API blueprint by views.py.

    POST /api/v1/jobs?methodology=&mode=evaluate|credit&as_of=&format=
            the records as the body (Content-Type text/csv, application/x-ndjson,
            application/vnd.apache.parquet), or a multipart form with a `file` (and the
            same fields as form fields); Idempotency-Key: the same job again, not twice.
            202 Accepted at once, Location: the job's URL
    GET  /api/v1/jobs?limit=                your jobs, newest first
    GET  /api/v1/jobs/<id>                  status, progress (rows done / total), totals
    GET  /api/v1/jobs/<id>/results?format=jsonl|csv     the results (of the chunks done)
    GET  /api/v1/jobs/<id>/errors?format=jsonl|csv      the records in error, by index

The body is streamed to the jobs folder (never whole in memory), at most
registry.jobs.MAX_BYTES and 10 million records. What a chunk of the job gives is what
POST /api/v1/evaluate or /credits gives for the same records sent as one request of
`chunk_rows` (10,000) records; `index` counts the file's records from 0, `row` from 1.
Another integrator's job is a 404, as if it did not exist.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path

from typing import Literal, Optional

from flask import Blueprint, Response, g, jsonify, request, url_for
from pydantic import Field
from sqlalchemy import select

from engine.recordfiles import FORMATS, open_records
from registry import jobs
from registry.models import MethodologyVersion

from .. import worker
from ..db import get_db
from . import models
from .accounts import int_arg
from .openapi import header, query
from .openapi import operation as declare
from .service import LISTED_STATES, ApiError


# ---------------------------------------------------------------- declared bodies
class JobInput(models.Response):
    name: str = Field(description="the file's name as sent (`body` for a raw body)")
    format: Literal["csv", "jsonl", "parquet"]
    bytes: int
    sha256: str


class JobProgress(models.Response):
    rows_done: int = Field(description="records done (evaluated, and credited if asked)")
    rows_total: Optional[int] = Field(description="the file's records, once the worker counted them")
    chunks_done: int
    chunk_rows: int = Field(description="records per chunk, each one transaction")


class JobSummary(models.Response):
    results: int = Field(description="records evaluated (lines of the results file)")
    errors: int = Field(description="records in error (lines of the errors file)")
    credited: int = Field(description="records credited by this job")
    reduction_mg: int = Field(description="credited (or, evaluating, creditable) reduction, mg")
    points: int


class JobLinks(models.Response):
    self: str
    results: str
    errors: str


class Job(models.Response):
    id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    methodology: str
    mode: Literal["evaluate", "credit"]
    as_of: Optional[str]
    idempotency_key: Optional[str]
    input: JobInput
    progress: JobProgress
    summary: JobSummary
    failure: Optional[str] = Field(description="why the job failed as a whole")
    attempts: int = Field(description="times a worker took the job")
    created_at: str
    started_at: Optional[str]
    finished_at: Optional[str]
    links: JobLinks


class JobList(models.Response):
    items: list[Job]


FILE = {"type": "string", "format": "binary"}
UPLOAD = {"text/csv": FILE, "application/x-ndjson": FILE, "application/vnd.apache.parquet": FILE,
          "multipart/form-data": {"type": "object", "required": ["file"],
                                  "properties": {"file": FILE, "methodology": {"type": "string"},
                                                 "mode": {"type": "string"},
                                                 "as_of": {"type": "string", "format": "date"}}}}
DOWNLOAD = {"application/x-ndjson": {"type": "string", "description": "a JSON object a line"},
            "text/csv": {"type": "string", "description": "a header, then a record a line"}}
JOB_PARAMS = (
    query("methodology", {"type": "string"}, "a published methodology's id (required)"),
    query("mode", {"type": "string", "enum": ["evaluate", "credit"], "default": "evaluate"},
          "evaluate, or evaluate and credit (the token needs the `credit` scope)"),
    query("as_of", {"type": "string", "format": "date"}, "the versions as published that day"),
    query("format", {"type": "string", "enum": ["csv", "jsonl", "parquet"]},
          "the file's format when neither the Content-Type nor the file name says it"),
    header("Idempotency-Key", "the same job again (200), not a second one"))
FORMAT = query("format", {"type": "string", "enum": ["jsonl", "csv"], "default": "jsonl"},
               "JSON Lines or CSV")


def _require_scope(*wanted: str) -> None:
    """A job evaluates (`evaluate`) or credits (`credit`): the token needs that scope, and
    one of them to read its jobs."""
    granted = g.get("api_scopes") or ()
    if not any(scope in granted for scope in wanted):
        raise ApiError(403, "insufficient_scope",
                       f"this token lacks the `{'` or `'.join(wanted)}` scope "
                       f"(it has: {', '.join(sorted(granted)) or 'none'})")

# what a body's Content-Type says its format is
CONTENT_TYPES = {"text/csv": "csv", "application/csv": "csv", "application/x-ndjson": "jsonl",
                 "application/jsonl": "jsonl", "application/json-lines": "jsonl",
                 "application/x-jsonlines": "jsonl", "application/vnd.apache.parquet": "parquet",
                 "application/x-parquet": "parquet"}
BLOCK = 1 << 20


def _param(name: str):
    value = request.args.get(name)
    if value in (None, "") and request.mimetype == "multipart/form-data":
        value = request.form.get(name)
    return value or None


def _format(filename: str) -> str:
    given = _param("format")
    if given:
        fmt = FORMATS.get("." + given.lower().lstrip("."))
        if fmt is None:
            raise ApiError(400, "bad_format", f"format: csv, jsonl or parquet, not {given!r}")
        return fmt
    if request.mimetype != "multipart/form-data" and request.mimetype in CONTENT_TYPES:
        return CONTENT_TYPES[request.mimetype]
    suffix = Path(filename or "").suffix.lower()
    if suffix in FORMATS:
        return FORMATS[suffix]
    raise ApiError(415, "unsupported_media_type",
                   "say the records' format: Content-Type text/csv, application/x-ndjson or "
                   "application/vnd.apache.parquet, a file name ending .csv, .jsonl or "
                   ".parquet, or ?format=")


def _copy(source, path: Path) -> tuple[int, str]:
    """Streams `source` to `path` a block at a time; the bytes written and their sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        while True:
            block = source.read(BLOCK)
            if not block:
                break
            written += len(block)
            if written > jobs.MAX_BYTES:
                raise ApiError(413, "payload_too_large",
                               f"a job's file has at most {jobs.MAX_BYTES:,} bytes")
            digest.update(block)
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    return written, digest.hexdigest()


def _readable(path: Path, name: str) -> None:
    """The file opens and its first record reads (a broken Parquet file, a CSV that is
    not UTF-8 is refused now, not minutes later by the worker)."""
    try:
        source = open_records(path)
        next(iter(source.rows), None)
    except Exception as error:  # noqa: BLE001 - whatever the readers raise
        reason = str(error).replace(str(path), name)
        raise ApiError(400, "unreadable_file",
                       f"{name}: cannot be read ({type(error).__name__}: {reason})") from None


def _links(job_id: str) -> dict:
    return {"self": url_for("integrations.api.job", job_id=job_id),
            "results": url_for("integrations.api.job_results", job_id=job_id),
            "errors": url_for("integrations.api.job_errors", job_id=job_id)}


def _job_dict(job) -> dict:
    return {**jobs.to_dict(job), "links": _links(job.id)}


def register(api: Blueprint) -> None:
    """Adds the job routes to the API blueprint."""

    @declare(api, "POST", "/jobs", status=202, extra_statuses=(200,), response=Job,
             summary="Submit a file of records (CSV, JSON Lines, Parquet) to evaluate or credit "
                     "in the background", params=JOB_PARAMS, upload=UPLOAD, problems=(409,))
    def submit_job():
        request.max_content_length = jobs.MAX_BYTES  # this endpoint only: it streams to disk
        methodology_id = _param("methodology")
        if not methodology_id or len(methodology_id) > 128:
            raise ApiError(400, "bad_request", "`methodology`: the id of a published methodology",
                           errors=[{"pointer": "#/query/methodology", "detail": "required",
                                    "code": "missing"}])
        mode = _param("mode") or "evaluate"
        if mode not in ("evaluate", "credit"):
            raise ApiError(400, "bad_request", f"`mode`: evaluate or credit, not {mode!r}",
                           errors=[{"pointer": "#/query/mode", "detail": "evaluate or credit",
                                    "code": "enum"}])
        _require_scope(mode)
        as_of = None
        if _param("as_of"):
            try:
                as_of = dt.date.fromisoformat(_param("as_of"))
            except ValueError:
                raise ApiError(400, "bad_request", "`as_of`: a date, YYYY-MM-DD") from None
        key = request.headers.get("Idempotency-Key") or _param("idempotency_key")
        with get_db().read() as s:
            published = s.scalar(select(MethodologyVersion.id).where(
                MethodologyVersion.methodology_id == methodology_id,
                MethodologyVersion.state.in_(LISTED_STATES)).limit(1))
        if published is None:
            raise ApiError(404, "methodology_not_found",
                           f"no published methodology {methodology_id!r}")
        if request.mimetype == "multipart/form-data":
            upload = request.files.get("file")
            if upload is None:
                raise ApiError(400, "bad_request", "the multipart form needs a `file`")
            name, stream = upload.filename or "upload", upload.stream
        else:
            name, stream = _param("name") or "body", request.stream
        fmt = _format(name)
        job_id = jobs.new_id()
        path = jobs.input_path(job_id, fmt)
        try:
            size, sha256 = _copy(stream, path)
            _readable(path, name)
            with get_db().unit_of_work() as s:
                job, created = jobs.create(
                    s, g.api_user.id, job_id=job_id, methodology_id=methodology_id, mode=mode,
                    input_format=fmt, input_name=name, input_bytes=size, input_sha256=sha256,
                    as_of=as_of,
                    idempotency_key=key)
                body = _job_dict(job)
        except BaseException:
            jobs.remove_files(job_id)
            raise
        if not created:
            jobs.remove_files(job_id)
        response = jsonify(body)
        response.status_code = 202 if created else 200
        response.headers["Location"] = body["links"]["self"]
        return response

    @declare(api, "GET", "/jobs", response=JobList, summary="Your jobs, newest first",
             params=(query("limit", {"type": "integer", "minimum": 1, "maximum": 200}),))
    def list_jobs():
        _require_scope("evaluate", "credit")
        limit = int_arg("limit", 50)
        if not (1 <= limit <= 200):
            raise ApiError(400, "bad_pagination", "1 ≤ limit ≤ 200")
        with get_db().read() as s:
            return jsonify({"items": [_job_dict(j) for j in jobs.of_integrator(s, g.api_user.id,
                                                                                limit=limit)]})

    @declare(api, "GET", "/jobs/<job_id>", response=Job,
             summary="A job: its status and progress (rows done / total), its totals")
    def job(job_id: str):
        _require_scope("evaluate", "credit")
        with get_db().read() as s:
            return jsonify(_job_dict(jobs.get(s, g.api_user.id, job_id)))

    def download(job_id: str, kind: str):
        _require_scope("evaluate", "credit")
        fmt = (request.args.get("format") or "jsonl").lower()
        if fmt not in ("jsonl", "csv"):
            raise ApiError(400, "bad_format", f"format: jsonl or csv, not {fmt!r}")
        with get_db().read() as s:
            found = jobs.get(s, g.api_user.id, job_id)
            s.expunge(found)
        lines = worker.part_lines(found, kind)
        filename = f"job-{found.id}-{kind}.{fmt}"
        if fmt == "csv":
            response = Response(worker.as_csv(lines, kind), mimetype="text/csv")
        else:
            response = Response(lines, mimetype="application/x-ndjson")
        response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        response.headers["Tanpu-Job-Status"] = found.status
        response.headers["Tanpu-Rows-Done"] = str(found.rows_done)
        return response

    @declare(api, "GET", "/jobs/<job_id>/results", download=DOWNLOAD, params=(FORMAT,),
             summary="A job's results, a record a line (of the chunks done so far)")
    def job_results(job_id: str):
        return download(job_id, "results")

    @declare(api, "GET", "/jobs/<job_id>/errors", download=DOWNLOAD, params=(FORMAT,),
             summary="A job's records in error: index, id, code, reason")
    def job_errors(job_id: str):
        return download(job_id, "errors")

