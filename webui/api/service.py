"""What the JSON API does, without Flask: listing published methodologies, their schema,
evaluating records with the version applicable at each record's time, and crediting the
results to the ledger, idempotently.

Every function takes a registry session; errors are ApiError (a code, an HTTP status, a
message, optional details) or registry errors, which the views turn into JSON.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from operator import itemgetter
from typing import Any, Optional

import numpy as np
from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from engine import records as records_module
from engine.batch.ingest import ReadDatetimes
from engine.records import (EPOCH_DAY, RecordError, datetime_to_us, parse_datetime_us,
                            us_to_datetime)
from engine.explain import as_written
from engine.gc_pause import cycle_collector_paused
from engine.result import COLUMNS, INVALID, Result, iso_time
from engine.schema import describe
from registry import bulk, ledger, workflow
from registry.models import (FROZEN_STATES, PUBLISHED, SUPERSEDED, Methodology,
                             MethodologyVersion, utcnow)

from .. import evaluation
from ..records import Records

MAX_RECORDS = 10_000
MAX_PAGE = 1_000_000  # an offset that fits every database's integers
LISTED_STATES = (PUBLISHED, SUPERSEDED)
# how far in the future a record's time may be (the integrator's clock against ours)
CLOCK_SKEW = dt.timedelta(minutes=5)


class ApiError(Exception):
    """An error the API answers as problem details (problems.py): an HTTP status, a short
    code, a sentence, and `errors` (one per invalid field or record, with a JSON pointer)."""

    def __init__(self, status: int, code: str, message: str, details: Optional[dict] = None,
                 errors: Optional[list[dict]] = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.errors = errors or []


# ---------------------------------------------------------------- versions and engines
def _version_dict(v: MethodologyVersion) -> dict:
    return {"version": v.version, "state": v.state, "content_hash": v.content_hash,
            "effective_from": v.effective_from.isoformat() if v.effective_from else None,
            "published_at": v.published_at.isoformat().replace("+00:00", "Z")
            if v.published_at else None,
            "superseded_by": v.superseded_by.version if v.superseded_by_id else None,
            "grace_days": v.grace_days}


def _standing(standing) -> Optional[dict]:
    if standing is None:
        return None
    return {"kind": standing.kind,
            "since": standing.since.isoformat() if standing.since else None,
            "until": standing.until.isoformat() if standing.until else None}


def engine_of(version: "MethodologyVersion | Version"):
    """The Engine of a stored version; its content hash must be the stored one."""
    try:
        engine = evaluation.engine_for(version.source, f"{version.methodology_id}@{version.version}")
    except ValueError as error:
        raise ApiError(500, "version_does_not_compile",
                       f"{version.methodology_id} {version.version} does not compile: {error}")
    if engine.ref.content_hash != version.content_hash:
        raise ApiError(500, "content_hash_mismatch",
                       f"{version.methodology_id} {version.version}: the stored content hash "
                       f"{version.content_hash} is not the source's {engine.ref.content_hash}")
    return engine


def _frozen_versions(session: Session, methodology_id: str) -> list[MethodologyVersion]:
    return list(session.scalars(select(MethodologyVersion).where(
        MethodologyVersion.methodology_id == methodology_id,
        MethodologyVersion.state.in_(FROZEN_STATES))
        .order_by(MethodologyVersion.major, MethodologyVersion.minor, MethodologyVersion.patch)))


def _methodology(session: Session, methodology_id: str) -> tuple[Methodology, list[MethodologyVersion]]:
    methodology = session.get(Methodology, methodology_id) if methodology_id else None
    versions = _frozen_versions(session, methodology_id) if methodology else []
    if methodology is None or not any(v.state in LISTED_STATES for v in versions):
        raise ApiError(404, "methodology_not_found",
                       f"no published methodology {methodology_id!r}")
    return methodology, versions


@dataclass(frozen=True)
class Version:
    """What evaluating and crediting read of a frozen version, kept outside any session."""
    id: int
    methodology_id: str
    version: str
    semver: tuple[int, int, int]
    source: str
    content_hash: str
    state: str
    effective_from: Optional[dt.date]


# everything workflow.applicable_version() reads of a methodology's versions (and when
# each last changed): while these rows are the same, so are its answers
_FROZEN = (select(MethodologyVersion.id, MethodologyVersion.state, MethodologyVersion.effective_from,
                  MethodologyVersion.major, MethodologyVersion.minor, MethodologyVersion.patch,
                  MethodologyVersion.grace_days, MethodologyVersion.superseded_by_id,
                  MethodologyVersion.timezone, MethodologyVersion.content_hash,
                  MethodologyVersion.updated_at, MethodologyVersion.published_at)
           .where(MethodologyVersion.methodology_id == bindparam("methodology"),
                  MethodologyVersion.state.in_(FROZEN_STATES)))


# _FROZEN as PostgreSQL's text and its fixed parameters (the states), for bulk.pipelined,
# which sends the driver's SQL: compiled from _FROZEN, so that the two cannot differ
_PG_FROZEN = (_FROZEN.compile(dialect=postgresql.psycopg.dialect())
              .construct_expanded_state({"methodology": None}))


class _Kept:
    """A methodology's frozen versions and the applicability answers given for them, kept
    while one query finds its versions' rows unchanged (_versions). Loading the
    methodology and its versions and asking applicable_version took four queries, about
    half of a single-record evaluation (docs/api.md)."""

    def __init__(self, fingerprint: tuple, versions: list[MethodologyVersion]):
        self.fingerprint = fingerprint
        self.versions = {v.id: Version(v.id, v.methodology_id, v.version, v.semver, v.source,
                                       v.content_hash, v.state, v.effective_from) for v in versions}
        listed = [v for v in self.versions.values() if v.state in LISTED_STATES]
        self.latest = max(listed, key=lambda v: (v.effective_from, v.semver))
        self.answers: dict[tuple, tuple[Optional[int], str]] = {}

    def applicable(self, session: Session, day: dt.date, as_of) -> workflow.Applicability:
        """applicable_version(day, as_of) with the version as a Version. It reads only the
        local date of `as_of`: a datetime is keyed by its UTC quarter hour (every zone's
        midnight falls on one), a date by itself."""
        when = as_of if not isinstance(as_of, dt.datetime) else int(as_of.timestamp() // 900)
        key = (day, when)
        found = self.answers.get(key)
        if found is None:
            answer = workflow.applicable_version(session, self.latest.methodology_id, day, as_of=as_of)
            found = (answer.version.id if answer.version is not None else None, answer.reason)
            if len(self.answers) >= 10_000:
                self.answers.clear()
            self.answers[key] = found
        version_id, reason = found
        return workflow.Applicability(self.versions[version_id] if version_id is not None else None,
                                      reason)


_kept: dict[str, _Kept] = {}


def fingerprint_statement(methodology_id: str) -> tuple[str, dict, bool]:
    """The versions' fingerprint read on PostgreSQL, as a statement of bulk.pipelined, for
    a caller that sends it with another one (the API sends it with the token's check,
    webui/api/views.py) and gives its rows to evaluate(fingerprint=...)."""
    return (_PG_FROZEN.statement, {**_PG_FROZEN.parameters, "methodology": methodology_id}, True)


def _versions(session: Session, methodology_id: str, read: Optional[list] = None) -> _Kept:
    """The methodology's frozen versions (404 unless one is published or superseded), as
    kept from an earlier request when one query finds their rows unchanged. `read`: the
    rows of fingerprint_statement(methodology_id), read by the caller in this session's
    transaction (on PostgreSQL), instead of reading them here."""
    # on the session's connection (Core), as tokens.standing: no ORM result handling for
    # rows that are only compared
    if not methodology_id:
        fingerprint = ()
    elif read is not None:
        fingerprint = tuple(sorted(read))
    elif bulk.is_postgresql(session):
        # written out, as a pipeline of one (bulk.pipelined): the first statement of the
        # request's read transaction, and its BEGIN goes with it (one round trip less)
        fingerprint = tuple(sorted(bulk.pipelined(session, [fingerprint_statement(methodology_id)])[0]))
    else:
        fingerprint = tuple(sorted(tuple(row) for row in session.connection().execute(
            _FROZEN, {"methodology": methodology_id})))
    kept = _kept.get(methodology_id)
    if kept is not None and kept.fingerprint == fingerprint:
        return kept
    _, versions = _methodology(session, methodology_id)
    kept = _Kept(fingerprint, versions)
    if len(_kept) >= 1_000:
        _kept.clear()
    _kept[methodology_id] = kept
    return kept


# ---------------------------------------------------------------- GET /methodologies
def list_methodologies(session: Session, page: int = 1, per_page: int = 20) -> dict:
    """Methodologies with a published (or superseded) version, by id, a page at a time."""
    if not (1 <= page <= MAX_PAGE) or not (1 <= per_page <= 100):
        raise ApiError(400, "bad_pagination", f"1 ≤ page ≤ {MAX_PAGE:,} and 1 ≤ per_page ≤ 100")
    listed = (select(MethodologyVersion.methodology_id)
              .where(MethodologyVersion.state.in_(LISTED_STATES)).distinct())
    total = session.scalar(select(func.count()).select_from(listed.subquery()))
    ids = list(session.scalars(listed.order_by(MethodologyVersion.methodology_id)
                               .offset((page - 1) * per_page).limit(per_page)))
    today = utcnow()
    items = []
    for methodology_id in ids:
        methodology = session.get(Methodology, methodology_id)
        versions = _frozen_versions(session, methodology_id)
        current = workflow.currency(session, methodology_id, as_of=today)  # as the page decides
        items.append({
            "id": methodology_id, "title": methodology.title,
            "domain": methodology.committee.domain,
            "current_version": current.current.version if current.current else None,
            "current_reason": current.reason,
            "versions": [{**_version_dict(v), "standing": _standing(current.standing.get(v.id))}
                         for v in versions],
        })
    return {"items": items, "page": page, "per_page": per_page, "total": total,
            "pages": (total + per_page - 1) // per_page}


# ---------------------------------------------------------------- GET /methodologies/<id>/schema
def schema(session: Session, methodology_id: str, version: Optional[str] = None) -> dict:
    """describe() of a version (default: the one in force today, else the latest
    published), with the JSON Schema of its input records."""
    _, versions = _methodology(session, methodology_id)
    if version:
        chosen = next((v for v in versions if v.version == version), None)
        if chosen is None:
            raise ApiError(404, "version_not_found",
                           f"{methodology_id} has no published version {version!r}")
        reason = f"{chosen.version} as asked"
    else:
        now = utcnow()
        applicable = workflow.applicable_version(session, methodology_id, now, as_of=now)
        chosen = applicable.version or [v for v in versions if v.state in LISTED_STATES][-1]
        reason = applicable.reason if applicable.version else \
            f"none is in force today ({applicable.reason}); the latest published is shown"
    engine = engine_of(chosen)
    out = describe(engine.methodology, chosen.content_hash)
    out["version"] = _version_dict(chosen)
    out["reason"] = reason
    return out


# ---------------------------------------------------------------- POST /evaluate
@dataclass
class Group:
    """Records evaluated with one version (for one reason)."""

    version: Version
    reason: str
    indices: list[int] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    engine: Any = None
    positions: list[int] = field(default_factory=list)  # in the request's frame
    frame: Any = None  # the batch engine's results (then `results` only when crediting)
    # the engine the ledger judges `results` with, when not `engine`: the batch engine's
    # results recompute a capped record's points over its columns (_evaluate_batch)
    judging: Any = None


@dataclass
class Evaluation:
    methodology_id: str
    count: int
    groups: list[Group]
    errors: list[dict]  # {index, id, code, reason}
    records: list = field(default_factory=list)  # as sent

    def version_groups(self) -> list[dict]:
        """Each group's version once ({methodology, version, content_hash, applicability}),
        in the order of self.groups: what result_rows(compact=True) refers to by `group`."""
        return [{"methodology": g.engine.ref.id, "version": g.engine.ref.version,
                 "content_hash": g.engine.ref.content_hash, "applicability": g.reason}
                for g in self.groups]

    def result_rows(self, explain: bool, compact: bool = False,
                    only: Optional[list[int]] = None) -> list[dict]:
        """The results in the order of the records. compact: each row's `group` (its index
        in version_groups()) instead of its version's four fields. `only`: the rows of
        these groups (by number) alone."""
        rows = []
        for number, group in enumerate(self.groups):
            if only is not None and number not in only:
                continue
            if group.frame is not None:
                rows.extend(_frame_rows(group, number if compact else None))
                continue
            for index, r in zip(group.indices, group.results):
                if r.status == INVALID:
                    continue
                row = evaluation.result_dict(group.engine, r, explain=explain)
                row.pop("row", None)
                row.pop("values", None)
                if compact:
                    for name in _VERSION_FIELDS:
                        row.pop(name, None)
                    row = {"index": index, **row, "group": number}
                else:
                    row = {"index": index, **row, "applicability": group.reason}
                if explain:  # in the methodology's units, the SI value beside; text as text
                    zone = group.engine.methodology.metadata.timezone
                    row["explanation"] = [as_written(step, zone) for step in row["explanation"]]
                    row["explanation_text"] = "\n".join(row["explanation_text"])
                rows.append(row)
        rows.sort(key=lambda row: row["index"])
        return rows


_VERSION_FIELDS = ("methodology", "version", "content_hash", "applicability")


def _frame_rows(group: Group, number: Optional[int] = None) -> list[dict]:
    """The batch engine's results as result_rows() gives the scalar Engine's: each as
    Result.to_dict() (kilograms before milligrams, time as ISO text, lists) with the
    request's index and the version's applicability, invalid ones left out; with
    `number`, the group's number instead of the version's fields (compact)."""
    frame = group.frame
    columns = [frame.get_column(name).to_list() for name in COLUMNS]
    columns[COLUMNS.index("time")] = _iso_times(frame.get_column("time"))
    ref = group.engine.ref
    reason = group.reason

    rows = []
    for index, (_row, rid, account, time, status, code, message, mg, points, bonus, baseline,
                project, leakage, flags, counters) in zip(group.indices, zip(*columns)):
        if status == INVALID:
            continue
        row = {"index": index, "id": rid, "account": account, "time": time,
               "status": status, "code": code, "message": message,
               "reduction_kg": mg / 1_000_000, "reduction_mg": mg, "points": points,
               "bonus": bonus, "baseline_mg": baseline, "project_mg": project,
               "leakage_mg": leakage, "flags": flags, "counters": counters}
        if number is None:
            row.update(methodology=ref.id, version=ref.version, content_hash=ref.content_hash,
                       applicability=reason)
        else:
            row["group"] = number
        rows.append(row)
    return rows


_ISO_FIRST_US = datetime_to_us(dt.datetime(1000, 1, 1, tzinfo=dt.timezone.utc))


def _iso_times(us) -> list:
    """µs UTC (a Polars Int64 Series, nulls for none) as Result.to_dict() writes them
    (`2024-05-20T08:30:00Z`, `.123456` only when there are microseconds), by Polars: one
    isoformat() a record was a fifth of a 10,000-record request. Years before 1000 (which
    strftime would not pad as isoformat does) are written one by one."""
    return _iso_time_series(us).to_list()


def _iso_time_series(us):
    """_iso_times() as a Polars String Series."""
    import polars as pl
    low = us.min()
    if low is not None and low < _ISO_FIRST_US:
        return pl.Series("time", [None if v is None else
                                  us_to_datetime(v).isoformat().replace("+00:00", "Z")
                                  for v in us.to_list()], dtype=pl.String)
    stamp = pl.col("us").cast(pl.Datetime("us"))
    text = stamp.dt.strftime("%Y-%m-%dT%H:%M:%S")
    if (us % 1_000_000 != 0).any():  # else no record has microseconds: not written at all
        whole = pl.col("us") % 1_000_000 == 0
        text = text + pl.when(whole).then(pl.lit("")).otherwise(stamp.dt.strftime("%.6f"))
    return pl.DataFrame({"us": us}).select(text + pl.lit("Z")).to_series().alias("time")


def _error(index: int, record, code: str, reason: str) -> dict:
    record_id = record.get("id") if isinstance(record, dict) else None
    return {"index": index, "pointer": f"/records/{index}",
            "id": None if record_id is None else str(record_id), "code": code, "reason": reason}


def _activity_time(record: dict, schema) -> int:
    """µs UTC: `time`, else the earliest of the datetime inputs that stand in for it."""
    raw = record.get("time")
    if raw not in (None, ""):
        return parse_datetime_us("time", raw, schema.timezone)
    stamps = [parse_datetime_us(name, record[name], schema.timezone)
              for name in schema.time_default_from if record.get(name) not in (None, "")]
    if not stamps:
        others = " or ".join(f"`{name}`" for name in schema.time_default_from)
        raise RecordError("time", "missing: give `time`" + (f", or {others}" if others else ""))
    return min(stamps)


MAX_IDENTIFIER = 200  # characters of a record id, an account id (the ledger's columns)


# the control characters an identifier may not hold: C0 and DEL
_CONTROL = re.compile("[\x00-\x1f\x7f]")


def _identifier_problem(value, field: str) -> Optional[tuple[str, str]]:
    """(field, reason) when a record id or account id cannot be stored as it is. Twice a
    record to credit: the control characters are looked for by str.isprintable (False for
    every one of them; True for most ids, which then need no more) and a regular
    expression, both in C, where a generator over the characters was 5 % of a 1,000-record
    credit's CPU (docs/ledger.md, Session 19)."""
    text = str(value)
    if len(text) > MAX_IDENTIFIER:
        return field, f"`{field}` has {len(text)} characters: at most {MAX_IDENTIFIER}"
    if not text.isprintable() and _CONTROL.search(text) is not None:
        return field, f"`{field}` contains a control character (NUL, tab, newline ...)"
    if text != text.strip():
        return field, f"`{field}` begins or ends with white space"
    return None


