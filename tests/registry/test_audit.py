"""The audit chain: every change appends an entry; the chain verifies; tampering with raw
SQL (after switching off the triggers that refuse it) is found at the first broken entry."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from registry import audit
from registry.models import AuditEntry


def raw(db, sql, **params):
    with db.engine.begin() as connection:
        connection.execute(sa.text(sql), params)


def disable_guards(db):
    """What an attacker with DDL rights would do first."""
    if db.dialect == "postgresql":
        raw(db, "ALTER TABLE audit_log DISABLE TRIGGER USER")
    else:
        for name in ("audit_log_no_update", "audit_log_no_delete", "audit_log_chain_1"):
            raw(db, f"DROP TRIGGER {name}")


def verify(db):
    with db.read() as s:
        return audit.verify(s)


def test_every_change_is_in_the_chain(reg):
    vid = reg.to_state("published")
    with reg.db.read() as s:
        entries = list(s.scalars(sa.select(AuditEntry).order_by(AuditEntry.seq)))
    actions = [e.action for e in entries]
    assert actions.count("user.create") == 10
    assert "committee.add_member" in actions and "methodology.create" in actions
    assert actions[-1] == "version.publish"
    publish = entries[-1]
    assert publish.actor_id == reg.admin and publish.object_id == str(vid)
    assert publish.details["to"] == "published" and len(publish.details["vote_ids"]) == 3
    assert entries[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:]))
    result = verify(reg.db)
    assert result.ok and result.checked == len(entries) and result.head == entries[-1].hash
    assert str(result).startswith(f"audit chain ok: {len(entries)} entries")


def test_a_changed_entry_is_detected(reg):
    assert verify(reg.db).ok
    disable_guards(reg.db)
    raw(reg.db, """UPDATE audit_log SET details = '{"email": "mallory@evil.test"}' WHERE seq = 5""")
    result = verify(reg.db)
    assert not result.ok and result.first_broken.seq == 5 and result.checked == 4
    assert "does not match its hash" in result.problem


def test_a_rehashed_entry_breaks_the_next_link(reg):
    disable_guards(reg.db)
    with reg.db.read() as s:
        entry = s.get(AuditEntry, 3)
        entry.actor_id = reg.members[0]
        forged = audit.hash_of(entry)
    raw(reg.db, "UPDATE audit_log SET actor_id = :actor, hash = :hash WHERE seq = 3",
        actor=reg.members[0], hash=forged)
    result = verify(reg.db)
    assert not result.ok and result.first_broken.seq == 4
    assert "prev_hash" in result.problem


def test_a_removed_entry_is_detected(reg):
    disable_guards(reg.db)
    raw(reg.db, "DELETE FROM audit_log WHERE seq = 7")
    result = verify(reg.db)
    assert not result.ok and result.first_broken.seq == 8 and "expected entry 7" in result.problem


def test_the_database_refuses_changes_and_forged_appends(reg):
    with pytest.raises(sa.exc.IntegrityError, match="append-only"):
        raw(reg.db, "UPDATE audit_log SET action = 'x' WHERE seq = 1")
    with pytest.raises(sa.exc.IntegrityError, match="append-only"):
        raw(reg.db, "DELETE FROM audit_log WHERE seq = 1")
    with reg.db.read() as s:
        last = s.scalar(sa.select(sa.func.max(AuditEntry.seq)))
    insert = ("INSERT INTO audit_log (seq, at, actor_id, action, object_type, object_id, details, "
              "prev_hash, hash) VALUES (:seq, '2024-01-01', NULL, 'x', 'x', 'x', '{}', :prev, :hash)")
    with pytest.raises(sa.exc.IntegrityError, match="continue the chain"):
        raw(reg.db, insert, seq=last + 1, prev="f" * 64, hash="e" * 64)
    with reg.db.read() as s:
        head = audit.head(s)
    with pytest.raises(sa.exc.IntegrityError, match="continue the chain"):
        raw(reg.db, insert, seq=last + 5, prev=head, hash="e" * 64)
    assert verify(reg.db).ok


@pytest.mark.parametrize("append", [audit.append, audit.append_at_commit],
                         ids=["at_once", "at_commit"])
def test_concurrent_appends_keep_one_chain(reg, append):
    """Four threads appending in their own transactions, at once or at commit (on
    PostgreSQL the entry, the chain's lock and the COMMIT in one round trip): one chain."""
    errors = []
    action = f"test.{append.__name__}"

    def work(n):
        try:
            for i in range(8):
                with reg.db.unit_of_work() as s:
                    append(s, None, action, "thread", n, {"i": i})
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    result = verify(reg.db)
    assert result.ok and reg.count("audit_log") == result.checked
    with reg.db.read() as s:
        assert s.scalar(sa.select(sa.func.count()).where(AuditEntry.action == action)) == 32


def test_details_round_trip_with_unicode_and_numbers(reg):
    with reg.uow() as s:
        audit.append(s, reg.admin, "test.details", "x", 1,
                     {"名称": "深圳", "n": 12345678901234, "f": 0.1, "nested": [1, {"a": None}]})
    assert verify(reg.db).ok


def test_entries_appended_at_commit_continue_the_chain(reg):
    """append_at_commit: on PostgreSQL the server computes the entry's hash from the
    canonical JSON Python made of the other fields (audit._PG_APPEND) and the COMMIT goes
    in the same round trip; the chain verifies in Python (entry_hash), whatever the
    details hold, with entries appended at once in the same transaction first."""
    details = {"名称": "深圳", "n": 12345678901234, "f": 0.1, "nested": [1, {"a": None}],
               "quote": 'a "b" \\ c', "seq": 3, "prev_hash": "x"}
    with reg.uow() as s:
        audit.append_at_commit(s, None, "test.later", "x", 1, details)
        audit.append(s, reg.admin, "test.now", "x", 2, {"k": 1})
        audit.append_at_commit(s, reg.admin, "test.later", "x", 3, {})
    result = verify(reg.db)
    assert result.ok, str(result)
    with reg.db.read() as s:
        rows = s.execute(sa.select(AuditEntry.action, AuditEntry.object_id, AuditEntry.details,
                                   AuditEntry.actor_id).order_by(AuditEntry.seq.desc()).limit(3)).all()
    assert [(r.action, r.object_id) for r in reversed(rows)] == [
        ("test.now", "2"), ("test.later", "1"), ("test.later", "3")]
    assert rows[1].details == details and rows[0].actor_id == reg.admin


def test_an_entry_at_commit_is_dropped_with_a_rollback_and_waits_for_the_outer_commit(reg):
    """A rolled-back transaction appends nothing; a session joined to a caller's
    connection, or a savepoint released, does not end the caller's transaction."""
    before = reg.count("audit_log")
    with pytest.raises(RuntimeError):
        with reg.uow() as s:
            audit.append_at_commit(s, None, "test.later", "x", 1, {})
            raise RuntimeError("rolled back")
    assert reg.count("audit_log") == before
    with reg.db.engine.connect() as connection:
        outer = connection.begin()
        session = sa.orm.Session(bind=connection, join_transaction_mode="create_savepoint")
        audit.append_at_commit(session, None, "test.later", "x", 2, {})
        session.commit()  # the savepoint's: the caller's transaction goes on
        session.close()
        assert connection.in_transaction()
        outer.rollback()
    assert reg.count("audit_log") == before
    with reg.uow() as s:
        with s.begin_nested():
            audit.append_at_commit(s, None, "test.later", "x", 3, {})
        assert s.in_transaction()
        audit.append(s, None, "test.now", "x", 4, {})
    assert reg.count("audit_log") == before + 2 and verify(reg.db).ok
