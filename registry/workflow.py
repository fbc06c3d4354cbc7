"""The lifecycle of a methodology version, as explicit transitions with who may do each.

    draft ─submit→ submitted ─open_review→ in_review ─approve→ approved ─publish→ published
                                   in_review ─request_changes→ changes_requested
                       changes_requested ─resubmit→ resubmitted ─open_review→ in_review
                                   in_review ─reject→ rejected (final)
    submitted | in_review | changes_requested | resubmitted | approved ─withdraw→ draft
    published ─supersede→ superseded   (when the next version is published; grace period)
    published | superseded ─suspend→ suspended ─reinstate→ published | superseded
    published | superseded | suspended ─retire→ retired (final)

Every function takes the session of a unit of work (registry.db.Database.unit_of_work)
and the acting user, checks the actor's right (users.can_*) and the version's state,
makes the change, and appends to the audit chain in the same transaction. The database
checks the same state changes again (triggers), and refuses any change to a published
version's content.

Review: opening a review starts a new review round; each committee member votes once per
round, on the content hash in review. Changing the content (a new content hash) during
review, or after approval, starts a new round: earlier votes no longer count. The quorum
(min_votes votes that are not abstentions, of which the share approve) must be met to
approve and again to publish; the publication record binds the counted votes to the
published content hash. Its integrity (issue 15; `quorum()` decides, the UI asks it):

- the quorum rule is the committee's when the round opens (`review_rounds`): a change of
  the committee's quorum applies to the next round;
- a vote counts only while its voter may vote on it (a member of the committee with the
  committee member role, not the author): at the time of voting (`vote` refuses others)
  and when the round is approved or published (`quorum` leaves out the votes of people
  removed from the committee or who lost the role since);
- approval needs at least two approving people (the author never votes);
- whoever changed the committee's rules (its quorum or members) during the round cannot
  be its only approvers: at least one approving voter did not;
- `quorum().reachable` says whether the members who have not voted can still meet it.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import re
from dataclasses import dataclass, field
from typing import Callable, Optional
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session, object_session

from dsl.zones import DEFAULT_TIMEZONE, zone

from . import audit, notifications, users, webhooks
from .errors import (Conflict, Invalid, InvalidTransition, NotFound, QuorumNotMet,
                     SubmissionRejected)
from .models import (ABSTAIN, APPROVE, APPROVED, CHANGES_REQUESTED, DECISIONS, DRAFT,
                     FROZEN_STATES, IN_REVIEW, PUBLISHED, REJECT, REJECTED, REQUEST_CHANGES,
                     RESUBMITTED, RETIRED, SUBMITTED, SUPERSEDED, SUSPENDED, Comment, Committee,
                     Methodology, MethodologyVersion, Publication, PublicationVote, ReviewRound,
                     User, Vote, utcnow)
from .users import Decision, require

# ---------------------------------------------------------------- transitions
Who = Callable[[Optional[User], MethodologyVersion], Decision]


@dataclass(frozen=True)
class Transition:
    name: str
    sources: tuple[str, ...]
    targets: tuple[str, ...]
    who: Who
    description: str

    def pairs(self) -> set[tuple[str, str]]:
        return {(s, t) for s in self.sources for t in self.targets if s != t}


_IN_PROGRESS = (SUBMITTED, IN_REVIEW, CHANGES_REQUESTED, RESUBMITTED, APPROVED)

TRANSITIONS: dict[str, Transition] = {t.name: t for t in (
    Transition("submit", (DRAFT,), (SUBMITTED,), users.can_edit,
               "the author submits a draft that compiles and whose examples pass"),
    Transition("open_review", (SUBMITTED, RESUBMITTED), (IN_REVIEW,), users.can_open_review,
               "an administrator or committee member opens a new review round"),
    Transition("request_changes", (IN_REVIEW,), (CHANGES_REQUESTED,), users.can_request_changes,
               "an administrator or committee member sends it back to the author"),
    Transition("resubmit", (CHANGES_REQUESTED,), (RESUBMITTED,), users.can_edit,
               "the author resubmits (it must compile and pass its examples again)"),
    Transition("approve", (IN_REVIEW,), (APPROVED,), users.can_decide,
               "an administrator (not the author) approves, when the quorum is met"),
    Transition("reject", (IN_REVIEW,), (REJECTED,), users.can_decide,
               "an administrator (not the author) rejects, with a reason"),
    Transition("withdraw", _IN_PROGRESS, (DRAFT,), users.can_withdraw,
               "the author or an administrator takes it back to draft"),
    Transition("reset_review", (APPROVED,), (IN_REVIEW,), users.can_edit,
               "the author changes approved content: a new review round"),
    Transition("publish", (APPROVED,), (PUBLISHED,), users.can_decide,
               "an administrator (not the author) publishes, when the quorum is met"),
    Transition("supersede", (PUBLISHED,), (SUPERSEDED,), users.can_decide,
               "publishing the next version supersedes this one, with a grace period"),
    Transition("suspend", (PUBLISHED, SUPERSEDED), (SUSPENDED,), users.can_change_published,
               "an administrator suspends it: no record is credited with it"),
    Transition("reinstate", (SUSPENDED,), (PUBLISHED, SUPERSEDED), users.can_change_published,
               "an administrator lifts a suspension"),
    Transition("retire", (PUBLISHED, SUPERSEDED, SUSPENDED), (RETIRED,),
               users.can_change_published, "an administrator retires it for good"),
)}


def allowed_state_changes() -> set[tuple[str, str]]:
    """Every (from, to) the workflow can make; the database allows exactly these."""
    return set().union(*(t.pairs() for t in TRANSITIONS.values()))


def can(actor: Optional[User], version: MethodologyVersion, action: str) -> Decision:
    """Whether `actor` may do `action` to `version` now (for the UI's buttons)."""
    transition = TRANSITIONS[action]
    decision = transition.who(actor, version)
    if decision and version.state not in transition.sources:
        return users.deny(f"{action} is not possible in state {version.state}")
    return decision


def may(session: Session, actor: Optional[User], version: MethodologyVersion, action: str) -> Decision:
    """Whether `actor` may do `action` to `version` now, as the server will decide it: the
    transition's rule (`can`), and for approve and publish the quorum (`quorum`), and for
    publish an earlier version that is not published already. The UI offers an action
    only when this allows it (issue 15: never offer what the server refuses)."""
    decision = can(actor, version, action)
    if not decision or action not in ("approve", "publish"):
        return decision
    session = session or object_session(version)
    status = quorum(session, version)
    if not status.met:
        return users.deny(status.explanation)
    if action == "publish":
        for other in session.scalars(select(MethodologyVersion).where(
                MethodologyVersion.methodology_id == version.methodology_id,
                MethodologyVersion.state.in_(FROZEN_STATES), MethodologyVersion.id != version.id)):
            if other.semver >= version.semver:
                return users.deny(f"{other.version} is already published: {version.version} "
                                  "cannot follow it")
    return decision


def _check(actor: Optional[User], version: MethodologyVersion, action: str) -> Transition:
    transition = TRANSITIONS[action]
    require(transition.who(actor, version))
    if version.state not in transition.sources:
        frozen = " (a published version is immutable)" if version.frozen else ""
        raise InvalidTransition(
            f"cannot {action.replace('_', ' ')} {version.methodology_id} {version.version}: it is "
            f"{version.state}{frozen}; {action} applies to {', '.join(transition.sources)}")
    return transition


def _move(session: Session, actor: Optional[User], version: MethodologyVersion, action: str,
          target: str, **details) -> None:
    old = version.state
    version.state = target
    version.updated_at = utcnow()
    session.flush()
    audit.append(session, actor, f"version.{action}", "methodology_version", version.id, {
        "methodology": version.methodology_id, "version": version.version, "from": old,
        "to": target, "content_hash": version.content_hash, "review_round": version.review_round,
        **details})
    _tell(session, actor, version, action, target)


def _tell(session: Session, actor: Optional[User], version: MethodologyVersion, action: str,
          target: str) -> None:
    """Who is told of a transition: opening a round asks the committee's members who may
    vote to review; any other change the author did not make tells the author."""
    if action == "open_review":
        members = [m.user for m in version.methodology.committee.member_rows]
        notifications.notify(session, [u.id for u in members if users.can_vote(u, version)],
                             "review.requested", version, actor, round=version.review_round)
    elif action == "resubmit":
        return
    else:
        notifications.notify(session, [version.author_id], "version.changed_state", version,
                             actor, state=target)


# ---------------------------------------------------------------- semantic versions
_SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")


def parse_semver(text: str) -> tuple[int, int, int]:
    """MAJOR.MINOR.PATCH, non-negative integers without leading zeros."""
    match = _SEMVER.match(text or "")
    if not match:
        raise Invalid(f"version {text!r} is not MAJOR.MINOR.PATCH (e.g. 1.2.0)")
    return tuple(int(part) for part in match.groups())  # type: ignore[return-value]


# ---------------------------------------------------------------- checking a source
@dataclass
class SourceCheck:
    """What the compiler and the examples say about a source."""

    content_hash: Optional[str]
    timezone: Optional[str]
    diagnostics: list[dict]
    example_results: list[dict]
    problems: list[str] = field(default_factory=list)
    effective_from: Optional[dt.date] = None  # the source's `effective from`

    @property
    def ok(self) -> bool:
        return not self.problems


def check_source(source: str, methodology_id: str, version: str) -> SourceCheck:
    """Compiles `source` and runs its examples. Submittable when `ok`: it compiles, it
    declares this methodology id and version, it has examples and they all pass.

    Pure, so the last results are kept (a draft is checked again when it is submitted)."""
    return copy.deepcopy(_check_source(source, methodology_id, version))


@functools.lru_cache(maxsize=64)
def _check_source(source: str, methodology_id: str, version: str) -> SourceCheck:
    from dsl import compile_source
    from engine import Engine
    from engine.examples import run_examples

    compiled = compile_source(source, f"{methodology_id}@{version}.tanpu")
    check = SourceCheck(compiled.content_hash, None,
                        [d.to_json() for d in compiled.diagnostics], [])
    if not compiled.ok:
        check.problems.append(f"does not compile: {len(compiled.errors)} error(s)")
        return check
    meta = compiled.methodology.metadata
    check.timezone = meta.timezone
    check.effective_from = meta.effective_from
    if meta.id != methodology_id:
        check.problems.append(f"the source declares methodology {meta.id}, not {methodology_id}")
    if meta.version != version:
        check.problems.append(f"the source declares version {meta.version}, not {version}")
    try:
        outcomes = run_examples(Engine(compiled.methodology))
    except Exception as error:  # an engine bug must not let a version through
        check.problems.append(f"the examples could not run: {type(error).__name__}: {error}")
        return check
    check.example_results = [{"title": o.title, "line": o.line, "passed": o.passed,
                              "failures": list(o.failures)} for o in outcomes]
    failed = [o for o in outcomes if not o.passed]
    if not outcomes:
        check.problems.append("has no examples: a submission shows its results on examples")
    elif failed:
        check.problems.append(f"{len(failed)} of {len(outcomes)} example(s) fail: "
                              + "; ".join(f"{o.title}: {', '.join(o.failures)}" for o in failed))
    return check


def _store_check(version: MethodologyVersion, check: SourceCheck) -> None:
    version.content_hash = check.content_hash
    version.timezone = check.timezone
    version.diagnostics = check.diagnostics
    version.example_results = check.example_results


def _require_submittable(version: MethodologyVersion, check: SourceCheck) -> None:
    if not check.ok:
        raise SubmissionRejected(
            f"{version.methodology_id} {version.version} cannot be submitted: "
            + "; ".join(check.problems), check.diagnostics, check.example_results)


# ---------------------------------------------------------------- loading
def get_version(session: Session, version_id: int, *, lock: bool = False) -> MethodologyVersion:
    query = select(MethodologyVersion).where(MethodologyVersion.id == version_id)
    if lock:
        query = query.with_for_update(key_share=True)
    version = session.scalar(query)
    if version is None:
        raise NotFound(f"no methodology version {version_id}")
    return version


def find_version(session: Session, methodology_id: str, version: str) -> MethodologyVersion:
    found = session.scalar(select(MethodologyVersion).where(
        MethodologyVersion.methodology_id == methodology_id, MethodologyVersion.version == version))
    if found is None:
        raise NotFound(f"no version {version} of {methodology_id}")
    return found


def view_version(session: Session, actor: User | int, version_id: int) -> MethodologyVersion:
    """A version, if the actor may see it (published ones: everyone signed in)."""
    actor = users.actor_in(session, actor)
    version = get_version(session, version_id)
    require(users.can_view_version(actor, version))
    return version


# ---------------------------------------------------------------- committees
def create_committee(session: Session, actor: User | int, *, domain: str, name: str,
                     min_votes: int = 3, approval_share: tuple[int, int] = (2, 3)) -> Committee:
    actor = users.actor_in(session, actor)
    require(users.can_manage_committees(actor))
    domain = (domain or "").strip().lower()
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", domain):
        raise Invalid(f"domain {domain!r}: lower-case letters, digits, - and _")
    if session.scalar(select(Committee).where(Committee.domain == domain)) is not None:
        raise Conflict(f"there is already a {domain} committee")
    committee = Committee(domain=domain, name=name.strip() or domain)
    _set_quorum(committee, min_votes, approval_share)
    session.add(committee)
    session.flush()
    audit.append(session, actor, "committee.create", "committee", committee.id,
                 {"domain": domain, "name": committee.name, "min_votes": min_votes,
                  "approval_share": list(approval_share)})
    return committee


def _committee(session: Session, committee: Committee | int) -> Committee:
    found = session.get(Committee, committee.id if isinstance(committee, Committee) else committee)
    if found is None:
        raise NotFound("no such committee")
    return found


def _set_quorum(committee: Committee, min_votes: int, approval_share: tuple[int, int]) -> None:
    numerator, denominator = approval_share
    if min_votes < 1:
        raise Invalid("a quorum needs at least one vote")
    if not (1 <= numerator <= denominator):
        raise Invalid(f"approval share {numerator}/{denominator} must be in (0, 1]")
    committee.min_votes = min_votes
    committee.approval_numerator = numerator
    committee.approval_denominator = denominator


def committee_by_domain(session: Session, domain: str) -> Committee:
    committee = session.scalar(select(Committee).where(Committee.domain == domain))
    if committee is None:
        raise NotFound(f"no {domain} committee")
    return committee


def set_quorum(session: Session, actor: User | int, committee: Committee | int, *,
               min_votes: int, approval_share: tuple[int, int]) -> Committee:
    """Changes the quorum rule; it applies to the review rounds opened from now on (a
    round keeps the rule it was opened under)."""
    actor = users.actor_in(session, actor)
    require(users.can_manage_committees(actor))
    committee = _committee(session, committee)
    _set_quorum(committee, min_votes, approval_share)
    session.flush()
    audit.append(session, actor, "committee.set_quorum", "committee", committee.id,
                 {"min_votes": min_votes, "approval_share": list(approval_share)})
    return committee


def add_member(session: Session, actor: User | int, committee: Committee | int,
               member: User | int) -> Committee:
    actor, member = users.actor_in(session, actor), users.get(session, member)
    require(users.can_manage_committees(actor))
    committee = _committee(session, committee)
    if not member.has_role("committee_member"):
        raise Invalid(f"{member.email} needs the committee member role first")
    if member.id not in committee.member_ids:
        from .models import CommitteeMember
        committee.member_rows.append(CommitteeMember(user_id=member.id))
        session.flush()
        audit.append(session, actor, "committee.add_member", "committee", committee.id,
                     {"user_id": member.id, "email": member.email})
    return committee


def remove_member(session: Session, actor: User | int, committee: Committee | int,
                  member: User | int) -> Committee:
    actor, member = users.actor_in(session, actor), users.get(session, member)
    require(users.can_manage_committees(actor))
    committee = _committee(session, committee)
    rows = [m for m in committee.member_rows if m.user_id == member.id]
    if rows:
        committee.member_rows.remove(rows[0])
        session.flush()
        audit.append(session, actor, "committee.remove_member", "committee", committee.id,
                     {"user_id": member.id, "email": member.email})
    return committee


# ---------------------------------------------------------------- methodologies and versions
_METHODOLOGY_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,127}")


