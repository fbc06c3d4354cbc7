"""Issue 13 as an integrator meets it: the cross-record rules hold across requests, the
ledger keeps each account's state (caps, overlaps), concurrent clients never exceed a
cap, integrators are isolated from each other, a record from the future is refused, and
a record id sent again with other values is a conflict that names the fields (Flask test
client, SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json
import random
import threading

import pytest
import sqlalchemy as sa

from dsl import compile_source
from engine.batch import BatchEngine
from registry import accounts, ledger, users, verify
from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures
from tests.webui.reviewkit import METHODOLOGY, reg_built_for, source

CAP_MG = 1_000_000  # 1 kg a day
KM_MG = 46_700      # a metro kilometre


def capped_source() -> str:
    return source(METHODOLOGY, "1.0.0") + "\ncap reduction at 1 kg per account per day\n"


def _publish_capped(web) -> None:
    web.published("1.0.0", dt.date(2024, 1, 1), capped_source())


# The capped version is published once per session and backend (reviewkit.reg_built_for);
# each test of `capped` gets a copy of that database.
reg = reg_built_for("capped", "webui-capped", _publish_capped)


@pytest.fixture
def capped(web):
    with web.reg.db.engine.connect() as c:
        published = c.execute(sa.text(
            "SELECT COUNT(*) FROM methodology_versions WHERE methodology_id = :m "
            "AND version = '1.0.0' AND state = 'published'"), {"m": METHODOLOGY}).scalar_one()
    if not published:  # a module that took `capped` without this module's `reg`: as before
        _publish_capped(web)
    return web, web.token()


@pytest.fixture(autouse=True)
def _the_ledger_verifies(reg):
    """After every test here, on the database it built: every balance and every credit
    recomputed from the entries, the stored states replayed, the audit chain checked
    (registry/verify.py, `tanpu ledger verify`)."""
    yield
    with reg.db.read() as s:
        report = verify.verify(s)
    assert report.ok, str(report)


def ride(record_id, minute, km=10, account="acct-1", day="2024-06-20", mode="metro"):
    start = dt.datetime.fromisoformat(f"{day}T06:00") + dt.timedelta(minutes=minute)
    return {"id": record_id, "account": account, "mode": mode, "distance": f"{km} km",
            "boarded": start.isoformat(timespec="minutes"),
            "alighted": (start + dt.timedelta(minutes=30)).isoformat(timespec="minutes")}


def post(web, token, records, **extra):
    response = web.app.test_client().post("/api/v1/credits", headers=web.api(token), json={
        "methodology": METHODOLOGY, "records": records, **extra})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def credited_mg(web) -> int:
    with web.reg.db.engine.connect() as c:
        return c.execute(sa.text("SELECT COALESCE(SUM(reduction_mg), 0) FROM credit_entries")).scalar_one()


def platform_of(web, integrator: int) -> dict:
    """The platform account id (as entries hold it) -> the integrator's own account id."""
    with web.reg.db.engine.connect() as c:
        rows = c.execute(sa.text("SELECT account_id, external_id FROM account_identities "
                                 "WHERE integrator_id = :i"), {"i": integrator}).all()
    return {str(account_id): external for account_id, external in rows}


def test_a_daily_cap_holds_one_ride_a_request(capped):
    web, token = capped
    rides = [ride(f"r{i}", 60 * i) for i in range(5)]  # 467 g each; 1 kg a day
    answers = [post(web, token, [r]) for r in rides]
    assert [a["results"][0]["reduction_mg"] for a in answers] == [467_000, 467_000, 66_000, 0, 0]
    assert [a["results"][0]["status"] for a in answers] == ["credited", "credited", "capped",
                                                            "capped", "capped"]
    assert answers[2]["results"][0]["code"] == "CAP_REACHED"
    assert credited_mg(web) == CAP_MG


def test_one_request_and_one_ride_a_request_give_the_same_ledger(capped, reg):
    web, token = capped
    rides = [ride(f"r{i}", 45 * i, km=3 + i, account=f"acct-{i % 2}") for i in range(8)]
    post(web, token, rides)
    whole = _entries(web)
    other = web.token(_second_integrator(reg))  # its own record ids: the same rides again
    for r in rides:
        post(web, other, [{**r, "account": r["account"] + "-b"}])
    one_by_one = {(record_id, account[:-2]): rest for (record_id, account), rest in
                  _entries(web, integrator=_second_integrator(reg)).items()}
    assert one_by_one == whole


def test_overlapping_rides_in_two_requests_credit_the_first_only(capped):
    web, token = capped
    post(web, token, [ride("a", 0, km=2)])
    second = post(web, token, [ride("b", 10, km=2)])["results"][0]
    assert (second["status"], second["code"], second["credit"]) == ("rejected", "OVERLAP", "not_creditable")
    assert credited_mg(web) == 2 * KM_MG


