"""The API evaluates batches with the batch engine (engine/batch: the C kernel over
columns) and small requests with the scalar Engine: both give the same answer, record by
record, and the same as `tanpu eval` — for every bundled methodology's sample, for records
broken in every way we could think of, and for records Hypothesis makes; through
/api/v1/evaluate and /api/v1/credits' per-record step (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.result import INVALID
from tanpu.cli import main
from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures
from tests.webui.reviewkit import METHODOLOGY
from webui import records as webrecords
from webui.api import service

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = sorted((ROOT / "methodologies").glob("*.tanpu"))
SAMPLE_ROWS = 400  # of each sample: enough for every rule to bite, seconds for all twelve


def as_test_methodology(path: Path) -> str:
    """The bundled text under the registry test's methodology id."""
    text = path.read_text(encoding="utf-8")
    first = next(line for line in text.splitlines() if line.startswith("methodology "))
    return text.replace(first.split()[1], METHODOLOGY, 1)


def broken(rows: list[dict]) -> list:
    """The sample's first rows spoiled one way each, then the rest as they are."""
    if not rows:
        return rows
    base = rows[0]
    keys = [k for k in base if k not in ("id", "account")]
    spoiled: list = [
        "not an object", 42, None, [base],
        {**base, "unknown_field": "x"},
        {k: v for k, v in base.items() if k != "id"},       # no id: row-N, numbered per group
        {**base, "time": " "},                                 # blank time
        {**base, "time": ""},
        {**base, "time": "2024-02-30T08:00"},                  # no such day
        {**base, "time": "0001-01-01T00:00"},                  # before the years a zone reaches
        {**base, "time": "9999-12-31T23:59:59"},
        {**base, "time": "2024-05-20T08:30:00Z"},
        {**base, "time": "2024-05-20T08:30:00.250+05:45"},
        {**base, "time": 1716193800},                          # a number
        {**base, "time": "  2024-05-20T08:30  "},
        {**base, "time": "1960-05-20T08:30:00.000001Z"},       # before the epoch
        {**base, "id": 12345678901234567890123},              # beyond 64 bits
        {**base, "id": "  padded  ", "account": 7},
    ]
    for k in keys:
        spoiled.append({**base, k: None})
        spoiled.append({**base, k: "   "})
        spoiled.append({**base, k: "??"})
        spoiled.append({**base, k: 3.5})
        spoiled.append({kk: v for kk, v in base.items() if kk != k})
    spoiled.append(dict(base))  # a repeated record id
    return spoiled + rows


def answer(out: service.Evaluation) -> dict:
    """evaluation_response(), checked against what the view writes (evaluation_json: from
    the batch engine's columns by Polars when every group is a batch, else the same
    dictionaries by orjson), full and compact: the same keys in the same order and the
    same values, floats to the bit (their shortest repr)."""
    if out.groups and all(g.frame is not None for g in out.groups):  # written from columns
        assert service._results_table(out, False) is not None
    for compact in (False, True):
        expected = service.evaluation_response(out, False, compact)
        written = json.loads(service.evaluation_json(out, False, compact))
        assert json.dumps(written) == json.dumps(expected)
    return service.evaluation_response(out, False)


def both_ways(monkeypatch, call, batch_used=True):
    """call() with the batch engine on every group, then with the scalar Engine only
    (checking that the batch engine did evaluate the first time: `batch_used`)."""
    used = []
    real = service._evaluate_batch

    def spy(*args, **kwargs):
        used.append(True)
        return real(*args, **kwargs)
    monkeypatch.setattr(service, "_evaluate_batch", spy)
    monkeypatch.setattr(service, "BATCH_FROM", 1)
    batch = call()
    assert batch_used is None or bool(used) == batch_used
    used.clear()
    monkeypatch.setattr(service, "BATCH_FROM", 10 ** 9)
    scalar = call()
    assert not used
    return batch, scalar


