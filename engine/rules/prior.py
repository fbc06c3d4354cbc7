"""Prior state: what the accounts were already credited before the records at hand.

Later read from the ledger; for now given by the caller. An amount counts against every
cap of the same target and calendar period (its period is found in each cap's own time
zone from the local date given).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Optional

from dsl.ir import ast as ir

from ..cross_record import period_of
from ..records import EPOCH_DAY


@dataclass(frozen=True)
class Credited:
    """`amount` (mg for reduction, whole points for points) credited to `account` in
    the calendar `period` (day | week | month | year) that contains the local `date`."""
    account: str
    target: str
    period: str
    date: dt.date
    amount: int


def ledgers(methodology: ir.Methodology, prior: Optional[Iterable[Credited]]
            ) -> dict[str, dict[tuple[int, int], int]]:
    """account -> {(cap index, period number): amount}."""
    out: dict[str, dict] = defaultdict(lambda: defaultdict(int))
    for credited in prior or ():
        if credited.target not in ("reduction", "points"):
            raise ValueError(f"prior state: unknown target {credited.target!r}")
        if credited.period not in ("day", "week", "month", "year"):
            raise ValueError(f"prior state: unknown period {credited.period!r}")
        day = credited.date.toordinal() - EPOCH_DAY
        for c, cap in enumerate(methodology.caps):
            if cap.target == credited.target and cap.period == credited.period:
                out[credited.account][(c, period_of(day, cap.period))] += int(credited.amount)
    return {account: dict(ledger) for account, ledger in out.items()}