def concurrent_rides(prefix: str, seed: int, clients: int = 16, per_client: int = 5,
                     accounts: int = 4) -> list[list[dict]]:
    """One list of rides per client: the same few accounts and days for all of them, so
    that the clients race for the same caps."""
    rng = random.Random(seed)
    jobs = []
    for c in range(clients):
        batch = []
        for k in range(per_client):
            n = c * per_client + k
            batch.append(ride(f"{prefix}{n}", n * 35 // accounts * accounts + n % accounts,
                              km=rng.randint(1, 15), account=f"acct-{n % accounts}"))
        jobs.append(batch)
    return jobs


def send_all_at_once(jobs: list[list[dict]], send) -> None:
    """send(batch) for every batch in its own thread, released together; what any of
    them raised fails the test."""
    barrier = threading.Barrier(len(jobs))
    errors: list = []

    def run(batch):
        try:
            barrier.wait()
            send(batch)
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=run, args=(batch,)) for batch in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []


def assert_each_ride_once_and_caps_held(web, jobs: list[list[dict]]) -> None:
    """Every ride sent is one entry, and per account and local day (Shanghai's) exactly
    what the cap lets through was credited, never more."""
    assert web.reg.count("credit_entries") == sum(map(len, jobs))
    sent: dict = {}
    for batch in jobs:
        for r in batch:
            key = (r["account"], r["boarded"][:10])
            sent[key] = sent.get(key, 0) + int(r["distance"].split()[0]) * KM_MG
    with web.reg.db.engine.connect() as c:
        rows = c.execute(sa.text("SELECT account, activity_time, reduction_mg FROM credit_entries")).all()
    named = platform_of(web, web.reg.integrator)
    got: dict = {}
    for account, when, mg in rows:
        when = dt.datetime.fromisoformat(when) if isinstance(when, str) else when  # SQLite: text
        local = (when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)) + dt.timedelta(hours=8)
        key = (named[account], local.date().isoformat())
        got[key] = got.get(key, 0) + mg
    assert got == {key: min(CAP_MG, total) for key, total in sent.items()}
    assert any(total > CAP_MG for total in sent.values())  # the cap was reached


def test_sixteen_concurrent_clients_never_exceed_a_cap(capped):
    web, token = capped
    jobs = concurrent_rides("c", seed=13)

    def send(batch):
        post(web, token, batch)
        post(web, token, batch)  # a retry after a timeout: nothing twice

    send_all_at_once(jobs, send)
    assert_each_ride_once_and_caps_held(web, jobs)


def _second_integrator(reg) -> int:
    with reg.uow() as s:
        found = users.find_user(s, "bikes@tanpu.test") if hasattr(users, "find_user") else None
        if found is not None:
            return found.id
        existing = s.execute(sa.text("SELECT id FROM users WHERE email = 'bikes@tanpu.test'")).scalar()
        if existing is not None:
            return existing
        return users.create_user(s, None, email="bikes@tanpu.test", name="bikes",
                                 roles=("integrator",)).id


def _entries(web, integrator=None) -> dict:
    """(record id, the integrator's account id) -> (status, mg, points, code) of its entries."""
    integrator = integrator or web.reg.integrator
    named = platform_of(web, integrator)
    with web.reg.db.engine.connect() as c:
        rows = c.execute(sa.text("SELECT record_id, account, status, reduction_mg, points, code "
                                 "FROM credit_entries WHERE integrator_id = :i"), {"i": integrator}).all()
    return {(r[0], named[r[1]]): tuple(r[2:]) for r in rows}


def test_integrators_have_their_own_record_ids_and_keys(capped, reg):
    web, token = capped
    bikes = web.token(_second_integrator(reg))
    mine = post(web, token, [ride("ride-42", 0, account="p1")], idempotency_key="k-1")
    theirs = post(web, bikes, [ride("ride-42", 0, account="b7")], idempotency_key="k-1")
    assert mine["results"][0]["credit"] == "credited"
    assert theirs["results"][0]["credit"] == "credited"  # not the other's record, not a replay
    assert theirs["batches"][0]["replayed"] is False
    again = post(web, bikes, [ride("ride-42", 0, account="b7")])["results"][0]
    assert again["credit"] == "already_credited" and again["credited"]["account"] == "b7"
    assert web.reg.count("credit_entries") == 2


