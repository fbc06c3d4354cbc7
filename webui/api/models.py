"""The declared bodies of /api/v1: every request and response body is one of these
pydantic v2 models, and the OpenAPI document (openapi.py) is generated from them.

Request models forbid unknown fields and are strict (`"explain": "yes"` is not a boolean);
`parse()` turns a validation failure into a problem (problems.py) whose `errors` name
each field by JSON pointer, with the type expected and the value sent.

Records are not modelled here: each methodology declares its own record schema (the
`input_schema` of GET /methodologies/<id>/schema, engine/schema.py) and the records are
read by the same readers as files (webui/records.py, engine/records.py), record by record,
so that one bad record is an error of its own and the rest goes on.
"""

from __future__ import annotations

import datetime as dt
import json
from itertools import chain
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt,
                      ValidationError)

from .problems import pointer
from .service import MAX_RECORDS, ApiError


class Request(BaseModel):
    """A request body: unknown fields are an error, types are not coerced."""
    model_config = ConfigDict(extra="forbid", strict=True)


class Response(BaseModel):
    """A response body: the fields listed are always there; registry dictionaries nested
    in it may grow fields (clients ignore what they do not know)."""
    model_config = ConfigDict(extra="allow")


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _expected(error: dict) -> str:
    message = error["msg"]
    return message[len("Input should be "):] if message.startswith("Input should be ") else message


def _in_body(loc: tuple, body: Any) -> tuple:
    """The part of a pydantic location that is in the body (a union adds its members'
    names: /kg/int is /kg)."""
    path, here = [], body
    for part in loc:
        if isinstance(here, dict) and isinstance(part, str) and part in here:
            here = here[part]
        elif isinstance(here, list) and isinstance(part, int) and 0 <= part < len(here):
            here = here[part]
        elif isinstance(part, str) and not path and isinstance(body, dict):
            path.append(part)  # a missing or unknown top-level field
            break
        else:
            if isinstance(here, dict) and isinstance(part, str) and len(path) == len(loc) - 1:
                path.append(part)  # missing field of a nested object
            break
        path.append(part)
    return tuple(path)


def validation_problem(error: ValidationError, body: Any = None) -> ApiError:
    """A pydantic ValidationError as a 400 problem: one entry per field, by JSON pointer,
    with the type expected and the value sent."""
    by_pointer: dict[str, dict] = {}
    for e in error.errors(include_url=False):
        loc = _in_body(tuple(e["loc"]), body) if body is not None else tuple(e["loc"])
        where = pointer(*loc) or "/"
        if e["type"] == "extra_forbidden":
            detail = f"{where}: unknown field `{loc[-1] if loc else ''}`"
        elif e["type"] == "missing":
            detail = f"{where}: required field missing"
        else:
            found = by_pointer.get(where)
            if found and found["code"] != "extra_forbidden" and "expected" in found["detail"]:
                head, _sep, got = found["detail"].partition(", got ")
                found["detail"] = f"{head} or {_expected(e)}, got {got}"
                continue
            detail = f"{where}: expected {_expected(e)}, got {_shown(e.get('input'))}"
        by_pointer.setdefault(where, {"pointer": where, "detail": detail, "code": e["type"]})
    entries = list(by_pointer.values())
    return ApiError(400, "bad_request", "; ".join(x["detail"] for x in entries[:5]),
                    errors=entries)


def parse(model: type[BaseModel], raw: bytes) -> BaseModel:
    """The body as `model`, or ApiError 400 (bad_request) with an entry per field."""
    if not raw or not raw.strip():
        raise ApiError(400, "bad_request", "send a JSON object (Content-Type: application/json)")
    plain = _plain(model, raw)
    if plain is not None:
        return plain
    try:
        return model.model_validate_json(raw)
    except ValidationError as error:
        if any(e["type"] == "json_invalid" for e in error.errors(include_url=False)):
            message = error.errors(include_url=False)[0]["msg"]
            if "recursion" in message.lower():
                raise ApiError(400, "bad_request", "the JSON body is nested too deeply") from None
            raise ApiError(400, "bad_request", f"the body is not JSON: {message}") from None
        if any(e["type"] == "model_type" and e["loc"] == () for e in error.errors(include_url=False)):
            raise ApiError(400, "bad_request",
                           "send a JSON object (Content-Type: application/json)") from None
        try:
            sent = json.loads(raw)
        except ValueError:
            sent = None
        raise validation_problem(error, sent) from None


