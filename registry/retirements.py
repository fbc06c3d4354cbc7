"""Retiring reductions: grams taken out of an account for good, against a named purpose
(an event's carbon neutrality, an enterprise's offset), with a certificate anyone can
verify.

    with db.unit_of_work() as s:
        retirement = retirements.retire(s, admin, account_id, to_mg(kg="1.5"),
                                        purpose="2024 marathon: carbon neutral",
                                        beneficiary="Quzhou Marathon Committee")
    with db.read() as s:
        cert = retirements.certificate(s, retirement.id)   # cert.verified, cert.content

Which grams: the account's credits, oldest first (by entry id), each giving what it has
left: its reduction, minus its reversal (registry/reversals.py), minus what earlier
retirements took. The parts (retirement_parts) say how many grams of which credit a
retirement took, so a gram is retired at most once: per credit, the parts never sum to
more than it credited. That is checked under the account's row lock (FOR UPDATE on
PostgreSQL; SQLite's single writer), which every writer of the account's balances takes
first (registry/rewards.py), so two retirements of one account are computed one after
the other and the second takes the next credits. A credit some of whose grams were
retired is not reversed (reversals.py). Grams are not points: redeeming spends points,
and retiring is the only way grams leave an account.

The certificate: the retirement's id (a random UUID, its public name), the account,
what was retired (mg and t), the purpose and beneficiary, when, and the credits it came
from (integrator, record id, methodology, version, content hash, grams); its digest is
the SHA-256 of the canonical JSON (sorted keys, no spaces, UTF-8) of all that, stored
with the retirement. Verifying recomputes the content from the stored rows and the
digest from the content: a changed row, part or digest shows.

Who: an administrator, the system (actor None), or an integrator that sees the account
(registry/accounts.py). A frozen or closed account retires nothing. Audited as
`ledger.retire`.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Optional

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import accounts, audit, users
from .errors import Conflict, Invalid, InvalidTransition, NotFound
from .models import ACTIVE, CreditEntry, Retirement, RetirementPart, utcnow
from .rewards import lock_account, text

MAX_PURPOSE = 2000
MAX_BENEFICIARY = 400
MG_PER = {"mg": Decimal(1), "g": Decimal(1_000), "kg": Decimal(1_000_000),
          "t": Decimal(1_000_000_000)}


def to_mg(*, mg=None, g=None, kg=None, t=None) -> int:
    """One amount, in one unit, as whole milligrams ("1.5" kg -> 1500000); a fraction of a
    milligram or a non-positive amount is Invalid."""
    given = [(unit, value) for unit, value in (("mg", mg), ("g", g), ("kg", kg), ("t", t))
             if value is not None]
    if len(given) != 1:
        raise Invalid("give the amount once: in mg, g, kg or t")
    unit, value = given[0]
    if isinstance(value, bool):
        raise Invalid(f"{unit}: a number")
    try:
        amount = Decimal(str(value)) * MG_PER[unit]
    except InvalidOperation:
        raise Invalid(f"{unit}: a number, not {value!r}") from None
    if not amount.is_finite() or amount <= 0 or amount != amount.to_integral_value():
        raise Invalid(f"{value} {unit} is not a positive whole number of milligrams")
    return int(amount)


def tonnes(mg: int) -> str:
    """Milligrams as tonnes, exactly, without trailing zeros ("0.0015")."""
    text = format(Decimal(mg) / MG_PER["t"], "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _time(value) -> str:
    return value.isoformat(timespec="microseconds").replace("+00:00", "Z")


def retirable_mg(session: Session, account_id: int) -> int:
    """The grams (mg) the account can still retire (accounts.balances computes it)."""
    return accounts.balances(session, account_id, subtree=False).retirable_mg


def retire(session: Session, actor, account_id: int, reduction_mg: int, purpose: str,
           beneficiary: str = "") -> Retirement:
    """Retires `reduction_mg` of the account's grams (module docstring). Conflict when the
    account has fewer retirable grams; nothing is written then."""
    actor = users.actor_in(session, actor)
    if isinstance(reduction_mg, bool) or not isinstance(reduction_mg, int) or reduction_mg <= 0:
        raise Invalid("the amount to retire is a positive whole number of milligrams")
    purpose = text(purpose, "a retirement's purpose", MAX_PURPOSE, required=True)
    beneficiary = text(beneficiary, "a beneficiary", MAX_BENEFICIARY, required=False)
    accounts.visible(session, actor, account_id)  # an integrator's own accounts only
    account = lock_account(session, account_id)
    if account.status != ACTIVE:
        raise InvalidTransition(f"account {account.id} is {account.status}: it retires nothing")
    left = accounts.remaining_mg().label("left")
    parts: list[tuple[int, int]] = []
    needed = reduction_mg
    rows = session.execute(select(CreditEntry.id, left).where(
        CreditEntry.account == str(account.id), left > 0).order_by(CreditEntry.id)
        .execution_options(yield_per=500))
    for entry_id, available in rows:
        take = min(int(available), needed)
        parts.append((entry_id, take))
        needed -= take
        if needed == 0:
            break
    rows.close()
    if needed:
        raise Conflict(f"account {account.id} has {reduction_mg - needed} mg to retire, "
                       f"not {reduction_mg}")
    retirement = Retirement(id=str(uuid.uuid4()), account_id=account.id,
                            reduction_mg=reduction_mg, purpose=purpose, beneficiary=beneficiary,
                            actor_id=actor.id if actor else None, created_at=utcnow(), digest="")
    retirement.digest = digest(content(retirement, _credits(session, parts)))
    session.add(retirement)
    session.flush()
    session.execute(RetirementPart.__table__.insert(), [
        {"retirement_id": retirement.id, "entry_id": e, "reduction_mg": mg} for e, mg in parts])
    audit.append(session, actor, "ledger.retire", "retirement", retirement.id, {
        "account": account.id, "reduction_mg": reduction_mg, "purpose": purpose,
        "beneficiary": beneficiary, "parts": [[e, mg] for e, mg in parts],
        "digest": retirement.digest})
    return retirement


def _credits(session: Session, parts: list[tuple[int, int]]) -> list[dict]:
    """The certificate's list of credits for (entry id, grams) parts, by entry id."""
    taken = dict(parts)
    entries = {e.id: e for e in session.scalars(select(CreditEntry).where(
        CreditEntry.id.in_(list(taken))))}
    return [{"entry": e.id, "integrator": e.integrator_id, "record_id": e.record_id,
             "methodology": e.methodology_id, "version": e.version,
             "content_hash": e.content_hash, "reduction_mg": taken[e.id]}
            for e in (entries[i] for i in sorted(taken))]


