"""Helpers shared by the core pages: which versions a user sees, labels, pagination."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence
from urllib.parse import urlencode

from flask import g, request, session
from flask_babel import lazy_gettext as _l

from registry import users
from registry.models import (FROZEN_STATES, PUBLISHED, Methodology, MethodologyVersion, User)

STATE_LABELS = {
    "draft": _l("Draft"),
    "submitted": _l("Submitted"),
    "in_review": _l("In review"),
    "changes_requested": _l("Changes requested"),
    "resubmitted": _l("Resubmitted"),
    "approved": _l("Approved"),
    "rejected": _l("Rejected"),
    "published": _l("Published"),
    "superseded": _l("Superseded"),
    "suspended": _l("Suspended"),
    "retired": _l("Retired"),
}

ROLE_LABELS = {
    "expert": _l("Expert"),
    "committee_member": _l("Committee member"),
    "administrator": _l("Administrator"),
    "integrator": _l("Integrator"),
}

DOMAIN_LABELS = {
    "transport": _l("Transport"),
    "energy": _l("Energy"),
    "waste": _l("Waste"),
    "forestry": _l("Forestry"),
    "buildings": _l("Buildings"),
}

RESULT_STATUS_LABELS = {
    "credited": _l("credited"),
    "capped": _l("capped"),
    "rejected": _l("rejected"),
    "duplicate": _l("duplicate"),
    "not_applicable": _l("not applicable"),
    "invalid": _l("invalid"),
}

DECISION_LABELS = {
    "approve": _l("Approve"),
    "request_changes": _l("Request changes"),
    "reject": _l("Reject"),
    "abstain": _l("Abstain"),
}


ACTION_LABELS = {
    "version.create": _l("Version created"),
    "version.revise": _l("Source revised"),
    "version.submit": _l("Submitted for review"),
    "version.resubmit": _l("Resubmitted"),
    "version.open_review": _l("Review opened"),
    "version.request_changes": _l("Changes requested"),
    "version.approve": _l("Approved"),
    "version.reject": _l("Rejected"),
    "version.withdraw": _l("Withdrawn to draft"),
    "version.reset_review": _l("Review restarted"),
    "version.publish": _l("Published"),
    "version.supersede": _l("Superseded"),
    "version.suspend": _l("Suspended"),
    "version.reinstate": _l("Reinstated"),
    "version.retire": _l("Retired"),
    "vote.cast": _l("Vote cast"),
    "comment.add": _l("Comment"),
    "comment.anchor": _l("Comment placed on lines or in a thread"),
    "comment.edit": _l("Comment edited"),
    "comment.delete": _l("Comment deleted"),
    "thread.resolve": _l("Thread resolved"),
    "thread.reopen": _l("Thread reopened"),
    "suggestion.apply": _l("Suggestion applied"),
    "review.submit": _l("Review submitted"),
    "methodology.create": _l("Methodology created"),
    "committee.create": _l("Committee created"),
    "committee.set_quorum": _l("Quorum changed"),
    "committee.add_member": _l("Member added"),
    "committee.remove_member": _l("Member removed"),
    "user.create": _l("User created"),
    "user.grant_role": _l("Role granted"),
    "user.revoke_role": _l("Role revoked"),
    "user.activate": _l("User activated"),
    "user.deactivate": _l("User deactivated"),
    "user.set_password": _l("Password set"),
    "user.reset_link": _l("Password link made"),
    "account.create": _l("Account created"),
    "account.resolve": _l("Accounts created for an integrator's ids"),
    "account.set_status": _l("Account status changed"),
    "account.set_parent": _l("Account moved"),
    "account.update": _l("Account changed"),
    "account.link": _l("Account id linked"),
    "account.unlink": _l("Account id unlinked"),
    "api_token.create": _l("API token created"),
    "api_token.revoke": _l("API token revoked"),
    "ledger.credit": _l("Credited"),
    "ledger.retire": _l("Reductions retired"),
    "ledger.reverse": _l("Credit reversed"),
    "reward.create": _l("Reward created"),
    "reward.update": _l("Reward changed"),
    "reward.redeem": _l("Reward redeemed"),
    "job.submit": _l("Batch job submitted"),
    "job.finish": _l("Batch job finished"),
    "webhook.subscribe": _l("Webhook subscribed"),
    "webhook.unsubscribe": _l("Webhook removed"),
}


def action_label(action: str) -> str:
    return str(ACTION_LABELS.get(action, action))


def result_status_label(status: str) -> str:
    """A record's outcome (engine/result.py statuses) in the reader's language."""
    return str(RESULT_STATUS_LABELS.get(status, status))


def state_label(state: str) -> str:
    return str(STATE_LABELS.get(state, state))


def role_label(role: str) -> str:
    return str(ROLE_LABELS.get(role, role))


def domain_label(domain: str) -> str:
    return str(DOMAIN_LABELS.get(domain, domain))


def visible_versions(user: Optional[User], methodology: Methodology) -> list[MethodologyVersion]:
    """The versions `user` may see, oldest first (by version number)."""
    return sorted((v for v in methodology.versions if users.can_view_version(user, v)),
                  key=lambda v: v.semver)


def current_version(versions: Sequence[MethodologyVersion]) -> Optional[MethodologyVersion]:
    """The version a methodology is shown by: the newest published one, else the newest
    that was ever published (superseded, suspended, retired), else the newest."""
    if not versions:
        return None
    for states in ((PUBLISHED,), FROZEN_STATES):
        chosen = [v for v in versions if v.state in states]
        if chosen:
            return max(chosen, key=lambda v: v.semver)
    return max(versions, key=lambda v: v.semver)


@dataclass
class Page:
    items: list
    number: int
    size: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.size))

    @property
    def first_index(self) -> int:
        return 0 if not self.total else (self.number - 1) * self.size + 1

    @property
    def last_index(self) -> int:
        return min(self.total, self.number * self.size)

    def window(self, around: int = 2) -> list[Optional[int]]:
        """Page numbers to show, None for a gap: 1 … 4 5 [6] 7 8 … 20."""
        shown: list[Optional[int]] = []
        for n in range(1, self.pages + 1):
            if n in (1, self.pages) or abs(n - self.number) <= around:
                shown.append(n)
            elif shown and shown[-1] is not None:
                shown.append(None)
        return shown


MAX_ID = 2 ** 63 - 1


def id_arg(name: str, source=None) -> Optional[int]:
    """A query (or form) argument that is a row id: a whole number from 0 to 2**63 - 1
    (0: none, where a view gives it a meaning), else None (a larger number would
    overflow the database driver: a 500; issue 17)."""
    text = ((source if source is not None else request.args).get(name) or "").strip()
    if not text.isdigit() or len(text) > 19:
        return None
    number = int(text)
    return number if number <= MAX_ID else None


MAX_PAGE = 10 ** 9  # beyond any list's last page; a larger number would overflow an OFFSET


def page_number() -> int:
    try:
        return min(max(1, int(request.args.get("page", 1))), MAX_PAGE)
    except ValueError:
        return 1


def paginate(items: Sequence, size: int, number: Optional[int] = None) -> Page:
    number = number or page_number()
    total = len(items)
    pages = max(1, math.ceil(total / size))
    number = min(number, pages)
    start = (number - 1) * size
    return Page(list(items[start:start + size]), number, size, total)


def url_with(**changes) -> str:
    """This page's URL with some query arguments changed (None: removed)."""
    args = request.args.to_dict(flat=False)
    for key, value in changes.items():
        if value is None or value == "":
            args.pop(key, None)
        else:
            args[key] = [str(value)]
    query = urlencode(args, doseq=True)
    return request.path + ("?" + query if query else "")