_WHOLE = 2 ** 63  # orjson reads an integer beyond 64 bits as a float of at least this


def _plain(model: type[BaseModel], raw: bytes) -> Optional[BaseModel]:
    """The body as `model` read by orjson, when it is a plain request whose reading by
    orjson cannot differ from pydantic's (model_validate_json); else None, and pydantic
    reads it (and words any error, as before).

    Plain: a JSON object whose fields are the model's _PLAIN fields, each of the type its
    check accepts, and records that are objects of strings, booleans, nulls, integers and
    floats below 2**63 in magnitude (orjson reads a larger integer as a float; pydantic
    keeps it; a nested value could be deeper than pydantic allows). pydantic-core's
    reading of a 10,000-record body took 10 ms of a 55 ms request, orjson's 4 ms with
    this check (bench/bench_api.py, docs/api.md); tests/webui/test_api_body.py compares
    both readings."""
    checks = _PLAIN.get(model)
    if checks is None:
        return None
    import orjson
    try:
        sent = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(sent) is not dict or not ("methodology" in sent and "records" in sent) \
            or not all(name in checks and checks[name](value) for name, value in sent.items()):
        return None
    return model.model_construct(**sent)


def _name(value) -> bool:
    return type(value) is str and 1 <= len(value) <= 200


def _records(value) -> bool:
    if type(value) is not list or not set(map(type, value)) <= {dict}:
        return False
    kinds = set(map(type, chain.from_iterable(map(dict.values, value))))
    if not kinds <= {str, int, bool, float, type(None)}:
        return False
    return float not in kinds or all(-_WHOLE < v < _WHOLE for record in value
                                     for v in record.values() if type(v) is float)


def _flag(value) -> bool:
    return type(value) is bool


def _absent(value) -> bool:
    return value is None


def _text_or_none(value) -> bool:
    return value is None or type(value) is str


# ---------------------------------------------------------------- problems
class FieldError(Response):
    pointer: str = Field(description="JSON pointer (RFC 6901) to the field or record")
    detail: str
    code: Optional[str] = None


class Problem(Response):
    """RFC 9457 problem details (application/problem+json)."""
    type: str
    title: str
    status: int
    detail: str
    instance: str
    code: str = Field(description="the problem's short name, the last part of `type`")
    request_id: str
    errors: list[FieldError] = Field(default_factory=list)


# ---------------------------------------------------------------- evaluate, credits
Id = Annotated[StrictInt, Field(ge=0, le=2**31 - 1)]  # an INTEGER column's id
Count = Annotated[StrictInt, Field(ge=0, le=2**31 - 1)]
Records = list[Any]
RECORDS_DESCRIPTION = (
    f"activity records (at most {MAX_RECORDS:,}), each a JSON object as the methodology's "
    "`input_schema` (GET /api/v1/methodologies/{id}/schema) declares; a record that cannot be "
    "read is listed in `errors` with its index and the rest is evaluated")


class EvaluateRequest(Request):
    methodology: str = Field(min_length=1, max_length=200, description="a published methodology's id")
    records: Records = Field(description=RECORDS_DESCRIPTION)
    explain: StrictBool = Field(False, description="each result with its explanation, in the "
                                "methodology's units")
    as_of: Optional[dt.date] = Field(None, description="the versions as they were published on "
                                     "this date (default: today)")
    compact: StrictBool = Field(False, description="each version used once in `groups` (its "
                                "methodology, version, content hash and applicability) and each "
                                "result's `group` its index there, instead of those four fields "
                                "in every result: about half the bytes for large batches")


class CreditRequest(Request):
    methodology: str = Field(min_length=1, max_length=200)
    records: Records = Field(description=RECORDS_DESCRIPTION + "; each needs `id` and `account`")
    idempotency_key: Optional[str] = Field(None, description="or the Idempotency-Key header")


class RecordProblem(Response):
    """A record that was not evaluated (or not credited), and why."""
    index: int
    pointer: str = Field(description="/records/<index>")
    id: Optional[str]
    code: str
    reason: str