def check_records(records) -> list:
    if not isinstance(records, list):
        raise ApiError(400, "bad_request", "`records` must be a JSON array of objects")
    if len(records) > MAX_RECORDS:
        raise ApiError(413, "too_many_records",
                       f"{len(records)} records: at most {MAX_RECORDS} per request")
    return records


def evaluate(session: Session, methodology_id: str, records: list, *,
             as_of: Optional[dt.date] = None, require_ids: bool = False,
             explain: bool = False, column_units: Optional[dict] = None,
             fingerprint: Optional[list] = None) -> Evaluation:
    """Each record evaluated by the version applicable at its time (on `as_of`, default
    today). A record that cannot be read, or for whose time no version applies, is an
    error with its index and reason; the others are evaluated, each version's records
    together (so cross-record rules apply among them). `column_units`: the units a
    file's headers declare (`distance[km]`), for records read from a file (jobs).

    From BATCH_FROM records of one version on, they are evaluated by the batch engine
    (the generated C kernel over columns, as `tanpu eval` does) unless explanations are
    asked; fewer, by the scalar Engine. The two give the same results, bit for bit
    (tests/webui/test_api_batch.py); the batch engine was measured 5-10x faster on
    batches of 10,000 (docs/api.md, bench/bench_api.py). To credit (`require_ids`), the
    batch engine's per-record results carry what the ledger's cross-record rules read
    (engine/batch/per_record.py; the same ledger: tests/webui/test_api_credit_batch.py),
    except for a methodology with history windows: the ledger evaluates its records'
    formulas again with the stored windows (Engine.apply_history), from every input of
    each record, which the scalar Engine's results keep and the batch's do not. `fingerprint`: the rows of
    fingerprint_statement(methodology_id) read in `session`'s transaction by the caller
    (_versions)."""
    records = check_records(records)
    kept = _versions(session, methodology_id, fingerprint)
    latest = kept.latest
    schema = engine_of(latest).schema
    from dsl.zones import DEFAULT_TIMEZONE, zone as zone_of
    zone = zone_of(schema.timezone or DEFAULT_TIMEZONE)
    now = utcnow()
    as_of = as_of or now

    errors: list[dict] = []
    chosen: list[int] = []  # indices of the records read for their time
    seen_ids: dict[str, int] = {}
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            errors.append(_error(index, record, "not_an_object", "a record must be a JSON object"))
            continue
        if require_ids:
            record_id = record.get("id")
            if record_id in (None, "") or not isinstance(record_id, (str, int)) or isinstance(record_id, bool):
                errors.append(_error(index, record, "missing_id",
                                     "a record to credit needs its own `id` (the idempotency key of the record)"))
                continue
            if str(record_id) in seen_ids and records[seen_ids[str(record_id)]] != record:
                errors.append(_error(index, record, "conflicting_id",
                                     f"record id {record_id} is also at index "
                                     f"{seen_ids[str(record_id)]} with other values"))
                continue
            seen_ids.setdefault(str(record_id), index)
            account = record.get("account")
            if account in (None, "") or not isinstance(account, (str, int)) or isinstance(account, bool):
                errors.append(_error(index, record, "missing_account",
                                     "a record to credit needs the `account` to credit "
                                     "(a string or a whole number)"))
                continue
            bad = _identifier_problem(record_id, "id") or _identifier_problem(account, "account")
            if bad:  # checked here, the same on SQLite and PostgreSQL, before the database
                errors.append(_error(index, record, f"invalid_{bad[0]}", bad[1]))
                continue
        chosen.append(index)

    # the records as columns (for the batch engine), when there are enough of them
    frame = _raw_frame([records[i] for i in chosen]) if len(chosen) >= BATCH_FROM else None
    native = evaluation.batch_engine_for(latest.source).native_text if frame is not None else None
    # the datetime columns read for the activity times, read once: the batch engine takes them
    datetimes = ReadDatetimes(frame.height) if frame is not None else None
    times, days, unreadable = _activity_times(records, chosen, schema, zone, frame, native, datetimes)
    # each record's version, by its local day: a few days (and versions) for many records
    chosen_at = np.asarray(chosen, dtype=np.int64)
    ok = np.ones(len(chosen), dtype=bool)
    for position, reason in unreadable.items():
        index = chosen[position]
        errors.append(_error(index, records[index], "invalid_record", reason))
        ok[position] = False
    if require_ids:
        for position in np.flatnonzero(ok & (times > datetime_to_us(now + CLOCK_SKEW))).tolist():
            index = chosen[position]
            moment = us_to_datetime(int(times[position]))
            errors.append(_error(index, records[index], "future_record",
                                 f"the record's time {moment.isoformat().replace('+00:00', 'Z')} is "
                                 f"after now ({now.isoformat(timespec='seconds').replace('+00:00', 'Z')}"
                                 f", {int(CLOCK_SKEW.total_seconds() // 60)} min of clock skew "
                                 f"allowed): a record is credited once it has happened"))
            ok[position] = False
    good = np.flatnonzero(ok)
    distinct, first, of_day = np.unique(days[good], return_index=True, return_inverse=True)
    groups: dict[tuple[int, str], Group] = {}
    day_groups: dict[tuple[int, str], list[int]] = {}
    for k in np.argsort(first, kind="stable").tolist():  # in the order records show them
        applicable = kept.applicable(session, dt.date.fromordinal(int(distinct[k]) + EPOCH_DAY),
                                     as_of)
        if applicable.version is None:
            for position in good[of_day == k].tolist():
                index = chosen[position]
                errors.append(_error(index, records[index], "no_applicable_version",
                                     applicable.reason))
            continue
        key = (applicable.version.id, applicable.reason)
        if key not in groups:
            groups[key] = Group(applicable.version, applicable.reason)
        day_groups.setdefault(key, []).append(k)
    for key, group in groups.items():
        positions = good[np.isin(of_day, day_groups[key])] if len(distinct) > 1 else good
        group.positions = positions.tolist()
        group.indices = chosen_at[positions].tolist()

    for group in groups.values():
        group.engine = engine_of(group.version)
        rules = group.engine.rules
        # to credit: the per-record formulas here, the cross-record rules in the ledger,
        # after the state the accounts' earlier credits left (which read each result's
        # inputs: the batch engine's results carry those the rules read; a history
        # window's records are evaluated again there from every input: the scalar Engine)
        if (frame is not None and not explain and len(group.indices) >= BATCH_FROM
                and records_module.INVALID not in frame.columns
                and not (require_ids and rules.histories)):
            _evaluate_batch(group, frame, column_units, per_record_only=require_ids,
                            datetimes=datetimes, records=records)
            invalid = group.frame.get_column("status") == INVALID
            if invalid.any():
                for position, message in zip(np.flatnonzero(invalid.to_numpy()).tolist(),
                                             group.frame.get_column("message").filter(invalid).to_list()):
                    index = group.indices[position]
                    errors.append(_error(index, records[index], "invalid_record", message))
            continue
        rows = Records([records[i] for i in group.indices], dict(column_units or {}))
        group.results = evaluation.evaluate(group.engine, rows, explain=explain,
                                            per_record_only=require_ids)
        for index, r in zip(group.indices, group.results):
            if r.status == INVALID:
                errors.append(_error(index, records[index], "invalid_record", r.message))
    errors.sort(key=lambda e: e["index"])
    return Evaluation(methodology_id, len(records), list(groups.values()), errors, records)