def test_a_record_from_the_future_is_refused_with_its_own_code(capped):
    web, token = capped
    # two days on: the ride is at 06:00 in the methodology's zone (UTC+8), so "tomorrow"
    # by UTC's date was already past between 22:00 and 24:00 UTC
    later = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)).date().isoformat()
    body = post(web, token, [ride("late", 0), ride("soon", 0, day=later)])
    assert [e["code"] for e in body["errors"]] == ["future_record"]
    assert body["errors"][0]["id"] == "soon" and "after now" in body["errors"][0]["reason"]
    assert [r["id"] for r in body["results"]] == ["late"]


def test_the_same_record_id_with_other_values_is_a_conflict_naming_the_fields(capped):
    web, token = capped
    post(web, token, [ride("r1", 0, km=10)])
    body = post(web, token, [ride("r1", 0, km=12)])
    row = body["results"][0]
    assert row["credit"] == "conflict" and row["conflict"]["fields"] == ["distance"]
    assert body["summary"]["conflicts"] == 1 and body["summary"]["already_credited"] == 0
    assert row["credited"]["reduction_mg"] == 467_000  # what was credited stands
    same = post(web, token, [ride("r1", 0, km=10)])["results"][0]
    assert same["credit"] == "already_credited"


def test_the_ledger_after_random_batches_is_the_batch_engine_on_the_whole_stream(capped, reg):
    """The differential property of issue 13: one stream, credited in batches of random
    sizes in arrival order, gives the entries the batch engine gives the whole stream."""
    web, token = capped
    rng = random.Random(2026)
    stream = []
    for n in range(60):
        account = f"acct-{rng.randrange(3)}"
        stream.append(ride(f"s{n}", n * 20 + rng.randrange(25), km=rng.randint(1, 20),
                           account=account, mode=rng.choice(["metro", "ebus", "metro"])))
    stream.sort(key=lambda r: r["boarded"])
    at = 0
    while at < len(stream):
        size = rng.randint(1, 9)
        post(web, token, stream[at:at + size])
        at += size
    methodology = compile_source(capped_source(), "capped.tanpu").methodology
    expected = {}
    for r in BatchEngine(methodology).evaluate(stream):
        if r.status in ("credited", "capped"):
            expected[(r.id, r.account)] = (r.status, r.reduction_mg, r.points,
                                           r.code if r.status == "capped" else "")
    assert _entries(web) == expected
    with web.reg.db.read() as s:
        platform = accounts.resolve(s, reg.integrator, "acct-0", create=False)
        assert ledger.balance(s, str(platform.id))["reduction_mg"] == sum(
            mg for (_, account), (_, mg, _, _) in expected.items() if account == "acct-0")


def test_one_ride_reported_by_two_integrators_for_one_person_is_credited_once(capped, reg):
    """A bus operator and a city app both report the same ride of one person: the app
    links its account id to the person's platform account, and the overlap rule on that
    account credits the ride once."""
    web, token = capped
    app = _second_integrator(reg)
    first = post(web, token, [ride("bus-1", 0, km=4, account="p-42")])["results"][0]
    assert first["credit"] == "credited"
    with reg.uow() as s:
        person = accounts.resolve(s, reg.integrator, "p-42", create=False)
        accounts.link(s, reg.admin, app, "citizen-9", person.id)
    second = post(web, web.token(app), [ride("app-7", 0, km=4, account="citizen-9")])["results"][0]
    assert (second["status"], second["code"], second["credit"]) == ("rejected", "OVERLAP", "not_creditable")
    with reg.db.read() as s:
        assert accounts.balances(s, person.id).own.reduction_mg == 4 * KM_MG


def test_a_frozen_account_receives_nothing(capped, reg):
    web, token = capped
    post(web, token, [ride("r1", 0, km=1, account="p-1")])
    with reg.uow() as s:
        person = accounts.resolve(s, reg.integrator, "p-1", create=False)
        accounts.update_status(s, reg.admin, person.id, "frozen")
    row = post(web, token, [ride("r2", 60, km=1, account="p-1")])["results"][0]
    assert (row["status"], row["code"], row["credit"]) == ("rejected", "ACCOUNT_FROZEN", "not_creditable")


@pytest.mark.parametrize("field, value, code", [
    ("id", "x" * 201, "invalid_id"), ("id", "ride\x00-1", "invalid_id"),
    ("account", "a" * 300, "invalid_account"), ("account", "p\x00", "invalid_account"),
    ("account", True, "missing_account"), ("account", " p-1", "invalid_account")])
