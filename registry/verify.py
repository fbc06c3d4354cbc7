"""Verifying the ledger: every balance and every credit recomputed from what is stored,
and every difference reported (issue 13, item 9; `tanpu ledger verify`).

    report = verify(session)                 # everything
    report = verify(session, sample=100)     # 100 accounts chosen at random (seeded)
    report.ok, report.differences            # (kind, account, record id, field, stored, recomputed)

What is recomputed, and against what:

1. **Balances, two independent ways.** For each account: the ORM sums of its entries
   (one GROUP BY account, methodology over credit_entries), and for its subtree those sums
   added up in Python over the hierarchy read from `accounts.parent_id`; against
   accounts.balances (the recursive CTE joined to the entries, in one statement), own and
   subtree, in total and per methodology. The two share no SQL beyond the table.

2. **Every credit, from its record and its methodology version.** For each (methodology,
   account) with entries, the entries are taken in the order they were written (entry
   id); each record is rebuilt from `entry.record` (the JSON as the integrator sent it,
   its account replaced by the platform account the entry is for, as crediting does),
   evaluated by the entry's version (compiled from the stored source, its content hash
   checked against the entry's) with the per-record formulas only, and then judged by the
   cross-record rules with an AccountState carried from entry to entry, exactly as
   ledger.credit judged it: the entries of one batch together (cross_record.apply sorts
   them in the canonical order, as it sorted the request), the batches in the order
   their entries were written, the state passed between versions through its JSON (so a
   new version that changes a rule starts that rule afresh, as `rule_states` does). The
   recomputed time, status, reduction, points, bonus and code must be the entry's.

   Why replaying the *entries* alone gives the live judgments: crediting judged more
   records than it wrote (those the rules rejected as duplicates or overlaps, those of a
   frozen account), but a record the rules did not accept changes no state:
   cross_record._judge leaves the state before touching it (`continue` before the keys,
   the intervals, the windows and the cap totals are updated), and a frozen account's
   records are rejected before the rules see them. Every record the rules accepted is an
   entry, a capped one included: `capped` is a credit status, so a record capped to 0 mg
   is written (with its 0) and adds its 0 to the period total, as it did live. So the
   state after the credited entries, in the order they were judged, is the state the
   ledger had; and that order is the entry order: an account's entries are written
   while its state row is locked (ledger.credit), so a later request's entries for it get
   later ids, and within one request the rules sort the records themselves.
   The entry order is not the request order *within* a batch (entries are written sorted
   by record id), hence the per-batch grouping.

3. **The stored state.** The replayed state of each (methodology, account) must equal its
   `rule_states` row (AccountState.to_json, both read with the rules of the last version
   replayed, without the duplicate rules' keys: to_json(keys=False)); a row of an account
   without entries must hold nothing (its records were all rejected). The keys the
   replay's duplicate rules accepted (every version's: the replay carries them in its
   JSON) must be the account's rows of `duplicate_keys` (registry/duplicate_keys.py),
   rule by rule; an account without entries has none.

4. **The audit chain** verifies (registry.audit.verify).

What this cannot replay: an entry without its record (written before records were
kept) cannot be recomputed: it is counted in `unverifiable`, and its account's later
credits are not judged (their state is unknown). Nor can the credits of a methodology
with a history window (docs/language.md §9.6): its windows count every record judged,
the rejected ones too, which are not entries; they are counted in `unverifiable`. Nor the
event a near-duplicate rule kept for a record that a later rule then rejected (a plain
duplicate, an overlap): that record is no entry, so the replay keeps no event for it and
reports the account's state (its events, their count) as different (docs/ledger.md,
Session 20). The parts of another version's rules
are kept in the state (engine/state.py, `others`), so records of two versions
interleaved replay as they were judged.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Optional

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dsl import compile_source
from engine import Engine
from engine import cross_record
from engine.records import us_to_datetime
from engine.result import INVALID
from engine.state import AccountState

from . import accounts, audit, duplicate_keys
from .models import Account, CreditBatch, CreditEntry, MethodologyVersion, Reversal, RuleState
from .reversals import uncap, undoes

_FIELDS = ("time", "status", "reduction_mg", "points", "bonus", "code")


@dataclass(frozen=True)
class Difference:
    kind: str  # balance, credit, state, audit
    account: str
    record_id: str  # "" for a balance or a state
    field: str
    stored: Any
    recomputed: Any
    methodology: str = ""

    def to_dict(self) -> dict:
        return {"kind": self.kind, "account": self.account, "record_id": self.record_id,
                "methodology": self.methodology, "field": self.field,
                "stored": self.stored, "recomputed": self.recomputed}

    def __str__(self) -> str:
        where = f"account {self.account}" + (f" record {self.record_id}" if self.record_id else "")
        what = f" ({self.methodology})" if self.methodology else ""
        return f"{self.kind}: {where}{what} {self.field}: stored {self.stored!r}, recomputed {self.recomputed!r}"


@dataclass
class Report:
    accounts: int = 0  # accounts whose balances were checked
    entries: int = 0  # credits recomputed
    states: int = 0  # rule states compared
    unverifiable: int = 0  # entries without their record
    audit: str = ""
    sample: Optional[int] = None
    differences: list[Difference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences

    def to_dict(self) -> dict:
        return {"ok": self.ok, "sample": self.sample, "accounts": self.accounts,
                "entries": self.entries, "states": self.states,
                "unverifiable": self.unverifiable, "audit": self.audit,
                "differences": [d.to_dict() for d in self.differences]}

    def __str__(self) -> str:
        head = (f"ledger {'ok' if self.ok else 'DIFFERS'}: {self.accounts} balance(s), "
                f"{self.entries} credit(s), {self.states} state(s) recomputed"
                + (f" ({self.unverifiable} without their record or with a history window)"
                   if self.unverifiable else "")
                + f"; {self.audit}")
        return "\n".join([head, *(f"  {d}" for d in self.differences)])


def verify(session: Session, sample: Optional[int] = None, *, seed: int = 13) -> Report:
    """Recomputes the ledger (module docstring); `sample`: that many accounts (the ledger's
    account keys: platform accounts and any other account an entry names), chosen by
    random.Random(seed), else all."""
    report = Report(sample=sample)
    keys = _population(session)
    if sample is not None and sample < len(keys):
        keys = sorted(random.Random(seed).sample(keys, max(0, sample)))
    chosen = set(keys)
    _balances(session, chosen, report)
    _credits(session, chosen, report)
    chain = audit.verify(session)
    report.audit = str(chain)
    if not chain.ok:
        seq = chain.first_broken.seq if chain.first_broken is not None else None
        report.differences.append(Difference("audit", "", "", "chain", seq, chain.problem))
    return report


def _population(session: Session) -> list[str]:
    platform = {str(i) for i in session.scalars(select(Account.id))}
    named = set(session.scalars(select(CreditEntry.account).distinct()))
    return sorted(platform | named)


# ---------------------------------------------------------------- 1. balances
def _balances(session: Session, chosen: set[str], report: Report) -> None:
    own: dict[str, dict[str, list[int]]] = defaultdict(dict)  # account -> methodology -> [n, mg, points]
    for account, methodology, n, mg, points, bonus in session.execute(
            select(CreditEntry.account, CreditEntry.methodology_id, func.count(),
                   func.sum(CreditEntry.reduction_mg), func.sum(CreditEntry.points),
                   func.sum(CreditEntry.bonus))
            .group_by(CreditEntry.account, CreditEntry.methodology_id)):
        own[account][methodology] = [int(n), int(mg or 0), int(points or 0) + int(bonus or 0)]
    # balances are net of reversals: each reversal's amounts, summed on their own (the
    # reversal's copy of them, not the entry's) and taken off its entry's account
    for account, methodology, mg, points in session.execute(
            select(Reversal.account, CreditEntry.methodology_id, Reversal.reduction_mg,
                   Reversal.points + Reversal.bonus)
            .join(CreditEntry, CreditEntry.id == Reversal.entry_id)):
        row = own[account].setdefault(methodology, [0, 0, 0])
        row[1] -= int(mg)
        row[2] -= int(points)
    children: dict[int, list[int]] = defaultdict(list)
    ids = []
    for account_id, parent_id in session.execute(select(Account.id, Account.parent_id)):
        ids.append(account_id)
        if parent_id is not None:
            children[parent_id].append(account_id)

    def subtree(account_id: int) -> dict[str, list[int]]:
        total: dict[str, list[int]] = {}
        stack, seen = [account_id], set()
        while stack:
            current = stack.pop()
            if current in seen:  # a cycle would be a difference of its own; do not loop
                continue
            seen.add(current)
            for methodology, sums in own.get(str(current), {}).items():
                row = total.setdefault(methodology, [0, 0, 0])
                for i in range(3):
                    row[i] += sums[i]
            stack.extend(children.get(current, ()))
        return total

    for account_id in sorted(i for i in ids if str(i) in chosen):
        report.accounts += 1
        stored = accounts.balances(session, account_id)
        for part, expected in (("own", own.get(str(account_id), {})), ("subtree", subtree(account_id))):
            totals = getattr(stored, part)
            got = {m: [v["entries"], v["reduction_mg"], v["points"]]
                   for m, v in totals.by_methodology.items()}
            for methodology in sorted(set(got) | set(expected)):
                a, b = got.get(methodology, [0, 0, 0]), expected.get(methodology, [0, 0, 0])
                for i, name in enumerate(("entries", "reduction_mg", "points")):
                    if a[i] != b[i]:
                        report.differences.append(Difference(
                            "balance", str(account_id), "", f"{part}.{name}", a[i], b[i],
                            methodology))
            summed = [sum(v[i] for v in expected.values()) for i in range(3)]
            for i, name in enumerate(("entries", "reduction_mg", "points")):
                if getattr(totals, name) != summed[i]:
                    report.differences.append(Difference(
                        "balance", str(account_id), "", f"{part}.{name}",
                        getattr(totals, name), summed[i]))


# ---------------------------------------------------------------- 2 and 3. credits and states
class _Engines:
    """The engine of each stored version, compiled once per verification (registry cannot
    use the web UI's cache, and a version's source never changes once published)."""

    def __init__(self, session: Session):
        self.session = session
        self.found: dict[tuple[str, str], Optional[Engine]] = {}

    def __call__(self, methodology_id: str, version: str) -> Optional[Engine]:
        key = (methodology_id, version)
        if key not in self.found:
            row = self.session.scalar(select(MethodologyVersion).where(
                MethodologyVersion.methodology_id == methodology_id,
                MethodologyVersion.version == version))
            compiled = compile_source(row.source, f"{methodology_id}@{version}") if row else None
            self.found[key] = Engine(compiled.methodology) if compiled and compiled.ok else None
        return self.found[key]


def _credits(session: Session, chosen: set[str], report: Report) -> None:
    engines = _Engines(session)
    pairs = session.execute(select(CreditEntry.methodology_id, CreditEntry.account).distinct()).all()
    replayed: set[tuple[str, str]] = set()
    for methodology_id, account in sorted(pairs):
        if account not in chosen:
            continue
        replayed.add((methodology_id, account))
        _replay(session, engines, methodology_id, account, report)
    for row in session.scalars(select(RuleState)):
        if row.account in chosen and (row.methodology_id, row.account) not in replayed:
            report.states += 1
            if not _empty(row.state):
                report.differences.append(Difference(
                    "state", row.account, "", "rule_state", row.state, None, row.methodology_id))
    # an account without entries accepted no key either
    for methodology_id, account in sorted(duplicate_keys.accounts_with_keys(session)):
        if account in chosen and (methodology_id, account) not in replayed:
            report.differences.append(Difference(
                "state", account, "", "duplicate_keys",
                _key_text(duplicate_keys.stored(session, methodology_id, account)), None, methodology_id))


def _empty(text: Optional[str]) -> bool:
    """A stored state that remembers nothing: every rule's part empty."""
    if not text:
        return True
    for part in json.loads(text).values():
        if isinstance(part, dict) and set(part) == {"end", "intervals"}:
            if part["end"] is not None or part["intervals"]:
                return False
        elif part:
            return False
    return True