# records of one version from which the batch engine evaluates them: below, building
# columns costs more than the scalar Engine's per-record work (measured: docs/api.md)
BATCH_FROM = 64
# activity times read by columns within these (µs UTC); beyond, one by one, as they may
# fall outside the years 1 to 9999 in the methodology's time zone
_FIRST_US = datetime_to_us(dt.datetime(2, 1, 1, tzinfo=dt.timezone.utc))
_LAST_US = datetime_to_us(dt.datetime(9998, 12, 31, tzinfo=dt.timezone.utc))


def _raw_frame(chosen: list[dict]):
    from engine.batch.ingest import raw_frame
    return raw_frame(chosen)


def _time_schema(schema):
    """The schema of the datetime inputs that stand in for a missing `time`, alone: what
    the columnar reader needs to read each record's activity time."""
    fields = tuple(replace(f, required=True) for f in schema.fields
                   if f.name in schema.time_default_from)
    return records_module.Schema(fields, schema.timezone, schema.time_default_from, ())


def _starts_with_digit(frame, name: str) -> Optional[np.ndarray]:
    """Cells of `name` that are text beginning with an ASCII digit (never blank, as an
    ISO date is); None when the column is absent or empty everywhere."""
    import polars as pl
    if name not in frame.columns or frame.get_column(name).dtype == pl.Null:
        return None
    column = frame.get_column(name)
    if column.dtype != pl.String:
        return np.zeros(frame.height, dtype=bool)
    return column.str.contains("^[0-9]").fill_null(False).to_numpy()


