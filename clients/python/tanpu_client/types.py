"""The response bodies of /api/v1 as TypedDicts (components.schemas of the OpenAPI
document; fields the server adds later are there at run time, not in these types)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

try:
    from typing import TypedDict
except ImportError:  # pragma: no cover - Python < 3.8
    from typing_extensions import TypedDict


class RecordProblem(TypedDict):
    index: int
    pointer: str
    id: Optional[str]
    code: str
    reason: str


class ResultRow(TypedDict, total=False):
    index: int
    id: Optional[str]
    account: Optional[str]
    time: Optional[str]
    status: str
    code: str
    message: str
    reduction_mg: int
    reduction_kg: float
    points: int
    bonus: int
    flags: List[str]
    methodology: str
    version: str
    content_hash: str
    applicability: str
    explanation: List[Dict[str, Any]]
    explanation_text: str
    credit: str  # credits only: credited, already_credited, conflict, not_creditable


class EvaluateResponse(TypedDict):
    methodology: str
    summary: Dict[str, Any]
    results: List[ResultRow]
    errors: List[RecordProblem]


class CreditResponse(TypedDict):
    methodology: str
    summary: Dict[str, Any]
    batches: List[Dict[str, Any]]
    results: List[ResultRow]
    errors: List[RecordProblem]


class Account(TypedDict):
    id: int
    kind: str
    name: str
    status: str
    domains: List[str]
    parent: Optional[Dict[str, Any]]
    children: int
    created_at: Optional[str]
    updated_at: Optional[str]
    created_by_you: bool
    identities: List[Dict[str, Any]]


class Totals(TypedDict):
    reduction_mg: int
    reduction_kg: float
    points: int
    entries: int
    by_methodology: Dict[str, Any]


class Balance(TypedDict):
    account: int
    own: Totals
    subtree: Totals


class PeriodBalances(TypedDict):
    account: int
    period: str
    timezone: str
    subtree: bool
    items: List[Dict[str, Any]]
    totals: List[Dict[str, Any]]