def test_a_bad_id_or_account_is_an_error_of_its_record_and_the_rest_is_credited(capped, field, value, code):
    """Issue 17: on PostgreSQL one record with a 201-character id, a 300-character account
    or a NUL failed the whole batch with a 500; `"account": true` was taken as "True"."""
    web, token = capped
    records = [ride(f"ok-{i}", 45 * i, km=1) for i in range(4)]
    records.insert(2, {**ride("bad", 300, km=1), field: value})
    body = post(web, token, records)
    assert [(e["index"], e["code"]) for e in body["errors"]] == [(2, code)]
    assert body["summary"]["credited"] == 4


def test_one_record_id_credited_to_two_accounts_at_once_is_credited_once(capped):
    """Issue 13: two requests of one integrator credit record `dup-N` at the same moment,
    one to account A, the other to account B. Exactly one credits it; the other answers a
    conflict naming `account`, and its account's state does not count the ride (the
    ledger verifies after the test)."""
    web, token = capped
    rounds, answers, errors = 8, [], []

    def send(n, account, barrier):
        try:
            barrier.wait()
            body = post(web, token, [ride(f"dup-{n}", 60 * n, km=2, account=account)])
            answers.append((n, account, body["results"][0]))
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    for n in range(rounds):
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=send, args=(n, account, barrier))
                   for account in ("acct-A", "acct-B")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert errors == []
    for n in range(rounds):
        pair = [row for m, _account, row in answers if m == n]
        assert sorted(row["credit"] for row in pair) == ["conflict", "credited"], pair
        loser = next(row for row in pair if row["credit"] == "conflict")
        assert loser["conflict"]["fields"] == ["account"]
    assert web.reg.count("credit_entries") == rounds


def test_near_duplicates_one_by_one_and_at_once_give_the_same_ledger(web, reg):
    """One ride reported twice (a feed and an app, two minutes apart): the second is a
    duplicate that names the first, whether the rides come in one request or one a
    request (the kept events are part of the account's stored state)."""
    text = source(METHODOLOGY, "1.0.0") + (
        "\nforbid duplicate mode, boarded within 5 min per account where mode != ebus\n"
        "  else SAME_RIDE \"the same ride reported again\"\n")
    web.published("1.0.0", dt.date(2024, 1, 1), text)
    token = web.token()
    rides = [ride("feed", 0, km=4), ride("app", 2, km=4), ride("ebus-1", 60, km=2, mode="ebus"),
             ride("later", 120, km=5), ride("other", 1, km=3, account="acct-2"),
             ride("again", 123, km=5)]
    answers = post(web, token, rides)["results"]
    by_id = {a["id"]: a for a in answers}
    assert (by_id["app"]["status"], by_id["app"]["code"]) == ("duplicate", "SAME_RIDE")
    assert "the same event as record feed" in by_id["app"]["message"]
    assert (by_id["again"]["status"], by_id["again"]["code"]) == ("duplicate", "SAME_RIDE")
    assert by_id["feed"]["status"] == by_id["later"]["status"] == by_id["other"]["status"] == "credited"
    with web.reg.db.engine.connect() as c:  # the events are rows; the state keeps their count
        states = [json.loads(t) for t in c.execute(sa.text("SELECT state FROM rule_states")).scalars()]
        events = c.execute(sa.text("SELECT record_id FROM duplicate_keys ORDER BY record_id")).scalars().all()
    assert sorted(part["count"] for state in states for part in state.values()
                  if isinstance(part, dict) and "count" in part) == [1, 2]
    assert events == ["feed", "later", "other"]
    whole = _entries(web)
    other = web.token(_second_integrator(reg))
    for r in rides:
        post(web, other, [{**r, "account": r["account"] + "-b"}])
    one_by_one = {(record_id, account[:-2]): rest for (record_id, account), rest in
                  _entries(web, integrator=_second_integrator(reg)).items()}
    assert one_by_one == whole


