"""The IR as canonical JSON, and the content hash derived from it.

The hash is what the registry binds committee votes to, so it covers everything that
changes what the methodology says or computes (metadata, parameters with sources, every
formula, rule and example) and nothing that does not: comments, spacing and line numbers
are left out, so reformatting a file keeps its hash.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from enum import Enum

from ..types import Type
from ..units import Unit
from .ast import Methodology

_POSITIONAL = {"line"}
# fields the language gained after versions were approved and their hashes stored: left
# out while empty, so a methodology that does not use them keeps the hash it was voted on
_ADDED_LATER = {"groups", "near_duplicates", "checks", "counters", "counter_caps", "rewards",
                "regions"}


def to_data(value, *, positions: bool = True):
    if isinstance(value, Type):
        return value.to_json()
    if isinstance(value, Unit):
        return value.text
    if dataclasses.is_dataclass(value):
        out = {"node": type(value).__name__}
        for f in dataclasses.fields(value):
            if not positions and f.name in _POSITIONAL:
                continue
            if f.name in _ADDED_LATER and getattr(value, f.name) == ():
                continue
            out[f.name] = to_data(getattr(value, f.name), positions=positions)
        return out
    if isinstance(value, (list, tuple)):
        return [to_data(v, positions=positions) for v in value]
    if isinstance(value, dict):
        return {str(k): to_data(v, positions=positions) for k, v in value.items()}
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float):
        return {"float": value.hex()} if value != value or value in (float("inf"), float("-inf")) else value
    return value


def to_json(methodology: Methodology, *, indent: int | None = 2) -> str:
    return json.dumps(to_data(methodology), ensure_ascii=False, indent=indent, sort_keys=True)


def content_hash(methodology: Methodology) -> str:
    """sha256 of the canonical JSON, without source positions."""
    canonical = json.dumps(to_data(methodology, positions=False), ensure_ascii=False,
                           sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
