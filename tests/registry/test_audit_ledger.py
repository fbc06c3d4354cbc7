"""The audit chain covers the ledger's rows (issue 17): a credit entry, reversal,
retirement or redemption inserted, changed or deleted with database access (the
append-only triggers switched off) is found by `audit.verify`; a chain rewritten from
some entry onward verifies on its own, but not against a head published before
(`verify(head=...)`, `tanpu audit verify --head`, `tanpu audit head`)."""

from __future__ import annotations

import json

import sqlalchemy as sa
from click.testing import CliRunner

from registry import audit, ledger, retirements, reversals
from registry.models import AuditEntry
from tanpu.cli import main

from .test_audit import disable_guards, raw
from .test_rewards import redeem, reward, world  # noqa: F401  (world: a fixture)


def verify(reg, **kw):
    with reg.db.read() as s:
        return audit.verify(s, **kw)


def unguard(reg, *tables):
    """What an attacker with DDL rights does first to the ledger's tables."""
    for table in tables:
        if reg.db.dialect == "postgresql":
            raw(reg.db, f"ALTER TABLE {table} DISABLE TRIGGER USER")
        else:
            for operation in ("update", "delete"):
                raw(reg.db, f"DROP TRIGGER IF EXISTS {table}_no_{operation}")


def busy(world):
    """A ledger with credits, a redemption, a reversal and a retirement."""
    reg, _ref, account = world
    redeem(reg, account, reward(reg, price_points=100), "order-1")
    with reg.db.read() as s:
        entries = ledger.entries_of_account(s, str(account))
    with reg.uow() as s:
        reversals.reverse(s, reg.admin, entries[-1].id, reason="GPS track faked")
        retirements.retire(s, reg.admin, account, 2_500, "event offset")
    return reg, account, entries


def test_an_honest_ledger_is_covered(world):
    reg, _account, _entries = busy(world)
    result = verify(reg)
    # 10 credit entries, 1 reversal, 1 retirement, 1 redemption
    assert result.ok and result.ledger_problems == [] and result.ledger_rows == 13
    assert "13 ledger rows covered" in str(result)


def test_a_forged_credit_row_is_found(world):
    reg, account, entries = busy(world)
    # a copy of a real entry under a new record id, in the same batch
    raw(reg.db, "INSERT INTO credit_entries (batch_id, integrator_id, account, methodology_id, "
        "version, content_hash, record_id, activity_time, reduction_mg, points, bonus, status, "
        "reason, credited_at, code, message, record) SELECT batch_id, integrator_id, account, "
        "methodology_id, version, content_hash, 'forged-1', activity_time, 50000000, points, "
        "bonus, status, reason, credited_at, code, message, record FROM credit_entries "
        "WHERE id = :id", id=entries[0].id)
    result = verify(reg)
    assert not result.ok and len(result.ledger_problems) == 1
    assert f"credit batch {entries[0].batch_id}: its 11 ledger row(s) are not the 10" in \
        result.ledger_problems[0]
    assert "not what it recorded" in str(result)


def test_a_row_in_a_batch_nobody_recorded_is_found(world):
    reg, account, entries = busy(world)
    with reg.db.engine.begin() as c:
        batch = c.execute(sa.text(
            "INSERT INTO credit_batches (idempotency_key, request_digest, actor_id, methodology_id,"
            " version, content_hash, created_at) SELECT 'evil', request_digest, actor_id, "
            "methodology_id, version, content_hash, created_at FROM credit_batches WHERE id = :b "
            "RETURNING id"), {"b": entries[0].batch_id}).scalar()
        c.execute(sa.text(
            "INSERT INTO credit_entries (batch_id, integrator_id, account, methodology_id, version,"
            " content_hash, record_id, activity_time, reduction_mg, points, bonus, status, reason,"
            " credited_at, code, message, record) SELECT :b, integrator_id, account, "
            "methodology_id, version, content_hash, 'forged-2', activity_time, reduction_mg, "
            "points, bonus, status, reason, credited_at, code, message, record FROM credit_entries"
            " WHERE id = :id"), {"b": batch, "id": entries[0].id})
    result = verify(reg)
    assert not result.ok
    assert result.ledger_problems == [f"credit batch {batch}: 1 ledger row(s) that no audit entry "
                                      f"records (inserted behind the ledger's back)"]