def _activity_times(records: list, chosen: list[int], schema, zone, frame, native,
                    datetimes=None):
    """(µs UTC, local day since 1970-01-01, {position: reason}) of each chosen record's
    activity time, as _activity_time() reads it one record at a time.

    With a frame, the columnar reader (engine/batch/ingest.py, the batch engine's own)
    reads the rows where it and _activity_time() cannot differ: `time` given as text
    beginning with a digit, or absent and every datetime input standing in for it so
    given (_activity_time() and the engine's reader differ only on blank or missing
    cells). Every other row, and a row the columnar reader refuses, is read one by one.
    `datetimes` (ingest.ReadDatetimes): receives the datetime columns so read, for the
    batch engine to take instead of reading them again."""
    n = len(chosen)
    times = np.zeros(n, dtype=np.int64)
    days = np.zeros(n, dtype=np.int64)
    slow: list[int] = list(range(n))
    if frame is not None:
        written = _starts_with_digit(frame, "time")
        stand_ins = [_starts_with_digit(frame, name) for name in schema.time_default_from]
        if stand_ins and all(s is not None for s in stand_ins):
            every = np.logical_and.reduce(stand_ins)
        else:
            every = np.zeros(n, dtype=bool)
        if written is None:
            fast = every
        else:
            nulls = frame.get_column("time").is_null().to_numpy()
            fast = written | (nulls & every)
        if fast.any():
            from engine.batch.ingest import ingest_frame
            from engine.batch.timezones import zone_table
            got = ingest_frame(frame, _time_schema(schema), None, 1, native, datetimes)
            read = got.columns["time"]
            fast &= ~got.invalid & (read >= _FIRST_US) & (read <= _LAST_US)
            times[fast] = read[fast]
            days[fast] = zone_table(schema.timezone).local_day(read[fast])
            slow = np.flatnonzero(~fast).tolist()
    unreadable: dict[int, str] = {}
    for position in slow:
        record = records[chosen[position]]
        try:
            us = _activity_time(record, schema)
            day = us_to_datetime(us).astimezone(zone).date()
        except RecordError as error:
            unreadable[position] = f"{error.field}: {error.reason}"
            continue
        except (OverflowError, ValueError):  # 0001-01-01T00:00 in a zone east of UTC
            unreadable[position] = "time: outside the years 1 to 9999 in the methodology's time zone"
            continue
        times[position] = us
        days[position] = day.toordinal() - EPOCH_DAY
    return times, days, unreadable