def _runs(entries: list[CreditEntry]) -> list[list[CreditEntry]]:
    """Consecutive entries of one batch: what one ledger.credit call judged together."""
    runs: list[list[CreditEntry]] = []
    for entry in entries:
        if runs and runs[-1][0].batch_id == entry.batch_id:
            runs[-1].append(entry)
        else:
            runs.append([entry])
    return runs


def _replay(session: Session, engines: _Engines, methodology_id: str, account: str,
            report: Report) -> None:
    entries = list(session.scalars(select(CreditEntry).where(
        CreditEntry.methodology_id == methodology_id, CreditEntry.account == account)
        .order_by(CreditEntry.id)))
    state_text: Optional[str] = None
    rules = None
    # reversals take a credit off its cap totals when they happen: replayed between the
    # batches by time, each with the rules of the version that made the reversed credit
    batch_times = dict(session.execute(select(CreditBatch.id, CreditBatch.created_at).where(
        CreditBatch.id.in_({e.batch_id for e in entries}))).all()) if entries else {}
    by_id = {e.id: e for e in entries}
    pending = [rv for rv in session.scalars(select(Reversal).where(Reversal.account == account)
                                            .order_by(Reversal.created_at, Reversal.id))
               if rv.entry_id in by_id]

    def reverse_until(moment) -> None:
        nonlocal state_text
        while pending and (moment is None or pending[0].created_at < moment):
            entry = by_id[pending.pop(0).entry_id]
            engine = engines(methodology_id, entry.version)
            if engine is not None and undoes(engine.rules) and state_text is not None:
                state = AccountState.from_json(engine.rules, state_text)
                uncap(state, engine.rules, entry)
                state_text = state.to_json(engine.rules)

    for run in _runs(entries):
        first = run[0]
        reverse_until(batch_times.get(first.batch_id))
        engine = engines(methodology_id, first.version)
        if engine is None or engine.ref.content_hash != first.content_hash:
            report.differences.append(Difference(
                "credit", account, first.record_id, "content_hash", first.content_hash,
                engine.ref.content_hash if engine else None, methodology_id))
            return
        if any(e.record is None for e in run):
            report.unverifiable += sum(1 for e in entries if e.id >= first.id)
            return
        if engine.histories:
            # a history window counts every record the ledger judged, the rejected ones
            # too, and those are not entries: the judgments cannot be replayed from them
            report.unverifiable += sum(1 for e in entries if e.id >= first.id)
            return
        results = engine.evaluate([json.loads(e.record) for e in run], per_record_only=True)
        for r in results:
            r.account = account  # the platform account, as ledger.credit judged it
        if engine.rules.has_cross_record_rules:
            rules = engine.rules
            state = AccountState.from_json(rules, state_text)
            cross_record.apply(results, rules, engine.recompute_points, state={account: state})
            state_text = state.to_json(rules)
        else:
            cross_record.apply(results, engine.rules, engine.recompute_points)
        for entry, r in zip(run, results):
            report.entries += 1
            _compare(entry, r, report)
    reverse_until(None)
    row = session.get(RuleState, (methodology_id, account))
    if rules is None:
        if row is not None:
            report.states += 1
            if not _empty(row.state):
                report.differences.append(Difference(
                    "state", account, "", "rule_state", row.state, None, methodology_id))
        return
    report.states += 1
    # the state without the duplicate rules' keys, which are rows of their own
    # (registry/duplicate_keys.py): those compared with the keys replayed, rule by rule
    stored = AccountState.from_json(rules, row.state).to_json(rules, keys=False) if row else None
    again = AccountState.from_json(rules, state_text).to_json(rules, keys=False)
    if stored != again:
        report.differences.append(Difference("state", account, "", "rule_state", stored,
                                             again, methodology_id))
    kept = duplicate_keys.of_state(json.loads(state_text))
    rows = duplicate_keys.stored(session, methodology_id, account)
    if rows != kept:
        report.differences.append(Difference("state", account, "", "duplicate_keys",
                                             _key_text(rows), _key_text(kept), methodology_id))


def _key_text(parts: dict[str, set[tuple]]) -> str:
    """Keys (and events) per rule, as a difference shows them."""
    return json.dumps({name: sorted(rows, key=repr) for name, rows in sorted(parts.items())},
                      ensure_ascii=False)


def _compare(entry: CreditEntry, r, report: Report) -> None:
    stored = {"time": entry.activity_time.isoformat() if entry.activity_time else None,
              "status": entry.status, "reduction_mg": entry.reduction_mg,
              "points": entry.points, "bonus": entry.bonus, "code": entry.code or ""}
    again = {"time": us_to_datetime(r.time).isoformat() if r.status != INVALID else None,
             "status": r.status, "reduction_mg": r.reduction_mg, "points": r.points,
             "bonus": r.bonus, "code": r.code if r.status != "credited" else ""}
    for name in _FIELDS:
        if stored[name] != again[name]:
            report.differences.append(Difference("credit", entry.account, entry.record_id, name,
                                                 stored[name], again[name], entry.methodology_id))
