"""The audit's ledger digest made fast (registry/audit.py ledger_digest_rows, isoformat
for the time text) against the formula it replaced, written out here: the digests of
credits already on a chain must verify as before, so the text hashed must be the same,
byte for byte."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from types import SimpleNamespace

from registry import audit


def _old_time_text(at: dt.datetime) -> str:
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.timezone.utc)
    return at.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _old_digest(entries) -> str:
    lines = "\n".join("\t".join(str(v) for v in (
        e.record_id, e.account, e.methodology_id, e.version, e.content_hash,
        _old_time_text(e.activity_time) if e.activity_time is not None else "",
        e.reduction_mg, e.points, e.bonus, e.status, e.code or "", e.message or "",
        e.reason or "", e.record if e.record is not None else "")
        + ((e.counters,) if getattr(e, "counters", "") else ()))
        for e in sorted(entries, key=lambda e: e.record_id))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def _time(rng: random.Random):
    kind = rng.randrange(6)
    if kind == 0:
        return None
    year = rng.choice([1, 999, 1000, 1969, 1970, 2024, 9999]) if kind == 1 else 2024
    at = dt.datetime(year, rng.randint(1, 12), rng.randint(1, 28), rng.randrange(24),
                     rng.randrange(60), rng.randrange(60), rng.choice([0, 1, 999_999, rng.randrange(10**6)]))
    if kind == 2:
        return at  # naive: taken as UTC
    if kind == 3 and year > 1:  # another zone, turned to UTC
        return at.replace(tzinfo=dt.timezone(dt.timedelta(hours=rng.randint(-12, 12))))
    return at.replace(tzinfo=dt.timezone.utc)


def _text(rng: random.Random) -> str:
    return "".join(rng.choice(["a", "Z", "0", " ", "é", "骑", "\u2028", "😀", '"', "\\", ";", "="])
                   for _ in range(rng.randrange(8)))


def _entries(rng: random.Random, n: int) -> list:
    return [SimpleNamespace(
        record_id=f"r{rng.randrange(10**6)}-{i}", account=_text(rng), methodology_id="m." + _text(rng),
        version=rng.choice(["1.0.0", "2.1.3"]), content_hash=hashlib.sha256(bytes([i % 256])).hexdigest(),
        activity_time=_time(rng), reduction_mg=rng.choice([0, 1, -5, 10**15, rng.randrange(10**9)]),
        points=rng.randrange(10**6), bonus=rng.choice([0, 3]), status=rng.choice(["credited", "capped"]),
        code=rng.choice(["", None, "CAP_REACHED"]), message=rng.choice(["", None, _text(rng)]),
        reason=rng.choice(["", None, "in force"]), record=rng.choice([None, "", '{"id":"x","k":"骑"}']),
        counters=rng.choice(["", None, "rides=1;voucher=0"])) for i in range(n)]


def test_the_digest_is_the_one_of_the_formula_it_replaced():
    rng = random.Random(13)
    for n in [0, 1, 2, 7, 300]:
        for _ in range(20 if n < 300 else 3):
            entries = _entries(rng, n)
            expected = _old_digest(entries)
            assert audit.ledger_digest(entries) == expected
            rows = [(e.record_id, e.account, e.methodology_id, e.version, e.content_hash,
                     e.activity_time, e.reduction_mg, e.points, e.bonus, e.status, e.code,
                     e.message, e.reason, e.record, e.counters) for e in entries]
            rng.shuffle(rows)  # sorted by record id inside
            assert audit.ledger_digest_rows(rows) == expected


def test_an_entry_without_counters_is_digested_as_before_the_column():
    entry = _entries(random.Random(1), 1)[0]
    entry.counters = ""
    without = SimpleNamespace(**{k: v for k, v in vars(entry).items() if k != "counters"})
    assert audit.ledger_digest([entry]) == audit.ledger_digest([without]) == _old_digest([without])
    entry.counters = "rides=1"
    assert audit.ledger_digest([entry]) != audit.ledger_digest([without])