def create_methodology(session: Session, actor: User | int, *, id: str, title: str,
                       domain: str) -> Methodology:
    actor = users.actor_in(session, actor)
    require(users.can_create_methodology(actor))
    if not _METHODOLOGY_ID.fullmatch(id or ""):
        raise Invalid(f"methodology id {id!r}: lower-case letters, digits, '.', '-' and '_'")
    if session.get(Methodology, id) is not None:
        raise Conflict(f"methodology {id} exists")
    committee = committee_by_domain(session, domain)
    methodology = Methodology(id=id, title=title.strip() or id, committee_id=committee.id,
                              created_by=actor.id)
    session.add(methodology)
    session.flush()
    audit.append(session, actor, "methodology.create", "methodology", id,
                 {"title": methodology.title, "domain": domain})
    return methodology


def create_version(session: Session, actor: User | int, methodology_id: str, version: str,
                   source: str) -> MethodologyVersion:
    """A new draft. Its version number must be greater than every existing one of the
    methodology (whatever their state): numbers are never reused or go backwards."""
    actor = users.actor_in(session, actor)
    require(users.can_author(actor))
    methodology = session.scalar(select(Methodology).where(Methodology.id == methodology_id)
                                 .with_for_update(key_share=True))
    if methodology is None:
        raise NotFound(f"no methodology {methodology_id}")
    semver = parse_semver(version)
    last = session.execute(
        select(MethodologyVersion.version, MethodologyVersion.major, MethodologyVersion.minor,
               MethodologyVersion.patch)
        .where(MethodologyVersion.methodology_id == methodology_id)
        .order_by(MethodologyVersion.major.desc(), MethodologyVersion.minor.desc(),
                  MethodologyVersion.patch.desc()).limit(1)).first()
    if last is not None and semver <= (last.major, last.minor, last.patch):
        raise Invalid(f"version {version} must be greater than {last.version}, "
                      f"the last version of {methodology_id}")
    check = check_source(source, methodology_id, version)
    row = MethodologyVersion(methodology_id=methodology_id, version=version, major=semver[0],
                             minor=semver[1], patch=semver[2], source=source,
                             author_id=actor.id, state=DRAFT, review_round=0)
    _store_check(row, check)
    session.add(row)
    session.flush()
    audit.append(session, actor, "version.create", "methodology_version", row.id,
                 {"methodology": methodology_id, "version": version,
                  "content_hash": row.content_hash})
    return row


