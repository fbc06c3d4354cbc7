"""Spending, reversal and retirement (registry/rewards.py, reversals.py, retirements.py):
a redemption never makes a balance negative and never oversells, also under 16
concurrent clients; a reversal is a compensating row, once per credit, freezing an
account it drives negative; a gram is retired at most once and a certificate verifies
(SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from engine.result import MethodologyRef
from registry import accounts, audit, ledger, retirements, reversals, rewards
from registry.errors import Conflict, Forbidden, Invalid, InvalidTransition, NotFound
from registry.models import Account

from .test_ledger import result


@pytest.fixture
def world(reg):
    """A published version and an account with ten credits of 1 g and 100 points each."""
    vid = reg.to_state("published")
    v = reg.version(vid)
    ref = MethodologyRef(v.methodology_id, v.version, v.content_hash)
    with reg.uow() as s:
        account = accounts.create(s, reg.integrator, "individual").id
    give(reg, ref, account, 10)
    return reg, ref, account


def give(reg, ref, account: int, count: int, mg: int = 1_000, prefix: str = "r") -> None:
    """`count` credits of `mg` (points: mg // 10) to the account."""
    results = [result(f"{prefix}{account}-{i}", mg=mg, account=str(account)) for i in range(count)]
    for r in results:
        r.points = mg // 10
    with reg.uow() as s:
        ledger.credit(s, reg.integrator, ref, results, idempotency_key=f"{prefix}{account}")


def reward(reg, **fields) -> int:
    with reg.uow() as s:
        return rewards.create_reward(s, reg.admin, **{"name": "公交券", "name_en": "Bus voucher",
                                                      "price_points": 300, **fields}).id


def redeem(reg, account, reward_id, key, actor=None):
    with reg.uow() as s:
        return rewards.redeem(s, actor or reg.integrator, account, reward_id, key)


def balance(reg, account) -> int:
    with reg.db.read() as s:
        return rewards.points_of(s, account).balance


# ---------------------------------------------------------------- the catalogue
def test_only_administrators_manage_the_catalogue(reg):
    with pytest.raises(Forbidden):
        _create_as(reg, reg.integrator)
    rid = reward(reg, stock_per_period=5, period="week", limit_per_account_per_period=1)
    with reg.uow() as s:
        changed = rewards.update_reward(s, reg.admin, rid, active=False, price_points=400)
        assert (changed.active, changed.price_points) == (False, 400)
        assert [r.id for r in rewards.list_rewards(s)] == []
        assert [r.id for r in rewards.list_rewards(s, include_inactive=True)] == [rid]
    for bad in ({"price_points": 0}, {"period": "hour"}, {"stock_per_period": -1},
                {"name": ""}, {"colour": "red"}, {"timezone": "Mars/Olympus"}):
        with pytest.raises(Invalid):
            reward(reg, **bad)
    with reg.db.read() as s:
        assert [e.action for e in audit.entries_for(s, "reward", rid)] == ["reward.create",
                                                                          "reward.update"]


def _create_as(reg, actor):
    with reg.uow() as s:
        rewards.create_reward(s, actor, name="x", price_points=1)


# ---------------------------------------------------------------- redemption
def test_a_redemption_never_makes_the_balance_negative(world):
    reg, _ref, account = world
    assert balance(reg, account) == 1_000  # 10 × 100 points
    rid = reward(reg)
    for k in range(3):
        out = redeem(reg, account, rid, f"k{k}")
        assert not out.replayed and out.points.balance == 1_000 - 300 * (k + 1)
    with pytest.raises(Conflict, match="has 100 points"):
        redeem(reg, account, rid, "k3")
    assert balance(reg, account) == 100
    assert reg.count("redemptions") == 3


def test_stock_and_per_account_limits_per_period(world):
    reg, ref, account = world
    with reg.uow() as s:
        other = accounts.create(s, reg.integrator, "individual").id
    give(reg, ref, other, 10, prefix="o")
    rid = reward(reg, price_points=100, stock_per_period=3, limit_per_account_per_period=2)
    redeem(reg, account, rid, "a1")
    redeem(reg, account, rid, "a2")
    with pytest.raises(Conflict, match="the limit is 2"):
        redeem(reg, account, rid, "a3")
    redeem(reg, other, rid, "b1")
    with pytest.raises(Conflict, match="sold out this month"):
        redeem(reg, other, rid, "b2")
    with reg.db.read() as s:
        assert rewards.stock_left(s, rewards.get_reward(s, rid)) == 0


def test_a_key_redeems_once_and_replays(world):
    reg, _ref, account = world
    rid, other = reward(reg), reward(reg, price_points=50)
    first = redeem(reg, account, rid, "order-1")
    audits = reg.count("audit_log")
    again = redeem(reg, account, rid, "order-1")
    assert again.replayed and again.redemption.id == first.redemption.id
    assert (reg.count("redemptions"), reg.count("audit_log")) == (1, audits)
    with pytest.raises(Conflict, match="another redemption"):
        redeem(reg, account, other, "order-1")
    # another actor's key is its own
    assert not redeem(reg, account, rid, "order-1", actor=reg.admin).replayed


def test_frozen_closed_and_unseen_accounts_redeem_nothing(world):
    reg, _ref, account = world
    rid = reward(reg)
    with reg.uow() as s:
        accounts.update_status(s, reg.admin, account, "frozen")
    with pytest.raises(InvalidTransition, match="frozen"):
        redeem(reg, account, rid, "k")
    with reg.uow() as s:
        accounts.update_status(s, reg.admin, account, "closed")
    with pytest.raises(InvalidTransition, match="closed"):
        redeem(reg, account, rid, "k")
    with reg.uow() as s:
        unseen = accounts.create(s, reg.admin, "individual").id
    with pytest.raises(NotFound):
        redeem(reg, unseen, rid, "k")
    with reg.uow() as s:
        rewards.update_reward(s, reg.admin, rid, active=False)
        fresh = accounts.create(s, reg.integrator, "individual").id
    with pytest.raises(InvalidTransition, match="not offered"):
        redeem(reg, fresh, rid, "k")


def test_the_database_refuses_changing_a_redemption(world):
    reg, _ref, account = world
    redeem(reg, account, reward(reg), "k")
    for statement in ("UPDATE redemptions SET points = 1", "DELETE FROM redemptions"):
        with pytest.raises(sa.exc.IntegrityError):
            with reg.db.engine.begin() as c:
                c.execute(sa.text(statement))


def _race(workers, job):
    barrier = threading.Barrier(len(workers))
    outcomes, errors = [], []

    def run(arg):
        try:
            barrier.wait()
            outcomes.append(job(arg))
        except (Conflict, InvalidTransition) as refused:
            outcomes.append(refused)
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    return outcomes


def test_sixteen_clients_redeeming_the_last_items(world):
    """Row locks on PostgreSQL, the single writer on SQLite."""
    reg, ref, account = world
    rid = reward(reg, price_points=100, stock_per_period=5)
    others = []
    with reg.uow() as s:
        others = [accounts.create(s, reg.integrator, "individual").id for _ in range(15)]
    for other in others:
        give(reg, ref, other, 1, prefix="c")  # 100 points each
    # 16 clients, 5 items left: never oversold
    outcomes = _race([account, *others], lambda a: redeem(reg, a, rid, f"last-{a}"))
    assert sum(not isinstance(o, Exception) for o in outcomes) == 5
    assert reg.count("redemptions") == 5
    # 16 clients on one account with points for 3 (and the same key twice): never negative
    with reg.uow() as s:
        one = accounts.create(s, reg.integrator, "individual").id
    give(reg, ref, one, 10, prefix="one")  # 1,000 points
    rich = reward(reg, price_points=300)
    outcomes = _race(list(range(16)), lambda n: redeem(reg, one, rich, f"same-{n // 2}"))
    made = {o.redemption.id for o in outcomes if not isinstance(o, Exception)}
    assert len(made) == 3
    assert balance(reg, one) == 1_000 - 900
    with reg.db.read() as s:
        assert audit.verify(s).ok


# ---------------------------------------------------------------- reversal
def test_a_reversal_is_a_compensating_row_once_per_credit(world):
    reg, _ref, account = world
    with reg.db.read() as s:
        entry = ledger.entries_of_account(s, str(account))[0]
    with pytest.raises(Forbidden):
        with reg.uow() as s:
            reversals.reverse(s, reg.integrator, entry.id, reason="fraud")
    with pytest.raises(Invalid, match="reason"):
        with reg.uow() as s:
            reversals.reverse(s, reg.admin, entry.id, reason=" ")
    with reg.uow() as s:
        out = reversals.reverse(s, reg.admin, integrator_id=reg.integrator,
                                methodology_id=entry.methodology_id, record_id=entry.record_id,
                                reason="GPS track faked")
        assert (out.reversal.entry_id, out.reversal.reduction_mg, out.reversal.points) == (
            entry.id, 1_000, 100)
        assert out.points_balance == 900 and not out.frozen
    with pytest.raises(Conflict, match="reversed already"):
        with reg.uow() as s:
            reversals.reverse(s, reg.admin, entry.id, reason="again")
    assert reg.count("credit_entries") == 10 and reg.count("reversals") == 1
    with reg.db.read() as s:
        assert s.get(ledger.CreditEntry, entry.id).points == 100  # the credit stands as it was
        assert retirements.retirable_mg(s, account) == 9_000
        last = audit.entries_for(s, "credit_entry", entry.id)[-1]
        assert last.action == "ledger.reverse" and last.details["reason"] == "GPS track faked"


def test_a_reversal_driving_the_balance_negative_freezes_the_account(world):
    reg, _ref, account = world
    redeem(reg, account, reward(reg, price_points=950), "spent")
    with reg.db.read() as s:
        entry = ledger.entries_of_account(s, str(account))[0]
    with reg.uow() as s:
        out = reversals.reverse(s, reg.admin, entry.id, reason="fraud")
    assert out.frozen and out.points_balance == -50
    with reg.db.read() as s:
        assert s.get(Account, account).status == "frozen"
        last = audit.entries_for(s, "account", account)[-1]
        assert (last.action, last.details) == ("account.set_status",
                                               {"from": "active", "to": "frozen"})
        why = audit.entries_for(s, "credit_entry", entry.id)[-1].details
        assert why["froze_account"] and why["reason"] == "fraud" and why["points_balance"] == -50
    with pytest.raises(InvalidTransition, match="frozen"):
        redeem(reg, account, reward(reg, price_points=1), "more")
    # an administrator unfreezes it; the balance is still owed
    with reg.uow() as s:
        accounts.update_status(s, reg.admin, account, "active")
    assert balance(reg, account) == -50


# ---------------------------------------------------------------- retirement
def test_retirement_takes_the_oldest_credits_and_never_a_gram_twice(world):
    reg, _ref, account = world
    with pytest.raises(NotFound):  # an integrator that does not see the account
        with reg.uow() as s:
            other = accounts.create(s, reg.admin, "individual").id
            retirements.retire(s, reg.integrator, other, 1, "x")
    with reg.uow() as s:
        first = retirements.retire(s, reg.integrator, account, retirements.to_mg(g="2.5"),
                                   "马拉松碳中和", "Quzhou Marathon")
        first_id = first.id
    with reg.uow() as s:
        retirements.retire(s, reg.admin, account, 3_000, "office offset")
    with reg.db.read() as s:
        entries = [e.id for e in ledger.entries_of_account(s, str(account))]
        parts = s.execute(sa.text("SELECT retirement_id, entry_id, reduction_mg FROM "
                                  "retirement_parts ORDER BY entry_id, retirement_id")).all()
        assert sorted((r == first_id, e, mg) for r, e, mg in parts) == sorted([
            (True, entries[0], 1_000), (True, entries[1], 1_000), (True, entries[2], 500),
            (False, entries[2], 500), (False, entries[3], 1_000), (False, entries[4], 1_000),
            (False, entries[5], 500)])
        per_entry = s.execute(sa.text("SELECT entry_id, SUM(reduction_mg) FROM retirement_parts "
                                      "GROUP BY entry_id")).all()
        assert all(mg <= 1_000 for _e, mg in per_entry)
        assert retirements.retirable_mg(s, account) == 4_500
    with pytest.raises(Conflict, match="has 4500 mg"):
        with reg.uow() as s:
            retirements.retire(s, reg.admin, account, 5_000, "too much")
    with pytest.raises(Conflict, match="retired"):  # a certified gram is not reversed
        with reg.uow() as s:
            reversals.reverse(s, reg.admin, entries[0], reason="fraud")
    with reg.uow() as s:  # a reversed credit's grams are not retired
        reversals.reverse(s, reg.admin, entries[6], reason="fraud")
    with reg.uow() as s:
        last = retirements.retire(s, reg.admin, account, 4_500 - 1_000, "the rest")
        assert retirements.certificate(s, last.id).content["credits"][-1]["entry"] == entries[9]
        assert entries[6] not in [c["entry"] for c in
                                  retirements.certificate(s, last.id).content["credits"]]
        assert retirements.retirable_mg(s, account) == 0


def test_a_certificate_verifies_and_shows_tampering(world, backend):
    reg, _ref, account = world
    with reg.uow() as s:
        rid = retirements.retire(s, reg.admin, account, retirements.to_mg(kg="0.0015"),
                                 "event", "someone").id
    with reg.db.read() as s:
        cert = retirements.certificate(s, rid)
        assert cert.verified and cert.content["reduction_t"] == "0.0000015"
        assert cert.content["reduction_mg"] == 1_500 and len(cert.content["credits"]) == 2
        assert cert.content["credits"][0]["content_hash"] == _ref.content_hash
    _tamper(reg, backend, "UPDATE retirements SET purpose = 'another event'")
    with reg.db.read() as s:
        assert not retirements.certificate(s, rid).verified


def _tamper(reg, backend, statement):
    """Changes an append-only row behind the triggers' back (as an attacker with the
    database's owner rights would)."""
    with reg.db.engine.begin() as c:
        if backend == "postgresql":
            c.execute(sa.text("SET LOCAL session_replication_role = replica"))
            c.execute(sa.text(statement))
        else:
            c.execute(sa.text("DROP TRIGGER retirements_no_update"))
            c.execute(sa.text(statement))


def test_amounts(reg):
    assert retirements.to_mg(kg="1.5") == 1_500_000 and retirements.to_mg(t=2) == 2 * 10**9
    assert retirements.tonnes(1_500_000) == "0.0015" and retirements.tonnes(10**9) == "1"
    for bad in ({"kg": "0"}, {"g": "0.0001"}, {"kg": "x"}, {}, {"kg": 1, "t": 1}):
        with pytest.raises(Invalid):
            retirements.to_mg(**bad)