def _evaluate_batch(group: Group, frame, column_units: Optional[dict], per_record_only: bool,
                    datetimes=None, records: Optional[list] = None):
    """The group's records by the batch engine: its results frame on group.frame;
    `datetimes`: the frame's datetime columns as _activity_times read them; `records`:
    the request's records (per_record_only: the ledger's recomputed points read them)."""
    import polars as pl
    engine = evaluation.batch_engine_for(group.version.source,
                                         f"{group.version.methodology_id}@{group.version.version}")
    if len(group.positions) != frame.height:
        frame = frame.select(pl.all().gather(group.positions))
        datetimes = datetimes.gather(group.positions) if datetimes is not None else None
    units = dict(column_units or {})
    if not per_record_only:
        group.frame = engine.evaluate_frame(frame, units, datetimes=datetimes)
        return
    part = engine.per_record(frame, units, datetimes=datetimes)
    batch = engine.batch_of(part, copy=False)
    group.frame = engine.results(part, batch)
    # the ledger takes Results, with what its rules read of each record
    judged = engine.per_record_results(part, batch, group.frame, [records[i] for i in group.indices],
                                       units)
    group.results = judged.results
    group.judging = group.engine.recomputing_by(judged.recompute_points)


def evaluation_response(result: Evaluation, explain: bool, compact: bool = False) -> dict:
    """The answer of POST /evaluate; compact: the versions once in `groups`, each result's
    `group` its index there (an evaluation of 10,000 records was 4.6 MB, about 45% of it
    the same four fields again in every result; docs/api.md)."""
    rows = result.result_rows(explain, compact)
    by_status = dict(Counter(r["status"] for r in rows))
    counted = [r for r in rows if r["status"] in evaluation.CREDIT_STATUSES] \
        if len(by_status.keys() - set(evaluation.CREDIT_STATUSES)) else rows
    return {
        "methodology": result.methodology_id,
        "summary": {"records": result.count, "evaluated": len(rows), "errors": len(result.errors),
                    "by_status": by_status,
                    "reduction_mg": sum(map(itemgetter("reduction_mg"), counted)),
                    "points": sum(map(itemgetter("points"), counted))
                    + sum(map(itemgetter("bonus"), counted)),
                    "versions": sorted({f"{g.version.version}" for g in result.groups})},
        **({"groups": result.version_groups()} if compact else {}),
        "results": rows, "errors": result.errors,
    }