_REVISABLE = (DRAFT, CHANGES_REQUESTED, SUBMITTED, RESUBMITTED, IN_REVIEW, APPROVED)


def revise(session: Session, actor: User | int, version_id: int, source: str) -> MethodologyVersion:
    """The author replaces the source. Once submitted, the new source must be submittable
    too; a new content hash under review (or after approval) starts a new review round."""
    actor = users.actor_in(session, actor)
    version = get_version(session, version_id, lock=True)
    require(users.can_edit(actor, version))
    if version.state not in _REVISABLE:
        raise InvalidTransition(
            f"cannot change {version.methodology_id} {version.version}: it is {version.state}"
            + (" and a published version is immutable: publish a new version instead"
               if version.frozen else ""))
    check = check_source(source, version.methodology_id, version.version)
    if version.state in (SUBMITTED, RESUBMITTED, IN_REVIEW, APPROVED):
        _require_submittable(version, check)
    old_hash = version.content_hash
    version.source = source
    _store_check(version, check)
    reset = version.state in (IN_REVIEW, APPROVED) and check.content_hash != old_hash
    if reset:
        _new_round(session, actor, version)
    version.updated_at = utcnow()
    session.flush()
    audit.append(session, actor, "version.revise", "methodology_version", version.id, {
        "methodology": version.methodology_id, "version": version.version,
        "old_content_hash": old_hash, "content_hash": version.content_hash,
        "review_reset": reset, "review_round": version.review_round})
    if reset and version.state == APPROVED:
        _move(session, actor, version, "reset_review", IN_REVIEW,
              reason="the content changed after approval")
    return version