class ExplanationStep(Response):
    """A step of an explanation. `value` and `unit` are as the methodology wrote them (3 km,
    35 g/km); `si_value` and `si_unit` beside them when the unit is not SI's."""
    kind: str
    name: Optional[str] = None
    value: Any = None
    unit: Optional[str] = None
    si_value: Optional[float] = None
    si_unit: Optional[str] = None
    shown: Optional[str] = None


class _ResultFields(Response):
    """What every result row says, whether its version is named in the row (ResultRow)
    or once for its group (CompactResultRow): one list of fields for both."""
    index: int = Field(description="the record's index in `records`")
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
    flags: list[str]


class ResultRow(_ResultFields):
    methodology: str
    version: str
    content_hash: str
    applicability: str
    explanation: Optional[list[ExplanationStep]] = None
    explanation_text: Optional[str] = None


class CompactResultRow(_ResultFields):
    """A result of a `compact` request: a ResultRow whose methodology, version,
    content_hash and applicability are those of `groups[group]`."""
    group: int = Field(description="its version's index in `groups`")
    explanation: Optional[list[ExplanationStep]] = None
    explanation_text: Optional[str] = None


class VersionGroup(Response):
    """A version that evaluated records of a `compact` request, and why it applied."""
    methodology: str
    version: str
    content_hash: str
    applicability: str


class EvaluationSummary(Response):
    records: int
    evaluated: int
    errors: int
    by_status: dict[str, int]
    reduction_mg: int
    points: int
    versions: list[str]


class EvaluateResponse(Response):
    methodology: str
    summary: EvaluationSummary
    groups: Optional[list[VersionGroup]] = Field(None, description="`compact` requests only")
    results: list[Union[ResultRow, CompactResultRow]] = Field(
        description="CompactResultRow items for `compact` requests, ResultRow items otherwise")
    errors: list[RecordProblem]


class CreditSummary(Response):
    records: int
    evaluated: int
    errors: int
    credited: int
    already_credited: int
    conflicts: int
    not_creditable: int
    credited_reduction_mg: int
    credited_points: int


class CreditBatchRef(Response):
    batch_id: Optional[int]
    version: str
    idempotency_key: Optional[str]
    replayed: bool
    new: int


class CreditRow(ResultRow):
    credit: Literal["credited", "already_credited", "conflict", "not_creditable"]
    credited: Optional[dict[str, Any]] = None
    conflict: Optional[dict[str, Any]] = None


class CreditResponse(Response):
    methodology: str
    summary: CreditSummary
    batches: list[CreditBatchRef]
    results: list[CreditRow]
    errors: list[RecordProblem]


# ---------------------------------------------------------------- methodologies
class Index(Response):
    version: str
    user: str
    scopes: list[str]
    endpoints: list[str]
    openapi: str


class VersionInfo(Response):
    version: str
    state: str
    effective_from: Optional[str]
    effective_until: Optional[str]
    content_hash: str


class MethodologyItem(Response):
    id: str
    title: Optional[str] = None
    versions: list[dict[str, Any]]


class MethodologyList(Response):
    items: list[dict[str, Any]]
    page: int
    per_page: int
    total: int


class MethodologySchema(Response):
    """describe() of a version (engine/schema.py): metadata, parameters, the cross-record
    rules, and `input_schema`, the JSON Schema of the methodology's records."""
    content_hash: str
    metadata: dict[str, Any]
    parameters: list[dict[str, Any]]
    input_schema: dict[str, Any]
    version: dict[str, Any]
    reason: str


# ---------------------------------------------------------------- accounts
class AccountCreate(Request):
    kind: str = Field(description="individual, unit, project or region (another kind: 422)")
    parent: Optional[Id] = Field(None, description="the id of the parent account")
    name: Optional[str] = Field(None, max_length=200, description="a display name (no personal data)")
    domains: Optional[list[str]] = None
    external_id: Optional[str] = Field(None, description="your id for this account")


class AccountChange(Request):
    status: Optional[str] = Field(None, description="active, frozen or closed")
    parent: Optional[Id] = None
    name: Optional[str] = Field(None, max_length=200)
    domains: Optional[list[str]] = None


class Identity(Response):
    external_id: str
    linked_at: Optional[str]


class AccountRef(Response):
    id: int
    kind: str
    name: str