def test_requests_of_any_size_leave_the_same_entries_and_states(web, reg):
    """With a cap, a duplicate, an overlap and a flag rule, one stream credited by three
    integrators (each its own ids) in requests of random sizes, one ride at a time and
    in one request gives the same entries and leaves the same stored states (the rules'
    state compared as stored, text for text), and the entries are the batch engine's on
    the whole stream. The duplicate rule's keys, rows of their own, are the same rows too."""
    text = source(METHODOLOGY, "1.0.0") + (
        "\ncap reduction at 1 kg per account per day\n"
        "forbid duplicate mode, distance per account else SAME \"the same ride\"\n"
        "flag more than 3 records per account within 2 h as BUSY \"busy\"\n")
    web.published("1.0.0", dt.date(2024, 1, 1), text)
    rng = random.Random(13)
    stream = []
    for n in range(150):
        stream.append(ride(f"s{n}", n * 15 + rng.randrange(20), km=rng.randint(1, 12),
                           account=f"acct-{rng.randrange(4)}", day=rng.choice(["2024-06-20", "2024-06-21"]),
                           mode=rng.choice(["metro", "ebus", "metro"])))
    stream.sort(key=lambda r: r["boarded"])

    def credit(token, suffix, sizes):
        at = 0
        while at < len(stream):
            size = sizes()
            post(web, token, [{**r, "account": r["account"] + suffix} for r in stream[at:at + size]])
            at += size

    integrators = [reg.integrator, _second_integrator(reg)]
    with reg.uow() as s:
        integrators.append(users.create_user(s, None, email="third@tanpu.test", name="third",
                                             roles=("integrator",)).id)
    credit(web.token(integrators[0]), "", lambda: rng.randint(1, 40))
    credit(web.token(integrators[1]), "-b", lambda: 1)
    credit(web.token(integrators[2]), "-c", lambda: len(stream))

    def ledger_of(integrator, suffix):
        entries = {(record_id, account[:len(account) - len(suffix)]): rest
                   for (record_id, account), rest in _entries(web, integrator).items()}
        named = platform_of(web, integrator)
        with web.reg.db.engine.connect() as c:
            states = {named[a][:len(named[a]) - len(suffix)]: state for a, state in c.execute(sa.text(
                "SELECT account, state FROM rule_states WHERE account IN "
                "(SELECT CAST(account_id AS VARCHAR) FROM account_identities WHERE integrator_id = :i)"),
                {"i": integrator}).all()}
            keys = sorted((named[a][:len(named[a]) - len(suffix)], rule, key) for a, rule, key in c.execute(
                sa.text("SELECT account, rule, key FROM duplicate_keys WHERE account IN "
                        "(SELECT CAST(account_id AS VARCHAR) FROM account_identities WHERE integrator_id = :i)"),
                {"i": integrator}).all())
        return entries, states, keys
    by_sizes, one_by_one, at_once = (ledger_of(i, suffix) for i, suffix in zip(integrators, ["", "-b", "-c"]))
    assert by_sizes == one_by_one == at_once
    assert len(by_sizes[1]) == 4 and all(by_sizes[1].values())
    assert by_sizes[2]  # the duplicate rule's keys, the same rows however the stream came
    statuses = {status for status, *_ in by_sizes[0].values()}
    assert statuses == {"credited", "capped"}  # the cap was reached; the others are not entries
    assert len(by_sizes[0]) < len(stream)  # duplicates and overlaps rejected
    methodology = compile_source(text, "judged.tanpu").methodology
    expected = {(r.id, r.account): (r.status, r.reduction_mg, r.points, r.code if r.status == "capped" else "")
                for r in BatchEngine(methodology).evaluate(stream) if r.status in ("credited", "capped")}
    assert by_sizes[0] == expected


# ---------------------------------------------------------------- deadlocks, retried
def _wait_for_lock_waiters(web, count: int, timeout: float = 10.0) -> None:
    """Until `count` other backends of this database wait for a lock (PostgreSQL)."""
    import time
    deadline = time.monotonic() + timeout
    with web.reg.db.engine.connect() as c:
        while time.monotonic() < deadline:
            waiting = c.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")).scalar_one()
            if waiting >= count:
                return
            time.sleep(0.02)
    raise AssertionError(f"{count} lock waiter(s) never appeared")


class _StateRowsRace:
    """The three requests of the state rows' race, each stopped where it is about to make
    missing state rows (its pipeline carrying `INSERT INTO rule_states`; the credit's
    earlier pipeline, the user and the batch, is let by) until the test lets it go."""

    def __init__(self, web, token, monkeypatch):
        from registry import bulk
        self.web = web
        with web.reg.db.unit_of_work() as s:  # the accounts exist; their state rows do not
            accounts.resolve_statuses(s, web.reg.integrator, ["x", "y"])
        real = bulk.pipelined
        self.paused = {"T1": threading.Event(), "T2": threading.Event()}
        self.go = {"T1": threading.Event(), "T2": threading.Event()}

        def pausing(session, statements):
            name = threading.current_thread().name
            makes_states = any("INSERT INTO rule_states" in sql for sql, *_ in statements)
            if name in self.paused and not self.paused[name].is_set() and makes_states:
                self.paused[name].set()
                assert self.go[name].wait(30)
            return real(session, statements)

        monkeypatch.setattr(bulk, "pipelined", pausing)
        self.answers, self.errors = {}, []

        def client(name, records):
            try:
                self.answers[name] = post(web, token, records)
            except Exception as error:  # noqa: BLE001
                self.errors.append((name, error))

        self.t1 = threading.Thread(target=client, name="T1", args=("T1", [
            ride("t1-x", 0, km=2, account="x"), ride("t1-y", 0, km=2, account="y")]))
        self.t3 = threading.Thread(target=client, name="T3", args=(
            "T3", [ride("t3-x", 60, km=2, account="x")]))
        self.t2 = threading.Thread(target=client, name="T2", args=("T2", [
            ride("t2-x", 120, km=2, account="x"), ride("t2-y", 120, km=2, account="y")]))

    def start(self) -> None:
        """T1 pauses having seen no state row; T3 makes x's and commits; T2 pauses having
        seen (and, in two steps, locked) x's."""
        self.t1.start()
        assert self.paused["T1"].wait(30)
        self.t3.start()
        self.t3.join(60)
        self.t2.start()
        assert self.paused["T2"].wait(30)

    def assert_every_ride_credited_once(self) -> None:
        assert self.errors == []
        assert sorted(self.answers) == ["T1", "T2", "T3"]
        assert all(r["credit"] == "credited" for a in self.answers.values() for r in a["results"])
        assert self.web.reg.count("credit_entries") == 5
        assert credited_mg(self.web) == 5 * 2 * KM_MG