def _submit(session: Session, actor: User | int, version_id: int, action: str,
            target: str) -> MethodologyVersion:
    actor = users.actor_in(session, actor)
    version = get_version(session, version_id, lock=True)
    _check(actor, version, action)
    check = check_source(version.source, version.methodology_id, version.version)
    _require_submittable(version, check)
    _store_check(version, check)
    version.submitted_at = utcnow()
    _move(session, actor, version, action, target,
          examples=len(check.example_results), warnings=len(check.diagnostics))
    return version


def submit(session: Session, actor: User | int, version_id: int) -> MethodologyVersion:
    """draft → submitted. Compiles and runs the examples; stores the diagnostics and the
    example results; refuses (SubmissionRejected) a source that does not compile, has no
    examples, or has a failing one."""
    return _submit(session, actor, version_id, "submit", SUBMITTED)


def resubmit(session: Session, actor: User | int, version_id: int) -> MethodologyVersion:
    """changes_requested → resubmitted, with the same checks as submit."""
    return _submit(session, actor, version_id, "resubmit", RESUBMITTED)


def _new_round(session: Session, actor: Optional[User], version: MethodologyVersion) -> None:
    """The next review round, under the committee's quorum rule as it is now."""
    committee = version.methodology.committee
    version.review_round += 1
    session.add(ReviewRound(version_id=version.id, review_round=version.review_round,
                            min_votes=committee.min_votes,
                            approval_numerator=committee.approval_numerator,
                            approval_denominator=committee.approval_denominator,
                            opened_at=utcnow(), opened_by=actor.id if actor else None))


def open_review(session: Session, actor: User | int, version_id: int) -> MethodologyVersion:
    """submitted | resubmitted → in_review: a new review round on the current content hash,
    under the committee's quorum rule as it is now."""
    actor = users.actor_in(session, actor)
    version = get_version(session, version_id, lock=True)
    _check(actor, version, "open_review")
    _new_round(session, actor, version)
    _move(session, actor, version, "open_review", IN_REVIEW)
    return version


def _reason(text: str, what: str) -> str:
    text = (text or "").strip()
    if not text:
        raise Invalid(f"{what} needs a comment saying why")
    return text


def request_changes(session: Session, actor: User | int, version_id: int,
                    comment: str) -> MethodologyVersion:
    actor = users.actor_in(session, actor)
    version = get_version(session, version_id, lock=True)
    _check(actor, version, "request_changes")
    comment = _reason(comment, "asking for changes")
    session.add(Comment(version_id=version.id, author_id=actor.id,
                        review_round=version.review_round, body=comment))
    _move(session, actor, version, "request_changes", CHANGES_REQUESTED, comment=comment)
    return version