class Account(Response):
    id: int
    kind: str
    name: str
    status: str
    domains: list[str]
    parent: Optional[AccountRef]
    children: int
    created_at: Optional[str]
    updated_at: Optional[str]
    created_by_you: bool
    identities: list[Identity]


class AccountList(Response):
    items: list[Account]
    page: int
    per_page: int
    total: int
    pages: int


class Totals(Response):
    reduction_mg: int
    reduction_kg: float
    points: int
    entries: int
    by_methodology: dict[str, Any]


class Balance(Response):
    account: int
    own: Totals
    subtree: Totals


# ---------------------------------------------------------------- ledger
class Entry(Response):
    id: int
    record_id: str
    account: str
    batch_id: Optional[int]
    methodology: str
    version: str
    content_hash: str
    status: str
    reduction_mg: int
    points: int
    bonus: int


class EntryPage(Response):
    items: list[Entry]
    limit: int
    next: Optional[int] = Field(description="the `after` of the next page (also in the Link "
                                "header, rel=next); null on the last page")


class Statement(EntryPage):
    account: int


class PeriodBalances(Response):
    account: int
    period: str
    timezone: str
    subtree: bool
    items: list[dict[str, Any]]
    totals: list[dict[str, Any]]


class RecordCredits(Response):
    record_id: str
    items: list[Entry]


class BatchDetail(Response):
    id: int
    idempotency_key: Optional[str]
    methodology: str
    version: str
    content_hash: str
    created_at: Optional[str]
    totals: dict[str, Any]
    entries: EntryPage


# ---------------------------------------------------------------- rewards
class RewardCreate(Request):
    name: str
    name_en: Optional[str] = None
    price_points: Count
    stock_per_period: Optional[Count] = None
    period: Optional[Literal["day", "week", "month", "year"]] = None
    limit_per_account_per_period: Optional[Count] = None
    timezone: Optional[str] = None
    active: Optional[StrictBool] = None


class Reward(Response):
    id: int
    name: str
    name_en: Optional[str]
    price_points: int
    stock_per_period: Optional[int]
    stock_left: Optional[int]
    period: str
    limit_per_account_per_period: Optional[int]
    timezone: str
    active: bool
    created_at: str


class RewardList(Response):
    items: list[Reward]


class RedemptionRequest(Request):
    reward: Id = Field(description="the id of a reward")
    idempotency_key: Optional[str] = Field(None, description="or the Idempotency-Key header")


class Points(Response):
    credited: int
    redeemed: int
    reversed: int
    balance: int


class Redemption(Response):
    id: int
    account: int
    reward: int
    points: int
    idempotency_key: str
    period_key: str
    created_at: str


class RedemptionResponse(Response):
    redemption: Redemption
    replayed: bool
    points: Points


class Wallet(Response):
    account: int
    points: Points
    retirable_mg: int


class ReversalRequest(Request):
    reason: str = Field(min_length=1, description="why the credit is reversed")


class ReversalResponse(Response):
    reversal: dict[str, Any]
    caps: Any = None
    counters: Any = None  # what the reversal gave back on counters and rewards
    points_balance: Optional[int] = None
    account_frozen: bool


Amount = Union[StrictInt, StrictFloat, str]  # "1.5" kg: decimal text is exact


class RetirementRequest(Request):
    """One amount, in one unit, a whole number of milligrams."""
    reduction_mg: Optional[Amount] = Field(None, description="the amount in milligrams, or:")
    g: Optional[Amount] = None
    kg: Optional[Amount] = None
    t: Optional[Amount] = None
    purpose: str
    beneficiary: str = ""


class Certificate(Response):
    digest: str
    recomputed_digest: str
    verified: bool
    algorithm: str


# ---------------------------------------------------------------- tokens
class TokenInfo(Response):
    user: str
    scopes: list[str]
    expires_at: Optional[str]


# the fields _plain() reads with orjson, and what each may be there (anything else:
# pydantic reads the body); the model's own constraints, narrowed
_PLAIN = {
    EvaluateRequest: {"methodology": _name, "records": _records, "explain": _flag,
                      "compact": _flag, "as_of": _absent},
    CreditRequest: {"methodology": _name, "records": _records, "idempotency_key": _text_or_none},
}