def test_three_credits_racing_for_new_state_rows_all_succeed(capped, monkeypatch, caplog):
    """The three-transaction race of the state rows' locks (registry/ledger.py
    _lock_states), played step by step: T1 finds neither x's nor y's state row and
    pauses; T3 makes x's and commits; T2 finds x's, locks it, and pauses; T1 makes y's
    and waits for x's (T2's); T2 makes y's and waits for T1's insert: a cycle, which
    PostgreSQL breaks by failing one with a deadlock (40P01). Both credits succeed:
    the loser's whole transaction is run again (Database.retried), and the ledger
    holds every ride once, under the cap."""
    web, token = capped
    if web.reg.db.dialect != "postgresql":
        pytest.skip("row locks and deadlocks: PostgreSQL")
    from registry import ledger
    # the two steps that larger requests take (existing rows locked, then the missing
    # made): requests of a few accounts make every row first, in one pipeline (below)
    monkeypatch.setattr(ledger, "_MAKE_FIRST_UP_TO", 0)
    race = _StateRowsRace(web, token, monkeypatch)
    race.start()
    race.go["T1"].set()
    _wait_for_lock_waiters(web, 1)     # T1: y's row made, waiting for x's
    race.go["T2"].set()                # T2: makes y's row: waits for T1
    with caplog.at_level("WARNING", logger="registry.db"):
        for t in (race.t1, race.t2):
            t.join(60)
    assert "40P01" in caplog.text      # the deadlock happened, and was run again
    race.assert_every_ride_credited_once()


def test_the_same_race_of_small_credits_needs_no_retry(capped, monkeypatch, caplog):
    """The same three requests in the same order with the one-pipeline protocol of small
    requests (registry/ledger.py _MAKE_FIRST_UP_TO): each makes its missing state rows and
    locks them all in one round trip, so T1, let go while T2 waits before its own, never
    waits for a row T2 holds: no deadlock, nothing run again, and the same ledger."""
    web, token = capped
    if web.reg.db.dialect != "postgresql":
        pytest.skip("row locks and deadlocks: PostgreSQL")
    race = _StateRowsRace(web, token, monkeypatch)
    race.start()
    with caplog.at_level("WARNING", logger="registry.db"):
        race.go["T1"].set()
        race.t1.join(60)
        race.go["T2"].set()
        race.t2.join(60)
    assert "40P01" not in caplog.text
    race.assert_every_ride_credited_once()


def test_many_concurrent_credits_over_overlapping_new_accounts(capped):
    """A stress of the same race without the pauses: rounds of three clients crediting
    rides of overlapping accounts, some with a state row, most new. Every request
    succeeds (a deadlock is retried) and every ride is credited once."""
    web, token = capped
    clients, rounds = 3, 6
    errors, sent = [], 0
    for round_ in range(rounds):
        barrier = threading.Barrier(clients)
        batches = []
        for c in range(clients):
            names = [f"old-{round_ % 2}", f"new-{round_}-{c}", f"new-{round_}-{(c + 1) % clients}",
                     f"new-{round_}-{(c + 2) % clients}"]
            batches.append([ride(f"s{round_}-{c}-{k}", 40 * (c * 4 + k), km=1, account=a,
                                 day=f"2024-06-{10 + round_}")
                            for k, a in enumerate(names)])
            sent += len(names)

        def send(batch):
            try:
                barrier.wait()
                answer = post(web, token, batch)
                assert all(r["credit"] == "credited" for r in answer["results"]), answer
            except Exception as error:  # noqa: BLE001
                errors.append(error)

        threads = [threading.Thread(target=send, args=(b,)) for b in batches]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert errors == []
    assert web.reg.count("credit_entries") == sent
    assert credited_mg(web) == sent * KM_MG


