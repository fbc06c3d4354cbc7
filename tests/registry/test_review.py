"""Committee review: who may vote, conflicts of interest, the quorum rule, a change after
votes resetting the review, and who may approve and publish."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from registry import workflow
from registry.errors import Conflict, Forbidden, Invalid, InvalidTransition, QuorumNotMet
from registry.models import Vote

from .helpers import source


def _vote(reg, voter, vid, decision="approve", comment="ok"):
    with reg.uow() as s:
        return workflow.vote(s, voter, vid, decision, comment)


# ---------------------------------------------------------------- who votes
def test_the_author_cannot_vote_on_their_own_submission(reg):
    vid = reg.to_state("in_review")  # the author is a member of the transport committee
    with pytest.raises(Forbidden, match="author cannot vote"):
        _vote(reg, reg.author, vid)
    assert reg.count("votes") == 0


def test_an_expert_cannot_vote(reg):
    vid = reg.to_state("in_review")
    with pytest.raises(Forbidden, match="committee member role"):
        _vote(reg, reg.expert, vid)


def test_only_members_of_the_methodologys_committee_vote(reg):
    vid = reg.to_state("in_review")
    with pytest.raises(Forbidden, match="transport committee"):
        _vote(reg, reg.outsider, vid)
    for who in (reg.admin, reg.integrator):
        with pytest.raises(Forbidden):
            _vote(reg, who, vid)


def test_one_vote_per_member_per_round(reg):
    vid = reg.to_state("in_review")
    _vote(reg, reg.members[0], vid)
    with pytest.raises(Conflict, match="already voted"):
        _vote(reg, reg.members[0], vid, "reject", "changed my mind")


def test_votes_other_than_approve_need_a_comment(reg):
    vid = reg.to_state("in_review")
    for decision in ("request_changes", "reject"):
        with pytest.raises(Invalid, match="needs a comment"):
            _vote(reg, reg.members[0], vid, decision, "  ")
    with pytest.raises(Invalid, match="decision"):
        _vote(reg, reg.members[0], vid, "maybe")


def test_votes_only_during_review(reg):
    vid = reg.to_state("submitted")
    with pytest.raises(InvalidTransition, match="during a review"):
        _vote(reg, reg.members[0], vid)


def test_a_conflict_of_interest_abstains(reg):
    vid = reg.to_state("in_review")
    with pytest.raises(Invalid, match="conflict of interest needs a comment"):
        with reg.uow() as s:
            workflow.declare_conflict(s, reg.members[0], vid, "")
    with reg.uow() as s:
        row = workflow.declare_conflict(s, reg.members[0], vid, "I consult for the bus operator")
        assert (row.decision, row.conflict_of_interest) == ("abstain", True)
    reg.votes(vid, "approve", "approve", voters=reg.members[1:3])
    with reg.uow() as s:
        q = workflow.quorum(s, vid)
        assert (q.met, q.counted, q.abstentions, q.conflicts) == (False, 2, 1, 1)
    with pytest.raises(QuorumNotMet, match="2 vote"):
        with reg.uow() as s:
            workflow.approve(s, reg.admin, vid)
    _vote(reg, reg.members[3], vid)
    with reg.uow() as s:
        assert workflow.quorum(s, vid).met
        workflow.approve(s, reg.admin, vid)


# ---------------------------------------------------------------- quorum
@pytest.mark.parametrize("decisions, met", [
    (("approve", "approve", "approve"), True),
    (("approve", "approve", "request_changes"), True),  # 2/3 is enough
    (("approve", "approve", "reject"), True),
    (("approve", "reject", "request_changes"), False),  # 1/3
    (("approve", "approve"), False),  # too few votes
    (("approve", "approve", "reject", "reject"), False),  # 2/4 < 2/3
])
def test_default_quorum_is_three_votes_and_two_thirds(reg, decisions, met):
    vid = reg.to_state("in_review")
    reg.votes(vid, *decisions)
    with reg.uow() as s:
        q = workflow.quorum(s, vid)
    assert (q.min_votes, q.numerator, q.denominator) == (3, 2, 3)
    assert q.met is met, q.explanation


def test_the_quorum_is_configurable_per_committee(reg):
    with pytest.raises(Forbidden):
        with reg.uow() as s:
            workflow.set_quorum(s, reg.members[0], reg.committee, min_votes=1, approval_share=(1, 2))
    with pytest.raises(Invalid):
        with reg.uow() as s:
            workflow.set_quorum(s, reg.admin, reg.committee, min_votes=2, approval_share=(3, 2))
    with reg.uow() as s:
        workflow.set_quorum(s, reg.admin, reg.committee, min_votes=2, approval_share=(1, 1))
    vid = reg.to_state("in_review")  # opened under unanimity of 2
    reg.votes(vid, "approve", "reject")
    with reg.uow() as s:
        assert not workflow.quorum(s, vid).met  # unanimity needed
    third = reg.to_state("in_review", version="2.0.0")
    reg.votes(third, "approve", "approve")
    with reg.uow() as s:
        assert workflow.quorum(s, third).met
        workflow.approve(s, reg.admin, third)


# ---------------------------------------------------------------- quorum integrity (issue 15)
def test_a_quorum_change_during_a_round_applies_to_the_next_round(reg):
    """An administrator lowering the quorum to 1 in the middle of a review cannot approve
    with one vote: the round keeps the rule it was opened under."""
    vid = reg.to_state("in_review")
    with reg.uow() as s:
        workflow.set_quorum(s, reg.admin, reg.committee, min_votes=1, approval_share=(1, 2))
    reg.votes(vid, "approve", "approve")
    with reg.uow() as s:
        q = workflow.quorum(s, vid)
        assert (q.met, q.min_votes, q.numerator, q.denominator) == (False, 3, 2, 3)
    with pytest.raises(QuorumNotMet):
        with reg.uow() as s:
            workflow.approve(s, reg.admin, vid)
    with reg.uow() as s:  # a new content hash opens a new round, under the rule of now
        workflow.revise(s, reg.author, vid, source(title="Shenzhen transit, round two"))
    reg.votes(vid, "approve", "approve")
    with reg.uow() as s:
        q = workflow.quorum(s, vid)
        assert (q.review_round, q.min_votes, q.met) == (2, 1, True)


def test_votes_of_people_removed_or_without_the_role_no_longer_count(reg):
    from registry import users
    vid = reg.to_state("in_review")
    reg.votes(vid, "approve", "approve", "approve")
    with reg.uow() as s:
        workflow.remove_member(s, reg.admin, reg.committee, reg.members[0])
        users.revoke_role(s, reg.admin, reg.members[1], "committee_member")
    with reg.uow() as s:
        q = workflow.quorum(s, vid)
        assert (q.met, q.counted, len(q.discounted)) == (False, 1, 2)
        assert "votes" in q.explanation and "no longer counted" in q.explanation
    with pytest.raises(QuorumNotMet):
        with reg.uow() as s:
            workflow.approve(s, reg.admin, vid)
    _vote(reg, reg.members[3], vid)
    with reg.uow() as s:  # 2 counted: still one short of 3
        assert not workflow.quorum(s, vid).met
    with reg.uow() as s:  # a member again: the vote they cast counts again
        workflow.add_member(s, reg.admin, reg.committee, reg.members[0])
    with reg.uow() as s:
        assert workflow.quorum(s, vid).met
        workflow.approve(s, reg.admin, vid)


def test_approval_needs_two_approving_people(reg):
    with reg.uow() as s:
        workflow.set_quorum(s, reg.admin, reg.committee, min_votes=1, approval_share=(1, 2))
    vid = reg.to_state("in_review")
    reg.votes(vid, "approve")
    with reg.uow() as s:
        q = workflow.quorum(s, vid)
        assert not q.met and "2 needed" in q.explanation
    reg.votes(vid, "approve", voters=[reg.members[1]])
    with reg.uow() as s:
        assert workflow.quorum(s, vid).met


def test_one_administrator_cannot_publish_alone(reg):
    """Add themselves to the committee, lower the quorum to 1, vote, approve, publish: the
    round keeps its rule, and a rule changer cannot be the only approver."""
    from registry import users
    vid = reg.to_state("in_review")
    with reg.uow() as s:
        users.grant_role(s, reg.admin, reg.admin2, "committee_member")
        workflow.add_member(s, reg.admin2, reg.committee, reg.admin2)
        workflow.set_quorum(s, reg.admin2, reg.committee, min_votes=1, approval_share=(1, 2))
    reg.votes(vid, "approve", voters=[reg.admin2])
    with pytest.raises(QuorumNotMet):
        with reg.uow() as s:
            workflow.approve(s, reg.admin, vid)
    # with the rule of the round met, the rule changers alone still cannot carry it
    with reg.uow() as s:
        users.grant_role(s, reg.admin2, reg.admin, "committee_member")
        workflow.add_member(s, reg.admin, reg.committee, reg.admin)  # admin: a changer now too
    reg.votes(vid, "approve", voters=[reg.admin])
    with reg.uow() as s:
        q = workflow.quorum(s, vid)
        assert (q.counted, q.approvals) == (2, 2) and q.min_votes == 3
    reg.votes(vid, "approve", voters=[reg.members[0]])
    with reg.uow() as s:
        q = workflow.quorum(s, vid)
        assert q.met and set(q.rule_changers) == {reg.admin, reg.admin2}, q.explanation


def test_only_rule_changers_approving_is_not_enough(reg):
    vid = reg.to_state("in_review")
    with reg.uow() as s:
        workflow.set_quorum(s, reg.admin, reg.committee, min_votes=2, approval_share=(1, 2))
        for who in (reg.admin, reg.admin2):
            from registry import users
            users.grant_role(s, reg.admin, who, "committee_member")
            workflow.add_member(s, who, reg.committee, who)
    reg.votes(vid, "approve", "approve", "approve", voters=[reg.admin, reg.admin2, reg.members[0]])
    with reg.uow() as s:
        assert workflow.quorum(s, vid).met  # a member who changed nothing approves too
    other = reg.to_state("in_review", version="2.0.0")  # opened now: min 2 of 1/2
    with reg.uow() as s:
        workflow.remove_member(s, reg.admin, reg.committee, reg.members[3])
        workflow.remove_member(s, reg.admin2, reg.committee, reg.members[2])
    reg.votes(other, "approve", "approve", voters=[reg.admin, reg.admin2])
    with reg.uow() as s:
        q = workflow.quorum(s, other)
        assert not q.met and "changed the committee's rules" in q.explanation


def test_a_quorum_that_can_no_longer_be_met_says_so(reg):
    """Conflict-of-interest abstentions leave too few members: the round cannot reach
    three votes, and quorum() says so before anyone waits for it."""
    vid = reg.to_state("in_review")
    with reg.uow() as s:
        q = workflow.quorum(s, vid)
        assert q.reachable and q.waiting == sorted(reg.members)
    with reg.uow() as s:
        workflow.declare_conflict(s, reg.members[0], vid, "I wrote the data source")
    with reg.uow() as s:
        assert workflow.quorum(s, vid).reachable  # 3 members left for 3 votes
    with reg.uow() as s:
        workflow.declare_conflict(s, reg.members[1], vid, "I work for the operator")
    with reg.uow() as s:
        q = workflow.quorum(s, vid)
        assert (q.reachable, q.waiting) == (False, sorted(reg.members[2:]))  # 2 left for 3 votes
    with reg.uow() as s:  # a new member makes it reachable again
        from registry import users
        users.grant_role(s, reg.admin, reg.expert, "committee_member")
        workflow.add_member(s, reg.admin, reg.committee, reg.expert)
    with reg.uow() as s:
        assert workflow.quorum(s, vid).reachable


# ---------------------------------------------------------------- a change resets the review
def test_a_change_after_votes_resets_the_review(reg):
    vid = reg.to_state("in_review")
    reg.votes(vid, "approve", "approve")
    old_hash = reg.version(vid).content_hash
    with reg.uow() as s:
        v = workflow.revise(s, reg.author, vid, source(title="Shenzhen public transport, revised"))
        assert v.content_hash != old_hash and v.review_round == 2 and v.state == "in_review"
        q = workflow.quorum(s, vid)
        assert (q.counted, q.review_round, q.content_hash) == (0, 2, v.content_hash)
    # the earlier votes stay on record, bound to the hash they were cast on
    with reg.db.read() as s:
        assert {(x.review_round, x.content_hash) for x in s.query(Vote)} == {(1, old_hash)}
    # the same members vote again, on the new content
    reg.votes(vid, "approve", "approve", "approve")
    with reg.uow() as s:
        assert workflow.quorum(s, vid).met


def test_a_change_after_approval_sends_it_back_to_review(reg):
    vid = reg.to_state("approved")
    with reg.uow() as s:
        v = workflow.revise(s, reg.author, vid, source(title="Changed after approval"))
        assert (v.state, v.review_round) == ("in_review", 2)
    with pytest.raises(InvalidTransition):
        with reg.uow() as s:
            workflow.publish(s, reg.admin, vid, effective_from=dt.date(2024, 1, 1))


def test_reformatting_keeps_the_content_hash_and_the_votes(reg):
    vid = reg.to_state("in_review")
    reg.votes(vid, "approve", "approve", "approve")
    with reg.uow() as s:
        v = workflow.revise(s, reg.author, vid, source(comment="a comment changes no content"))
        assert v.review_round == 1
        assert workflow.quorum(s, vid).met


def test_only_the_author_revises(reg):
    vid = reg.to_state("draft")
    for who in (reg.expert, reg.admin, reg.members[0]):
        with pytest.raises(Forbidden):
            with reg.uow() as s:
                workflow.revise(s, who, vid, source(title="not mine"))


# ---------------------------------------------------------------- approve and publish
def test_publish_is_refused_without_quorum(reg):
    vid = reg.to_state("in_review")
    reg.votes(vid, "approve", "reject", "request_changes")
    with pytest.raises(QuorumNotMet, match="1 approving"):
        with reg.uow() as s:
            workflow.approve(s, reg.admin, vid)
    # approved under a 2-vote rule, then an approving member leaves the committee:
    # publish re-checks, and that vote no longer counts
    with reg.uow() as s:
        workflow.set_quorum(s, reg.admin, reg.committee, min_votes=2, approval_share=(2, 3))
    vid2 = reg.to_state("in_review", "1.1.0")
    reg.votes(vid2, "approve", "approve")
    with reg.uow() as s:
        workflow.approve(s, reg.admin, vid2)
    with reg.uow() as s:  # a tighter rule now applies to later rounds only
        workflow.set_quorum(s, reg.admin, reg.committee, min_votes=4, approval_share=(2, 3))
        workflow.remove_member(s, reg.admin, reg.committee, reg.members[1])
    with pytest.raises(QuorumNotMet, match="needs 2 votes"):
        with reg.uow() as s:
            workflow.publish(s, reg.admin, vid2, effective_from=dt.date(2024, 1, 1))
    assert reg.state(vid2) == "approved"


def test_only_administrators_approve_and_publish(reg):
    vid = reg.to_state("in_review")
    reg.votes(vid, "approve", "approve", "approve")
    for who in (reg.members[0], reg.expert, reg.integrator):
        with pytest.raises(Forbidden):
            with reg.uow() as s:
                workflow.approve(s, who, vid)
    with reg.uow() as s:
        workflow.approve(s, reg.admin, vid)
    for who in (reg.members[0], reg.author, reg.integrator):
        with pytest.raises(Forbidden):
            with reg.uow() as s:
                workflow.publish(s, who, vid, effective_from=dt.date(2024, 1, 1))
    assert reg.state(vid) == "approved"


def test_an_author_cannot_approve_or_publish_their_own_work(reg):
    # admin2 is an administrator and an expert: they author a version
    vid = reg.to_state("in_review", author=reg.admin2)
    reg.votes(vid, "approve", "approve", "approve")
    with pytest.raises(Forbidden, match="own work"):
        with reg.uow() as s:
            workflow.approve(s, reg.admin2, vid)
    with reg.uow() as s:
        workflow.approve(s, reg.admin, vid)
    with pytest.raises(Forbidden, match="own work"):
        with reg.uow() as s:
            workflow.publish(s, reg.admin2, vid, effective_from=dt.date(2024, 1, 1))
    with pytest.raises(Forbidden):
        with reg.uow() as s:
            workflow.open_review(s, reg.admin2, vid)


def test_an_integrator_sees_no_review_pages(reg):
    vid = reg.to_state("in_review")
    for who in (reg.integrator, reg.expert, reg.outsider):
        with pytest.raises(Forbidden):
            with reg.db.read() as s:
                workflow.review(s, who, vid)
        with pytest.raises(Forbidden):
            with reg.db.read() as s:
                workflow.view_version(s, who, vid)
        with pytest.raises(Forbidden):
            with reg.uow() as s:
                workflow.comment(s, who, vid, "hello")
    for who in (reg.admin, reg.author, reg.members[0]):
        with reg.db.read() as s:
            assert workflow.review(s, who, vid).version.id == vid


def test_everyone_signed_in_sees_published_versions(reg):
    vid = reg.to_state("published")
    with reg.db.read() as s:
        assert workflow.view_version(s, reg.integrator, vid).state == "published"
        with pytest.raises(Forbidden):
            workflow.review(s, reg.integrator, vid)


def test_a_deactivated_user_can_do_nothing(reg):
    from registry import users
    vid = reg.to_state("in_review")
    with reg.uow() as s:
        users.set_active(s, reg.admin, reg.members[0], False)
    with pytest.raises(Forbidden, match="deactivated"):
        _vote(reg, reg.members[0], vid)


def test_review_shows_votes_comments_and_history(reg):
    vid = reg.to_state("in_review")
    reg.votes(vid, "approve", "request_changes")
    with reg.uow() as s:
        workflow.comment(s, reg.author, vid, "thanks, looking into it")
    with reg.db.read() as s:
        r = workflow.review(s, reg.members[2], vid)
        assert [v.decision for v in r.votes] == ["approve", "request_changes"]
        assert [c.body for c in r.comments] == ["thanks, looking into it"]
        assert r.quorum.counted == 2 and r.publication is None
        assert r.history[-1].action == "comment.add"


# ---------------------------------------------------------------- review like a pull request
# (issue 15, item 5: registry.discussion and registry.notifications)
from registry import discussion, notifications  # noqa: E402
from registry.errors import NotFound  # noqa: E402
from registry.models import Notification  # noqa: E402
from registry.settings import SmtpSettings  # noqa: E402

TITLE_LINE = 7  # `title en "Shenzhen low-carbon public transport (trial)"` in helpers.source()


def _threads(reg, vid):
    with reg.db.read() as s:
        out = discussion.threads(s, workflow.get_version(s, vid))
        return [(t.id, t.line, t.last_line, t.resolved, [r.body for r in t.replies], t.current,
                 t.suggestion) for t in out]


def _kinds(reg, user):
    with reg.db.read() as s:
        return [n.kind for n in notifications.listing(s, user)]


def test_replies_join_their_thread_and_threads_resolve_and_reopen(reg):
    vid = reg.to_state("in_review")
    with reg.uow() as s:
        root = discussion.comment(s, reg.members[0], vid, "why 2 decimals?", line=9, last_line=11).id
    with reg.uow() as s:
        first = discussion.comment(s, reg.author, vid, "the standard says so", reply_to=root).id
    with reg.uow() as s:  # a reply to a reply joins the same thread
        discussion.comment(s, reg.members[1], vid, "agreed", reply_to=first)
    assert _threads(reg, vid) == [(root, 9, 11, False, ["the standard says so", "agreed"], True, None)]
    with pytest.raises(Invalid, match="is a reply"):
        with reg.uow() as s:
            discussion.resolve(s, reg.author, first)
    with pytest.raises(Forbidden, match="resolves a thread"):  # neither its author nor the version's
        with reg.uow() as s:
            discussion.resolve(s, reg.members[1], root)
    with reg.uow() as s:
        discussion.resolve(s, reg.author, root)
    assert _threads(reg, vid)[0][3] is True
    with pytest.raises(Conflict, match="already resolved"):
        with reg.uow() as s:
            discussion.resolve(s, reg.members[0], root)
    with reg.uow() as s:
        discussion.reopen(s, reg.members[0], root)
    assert _threads(reg, vid)[0][3] is False
    assert reg.count("thread_resolutions") == 2  # append-only history
    other = reg.to_state("in_review", "1.1.0")
    with pytest.raises(Invalid, match="is not on"):
        with reg.uow() as s:
            discussion.comment(s, reg.members[0], other, "wrong place", reply_to=root)
    with pytest.raises(Invalid, match="not between"):
        with reg.uow() as s:
            discussion.comment(s, reg.members[0], vid, "backwards", line=9, last_line=8)
    # the author heard of the comment; the thread's people of the replies
    assert "comment.added" in _kinds(reg, reg.author)
    assert "comment.reply" in _kinds(reg, reg.members[0])


def test_the_author_applies_a_suggestion_with_one_click(reg):
    vid = reg.to_state("in_review")
    reg.votes(vid, "approve")
    before = reg.version(vid)
    with reg.uow() as s:
        suggestion = discussion.comment(
            s, reg.members[1], vid, "a clearer title", line=TITLE_LINE,
            suggestion='  title en "Shenzhen green public transport (trial)"\r\n').id
    with pytest.raises(Forbidden, match="expert role|only the author"):
        with reg.uow() as s:
            discussion.apply_suggestion(s, reg.members[0], suggestion)
    with reg.uow() as s:
        discussion.apply_suggestion(s, reg.author, suggestion)
    after = reg.version(vid)
    lines = after.source.split("\n")
    assert lines[TITLE_LINE - 1] == '  title en "Shenzhen green public transport (trial)"'
    assert len(lines) == len(before.source.split("\n"))
    assert after.content_hash != before.content_hash
    assert after.review_round == before.review_round + 1  # a new revision: the vote before no longer counts
    with reg.db.read() as s:
        assert workflow.quorum(s, vid).counted == 0
    (thread,) = _threads(reg, vid)
    assert thread[3] is True  # applying resolved its thread
    with pytest.raises(Conflict, match="applied already"):
        with reg.uow() as s:
            discussion.apply_suggestion(s, reg.author, suggestion)
    assert "suggestion.applied" in _kinds(reg, reg.members[1])


def test_a_suggestion_on_lines_changed_since_is_refused_and_changes_nothing(reg):
    vid = reg.to_state("in_review")
    with reg.uow() as s:
        a = discussion.comment(s, reg.members[0], vid, "shorter", line=TITLE_LINE,
                               suggestion='  title en "Shenzhen transit"').id
        b = discussion.comment(s, reg.members[1], vid, "drop these", line=TITLE_LINE,
                               last_line=TITLE_LINE + 1, suggestion="").id
    with reg.uow() as s:
        discussion.apply_suggestion(s, reg.author, a)
    source = reg.version(vid).source
    assert _threads(reg, vid)[1][5] is False  # b is outdated: its lines changed
    with pytest.raises(Conflict, match="changed since the suggestion"):
        with reg.uow() as s:
            discussion.apply_suggestion(s, reg.author, b)
    assert reg.version(vid).source == source


def test_a_suggestion_that_breaks_the_source_is_refused_under_review(reg):
    vid = reg.to_state("in_review")
    with reg.uow() as s:
        bad = discussion.comment(s, reg.members[0], vid, "oops", line=TITLE_LINE,
                                 suggestion="this is not a statement").id
    source = reg.version(vid).source
    with pytest.raises(Exception):
        with reg.uow() as s:
            discussion.apply_suggestion(s, reg.author, bad)
    assert reg.version(vid).source == source
    with reg.db.read() as s:
        assert s.get(discussion.CommentSpan, bad).applied_at is None


def test_a_pending_review_is_sent_with_its_verdict_or_not_at_all(reg):
    vid = reg.to_state("in_review")
    with reg.uow() as s:
        discussion.add_draft(s, reg.members[0], vid, "line 9 is unclear", line=9)
        d2 = discussion.add_draft(s, reg.members[0], vid, "and this", line=TITLE_LINE,
                                  suggestion='  title en "X"').id
    assert _threads(reg, vid) == []  # nobody sees drafts
    assert reg.count("comments") == 0
    with pytest.raises(Forbidden):
        with reg.uow() as s:
            discussion.delete_draft(s, reg.members[1], d2)
    with pytest.raises(Invalid, match="needs a comment"):  # request changes without a comment
        with reg.uow() as s:
            discussion.submit_review(s, reg.members[0], vid, "request_changes", "")
    assert (reg.count("comments"), reg.count("votes"), reg.count("review_drafts")) == (0, 0, 2)
    with reg.uow() as s:
        out = discussion.submit_review(s, reg.members[0], vid, "request_changes", "see my comments")
        assert (out.vote.decision, len(out.comments)) == ("request_changes", 2)
    assert (reg.count("comments"), reg.count("votes"), reg.count("review_drafts")) == (2, 1, 0)
    assert [(t[1], t[6]) for t in _threads(reg, vid)] == [(9, None), (TITLE_LINE, '  title en "X"')]
    with pytest.raises(Invalid, match="empty review"):
        with reg.uow() as s:
            discussion.submit_review(s, reg.members[1], vid, "comment", " ")
    kinds = _kinds(reg, reg.author)
    assert kinds.count("review.submitted") == 1 and "comment.added" not in kinds


def test_notifications_tell_who_waits_and_are_read_by_their_owner_only(reg):
    vid = reg.to_state("in_review")
    for member in reg.members[1:]:  # member1 opened the review and asked the others
        assert _kinds(reg, member) == ["review.requested"]
    assert _kinds(reg, reg.members[0]) == []
    assert "review.requested" not in _kinds(reg, reg.author)  # not the author
    assert "review.requested" not in _kinds(reg, reg.outsider)
    with reg.db.read() as s:
        (row,) = notifications.listing(s, reg.members[1])
        assert notifications.text(row, "zh").startswith("member1 请你评审 test.transit 1.0.0")
        assert notifications.text(row, "en") == "member1 asks you to review test.transit 1.0.0 (round 1)"
        assert notifications.unread_count(s, reg.members[1]) == 1
    with reg.uow() as s:
        assert notifications.mark_read(s, reg.members[2], [row.id]) == 0  # not theirs
        assert notifications.mark_read(s, reg.members[1]) == 1
    with reg.db.read() as s:
        assert notifications.unread_count(s, reg.members[1]) == 0
        assert notifications.unread_count(s, reg.members[2]) == 1


class _Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, envelope.content.decode("utf-8")))
        return "250 OK"


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_notifications_are_emailed_once_through_a_real_smtp_server(reg):
    from email import message_from_string, policy

    from aiosmtpd.controller import Controller
    vid = reg.to_state("in_review")  # three members asked to review
    assert notifications.deliver(reg.db, None).sent == 0  # off by default: nothing marked
    with reg.db.read() as s:
        assert s.scalar(sa.select(sa.func.count()).where(Notification.emailed_at.isnot(None))) == 0
    port = _free_port()
    down = notifications.deliver(reg.db, SmtpSettings(host="127.0.0.1", port=port, timeout=2))
    assert (down.sent, down.failed) == (0, 3)  # no server yet: released, tried again later
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        smtp = SmtpSettings(host="127.0.0.1", port=port, sender="tanpu@test")
        done = notifications.deliver(reg.db, smtp, base_url="https://tanpu.test")
        assert (done.sent, done.failed) == (3, 0)
        assert notifications.deliver(reg.db, smtp).sent == 0  # once only
    finally:
        controller.stop()
    assert sorted(r for rcpts, _ in inbox.messages for r in rcpts) == [
        f"member{i}@tanpu.test" for i in range(2, 5)]
    message = message_from_string(inbox.messages[0][1], policy=policy.default)
    assert "请你评审 test.transit 1.0.0" in message["Subject"]
    body = message.get_content()
    assert "asks you to review test.transit 1.0.0" in body
    assert f"https://tanpu.test/review/{vid}" in body


def test_a_comment_is_edited_or_deleted_by_its_author_only_and_every_version_is_kept(reg):
    vid = reg.to_state("in_review")
    with reg.uow() as s:
        cid = discussion.comment(s, reg.members[0], vid, "typo in line 9", line=9).id
    with pytest.raises(Forbidden, match="only its author"):
        with reg.uow() as s:
            discussion.edit(s, reg.author, cid, "not mine")
    with pytest.raises(Invalid, match="empty"):
        with reg.uow() as s:
            discussion.edit(s, reg.members[0], cid, " ")
    with reg.uow() as s:
        discussion.edit(s, reg.members[0], cid, "typo in line 9 and 10")
    with reg.db.read() as s:
        (thread,) = discussion.threads(s, reg.version(vid))
        assert thread.root.body == "typo in line 9"  # the row keeps what was first written
        assert thread.edits[cid].body == "typo in line 9 and 10"
    with reg.uow() as s:
        discussion.edit(s, reg.members[0], cid, delete=True)
    with pytest.raises(Conflict, match="deleted"):
        with reg.uow() as s:
            discussion.edit(s, reg.members[0], cid, "back again")
    with reg.db.read() as s:
        assert discussion.threads(s, reg.version(vid))[0].edits[cid].deleted
    assert reg.count("comment_edits") == 2