def withdraw(session: Session, actor: User | int, version_id: int,
             reason: str = "") -> MethodologyVersion:
    actor = users.actor_in(session, actor)
    version = get_version(session, version_id, lock=True)
    _check(actor, version, "withdraw")
    _move(session, actor, version, "withdraw", DRAFT, reason=reason.strip())
    return version


def reject(session: Session, actor: User | int, version_id: int, reason: str) -> MethodologyVersion:
    actor = users.actor_in(session, actor)
    version = get_version(session, version_id, lock=True)
    _check(actor, version, "reject")
    reason = _reason(reason, "a rejection")
    _move(session, actor, version, "reject", REJECTED, reason=reason,
          quorum=quorum(session, version).summary())
    return version


# ---------------------------------------------------------------- votes and quorum
def vote(session: Session, actor: User | int, version_id: int, decision: str,
         comment: str = "", *, conflict_of_interest: bool = False) -> Vote:
    """One vote per member per review round, on the content hash in review.

    approve needs no comment; request_changes, reject and a declared conflict of interest
    (recorded as abstain) do."""
    actor = users.actor_in(session, actor)
    version = get_version(session, version_id, lock=True)
    require(users.can_vote(actor, version))
    if version.state != IN_REVIEW:
        raise InvalidTransition(f"{version.methodology_id} {version.version} is {version.state}: "
                                "votes are cast during a review")
    if conflict_of_interest:
        decision = ABSTAIN
    if decision not in DECISIONS:
        raise Invalid(f"decision {decision!r}: one of {', '.join(DECISIONS)}")
    comment = (comment or "").strip()
    if decision != APPROVE:
        comment = _reason(comment, "a conflict of interest" if conflict_of_interest
                          else f"a vote to {decision.replace('_', ' ')}")
    existing = session.scalar(select(Vote).where(
        Vote.version_id == version.id, Vote.voter_id == actor.id,
        Vote.review_round == version.review_round))
    if existing is not None:
        raise Conflict(f"{actor.email} has already voted in review round {version.review_round}")
    row = Vote(version_id=version.id, voter_id=actor.id, review_round=version.review_round,
               content_hash=version.content_hash, decision=decision,
               conflict_of_interest=conflict_of_interest, comment=comment, cast_at=utcnow())
    session.add(row)
    session.flush()
    audit.append(session, actor, "vote.cast", "methodology_version", version.id, {
        "vote_id": row.id, "decision": decision, "conflict_of_interest": conflict_of_interest,
        "comment": comment, "content_hash": row.content_hash, "review_round": row.review_round})
    return row


def declare_conflict(session: Session, actor: User | int, version_id: int, comment: str) -> Vote:
    """A member declares a conflict of interest: recorded as an abstention that counts
    neither for nor against the quorum."""
    return vote(session, actor, version_id, ABSTAIN, comment, conflict_of_interest=True)


def comment(session: Session, actor: User | int, version_id: int, body: str) -> Comment:
    actor = users.actor_in(session, actor)
    version = get_version(session, version_id)
    require(users.can_comment(actor, version))
    body = (body or "").strip()
    if not body:
        raise Invalid("an empty comment")
    row = Comment(version_id=version.id, author_id=actor.id, review_round=version.review_round,
                  body=body)
    session.add(row)
    session.flush()
    audit.append(session, actor, "comment.add", "methodology_version", version.id,
                 {"comment_id": row.id, "body": body, "review_round": version.review_round})
    return row


MIN_APPROVERS = 2  # approving people, the author never among them
RULE_CHANGES = ("committee.set_quorum", "committee.add_member", "committee.remove_member")


@dataclass
class Quorum:
    met: bool
    counted: int  # votes that are not abstentions, of voters who may still vote
    approvals: int
    changes_requested: int
    rejections: int
    abstentions: int
    conflicts: int  # abstentions with a declared conflict of interest
    min_votes: int
    numerator: int
    denominator: int
    review_round: int
    content_hash: Optional[str]
    votes: list[Vote] = field(default_factory=list)  # counted, abstentions too
    # votes of this round that no longer count, with why (voter removed, role lost)
    discounted: list[tuple[Vote, str]] = field(default_factory=list)
    rule_changers: list[int] = field(default_factory=list)  # changed the committee's rules in the round
    waiting: list[int] = field(default_factory=list)  # members who may still vote
    problems: list[str] = field(default_factory=list)  # why it is not met
    reachable: bool = True  # the members who have not voted can still meet it

    @property
    def explanation(self) -> str:
        rule = (f"needs {self.min_votes} votes with {self.numerator}/{self.denominator} approving, "
                f"from at least {MIN_APPROVERS} people")
        have = (f"{self.counted} vote(s), {self.approvals} approving"
                + (f", {self.abstentions} abstention(s)" if self.abstentions else "")
                + (f", {len(self.discounted)} no longer counted" if self.discounted else ""))
        why = f" ({'; '.join(self.problems)})" if self.problems and not self.met else ""
        return f"quorum {'met' if self.met else 'not met'}: {have}; {rule}{why}"

    def summary(self) -> dict:
        return {"met": self.met, "counted": self.counted, "approvals": self.approvals,
                "changes_requested": self.changes_requested, "rejections": self.rejections,
                "abstentions": self.abstentions, "min_votes": self.min_votes,
                "approval_share": [self.numerator, self.denominator],
                "review_round": self.review_round,
                "discounted": [v.id for v, _ in self.discounted],
                "rule_changers": self.rule_changers}


def _shortfalls(counted: int, approvals: int, approvers: set[int], changers: set[int],
                min_votes: int, numerator: int, denominator: int) -> list[str]:
    """What a round with these votes lacks (nothing: the quorum is met)."""
    problems = []
    if counted < min_votes:
        problems.append(f"{counted} of {min_votes} votes")
    if approvals * denominator < numerator * counted:
        problems.append(f"{approvals} of {counted} approve, under {numerator}/{denominator}")
    if len(approvers) < MIN_APPROVERS:
        problems.append(f"{len(approvers)} approving people, {MIN_APPROVERS} needed")
    elif not approvers - changers:
        problems.append("every approver changed the committee's rules during the round")
    return problems