@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.stem)
def test_batch_scalar_and_tanpu_eval_agree_on_every_bundled_sample(web, monkeypatch, tmp_path, path):
    web.published("1.0.0", None, as_test_methodology(path))  # from its own `effective from`
    sample = ROOT / "methodologies" / "samples" / f"{path.stem}.csv"
    got = webrecords.from_path(sample)
    rows = got.rows[:SAMPLE_ROWS]
    records = broken(rows)
    units = dict(got.column_units)

    def evaluate(require_ids=False, batch_used=True):
        def call():
            with web.reg.db.read() as s:
                out = service.evaluate(s, METHODOLOGY, records, column_units=units,
                                       require_ids=require_ids, as_of=dt.date(2100, 1, 1))
                return (answer(out),
                        [[r.key() for r in g.results] for g in out.groups] if require_ids else None)
        return both_ways(monkeypatch, call, batch_used)

    batch, scalar = evaluate()
    assert batch == scalar
    # a record with the file reader's own key for an unreadable row: the scalar Engine
    # for the whole request (the batch engine reads that key as the file reader's)
    monkeypatch.setattr(service, "BATCH_FROM", 1)
    hostile = _evaluated(web, [{**rows[0], "__invalid__": "a hostile key"}] + rows[:3], units)
    assert all(g.frame is None for g in hostile.groups)
    assert hostile.errors[0]["reason"] == "a hostile key"
    response = batch[0]
    assert response["summary"]["evaluated"] > 0
    assert any(e["code"] == "invalid_record" for e in response["errors"])
    # the per-record step of /credits (the ledger's results: Result.key() of each), by the
    # batch engine unless history windows (which the ledger evaluates again from every input)
    engine = service.engine_of(_version(web))
    batch, scalar = evaluate(require_ids=True, batch_used=not engine.rules.histories)
    assert batch == scalar

    # and `tanpu eval` of the sample's rows (one version applies to every row)
    file = tmp_path / "rows.csv"
    file.write_text("\n".join(sample.read_text(encoding="utf-8").splitlines()[:SAMPLE_ROWS + 1]) + "\n",
                    encoding="utf-8")
    source = tmp_path / f"{path.stem}.tanpu"
    source.write_text(as_test_methodology(path), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    run = CliRunner().invoke(main, ["eval", str(source), str(file), "-o", str(out)])
    assert run.exit_code in (0, 1), run.output
    evaluated = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    alone = service.evaluation_response(_evaluated(web, rows, units), False)
    by_index = {r["index"]: r for r in alone["results"]}
    errors = {e["index"]: e for e in alone["errors"]}
    assert len(evaluated) == len(rows)
    for index, expected in enumerate(evaluated):
        if errors.get(index, {}).get("code") == "no_applicable_version":
            continue  # dated before the version's `effective from`
        if expected["status"] == INVALID:
            assert errors[index]["reason"] == expected["message"], index
            continue
        row = by_index[index]
        assert {k: row[k] for k in expected if k != "row"} == \
            {k: v for k, v in expected.items() if k != "row"}, index


def _version(web):
    from registry.models import MethodologyVersion
    with web.reg.db.read() as s:
        version = s.query(MethodologyVersion).filter_by(methodology_id=METHODOLOGY).one()
        s.expunge(version)
        return version


def _evaluated(web, rows, units):
    with web.reg.db.read() as s:
        return service.evaluate(s, METHODOLOGY, rows, column_units=units, as_of=dt.date(2100, 1, 1))


def test_two_versions_split_one_batch_the_same_way(web, monkeypatch):
    """Records before and after a new version's date: each group by its own version, by
    either engine; the response over HTTP is the same bytes apart from nothing."""
    from tests.webui.reviewkit import faster_metro, source
    web.published("1.0.0", dt.date(2024, 1, 1))
    web.published("1.1.0", dt.date(2024, 6, 1), faster_metro(source(METHODOLOGY, "1.1.0")),
                  grace_days=100_000)
    token = web.token()
    records = []
    for k in range(150):
        day = dt.date(2024, 5, 25) + dt.timedelta(days=k % 14)
        records.append({"id": f"r{k}", "account": f"a{k % 7}", "mode": ["metro", "bus", "walk"][k % 3],
                        "distance": f"{1 + k % 9} km", "boarded": f"{day}T{8 + k % 12:02d}:00",
                        "alighted": f"{day}T{8 + k % 12:02d}:{10 + k % 40:02d}"})
    records[5] = {**records[5], "distance": "3 kg"}
    records[9] = {**records[9], "boarded": "2023-12-31T23:00"}  # before any version

    def post(compact=None):
        body = {"methodology": METHODOLOGY, "records": records}
        if compact is not None:
            body["compact"] = compact
        response = web.client.post("/api/v1/evaluate", headers=web.api(token), json=body)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json(), len(response.get_data())
    (batch, _), (scalar, _) = both_ways(monkeypatch, post)
    assert batch == scalar
    assert set(batch["summary"]["versions"]) == {"1.0.0", "1.1.0"}
    assert {e["code"] for e in batch["errors"]} == {"invalid_record", "no_applicable_version"}

    # compact: the same answer with each version once, by either engine, in fewer bytes
    (full, full_size), _ = both_ways(monkeypatch, lambda: post(False))
    assert full == batch
    for (compact, size) in both_ways(monkeypatch, lambda: post(True)):
        groups = compact.pop("groups")
        assert len(groups) == 2 and {g["version"] for g in groups} == {"1.0.0", "1.1.0"}
        assert all(set(r) & {"methodology", "version", "content_hash", "applicability"} == set()
                   for r in compact["results"])
        compact["results"] = [{**{k: v for k, v in r.items() if k != "group"},
                               **groups[r["group"]]} for r in compact["results"]]
        assert compact == full
        assert size < 0.8 * full_size
    bad = web.client.post("/api/v1/evaluate", headers=web.api(token),
                          json={"methodology": METHODOLOGY, "records": records, "compact": "yes"})
    assert bad.status_code == 400 and bad.get_json()["errors"][0]["pointer"] == "/compact"


TEXT_CELLS = st.one_of(
    st.none(), st.just(""), st.just(" "), st.text(max_size=6),
    st.sampled_from(["metro", "bus", "walk", "ebus", "3 km", "12.5 km", "-1 km", "3 kg", "1e400 km",
                     "NaN km", "2024-05-20T08:30", "2024-05-20T08:00Z", "2024-05-20T23:59:59.999999+08:00",
                     "2024-05-21", "0.5 mi", "4000 m"]),
    st.integers(-5, 10 ** 6), st.floats(allow_nan=True, allow_infinity=True), st.booleans())


@st.composite
def rides(draw):
    out = []
    for k in range(draw(st.integers(0, 12))):
        minute = draw(st.integers(0, 60 * 24 * 3))
        start = dt.datetime(2024, 5, 20) + dt.timedelta(minutes=minute)
        ride = {"id": f"h{k}", "account": draw(st.sampled_from(["a", "b"])),
                "mode": draw(st.sampled_from(["metro", "bus", "ebus", "walk"])),
                "distance": f"{draw(st.integers(0, 40))} km",
                "boarded": start.isoformat(),
                "alighted": (start + dt.timedelta(minutes=draw(st.integers(1, 90)))).isoformat()}
        for name in draw(st.lists(st.sampled_from(["mode", "distance", "boarded", "alighted", "time", "id"]),
                                  max_size=2)):
            ride[name] = draw(TEXT_CELLS)
        out.append(ride)
    return out


def test_batch_and_scalar_agree_on_records_hypothesis_makes(web, monkeypatch):
    web.published("1.0.0", dt.date(2024, 1, 1))

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(records=rides(), require_ids=st.booleans())
    def check(records, require_ids):
        def call():
            with web.reg.db.read() as s:
                out = service.evaluate(s, METHODOLOGY, records, require_ids=require_ids,
                                       as_of=dt.date(2100, 1, 1))
                return (answer(out),
                        [[r.key() for r in g.results] for g in out.groups] if require_ids else None)
        batch, scalar = both_ways(monkeypatch, call, batch_used=None)
        assert batch == scalar
    check()


def test_what_is_kept_between_requests_follows_the_registry(web):
    """The versions and token grants kept between requests (service._versions,
    views._grant) are dropped as soon as the registry changes: a version published after
    a request applies to the next one; a revoked token is refused on the next one."""
    from registry import tokens
    from tests.webui.reviewkit import faster_metro, source
    web.published("1.0.0", dt.date(2024, 1, 1))
    token = web.token()
    body = {"methodology": METHODOLOGY, "records": [
        {"id": "k1", "account": "a", "mode": "metro", "distance": "10 km",
         "boarded": "2024-07-01T08:00", "alighted": "2024-07-01T08:30"}]}

    def evaluate():
        response = web.client.post("/api/v1/evaluate", headers=web.api(token), json=body)
        return response.status_code, response.get_json()
    status, first = evaluate()
    assert status == 200 and first["results"][0]["version"] == "1.0.0"
    web.published("1.1.0", dt.date(2024, 6, 1), faster_metro(source(METHODOLOGY, "1.1.0")))
    status, second = evaluate()
    assert second["results"][0]["version"] == "1.1.0"
    assert second["results"][0]["reduction_mg"] != first["results"][0]["reduction_mg"]
    with web.reg.uow() as s:
        [row] = tokens.of_user(s, web.reg.integrator)
        tokens.revoke(s, web.reg.integrator, row.id)
    assert evaluate()[0] == 401


def test_the_rate_limiter_starts_no_thread_per_request(web, monkeypatch):
    """limits' memory storage started a timer thread whenever none ran: nearly one a
    request at 200 requests/s (webui/limits.py sweeps in the request's thread instead)."""
    import threading
    web.published("1.0.0", dt.date(2024, 1, 1))
    token = web.token()
    web.client.get("/api/v1/", headers=web.api(token))
    started = []
    real = threading.Thread.start

    def start(self, *args, **kwargs):
        started.append(self.name)
        return real(self, *args, **kwargs)
    monkeypatch.setattr(threading.Thread, "start", start)
    for _ in range(20):
        assert web.client.get("/api/v1/", headers=web.api(token)).status_code == 200
        import time
        time.sleep(0.02)  # longer than the old timer's 10 ms: it would start again
    assert started == []


def test_concurrent_batches_answer_as_one_at_a_time(web):
    """The batch engine is shared by the server's threads: four clients posting batches at
    once get the answers they get one at a time."""
    import threading
    web.published("1.0.0", dt.date(2024, 1, 1))
    token = web.token()
    bodies = []
    for b in range(4):
        records = [{"id": f"c{b}-{k}", "account": f"a{k % 9}", "mode": ["metro", "ebus", "walk"][(k + b) % 3],
                    "distance": f"{1 + (k * 7 + b) % 23} km",
                    "boarded": f"2024-06-{10 + b:02d}T{6 + k % 15:02d}:{k % 60:02d}",
                    "alighted": f"2024-06-{10 + b:02d}T{6 + k % 15:02d}:{k % 60:02d}:30"}
                   for k in range(300)]
        bodies.append({"methodology": METHODOLOGY, "records": records})

    def post(body):
        response = web.app.test_client().post("/api/v1/evaluate", headers=web.api(token), json=body)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()
    alone = [post(body) for body in bodies]
    together: list = [None] * len(bodies)

    def run(i):
        together[i] = post(bodies[i])
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone
    assert all(a["summary"]["evaluated"] > 0 for a in alone)


def test_a_request_holds_one_connection_at_a_time(web):
    """/evaluate reads the token and the versions in one session (views.reading): one
    connection checked out a request. /credits reads, then writes: in the same session on
    PostgreSQL (one checkout), on SQLite in two, one after the other. Another endpoint reads the token, then its own sessions, never two at once (a
    server's threads would otherwise need twice the pool)."""
    from sqlalchemy import event
    web.published("1.0.0", dt.date(2024, 1, 1))
    token = web.token()
    engine = web.reg.db.engine
    out = {"checkouts": 0, "open": 0, "most": 0}

    def checkout(*_):
        out["checkouts"] += 1
        out["open"] += 1
        out["most"] = max(out["most"], out["open"])

    def checkin(*_):
        out["open"] -= 1
    event.listen(engine, "checkout", checkout)
    event.listen(engine, "checkin", checkin)
    ride = {"id": "p1", "account": "a", "mode": "metro", "distance": "3 km",
            "boarded": "2024-05-20T08:00", "alighted": "2024-05-20T08:20"}
    try:
        credit = 1 if web.reg.db.dialect == "postgresql" else 2
        for path, expected in (("/api/v1/evaluate", 1), ("/api/v1/credits", credit)):
            out.update(checkouts=0, most=0)
            response = web.client.post(path, headers=web.api(token),
                                       json={"methodology": METHODOLOGY, "records": [ride]})
            assert response.status_code == 200, response.get_data(as_text=True)
            assert (out["checkouts"], out["most"], out["open"]) == (expected, 1, 0), path
        out.update(checkouts=0, most=0)
        assert web.client.get("/api/v1/methodologies", headers=web.api(token)).status_code == 200
        assert out["most"] == 1 and out["open"] == 0
    finally:
        event.remove(engine, "checkout", checkout)
        event.remove(engine, "checkin", checkin)


def test_huge_reductions_in_kilograms_as_python_divides(web, monkeypatch):
    """Beyond 2**53 mg numpy's int64 -> float64 rounds before dividing: the written
    kilograms are Python's mg / 1_000_000 by either engine (evaluation_json)."""
    from tests.webui.reviewkit import source
    text = source(METHODOLOGY, "1.0.0")
    assert "between 0 km and 200 km" in text
    web.published("1.0.0", dt.date(2024, 1, 1),
                  text.replace("between 0 km and 200 km", "between 0 km and 10000000000000 km"))
    records = [{"id": f"g{k}", "account": f"a{k}", "mode": ["metro", "ebus"][k % 2],
                "distance": f"{d} km", "boarded": f"2024-06-0{1 + k % 5}T08:00",
                "alighted": f"2024-06-0{1 + k % 5}T08:30"}
               for k, d in enumerate([1, 3, 7, 123456789012, 192837465019, 10 ** 12 + 7, 3 * 10 ** 12 + 1,
                                      999999999999, 4.5, 0.001])]

    def call():
        with web.reg.db.read() as s:
            return answer(service.evaluate(s, METHODOLOGY, records, as_of=dt.date(2100, 1, 1)))
    batch, scalar = both_ways(monkeypatch, call)
    assert batch == scalar
    big = [r for r in batch["results"] if r["reduction_mg"] > 2 ** 53]
    assert big and all(r["reduction_kg"] == r["reduction_mg"] / 1_000_000 for r in big)
