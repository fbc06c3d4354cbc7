"""The worker: runs the integrators' jobs, sends their webhooks and e-mails the pending
notifications, in a process of its
own (`tanpu worker`; `tanpu serve` starts one beside the web server and starts it again
if it dies).

    worker = Worker(Database(url))
    worker.run()            # until stop(); worker.run_once() does what is due and returns

Why a process and not a thread of the web server: a job of 10 million records takes
minutes and a core; in its own process it neither slows the API's requests nor dies
with a restart of the web process. Why in webui/: a job's chunk is evaluated and
credited by exactly the code behind POST /api/v1/evaluate and /credits
(webui/api/service.py), so that a record gets the same result whichever way it came.

How a job is done exactly once, even when this process is killed at any instruction:
registry/jobs.py (leases; one transaction per chunk holding the credits, the progress,
and the part files renamed into place before the commit).
"""

from __future__ import annotations

import csv
import io
import ipaddress
import itertools
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator, Optional
from urllib.parse import urlsplit

from engine.recordfiles import open_records
from registry import jobs, notifications, webhooks
from registry.db import Database
from registry.errors import RegistryError
from registry.models import Job
from registry.settings import SmtpSettings

from .api import service
from .api.service import ApiError

log = logging.getLogger("webui.worker")

# the columns of a job's results as CSV: the API's result fields, in its order
RESULT_COLUMNS = ("index", "row", "id", "account", "time", "status", "code", "message",
                  "reduction_kg", "reduction_mg", "points", "bonus", "flags", "methodology",
                  "version", "content_hash", "applicability", "credit", "credited", "conflict")
ERROR_COLUMNS = ("index", "id", "code", "reason")


class LostLease(Exception):
    """Another worker took the job over (this one was too slow to renew its lease)."""


