"""engine/counters.py's semantics on columns: counter caps and reward conversions for
every account at once.

Records still credited are put in the canonical order (account, time, id, row) by the
rules' own sort (engine/batch/rules.py). A counter cap is a per-(account, period) limit on non-negative amounts (a negative
amount rejected the record already), so allowed_i = min(cs_i, L) - min(cs_i - a_i, L)
on the cumulative sums of the group; a reward's count is floor(cs_i / N) -
floor((cs_i - a_i) / N) on the per-account cumulative sums of its source.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from ..counters import counter_cap_reached
from ..plan.ast import CrossRecord
from ..result import CAP_REACHED, CAPPED, CREDITED
from .rules import ordered_positions, subsequence
from .timezones import period_index, zone_table
from .values import Reasons, empty_lists

COLUMN = "counter:"  # the prefix of the amounts among the batch's kept columns


class Counting:
    def __init__(self, m: CrossRecord, reasons: Reasons, native=None):
        self.m = m
        self.native = native  # rules.AccountOrder, or None
        self.reasons = reasons
        units = dict(zip(m.counters, m.counter_units))
        self.capped = [reasons.add(CAPPED, CAP_REACHED, counter_cap_reached(c, units.get(c.counter, "")))
                       for c in m.counter_caps]

    @property
    def active(self) -> bool:
        return bool(self.m.counters or self.m.rewards)

    def apply(self, batch, state=None) -> pl.Series:
        """The `counters` column of the results (List(String)); counter caps write their
        reason into `batch.reason`. With `state` (account -> engine.state.AccountState,
        as engine/counters.py takes it), each account's cap totals, counter totals and
        reward remainders start from it, and it is left updated: the cumulative sums start
        from the stored amount of their (account, period) or account, and a reward's
        first record converts the stored remainder with its own units (the scalar path
        converts a remainder only as a record adds to it)."""
        m = self.m
        n = batch.n
        # per reason index (a few), then per row by indexing booleans, not texts
        statuses = self.reasons.column(0).to_list()
        is_credited = np.array([s == CREDITED for s in statuses], dtype=bool)
        counts = np.array([s in (CREDITED, CAPPED) for s in statuses], dtype=bool)
        keep = counts[batch.reason]
        pos = np.flatnonzero(keep)
        names = list(m.counters) + [r.name for r in m.rewards]
        if pos.size == 0:
            return empty_lists("counters", n)
        if batch.ordered is not None:  # the valid records' order, sorted once already
            pos, new_account, time = subsequence(batch.ordered, keep)
        else:
            pos, new_account, time = _canonical(batch, pos, self.native)
        account = np.cumsum(new_account) - 1
        priors = None
        if state is not None:  # the accounts' stored states, by account index
            from ..state import AccountState
            texts = batch.accounts.gather(pos[new_account]).to_list()
            priors = [state.setdefault(a, AccountState.empty(m)) for a in texts]
        # a gather copies already: the caps below may write into these
        amounts = {name: np.asarray(batch.columns[COLUMN + name], dtype=np.int64)[pos]
                   for name in m.counters}
        for index, (cap, reason) in enumerate(zip(m.counter_caps, self.capped)):
            period = period_index(zone_table(cap.timezone).local_day(time), cap.period)
            value = amounts[cap.counter]
            # groups (account, period), the canonical order kept inside each
            if np.all(new_account[1:] | (period[1:] >= period[:-1])):
                group_order = None  # already grouped: no gathers
                v, g_account, g_period = value, account, period
                new = new_account | np.r_[True, period[1:] != period[:-1]]
            else:  # a local clock that went back across midnight
                group_order = np.lexsort((np.arange(pos.size), period, account))
                v = value[group_order]
                g_account, g_period = account[group_order], period[group_order]
                new = np.r_[True, (g_account[1:] != g_account[:-1]) | (g_period[1:] != g_period[:-1])]
            within = _segmented_cumsum(v, new)
            if priors is not None:  # what each (account, period) had counted before
                heads = np.flatnonzero(new)
                before = np.array([priors[int(g_account[h])].counter_caps[index].get(int(g_period[h]), 0)
                                   for h in heads.tolist()], dtype=np.int64)
                within = within + np.repeat(before, np.diff(np.r_[heads, v.size]))
            if priors is None and cap.limit >= 0:  # within - v is the group's previous `within`, 0 at its start
                allowed = _step(np.minimum(within, cap.limit), new)
            else:
                allowed = np.minimum(within, cap.limit) - np.minimum(within - v, cap.limit)
            if priors is not None:
                added = np.add.reduceat(allowed, heads) if heads.size else allowed[:0]
                for h, b, a in zip(heads.tolist(), before.tolist(), added.tolist()):
                    priors[int(g_account[h])].counter_caps[index][int(g_period[h])] = b + a
            cut = allowed < v
            if cut.any():
                at = np.flatnonzero(cut) if group_order is None else group_order[cut]
                rows = pos[at]
                credited = is_credited[batch.reason[rows]]
                batch.reason[rows[credited]] = reason
                value[at] = allowed[cut]
        counts = []
        for k, reward in enumerate(m.rewards):
            if reward.source == "points":
                # one gather, then the sum and the floor on the records counted only
                earned = batch.points + batch.bonus if batch.bonus.any() else batch.points
                given = np.maximum(earned[pos], 0)
            else:
                given = amounts[reward.source]
            cs = _segmented_cumsum(given, new_account)
            if priors is None:  # cs - given is the account's previous cs, 0 at its start
                counts.append(_step(cs // reward.every, new_account))
                continue
            heads = np.flatnonzero(new_account)
            before = np.array([p.balances[k] for p in priors], dtype=np.int64)
            cs = cs + before[account]
            count = cs // reward.every - np.where(new_account, 0, (cs - given) // reward.every)
            counts.append(count)
            moved, converted = np.add.reduceat(given, heads), np.add.reduceat(count, heads)
            for p, b, g, c in zip(priors, before.tolist(), moved.tolist(), converted.tolist()):
                p.balances[k] = b + g - c * reward.every
        if priors is not None:  # the counters' totals, after their caps
            heads = np.flatnonzero(new_account)
            for j, name in enumerate(m.counters):
                for p, added in zip(priors, np.add.reduceat(amounts[name], heads).tolist()):
                    p.counter_totals[j] += added
        columns = [amounts[name] for name in m.counters] + counts
        return _lists(names, columns, pos, n)


def _canonical(batch, pos: np.ndarray, native=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The positions in canonical order, where each account starts, and the time along
    it: the rules' order (engine/batch/rules.py `canonical`)."""
    pos, code, time = ordered_positions(batch, pos, native)
    return pos, np.r_[True, code[1:] != code[:-1]], time


