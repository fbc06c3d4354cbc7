"""Jobs: an integrator's large submission (up to 10 million records in a CSV, JSON Lines or
Parquet file) evaluated, and credited if asked, in the background by a worker process.

    job = jobs.create(session, integrator_id, methodology_id="...", mode="credit",
                      input_format="csv", input_name="rides.csv", input_bytes=n)
    jobs.input_path(job)          # where the web process streamed the file, before create

Why the state is here and the records on disk: the records of a 10-million-row job do
not fit in a request, nor in memory, and need not be in the database; what must survive
a crash, and be shared by the web process and any number of workers, is which rows are
done, and that is a row of `jobs`.

Exactly once. A worker holds a job by a lease (`lease_owner`, `lease_until`): claimed
with `SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL (two workers never take the same
job, and neither waits for the other), under SQLite's single writer elsewhere; a lease
that is not renewed runs out, and the next worker takes the job over where it stands.
The records go in chunks of `chunk_rows`; one chunk is one transaction, which
(1) checks and locks the job row: still ours, at the row we think (`take_chunk`),
(2) credits the chunk into the ledger (idempotency key `job:<id>:<chunk>`; its audit
    entry is the ledger's, as for any credit request),
(3) writes the chunk's results and errors to its part files (renamed into place when
    whole, so a part file is either the last attempt's or absent), and
(4) moves `rows_done` and the totals (`chunk_done`).
A worker killed anywhere before the commit leaves neither credits nor progress; the
chunk is done again, with the same ledger state, so with the same results, and its part
files are replaced. Killed after the commit, the chunk is done and not done again. The
output is the part files of the chunks counted in `chunks_done`, in order.

The files live in the jobs folder (`TANPU_JOBS_DIR`; default `jobs/` beside the default
SQLite database), which the web processes and the workers must share.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import uuid
from pathlib import Path
from typing import Optional

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from . import audit, bulk, webhooks
from .errors import Conflict, Invalid, NotFound
from .models import JOB_FORMATS, JOB_MODES, Job, utcnow
from .settings import default_database_path

MAX_RECORDS = 10_000_000
MAX_BYTES = int(os.environ.get("TANPU_JOB_MAX_BYTES") or 8 * 1024 ** 3)
# a chunk: what one POST /api/v1/credits may hold, so that a job's chunk is judged as
# such a request would be (the cross-record rules of an evaluation apply within it)
CHUNK_ROWS = 10_000
MAX_ATTEMPTS = 5  # claims of a job that failed with an unexpected error before it fails
DONE_STATES = ("succeeded", "failed")


def jobs_dir() -> Path:
    """The folder of every job's files (shared by the web processes and the workers)."""
    configured = os.environ.get("TANPU_JOBS_DIR")
    return Path(configured) if configured else default_database_path().parent / "jobs"


def lease_seconds() -> float:
    return float(os.environ.get("TANPU_JOB_LEASE_SECONDS") or 60)


def chunk_rows() -> int:
    """Rows per chunk for new jobs (TANPU_JOB_CHUNK_ROWS: smaller in tests, to have many
    chunks); kept on the job, so that a restart with another setting does not change
    how a job's rows are grouped."""
    return max(1, min(CHUNK_ROWS, int(os.environ.get("TANPU_JOB_CHUNK_ROWS") or CHUNK_ROWS)))


def new_id() -> str:
    return str(uuid.uuid4())


def folder(job_id: str) -> Path:
    return jobs_dir() / job_id


def input_path(job_id: str, input_format: str) -> Path:
    return folder(job_id) / f"input.{input_format}"


def part_path(job_id: str, chunk: int, kind: str) -> Path:
    """The results (kind "results") or errors ("errors") of one chunk, as JSON Lines."""
    return folder(job_id) / "parts" / f"{chunk:08d}.{kind}.jsonl"


