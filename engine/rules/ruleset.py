"""A methodology's cross-record rules compiled to a durable_rules ruleset (JSON definition).

The definition is generated data: every decision is a rule condition over one posted
event (a question about one record) joined with the session's facts (the account's state).
Actions are names from ACTIONS, resolved by the worker to callbacks that only write down
which rule fired on which record and what the matched facts said (engine/rules/worker.py).

Messages of a session (one account, see engine/rules/session.py):

facts (the account's state; durable_rules keeps them until retracted)
  acc     {"t": "acc", "no": n, "time": us, "k0": key, ..., "e0": end, ...}
          an accepted record: n-th accepted record of the account, its duplicate keys
          (canonical text per `forbid duplicate` rule) and its interval ends (per
          `forbid overlap` rule)
  ledger  {"t": "ledger", "c": cap, "p": period, "v": amount}
          what the account was credited so far in one period of one cap (mg or points),
          prior state included

events (questions; each is consumed by exactly one rule, so the rule with the highest
priority (lowest `pri`) among those whose conditions hold is the decision)
  rec     {"t": "rec", "seq": s, "k0": key, ..., "s0": start, ...}  screen a record:
          duplicate#i  an accepted record has the same key i           (pri 1 + i)
          overlap#i    an accepted record ends after this one starts   (pri 100 + i)
          accept       otherwise                                       (pri 1000)
  win     {"t": "win", "r": j, "seq": s, "no": n, "time": us}  one `flag` rule:
          flag#j       the accepted record no. n - N is within (time - W, time]
          pass#j       otherwise
  bon     {"t": "bon", "r": j, "seq": s, "no": n, "time": us}  one `bonus` rule:
          bonus#j      record no. n - K + 1 is within the window and no. n - K is not
          pass#j       otherwise
  capq    {"t": "capq", "c": c, "seq": s, "p": period, "v": value}  one cap:
          fits#c       v <= 0 (nothing to cap) or v <= limit - ledger.v
          capped#c     v > 0 and v > limit - ledger.v

Counting records in a window needs no counter: accepted records are numbered in
canonical order and their times never decrease, so the records of (t - W, t] are the
last ones, and "more than N of them" is "record no. n - N is in the window".

durable_rules' `$or` is not used: an `$or` that mixes a constant test with a join test
does not match when only the constant test holds (durable_rules 2.0.28).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from dsl.ir import ast as ir

from .ids import fnv1_32

# The callbacks a ruleset may name (the part of `run` before '#').
ACTIONS = ("accept", "duplicate", "overlap", "flag", "bonus", "pass", "fits", "capped")

PRI_DUPLICATE = 1
PRI_OVERLAP = 100
PRI_ACCEPT = 1000
PRI_PASS = 1000


@dataclass(frozen=True)
class CapPlan:
    target: str  # reduction | points
    limit: int
    period: str
    timezone: str


@dataclass(frozen=True)
class CompiledRules:
    """A ruleset definition and what a session needs to drive it. Picklable."""

    name: str  # the ruleset's name in durable_rules, derived from the definition
    definition: dict  # {rule name: {"pri", "all", "run"}}
    duplicates: int  # number of `forbid duplicate` rules (fields k0, k1, ...)
    overlaps: int  # number of `forbid overlap` rules (fields s0/e0, ...)
    flags: tuple[tuple[int, int], ...]  # (N, W in microseconds) per `flag` rule
    bonuses: tuple[tuple[int, int], ...]  # (K, W in microseconds) per `bonus` rule
    caps: tuple[CapPlan, ...]

    @property
    def screens(self) -> bool:
        """Records are screened (rec events) only when a rule can refuse them."""
        return bool(self.duplicates or self.overlaps)

    @property
    def keeps_accepted(self) -> bool:
        """Accepted records become acc facts only when a rule reads them."""
        return bool(self.duplicates or self.overlaps or self.flags or self.bonuses)

    @property
    def window_depth(self) -> int:
        """How many of the last accepted records the window rules can look back at."""
        return max([n for n, _ in self.flags] + [k for k, _ in self.bonuses] + [0])

    @property
    def needs_recompute(self) -> bool:
        """A points cap follows a reduction cap: capping the reduction changes the points
        the later cap sees, so the session recomputes them (the methodology's formula)."""
        seen_reduction = False
        for cap in self.caps:
            if cap.target == "reduction":
                seen_reduction = True
            elif seen_reduction:
                return True
        return False

    def json(self) -> str:
        """The definition as durable_rules reads it: {ruleset name: {rule: ...}}."""
        return json.dumps({self.name: self.definition}, ensure_ascii=False, sort_keys=True)


def allowed(limit: int, before: int) -> int:
    """What a capped record still credits: the rest of the limit, never less than 0."""
    return max(0, limit - before)


# ---------------------------------------------------------------- condition helpers
def _eq(name, value):
    return {name: value}


def _op(op, name, value):
    return {op: {name: value}}


def _ref(message, name):
    return {message: name}


def _minus(left, right):
    return {"$sub": {"$l": left, "$r": right}}


def _and(*terms):
    return {"$and": list(terms)}


def _join(*terms, other: str):
    """An `$and` with tests against the message `other`, closed by an always-true one.

    durable_rules 2.0.28 evaluates the join tests of an `$and` in sequence; when the last
    one is false it looks for the sequence's end marker past the end of the sequence and
    reads whatever memory follows, which crashes the process now and then (valgrind:
    invalid read in reduceExpressionSequence). Every message we send has "one": 1, and
    with `one <= other.one` last the false test is never the last. (`sid == other.sid`
    looked like the natural choice but made some joins never match; we did not find why.)
    """
    return {"$and": [*terms, _op("$lte", "one", _ref(other, "one"))]}


def compile_rules(m: ir.Methodology) -> CompiledRules:
    rules: dict[str, dict] = {}
    for i, _rule in enumerate(m.duplicates):
        k = f"k{i}"
        rules[f"duplicate#{i}"] = {
            "pri": PRI_DUPLICATE + i,
            "all": [{"a": _eq("t", "acc")},
                    {"m": _join(_eq("t", "rec"), _eq(k, _ref("a", k)), other="a")}],
            "run": f"duplicate#{i}"}
    for i, _rule in enumerate(m.overlaps):
        rules[f"overlap#{i}"] = {
            "pri": PRI_OVERLAP + i,
            "all": [{"a": _eq("t", "acc")},
                    {"m": _join(_eq("t", "rec"), _op("$lt", f"s{i}", _ref("a", f"e{i}")), other="a")}],
            "run": f"overlap#{i}"}
    if m.duplicates or m.overlaps:
        rules["accept"] = {"pri": PRI_ACCEPT, "all": [{"m": _eq("t", "rec")}], "run": "accept"}

    flags = tuple((rule.count, rule.window_seconds * 1_000_000) for rule in m.flags)
    for j, (count, window) in enumerate(flags):
        question = _and(_eq("t", "win"), _eq("r", j))
        rules[f"flag#{j}"] = {
            "pri": 1,
            "all": [{"m": question},
                    {"y": _join(_eq("t", "acc"), _eq("no", _minus(_ref("m", "no"), count)),
                                _op("$gt", "time", _minus(_ref("m", "time"), window)), other="m")}],
            "run": f"flag#{j}"}
        rules[f"flag#{j}.pass"] = {"pri": PRI_PASS, "all": [{"m": question}], "run": f"pass#{j}"}

    bonuses = tuple((rule.ordinal, rule.window_seconds * 1_000_000) for rule in m.bonuses)
    for j, (ordinal, window) in enumerate(bonuses):
        question = _and(_eq("t", "bon"), _eq("r", j))
        in_window = _op("$gt", "time", _minus(_ref("m", "time"), window))
        conditions = [{"m": question}]
        if ordinal > 1:  # record no. n - K + 1 is in the window (for K = 1 it is this one)
            conditions.append({"y": _join(_eq("t", "acc"),
                                          _eq("no", _minus(_ref("m", "no"), ordinal - 1)),
                                          in_window, other="m")})
        # ... and record no. n - K is not
        conditions.append({"z$not": _join(_eq("t", "acc"),
                                          _eq("no", _minus(_ref("m", "no"), ordinal)),
                                          in_window, other="m")})
        rules[f"bonus#{j}"] = {"pri": 1, "all": conditions, "run": f"bonus#{j}"}
        rules[f"bonus#{j}.pass"] = {"pri": PRI_PASS, "all": [{"m": question}], "run": f"pass#{j}"}

    caps = tuple(CapPlan(cap.target, cap.limit, cap.period, cap.timezone) for cap in m.caps)
    for c, cap in enumerate(caps):
        ledger = {"u": _and(_eq("t", "ledger"), _eq("c", c))}
        question = [_eq("t", "capq"), _eq("c", c), _eq("p", _ref("u", "p"))]
        rest = _minus(cap.limit, _ref("u", "v"))
        rules[f"cap#{c}.nothing"] = {
            "all": [ledger, {"m": _join(*question, _op("$lte", "v", 0), other="u")}],
            "run": f"fits#{c}"}
        rules[f"cap#{c}.fits"] = {
            "all": [ledger, {"m": _join(*question, _op("$gt", "v", 0), _op("$lte", "v", rest),
                                        other="u")}],
            "run": f"fits#{c}"}
        rules[f"cap#{c}.capped"] = {
            "all": [ledger, {"m": _join(*question, _op("$gt", "v", 0), _op("$gt", "v", rest),
                                        other="u")}],
            "run": f"capped#{c}"}

    _check_property_names(len(m.duplicates), len(m.overlaps))
    text = json.dumps(rules, ensure_ascii=False, sort_keys=True)
    name = "tanpu_" + hashlib.sha256(text.encode()).hexdigest()[:20]
    return CompiledRules(name, rules, len(m.duplicates), len(m.overlaps), flags, bonuses, caps)


def _check_property_names(duplicates: int, overlaps: int) -> None:
    """durable_rules finds a message's properties by the 32-bit FNV-1 hash of their names
    alone; make sure ours (and its own id and sid) never share one."""
    names = ["t", "seq", "no", "time", "r", "c", "p", "v", "one", "id", "sid"]
    names += [f"k{i}" for i in range(duplicates)] + [f"s{i}" for i in range(overlaps)]
    names += [f"e{i}" for i in range(overlaps)]
    hashes = {fnv1_32(name) for name in names}
    if len(hashes) != len(names):  # pragma: no cover - would need thousands of rules
        raise ValueError("property names of the ruleset collide in durable_rules")
