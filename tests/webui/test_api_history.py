"""A methodology with a history window credited through the ledger (issue 12): the
windows are part of the account state the ledger stores (`rule_states`), so records
credited one request at a time get what they get credited all at once, and what the
engine gives for the whole stream (Flask test client, SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from dsl import compile_source
from engine.evaluate import Engine
from registry import verify, workflow
from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures

HISTORY = "t.history-ledger"

SOURCE = f"""
methodology {HISTORY} "历史窗口 A history window" version 1.0.0 {{
  covers electricity
  effective from 2024-01-01
  timezone Asia/Shanghai
}}
input used: quantity [kWh] at least 0 kWh
# the account's mean daily reading over the 3 days before, as its baseline
history usual = mean used over the previous 3 days
  otherwise reject SHORT_HISTORY "fewer than 3 days of readings"
reduction = max(usual - used, 0 kWh) * 500 g/kWh
points = round(reduction / 1 g)
cap reduction at 2 kg per account per day
example "a saving day" {{
  {{ used: 10 kWh, time: 2024-03-01T20:00 }} => rejected SHORT_HISTORY
  {{ used: 10 kWh, time: 2024-03-02T20:00 }} => rejected SHORT_HISTORY
  {{ used: 10 kWh, time: 2024-03-03T20:00 }} => rejected SHORT_HISTORY
  {{ used: 8 kWh, time: 2024-03-04T20:00 }} => reduction 1 kg
}}
"""

# the same window over a definition (docs/language.md §9.6, "Over a definition"): the
# reading less the fridge's 0.4 kWh a day, which the household cannot save
DEFINED = SOURCE.replace("history usual = mean used over", "history usual = mean savable over").replace(
    "reduction = max(usual - used", "let savable [kWh] = used - 0.4 kWh\nreduction = max(usual - savable")


def readings(account: str, prefix: str) -> list[dict]:
    """Twelve days of readings, two on some days, one day missing, some around midnight
    in Shanghai."""
    out = []
    for day in range(1, 13):
        if day == 6:
            continue
        hours = ["T20:00+08:00"] + (["T23:50+08:00"] if day % 3 == 0 else [])
        for k, hour in enumerate(hours):
            out.append({"id": f"{prefix}-{day}-{k}", "account": account,
                        "time": f"2024-03-{day:02d}{hour}", "used": f"{(day * 7) % 11 + 2} kWh"})
    return out


def publish(web, source: str = SOURCE):
    with web.reg.uow() as s:
        workflow.create_methodology(s, web.reg.author, id=HISTORY, title=HISTORY, domain="transport")
    web.published("1.0.0", dt.date(2024, 1, 1), source, methodology_id=HISTORY)


def post(web, token, records):
    response = web.app.test_client().post("/api/v1/credits", headers=web.api(token), json={
        "methodology": HISTORY, "records": records})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["results"]


def _outcome(row) -> tuple:
    return (row["status"], row["code"], row["reduction_mg"], row["points"])


@pytest.mark.parametrize("source", [SOURCE, DEFINED], ids=["input", "definition"])
def test_one_by_one_through_the_ledger_is_all_at_once(web, source):
    publish(web, source)
    token = web.token()
    one = readings("acct-one", "o")
    whole = readings("acct-whole", "w")
    singly = [post(web, token, [record])[0] for record in one]
    at_once = {row["id"]: row for row in post(web, token, whole)}
    together = [at_once[record["id"]] for record in whole]
    assert [_outcome(r) for r in singly] == [_outcome(r) for r in together]
    # and what the engine gives for the stream evaluated whole
    engine = Engine(compile_source(source).methodology)
    expected = [(r.status, r.code, r.reduction_mg, r.points) for r in engine.evaluate(whole)]
    assert [_outcome(r) for r in together] == expected
    statuses = {r[0] for r in expected}
    assert {"rejected", "credited"} <= statuses  # the short history, then credits
    assert sum(r[2] for r in expected) > 0
    # the two accounts' stored windows hold the same readings
    with web.reg.db.engine.connect() as c:
        states = c.execute(sa.text("SELECT state FROM rule_states WHERE methodology_id = :m"),
                           {"m": HISTORY}).scalars().all()
    assert len(states) == 2
    cleaned = [s.replace('"o-', '"x-').replace('"w-', '"x-') for s in states]
    assert cleaned[0] == cleaned[1] and '"entries"' in cleaned[0]
    # the verifier says it cannot replay these credits, rather than a false difference
    with web.reg.db.read() as s:
        report = verify.verify(s)
    assert report.ok, str(report)
    assert report.unverifiable > 0


def test_a_second_request_continues_the_window(web):
    """Three days in one request, the fourth in another: the fourth is judged against
    the three stored, not rejected as short."""
    publish(web)
    token = web.token()
    first = [{"id": f"d{d}", "account": "acct", "time": f"2024-03-0{d}T20:00+08:00", "used": "10 kWh"}
             for d in (1, 2, 3)]
    assert [r["code"] for r in post(web, token, first)] == ["SHORT_HISTORY"] * 3
    fourth = post(web, token, [{"id": "d4", "account": "acct", "time": "2024-03-04T20:00+08:00",
                                "used": "8 kWh"}])
    assert _outcome(fourth[0]) == ("credited", "", 1_000_000, 1000)


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
