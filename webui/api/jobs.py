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

from flask import Blueprint, Response, g, jsonify, request, url_for
from sqlalchemy import select

from engine.recordfiles import FORMATS, open_records
from registry import jobs
from registry.models import MethodologyVersion

from .. import worker
from ..db import get_db
from .accounts import int_arg
from .service import LISTED_STATES, ApiError

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

    @api.post("/jobs")
    def submit_job():
        request.max_content_length = jobs.MAX_BYTES  # this endpoint only: it streams to disk
        methodology_id = _param("methodology")
        if not methodology_id or len(methodology_id) > 128:
            raise ApiError(400, "bad_request", "`methodology`: the id of a published methodology")
        mode = _param("mode") or "evaluate"
        if mode not in ("evaluate", "credit"):
            raise ApiError(400, "bad_request", f"`mode`: evaluate or credit, not {mode!r}")
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

    @api.get("/jobs")
    def list_jobs():
        limit = int_arg("limit", 50)
        if not (1 <= limit <= 200):
            raise ApiError(400, "bad_pagination", "1 ≤ limit ≤ 200")
        with get_db().read() as s:
            return jsonify({"items": [_job_dict(j) for j in jobs.of_integrator(s, g.api_user.id,
                                                                                limit=limit)]})

    @api.get("/jobs/<job_id>")
    def job(job_id: str):
        with get_db().read() as s:
            return jsonify(_job_dict(jobs.get(s, g.api_user.id, job_id)))

    def download(job_id: str, kind: str):
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

    @api.get("/jobs/<job_id>/results")
    def job_results(job_id: str):
        return download(job_id, "results")

    @api.get("/jobs/<job_id>/errors")
    def job_errors(job_id: str):
        return download(job_id, "errors")

