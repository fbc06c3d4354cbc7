"""Which version applies to an activity, and why: effective dates, supersession with a
grace period, suspension, the methodology's timezone."""

from __future__ import annotations

import datetime as dt

import pytest

from registry import workflow

D = dt.date


@pytest.fixture
def two_versions(reg):
    """1.0.0 from 2024-01-01; 1.1.0 from 2024-03-01, 1.0.0 keeping a 30-day grace period."""
    v1 = reg.to_state("published", "1.0.0", effective_from=D(2024, 1, 1))
    v2 = reg.to_state("approved", "1.1.0")
    with reg.uow() as s:
        workflow.publish(s, reg.admin, v2, effective_from=D(2024, 3, 1), grace_days=30)
    return reg, v1, v2


def applicable(reg, when, as_of=None):
    with reg.db.read() as s:
        a = workflow.applicable_version(s, "test.transit", when, as_of=as_of)
        return (a.version.version if a.version else None), a.reason


def test_publishing_supersedes_the_version_in_force(two_versions):
    reg, v1, v2 = two_versions
    old = reg.version(v1)
    assert (old.state, old.superseded_by_id, old.grace_days) == ("superseded", v2, 30)
    assert reg.state(v2) == "published"


def test_the_version_in_force_applies(two_versions):
    reg, _, _ = two_versions
    assert applicable(reg, D(2024, 3, 5), as_of=D(2024, 3, 6)) == (
        "1.1.0", "1.1.0 in force since 2024-03-01")
    assert applicable(reg, D(2024, 1, 1), as_of=D(2024, 1, 2)) == (
        "1.0.0", "1.0.0 in force since 2024-01-01 (1.1.0 takes effect on 2024-03-01)")


def test_a_superseded_version_applies_during_its_grace_period(two_versions):
    reg, _, _ = two_versions
    version, reason = applicable(reg, D(2024, 2, 20), as_of=D(2024, 3, 15))
    assert version == "1.0.0"
    assert reason.startswith("1.0.0 under the 30-day grace period of 1.1.0")
    assert "accepted until 2024-03-30" in reason
    assert applicable(reg, D(2024, 2, 29), as_of=D(2024, 3, 30))[0] == "1.0.0"  # last day


def test_after_the_grace_period_older_activities_are_not_accepted(two_versions):
    reg, _, _ = two_versions
    version, reason = applicable(reg, D(2024, 2, 20), as_of=D(2024, 3, 31))
    assert version is None
    assert "grace period for activities before then ended on 2024-03-30" in reason
    # newer activities are unaffected
    assert applicable(reg, D(2024, 3, 31), as_of=D(2024, 3, 31))[0] == "1.1.0"


def test_nothing_applies_before_the_first_version(two_versions):
    reg, _, _ = two_versions
    assert applicable(reg, D(2023, 12, 31)) == (
        None, "no version of test.transit in force on 2023-12-31: the first, 1.0.0, "
              "takes effect on 2024-01-01")


def test_the_methodologys_timezone_decides_the_date(two_versions):
    reg, _, _ = two_versions
    utc = dt.timezone.utc
    # 2024-02-29 17:00 UTC is 2024-03-01 01:00 in Asia/Shanghai
    assert applicable(reg, dt.datetime(2024, 2, 29, 17, tzinfo=utc), as_of=D(2024, 4, 1))[0] == "1.1.0"
    assert applicable(reg, dt.datetime(2024, 2, 29, 15, tzinfo=utc), as_of=D(2024, 3, 2))[0] == "1.0.0"
    # a naive time is local time
    assert applicable(reg, dt.datetime(2024, 3, 1, 0, 30), as_of=D(2024, 4, 1))[0] == "1.1.0"


def test_suspended_and_retired_versions_apply_to_nothing(two_versions):
    reg, v1, v2 = two_versions
    with reg.uow() as s:
        workflow.suspend(s, reg.admin, v2, "factor under review")
    assert applicable(reg, D(2024, 3, 5), as_of=D(2024, 3, 6)) == (
        None, "1.1.0, in force on 2024-03-05, is suspended")
    with reg.uow() as s:
        workflow.reinstate(s, reg.admin, v2, "factor confirmed")
    assert applicable(reg, D(2024, 3, 5), as_of=D(2024, 3, 6))[0] == "1.1.0"
    with reg.uow() as s:
        workflow.retire(s, reg.admin, v1, "replaced")
    assert applicable(reg, D(2024, 2, 5), as_of=D(2024, 3, 6)) == (
        None, "1.0.0, in force on 2024-02-05, is retired")


def test_a_suspended_version_superseded_meanwhile_is_reinstated_as_superseded(reg):
    v1 = reg.to_state("published", "1.0.0", effective_from=D(2024, 1, 1))
    with reg.uow() as s:
        workflow.suspend(s, reg.admin, v1, "investigation")
    v2 = reg.to_state("approved", "1.1.0")
    with reg.uow() as s:
        workflow.publish(s, reg.admin, v2, effective_from=D(2024, 3, 1), grace_days=10)
    assert reg.state(v1) == "suspended" and reg.version(v1).superseded_by_id == v2
    with reg.uow() as s:
        workflow.reinstate(s, reg.admin, v1, "cleared")
    assert reg.state(v1) == "superseded"
    assert applicable(reg, D(2024, 2, 1), as_of=D(2024, 3, 5))[1].startswith(
        "1.0.0 under the 10-day grace period of 1.1.0")


def test_no_published_version(reg):
    reg.to_state("approved")
    assert applicable(reg, D(2024, 1, 1)) == (None, "test.transit has no published version")


def test_only_administrators_suspend_reinstate_and_retire(two_versions):
    from registry.errors import Forbidden
    reg, _, v2 = two_versions
    for action in (workflow.suspend, workflow.retire):
        for who in (reg.author, reg.members[0], reg.integrator):
            with pytest.raises(Forbidden):
                with reg.uow() as s:
                    action(s, who, v2, "no")


def test_publication_defaults_to_today_where_the_methodology_applies(monkeypatch):
    """Published at 03:43 in Shanghai (19:43 UTC the day before): effective today, Shanghai."""
    import datetime as dt
    from types import SimpleNamespace

    from registry import workflow

    moment = dt.datetime(2026, 11, 23, 19, 43, tzinfo=dt.timezone.utc)
    monkeypatch.setattr(workflow, "utcnow", lambda: moment)
    assert workflow.local_today(SimpleNamespace(timezone="Asia/Shanghai")) == dt.date(2026, 11, 24)
    assert workflow.local_today(SimpleNamespace(timezone="UTC")) == dt.date(2026, 11, 23)