def content(retirement: Retirement, credits: list[dict]) -> dict:
    """What the certificate says, the digest aside."""
    return {"certificate": retirement.id, "account": retirement.account_id,
            "reduction_mg": retirement.reduction_mg, "reduction_t": tonnes(retirement.reduction_mg),
            "purpose": retirement.purpose, "beneficiary": retirement.beneficiary,
            "retired_at": _time(retirement.created_at), "credits": credits}


def canonical(data: dict) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def digest(data: dict) -> str:
    return hashlib.sha256(canonical(data).encode("utf-8")).hexdigest()


@dataclass
class Certificate:
    content: dict
    digest: str  # as stored with the retirement
    recomputed: str  # from the stored rows, now

    @property
    def verified(self) -> bool:
        return self.digest == self.recomputed

    def to_dict(self) -> dict:
        return {**self.content, "digest": self.digest, "recomputed_digest": self.recomputed,
                "verified": self.verified, "algorithm": "sha256 of the canonical JSON "
                "(sorted keys, no spaces, UTF-8) of the certificate without its digest"}


def certificate(session: Session, retirement_id: str) -> Certificate:
    """The certificate of a retirement, recomputed from the stored rows (public: no actor)."""
    retirement = session.get(Retirement, retirement_id) if isinstance(retirement_id, str) else None
    if retirement is None:
        raise NotFound(f"no certificate {retirement_id}")
    parts = [(p.entry_id, p.reduction_mg) for p in session.scalars(
        select(RetirementPart).where(RetirementPart.retirement_id == retirement.id))]
    data = content(retirement, _credits(session, parts))
    return Certificate(data, retirement.digest, digest(data))


def retirements_of(session: Session, account_id: int, limit: int = 100) -> list[Retirement]:
    return list(session.scalars(select(Retirement).where(Retirement.account_id == account_id)
                                .order_by(Retirement.created_at.desc()).limit(limit)))


def list_retirements(session: Session, *, account_id: Optional[int] = None, page: int = 1,
                     per_page: int = 50) -> tuple[list[Retirement], int]:
    """Retirements, newest first (one account's, or all), a page at a time."""
    query = select(Retirement)
    count = select(func.count()).select_from(Retirement)
    if account_id is not None:
        query = query.where(Retirement.account_id == account_id)
        count = count.where(Retirement.account_id == account_id)
    total = int(session.scalar(count))
    items = list(session.scalars(query.order_by(Retirement.created_at.desc(), Retirement.id)
                                 .offset((page - 1) * per_page).limit(per_page)))
    return items, total
