"""Counters and rewards, record by record: the reference the batch path agrees with.

A methodology's `counter NAME [unit] = formula` gives each record an amount (a whole
number >= 0, computed with the other formulas; a negative one rejects the record with
NEGATIVE_COUNTER). After every cross-record rule (engine/cross_record.py), for each
account in the canonical order, over the records still credited (`credited` or `capped`):

1. counter caps, in source order: within each calendar period of the cap's zone, a
   record adds at most what is left of the limit; one that adds less than its amount is
   `capped` (CAP_REACHED) if it was credited (a record already capped keeps its code);
2. each counter's total grows by what the record added;
3. rewards, in source order: the record's contribution to the source (the counter's
   amount after caps, or the points credited, bonus included; negative points count as
   nothing) is added to the reward's balance; every `every` units of the balance give one
   reward and leave the balance; the remainder stays for the account's next records.

What a record moved is `Result.counters`: `name=amount` for every counter, then
`name=count` for every reward, in declaration order (an empty tuple for a record that is
not credited). The caps' period totals, the counters' totals and the rewards' balances
are the account's state (engine/state.py), so evaluating a stream in pieces with the
state carried over gives what evaluating it whole gives.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Optional

from dsl.ir import ast as ir

from .plan.ast import CrossRecord
from .result import CAP_REACHED, CAPPED, CREDITED, Result


def counter_cap_reached(cap: ir.CounterCap, unit: str = "") -> str:
    """The message of a record whose counter a cap cut, the same on every path."""
    amount = f"{cap.limit} {unit}".strip()
    return f"counter {cap.counter} cap of {amount} per account per {cap.period} reached"


def moved(names: tuple[str, ...], amounts) -> tuple[str, ...]:
    """`Result.counters` of one record: `name=amount` in declaration order."""
    return tuple(f"{name}={int(amount)}" for name, amount in zip(names, amounts))


def parse_moved(entries) -> dict[str, int]:
    """`Result.counters` back as {name: amount} (the ledger's totals, account views)."""
    out: dict[str, int] = {}
    for entry in entries or ():
        name, _, amount = str(entry).partition("=")
        out[name] = out.get(name, 0) + int(amount)
    return out


def reward_value(reward: ir.Reward, count: int) -> str:
    """What `count` rewards are worth, exactly, in the reward's own unit."""
    return f"{Decimal(reward.worth) * count} {reward.unit}"


def apply(results: list[Result], m: CrossRecord, explain: bool = False,
          state: Optional[dict] = None, accounts: Optional[dict[str, list[int]]] = None) -> None:
    """Counts, caps and converts in place (see the module docstring). `accounts`: each
    account's indexes in canonical order; `state`: account -> AccountState, updated."""
    if not (m.counters or m.rewards):
        return
    from .cross_record import period_of
    from .scalar import LocalTime
    from .state import AccountState
    local = {cap.timezone: LocalTime(cap.timezone) for cap in m.counter_caps}
    position = {name: i for i, name in enumerate(m.counters)}
    units = dict(zip(m.counters, m.counter_units)) if m.counter_units else {}
    names = tuple(m.counters) + tuple(r.name for r in m.rewards)
    for account, indexes in accounts.items():
        if state is not None:
            prior = state.get(account)
            if prior is None:
                prior = state[account] = AccountState.empty(m)
        else:
            prior = AccountState.empty(m)
        cap_totals, totals, balances = prior.counter_caps, prior.counter_totals, prior.balances
        for i in indexes:
            r = results[i]
            if r.status not in (CREDITED, CAPPED):
                continue
            amounts = list(r.amounts) if r.amounts else [0] * len(m.counters)
            for cap, periods in zip(m.counter_caps, cap_totals):
                j = position[cap.counter]
                period = period_of(local[cap.timezone].day(r.time), cap.period)
                used = periods.get(period, 0)
                allowed = max(0, min(amounts[j], cap.limit - used))
                if allowed < amounts[j]:
                    if r.status == CREDITED:
                        r.status, r.code = CAPPED, CAP_REACHED
                        r.message = counter_cap_reached(cap, units.get(cap.counter, ""))
                    if explain and r.explanation is not None:
                        r.explanation.append({"kind": "rule", "status": CAPPED, "code": CAP_REACHED,
                                              "message": counter_cap_reached(cap, units.get(cap.counter, "")),
                                              "counter": cap.counter, "period": cap.period,
                                              "limit": cap.limit, "before": used, "allowed": allowed})
                    amounts[j] = allowed
                periods[period] = used + allowed
            for j, name in enumerate(m.counters):
                totals[j] += amounts[j]
                if explain and r.explanation is not None:
                    r.explanation.append({"kind": "counted", "name": name, "amount": amounts[j],
                                          "unit": units.get(name, ""), "total": totals[j]})
            counts = []
            for k, reward in enumerate(m.rewards):
                if reward.source == "points":
                    given = max(0, r.points + r.bonus)
                else:
                    given = amounts[position[reward.source]]
                balance = balances[k] + given
                count = balance // reward.every
                balances[k] = balance - count * reward.every
                counts.append(count)
                if explain and r.explanation is not None:
                    r.explanation.append({"kind": "reward", "name": reward.name, "count": count,
                                          "every": reward.every, "source": reward.source,
                                          "value": reward_value(reward, count),
                                          "remainder": balances[k]})
            r.counters = moved(names, amounts + counts)
