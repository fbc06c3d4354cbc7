"""A credit's answer rows are made for a scalar group in one dict display each
(webui/api/service.py _judged_rows, fast) where the general way made each by result_rows
(to_dict, pops, a copy) and then updated the ones the ledger's rules judged field by
field. The answer must not change by a byte: over generated credits (several accounts,
caps reached, overlaps, ids sent again, ids sent again with other values, invalid
records, two versions in one request) every credit's rows are made both ways and their
JSON compared (key order included), and the answers' bodies of two ledgers fed the same
requests, one answered the general way, are compared with their times taken out."""

from __future__ import annotations

import datetime as dt
import json
import random

import orjson
import pytest

from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures
from tests.webui.reviewkit import METHODOLOGY, source
from tests.webui.test_api_state import capped, reg, ride  # noqa: F401 - fixtures
from webui.api import service


def _requests(rng: random.Random, n: int) -> list[list[dict]]:
    """n requests of rides: accounts shared between requests, a ride sent again (as it
    was, or with another distance: a conflict), overlapping rides, an invalid one, days
    that reach the daily cap."""
    sent: list[dict] = []
    requests = []
    for k in range(n):
        records = []
        for i in range(rng.randrange(1, 25)):
            roll = rng.random()
            if sent and roll < 0.1:
                records.append(dict(rng.choice(sent)))
            elif sent and roll < 0.15:
                again = dict(rng.choice(sent))
                again["distance"] = f"{rng.randrange(1, 30)} km"
                records.append(again)
            elif roll < 0.18:
                records.append({"id": f"bad{k}-{i}", "account": "acct-1", "mode": "metro",
                                "distance": "lots", "boarded": "never"})
            else:
                day = rng.choice(["2024-06-20", "2024-06-21", "2024-08-20"])
                records.append(ride(f"q{k}-{i}", rng.randrange(0, 600), km=rng.randrange(1, 30),
                                    account=f"acct-{rng.randrange(4)}", day=day))
        seen = set()
        records = [r for r in records if not (r["id"] in seen or seen.add(r["id"]))]
        sent.extend(r for r in records if not r["id"].startswith("bad"))
        requests.append(records)
    return requests


def _compare_both_ways(monkeypatch) -> list[int]:
    """service._judged_rows made both ways on every credit, the JSON compared."""
    made = service._judged_rows
    calls = []

    def both(result, judged, fast=True):
        fast_rows = made(result, judged)
        general = made(result, judged, fast=False)
        assert orjson.dumps(fast_rows) == orjson.dumps(general)
        assert json.dumps(fast_rows) == json.dumps(general)  # floats as json writes them too
        calls.append((len(fast_rows), len(result.groups)))
        return fast_rows

    monkeypatch.setattr(service, "_judged_rows", both)
    return calls


def _post(web, token, records):
    response = web.app.test_client().post("/api/v1/credits", headers=web.api(token), json={
        "methodology": METHODOLOGY, "records": records})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data()


def test_a_credits_rows_are_the_same_made_either_way(capped, monkeypatch):
    web, token = capped
    # a second version from August: requests with rides of both versions (two groups)
    web.published("1.1.0", dt.date(2024, 8, 1), source(METHODOLOGY, "1.1.0")
                  + "\ncap reduction at 2 kg per account per day\n",
                  grace_days=5000)  # June's rides still credited by 1.0.0
    calls = _compare_both_ways(monkeypatch)
    rng = random.Random(13)
    for records in _requests(rng, 25):
        _post(web, token, records)
    assert len(calls) == 25 and sum(n for n, _ in calls) > 50
    assert any(groups == 2 for _, groups in calls)


def _without_times(body: bytes):
    data = json.loads(body)
    for batch in data["batches"]:
        batch.pop("batch_id", None)
    for row in data["results"]:
        if "credited" in row:
            row["credited"].pop("credited_at", None)
            row["credited"].pop("batch_id", None)
    return data


@pytest.mark.parametrize("seed", [5])
def test_the_answers_are_the_same_as_the_general_ways(capped, monkeypatch, seed):
    """The same requests credited twice over, the general way on a copy of the ledger's
    start: the same answers but for the batches' ids and the times of credit."""
    web, token = capped
    requests = _requests(random.Random(seed), 12)
    fast = [_post(web, token, records) for records in requests]
    # the same requests again: every record now already credited, its earlier credit given
    again_fast = [_post(web, token, records) for records in requests]
    made = service._judged_rows
    monkeypatch.setattr(service, "_judged_rows", lambda result, judged: made(result, judged, fast=False))
    again_general = [_post(web, token, records) for records in requests]
    assert [_without_times(b) for b in again_fast] == [_without_times(b) for b in again_general]
    assert all(b"credited" in body for body in fast)