def round_rule(session: Session, version: MethodologyVersion) -> tuple[int, int, int, Optional[dt.datetime]]:
    """(min_votes, numerator, denominator, opened_at) of the version's current round: the
    rule fixed when it opened (the committee's for a round opened before rounds were kept)."""
    row = session.get(ReviewRound, (version.id, version.review_round))
    if row is not None:
        return row.min_votes, row.approval_numerator, row.approval_denominator, row.opened_at
    committee = version.methodology.committee
    return committee.min_votes, committee.approval_numerator, committee.approval_denominator, None


def quorum(session: Session, version: MethodologyVersion | int) -> Quorum:
    """The votes of the current round on the current content hash, of voters who may still
    vote, against the round's rule (module docstring): at least min_votes non-abstaining
    votes, approvals ≥ share × those votes, two approving people, not only rule changers."""
    if not isinstance(version, MethodologyVersion):
        version = get_version(session, version)
    committee = version.methodology.committee
    min_votes, numerator, denominator, opened_at = round_rule(session, version)
    votes, discounted = [], []
    for v in session.scalars(select(Vote).where(
            Vote.version_id == version.id, Vote.review_round == version.review_round,
            Vote.content_hash == version.content_hash).order_by(Vote.id)):
        still = users.can_vote(v.voter, version)
        (votes.append(v) if still else discounted.append((v, still.reason)))
    counted = [v for v in votes if v.decision != ABSTAIN]
    approvers = {v.voter_id for v in counted if v.decision == APPROVE}
    changers: set[int] = set()
    if opened_at is not None:
        for entry in audit.entries_for(session, "committee", committee.id):
            if entry.action in RULE_CHANGES and entry.at >= opened_at and entry.actor_id is not None:
                changers.add(entry.actor_id)
    voted = {v.voter_id for v in votes} | {v.voter_id for v, _ in discounted}
    waiting = sorted(m.user_id for m in committee.member_rows
                     if m.user_id not in voted and users.can_vote(m.user, version))
    problems = (["no review round has been opened"] if version.review_round == 0 else
                _shortfalls(len(counted), len(approvers), approvers, changers,
                            min_votes, numerator, denominator))
    # the best the round can still do: every member who has not voted approves
    best = _shortfalls(len(counted) + len(waiting), len(approvers) + len(waiting),
                       approvers | set(waiting), changers, min_votes, numerator, denominator)
    return Quorum(
        met=not problems, counted=len(counted), approvals=len(approvers),
        changes_requested=sum(v.decision == REQUEST_CHANGES for v in counted),
        rejections=sum(v.decision == REJECT for v in counted),
        abstentions=len(votes) - len(counted),
        conflicts=sum(v.conflict_of_interest for v in votes),
        min_votes=min_votes, numerator=numerator, denominator=denominator,
        review_round=version.review_round, content_hash=version.content_hash, votes=votes,
        discounted=discounted, rule_changers=sorted(changers), waiting=waiting,
        problems=problems, reachable=not problems or not best)


def approve(session: Session, actor: User | int, version_id: int) -> MethodologyVersion:
    actor = users.actor_in(session, actor)
    version = get_version(session, version_id, lock=True)
    _check(actor, version, "approve")
    status = quorum(session, version)
    if not status.met:
        raise QuorumNotMet(f"cannot approve {version.methodology_id} {version.version}: "
                           + status.explanation)
    _move(session, actor, version, "approve", APPROVED, quorum=status.summary())
    return version


# ---------------------------------------------------------------- publication
DEFAULT_GRACE_DAYS = 30


@dataclass(frozen=True)
class EffectiveDate:
    """The date a version is published from by default, and what its source says."""

    default: dt.date
    written: Optional[dt.date]  # the source's `effective from`
    earliest: Optional[dt.date]  # the first date allowed (after the versions published before)

    @property
    def differs(self) -> bool:
        return self.written is not None and self.default != self.written


def effective_date(session: Session, version: MethodologyVersion) -> EffectiveDate:
    """The publish forms' default, and publish()'s (issue 15: the form defaulted to today
    and ignored the methodology's own `effective from`): the source's date when it may be
    used (after the date of every version published before), else the first day it may,
    but not before today in the methodology's time zone."""
    written = check_source(version.source, version.methodology_id, version.version).effective_from
    before = [v.effective_from for v in session.scalars(select(MethodologyVersion).where(
        MethodologyVersion.methodology_id == version.methodology_id,
        MethodologyVersion.state.in_(FROZEN_STATES), MethodologyVersion.id != version.id))
        if v.effective_from is not None]
    earliest = max(before) + dt.timedelta(days=1) if before else None
    if written is not None and (earliest is None or written >= earliest):
        return EffectiveDate(written, written, earliest)
    default = max(local_today(version), earliest) if earliest else local_today(version)
    return EffectiveDate(max(default, written) if written else default, written, earliest)