# ---------------------------------------------------------------- duplicate keys, a table of their own
DUPLICATE_RULE = "forbid duplicate mode, distance per account else SAME \"the same ride\"\n"
NEAR_RULE = ("forbid duplicate mode, boarded within 5 min per account where mode != ebus\n"
             "  else SAME_RIDE \"the same ride reported again\"\n")


def _keys_stream(seed: int, n: int = 80) -> list[dict]:
    """Rides in time order over three accounts, an hour apart (no overlap), whose
    (mode, distance) repeat now and then (the duplicate rule's work), and a fifth of
    them reported twice, two minutes apart (the near-duplicate rule's)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if out and rng.random() < 0.2:
            first = out[-1]
            out.append(ride(f"k{i}", 60 * (i - 1) + 2, km=rng.randint(1, 25), account=first["account"],
                            mode=first["mode"]))
            continue
        out.append(ride(f"k{i}", 60 * i, km=rng.randint(1, 25), account=f"acct-{rng.randrange(3)}",
                        mode=rng.choice(["metro", "ebus"])))
    return sorted(out, key=lambda r: r["boarded"])


def _expected(text: str, stream: list[dict]) -> dict:
    """(record id, account) -> (status, mg, points, code) as the batch engine judges the
    whole stream: what every way of crediting it must leave."""
    methodology = compile_source(text, "judged.tanpu").methodology
    return {(r.id, r.account): (r.status, r.reduction_mg, r.points, r.code if r.status == "capped" else "")
            for r in BatchEngine(methodology).evaluate(stream) if r.status in ("credited", "capped")}


def _rows_read(monkeypatch) -> list:
    """The rows of duplicate_keys each credit read (one list per credit)."""
    from registry import duplicate_keys
    read, real = [], duplicate_keys.load

    def load(wanted, rows, states):
        rows = list(rows)
        read.append(rows)
        return real(wanted, rows, states)
    monkeypatch.setattr(duplicate_keys, "load", load)
    return read


def _key_rows(web) -> list[tuple]:
    with web.reg.db.engine.connect() as c:
        return sorted(tuple(row) for row in c.execute(sa.text(
            "SELECT account, rule, key FROM duplicate_keys")).all())


def test_an_accounts_state_does_not_grow_with_its_duplicate_keys(web, reg, monkeypatch):
    """A duplicate rule's keys are rows of their own, not part of the account's state: the
    state written on every credit holds none of them, and a credit reads only the stored
    keys equal to those its records bring, however many the account has. A key accepted
    forty requests earlier still makes a duplicate."""
    text = source(METHODOLOGY, "1.0.0") + "\n" + DUPLICATE_RULE
    web.published("1.0.0", dt.date(2024, 1, 1), text)
    token = web.token()
    read = _rows_read(monkeypatch)
    states = []
    for i in range(40):  # one ride a day, each its own key
        post(web, token, [ride(f"r{i}", 0, km=i + 1, day=f"2024-0{5 + i // 28}-{1 + i % 28:02d}")])
        with web.reg.db.engine.connect() as c:
            states.append(c.execute(sa.text("SELECT state FROM rule_states")).scalar_one())
    assert len(_key_rows(web)) == 40
    assert all("duplicate:" not in state for state in states)
    # the overlap's intervals of the last week, no more: the text stops growing
    assert max(map(len, states[20:])) <= max(map(len, states[8:20]))
    assert all(rows == [] for rows in read)  # each key new: nothing stored matched
    again = post(web, token, [ride("again", 0, km=1, day="2024-06-20"),
                              ride("new", 60, km=99, day="2024-06-20")])["results"]
    assert [(r["id"], r["status"], r["code"]) for r in again] == [
        ("again", "duplicate", "SAME"), ("new", "credited", "")]
    assert len(read[-1]) == 1 and tuple(read[-1][0][:3]) in _key_rows(web)  # r0's key alone
    assert len(_key_rows(web)) == 41  # the duplicate accepted no key


# one rule at a time: `tanpu ledger verify` replays the entries alone, and a record a
# near-duplicate rule kept as an event but a later rule rejected is no entry (the live
# state keeps its event; the replay cannot), which the two rules together would produce
RULES = [pytest.param(DUPLICATE_RULE, "SAME", id="duplicate"),
         pytest.param(NEAR_RULE, "SAME_RIDE", id="near")]


@pytest.mark.parametrize("rule, code", RULES)
def test_keys_that_share_a_hash_are_compared_in_full(web, reg, monkeypatch, rule, code):
    """Every key given one hash (the table's index then finds every stored key of the
    methodology for each): a stored key that is not equal to a record's never makes it a
    duplicate. One ride a request and one request for all give the batch engine's ledger."""
    from registry import duplicate_keys
    monkeypatch.setattr(duplicate_keys, "key_hash", lambda *_: 42)
    text = source(METHODOLOGY, "1.0.0") + "\n" + rule
    web.published("1.0.0", dt.date(2024, 1, 1), text)
    read = _rows_read(monkeypatch)
    stream = _keys_stream(7)
    other = _second_integrator(reg)
    for r in stream:
        post(web, web.token(), [r])
    post(web, web.token(other), [{**r, "account": r["account"] + "-b"} for r in stream])
    expected = _expected(text, stream)
    assert 0 < len(expected) < len(stream)  # some duplicates
    codes = {r.code for r in BatchEngine(compile_source(text, "j.tanpu").methodology).evaluate(stream)}
    assert code in codes  # the rule at work
    assert _entries(web) == expected
    assert {(record_id, account[:-2]): rest for (record_id, account), rest in
            _entries(web, integrator=other).items()} == expected
    assert max(map(len, read)) >= 20  # the collisions happened: many rows read, few equal
    with web.reg.db.engine.connect() as c:
        assert set(c.execute(sa.text("SELECT key_hash FROM duplicate_keys")).scalars()) == {42}


