"""One account's records through durable_rules sessions (inside the worker process).

A session lives for one chunk of one account: its facts are the account's state that the
chunk's records can meet (earlier accepted records, the ledger of the cap periods), its
records are posted one question at a time in canonical order, and the session is deleted
at the end, whatever happens. Decisions come only from the rules (see ruleset.py); this
module asks the questions in the reference's order and writes the consequences of the
decisions into the state: an accepted record becomes an acc fact, a credited amount is
added to its period's ledger fact, a capped reduction gives the record new points.

Long accounts are split into chunks of at most `chunk_size` records (durable_rules
indexes a session's messages in 512 buckets, so posting slows down as facts accumulate,
and memory grows by several kB per fact). A later chunk's session starts with the facts
its records can match: earlier accepted records with one of the chunk's duplicate keys,
the one with the latest end per overlap rule, the last few for the window rules, and the
ledger of the periods it reaches. Rules that only ever see these facts decide exactly as
they would with the whole history.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, NamedTuple, Optional

from .host import Decision, HostError, RulesHost
from .ids import IdAllocator
from .ruleset import CompiledRules, allowed


class Record(NamedTuple):
    """A credited record as the worker receives it."""
    seq: int  # its index in the caller's result list
    time: int  # microseconds, UTC
    keys: tuple  # canonical text of its key per duplicate rule
    starts: tuple  # its start per overlap rule
    ends: tuple  # its end per overlap rule
    reduction: int  # mg
    points: int
    periods: tuple  # its period number per cap
    values: Optional[dict]  # its inputs, when points must be recomputed in the session


Recompute = Callable[[dict, int], int]  # (inputs, capped reduction mg) -> points


class _Session:
    def __init__(self, host: RulesHost, ruleset: str, sid: str):
        self.host, self.ruleset, self.sid = host, ruleset, sid
        self.ids = IdAllocator(sid)
        self.ledger: dict[int, dict] = {}  # cap -> its ledger fact for the current period

    def _send(self, message: dict, prefix: str) -> dict:
        message["id"] = self.ids.new(prefix)
        message["sid"] = self.sid
        message["one"] = 1  # for ruleset._join
        return message

    def fact(self, content: dict) -> dict:
        fact = self._send(dict(content), "f")
        self.host.assert_fact(self.ruleset, fact)
        return fact

    def retract(self, fact: dict) -> None:
        self.host.retract_fact(self.ruleset, fact)

    def ask(self, event: dict) -> Decision:
        return self.host.ask(self.ruleset, self._send(event, "q"))

    def close(self) -> None:
        self.host.end_session(self.ruleset, self.sid)


class AccountRun:
    """The state of one account across its sessions, and the decisions so far."""

    def __init__(self, host: RulesHost, rules: CompiledRules, ledger: dict,
                 recompute: Optional[Recompute] = None):
        self.host, self.rules, self.recompute = host, rules, recompute
        self.ledger = dict(ledger)  # (cap, period) -> credited amount, prior state included
        self.no = 0  # accepted records so far
        self.by_key = [dict() for _ in range(rules.duplicates)]  # key -> acc fact
        self.latest_end = [None] * rules.overlaps  # acc fact with the latest end
        self.recent: deque = deque(maxlen=max(1, rules.window_depth))
        self.decisions: list[tuple] = []  # (seq, (kind, rule index[, before]))
        self.sessions = 0

    def run(self, records: list[Record], chunk_size: int, new_sid: Callable[[], str]) -> list[tuple]:
        for start in range(0, len(records), chunk_size):
            chunk = records[start:start + chunk_size]
            session = _Session(self.host, self.rules.name, new_sid())
            self.sessions += 1
            try:
                self._carry_over(session, chunk)
                for record in chunk:
                    self._record(session, record)
            finally:
                session.close()
        return self.decisions

    # ------------------------------------------------------------ state
    def _carry_over(self, session: _Session, chunk: list[Record]) -> None:
        needed: dict[int, dict] = {}
        for i, seen in enumerate(self.by_key):
            for record in chunk:
                fact = seen.get(record.keys[i])
                if fact is not None:
                    needed[fact["no"]] = fact
        for fact in self.latest_end:
            if fact is not None:
                needed[fact["no"]] = fact
        if self.rules.window_depth:
            for fact in self.recent:
                needed[fact["no"]] = fact
        for no in sorted(needed):
            session.fact(needed[no])

    def _accepted(self, session: _Session, record: Record) -> None:
        self.no += 1
        fact = {"t": "acc", "no": self.no, "time": record.time}
        for i, key in enumerate(record.keys):
            fact[f"k{i}"] = key
        for i, end in enumerate(record.ends):
            fact[f"e{i}"] = end
        session.fact(fact)
        for i, seen in enumerate(self.by_key):
            seen.setdefault(record.keys[i], fact)
        for i, end in enumerate(record.ends):
            latest = self.latest_end[i]
            if latest is None or end > latest[f"e{i}"]:
                self.latest_end[i] = fact
        self.recent.append(fact)

    def _ledger_fact(self, session: _Session, cap: int, period: int) -> dict:
        fact = session.ledger.get(cap)
        if fact is not None and fact["p"] == period:
            return fact
        if fact is not None:  # the account moved on to a later period of this cap
            session.retract(fact)
        fact = session.fact({"t": "ledger", "c": cap, "p": period,
                             "v": self.ledger.get((cap, period), 0)})
        session.ledger[cap] = fact
        return fact

    def _credit(self, session: _Session, cap: int, period: int, amount: int) -> None:
        if amount == 0:
            return
        old = session.ledger[cap]
        session.retract(old)
        total = old["v"] + amount
        session.ledger[cap] = session.fact({"t": "ledger", "c": cap, "p": period, "v": total})
        self.ledger[(cap, period)] = total

    # ------------------------------------------------------------ one record
    def _record(self, session: _Session, record: Record) -> None:
        rules, seq = self.rules, record.seq
        if rules.screens:
            event = {"t": "rec", "seq": seq}
            for i, key in enumerate(record.keys):
                event[f"k{i}"] = key
            for i, start in enumerate(record.starts):
                event[f"s{i}"] = start
            decision = session.ask(event)
            if decision.kind != "accept":
                self.decisions.append((seq, (decision.kind, decision.index)))
                return
        if rules.keeps_accepted:
            self._accepted(session, record)
        for kind, count in (("win", len(rules.flags)), ("bon", len(rules.bonuses))):
            for j in range(count):
                decision = session.ask({"t": kind, "r": j, "seq": seq, "no": self.no,
                                        "time": record.time})
                if decision.kind != "pass":
                    self.decisions.append((seq, (decision.kind, decision.index)))
        reduction, points = record.reduction, record.points
        for c, cap in enumerate(rules.caps):
            value = reduction if cap.target == "reduction" else points
            period = record.periods[c]
            ledger = self._ledger_fact(session, c, period)
            decision = session.ask({"t": "capq", "c": c, "seq": seq, "p": period, "v": value})
            if decision.before != ledger["v"] or decision.index != c:
                raise HostError(f"cap {c} of record {seq} was decided against another ledger fact")
            if decision.kind == "fits":
                credited = value
            else:
                credited = allowed(cap.limit, decision.before)
                self.decisions.append((seq, ("capped", c, decision.before)))
                if cap.target == "reduction":
                    reduction = credited
                    if self.recompute is not None:
                        points = self.recompute(record.values, credited)
                else:
                    points = credited
            self._credit(session, c, period, max(0, credited))  # a debit makes no room
