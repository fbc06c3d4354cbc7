"""A small registry world for tests: users, a committee, methodology sources, and a way
to bring a version into any state through the workflow."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from registry import users, workflow
from registry.db import Database
from registry.models import MethodologyVersion

BASE_SOURCE = (Path(__file__).resolve().parents[2] / "methodologies"
               / "shenzhen-public-transit.tanpu").read_text(encoding="utf-8")
BASE_ID = "cn.shenzhen.public-transit"
METHODOLOGY = "test.transit"


def source(methodology_id: str = METHODOLOGY, version: str = "1.0.0", *, title: str = "",
           failing_example: bool = False, broken: bool = False, comment: str = "") -> str:
    """The Shenzhen transit methodology as `methodology_id` `version`.

    title: changes the English title (a new content hash); comment: adds a comment line
    (same content hash); failing_example: E1.1 expects a wrong number; broken: a syntax
    error.
    """
    text = BASE_SOURCE.replace(f"methodology {BASE_ID} ", f"methodology {methodology_id} ", 1)
    text = text.replace("version 1.0.0 {", f"version {version} {{", 1)
    if title:
        text = text.replace('title en "Shenzhen low-carbon public transport (trial)"',
                            f'title en "{title}"', 1)
    if failing_example:
        text = text.replace("=> reduction 220.58 g, points 220", "=> reduction 221 g, points 220", 1)
    if broken:
        text += "\nthis is not a statement\n"
    if comment:
        text = f"# {comment}\n" + text
    return text


@dataclass
class Registry:
    db: Database
    admin: int = 0
    admin2: int = 0
    author: int = 0  # expert and committee member of the transport committee
    expert: int = 0  # an expert only
    members: list[int] = field(default_factory=list)  # committee members (not authors)
    outsider: int = 0  # committee member of another committee
    integrator: int = 0
    committee: int = 0

    @classmethod
    def setup(cls, db: Database) -> "Registry":
        reg = cls(db)
        with db.unit_of_work() as s:
            def user(email, *roles):
                return users.create_user(s, None, email=email, name=email.split("@")[0],
                                         roles=roles).id
            reg.admin = user("admin@tanpu.test", "administrator")
            reg.admin2 = user("admin2@tanpu.test", "administrator", "expert")
            reg.author = user("author@tanpu.test", "expert", "committee_member")
            reg.expert = user("expert@tanpu.test", "expert")
            reg.members = [user(f"member{i}@tanpu.test", "committee_member") for i in range(1, 5)]
            reg.outsider = user("outsider@tanpu.test", "committee_member")
            reg.integrator = user("integrator@tanpu.test", "integrator")
            committee = workflow.create_committee(s, reg.admin, domain="transport",
                                                  name="Transport committee")
            reg.committee = committee.id
            for member in [reg.author, *reg.members]:
                workflow.add_member(s, reg.admin, committee, member)
            energy = workflow.create_committee(s, reg.admin, domain="energy", name="Energy")
            workflow.add_member(s, reg.admin, energy, reg.outsider)
            workflow.create_methodology(s, reg.author, id=METHODOLOGY, title="Test transit",
                                        domain="transport")
        return reg

    def uow(self):
        return self.db.unit_of_work()

    def version(self, version_id: int) -> MethodologyVersion:
        with self.db.read() as s:
            return workflow.get_version(s, version_id)

    def state(self, version_id: int) -> str:
        return self.version(version_id).state

    def count(self, table: str) -> int:
        with self.db.engine.connect() as connection:
            return connection.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one()

    # ------------------------------------------------------------ bringing versions along
    def new_version(self, version: str = "1.0.0", methodology_id: str = METHODOLOGY,
                    author: int | None = None, **source_options) -> int:
        with self.uow() as s:
            if methodology_id != METHODOLOGY and s.get(workflow.Methodology, methodology_id) is None:
                workflow.create_methodology(s, self.author, id=methodology_id,
                                            title=methodology_id, domain="transport")
            return workflow.create_version(
                s, author or self.author, methodology_id, version,
                source(methodology_id, version, **source_options)).id

    def votes(self, version_id: int, *decisions: str, voters=None) -> None:
        voters = voters or self.members
        for voter, decision in zip(voters, decisions):
            with self.uow() as s:
                workflow.vote(s, voter, version_id, decision,
                              "" if decision == "approve" else f"{decision} because")

    def to_state(self, state: str, version: str = "1.0.0", methodology_id: str = METHODOLOGY,
                 effective_from: dt.date = dt.date(2024, 1, 1), author: int | None = None) -> int:
        """A new version brought to `state` by the workflow (superseded: by a new patch
        version published a month later)."""
        vid = self.new_version(version, methodology_id, author=author)
        if state == "draft":
            return vid
        with self.uow() as s:
            workflow.submit(s, author or self.author, vid)
        if state == "submitted":
            return vid
        with self.uow() as s:
            workflow.open_review(s, self.members[0], vid)
        if state == "in_review":
            return vid
        if state in ("changes_requested", "resubmitted"):
            with self.uow() as s:
                workflow.request_changes(s, self.members[0], vid, "please fix the title")
            if state == "resubmitted":
                with self.uow() as s:
                    workflow.resubmit(s, author or self.author, vid)
            return vid
        if state == "rejected":
            with self.uow() as s:
                workflow.reject(s, self.admin, vid, "out of scope")
            return vid
        self.votes(vid, "approve", "approve", "approve")
        with self.uow() as s:
            workflow.approve(s, self.admin, vid)
        if state == "approved":
            return vid
        with self.uow() as s:
            workflow.publish(s, self.admin, vid, effective_from=effective_from)
        if state == "published":
            return vid
        if state == "superseded":
            major, minor, patch = workflow.parse_semver(version)
            self.to_state("published", f"{major}.{minor}.{patch + 1}", methodology_id,
                          effective_from + dt.timedelta(days=31))
            return vid
        with self.uow() as s:
            if state == "suspended":
                workflow.suspend(s, self.admin, vid, "factor under investigation")
            elif state == "retired":
                workflow.retire(s, self.admin, vid, "programme ended")
            else:
                raise ValueError(state)
        return vid