def test_the_hash_is_the_same_for_keys_python_calls_equal():
    """The state's set found a key equal by Python's ==; the table finds it by its hash
    first, so equal keys must hash alike: 1, 1.0 and True; -0.0 and 0."""
    from registry.duplicate_keys import key_hash
    h = lambda *key: key_hash("m", "a", "duplicate:x", key)  # noqa: E731
    assert h("bus", 1) == h("bus", 1.0) == h("bus", True)
    assert h(0) == h(-0.0) == h(False)
    assert h("bus", 1) != h("bus", 2) and h("bus", 1) != h("bus", "1") and h(1.5) != h(1)
    assert key_hash("m", "a", "duplicate:x", (1,)) != key_hash("m", "b", "duplicate:x", (1,))


@pytest.mark.parametrize("rule, code", RULES)
def test_migration_0017_moves_the_keys_and_the_verdicts_stay(web, reg, rule, code):
    """A ledger credited before migration 0017 (its states holding every key and every
    near-duplicate event, as the code before wrote them: made here by the migration's
    downgrade, and compared with the engine's own state text) is upgraded: the keys and
    events become rows, the states keep only the events' count, and the rest of the
    stream is judged as the batch engine judges it whole."""
    from alembic import command
    from engine.state import AccountState
    from registry import migrate
    text = source(METHODOLOGY, "1.0.0") + "\n" + rule
    web.published("1.0.0", dt.date(2024, 1, 1), text)
    token = web.token()
    stream = _keys_stream(11)
    for at in range(0, 40, 7):
        post(web, token, stream[at:min(at + 7, 40)])
    moved = _key_rows(web)
    config = migrate.alembic_config()
    with web.reg.db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0016")
    web.reg.db.engine.dispose()
    rules = compile_source(text, "judged.tanpu").methodology
    from engine import Engine
    from engine import cross_record
    engine = Engine(rules)
    named = platform_of(web, web.reg.integrator)
    with web.reg.db.engine.connect() as c:
        before = dict(c.execute(sa.text("SELECT account, state FROM rule_states")).all())
    for account, state in before.items():  # the states as the code before 0017 wrote them
        mine = [r for r in stream[:40] if r["account"] == named[account]]
        results = engine.evaluate(mine, per_record_only=True)
        for r in results:
            r.account = account
        states = {account: AccountState.empty(engine.rules)}
        cross_record.apply(results, engine.rules, engine.recompute_points, state=states)
        assert state == states[account].to_json(engine.rules)
        assert ('"duplicate:' if code == "SAME" else '"nearduplicate:') in state
    migrate.upgrade(web.reg.db)
    web.reg.db.engine.dispose()
    assert _key_rows(web) == moved
    with web.reg.db.engine.connect() as c:
        after = dict(c.execute(sa.text("SELECT account, state FROM rule_states")).all())
    assert all('"duplicate:' not in state for state in after.values())
    for account, state in after.items():  # of the events, their count
        events = [part for name, part in json.loads(state).items() if name.startswith("nearduplicate:")]
        assert events == [{"count": len(part)} for name, part in json.loads(before[account]).items()
                          if name.startswith("nearduplicate:")]
    for at in range(40, len(stream), 9):
        post(web, token, stream[at:at + 9])
    assert _entries(web) == _expected(text, stream)
