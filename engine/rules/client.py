"""RulesEngine: a methodology's cross-record rules applied by durable_rules.

    RulesEngine(methodology).apply(results, prior_state=None)

changes `results` exactly as engine/cross_record.apply does (statuses, codes, messages,
capped amounts, points recomputed with Engine.recompute_points, flags, bonus), with the
decisions of the rules taken in a worker process (worker.py). When the worker dies,
hangs or fails, after `retries` fresh attempts, apply raises RulesEngineError and leaves
`results` untouched: the caller can fall back to cross_record.apply or report.

What stays here: the canonical order and the record-id check (a record id evaluated
before is a duplicate whatever its account: record identity, not a methodology's rule),
grouping per account, encoding records as facts, and applying the decisions.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import defaultdict
from typing import Iterable, Optional

from dsl.ir import ast as ir

from .. import channels, counters
from ..cross_record import accounts_of, canonical_order, cap_reached, decide, period_of
from ..plan.from_ir import cross_record as cross_record_of
from ..evaluate import Engine
from ..result import (CAP_REACHED, CAPPED, CREDITED, DUPLICATE, DUPLICATE_ID, REJECTED,
                      Result)
from ..scalar import LocalTime
from .prior import Credited, ledgers
from .ruleset import CompiledRules, allowed, compile_rules
from .session import Record
from .worker import Limits, Worker, WorkerFailure

CHUNK_SIZE = 5_000  # records per session (durable_rules slows down as facts accumulate)
REQUEST_RECORDS = 20_000  # records per request to the worker (accounts are never split)
LONG_KEY = 512  # longer duplicate keys are sent as their SHA-256


class RulesEngineError(RuntimeError):
    """The rules engine could not decide; `results` were not changed."""


_shared: Optional[Worker] = None
_shared_lock = threading.Lock()


def shared_worker() -> Worker:
    """The process-wide worker (started on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Worker()
        return _shared


class RulesEngine:
    def __init__(self, methodology: ir.Methodology, *, engine=None, worker: Optional[Worker] = None,
                 retries: int = 1, timeout: Optional[float] = None, chunk_size: int = CHUNK_SIZE,
                 request_records: int = REQUEST_RECORDS):
        """`engine`: the Engine whose recompute_points gives a capped record its points
        (built from `methodology` when needed); `worker`: a Worker of one's own instead
        of the shared one; `timeout`: seconds per request (default 60 + 10 ms a record)."""
        self.methodology = methodology
        others = (methodology.duplicates or methodology.overlaps or methodology.flags
                  or methodology.bonuses or methodology.caps)  # near duplicates: channels.py
        self.rules: Optional[CompiledRules] = compile_rules(methodology) if others else None
        self._engine = engine
        self._worker = worker
        self.retries = retries
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.request_records = request_records

    @property
    def worker(self) -> Worker:
        return self._worker if self._worker is not None else shared_worker()

    def _recompute(self, result: Result, reduction_mg: int) -> int:
        if self._engine is None:
            self._engine = Engine(self.methodology)
        return self._engine.recompute_points(result, reduction_mg)

    # ------------------------------------------------------------ apply
    def apply(self, results: list[Result], prior_state: Optional[Iterable[Credited]] = None,
              explain: bool = False) -> None:
        m = self.methodology
        order = canonical_order(results)
        seen_ids: set[str] = set()
        repeated: list[int] = []
        for i in order:
            if results[i].id in seen_ids:
                repeated.append(i)
            seen_ids.add(results[i].id)
        decisions: list[tuple] = []
        near = self._near_duplicates(results, order, set(repeated)) if m.near_duplicates else []
        if self.rules is not None:
            skip = set(repeated) | {i for i, _, _ in near}
            by_account: dict[str, list[int]] = defaultdict(list)
            for i in order:
                if i not in skip and results[i].status == CREDITED:
                    by_account[results[i].account].append(i)
            decisions = self._decide(results, by_account, ledgers(m, prior_state))
        # everything decided: only now change the results
        for i in repeated:
            decide(results[i], DUPLICATE, DUPLICATE_ID, "this record id was already evaluated", explain)
            results[i].reduction_mg, results[i].points = 0, 0
        for i, r, event in near:
            rule = m.near_duplicates[r]
            decide(results[i], DUPLICATE, rule.code, channels.message(rule, event), explain, of=event)
            results[i].reduction_mg, results[i].points = 0, 0
        self._apply_decisions(results, decisions, explain)
        # counters and rewards come after every rule: the reference's, on the decisions
        # durable_rules made (engine/counters.py)
        if m.counters or m.rewards:
            counters.apply(results, cross_record_of(m), explain, None, accounts_of(results))

    def _near_duplicates(self, results, order, repeated: set) -> list:
        """engine/channels.py's judging (one event through several channels), before the
        ruleset sees the records it leaves: the ruleset has no arrival order to match on."""
        by_account: dict[str, list[int]] = defaultdict(list)
        for i in order:
            if i not in repeated and results[i].status == CREDITED:
                by_account[results[i].account].append(i)
        found = []
        for indexes in by_account.values():
            found += channels.judge(self.methodology.near_duplicates,
                                    [(i, results[i].id, results[i].values) for i in indexes])
        return found

    def _decide(self, results, by_account, prior) -> list[tuple]:
        rules = self.rules
        local = {cap.timezone: LocalTime(cap.timezone) for cap in rules.caps}
        requests, current, size = [], [], 0
        for account, indexes in by_account.items():
            records = [self._record(results[i], i, local) for i in indexes]
            if current and size + len(records) > self.request_records:
                requests.append(current)
                current, size = [], 0
            current.append((records, prior.get(account, {})))
            size += len(records)
        if current:
            requests.append(current)
        methodology = self.methodology if rules.needs_recompute else None
        out = []
        for batches in requests:
            for per_batch in self._run(batches, methodology):
                out.extend(per_batch)
        return out

    def _run(self, batches, methodology) -> list:
        timeout = self.timeout
        if timeout is None:
            timeout = 60.0 + 0.01 * sum(len(records) for records, _ in batches)
        worker = self.worker
        failures = []
        with worker.lock:
            for _attempt in range(1 + max(0, self.retries)):
                try:
                    return worker.run(self.rules, methodology, batches, self.chunk_size, timeout)
                except WorkerFailure as failure:
                    failures.append(str(failure).splitlines()[0])
        raise RulesEngineError("the rules engine failed: " + " / ".join(failures))

    def _record(self, r: Result, seq: int, local) -> Record:
        m, values = self.methodology, r.values
        keys = tuple(_key_text(tuple(values[k] for k in rule.keys), seq) for rule in m.duplicates)
        starts = tuple(values[rule.start] for rule in m.overlaps)
        ends = tuple(values[rule.end] for rule in m.overlaps)
        periods = tuple(period_of(local[cap.timezone].day(r.time), cap.period) for cap in m.caps)
        return Record(seq, r.time, keys, starts, ends, r.reduction_mg, r.points, periods,
                      dict(values) if self.rules.needs_recompute else None)

    # ------------------------------------------------------------ decisions -> results
    def _apply_decisions(self, results, decisions, explain: bool) -> None:
        m = self.methodology
        flags: dict[int, list[str]] = defaultdict(list)
        for seq, decision in decisions:
            r = results[seq]
            kind = decision[0]
            if kind == "duplicate":
                rule = m.duplicates[decision[1]]
                decide(r, DUPLICATE, rule.code, rule.message, explain, keys=list(rule.keys))
                r.reduction_mg, r.points = 0, 0
            elif kind == "overlap":
                rule = m.overlaps[decision[1]]
                decide(r, REJECTED, rule.code, rule.message, explain)
                r.reduction_mg, r.points = 0, 0
            elif kind == "flag":
                flags[seq].append(m.flags[decision[1]].code)
            elif kind == "bonus":
                r.bonus += m.bonuses[decision[1]].points
            elif kind == "capped":
                cap, before = m.caps[decision[1]], decision[2]
                amount = allowed(cap.limit, before)
                decide(r, CAPPED, CAP_REACHED, cap_reached(cap),
                     explain, period=cap.period, limit=cap.limit, before=before, allowed=amount)
                if cap.target == "reduction":
                    r.reduction_mg = amount
                    r.points = self._recompute(r, amount)
                else:
                    r.points = amount
            else:  # pragma: no cover - the worker sends nothing else
                raise RulesEngineError(f"unknown decision {decision!r}")
        for seq, codes in flags.items():
            results[seq].flags = tuple(sorted(set(codes)))


class RulesPathEngine(Engine):
    """An Engine whose cross-record rules are applied by RulesEngine (`tanpu eval
    --engine rules`); everything else is Engine's."""

    def __init__(self, methodology: ir.Methodology, **options):
        super().__init__(methodology)
        self.rules_engine = RulesEngine(methodology, engine=self, **options)

    def apply_cross_record(self, results: list[Result], *, explain: bool = False,
                           state: Optional[dict] = None) -> None:
        if state is not None:  # the ledger and `tanpu eval` evaluate with the reference
            raise ValueError("the durable_rules path takes no account state; use engine.Engine")
        self.rules_engine.apply(results, explain=explain)


def _key_text(values: tuple, seq: int) -> str:
    """A record's key as text that is equal exactly when the keys are equal in Python."""
    plain = []
    for value in values:
        if isinstance(value, float):
            if value != value:  # NaN equals nothing, not even itself
                return f"nan#{seq}"
            value = value + 0.0  # -0.0 == 0.0
        plain.append(value)
    text = json.dumps(plain, ensure_ascii=True, separators=(",", ":"))
    if len(text) > LONG_KEY:
        text = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text
