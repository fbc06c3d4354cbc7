"""Idempotency keys of the API's state-changing operations that have none of their own
(creating an account, retiring grams): the first answer is stored with the key, in the
transaction of the change, and a retry with the same key gets it again.

    with db.unit_of_work() as s:
        found = idempotency.replay(s, user_id, "retire", key, body_digest)
        if found: return found                    # (status, JSON text): nothing is written
        ... the change ...
        idempotency.remember(s, user_id, "retire", key, body_digest, 201, answer_text)

The same key with another body is a Conflict. Two concurrent requests with one key: the
unique constraint lets one transaction commit; the other fails whole (nothing written)
and its retry replays the first's answer. Credits and redemptions keep their own keys
(registry/ledger.py, registry/rewards.py).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Optional

from sqlalchemy import select
from sqlalchemy.orm import Session

from .errors import Conflict, Invalid
from .models import ApiIdempotency, utcnow

MAX_KEY = 150


def digest(body: Any) -> str:
    """The request's fingerprint: sha256 of its canonical JSON."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_key(key: str) -> str:
    if not isinstance(key, str) or not (1 <= len(key) <= MAX_KEY) or key != key.strip() \
            or any(ord(c) < 32 for c in key):
        raise Invalid(f"an idempotency key has 1 to {MAX_KEY} printable characters")
    return key


def replay(session: Session, user_id: int, operation: str, key: str,
           request_digest: str) -> Optional[tuple[int, str]]:
    """The stored answer (status, JSON text) of this key, or None when it is new."""
    row = session.scalar(select(ApiIdempotency).where(
        ApiIdempotency.user_id == user_id, ApiIdempotency.operation == operation,
        ApiIdempotency.key == check_key(key)))
    if row is None:
        return None
    if row.request_digest != request_digest:
        raise Conflict(f"the idempotency key {key!r} was used for another {operation} request")
    return row.status, row.response


def remember(session: Session, user_id: int, operation: str, key: str, request_digest: str,
             status: int, response: str) -> None:
    session.add(ApiIdempotency(user_id=user_id, operation=operation, key=check_key(key),
                               request_digest=request_digest, status=status,
                               response=response, created_at=utcnow()))
    session.flush()
