"""A request body read by orjson (models._plain, for plain requests) or by pydantic
(model_validate_json, every other one) is the same request: the same fields, the same
records value for value and type for type, and a body orjson would read otherwise (an
integer beyond 64 bits, a nesting deeper than pydantic allows, a date to check) is left
to pydantic, which answers it as before."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webui.api import models
from webui.api.service import ApiError

MODELS = (models.EvaluateRequest, models.CreditRequest)


def typed(value):
    """A value with every scalar's type beside it (True is not 1, 1.0 is not 1)."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    return (type(value).__name__, repr(value))


def by_pydantic(model, raw: bytes):
    try:
        return typed(model.model_validate_json(raw).model_dump())
    except Exception as error:  # noqa: BLE001 - compared, not hidden
        return type(error).__name__


def by_parse(model, raw: bytes, orjson: bool = True):
    """models.parse()'s request or problem; orjson=False: as before _plain (pydantic only)."""
    kept = models._PLAIN
    if not orjson:
        models._PLAIN = {}
    try:
        return typed(models.parse(model, raw).model_dump())
    except ApiError as error:
        return ("ApiError", error.status, error.message, error.errors)
    finally:
        models._PLAIN = kept


SCALARS = st.one_of(
    st.none(), st.booleans(), st.text(max_size=8),
    st.integers(-2 ** 70, 2 ** 70), st.integers(-10, 10),
    st.floats(allow_nan=False, allow_infinity=False), st.floats(-1e3, 1e3))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=6)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(model=st.sampled_from(MODELS),
       records=st.one_of(
           # plain records (orjson reads them), and records of any JSON values
           st.lists(st.dictionaries(st.sampled_from(["id", "account", "distance", "t"]), SCALARS,
                                    max_size=4), max_size=4),
           st.lists(st.one_of(st.dictionaries(st.text(max_size=3), VALUES, max_size=3), VALUES),
                    max_size=4)),
       methodology=st.one_of(st.text(min_size=1, max_size=3), st.text(max_size=3),
                             st.just("x" * 200), st.just("x" * 201), st.integers(0, 3)),
       extra=st.dictionaries(st.sampled_from(["explain", "compact", "as_of", "idempotency_key",
                                               "other"]),
                             st.one_of(st.booleans(), st.none(), st.just("2024-05-20"),
                                       st.integers(0, 1), st.text(max_size=3)), max_size=2),
       number_text=st.sampled_from(["", "", "", "", "", "1e400", "12345678901234567890123", "-9223372036854775809",
                                    "18446744073709551615", "1.0000000000000001e-300",
                                    "0.1", "-0.0", "2.5e-324", "9.007199254740993e15",
                                    "123456789.12345678901234567890"]))
def test_orjson_and_pydantic_read_the_same_request(model, records, methodology, extra, number_text):
    body = {"methodology": methodology, "records": records, **extra}
    raw = json.dumps(body, ensure_ascii=False).encode("utf-8")
    if number_text:  # a number as written by hand, which json.dumps would not write
        raw = raw.replace(b'"records": [', b'"records": [{"n": ' + number_text.encode() + b"}, ", 1)
    assert by_parse(model, raw) == by_parse(model, raw, orjson=False)
    plain = models._plain(model, raw)
    if plain is not None:
        assert typed(plain.model_dump()) == by_pydantic(model, raw)


@pytest.mark.parametrize("raw", [
    b'{"methodology": "m", "records": [{"id": 12345678901234567890123}]}',  # a float to orjson
    b'{"methodology": "m", "records": [{"id": -9223372036854775809}]}',
    b'{"methodology": "m", "records": [' + b"[" * 300 + b"]" * 300 + b"]}",  # too deep for pydantic
    b'{"methodology": "m", "records": [{"a": {"b": 1}}]}',
    b'{"methodology": "m", "records": [], "as_of": "2024-05-20"}',
    b'{"methodology": "m", "records": [], "explain": 1}',
    b'{"methodology": "", "records": []}',
    b'{"methodology": "m", "records": [], "other": 1}',
    b'{"methodology": "m", "records": [1e400]}',
    b'{"methodology": "m", "records": ["not an object"]}',
])
def test_what_orjson_would_read_otherwise_is_pydantics(raw):
    assert models._plain(models.EvaluateRequest, raw) is None
    after = by_parse(models.EvaluateRequest, raw)
    assert after == by_parse(models.EvaluateRequest, raw, orjson=False)
    if b"123456789012345678901" in raw:
        assert after["records"][0]["id"] == ("int", "12345678901234567890123")


def test_a_plain_request_is_read_by_orjson():
    raw = json.dumps({"methodology": "m", "compact": True, "explain": False, "as_of": None,
                      "records": [{"id": "r1", "account": 7, "distance": 8.5, "ok": True,
                                   "time": None}]}).encode()
    plain = models._plain(models.EvaluateRequest, raw)
    assert plain is not None and plain.compact is True
    assert typed(plain.model_dump()) == by_pydantic(models.EvaluateRequest, raw)
