"""The lifecycle through the workflow: the happy path, submission checks, every forbidden
transition, semantic versions."""

from __future__ import annotations

import datetime as dt

import pytest

from registry import audit, workflow
from registry.errors import Forbidden, Invalid, InvalidTransition, SubmissionRejected
from registry.models import FROZEN_STATES, STATES, Publication

from .helpers import METHODOLOGY, source


def test_happy_path(reg):
    vid = reg.new_version("1.0.0")
    assert reg.state(vid) == "draft"
    with reg.uow() as s:
        v = workflow.submit(s, reg.author, vid)
        assert v.state == "submitted" and v.submitted_at is not None
        assert v.content_hash.startswith("sha256:")
        assert [e["passed"] for e in v.example_results] == [True] * 4
        assert v.diagnostics == []
    with reg.uow() as s:
        assert workflow.open_review(s, reg.members[0], vid).review_round == 1
    reg.votes(vid, "approve", "approve", "request_changes")
    with reg.uow() as s:
        q = workflow.quorum(s, vid)
        assert (q.met, q.counted, q.approvals) == (True, 3, 2), q.explanation
        workflow.approve(s, reg.admin, vid)
    with reg.uow() as s:
        publication = workflow.publish(s, reg.admin, vid, effective_from=dt.date(2024, 1, 1))
    with reg.db.read() as s:
        v = workflow.get_version(s, vid)
        assert v.state == "published" and v.effective_from == dt.date(2024, 1, 1)
        pub = s.get(Publication, publication.id)
        assert pub.content_hash == v.content_hash
        assert (pub.votes_counted, pub.approvals, pub.min_votes) == (3, 2, 3)
        assert len(pub.vote_links) == 3
        assert {link.content_hash for link in pub.vote_links} == {v.content_hash}
        actions = [e.action for e in audit.entries_for(s, "methodology_version", vid)]
        assert actions == ["version.create", "version.submit", "version.open_review",
                           "vote.cast", "vote.cast", "vote.cast", "version.approve",
                           "version.publish"]
        assert audit.verify(s).ok


def test_changes_requested_and_resubmitted(reg):
    vid = reg.to_state("changes_requested")
    with reg.uow() as s:
        workflow.revise(s, reg.author, vid, source(version="1.0.0", title="Revised title"))
        workflow.resubmit(s, reg.author, vid)
    with reg.uow() as s:
        v = workflow.open_review(s, reg.members[1], vid)
        assert (v.state, v.review_round) == ("in_review", 2)
    reg.votes(vid, "approve", "approve", "approve")
    with reg.uow() as s:
        workflow.approve(s, reg.admin, vid)
        workflow.publish(s, reg.admin, vid, effective_from=dt.date(2024, 1, 1))
    assert reg.state(vid) == "published"


def test_withdraw_back_to_draft_and_resubmit(reg):
    vid = reg.to_state("in_review")
    with reg.uow() as s:
        workflow.withdraw(s, reg.author, vid, "not ready")
    assert reg.state(vid) == "draft"
    with reg.uow() as s:
        workflow.submit(s, reg.author, vid)
    assert reg.state(vid) == "submitted"


# ---------------------------------------------------------------- submission checks
@pytest.mark.parametrize("problem, expect", [
    ({"broken": True}, "does not compile"),
    ({"failing_example": True}, r"1 of 4 example\(s\) fail"),
])
def test_a_version_that_does_not_compile_or_fails_examples_cannot_be_submitted(reg, problem, expect):
    vid = reg.new_version("1.0.0", **problem)
    with pytest.raises(SubmissionRejected, match=expect) as raised:
        with reg.uow() as s:
            workflow.submit(s, reg.author, vid)
    if "broken" in problem:
        assert raised.value.diagnostics and raised.value.diagnostics[0]["severity"] == "error"
    else:
        failed = [e for e in raised.value.example_results if not e["passed"]]
        assert [e["title"] for e in failed] == ["E1.1 e-bus, 8.2 km"]
        assert "expected reduction 221 g, got 220.58 g (-420 mg)" in failed[0]["failures"][0]
    assert reg.state(vid) == "draft"


def test_the_source_must_declare_the_versions_id_and_number(reg):
    with reg.uow() as s:
        vid = workflow.create_version(s, reg.author, METHODOLOGY, "1.0.0",
                                      source(version="1.0.1")).id
    with pytest.raises(SubmissionRejected, match="declares version 1.0.1, not 1.0.0"):
        with reg.uow() as s:
            workflow.submit(s, reg.author, vid)


def test_a_version_without_examples_cannot_be_submitted(reg):
    text = source().split('example "E1.1')[0]
    with reg.uow() as s:
        vid = workflow.create_version(s, reg.author, METHODOLOGY, "1.0.0", text).id
    with pytest.raises(SubmissionRejected, match="has no examples"):
        with reg.uow() as s:
            workflow.submit(s, reg.author, vid)