def publish(session: Session, actor: User | int, version_id: int, *,
            effective_from: Optional[dt.date] = None,
            grace_days: int = DEFAULT_GRACE_DAYS) -> Publication:
    """approved → published, effective from `effective_from` (default: effective_date(),
    the source's own `effective from` where it may be used). Never before the source's
    `effective from`: the methodology itself does not apply before it, so the registry
    would send it activities its engine refuses (issue 15).

    Only an administrator who is not the author, and only when the quorum is still met on
    the approved content hash. The publication record binds the round's votes to that
    hash. The version in force until now is superseded: it still applies to records dated
    before `effective_from` for `grace_days` days after it."""
    actor = users.actor_in(session, actor)
    version = get_version(session, version_id, lock=True)
    _check(actor, version, "publish")
    status = quorum(session, version)
    if not status.met:
        raise QuorumNotMet(f"cannot publish {version.methodology_id} {version.version}: "
                           + status.explanation)
    if grace_days < 0:
        raise Invalid("a grace period cannot be negative")
    dates = effective_date(session, version)
    effective_from = effective_from or dates.default
    if dates.written is not None and effective_from < dates.written:
        raise Invalid(f"{version.version} cannot take effect on {effective_from}: its source says "
                      f"`effective from {dates.written}`, and it applies to nothing before that")
    earlier = list(session.scalars(select(MethodologyVersion).where(
        MethodologyVersion.methodology_id == version.methodology_id,
        MethodologyVersion.state.in_(FROZEN_STATES), MethodologyVersion.id != version.id)
        .with_for_update(key_share=True)))
    for other in earlier:
        if other.semver >= version.semver:
            raise Invalid(f"{other.version} is already published: {version.version} cannot follow it")
        if other.effective_from >= effective_from:
            raise Invalid(f"{version.version} must take effect after {other.version} "
                          f"(in effect from {other.effective_from})")

    now = utcnow()
    publication = Publication(
        version_id=version.id, content_hash=version.content_hash, published_by=actor.id,
        published_at=now, effective_from=effective_from, review_round=version.review_round,
        min_votes=status.min_votes, approval_numerator=status.numerator,
        approval_denominator=status.denominator, votes_counted=status.counted,
        approvals=status.approvals)
    session.add(publication)
    session.flush()
    for v in status.votes:
        session.add(PublicationVote(publication_id=publication.id, vote_id=v.id,
                                    version_id=version.id, content_hash=version.content_hash))
    session.flush()
    version.effective_from = effective_from
    version.published_at = now
    _move(session, actor, version, "publish", PUBLISHED, publication_id=publication.id,
          effective_from=effective_from.isoformat(), quorum=status.summary(),
          vote_ids=[v.id for v in status.votes])

    for other in earlier:
        if other.superseded_by_id is not None or other.state not in (PUBLISHED, SUSPENDED):
            continue
        other.superseded_by_id = version.id
        other.grace_days = grace_days
        other.superseded_at = now
        details = {"successor": version.version, "successor_effective_from":
                   effective_from.isoformat(), "grace_days": grace_days}
        if other.state == PUBLISHED:
            _move(session, actor, other, "supersede", SUPERSEDED, **details)
        else:  # suspended: stays suspended, reinstated as superseded
            other.updated_at = now
            session.flush()
            audit.append(session, actor, "version.supersede", "methodology_version", other.id,
                         {"methodology": other.methodology_id, "version": other.version,
                          "from": other.state, "to": other.state, **details})
        webhooks.emit(session, "methodology.superseded", {
            "methodology": other.methodology_id, "version": other.version,
            "content_hash": other.content_hash, **details})
    webhooks.emit(session, "methodology.published", {
        "methodology": version.methodology_id, "version": version.version,
        "content_hash": version.content_hash, "effective_from": effective_from.isoformat(),
        "published_at": now.isoformat().replace("+00:00", "Z")})
    return publication


def _published_change(session: Session, actor: User | int, version_id: int, action: str,
                      reason: str) -> MethodologyVersion:
    actor = users.actor_in(session, actor)
    version = get_version(session, version_id, lock=True)
    _check(actor, version, action)
    reason = _reason(reason, f"to {action}")
    if action == "reinstate":
        target = SUPERSEDED if version.superseded_by_id is not None else PUBLISHED
    else:
        target = TRANSITIONS[action].targets[0]
    _move(session, actor, version, action, target, reason=reason)
    return version


def suspend(session: Session, actor: User | int, version_id: int, reason: str) -> MethodologyVersion:
    return _published_change(session, actor, version_id, "suspend", reason)


def reinstate(session: Session, actor: User | int, version_id: int, reason: str) -> MethodologyVersion:
    return _published_change(session, actor, version_id, "reinstate", reason)


def retire(session: Session, actor: User | int, version_id: int, reason: str) -> MethodologyVersion:
    return _published_change(session, actor, version_id, "retire", reason)


# ---------------------------------------------------------------- which version applies
@dataclass(frozen=True)
class Applicability:
    """Which version applies to an activity, and why (None: none does; the reason says why)."""

    version: Optional[MethodologyVersion]
    reason: str

    @property
    def ok(self) -> bool:
        return self.version is not None

    def __str__(self) -> str:
        return self.reason


def local_today(version: MethodologyVersion) -> dt.date:
    """Today's date where the methodology applies (its time zone), not the server's."""
    return _local_date(utcnow(), _zone(version.timezone))


def _local_date(value: dt.datetime | dt.date, zone: ZoneInfo) -> dt.date:
    if isinstance(value, dt.datetime):
        return (value.replace(tzinfo=zone) if value.tzinfo is None else value.astimezone(zone)).date()
    return value