class Worker:
    def __init__(self, database: Database, *, poll_seconds: float = 1.0,
                 parent_pid: Optional[int] = None, smtp: Optional[SmtpSettings] = None,
                 base_url: str = ""):
        self.db = database
        # the web server e-mails notifications after the POST that made them; those made by
        # the API or the command line have no such POST, so the worker sends them too
        # (each is claimed before sending: never twice, whichever process sends it)
        self.smtp = smtp
        self.base_url = base_url
        self.name = jobs.worker_name()
        self.poll_seconds = poll_seconds
        self.parent_pid = parent_pid
        self._stop = threading.Event()

    # ------------------------------------------------------------ the loop
    def stop(self) -> None:
        self._stop.set()

    def stopping(self) -> bool:
        """Asked to stop, or the `tanpu serve` that started us is gone (kill -9 leaves us
        orphaned: we finish the chunk at hand, which is safe to interrupt anyway)."""
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            self._stop.set()
        return self._stop.is_set()

    def run(self) -> None:
        log.info("worker %s: started", self.name)
        sender = threading.Thread(target=self._send_loop, name="webhooks", daemon=True)
        sender.start()
        while not self.stopping():
            try:
                busy = self.run_job()
            except Exception:  # noqa: BLE001 - the database away for a moment: try again
                log.exception("worker %s: claiming or ending a job", self.name)
                busy = False
            if not busy:
                self._stop.wait(self.poll_seconds)
        sender.join(timeout=15)
        log.info("worker %s: stopped", self.name)

    def _send_loop(self) -> None:
        while not self.stopping():
            try:
                sent = self.send_webhooks()
            except Exception:  # noqa: BLE001 - a database blip: try again later
                log.exception("worker %s: sending webhooks", self.name)
                sent = 0
            self.send_email()
            if not sent:
                self._stop.wait(min(self.poll_seconds, 1.0))

    def run_once(self) -> None:
        """Every job that is due, then every webhook that is due (tests, `--once`)."""
        while self.run_job():
            pass
        while self.send_webhooks():
            pass
        self.send_email()

    def send_email(self) -> int:
        """E-mails the notifications not e-mailed yet (nothing when SMTP is off); how many
        were sent. A refused one stays pending for the next turn."""
        if self.smtp is None:
            return 0
        try:
            return notifications.deliver(self.db, self.smtp, base_url=self.base_url).sent
        except Exception:  # noqa: BLE001 - the database or the SMTP server away: next turn
            log.exception("worker %s: e-mailing notifications", self.name)
            return 0

    # ------------------------------------------------------------ jobs
    def run_job(self) -> bool:
        """Claims one job and does it to its end; False when there was none."""
        with self.db.unit_of_work() as s:
            job = jobs.claim(s, self.name)
            if job is None:
                return False
            s.expunge(job)
        log.info("worker %s: job %s (%s, %s rows done)", self.name, job.id, job.mode, job.rows_done)
        try:
            failure = self._do(job)
        except LostLease:
            if self.stopping():
                with self.db.unit_of_work() as s:
                    jobs.give_back(s, job.id, self.name)
                log.info("worker %s: job %s handed back", self.name, job.id)
            else:
                log.warning("worker %s: job %s was taken over", self.name, job.id)
            return True
        except Exception as error:  # noqa: BLE001 - a database blip, a full disk: later
            log.exception("worker %s: job %s", self.name, job.id)
            with self.db.unit_of_work() as s:
                jobs.release(s, job.id, self.name, f"{type(error).__name__}: {error}")
            return True
        with self.db.unit_of_work() as s:
            jobs.finish(s, job.id, self.name, failure=failure or "")
        log.info("worker %s: job %s %s", self.name, job.id, "failed: " + failure if failure else "done")
        return True

    def _do(self, job: Job) -> Optional[str]:
        """Does the job's remaining chunks; the reason it failed as a whole, or None."""
        path = jobs.input_path(job.id, job.input_format)
        if not path.is_file():
            return "the job's file is gone from the jobs folder"
        try:
            if job.rows_total is None:
                total = self._pass(job, open_records(path).rows)
                with self.db.unit_of_work() as s:
                    if not jobs.set_total(s, job.id, self.name, total):
                        raise LostLease()
                job.rows_total = total
            if job.rows_total > jobs.MAX_RECORDS:
                return f"{job.rows_total:,} records: at most {jobs.MAX_RECORDS:,} in a job"
            source = open_records(path)
            rows = source.rows
            units = dict(source.column_units)
            # a worker taking a job over reads past the rows done (once; then it streams)
            self._pass(job, itertools.islice(rows, job.rows_done))
        except LostLease:
            raise
        except Exception as error:  # noqa: BLE001 - whatever the readers raise (Parquet)
            return _unreadable(job, path, error)
        done, chunk = job.rows_done, job.chunks_done
        while True:
            if self.stopping():
                raise LostLease()  # given up on purpose: the lease runs out, another resumes
            try:
                records = list(itertools.islice(rows, job.chunk_rows))
            except Exception as error:  # noqa: BLE001 - as above
                return _unreadable(job, path, error)
            if not records:
                return None
            try:
                self._chunk(job, chunk, done, records, units)
            except ApiError as error:  # the methodology is gone, no version compiles
                return f"{error.code}: {error.message}"
            done += len(records)
            chunk += 1

    RENEW_EVERY = 100_000  # rows read between two renewals of the lease, when not evaluating

    def _pass(self, job: Job, rows) -> int:
        """Reads `rows` through (to count them, or to skip those done), renewing the lease
        as it goes: 10 million rows take longer than a lease."""
        count = 0
        for count, _row in enumerate(rows, 1):
            if count % self.RENEW_EVERY == 0:
                with self.db.unit_of_work() as s:
                    if not jobs.renew(s, job.id, self.name):
                        raise LostLease()
        return count

    def _chunk(self, job: Job, chunk: int, offset: int, records: list, units: dict) -> None:
        unreadable = {i: r["__invalid__"] for i, r in enumerate(records)
                      if isinstance(r, dict) and "__invalid__" in r}
        sent = [None if i in unreadable else r for i, r in enumerate(records)]
        credit = job.mode == "credit"
        with self.db.read() as s:
            result = service.evaluate(s, job.methodology_id, sent, as_of=job.as_of,
                                      require_ids=credit, column_units=units)
        # one transaction per chunk, run again whole after a deadlock or a serialization
        # failure (Database.retried): the evaluation above is kept, the credit (its key
        # makes a replay harmless), the part files and the progress redone
        def write(s) -> None:
            if not jobs.renew(s, job.id, self.name, rows_done=offset):
                raise LostLease()
            # evaluating only, a chunk the batch engine evaluated whole: its results written
            # from its columns (the same values as the dictionaries below)
            lines = None if credit else service.evaluation_lines(result, offset)
            if lines is not None:
                summary, written = lines
                results = summary["evaluated"]
                _write_part(jobs.part_path(job.id, chunk, "results"), written)
            else:
                if credit:
                    out = service.credit(s, job.integrator_id, result,
                                         idempotency_key=f"job:{job.id}:{chunk}")
                else:
                    out = service.evaluation_response(result, explain=False)
                for row in out["results"]:
                    row["index"] += offset
                    row["row"] = row["index"] + 1
                summary, results = out["summary"], len(out["results"])
                _write_part(jobs.part_path(job.id, chunk, "results"), out["results"])
            # copies: the evaluation's own error rows stay as they were for a retry
            errors = [dict(error) for error in result.errors]
            for error in errors:
                if error["index"] in unreadable:
                    error["code"], error["reason"] = "invalid_record", unreadable[error["index"]]
                error["index"] += offset
            _write_part(jobs.part_path(job.id, chunk, "errors"), errors)
            jobs.chunk_done(
                s, job.id, self.name, rows=len(records), results=results,
                errors=len(errors), credited=summary.get("credited", 0),
                reduction_mg=summary["credited_reduction_mg"] if credit else summary["reduction_mg"],
                points=summary["credited_points"] if credit else summary["points"])

        self.db.retried(write)

    # ------------------------------------------------------------ webhooks
    def send_webhooks(self) -> int:
        """Sends the deliveries that are due; how many were tried."""
        with self.db.unit_of_work() as s:
            batch = webhooks.due(s)
        for delivery_id, url, secret, payload, attempts in batch:
            status, error = _post(url, secret, payload, delivery_id, attempts + 1)
            with self.db.unit_of_work() as s:
                webhooks.record_attempt(s, delivery_id, status=status, error=error)
        return len(batch)