def test_revising_under_review_must_stay_submittable(reg):
    vid = reg.to_state("in_review")
    with pytest.raises(SubmissionRejected):
        with reg.uow() as s:
            workflow.revise(s, reg.author, vid, source(failing_example=True))
    assert reg.version(vid).source == source()


# ---------------------------------------------------------------- forbidden transitions
def _actions(reg):
    """Each action, done by someone allowed to do it (so only the state can forbid it)."""
    return {
        "submit": lambda s, v: workflow.submit(s, reg.author, v),
        "open_review": lambda s, v: workflow.open_review(s, reg.members[0], v),
        "request_changes": lambda s, v: workflow.request_changes(s, reg.members[0], v, "fix"),
        "resubmit": lambda s, v: workflow.resubmit(s, reg.author, v),
        "approve": lambda s, v: workflow.approve(s, reg.admin, v),
        "reject": lambda s, v: workflow.reject(s, reg.admin, v, "no"),
        "withdraw": lambda s, v: workflow.withdraw(s, reg.author, v),
        "publish": lambda s, v: workflow.publish(s, reg.admin, v, effective_from=dt.date(2025, 1, 1)),
        "suspend": lambda s, v: workflow.suspend(s, reg.admin, v, "why"),
        "reinstate": lambda s, v: workflow.reinstate(s, reg.admin, v, "why"),
        "retire": lambda s, v: workflow.retire(s, reg.admin, v, "why"),
        "revise": lambda s, v: workflow.revise(s, reg.author, v, source(title="Changed")),
        "vote": lambda s, v: workflow.vote(s, reg.members[3], v, "approve"),
    }


@pytest.fixture
def zoo(reg):
    """One version in every state (each of its own methodology)."""
    return {state: reg.to_state(state, methodology_id=f"zoo.{state}") for state in STATES}


def test_every_forbidden_transition_is_refused(reg, zoo):
    actions = _actions(reg)
    revisable = {"draft", "changes_requested", "submitted", "resubmitted", "in_review", "approved"}
    refused = 0
    for action, do in actions.items():
        if action == "revise":
            allowed_from = revisable
        elif action == "vote":
            allowed_from = {"in_review"}
        else:
            allowed_from = set(workflow.TRANSITIONS[action].sources)
        for state, vid in zoo.items():
            if state in allowed_from:
                continue
            with pytest.raises(InvalidTransition) as raised:
                with reg.uow() as s:
                    do(s, vid)
            if state in FROZEN_STATES and action == "revise":
                assert "immutable" in str(raised.value)
            assert reg.state(vid) == state, (action, state)
            refused += 1
    assert refused > 100


def test_internal_transitions_are_in_the_table(reg):
    # reset_review and supersede are made by revise and publish, never called directly
    assert ("approved", "in_review") in workflow.allowed_state_changes()
    assert ("published", "superseded") in workflow.allowed_state_changes()


# ---------------------------------------------------------------- semantic versions
@pytest.mark.parametrize("bad", ["1.0", "1.0.0.0", "01.0.0", "1.0.0-rc1", "v1.0.0", ""])
def test_version_numbers_are_semver(reg, bad):
    with pytest.raises(Invalid, match="MAJOR.MINOR.PATCH"):
        with reg.uow() as s:
            workflow.create_version(s, reg.author, METHODOLOGY, bad, source())


def test_a_new_version_must_be_greater_than_the_last(reg):
    reg.new_version("1.2.0")
    for lower in ("1.2.0", "1.1.9", "0.9.0"):
        with pytest.raises(Invalid, match="must be greater than 1.2.0"):
            reg.new_version(lower)
    reg.new_version("1.2.1")
    reg.new_version("1.10.0")  # numeric, not text, order
    with pytest.raises(Invalid, match="greater than 1.10.0"):
        reg.new_version("1.9.0")
    reg.new_version("2.0.0")


def test_versions_are_published_in_order(reg):
    v110 = reg.to_state("approved", "1.1.0")
    v120 = reg.to_state("approved", "1.2.0")
    with reg.uow() as s:
        workflow.publish(s, reg.admin, v120, effective_from=dt.date(2024, 1, 1))
    with pytest.raises(Invalid, match="1.2.0 is already published"):
        with reg.uow() as s:
            workflow.publish(s, reg.admin, v110, effective_from=dt.date(2024, 6, 1))


def test_a_successor_takes_effect_after_its_predecessor(reg):
    reg.to_state("published", "1.0.0", effective_from=dt.date(2024, 3, 1))
    v2 = reg.to_state("approved", "1.1.0")
    with pytest.raises(Invalid, match="must take effect after 1.0.0"):
        with reg.uow() as s:
            workflow.publish(s, reg.admin, v2, effective_from=dt.date(2024, 3, 1))


def test_only_experts_create_versions(reg):
    for who in (reg.members[0], reg.integrator, reg.admin):
        with pytest.raises(Forbidden):
            with reg.uow() as s:
                workflow.create_version(s, who, METHODOLOGY, "1.0.0", source())
