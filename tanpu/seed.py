"""Loading the bundled methodologies into a registry as published versions (`tanpu seed`,
and `tanpu serve` at every start), and the first administrator.

Idempotent: users, committees and versions that exist are left as they are; running it
again publishes only what is missing (a newer bundled version supersedes the older one).
Everything goes through the real workflow, so the audit log tells what happened:

  - `system@tanpu.local` ("Tanpu system", administrator, no password: cannot sign in)
    creates the committees, opens the reviews, approves and publishes;
  - `curator@tanpu.local` (expert, no password) authors the bundled versions;
  - a demo committee per domain (transport, energy) with three demo reviewers
    (`transport.reviewer1@tanpu.local` ...; committee members, no password unless
    `--demo-password` is given) who vote to approve, each vote saying it was cast by the seed.

Each methodology is one transaction: it is published completely or not at all.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from sqlalchemy import select

from dsl import compile_source
from registry import notifications, users, workflow
from registry.db import Database
from registry.errors import RegistryError
from registry.models import (ADMINISTRATOR, COMMITTEE_MEMBER, EXPERT, FROZEN_STATES, Committee,
                             Methodology, MethodologyVersion, User, utcnow)

SYSTEM_EMAIL = "system@tanpu.local"
CURATOR_EMAIL = "curator@tanpu.local"
FIRST_ADMIN_EMAIL = "admin@tanpu.local"
REVIEWERS_PER_COMMITTEE = 3
VOTE_COMMENT = "Bundled methodology, loaded by tanpu seed (demo reviewer)"

COMMITTEES = {
    "transport": "交通出行专家委员会 Transport committee",
    "energy": "能源专家委员会 Energy committee",
}
REVIEWER_NAMES = {
    "transport": "交通评审 Transport reviewer",
    "energy": "能源评审 Energy reviewer",
}
# methodology id -> domain; everything else is transport
DOMAINS = {
    "cn.rooftop-pv-grid": "energy",
    "cn.wuhan.electricity-saving": "energy",
    "cn.shenzhen.household-electricity": "energy",
}


def bundled_folder() -> Optional[Path]:
    """methodologies/ of the source checkout (None when installed without it)."""
    folder = Path(__file__).resolve().parent.parent / "methodologies"
    return folder if folder.is_dir() else None


def domain_of(methodology_id: str) -> str:
    return DOMAINS.get(methodology_id, "transport")


def reviewer_email(domain: str, n: int) -> str:
    return f"{domain}.reviewer{n}@tanpu.local"


@dataclass
class SeedReport:
    published: list[str] = field(default_factory=list)  # "id version"
    present: list[str] = field(default_factory=list)  # already there
    skipped: list[str] = field(default_factory=list)  # "id version: why"
    users_created: list[str] = field(default_factory=list)
    committees_created: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        if self.users_created:
            out.append(f"seed: created users {', '.join(self.users_created)}")
        if self.committees_created:
            out.append(f"seed: created committees {', '.join(self.committees_created)}")
        for item in self.published:
            out.append(f"seed: published {item}")
        for item in self.skipped:
            out.append(f"seed: skipped {item}")
        out.append(f"seed: {len(self.published)} published, {len(self.present)} already "
                   f"present, {len(self.skipped)} skipped")
        return out


def _user(session, report: SeedReport, email: str, name: str, roles: list[str]) -> User:
    user = users.by_email(session, email)
    if user is None:
        user = users.create_user(session, None, email=email, name=name, roles=roles)
        report.users_created.append(email)
    return user


def _people(db: Database, report: SeedReport, demo_password: Optional[str]) -> None:
    with db.unit_of_work() as s:
        system = _user(s, report, SYSTEM_EMAIL, "Tanpu 系统 system", [ADMINISTRATOR])
        _user(s, report, CURATOR_EMAIL, "内置方法学维护 Bundled methodologies", [EXPERT])
        for domain, name in COMMITTEES.items():
            committee = s.scalar(select(Committee).where(Committee.domain == domain))
            if committee is None:
                committee = workflow.create_committee(s, system, domain=domain, name=name)
                report.committees_created.append(domain)
            for n in range(1, REVIEWERS_PER_COMMITTEE + 1):
                reviewer = _user(s, report, reviewer_email(domain, n),
                                 f"{REVIEWER_NAMES[domain]} {n}", [COMMITTEE_MEMBER])
                if reviewer.id not in committee.member_ids and reviewer.has_role(COMMITTEE_MEMBER):
                    workflow.add_member(s, system, committee, reviewer)
                if demo_password and not reviewer.password_hash:
                    users.set_password(s, None, reviewer, demo_password)
        if demo_password:
            curator = users.by_email(s, CURATOR_EMAIL)
            if curator is not None and not curator.password_hash:
                users.set_password(s, None, curator, demo_password)


_HEADER = re.compile(r'^[ \t]*methodology[ \t]+([A-Za-z][A-Za-z0-9_.\-]*)[ \t]+"(?:[^"\\\n]|\\.)*"'
                     r'[ \t]+version[ \t]+([0-9]+\.[0-9]+\.[0-9]+)\b', re.M)


def _registered(db: Database, source: str) -> Optional[str]:
    """"id version" when the header names a version that is registered and published
    (then there is nothing to compile)."""
    match = _HEADER.search(source)
    if not match:
        return None
    with db.read() as s:
        version = s.scalar(select(MethodologyVersion).where(
            MethodologyVersion.methodology_id == match[1], MethodologyVersion.version == match[2]))
        return f"{match[1]} {match[2]}" if version is not None and version.frozen else None


def _publish_one(db: Database, report: SeedReport, path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    present = _registered(db, source)
    if present:
        report.present.append(present)
        return
    compiled = compile_source(source, str(path))
    if not compiled.ok:
        report.skipped.append(f"{path.name}: does not compile")
        return
    meta = compiled.methodology.metadata
    label = f"{meta.id} {meta.version}"
    semver = workflow.parse_semver(meta.version)
    domain = domain_of(meta.id)
    try:
        with db.unit_of_work() as s:
            system = users.by_email(s, SYSTEM_EMAIL)
            curator = users.by_email(s, CURATOR_EMAIL)
            versions = list(s.scalars(select(MethodologyVersion).where(
                MethodologyVersion.methodology_id == meta.id)))
            same = [v for v in versions if v.version == meta.version]
            if same:
                (report.present if same[0].frozen else report.skipped).append(
                    label if same[0].frozen else f"{label}: exists as {same[0].state}")
                return
            if any(v.semver > semver for v in versions):
                report.present.append(f"{label} (a newer version is registered)")
                return
            if s.get(Methodology, meta.id) is None:
                workflow.create_methodology(s, curator, id=meta.id, title=meta.title,
                                            domain=domain)
            version = workflow.create_version(s, curator, meta.id, meta.version, source)
            workflow.submit(s, curator, version.id)
            workflow.open_review(s, system, version.id)
            committee = workflow.committee_by_domain(s, s.get(Methodology, meta.id)
                                                     .committee.domain)
            for member_id in sorted(committee.member_ids):
                member = s.get(User, member_id)
                if member.email.endswith("@tanpu.local") and member.has_role(COMMITTEE_MEMBER):
                    workflow.vote(s, member, version.id, "approve", VOTE_COMMENT)
            workflow.approve(s, system, version.id)
            effective = meta.effective_from or utcnow().date()
            published = [v for v in versions if v.state in FROZEN_STATES]
            if any(v.effective_from >= effective for v in published):
                effective = max(utcnow().date(),
                                max(v.effective_from for v in published) + dt.timedelta(days=1))
            workflow.publish(s, system, version.id, effective_from=effective)
            notifications.forget(s, version.id)  # reviewed and published at once: nothing waits
        report.published.append(label)
    except RegistryError as error:
        report.skipped.append(f"{label}: {error}")


def seed(db: Database, *, folder: Optional[Path] = None,
         demo_password: Optional[str] = None) -> SeedReport:
    """Users, committees and every bundled methodology published. The database must be
    migrated."""
    report = SeedReport()
    if demo_password is not None and len(demo_password) < users.MIN_PASSWORD_LENGTH:
        raise ValueError(f"the demo password needs at least {users.MIN_PASSWORD_LENGTH} characters")
    _people(db, report, demo_password)
    folder = folder or bundled_folder()
    if folder is None:
        report.skipped.append("no methodologies/ folder: nothing to publish")
        return report
    for path in sorted(folder.glob("*.tanpu")):
        _publish_one(db, report, path)
    return report


def ensure_first_admin(db: Database, email: str = FIRST_ADMIN_EMAIL,
                       name: str = "管理员 Administrator") -> Optional[tuple[str, str]]:
    """(email, password) of a new administrator when none can sign in yet, else None.

    The password is random and returned once: the caller prints it."""
    with db.unit_of_work() as s:
        admins = s.scalars(select(User).where(User.active.is_(True),
                                              User.password_hash.is_not(None))).all()
        if any(u.has_role(ADMINISTRATOR) for u in admins):
            return None
        password = secrets.token_urlsafe(12)
        email = users.normalize_email(email)
        local, _, host = email.partition("@")
        n = 1
        while users.by_email(s, email) is not None:  # taken by an account that cannot sign in
            n += 1
            email = f"{local}{n}@{host}"
        users.create_user(s, None, email=email, name=name, roles=[ADMINISTRATOR],
                          password=password)
        return email, password