def _lists(names: list[str], columns: list[np.ndarray], pos: np.ndarray, n: int) -> pl.Series:
    """The `counters` column in row order: `name=amount` lists of the records at `pos`
    (`columns` along `pos`), empty lists elsewhere. Records moving the same amounts share
    one list, made once, and each row gathers its own (one gather from a few lists, an
    empty one among them): few combinations of amounts occur (a ride, no voucher)."""
    k = columns[0].size
    key, width, lows, spans = None, 1, [], []
    for column in columns:
        low, high = (int(column.min()), int(column.max())) if k else (0, 0)
        span = high - low + 1
        if low < 0 or width * span > 4 * k + 1024:  # too many combinations: one list each
            frame = pl.DataFrame({f"c{j}": c for j, c in enumerate(columns)})
            lists = frame.select(pl.concat_list([pl.lit(f"{name}=") + pl.col(f"c{j}").cast(pl.String)
                                                 for j, name in enumerate(names)])).to_series()
            where = np.full(n, -1, dtype=np.int64)
            where[pos] = np.arange(pos.size)
            gathered = lists.gather(np.where(where >= 0, where, 0))
            return gathered.zip_with(pl.Series(where >= 0), empty_lists("counters", n)).alias("counters")
        part = column - low if low else column  # no copy of a column from 0
        if width > 1:
            part = part * width
        key = part if key is None else key + part
        width *= span
        lows.append(low)
        spans.append(span)
    present = np.bincount(key, minlength=1) > 0
    distinct = np.flatnonzero(present)
    # each combination's amounts read back from its key, not from a record holding it
    lists, rest = [[] for _ in distinct.tolist()], distinct
    for name, low, span in zip(names, lows, spans):
        for one, amount in zip(lists, (rest % span + low).tolist()):
            one.append(f"{name}={amount}")
        rest = rest // span
    # row -> its list, scattered in the narrowest type (a random write per record)
    small = np.uint8 if distinct.size < 255 else np.uint16 if distinct.size < 65535 else np.uint32
    inverse = (np.cumsum(present) - 1).astype(small)[key]
    at = np.full(n, distinct.size, dtype=small)  # the empty list, after the combinations
    at[pos] = inverse
    return pl.Series("counters", lists + [[]], dtype=pl.List(pl.String)).gather(at)


def _step(total: np.ndarray, new: np.ndarray) -> np.ndarray:
    """total_i - total_(i-1) within each segment, total_i at a segment's start: f(cs_i) -
    f(cs_i - a_i) when cs_i - a_i is the previous cumulative sum (0 at a start, f(0) = 0),
    with one f (a division, a minimum) instead of two; the same integers."""
    step = np.empty_like(total)
    np.subtract(total[1:], total[:-1], out=step[1:])
    starts = np.flatnonzero(new)  # few: set by index, not by a mask over every record
    step[starts] = total[starts]
    return step


def _segmented_cumsum(values: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Cumulative sums restarting where `new` is true (`new[0]` is): one cumulative sum of
    the values with each segment's first value lowered by the sum of the segment before
    it. The same integers as subtracting each segment's base from one cumulative sum
    (modulo 2**64, as NumPy's int64 sums are), without spreading the bases over the rows."""
    starts = np.flatnonzero(new)
    if starts.size <= 1:
        return np.cumsum(values)
    adjusted = values.copy()
    adjusted[starts[1:]] -= np.add.reduceat(values, starts)[:-1]
    return np.cumsum(adjusted)