def evaluation_json(result: Evaluation, explain: bool, compact: bool = False) -> bytes:
    """evaluation_response() written as JSON (UTF-8 bytes). When the batch engine gave
    every group's results, the results are written from its columns by Polars' JSON
    writer, without a dictionary a result: building those 10,000 dictionaries and
    writing them took about a third of a 10,000-record request (docs/api.md). The same
    values either way (tests/webui/test_api_batch.py compares both with
    evaluation_response())."""
    table = None if explain else _results_table(result, compact)
    if table is None:
        return _dumps(evaluation_response(result, explain, compact))
    head = {
        "methodology": result.methodology_id,
        "summary": _table_summary(result, table),
        **({"groups": result.version_groups()} if compact else {}),
    }
    # one object a line; a newline inside a value is written escaped (\n)
    rows = _ndjson(table).rstrip(b"\n").replace(b"\n", b",")
    return b"".join((_dumps(head)[:-1], b',"results":[', rows, b'],"errors":',
                     _dumps(result.errors), b"}"))


def evaluation_lines(result: Evaluation, offset: int = 0) -> Optional[tuple[dict, bytes]]:
    """(summary, results) of evaluation_response(result, explain=False) for a job's chunk
    of records that begins at `offset`: the results as JSON Lines, each result's `index`
    plus `offset` and its `row` (that index + 1) last, written from the batch engine's
    columns as evaluation_json() writes them; None when the results are not all in
    columns (then the dictionaries, webui/worker.py). Building and writing a dictionary a
    result took most of an evaluate job's chunk once the engine was fast (docs/api.md)."""
    table = _results_table(result, False)
    if table is None:
        return None
    import polars as pl
    summary = _table_summary(result, table)
    table = table.with_columns(pl.col("index") + offset).with_columns(row=pl.col("index") + 1)
    return summary, _ndjson(table)


