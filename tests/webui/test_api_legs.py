"""A record with legs through the API (the Beijing MaaS methodology): credited with the
reduction the engine computes, one request or one record a request alike, a bad leg
refused with its field, and the record schema describing the legs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import sqlalchemy as sa

from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures
from tests.webui.reviewkit import METHODOLOGY

ROOT = Path(__file__).resolve().parents[2]
MAAS = METHODOLOGY  # the registry's test methodology, with the Beijing text
TEXT = (ROOT / "methodologies" / "beijing-maas-green-trip.tanpu").read_text(encoding="utf-8").replace(
    "methodology cn.beijing.maas-green-trip ", f"methodology {MAAS} ", 1)


def trip(record_id, hour, legs, account="rider-1"):
    return {"id": record_id, "account": account, "trip_id": record_id,
            "started": f"2024-06-20T{hour:02d}:00", "ended": f"2024-06-20T{hour:02d}:45", "legs": legs}


def post(web, token, records, errors=None):
    response = web.app.test_client().post("/api/v1/credits", headers=web.api(token),
                                          json={"methodology": MAAS, "records": records})
    assert response.status_code == 200, response.get_data(as_text=True)
    if errors is not None:
        errors.extend(response.get_json()["errors"])
    return response.get_json()["results"]


def test_a_trip_of_legs_is_credited_through_the_api(web):
    web.published("1.0.0", dt.date(2024, 1, 1), TEXT, methodology_id=MAAS)
    token = web.token()
    chain = [{"mode": "walk", "distance": "0.8 km"}, {"mode": "metro", "distance": "12.4 km"},
             {"mode": "bike", "distance": {"value": 1.5, "unit": "km"}}]
    errors: list = []
    results = post(web, token, [trip("t1", 8, chain),
                                trip("t2", 9, [{"mode": "taxi", "distance": "3 km"}]),
                                trip("t3", 18, [{"mode": "bus", "distance": "8 km"}])], errors)
    assert [(r["id"], r["status"], r["reduction_mg"]) for r in results] == [
        ("t1", "credited", 3_234_818), ("t3", "credited", 1_630_909)]
    [error] = errors
    assert (error["id"], error["index"]) == ("t2", 1)
    assert "legs[0].mode: `taxi` is not one of walk, bike, bus, metro" in str(error), error
    # one record a request, with the state carried: the same (bus 8 km = 2.174545 - 0.543636 kg)
    again = [post(web, token, [trip(f"b{k}", 8 + k, [{"mode": "bus", "distance": "8 km"}],
                                    account="rider-2")])[0] for k in range(3)]
    assert [r["reduction_mg"] for r in again] == [1_630_909] * 3
    with web.reg.db.engine.connect() as c:
        total = c.execute(sa.text("SELECT SUM(reduction_mg) FROM credit_entries")).scalar_one()
    assert total == 3_234_818 + 1_630_909 + 3 * 1_630_909
    schema = web.app.test_client().get(f"/api/v1/methodologies/{MAAS}/schema", headers=web.api(token))
    assert schema.status_code == 200, schema.get_data(as_text=True)
    legs = schema.get_json()["input_schema"]["properties"]["legs"]  # what integrators build forms from
    assert (legs["type"], legs["maxItems"], legs["items"]["required"]) == ("array", 8, ["mode", "distance"])