def _unreadable(job: Job, path: Path, error: Exception) -> str:
    """Why the job's file cannot be read, naming it as the integrator did (not by the
    server's path)."""
    reason = str(error).replace(str(path), job.input_name)
    return f"{job.input_name}: cannot be read ({type(error).__name__}: {reason})"


def _private_address(url: str) -> Optional[str]:
    """The address of `url`'s host that is not a public one (loopback, private,
    link-local such as a cloud's metadata service), unless TANPU_WEBHOOK_ALLOW_PRIVATE
    is set: an integrator's URL must not make the server reach inside its own network."""
    if os.environ.get("TANPU_WEBHOOK_ALLOW_PRIVATE", "").lower() in ("1", "true", "yes"):
        return None
    parts = urlsplit(url)
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as error:
        return f"{parts.hostname} (not resolved: {error})"
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global:
            return str(address)
    return None


def _post(url: str, secret: str, payload: str, delivery_id: int, attempt: int,
          timeout: float = 10) -> tuple[Optional[int], str]:
    private = _private_address(url)
    if private is not None:
        return None, (f"refused: the URL's host is {private}, not a public address "
                      f"(TANPU_WEBHOOK_ALLOW_PRIVATE=1 allows it)")
    body = payload.encode("utf-8")
    event = json.loads(payload)
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "tanpu-webhooks/1",
        "Tanpu-Event": event["type"], "Tanpu-Delivery": str(delivery_id),
        "Tanpu-Attempt": str(attempt), webhooks.SIGNATURE_HEADER: webhooks.sign(secret, body)})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, ""
    except urllib.error.HTTPError as error:
        return error.code, f"HTTP {error.code} {error.reason}"
    except (urllib.error.URLError, OSError, ValueError) as error:
        return None, f"{type(error).__name__}: {getattr(error, 'reason', error)}"


def _write_part(path: Path, rows: "list[dict] | bytes") -> None:
    """A chunk's rows as JSON Lines (dictionaries, or lines written already), whole or not
    at all (written aside, synced, renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as out:
        if isinstance(rows, bytes):
            out.write(rows)
        else:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":"),
                                     default=str).encode("utf-8"))
                out.write(b"\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


# ---------------------------------------------------------------- downloads
def part_lines(job: Job, kind: str) -> Iterator[bytes]:
    """The JSON Lines of a job's results or errors: the part files of its counted chunks,
    in order (a part of a chunk not yet committed is not included)."""
    for chunk in range(job.chunks_done):
        path = jobs.part_path(job.id, chunk, kind)
        with open(path, "rb") as part:
            yield from part


def as_csv(lines: Iterator[bytes], kind: str) -> Iterator[str]:
    """JSON Lines rows as CSV with a fixed header (lists and objects as JSON text)."""
    columns = RESULT_COLUMNS if kind == "results" else ERROR_COLUMNS
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for n, line in enumerate(lines, 1):
        row = json.loads(line)
        writer.writerow(["" if row.get(c) is None else
                         json.dumps(row[c], ensure_ascii=False, separators=(",", ":"))
                         if isinstance(row.get(c), (list, dict)) else row[c] for c in columns])
        if n % 1000 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