def worker_name() -> str:
    """Who holds a lease: host and process id (which a test reads to kill the worker)."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------- the API's side
def create(session: Session, integrator_id: int, *, job_id: str, methodology_id: str,
           mode: str, input_format: str, input_name: str, input_bytes: int, input_sha256: str,
           as_of: Optional[dt.date] = None, idempotency_key: Optional[str] = None) -> tuple[Job, bool]:
    """The job of a file already at input_path(job_id, input_format); (job, created).
    The same idempotency key again gives the first job (created False), when it asked
    for the same methodology, mode and date with the same file, else Conflict."""
    if mode not in JOB_MODES:
        raise Invalid(f"mode: one of {', '.join(JOB_MODES)}, not {mode!r}")
    if input_format not in JOB_FORMATS:
        raise Invalid(f"format: one of {', '.join(JOB_FORMATS)}, not {input_format!r}")
    if idempotency_key is not None:
        if not (1 <= len(idempotency_key) <= 150):
            raise Invalid("an idempotency key has 1 to 150 characters")
        earlier = session.scalar(select(Job).where(Job.integrator_id == integrator_id,
                                                   Job.idempotency_key == idempotency_key))
        if earlier is not None:
            if (earlier.methodology_id, earlier.mode, earlier.as_of, earlier.input_sha256) != \
                    (methodology_id, mode, as_of, input_sha256):
                raise Conflict(f"idempotency key {idempotency_key!r} was used for another job "
                               f"(another file, methodology, mode or as_of)")
            return earlier, False
    job = Job(id=job_id, integrator_id=integrator_id, methodology_id=methodology_id, mode=mode,
              as_of=as_of, idempotency_key=idempotency_key, input_format=input_format,
              input_name=input_name[:200], input_bytes=input_bytes, input_sha256=input_sha256,
              chunk_rows=chunk_rows(),
              status="queued", rows_done=0, chunks_done=0, results=0, errors=0, credited=0,
              reduction_mg=0, points=0, attempts=0, failure="", created_at=utcnow())
    session.add(job)
    session.flush()
    audit.append(session, integrator_id, "job.submit", "job", job.id, {
        "methodology": methodology_id, "mode": mode, "as_of": as_of.isoformat() if as_of else None,
        "idempotency_key": idempotency_key, "input_format": input_format,
        "input_bytes": input_bytes, "input_sha256": input_sha256})
    return job, True


def get(session: Session, integrator_id: int, job_id: str) -> Job:
    """The integrator's job; another integrator's is not found, as if it did not exist."""
    job = session.get(Job, job_id) if len(job_id) <= 36 else None
    if job is None or job.integrator_id != integrator_id:
        raise NotFound(f"you have no job {job_id!r}")
    return job


def of_integrator(session: Session, integrator_id: int, *, limit: int = 50,
                  before: Optional[dt.datetime] = None) -> list[Job]:
    """The integrator's jobs, newest first."""
    query = select(Job).where(Job.integrator_id == integrator_id)
    if before is not None:
        query = query.where(Job.created_at < before)
    return list(session.scalars(query.order_by(Job.created_at.desc(), Job.id).limit(limit)))


def listing(session: Session, *, status: Optional[str] = None,
            integrator_id: Optional[int] = None, limit: int = 50) -> list[Job]:
    """Every integrator's jobs, newest first (the operator's view: `tanpu jobs list`)."""
    query = select(Job)
    if status:
        query = query.where(Job.status == status)
    if integrator_id is not None:
        query = query.where(Job.integrator_id == integrator_id)
    return list(session.scalars(query.order_by(Job.created_at.desc(), Job.id).limit(limit)))


def to_dict(job: Job) -> dict:
    def when(t):
        return t.isoformat().replace("+00:00", "Z") if t else None
    return {
        "id": job.id, "status": job.status, "methodology": job.methodology_id, "mode": job.mode,
        "as_of": job.as_of.isoformat() if job.as_of else None,
        "idempotency_key": job.idempotency_key,
        "input": {"name": job.input_name, "format": job.input_format, "bytes": job.input_bytes,
                  "sha256": job.input_sha256},
        "progress": {"rows_done": job.rows_done, "rows_total": job.rows_total,
                     "chunks_done": job.chunks_done, "chunk_rows": job.chunk_rows},
        "summary": {"results": job.results, "errors": job.errors, "credited": job.credited,
                    "reduction_mg": job.reduction_mg, "points": job.points},
        "failure": job.failure or None, "attempts": job.attempts,
        "created_at": when(job.created_at), "started_at": when(job.started_at),
        "finished_at": when(job.finished_at),
    }