def _zone(name: Optional[str]) -> ZoneInfo:
    try:
        return zone(name or DEFAULT_TIMEZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return zone("UTC")


def applicable_version(session: Session, methodology_id: str,
                       activity_time: dt.datetime | dt.date, *,
                       as_of: Optional[dt.datetime | dt.date] = None) -> Applicability:
    """The version that applies to an activity at `activity_time`, evaluated at `as_of`
    (default: now). Dates are the methodology's local dates (its timezone).

    The version in force on the activity's date applies. A superseded version still applies
    to activities dated before its successor took effect during its grace period (counted
    from the successor's effective date); after that such activities are no longer accepted.
    Suspended and retired versions apply to nothing.
    """
    versions = list(session.scalars(select(MethodologyVersion).where(
        MethodologyVersion.methodology_id == methodology_id,
        MethodologyVersion.state.in_(FROZEN_STATES))))
    if not versions:
        return Applicability(None, f"{methodology_id} has no published version")
    versions.sort(key=lambda v: (v.effective_from, v.semver), reverse=True)
    zone = _zone(versions[0].timezone)
    day = _local_date(activity_time, zone)
    today = _local_date(as_of if as_of is not None else utcnow(), zone)

    chosen = next((v for v in versions if v.effective_from <= day), None)
    if chosen is None:
        first = min(versions, key=lambda v: v.effective_from)
        return Applicability(None, f"no version of {methodology_id} in force on {day}: the first, "
                                   f"{first.version}, takes effect on {first.effective_from}")
    v = chosen
    if v.state == SUSPENDED:
        return Applicability(None, f"{v.version}, in force on {day}, is suspended")
    if v.state == RETIRED:
        return Applicability(None, f"{v.version}, in force on {day}, is retired")
    if v.state == PUBLISHED:
        return Applicability(v, f"{v.version} in force since {v.effective_from}")
    # superseded: its successor takes effect after `day`
    successor = v.superseded_by
    takes_effect = successor.effective_from
    if today < takes_effect:
        return Applicability(v, f"{v.version} in force since {v.effective_from} "
                                f"({successor.version} takes effect on {takes_effect})")
    grace_end = takes_effect + dt.timedelta(days=v.grace_days)
    if today < grace_end:
        last_day = grace_end - dt.timedelta(days=1)
        return Applicability(v, f"{v.version} under the {v.grace_days}-day grace period of "
                                f"{successor.version} (activities before {takes_effect}, "
                                f"accepted until {last_day})")
    return Applicability(None, f"{v.version} was superseded by {successor.version} on "
                               f"{takes_effect}; its {v.grace_days}-day grace period for "
                               f"activities before then ended on {grace_end - dt.timedelta(days=1)}")


# ---------------------------------------------------------------- which version is current
IN_FORCE, SCHEDULED, IN_GRACE, ENDED = "in_force", "scheduled", "in_grace", "ended"


@dataclass(frozen=True)
class Standing:
    """Where a published (or later) version stands today, with its dates (local dates of
    the methodology's time zone; `until` is the last day, inclusive)."""

    kind: str  # in_force, scheduled, in_grace, ended, suspended, retired
    since: Optional[dt.date] = None
    until: Optional[dt.date] = None


@dataclass
class Currency:
    """Which version of a methodology is current and where every published one stands."""

    current: Optional[MethodologyVersion]  # in force today for today's activities
    reason: str  # applicable_version's reason for today
    standing: dict[int, Standing] = field(default_factory=dict)  # version id -> standing
    today: Optional[dt.date] = None


def currency(session: Session, methodology_id: str, *,
             as_of: Optional[dt.datetime | dt.date] = None) -> Currency:
    """The one decision of which version is current, for the UI and the API alike (issue
    15: the page called a version taking effect tomorrow current while the API, by
    applicable_version, said its predecessor was in force until then).

    The current version is the one applicable_version gives for an activity of today.
    Every published, superseded, suspended or retired version gets a standing: in force
    (since its date, until the day before a scheduled successor takes effect), scheduled
    (from its date), in grace (its successor in force; activities before it accepted
    until the grace period's last day), ended, suspended or retired."""
    versions = list(session.scalars(select(MethodologyVersion).where(
        MethodologyVersion.methodology_id == methodology_id,
        MethodologyVersion.state.in_(FROZEN_STATES))))
    now = as_of if as_of is not None else utcnow()
    applicable = applicable_version(session, methodology_id, now, as_of=now)
    if not versions:
        return Currency(None, applicable.reason)
    today = _local_date(now, _zone(versions[0].timezone))
    out = Currency(applicable.version, applicable.reason, today=today)
    later = sorted(versions, key=lambda v: (v.effective_from, v.semver))
    for i, v in enumerate(later):
        following = next((w for w in later[i + 1:] if w.state not in (SUSPENDED, RETIRED)), None)
        ends = following.effective_from - dt.timedelta(days=1) if following else None
        if v.state in (SUSPENDED, RETIRED):
            out.standing[v.id] = Standing(v.state, v.effective_from)
        elif applicable.version is not None and v.id == applicable.version.id:
            out.standing[v.id] = Standing(IN_FORCE, v.effective_from, ends)
        elif v.effective_from > today:
            out.standing[v.id] = Standing(SCHEDULED, v.effective_from, ends)
        elif v.state == SUPERSEDED and v.superseded_by is not None:
            takes_effect = v.superseded_by.effective_from
            last = takes_effect + dt.timedelta(days=v.grace_days or 0) - dt.timedelta(days=1)
            kind = IN_GRACE if takes_effect <= today <= last else ENDED
            out.standing[v.id] = Standing(kind, v.effective_from, last if kind == IN_GRACE else ends)
        else:
            out.standing[v.id] = Standing(ENDED, v.effective_from, ends)
    return out


# ---------------------------------------------------------------- the review, for the UI
@dataclass
class Review:
    version: MethodologyVersion
    quorum: Quorum
    votes: list[Vote]  # every round, oldest first
    comments: list[Comment]
    publication: Optional[Publication]
    history: list  # audit entries of this version


def review(session: Session, actor: User | int, version_id: int) -> Review:
    """Everything about a version's review, for administrators, its author and its
    committee only (integrators and other experts are refused)."""
    actor = users.actor_in(session, actor)
    version = get_version(session, version_id)
    require(users.can_view_review(actor, version))
    return Review(
        version=version, quorum=quorum(session, version),
        votes=list(session.scalars(select(Vote).where(Vote.version_id == version.id)
                                   .order_by(Vote.id))),
        comments=list(session.scalars(select(Comment).where(Comment.version_id == version.id)
                                      .order_by(Comment.id))),
        publication=session.scalar(select(Publication).where(Publication.version_id == version.id)),
        history=audit.entries_for(session, "methodology_version", version.id))