def test_a_changed_or_deleted_credit_row_is_found(world):
    reg, account, entries = busy(world)
    unguard(reg, "credit_entries")
    # a change the balance does not see: the status (capped -> credited) ...
    raw(reg.db, "UPDATE credit_entries SET status = 'capped' WHERE id = :id", id=entries[1].id)
    assert [p.split(":")[0] for p in verify(reg).ledger_problems] == [
        f"credit batch {entries[1].batch_id}"]
    raw(reg.db, "UPDATE credit_entries SET status = 'credited' WHERE id = :id", id=entries[1].id)
    assert verify(reg).ok  # put back as it was: covered again
    # ... what it moved (counters and rewards, issue 12): none recorded, one written in
    raw(reg.db, "UPDATE credit_entries SET counters = 'voucher=9' WHERE id = :id", id=entries[1].id)
    assert [p.split(":")[0] for p in verify(reg).ledger_problems] == [
        f"credit batch {entries[1].batch_id}"]
    raw(reg.db, "UPDATE credit_entries SET counters = '' WHERE id = :id", id=entries[1].id)
    assert verify(reg).ok
    # ... and the evidence: the record as sent
    raw(reg.db, "UPDATE credit_entries SET record = '{\"distance\": \"900 km\"}' WHERE id = :id",
        id=entries[2].id)
    assert not verify(reg).ok
    # a credit nothing else refers to (no reversal, no retirement part) removed
    raw(reg.db, "DELETE FROM credit_entries WHERE id = :id", id=entries[5].id)
    problems = verify(reg).ledger_problems
    assert problems == [f"credit batch {entries[0].batch_id}: its 9 ledger row(s) are not the 10 "
                        f"its audit entry recorded (changed, added or removed rows)"]


def test_changed_reversals_retirements_and_redemptions_are_found(world):
    reg, account, _entries = busy(world)
    unguard(reg, "reversals", "retirements", "redemptions")
    raw(reg.db, "UPDATE reversals SET reason = 'typo'")
    raw(reg.db, "UPDATE retirements SET reduction_mg = 1")
    raw(reg.db, "UPDATE redemptions SET points = 1")
    problems = verify(reg).ledger_problems
    assert [p.split(" ")[0] for p in problems] == ["reversal", "retirement", "redemption"]
    assert all("is not what its audit entry recorded (changed)" in p for p in problems)
    raw(reg.db, "DELETE FROM reversals")
    raw(reg.db, "INSERT INTO redemptions (account_id, reward_id, actor_id, idempotency_key, "
        "points, period_key, created_at) SELECT account_id, reward_id, actor_id, 'free', points,"
        " period_key, created_at FROM redemptions")
    problems = verify(reg).ledger_problems
    assert any(p.startswith("reversal ") and p.endswith("not in the ledger (removed)")
               for p in problems)
    assert any(p.startswith("redemption ") and "no audit entry records" in p for p in problems)


def rewrite_from(reg, seq: int) -> None:
    """What someone who can switch off every trigger does to hide a change: edit entry
    `seq` and recompute every hash from there on, so the chain verifies again."""
    disable_guards(reg.db)
    with reg.db.read() as s:
        rows = list(s.scalars(sa.select(AuditEntry).where(AuditEntry.seq >= seq)
                              .order_by(AuditEntry.seq)))
        prev = s.scalar(sa.select(AuditEntry.hash).where(AuditEntry.seq == seq - 1))
        s.expunge_all()
    rows[0].details = {**rows[0].details, "rewritten": True}
    for row in rows:  # unique hashes: write them to temporary values first
        raw(reg.db, "UPDATE audit_log SET hash = :h, prev_hash = :p WHERE seq = :s",
            h=f"tmp{row.seq}", p=f"tmpp{row.seq}", s=row.seq)
    for row in rows:
        row.prev_hash = prev
        row.hash = audit.hash_of(row)
        raw(reg.db, "UPDATE audit_log SET details = :d, prev_hash = :p, hash = :h WHERE seq = :s",
            d=json.dumps(row.details), p=row.prev_hash, h=row.hash, s=row.seq)
        prev = row.hash


def test_a_rewritten_chain_fails_against_a_published_head(world):
    reg, _account, _entries = world
    with reg.db.read() as s:
        published = audit.head_entry(s)
        middle = s.scalar(sa.select(AuditEntry.hash).where(AuditEntry.seq == 5))
    assert verify(reg, head=published["hash"]).ok and verify(reg, head=middle).ok
    rewrite_from(reg, 3)
    assert verify(reg).ok  # on its own, a rewritten chain is a valid chain
    for head in (published["hash"], middle):
        result = verify(reg, head=head)
        assert not result.ok and "no longer passes through head" in str(result)

    url = reg.db.engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    out = runner.invoke(main, ["audit", "verify", "--head", published["hash"]],
                        env={"DATABASE_URL": url})
    assert out.exit_code == 1 and "rewritten or cut" in out.output
    out = runner.invoke(main, ["audit", "head"], env={"DATABASE_URL": url})
    now = json.loads(out.output)
    assert out.exit_code == 0 and now["seq"] == published["seq"] and now["hash"] != published["hash"]
    out = runner.invoke(main, ["audit", "verify", "--head", now["hash"]], env={"DATABASE_URL": url})
    assert out.exit_code == 0 and "ledger rows covered" in out.output
