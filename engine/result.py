"""What evaluating one record gives, on every path (scalar, batch, rules, API)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

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
    row: Optional[int] = None
    explanation: Optional[list[dict]] = None
    values: Optional[dict[str, Any]] = field(default=None, repr=False)  # inputs, for cross-record rules

    @property
    def reduction_kg(self) -> float:
        return self.reduction_mg / 1_000_000

    def key(self) -> tuple:
        """Everything that must agree between two evaluation paths."""
        return (self.id, self.account, self.time, self.status, self.code, self.reduction_mg,
                self.points, self.bonus, self.baseline_mg, self.project_mg, self.leakage_mg,
                self.flags, self.row)

    def to_dict(self, methodology: Optional[MethodologyRef] = None) -> dict:
        from .records import us_to_datetime
        out = {
            "row": self.row, "id": self.id, "account": self.account,
            "time": us_to_datetime(self.time).isoformat().replace("+00:00", "Z") if self.time is not None else None,
            "status": self.status, "code": self.code, "message": self.message,
            "reduction_kg": self.reduction_mg / 1_000_000, "reduction_mg": self.reduction_mg,
            "points": self.points, "bonus": self.bonus,
            "baseline_mg": self.baseline_mg, "project_mg": self.project_mg,
            "leakage_mg": self.leakage_mg, "flags": list(self.flags),
        }
        if methodology is not None:
            out["methodology"] = methodology.id
            out["version"] = methodology.version
            out["content_hash"] = methodology.content_hash
        if self.explanation is not None:
            out["explanation"] = self.explanation
        return out


def invalid(row: Optional[int], record_id: str, account: str, reason: str) -> Result:
    """A record that could not be read: no time, no amounts, the reason in the message."""
    return Result(id=record_id, account=account, time=None, status=INVALID,
                  code="INVALID_RECORD", message=reason, row=row)
