"""What evaluating one record gives, on every path (scalar, batch, rules, API)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field, fields
from typing import Any, Optional

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_timedelta = _dt.timedelta

CREDITED = "credited"
REJECTED = "rejected"
NOT_APPLICABLE = "not_applicable"
CAPPED = "capped"
DUPLICATE = "duplicate"
INVALID = "invalid"  # the record could not be read; it never reached the formulas

STATUSES = (CREDITED, CAPPED, REJECTED, DUPLICATE, NOT_APPLICABLE, INVALID)

# reason codes the engine itself gives (a methodology's own codes are its `else` codes)
OUT_OF_PERIOD = "OUT_OF_PERIOD"
ACTIVITY_NOT_COVERED = "ACTIVITY_NOT_COVERED"
OUT_OF_RANGE = "OUT_OF_RANGE"
NOT_FINITE = "NOT_FINITE"
NO_VALUE = "NO_VALUE"
DUPLICATE_ID = "DUPLICATE_ID"
CAP_REACHED = "CAP_REACHED"
NEGATIVE_COUNTER = "NEGATIVE_COUNTER"


@dataclass(frozen=True)
class MethodologyRef:
    id: str
    version: str
    content_hash: str


@dataclass(slots=True)
class Result:
    """One record's outcome. Masses are whole milligrams CO2e."""

    id: str
    account: str
    time: int  # microseconds since the epoch, UTC
    status: str
    code: str = ""
    message: str = ""
    reduction_mg: int = 0
    points: int = 0
    bonus: int = 0
    baseline_mg: Optional[int] = None
    project_mg: Optional[int] = None
    leakage_mg: Optional[int] = None
    flags: tuple[str, ...] = ()
    # the counters and rewards the record moved, `name=amount` (engine/counters.py)
    counters: tuple[str, ...] = ()
    row: Optional[int] = None
    explanation: Optional[list[dict]] = None
    values: Optional[dict[str, Any]] = field(default=None, repr=False)  # inputs, for cross-record rules
    # what the formulas gave each counter, before the counter rules (engine/counters.py)
    amounts: tuple[int, ...] = field(default=(), repr=False)

    @property
    def reduction_kg(self) -> float:
        return self.reduction_mg / 1_000_000

    def key(self) -> tuple:
        """Everything that must agree between two evaluation paths."""
        return (self.id, self.account, self.time, self.status, self.code, self.reduction_mg,
                self.points, self.bonus, self.baseline_mg, self.project_mg, self.leakage_mg,
                self.flags, self.counters, self.row)

    def to_dict(self, methodology: Optional[MethodologyRef] = None) -> dict:
        """The result as written (FILE_COLUMNS): time as ISO text, flags as a list. One
        dict display rather than a loop over the columns: the API answers a dict per
        record (a 1,000-record credit's answer; the order checked below)."""
        time, mg = self.time, self.reduction_mg
        out = {"row": self.row, "id": self.id, "account": self.account,
               "time": None if time is None else _iso_time(time),
               "status": self.status, "code": self.code, "message": self.message,
               "reduction_kg": mg / 1_000_000, "reduction_mg": mg, "points": self.points,
               "bonus": self.bonus, "baseline_mg": self.baseline_mg,
               "project_mg": self.project_mg, "leakage_mg": self.leakage_mg,
               "flags": list(self.flags), "counters": list(self.counters)}
        if methodology is not None:
            out["methodology"] = methodology.id
            out["version"] = methodology.version
            out["content_hash"] = methodology.content_hash
        if self.explanation is not None:
            out["explanation"] = self.explanation
        return out


def _iso_time(us: int) -> str:
    """ISO text of a time in UTC, `Z` for the zone: what
    `datetime.isoformat().replace("+00:00", "Z")` gives (microseconds only when there are
    some), the date's text kept per day and the time of day formatted from the integer,
    in about half isoformat's time (one per result the API answers;
    tests/engine/test_result_time_text.py compares)."""
    day, rest = divmod(us, 86_400_000_000)
    date = _DAYS.get(day)
    if date is None:
        if len(_DAYS) > 4096:
            _DAYS.clear()
        date = _DAYS[day] = (_EPOCH + _timedelta(days=day)).date().isoformat()
    second, micro = divmod(rest, 1_000_000)
    hour, second = divmod(second, 3600)
    minute, second = divmod(second, 60)
    if micro:
        return f"{date}T{hour:02d}:{minute:02d}:{second:02d}.{micro:06d}Z"
    return f"{date}T{hour:02d}:{minute:02d}:{second:02d}Z"


_DAYS: dict[int, str] = {}  # days since the epoch -> the date's ISO text

# the ISO text of a time in UTC as to_dict writes it, for a caller that writes a result's
# fields itself (webui/api/service.py: a credit's answer rows in one dict display each)
iso_time = _iso_time


# The columns of a result, in the order every path and every file gives them: the row
# number first, then Result's fields, without the explanation and the inputs (no columns).
COLUMNS = ("row",) + tuple(f.name for f in fields(Result)
                           if f.name not in ("row", "explanation", "values", "amounts"))
# What a written result adds: the methodology that gave it (MethodologyRef's fields).
REF_COLUMNS = ("methodology", "version", "content_hash")
assert len(REF_COLUMNS) == len(fields(MethodologyRef))
# Written (files, Result.to_dict): the kilograms before the milligrams, then the methodology.
FILE_COLUMNS = tuple(c for name in COLUMNS
                     for c in (("reduction_kg", name) if name == "reduction_mg" else (name,))) + REF_COLUMNS
# to_dict writes the columns in this order (its dict display is checked here, once)
assert tuple(Result("", "", 0, "").to_dict(MethodologyRef("", "", ""))) == FILE_COLUMNS

# Written to the terminal: up to the amounts (not the masses, flags or methodology).
SHORT_COLUMNS = FILE_COLUMNS[:FILE_COLUMNS.index("bonus") + 1]
# Written by `tanpu eval --compact` (Parquet only): what a national day of records needs
# per row (issue 16); the methodology (REF_COLUMNS) once, in the file's metadata
# (COMPACT_METADATA), not on every row.
COMPACT_COLUMNS = ("id", "account", "status", "code", "reduction_mg", "points")
COMPACT_METADATA = tuple(f"tanpu.{name}" for name in REF_COLUMNS)

def invalid(row: Optional[int], record_id: str, account: str, reason: str) -> Result:
    """A record that could not be read: no time, no amounts, the reason in the message."""
    return Result(id=record_id, account=account, time=None, status=INVALID,
                  code="INVALID_RECORD", message=reason, row=row)
