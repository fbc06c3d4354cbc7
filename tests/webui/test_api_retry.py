"""Reversals, redemptions and retirements through /api/v1 are run again whole when the
database fails their transaction with a deadlock (40P01) or a serialization failure
(40001), as /credits is (Database.retried), and the result is exactly once: one
reversal, one redemption, one retirement, one audit entry each, the balances moved once
(PostgreSQL).

The failure is the database's own: a deferred constraint trigger on the operation's
table raises the SQLSTATE at COMMIT (when all the work is done) the first time only (a
sequence counts the attempts: nextval is not rolled back with the transaction).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from registry import verify
from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures
from tests.webui.test_api_rewards import admin_token, call, entry_id, platform_id
from tests.webui.test_api_state import capped, post, reg, ride  # noqa: F401 - the capped fixture (and its reg)


class FailOnce:
    """A deferred trigger on `table` failing the first transaction that inserts into it
    with `sqlstate`, at commit; `attempts` says how many transactions reached it."""

    def __init__(self, web, table: str, sqlstate: str):
        self.web, self.table = web, table
        self.sql = [
            "CREATE SEQUENCE test_fail_once",
            "CREATE FUNCTION test_fail_once() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF nextval('test_fail_once') = 1 THEN RAISE EXCEPTION 'forced by the test' "
            f"USING ERRCODE = '{sqlstate}'; END IF; RETURN NULL; END $$",
            f"CREATE CONSTRAINT TRIGGER test_fail_once AFTER INSERT ON {table} "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_fail_once()"]

    def __enter__(self):
        with self.web.reg.db.engine.begin() as c:
            for statement in self.sql:
                c.execute(sa.text(statement))
        return self

    @property
    def attempts(self) -> int:
        with self.web.reg.db.engine.connect() as c:
            return c.execute(sa.text("SELECT last_value FROM test_fail_once")).scalar_one()

    def __exit__(self, *exc):
        with self.web.reg.db.engine.begin() as c:
            c.execute(sa.text(f"DROP TRIGGER test_fail_once ON {self.table}"))
            c.execute(sa.text("DROP FUNCTION test_fail_once()"))
            c.execute(sa.text("DROP SEQUENCE test_fail_once"))


def count(web, sql: str) -> int:
    with web.reg.db.engine.connect() as c:
        return c.execute(sa.text(sql)).scalar_one()


def audited(web, action: str) -> int:
    return count(web, f"SELECT count(*) FROM audit_log WHERE action = '{action}'")


@pytest.fixture
def credited(capped):
    web, token = capped
    if web.reg.db.dialect != "postgresql":
        pytest.skip("deferred triggers and deadlocks: PostgreSQL (SQLite has one writer)")
    post(web, token, [ride("r0", 0), ride("r1", 60)])  # 467 g and 467 points each
    return web, token


def _check(web, caplog, sqlstate: str, guard: FailOnce) -> None:
    assert guard.attempts == 2  # the first attempt failed at its commit, the second passed
    assert sqlstate in caplog.text  # Database.retried logged the failed attempt
    with web.reg.db.read() as s:
        report = verify.verify(s)  # balances, states and the audit chain, from the entries
    assert report.ok, str(report)


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
def test_a_reversal_failed_by_the_database_is_run_again_once(credited, caplog, sqlstate):
    web, _token = credited
    boss = admin_token(web)
    path = f"/api/v1/credits/{entry_id(web, 'r0')}/reversal"
    with caplog.at_level("WARNING", logger="registry.db"), FailOnce(web, "reversals", sqlstate) as guard:
        answer = call(web, "post", path, boss, json={"reason": "GPS track faked"},
                      headers={"Idempotency-Key": "rev-1"})
        assert answer.status_code == 201, answer.get_data(as_text=True)
        _check(web, caplog, sqlstate, guard)
    assert answer.get_json()["reversal"]["reduction_mg"] == 467_000
    assert count(web, "SELECT count(*) FROM reversals") == 1
    assert audited(web, "ledger.reverse") == 1
    assert count(web, "SELECT count(*) FROM api_idempotency") == 1
    # the key replays the one reversal
    again = call(web, "post", path, boss, json={"reason": "GPS track faked"},
                 headers={"Idempotency-Key": "rev-1"})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == answer.get_json()
    assert count(web, "SELECT count(*) FROM reversals") == 1


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
def test_a_redemption_failed_by_the_database_is_run_again_once(credited, caplog, sqlstate):
    web, token = credited
    boss = admin_token(web)
    reward = call(web, "post", "/api/v1/rewards", boss, json={
        "name": "公交乘车券", "price_points": 500, "stock_per_period": 10,
        "period": "month"}).get_json()["id"]
    path = f"/api/v1/accounts/{platform_id(web)}/redemptions"
    with caplog.at_level("WARNING", logger="registry.db"), FailOnce(web, "redemptions", sqlstate) as guard:
        answer = call(web, "post", path, token, json={"reward": reward},
                      headers={"Idempotency-Key": "order-1"})
        assert answer.status_code == 201, answer.get_data(as_text=True)
        _check(web, caplog, sqlstate, guard)
    assert answer.get_json()["points"]["balance"] == 934 - 500
    assert count(web, "SELECT count(*) FROM redemptions") == 1
    assert audited(web, "reward.redeem") == 1
    replay = call(web, "post", path, token, json={"reward": reward},
                  headers={"Idempotency-Key": "order-1"})
    assert replay.status_code == 200 and replay.get_json()["replayed"]
    assert replay.get_json()["redemption"]["id"] == answer.get_json()["redemption"]["id"]
    wallet = call(web, "get", f"/api/v1/accounts/{platform_id(web)}/wallet", token).get_json()
    assert wallet["points"]["redeemed"] == 500 and wallet["points"]["balance"] == 434


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
def test_a_retirement_failed_by_the_database_is_run_again_once(credited, caplog, sqlstate):
    web, token = credited
    path = f"/api/v1/accounts/{platform_id(web)}/retirements"
    with caplog.at_level("WARNING", logger="registry.db"), FailOnce(web, "retirements", sqlstate) as guard:
        answer = call(web, "post", path, token, json={"kg": "0.5", "purpose": "marathon"})
        assert answer.status_code == 201, answer.get_data(as_text=True)
        _check(web, caplog, sqlstate, guard)
    cert = answer.get_json()
    assert cert["verified"] and cert["reduction_mg"] == 500_000
    assert count(web, "SELECT count(*) FROM retirements") == 1
    assert count(web, "SELECT sum(reduction_mg) FROM retirement_parts") == 500_000
    assert audited(web, "ledger.retire") == 1
    wallet = call(web, "get", f"/api/v1/accounts/{platform_id(web)}/wallet", token).get_json()
    assert wallet["retirable_mg"] == 2 * 467_000 - 500_000


def test_a_reversal_from_the_administration_page_is_run_again_once(credited, caplog):
    """The form's reversal (webui/views/rewards.py) is retried as the API's is."""
    web, _token = credited
    page = web.new_client(web.reg.admin)
    with caplog.at_level("WARNING", logger="registry.db"), FailOnce(web, "reversals", "40P01") as guard:
        answer = page.post(f"/admin/credits/{entry_id(web, 'r1')}/reversal",
                           data={"reason": "GPS track faked"})
        assert answer.status_code == 303, answer.get_data(as_text=True)
        _check(web, caplog, "40P01", guard)
    assert count(web, "SELECT count(*) FROM reversals") == 1
    assert audited(web, "ledger.reverse") == 1


def test_an_entry_written_meanwhile_without_the_record_lock_fails_the_commit_and_the_credit_runs_again(
        credited, caplog):
    """A single-version credit writes its entries in the COMMIT's round trip, with the audit
    entry made for them all (ledger.credit's at_commit; docs/ledger.md, Session 18). Every
    credit of ours locks its record ids first, so none is inserted by another meanwhile;
    here one is, by a plain INSERT that takes no lock, between the credit's read of its
    records and its commit: that INSERT wins, ours skips it (ON CONFLICT), and the guard
    fails the statement, the audit entry and the COMMIT. The transaction is run again
    (a serialization failure, 40001), finds the record credited, and answers so; the audit
    chain holds no entry for the failed attempt."""
    from registry import bulk
    from registry.models import CreditEntry

    web, token = credited
    copied = [c.name for c in CreditEntry.__table__.c if c.name not in ("id", "batch_id", "record_id", "record")]
    competitor = sa.text(
        "WITH b AS (INSERT INTO credit_batches (idempotency_key, request_digest, actor_id, methodology_id, "
        "version, content_hash, created_at) SELECT 'competitor', request_digest, actor_id, methodology_id, "
        "version, content_hash, created_at FROM credit_batches ORDER BY id LIMIT 1 RETURNING id) "
        f"INSERT INTO credit_entries (batch_id, record_id, {', '.join(copied)}) "
        f"SELECT b.id, 'r2', {', '.join('e.' + c for c in copied)} FROM credit_entries e, b "
        "WHERE e.record_id = 'r0'")
    raced = []

    def race(texts, _seconds):
        # once, right after the round trip that locked the record ids and read their entries
        if not raced and any("FROM credit_entries WHERE integrator_id" in sql for sql in texts):
            raced.append(texts)
            with web.reg.db.engine.begin() as c:
                c.execute(competitor)

    before = audited(web, "ledger.credit")
    bulk.round_trip_observers.append(race)
    try:
        with caplog.at_level("WARNING", logger="registry.db"):
            answer = post(web, token, [ride("r2", 120)])
    finally:
        bulk.round_trip_observers.remove(race)
    assert raced and "40001" in caplog.text  # the first attempt failed at its commit
    assert [r["credit"] for r in answer["results"]] == ["already_credited"]
    assert answer["summary"]["credited"] == 0 and answer["batches"][0]["new"] == 0
    assert count(web, "SELECT count(*) FROM credit_entries WHERE record_id = 'r2'") == 1
    assert count(web, "SELECT count(*) FROM credit_entries e JOIN credit_batches b ON b.id = e.batch_id "
                      "WHERE e.record_id = 'r2' AND b.idempotency_key = 'competitor'") == 1
    assert audited(web, "ledger.credit") == before + 1  # the second attempt's, not the first's
    with web.reg.db.engine.connect() as c:
        details = c.execute(sa.text("SELECT details FROM audit_log WHERE action = 'ledger.credit' "
                                    "ORDER BY seq DESC LIMIT 1")).scalar_one()
    assert details["new"] == 0 and details["already_present"] == 1
    from registry import audit
    competitor_batch = count(web, "SELECT id FROM credit_batches WHERE idempotency_key = 'competitor'")
    with web.reg.db.read() as s:
        chain = audit.verify(s)
    # the chain is whole; the one thing it finds is the competitor's row, which no entry records
    assert chain.first_broken is None and not chain.problem
    assert len(chain.ledger_problems) == 1 and chain.ledger_problems[0].startswith(f"credit batch {competitor_batch}: 1 ledger row")