# ---------------------------------------------------------------- the worker's side
def claim(session: Session, owner: str) -> Optional[Job]:
    """The oldest job that is queued, or running with a lease run out, now leased to
    `owner` (None: nothing to do)."""
    now = utcnow()
    query = (select(Job.id).where(Job.status.in_(("queued", "running")),
                                  (Job.lease_until.is_(None)) | (Job.lease_until < now))
             .order_by(Job.created_at, Job.id).limit(1))
    if bulk.is_postgresql(session):
        query = query.with_for_update(skip_locked=True)
    job_id = session.scalar(query)
    if job_id is None:
        return None
    job = session.get(Job, job_id)
    job.lease_owner = owner
    job.lease_until = now + dt.timedelta(seconds=lease_seconds())
    job.attempts += 1
    job.status = "running"
    job.started_at = job.started_at or now
    session.flush()
    return job


def _mine(job_id: str, owner: str):
    return (update(Job).where(Job.id == job_id, Job.lease_owner == owner,
                              Job.status == "running")
            .execution_options(synchronize_session=False))


def renew(session: Session, job_id: str, owner: str, *, rows_done: Optional[int] = None) -> bool:
    """Extends the lease, and locks the job row until the transaction ends (PostgreSQL's
    UPDATE; SQLite's one writer): False when the job is no longer ours (the lease ran out
    and another worker took it), or not at `rows_done`."""
    statement = _mine(job_id, owner)
    if rows_done is not None:
        statement = statement.where(Job.rows_done == rows_done)
    done = session.execute(statement.values(
        lease_until=utcnow() + dt.timedelta(seconds=lease_seconds())))
    return done.rowcount == 1


def set_total(session: Session, job_id: str, owner: str, total: int) -> bool:
    return session.execute(_mine(job_id, owner).values(rows_total=total)).rowcount == 1


def chunk_done(session: Session, job_id: str, owner: str, *, rows: int, results: int,
               errors: int, credited: int, reduction_mg: int, points: int) -> None:
    """Counts a chunk (in the transaction that renew() opened with the job row locked)."""
    done = session.execute(_mine(job_id, owner).values(
        rows_done=Job.rows_done + rows, chunks_done=Job.chunks_done + 1,
        results=Job.results + results, errors=Job.errors + errors,
        credited=Job.credited + credited, reduction_mg=Job.reduction_mg + reduction_mg,
        points=Job.points + points))
    if done.rowcount != 1:
        raise Conflict(f"job {job_id} is no longer held by {owner}")


def finish(session: Session, job_id: str, owner: str, *, failure: str = "") -> bool:
    """succeeded (or failed, with the reason), the lease given up, and the integrator's
    `job.finished` webhooks queued in the same transaction. False: not ours any more."""
    now = utcnow()
    done = session.execute(_mine(job_id, owner).values(
        status="failed" if failure else "succeeded", failure=failure[:4000], finished_at=now,
        lease_owner=None, lease_until=None))
    if done.rowcount != 1:
        return False
    job = session.get(Job, job_id)
    session.refresh(job)
    audit.append(session, None, "job.finish", "job", job.id, {
        "status": job.status, "failure": job.failure or None, "rows": job.rows_done,
        "chunks": job.chunks_done, "results": job.results, "errors": job.errors,
        "credited": job.credited, "reduction_mg": job.reduction_mg, "points": job.points})
    webhooks.emit(session, "job.finished", to_dict(job), integrator_id=job.integrator_id)
    return True


def give_back(session: Session, job_id: str, owner: str) -> None:
    """A worker asked to stop hands the job back at once (not when its lease runs out)."""
    session.execute(_mine(job_id, owner).values(lease_owner=None, lease_until=None))


def release(session: Session, job_id: str, owner: str, problem: str) -> None:
    """An unexpected error: the job goes back to the queue (a little later), or fails
    after MAX_ATTEMPTS claims."""
    job = session.get(Job, job_id)
    if job is None or job.lease_owner != owner or job.status != "running":
        return
    if job.attempts >= MAX_ATTEMPTS:
        finish(session, job_id, owner, failure=f"gave up after {job.attempts} attempts: {problem}")
        return
    job.failure = problem[:4000]
    job.lease_until = utcnow() + dt.timedelta(seconds=min(300, 2 ** job.attempts))
    job.lease_owner = None


def remove_files(job_id: str) -> None:
    shutil.rmtree(folder(job_id), ignore_errors=True)
