"""Result.to_dict's time text (engine/result.py _iso_time, made from the integer) is
isoformat's, which it replaced: the API's answers must not change."""

from __future__ import annotations

import datetime as dt
import random

from engine.result import Result

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _isoformat(us: int) -> str:
    return (EPOCH + dt.timedelta(microseconds=us)).isoformat().replace("+00:00", "Z")


def test_the_time_text_is_isoformats():
    rng = random.Random(5)
    low = int((dt.datetime(1, 1, 1, tzinfo=dt.timezone.utc) - EPOCH).total_seconds()) * 10 ** 6
    high = int((dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc) - EPOCH).total_seconds()) * 10 ** 6
    edges = [0, 1, -1, 999_999, 1_000_000, -1_000_000, 86_400_000_000 - 1, 86_400_000_000, low, high]
    times = edges + [rng.randrange(low, high) for _ in range(20_000)] + [
        rng.randrange(low, high) // 1_000_000 * 1_000_000 for _ in range(5_000)]
    for us in times:
        assert Result("r", "a", us, "credited").to_dict()["time"] == _isoformat(us), us
    assert Result("r", "a", None, "credited").to_dict()["time"] is None
