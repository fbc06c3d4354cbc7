"""The ledger: a record is credited at most once per methodology, in one transaction with
its batch (idempotency key) and audit entry, also under concurrent transactions."""

from __future__ import annotations

import datetime as dt
import random
import threading

import pytest
import sqlalchemy as sa

from engine.result import MethodologyRef, Result
from registry import audit, ledger, workflow
from registry.errors import Conflict, Forbidden, Invalid, InvalidTransition, NotFound

T0 = int(dt.datetime(2024, 5, 20, tzinfo=dt.timezone.utc).timestamp() * 1_000_000)


def result(record_id: str, status: str = "credited", mg: int = 220_580, account: str = "acct-1"):
    return Result(id=record_id, account=account, time=T0, status=status,
                  reduction_mg=mg if status in ("credited", "capped") else 0,
                  points=mg // 1000 if status in ("credited", "capped") else 0)


@pytest.fixture
def published(reg):
    vid = reg.to_state("published")
    v = reg.version(vid)
    return reg, MethodologyRef(v.methodology_id, v.version, v.content_hash)


def credit(reg, ref, results, key=None, actor=None):
    with reg.uow() as s:
        return ledger.credit(s, actor or reg.integrator, ref, results, idempotency_key=key,
                             reason="1.0.0 in force since 2024-01-01")


def test_credit_writes_entries_batch_and_audit_in_one_go(published):
    reg, ref = published
    out = credit(reg, ref, [result("r1"), result("r2", "capped"), result("r3", "rejected")], "k1")
    assert not out.replayed
    assert out.new_record_ids == ["r1", "r2"] and out.present == []
    assert [r.id for r in out.not_creditable] == ["r3"]
    e = out.new[0]
    assert (e.account, e.methodology_id, e.version, e.content_hash, e.reduction_mg, e.points) == (
        "acct-1", "test.transit", "1.0.0", ref.content_hash, 220_580, 220)
    assert e.activity_time == dt.datetime(2024, 5, 20, tzinfo=dt.timezone.utc)
    assert e.reason == "1.0.0 in force since 2024-01-01"
    with reg.db.read() as s:
        last = s.scalar(sa.select(audit.AuditEntry).order_by(audit.AuditEntry.seq.desc()).limit(1))
        assert last.action == "ledger.credit" and last.details["new"] == 2
        assert audit.verify(s).ok
        assert ledger.balance(s, "acct-1") == {"reduction_mg": 441_160, "points": 440}


def test_a_record_is_never_credited_twice(published):
    reg, ref = published
    credit(reg, ref, [result("r1"), result("r2")], "k1")
    out = credit(reg, ref, [result("r2", mg=999_000), result("r3")], "k2")
    assert out.new_record_ids == ["r3"] and out.present_record_ids == ["r2"]
    assert out.present[0].reduction_mg == 220_580  # the first credit stands
    assert reg.count("credit_entries") == 3


def test_replaying_an_idempotency_key_writes_nothing(published):
    reg, ref = published
    first = credit(reg, ref, [result("r1"), result("r2")], "k1")
    entries, audits = reg.count("credit_entries"), reg.count("audit_log")
    again = credit(reg, ref, [result("r2"), result("r1")], "k1")
    assert again.replayed and again.batch_id == first.batch_id
    assert again.new_record_ids == ["r1", "r2"] and again.present == []
    assert (reg.count("credit_entries"), reg.count("audit_log")) == (entries, audits)
    with pytest.raises(Conflict, match="different request"):
        credit(reg, ref, [result("r1"), result("r9")], "k1")


def test_without_a_key_the_request_itself_is_the_key(published):
    reg, ref = published
    first = credit(reg, ref, [result("r1")])
    again = credit(reg, ref, [result("r1")])
    assert again.replayed and again.batch_id == first.batch_id
    assert first.idempotency_key.startswith("digest:")


def test_only_published_versions_with_their_hash_credit(published):
    reg, ref = published
    with pytest.raises(Invalid, match="content hash"):
        credit(reg, MethodologyRef(ref.id, ref.version, "sha256:other"), [result("r1")])
    draft = reg.version(reg.to_state("in_review", "1.1.0"))
    with pytest.raises(InvalidTransition, match="in_review"):
        credit(reg, MethodologyRef(draft.methodology_id, draft.version, draft.content_hash),
               [result("r1")])
    with reg.uow() as s:
        workflow.suspend(s, reg.admin, workflow.find_version(s, "test.transit", "1.0.0").id,
                         "investigation")
    with pytest.raises(InvalidTransition, match="suspended"):
        credit(reg, ref, [result("r1")])
    assert reg.count("credit_entries") == 0


def test_only_integrators_and_administrators_credit(published):
    reg, ref = published
    for who in (reg.expert, reg.members[0], reg.author):
        with pytest.raises(Forbidden):
            credit(reg, ref, [result("r1")], actor=who)
    assert credit(reg, ref, [result("r1")], actor=reg.admin).new_record_ids == ["r1"]


def test_an_unknown_user_credits_nothing(published):
    """The user is read with the batch's insert (one round trip on PostgreSQL): an unknown
    one is NotFound, and no batch row is made for it."""
    reg, ref = published
    with pytest.raises(NotFound):
        credit(reg, ref, [result("r1")], actor=987_654)
    assert reg.count("credit_batches") == 0 and reg.count("credit_entries") == 0


def test_one_record_twice_in_a_batch(published):
    reg, ref = published
    assert credit(reg, ref, [result("r1"), result("r1")]).new_record_ids == ["r1"]
    with pytest.raises(Invalid, match="twice with different results"):
        credit(reg, ref, [result("r2"), result("r2", mg=1)])


def test_the_database_refuses_a_second_entry_and_any_change(published):
    reg, ref = published
    credit(reg, ref, [result("r1")], "k1")
    with pytest.raises(sa.exc.IntegrityError):
        with reg.db.engine.begin() as c:
            c.execute(sa.text(
                "INSERT INTO credit_entries (batch_id, account, methodology_id, version, content_hash, "
                "record_id, reduction_mg, points, bonus, status, reason, credited_at) SELECT batch_id, "
                "'acct-2', methodology_id, version, content_hash, record_id, 1, 1, 0, 'credited', '', "
                "credited_at FROM credit_entries"))
    for sql in ("UPDATE credit_entries SET points = 1000000", "DELETE FROM credit_entries",
                "UPDATE credit_batches SET request_digest = 'x'", "DELETE FROM credit_batches"):
        with pytest.raises(sa.exc.IntegrityError, match="append-only"):
            with reg.db.engine.begin() as c:
                c.execute(sa.text(sql))
    assert reg.count("credit_entries") == 1


def test_a_large_batch(published):
    reg, ref = published
    out = credit(reg, ref, [result(f"r{i:05d}", account=f"a{i % 7}") for i in range(1200)], "big")
    assert len(out.new) == 1200
    out = credit(reg, ref, [result(f"r{i:05d}") for i in range(1100, 1300)], "big2")
    assert (len(out.new), len(out.present)) == (100, 100)


# ---------------------------------------------------------------- concurrency
# On PostgreSQL the second writer waits on the unique index entry of the first; on SQLite
# it waits for the first's write lock (BEGIN IMMEDIATE). Either way: no error, no loss.
def test_two_transactions_crediting_the_same_record(published):
    """T1 credits r00..r49 and holds its transaction open; T2 credits r25..r74 and must
    wait on the unique index; when T1 commits, T2 finds r25..r49 present and credits only
    r50..r74. Nothing is lost or doubled."""
    reg, ref = published
    box = {}

    def second():
        try:
            box["out"] = credit(reg, ref, [result(f"r{i:02d}") for i in range(25, 75)], "t2")
        except Exception as error:  # noqa: BLE001
            box["error"] = error

    with reg.uow() as s1:
        out1 = ledger.credit(s1, reg.integrator, ref, [result(f"r{i:02d}") for i in range(50)],
                             idempotency_key="t1")
        t2 = threading.Thread(target=second)
        t2.start()
        t2.join(1.0)
        assert t2.is_alive(), "T2 should wait for T1's uncommitted entries"
    t2.join(30)
    assert "error" not in box, box.get("error")
    out2 = box["out"]
    assert len(out1.new) == 50
    assert out2.new_record_ids == [f"r{i:02d}" for i in range(50, 75)]
    assert out2.present_record_ids == [f"r{i:02d}" for i in range(25, 50)]
    assert {e.batch_id for e in out2.present} == {out1.batch_id}
    assert reg.count("credit_entries") == 75
    with reg.db.read() as s:
        assert audit.verify(s).ok


def test_many_concurrent_batches(published):
    reg, ref = published
    rng = random.Random(7)
    batches = [sorted(rng.sample(range(300), 80)) for _ in range(8)]
    outs, errors = [None] * len(batches), []
    start = threading.Barrier(len(batches))

    def work(n):
        try:
            start.wait(10)
            outs[n] = credit(reg, ref, [result(f"r{i:03d}") for i in batches[n]], f"b{n}")
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    wanted = set().union(*map(set, batches))
    new = [r for o in outs for r in o.new_record_ids]
    assert len(new) == len(set(new)) == len(wanted)  # each record credited once
    assert {int(r[1:]) for r in new} == wanted  # and none lost
    for o, b in zip(outs, batches):
        assert sorted(o.new_record_ids + o.present_record_ids) == [f"r{i:03d}" for i in b]
    assert reg.count("credit_entries") == len(wanted)
    with reg.db.read() as s:
        assert audit.verify(s).ok


def test_the_same_idempotency_key_concurrently(published):
    reg, ref = published
    outs, errors = [], []
    start = threading.Barrier(4)

    def work():
        try:
            start.wait(10)
            outs.append(credit(reg, ref, [result("r1"), result("r2")], "same-key"))
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(o.replayed for o in outs) == [False, True, True, True]
    assert {o.batch_id for o in outs} == {outs[0].batch_id}
    assert reg.count("credit_entries") == 2 and reg.count("credit_batches") == 1


def test_the_record_as_sent_is_kept_as_jsons_text(published):
    """An entry keeps its record as json.dumps writes it (sorted keys, no spaces, UTF-8,
    str() of what JSON has no type for), the text the audit digest covers and a
    conflict check reads back; the ledger writes it with an encoder made once."""
    import decimal
    import json
    reg, ref = published
    rng = random.Random(3)
    values = [1e16, 1e-7, 2.5, float("nan"), float("inf"), -0.0, 2 ** 70, -3, True, None, "",
              "订单 \u2028 \"q\" \\ \x00 😀", [1, [2, {"b": 1, "a": 2}]], {"z": {"y": [None]}},
              decimal.Decimal("1.10"), dt.date(2024, 5, 20)]
    records = {f"t{i}": {"id": f"t{i}", "account": "acct-1",
                         **{rng.choice(["k", "é", "a b", "Z", "0"]) + str(j): rng.choice(values)
                            for j in range(rng.randrange(1, 6))}} for i in range(40)}
    with reg.uow() as s:
        out = ledger.credit(s, reg.integrator, ref, [result(i) for i in records], records=records,
                            reason="1.0.0 in force since 2024-01-01")
    expected = {i: json.dumps(r, sort_keys=True, ensure_ascii=False, separators=(",", ":"),
                              default=str) for i, r in records.items()}
    assert {e.record_id: e.record for e in out.new} == expected
    with reg.db.read() as s:
        stored = dict(s.execute(sa.select(ledger.CreditEntry.record_id, ledger.CreditEntry.record)
                                .where(ledger.CreditEntry.record_id.in_(list(records)))).all())
        assert stored == expected
        assert audit.verify(s).ok