def json_text(value) -> str:
    """JSON for people: Chinese stays Chinese (the template escapes it)."""
    import json
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


_SUMMARY_KEYS = ("methodology", "version", "from", "to", "decision", "reason", "comment", "role",
                 "email", "name", "roles", "domain", "effective_from", "min_votes", "approval_share",
                 "successor", "grace_days", "idempotency_key", "credited", "body")


def details_summary(details) -> list[tuple[str, str]]:
    """The telling fields of an audit entry's details, short: (key, text)."""
    if not isinstance(details, dict):
        return []
    out = []
    for key in _SUMMARY_KEYS:
        if key in details and details[key] not in (None, "", [], {}):
            value = details[key]
            if isinstance(value, (list, tuple)):
                text = "/".join(str(v) for v in value) if key == "approval_share" else \
                    ", ".join(str(v) for v in value)
            else:
                text = str(value)
            out.append((key, text if len(text) <= 120 else text[:117] + "…"))
    quorum = details.get("quorum")
    if isinstance(quorum, dict) and "met" in quorum:
        out.append(("quorum", f"{quorum.get('approvals')}/{quorum.get('counted')} "
                              f"({_l('met') if quorum.get('met') else _l('not met')})"))
    return [(str(DETAIL_LABELS.get(key, key)), _detail_value(key, text)) for key, text in out]


# The audit details' keys and coded values in the reader's language (the JSON beside
# them keeps the stored words).
DETAIL_LABELS = {
    "methodology": _l("methodology"), "version": _l("version"), "from": _l("from"),
    "to": _l("to"), "decision": _l("decision"), "reason": _l("reason"),
    "comment": _l("comment"), "role": _l("role"), "email": _l("email"), "name": _l("name"),
    "roles": _l("roles"), "domain": _l("domain"), "effective_from": _l("effective from"),
    "min_votes": _l("minimum votes"), "approval_share": _l("approving share"),
    "successor": _l("successor"), "grace_days": _l("grace days"),
    "idempotency_key": _l("idempotency key"), "credited": _l("credited"), "body": _l("text"),
    "quorum": _l("quorum"),
}


def _detail_value(key: str, text: str) -> str:
    if key in ("from", "to"):
        return state_label(text)
    if key == "decision":
        return str(DECISION_LABELS.get(text, text))
    if key == "role":
        return role_label(text)
    if key == "roles":
        return ", ".join(role_label(r.strip()) for r in text.split(","))
    if key == "domain":
        return domain_label(text)
    return text


# ---------------------------------------------------------------- kept form values
_SECRETS = ("password", "csrf_token", "token")


def keep_typed() -> None:
    """A refused form's values (not passwords) come back in it on the page the user is
    sent back to, so nothing typed is lost: held in the session for the next page only."""
    session["typed"] = {k: [v[:4000] for v in values[:50]]
                        for k, values in request.form.to_dict(flat=False).items()
                        if not any(secret in k for secret in _SECRETS)}


def kept(name: str, default="") -> str:
    """The value typed in the field `name` of a form just refused (else `default`)."""
    values = (g.get("typed") or {}).get(name)
    return values[0] if values else default


def kept_all(name: str) -> list[str]:
    return list((g.get("typed") or {}).get(name) or [])


def init_app(app) -> None:
    @app.before_request
    def _typed():
        if request.method == "GET" and "typed" in session:
            g.typed = session.pop("typed")

    app.add_template_global(kept)
    app.add_template_global(kept_all)
    app.add_template_filter(json_text, "json_text")
    app.add_template_global(details_summary)
    app.add_template_global(state_label)
    app.add_template_global(result_status_label)
    app.add_template_global(action_label)
    app.add_template_global(role_label)
    app.add_template_global(domain_label)
    app.add_template_global(url_with)
    app.add_template_global(DECISION_LABELS, "DECISION_LABELS")