def _ndjson(table) -> bytes:
    import io
    lines = io.BytesIO()
    table.write_ndjson(lines)
    return lines.getvalue()


def _table_summary(result: Evaluation, table) -> dict:
    """evaluation_response()'s summary, of _results_table()'s columns."""
    status = table.get_column("status")
    counted = table.filter(status.is_in(list(evaluation.CREDIT_STATUSES)))
    return {"records": result.count, "evaluated": table.height,
            "errors": len(result.errors), "by_status": dict(Counter(status.to_list())),
            # Python's integers: a sum of int64 columns cannot overflow here
            "reduction_mg": sum(counted.get_column("reduction_mg").to_list()),
            "points": sum(counted.get_column("points").to_list())
            + sum(counted.get_column("bonus").to_list()),
            "versions": sorted({f"{g.version.version}" for g in result.groups})}


def _dumps(value) -> bytes:
    """orjson; a value it does not write (an integer beyond 64 bits) by the standard
    library."""
    import orjson
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# beyond 2**53 milligrams, numpy's int64 -> float64 rounds before dividing; Python divides
# the exact integers
_EXACT_MG = 2 ** 53


def _results_table(result: Evaluation, compact: bool):
    """Every batch group's results as one Polars frame with the columns, in the order and
    with the values of result_rows()' dictionaries (invalid results left out), sorted by
    the request's index; None when a group was not evaluated by the batch engine or a
    column is not as expected (then the dictionaries)."""
    import polars as pl
    if not result.groups or any(g.frame is None for g in result.groups):
        return None
    tables = []
    for number, group in enumerate(result.groups):
        frame = group.frame
        mg = frame.get_column("reduction_mg")
        if mg.null_count() or mg.dtype != pl.Int64:
            return None
        mg_values = mg.to_numpy()
        # reduction_mg / 1_000_000 as Python divides it (Polars multiplies by the reciprocal,
        # which is not the same double for 467 mg)
        kg = mg_values / 1_000_000
        big = np.flatnonzero(np.abs(mg_values) > _EXACT_MG)
        for position in big.tolist():
            kg[position] = int(mg_values[position]) / 1_000_000
        columns = [pl.Series("index", group.indices, dtype=pl.Int64)]
        for name in COLUMNS[1:]:
            if name == "time":
                columns.append(_iso_time_series(frame.get_column("time")))
                continue
            if name == "reduction_mg":
                columns.append(pl.Series("reduction_kg", kg, dtype=pl.Float64))
            columns.append(frame.get_column(name))
        table = pl.DataFrame(columns)
        if compact:
            table = table.with_columns(pl.lit(number, dtype=pl.Int64).alias("group"))
        else:
            ref = group.engine.ref
            table = table.with_columns(*(pl.lit(value, dtype=pl.String).alias(name) for name, value in
                                         zip(_VERSION_FIELDS, (ref.id, ref.version, ref.content_hash,
                                                               group.reason))))
        if pl.Object in table.dtypes:  # Python objects: the dictionaries write them
            return None
        tables.append(table.filter(pl.col("status") != INVALID))
    if len(tables) == 1:
        return tables[0]
    try:
        return pl.concat(tables, how="vertical").sort("index")
    except (pl.exceptions.SchemaError, pl.exceptions.ShapeError):
        return None


# ---------------------------------------------------------------- POST /credits
def _sent_account(entry) -> Any:
    """The account as the integrator named it in the record it sent (the entry holds the
    platform account's id)."""
    if entry.record:
        return json.loads(entry.record).get("account", entry.account)
    return entry.account


def _group_key(key: Optional[str], group: Group) -> Optional[str]:
    if not key:
        return None
    derived = f"{key}:{group.version.methodology_id}@{group.version.version}"
    if len(derived) > 200:
        derived = "sha256:" + hashlib.sha256(derived.encode("utf-8")).hexdigest()
    return derived


def credit(session: Session, actor_id: int, result: Evaluation, *,
           idempotency_key: Optional[str] = None, at_commit: bool = False) -> dict:
    """Credits the evaluated records (one ledger call per version, all in the caller's
    transaction). A record credited before, by this or another request, is said to be
    `already_credited` with what it was credited; a replay of the same request writes
    nothing. The cycle collector is paused meanwhile, as for the view's body: the answer's
    rows and the ledger's objects hold no cycles (engine/gc_pause.py; registry/ledger.py
    credit pauses it for its part too).

    `at_commit`: the caller commits the transaction next, sending nothing before; a single
    version's entries are then written in the COMMIT's round trip (ledger.credit's
    `at_commit`: the answer needs no entry's id)."""
    with cycle_collector_paused():
        return _credit(session, actor_id, result, idempotency_key=idempotency_key,
                       at_commit=at_commit)


