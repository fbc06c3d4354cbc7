"""What the database itself refuses, whatever code sends the SQL: changes to a published
version, state changes outside the lifecycle, forged votes and publications, and any
UPDATE or DELETE of the append-only tables."""

from __future__ import annotations

import datetime as dt
import importlib.util

import pytest
import sqlalchemy as sa

from registry import migrate, workflow
from registry.models import FROZEN_STATES, STATES


def raw(db, sql: str, **params):
    with db.engine.begin() as connection:
        return connection.execute(sa.text(sql), params)


def refused(db, sql: str, match: str | None = None, **params):
    with pytest.raises(sa.exc.IntegrityError, match=match):
        raw(db, sql, **params)


def _migration(name: str):
    path = migrate.MIGRATIONS / "versions" / name
    spec = importlib.util.spec_from_file_location(name[:-3], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_database_allows_exactly_the_workflows_state_changes():
    migration = _migration("0002_methodologies_and_review.py")
    assert set(migration.STATE_CHANGES) == workflow.allowed_state_changes()
    assert set(migration.FROZEN) == set(FROZEN_STATES)
    assert set(migration.STATES) == set(STATES)


@pytest.mark.parametrize("state", FROZEN_STATES)
def test_a_published_version_cannot_be_changed_or_deleted(reg, state):
    vid = reg.to_state(state, "1.0.0")
    where = {"id": vid}
    for column, value in [("source", "methodology x \"y\" version 9.9.9 {}"),
                          ("content_hash", "sha256:forged"),
                          ("diagnostics", '[{"forged": true}]'),
                          ("example_results", "[]"),
                          ("effective_from", "2030-01-01"),
                          ("review_round", 99),
                          ("version", "9.9.9"),
                          ("author_id", reg.expert)]:
        refused(reg.db, f"UPDATE methodology_versions SET {column} = :value WHERE id = :id",
                "immutable|identity", value=value, **where)
    refused(reg.db, "DELETE FROM methodology_versions WHERE id = :id", "only a draft", **where)
    refused(reg.db, "UPDATE methodology_versions SET state = 'draft' WHERE id = :id",
            "not an allowed transition", **where)
    v = reg.version(vid)
    assert (v.state, v.effective_from) == (state, dt.date(2024, 1, 1))


def test_the_workflow_cannot_edit_a_published_version_through_any_route(reg):
    vid = reg.to_state("published")
    original = reg.version(vid).source
    attempts = [
        lambda s: workflow.revise(s, reg.author, vid, "x"),
        lambda s: workflow.submit(s, reg.author, vid),
        lambda s: workflow.withdraw(s, reg.admin, vid),
        lambda s: workflow.open_review(s, reg.admin, vid),
        lambda s: workflow.publish(s, reg.admin, vid, effective_from=dt.date(2030, 1, 1)),
        lambda s: workflow.vote(s, reg.members[3], vid, "reject", "late"),
    ]
    for attempt in attempts:
        with pytest.raises(Exception) as raised:
            with reg.uow() as s:
                attempt(s)
        assert type(raised.value).__name__ in ("InvalidTransition", "Forbidden")
    # and through the ORM, bypassing the workflow: the trigger refuses at flush
    with pytest.raises(sa.exc.IntegrityError, match="immutable"):
        with reg.uow() as s:
            workflow.get_version(s, vid).source = "changed"
    assert reg.version(vid).source == original and reg.state(vid) == "published"


def test_state_changes_outside_the_lifecycle_are_refused(reg):
    allowed = workflow.allowed_state_changes()
    zoo = {state: reg.to_state(state, methodology_id=f"zoo.{state}") for state in STATES}
    tried = 0
    for source_state, vid in zoo.items():
        for target in STATES:
            if target == source_state or (source_state, target) in allowed:
                continue
            refused(reg.db, "UPDATE methodology_versions SET state = :target WHERE id = :id",
                    "not an allowed transition", target=target, id=vid)
            tried += 1
    assert tried == len(STATES) * (len(STATES) - 1) - len(allowed)


def test_a_version_is_inserted_as_a_draft(reg):
    vid = reg.to_state("draft")
    refused(reg.db, "INSERT INTO methodology_versions (methodology_id, version, major, minor, patch, "
            "source, content_hash, author_id, state, review_round, effective_from, created_at, "
            "updated_at, published_at) SELECT methodology_id, '9.0.0', 9, 0, 0, source, content_hash, "
            "author_id, 'published', 1, '2024-01-01', created_at, updated_at, created_at "
            "FROM methodology_versions WHERE id = :id", "starts as a draft", id=vid)


def test_publishing_needs_the_publication_record(reg):
    vid = reg.to_state("approved")
    refused(reg.db, "UPDATE methodology_versions SET state = 'published', effective_from = "
            "'2024-01-01', published_at = created_at WHERE id = :id", "publication record", id=vid)
    # nor can a publication be recorded for another content hash, or an unapproved version
    refused(reg.db, "INSERT INTO publications (version_id, content_hash, published_by, published_at, "
            "effective_from, review_round, min_votes, approval_numerator, approval_denominator, "
            "votes_counted, approvals) VALUES (:id, 'sha256:other', :admin, '2024-01-01', "
            "'2024-01-01', 1, 3, 2, 3, 3, 3)", "approved version|foreign key|FOREIGN KEY",
            id=vid, admin=reg.admin)
    draft = reg.to_state("in_review", "1.1.0")
    refused(reg.db, "INSERT INTO publications (version_id, content_hash, published_by, published_at, "
            "effective_from, review_round, min_votes, approval_numerator, approval_denominator, "
            "votes_counted, approvals) SELECT id, content_hash, :admin, '2024-01-01', '2024-01-01', "
            "1, 3, 2, 3, 3, 3 FROM methodology_versions WHERE id = :id",
            "only an approved version", id=draft, admin=reg.admin)


def test_votes_are_bound_to_the_content_hash_in_the_database(reg):
    vid = reg.to_state("in_review")
    insert = ("INSERT INTO votes (version_id, voter_id, review_round, content_hash, decision, "
              "conflict_of_interest, comment, cast_at) VALUES (:vid, :voter, :round, :hash, "
              "'approve', :false, '', '2024-01-01')")
    good_hash = reg.version(vid).content_hash
    false = False
    refused(reg.db, insert, "author cannot vote", vid=vid, voter=reg.author, round=1,
            hash=good_hash, false=false)
    refused(reg.db, insert, "current content hash", vid=vid, voter=reg.members[0], round=1,
            hash="sha256:old", false=false)
    refused(reg.db, insert, "current content hash", vid=vid, voter=reg.members[0], round=0,
            hash=good_hash, false=false)
    refused(reg.db, insert, "committee", vid=vid, voter=reg.outsider, round=1, hash=good_hash,
            false=false)
    refused(reg.db, insert.replace("'approve', :false", "'approve', :true"), "conflict_abstains",
            vid=vid, voter=reg.members[0], round=1, hash=good_hash, true=True)
    raw(reg.db, insert, vid=vid, voter=reg.members[0], round=1, hash=good_hash, false=false)
    # a publication can only rest on votes for the published hash (composite foreign keys)
    assert reg.count("votes") == 1


@pytest.mark.parametrize("table", ["votes", "comments", "publications", "publication_votes",
                                   "audit_log"])
def test_append_only_tables_refuse_update_and_delete(reg, table):
    reg.to_state("published")
    with reg.uow() as s:
        workflow.comment(s, reg.author, 1, "a comment")
    assert reg.count(table) > 0
    column = {"votes": "comment", "comments": "body", "publications": "approvals",
              "publication_votes": "vote_id", "audit_log": "action"}[table]
    value = 0 if column in ("approvals", "vote_id") else "forged"
    refused(reg.db, f"UPDATE {table} SET {column} = :value", "append-only", value=value)
    refused(reg.db, f"DELETE FROM {table}", "append-only")
    if reg.db.dialect == "postgresql":
        refused(reg.db, f"TRUNCATE {table} CASCADE", "append-only")


def test_published_versions_can_still_change_state_by_the_rules(reg):
    vid = reg.to_state("published")
    raw(reg.db, "UPDATE methodology_versions SET state = 'suspended' WHERE id = :id", id=vid)
    raw(reg.db, "UPDATE methodology_versions SET state = 'published' WHERE id = :id", id=vid)
    assert reg.state(vid) == "published"