def _judged_rows(result: Evaluation, judged: dict[str, Result], *, fast: bool = True) -> list[dict]:
    """The answer's rows of a credit before their credit fields: result_rows(explain=False)
    with each result the ledger's cross-record rules judged (`judged`, by record id) taken
    as they judged it (status, code, message, amounts, flags, counters).

    A scalar group's rows (`fast`) are each made in one dict display from the result and
    its judged copy, in result_rows' order of keys: result_rows made each by to_dict, two
    pops and a copy, and the judged ones were then updated field by field, about 5 ms of
    a 1,000-record credit's CPU (docs/ledger.md, Session 23). The batch engine's groups
    (a frame), and every group with fast=False, go the general way, which
    tests/webui/test_api_credit_rows.py compares the answer's body with."""
    groups = [(n, g) for n, g in enumerate(result.groups) if not fast or g.frame is not None]
    rows = result.result_rows(explain=False, only=[n for n, _ in groups]) if groups else []
    for row in rows:
        after = judged.get(row["id"])
        if after is not None:  # as the cross-record rules judged it in the ledger
            row.update(status=after.status, code=after.code, message=after.message,
                       reduction_mg=after.reduction_mg, reduction_kg=after.reduction_mg / 1_000_000,
                       points=after.points, bonus=after.bonus, flags=list(after.flags),
                       counters=list(after.counters))
    if not fast:
        return rows
    get = judged.get
    for group in result.groups:
        if group.frame is not None:
            continue
        ref, reason = group.engine.ref, group.reason
        methodology, version, content_hash = ref.id, ref.version, ref.content_hash
        for index, r in zip(group.indices, group.results):
            if r.status == INVALID:
                continue
            a = get(r.id) or r
            time, mg = r.time, a.reduction_mg
            rows.append({"index": index, "id": r.id, "account": r.account,
                         "time": None if time is None else iso_time(time),
                         "status": a.status, "code": a.code, "message": a.message,
                         "reduction_kg": mg / 1_000_000, "reduction_mg": mg, "points": a.points,
                         "bonus": a.bonus, "baseline_mg": r.baseline_mg,
                         "project_mg": r.project_mg, "leakage_mg": r.leakage_mg,
                         "flags": list(a.flags), "counters": list(a.counters),
                         "methodology": methodology, "version": version,
                         "content_hash": content_hash, "applicability": reason})
    rows.sort(key=itemgetter("index"))
    return rows


def _credit(session: Session, actor_id: int, result: Evaluation, *,
            idempotency_key: Optional[str], at_commit: bool = False) -> dict:
    if idempotency_key is not None and not (1 <= len(idempotency_key) <= 150):
        raise ApiError(400, "bad_idempotency_key", "an idempotency key has 1 to 150 characters")
    outcome_of: dict[str, tuple[str, Any, Group, bool]] = {}
    batches = []
    conflicts: dict[str, list[str]] = {}
    judged: dict[str, Result] = {}
    # the groups in the order of their versions' dates: an account's state follows time
    for group in sorted(result.groups, key=lambda g: (g.version.effective_from, g.version.semver)):
        engine = group.engine if group.judging is None else group.judging
        results = [r for r in group.results if r.status != INVALID]
        sent = {str(result.records[i].get("id")): result.records[i] for i in group.indices}
        outcome = ledger.credit(session, actor_id, engine.ref, results,
                                idempotency_key=_group_key(idempotency_key, group),
                                reason=group.reason, engine=engine, records=sent,
                                # the last ledger call of the transaction
                                at_commit=at_commit and len(result.groups) == 1)
        conflicts.update(outcome.conflicts)
        judged.update(outcome.judged)
        batches.append({"batch_id": outcome.batch_id, "version": group.version.version,
                        "idempotency_key": outcome.idempotency_key, "replayed": outcome.replayed,
                        "new": len(outcome.new) if not outcome.replayed else 0})
        for entry in outcome.new:
            outcome_of[entry.record_id] = ("already_credited" if outcome.replayed else "credited",
                                           entry, group, outcome.replayed)
        for entry in outcome.present:
            outcome_of[entry.record_id] = ("already_credited", entry, group, outcome.replayed)

    rows = _judged_rows(result, judged)
    credited_mg = credited_points = new = already = 0
    for row in rows:
        found = outcome_of.get(row["id"])
        if found is None or row["status"] not in evaluation.CREDIT_STATUSES:
            row["credit"] = "not_creditable"
            continue
        state, entry, _group, _replayed = found
        row["credit"] = state
        if row["id"] in conflicts:
            row["credit"] = "conflict"
            row["conflict"] = {"fields": conflicts[row["id"]],
                               "message": "this record id was credited with other values: "
                                          + ", ".join(conflicts[row["id"]]) + " differ"}
        if state == "credited":
            new += 1
            credited_mg += entry.reduction_mg
            credited_points += entry.points + entry.bonus
        else:
            already += row["credit"] == "already_credited"
            row["credited"] = {
                "version": entry.version, "content_hash": entry.content_hash,
                "account": _sent_account(entry), "reduction_mg": entry.reduction_mg,
                "points": entry.points, "bonus": entry.bonus, "batch_id": entry.batch_id,
                "counters": [c for c in (entry.counters or "").split(";") if c],
                "credited_at": entry.credited_at.isoformat().replace("+00:00", "Z")
                if entry.credited_at else None}
    return {
        "methodology": result.methodology_id,
        "summary": {"records": result.count, "evaluated": len(rows), "errors": len(result.errors),
                    "credited": new, "already_credited": already,
                    "conflicts": sum(r["credit"] == "conflict" for r in rows),
                    "not_creditable": sum(r["credit"] == "not_creditable" for r in rows),
                    "credited_reduction_mg": credited_mg, "credited_points": credited_points},
        "batches": batches, "results": rows, "errors": result.errors,
    }
