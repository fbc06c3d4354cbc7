"""Cross-record rules on columns: engine/cross_record.py's semantics, vectorized.

- Canonical order (account, time, id, row): records are split by a 64-bit hash of the
  account into partitions (every record of an account lands in one), and each partition
  is sorted by (account hash, time); records of one account with equal times are then
  ordered by (id, row). Two accounts with one hash are noticed by a second, independently
  seeded hash of the text (checked on neighbours in the sorted order, integers only:
  gathering the texts themselves in that order cost more than all the rest), and the
  partition is then sorted by the text itself. Both sorts sort one integer column with
  the positions packed into its low bits (pack_sort), not an argsort. Where a C compiler
  is, one sort of the times and one C pass grouping the accounts (AccountOrder) give the
  same order within each account; the valid records' order is made once per batch and
  shared (Batch.ordered), a subset taking its subsequence.
- Duplicate ids: records whose id hash occurs twice are the only candidates; among them
  the first in canonical order (sorted on the text) keeps its status.
- Duplicate keys and overlaps depend on which earlier records were accepted: a record
  none of whose keys any earlier credited record of the account had, and that starts at
  or after every earlier credited end, is accepted whatever happened before; only the
  accounts with other records are replayed record by record, as the reference does.
- Flags and bonuses: the number of accepted records of the account in (t - W, t] up to
  the record itself, by searchsorted on (account, time) keys.
- Caps, in source order: per (account, period), allowed_i = min(cs_i, L) - min(cs_i-1, L)
  on the cumulative sums when every value of the group is >= 0 and L >= 0; other groups
  are replayed record by record. Capped reductions recompute points with the
  methodology's own formula (the formulas run again with the capped reduction).
- When overlap rules and caps are the only rules on other records (`carries`), each
  partition is judged instead by the time-ordered path's C passes (carried.py) from a
  fresh state, one pass in canonical order (`_fresh_passes`); the steps above remain for
  the other rules, a prior state, and a cap whose local period goes back.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import polars as pl

from dsl.ir import ast as ir

from ..plan.ast import CrossRecord
from ..result import CAP_REACHED, CAPPED, DUPLICATE, DUPLICATE_ID, REJECTED
from .. import channels, pools
from .. import cross_record
from ..cross_record import cap_reached
from .timezones import period_index, zone_table
from .values import Reasons

PARTITION_ROWS = 1 << 18


def _partition_pool() -> ThreadPoolExecutor:
    return pools.pool("rules", pools.up_to(4))


@dataclass
class Batch:
    """The records of a run that cross-record rules need, as columns (all rows)."""

    rows: np.ndarray          # int64
    ids: pl.Series            # String
    accounts: pl.Series       # String
    time: np.ndarray          # int64 µs UTC (garbage where invalid)
    reason: np.ndarray        # int32 (Reasons index)
    reduction_mg: np.ndarray  # int64
    points: np.ndarray        # int64
    bonus: np.ndarray         # int64
    flags: np.ndarray         # int64 bit mask over Rules.flag_codes
    columns: dict             # inputs the rules read (keys, bounds, points recomputation)
    counters: Optional[pl.Series] = None  # the results' `counters` (engine/batch/counters.py)
    # (positions of the valid records in canonical order, account code and time along
    # it), made once and shared (`ordered`): a subset's canonical order is its subsequence
    ordered: Optional[tuple[np.ndarray, np.ndarray, np.ndarray]] = None

    @property
    def n(self) -> int:
        return int(self.rows.size)


def _value_column(batch: Batch, name: str):
    if name == "id":
        return batch.ids
    if name == "account":
        return batch.accounts
    if name == "time":
        return batch.time
    return batch.columns[name]


def _take(column, positions: np.ndarray):
    if isinstance(column, pl.Series):
        return column.gather(positions)
    if hasattr(column, "codes"):
        return column.codes[positions]
    return column[positions]


def _near_inputs(m: CrossRecord) -> set[str]:
    names: set[str] = set()
    for rule in m.near_duplicates:
        names |= set(rule.keys) | {n for n in (rule.near, rule.arrival) if n}
        if rule.when is not None:
            names.add(rule.when[0])
    return names


def _python_values(column, positions: np.ndarray) -> list:
    taken = _take(column, positions)
    if isinstance(taken, pl.Series):
        return taken.to_list()
    if hasattr(column, "labels"):
        labels = list(column.labels) + [None]
        return [labels[c] for c in taken.tolist()]
    return taken.tolist()


class Rules:
    """The cross-record rules of a plan (`plan.rules`), ready for batches."""

    rounds = 32  # fixed-point rounds for duplicates/overlaps before replaying an account
    # overlap rules and caps (`carries`) judged by C passes from a fresh state
    # (`_fresh_passes`); False: by the whole-file NumPy steps (tests compare the two)
    fresh = True
    ahead_rows = PARTITION_ROWS  # from this many rows, the counters' order is sorted beside the rules

    def __init__(self, methodology: CrossRecord, reasons: Reasons,
                 recompute: Optional[Callable[[Batch, np.ndarray, np.ndarray], np.ndarray]] = None,
                 build=None):
        """`build`: engine/native/build.py's, for the canonical order's C pass (AccountOrder)."""
        self.m = methodology
        self.native = AccountOrder.of(build)
        self.reasons = reasons
        self.recompute = recompute
        self.duplicate_id = reasons.add(DUPLICATE, DUPLICATE_ID, "this record id was already evaluated")
        self.duplicate = [reasons.add(DUPLICATE, d.code, d.message) for d in methodology.duplicates]
        self.overlap = [reasons.add(REJECTED, o.code, o.message) for o in methodology.overlaps]
        self.capped = [reasons.add(CAPPED, CAP_REACHED, cap_reached(c)) for c in methodology.caps]
        self.flag_codes = sorted({f.code for f in methodology.flags})
        self.flag_bit = {code: 1 << i for i, code in enumerate(self.flag_codes)}
        from .counters import Counting
        self.counting = Counting(methodology, reasons, self.native)
        # the rules whose state is carried by the reference, record by record (_with_state),
        # the counters left to Counting
        self.stateful = bool(methodology.duplicates or methodology.overlaps or methodology.flags
                             or methodology.bonuses or methodology.near_duplicates)
        self.without_counters = dataclasses.replace(methodology, counters=(), counter_units=(),
                                                    counter_caps=(), rewards=())

    def needed_inputs(self) -> set[str]:
        names = set()
        for d in self.m.duplicates:
            names |= set(d.keys)
        for o in self.m.overlaps:
            names |= {o.start, o.end}
        names |= _near_inputs(self.m)
        return names - {"id", "account", "time"}

    def input_values(self, batch: Batch, positions: np.ndarray) -> dict[str, list]:
        """The inputs the rules read (needed_inputs) at `positions`, each as a list of the
        Python values the scalar Engine's reader gives (a choice's label, a quantity's SI
        float, a datetime's µs): what the reference judges by, here (_with_state) and in
        the ledger (BatchEngine.per_record_results)."""
        return {name: _python_values(_value_column(batch, name), positions)
                for name in sorted(self.needed_inputs())}

    # ------------------------------------------------------------ everything
    def apply(self, batch: Batch, duplicate_ids: Optional[np.ndarray] = None,
              state: Optional[dict] = None) -> None:
        """Applies the rules in place, then the counters and rewards (which leave the
        results' `counters` column in `batch.counters`). `duplicate_ids` (positions)
        when already known; `state`: the accounts' states the caps, counters and rewards
        start from and leave updated (`_cap`, counters.py; the other rules take none here:
        BatchEngine.evaluate_frame refuses a state for them)."""
        ahead = None
        if self.counting.active and batch.ordered is None and batch.n >= self.ahead_rows:
            # the counters' canonical order, sorted on another core while the rules judge
            # (it reads only ids, accounts, times and rows, which the rules never write)
            valid = batch.reason != Reasons.INVALID
            ahead = _partition_pool().submit(ordered_positions, batch, np.flatnonzero(valid), self.native)
        self._rules(batch, duplicate_ids, state)
        if self.counting.active:
            if ahead is not None:
                batch.ordered = ahead.result()
            with np.errstate(all="ignore"):
                batch.counters = self.counting.apply(batch, state)

    def _rules(self, batch: Batch, duplicate_ids: Optional[np.ndarray] = None,
               state: Optional[dict] = None) -> None:
        with np.errstate(all="ignore"):
            if duplicate_ids is None:
                duplicate_ids = find_duplicate_ids(batch.ids, batch.accounts, batch.time, batch.rows,
                                                   batch.reason != Reasons.INVALID)
            self.mark_duplicate_ids(batch, duplicate_ids)
            if not self.m.has_record_rules:
                return
            if state is not None and self.stateful:
                self._with_state(batch, state)
                return
            if self.m.near_duplicates:
                self._near_duplicates(batch)
            credited = np.flatnonzero(batch.reason == Reasons.CREDITED)
            if credited.size == 0:
                return
            hashes = account_hashes(batch.accounts, credited)
            parts = max(1, credited.size // PARTITION_ROWS)
            if parts == 1:
                self._accounts(batch, credited, hashes, state)
                return
            part = (hashes[0] % np.uint64(parts)).astype(np.uint16)
            order = np.argsort(part, kind="stable")
            bounds = np.searchsorted(part[order], np.arange(parts + 1))

            def one(p: int) -> None:
                chosen = order[bounds[p]:bounds[p + 1]]
                if chosen.size:
                    with np.errstate(all="ignore"):  # the error state is per thread
                        self._accounts(batch, credited[chosen], (hashes[0][chosen], hashes[1][chosen]),
                                       state)
            # partitions hold disjoint accounts, so they write disjoint rows; NumPy's
            # sorts release the GIL, so partitions in threads use every core
            list(_partition_pool().map(one, range(parts)))

    @property
    def duplicate_marks(self) -> dict:
        """What a record the duplicate-id check rejects is given: its reason, and nothing
        credited (the batch's arrays and the outcome columns of the same names; one place
        for mark_duplicate_ids and a spilled file's late marks, store.DiskStore._marked)."""
        return {"reason": self.duplicate_id, "reduction_mg": 0, "points": 0}

    def mark_duplicate_ids(self, batch: Batch, positions: np.ndarray) -> None:
        """The records at `positions` (an earlier record has their id) as DUPLICATE_ID:
        nothing credited, and no other rule counts them."""
        if positions.size:
            for name, value in self.duplicate_marks.items():
                getattr(batch, name)[positions] = value

    # ------------------------------------------------------------ carried chunk by chunk
    @property
    def carries(self) -> bool:
        """Whether what the rules remember of an account between chunks is a few numbers
        (carried.Carried: the latest accepted end per overlap rule, the current period's
        total per cap): overlap rules and caps only. Duplicate keys and near duplicates
        remember every key, windows a list of times, counters and rewards are Counting's:
        a methodology with any of them is judged whole."""
        m = self.m
        return bool(m.overlaps or m.caps) and not (
            m.duplicates or m.flags or m.bonuses or m.near_duplicates or m.histories
            or self.counting.active)

    def judge_carried(self, batch: Batch, pos: np.ndarray, account: np.ndarray, time: np.ndarray,
                      carried) -> None:
        """The overlap rules and caps (`carries`) of one chunk's credited records, `pos`
        in canonical order, `account` their accounts' lasting codes and `time` their
        times along it, after what `carried` (carried.Carried) remembers of each
        account's records in the chunks before, which is left updated: a file whose
        accounts' records come chunk after chunk in canonical order is judged as whole.
        NotInOrder when this chunk cannot be judged so (a cap's period that goes back),
        and then `carried` is not to be used again.

        Each step is one C pass along the records (Carried.overlaps, Carried.cap), record
        by record as engine/cross_record.py judges them, each account starting from its
        state: no fixed point to iterate, no groups to make (docs/engine.md, "Time-ordered
        files", says what it saved)."""
        if pos.size == 0:
            return
        bounds = self._overlap_bounds(batch)
        if bounds is None:
            raise TypeError("the overlap bounds are not int64 arrays")
        pos, account, time = self._carried_overlaps(batch, pos, account, time, carried, bounds)
        for index, cap in enumerate(self.m.caps):
            if pos.size == 0:
                return
            self._carried_cap(batch, pos, account, time, carried, index, cap)

    def _overlap_bounds(self, batch: Batch) -> Optional[list[tuple[np.ndarray, np.ndarray]]]:
        """Per overlap rule, its whole start and end columns (int64 arrays, read at the
        records' positions by the C pass itself); None when one is not such an array."""
        bounds = []
        for o in self.m.overlaps:
            start, end = _value_column(batch, o.start), _value_column(batch, o.end)
            # a bound is a date or datetime input (E0604), which ingest.py always reads
            # into int64 days or µs (Parquet Date or Datetime, text, a row read by
            # records.py): tests/engine/test_batch_carried.py drives each way here. Checked
            # at run time, not asserted: the C pass reads the arrays as int64 even under -O
            if not all(isinstance(c, np.ndarray) and c.dtype == np.int64 for c in (start, end)):
                return None
            bounds.append((start, end))
        return bounds

    def _carried_overlaps(self, batch: Batch, pos, account, time, carried, bounds):
        """The overlap rules' C pass (Carried.overlaps): (pos, account, time) of the
        records accepted."""
        if not self.m.overlaps:
            return pos, account, time
        return carried.overlaps(batch, pos, account, time, bounds, self.overlap)

    def _carried_cap(self, batch: Batch, pos, account, time, carried, index: int, cap: ir.Cap) -> None:
        """Cap `index`'s C pass (Carried.cap) over the accepted records; NotInOrder for a
        period before the account's latest (nothing written then)."""
        period = period_index(zone_table(cap.timezone).local_day(time), cap.period)
        target = batch.reduction_mg if cap.target == "reduction" else batch.points
        value = target[pos]
        allowed = carried.cap(index, account, period, value, cap.limit)
        capped = allowed < value
        if capped.any():
            self._capped(batch, cap, self.capped[index], pos[capped], allowed[capped])

    def _fresh_passes(self, batch: Batch, pos, account, time) -> bool:
        """The overlap rules and caps of records whose accounts are all here (a batch, or
        a partition of one: every record of each account), `pos` in canonical order,
        `account` canonical's codes along it, judged by the time-ordered path's C passes
        from a fresh state (carried.Carried.fresh): one pass in canonical order, exact
        since each record's verdict depends only on its account's records before it,
        instead of `_keys_and_overlaps`' fixed point and `_cap`'s groups (docs/engine.md,
        "Random order, sixth round"). A cap whose local period goes back within an
        account (a clock set back across midnight) is judged by `_cap` instead, which
        groups by period. False
        (nothing judged) when these passes do not apply: other rules than overlaps and
        caps, no compiler, bounds not int64 arrays."""
        if not (self.fresh and self.carries) or pos.size == 0:
            return False
        bounds = self._overlap_bounds(batch)
        if bounds is None:
            return False
        carried = self._fresh_state(int(account.max()) + 1)
        if carried is None:
            return False
        pos, account, time = self._carried_overlaps(batch, pos, account, time, carried, bounds)
        for index, cap in enumerate(self.m.caps):
            if pos.size == 0:
                break
            try:
                self._carried_cap(batch, pos, account, time, carried, index, cap)
            except NotInOrder:
                self._cap(batch, pos, account, time, cap, self.capped[index], index)
        return True

    def _fresh_state(self, accounts: int):
        from .carried import Carried  # carried.py builds on this module
        return Carried.fresh(self, accounts)

    # ------------------------------------------------------------ with a prior state
    def _with_state(self, batch: Batch, state: dict) -> None:
        """The rules judged after each account's prior state (engine/state.py), by the
        reference itself (engine/cross_record.py) on the credited records, which leaves
        the state as the scalar engine leaves it. Record by record in Python: a state
        comes with a piece of a stream (a ledger request, an account's records on Spark),
        rarely more than a few thousand records, and one implementation of what the
        state remembers (late records against the intervals kept, windows spanning
        pieces) is worth more there than vector speed. The counters and rewards stay
        Counting's (apply)."""
        from ..result import CREDITED, Result
        from ..state import AccountState

        credited = np.flatnonzero(batch.reason == Reasons.CREDITED)
        if credited.size == 0:
            return
        columns = self.input_values(batch, credited)
        names = list(columns)
        ids = batch.ids.gather(credited).to_list()
        accounts = batch.accounts.gather(credited).to_list()
        time = batch.time[credited].tolist()
        rows = batch.rows[credited].tolist()
        reduction = batch.reduction_mg[credited].tolist()
        points = batch.points[credited].tolist()
        results = []
        for j in range(credited.size):
            values = {name: columns[name][j] for name in names}
            values.update(id=ids[j], account=accounts[j], time=time[j])
            results.append(Result(ids[j], accounts[j], time[j], CREDITED, "", "", reduction[j],
                                  points[j], 0, row=rows[j], values=values))
        for account in set(accounts):  # the whole rules' state (counters too), not the reference's
            if account not in state:
                state[account] = AccountState.empty(self.m)
        at = {id(r): int(p) for r, p in zip(results, credited)}

        def recompute_points(r: Result, allowed: int) -> int:
            return int(self.recompute(batch, np.array([at[id(r)]]), np.array([allowed], dtype=np.int64))[0])
        cross_record.apply(results, self.without_counters,
                           recompute_points if self.recompute is not None else None, False, state)
        for r, p in zip(results, credited):
            if r.status != CREDITED:
                batch.reason[p] = self.reasons.add(r.status, r.code, r.message)
            batch.reduction_mg[p] = r.reduction_mg
            batch.points[p] = r.points
            batch.bonus[p] = r.bonus
            if r.flags:
                batch.flags[p] = sum(self.flag_bit[code] for code in r.flags)

    # ------------------------------------------------------------ one event, several reports
    def _near_duplicates(self, batch: Batch) -> None:
        """engine/channels.py's judging, on the credited records of each account in
        canonical order (a Python loop over those records: the documented fallback)."""
        credited = np.flatnonzero(batch.reason == Reasons.CREDITED)
        if credited.size == 0:
            return
        names = sorted(_near_inputs(self.m))
        columns = {name: _python_values(_value_column(batch, name), credited) for name in names}
        ids = batch.ids.gather(credited).to_list()
        accounts = batch.accounts.gather(credited).to_list()
        time, rows = batch.time[credited].tolist(), batch.rows[credited].tolist()
        by_account: dict[str, list[int]] = {}
        for j, account in enumerate(accounts):
            by_account.setdefault(account, []).append(j)
        for js in by_account.values():
            js.sort(key=lambda j: (time[j], ids[j], rows[j]))
            records = [(j, ids[j], {name: columns[name][j] for name in names}) for j in js]
            for j, r, event in channels.judge(self.m.near_duplicates, records):
                rule = self.m.near_duplicates[r]
                at = credited[j]
                batch.reason[at] = self.reasons.add(DUPLICATE, rule.code, channels.message(rule, event))
                batch.reduction_mg[at] = 0
                batch.points[at] = 0

    # ------------------------------------------------------------ one partition
    def _accounts(self, batch: Batch, positions: np.ndarray, hashes, state: Optional[dict] = None) -> None:
        try:
            order, account, time = canonical(batch, positions, *hashes, native=self.native)
        except HashCollision:  # two accounts with one 64-bit hash: sort by the text
            exact = batch.accounts.gather(positions).rank("dense").cast(pl.UInt64).to_numpy()
            order, account, time = canonical(batch, positions, exact, exact)
        pos = positions[order]
        if state is None and self._fresh_passes(batch, pos, account, time):
            return
        starts = np.flatnonzero(np.r_[True, account[1:] != account[:-1]])
        accepted = self._keys_and_overlaps(batch, pos, account, starts)
        pos = pos[accepted]
        account = account[accepted]
        if pos.size == 0:
            return
        time = time[accepted]
        if self.m.flags or self.m.bonuses:
            self._windows(batch, pos, account, time)
        for index, cap in enumerate(self.m.caps):
            self._cap(batch, pos, account, time, cap, self.capped[index], index, state)

    # ------------------------------------------------------------ duplicates, overlaps
    def _keys_and_overlaps(self, batch, pos, account, starts) -> np.ndarray:
        """Which records the duplicate and overlap rules accept (rejecting the others).

        Whether a record is accepted depends only on the accepted records before it in its
        account, so the acceptance A is the unique fixed point of A = F(A), F giving the
        records whose keys no earlier record of A had and that start at or after every
        earlier end in A. F is computed on arrays and iterated from A = everything
        (`_acceptance`); the few accounts still changing after a number of rounds are
        replayed one record at a time.
        """
        m = self.m
        n = pos.size
        if not (m.duplicates or m.overlaps) or n == 0:
            return np.ones(n, dtype=bool)
        accepted, rejected = self._acceptance(batch, pos, account, starts)
        # the reason: the first rule (duplicates, then overlaps, in source order) that rejects
        codes = self.duplicate + self.overlap
        reason = np.zeros(n, dtype=np.int32)
        for index, hit in zip(codes[::-1], rejected[::-1]):
            reason[hit] = index
        out = ~accepted
        at = pos[out]
        batch.reason[at] = reason[out]
        batch.reduction_mg[at] = 0
        batch.points[at] = 0
        return accepted

    def _acceptance(self, batch, pos, account, starts, narrow: bool = True):
        """(accepted, what each rule rejects) of _keys_and_overlaps.

        F is antitone (fewer accepted records reject fewer), so F(everything) is a subset
        of the fixed point: an account none of whose records F(everything) rejects is
        done after one round. With `narrow`, only the other accounts' records are
        iterated further (most accounts of a chunk have nothing to reject)."""
        m = self.m
        n = pos.size
        segment_start = np.zeros(n, dtype=bool)
        segment_start[starts] = True
        lengths = np.diff(np.r_[starts, n])
        keys = [self._key_groups(batch, pos, account, rule) for rule in m.duplicates]
        bounds = []
        for r, rule in enumerate(m.overlaps):
            start = np.asarray(_take(_value_column(batch, rule.start), pos), dtype=np.int64)
            end = np.asarray(_take(_value_column(batch, rule.end), pos), dtype=np.int64)
            bounds.append((start, end, int(end.min())))

        def rejections(accepted):
            """Per rule, the records it rejects given that `accepted` are accepted."""
            out = []
            for order, first in keys:
                a = accepted[order].astype(np.int64)
                before = np.cumsum(a) - a
                base = np.repeat(before[first], np.diff(np.r_[first, n]))
                seen = np.empty(n, dtype=bool)
                seen[order] = before - base > 0
                out.append(seen)
            if bounds:
                counts = np.cumsum(accepted.astype(np.int64)) - accepted
                earlier = counts - np.repeat(counts[starts], lengths)
            for start, end, low in bounds:
                latest = segmented_cummax(np.where(accepted, end, low), starts)
                previous = np.empty(n, dtype=np.int64)
                previous[1:] = latest[:-1]
                previous[segment_start] = low
                out.append((earlier > 0) & (start < previous))
            return out

        accepted = np.ones(n, dtype=bool)
        if narrow and n > 1:
            rejected = rejections(accepted)
            hit = np.logical_or.reduce(rejected)
            busy = np.logical_or.reduceat(hit, starts)
            if not busy.any():
                return accepted, rejected
            if not busy.all():  # the accounts with some record rejected, on their own
                chosen = np.repeat(busy, lengths)
                sub_starts = np.flatnonzero(np.r_[True, account[chosen][1:] != account[chosen][:-1]])
                got, sub_rejected = self._acceptance(batch, pos[chosen], account[chosen], sub_starts,
                                                     narrow=False)
                accepted[chosen] = got
                for whole, part in zip(rejected, sub_rejected):
                    whole[:] = False
                    whole[chosen] = part
                return accepted, rejected
        for _ in range(self.rounds):
            rejected = rejections(accepted)
            new = ~np.logical_or.reduce(rejected)
            if np.array_equal(new, accepted):
                break
            accepted = new
        else:
            rejected = rejections(accepted)
            changing = np.flatnonzero(~np.logical_or.reduce(rejected) != accepted)
            segment = np.cumsum(segment_start) - 1
            for s in np.unique(segment[changing]).tolist():
                lo = int(starts[s])
                hi = int(starts[s + 1]) if s + 1 < starts.size else n
                accepted[lo:hi] = True
                self._replay(batch, pos, lo, hi, accepted)
            rejected = rejections(accepted)
        return accepted, rejected

    def _key_groups(self, batch, pos, account, rule):
        """(order, group starts): records sorted by (account, keys, position), and where
        each group of equal keys begins. A NaN key equals nothing (as in Python)."""
        n = pos.size
        frame = {"a": account}
        nan = np.zeros(n, dtype=bool)
        for i, key in enumerate(rule.keys):
            column = _take(_value_column(batch, key), pos)
            if isinstance(column, np.ndarray) and column.dtype.kind == "f":
                nan |= np.isnan(column)
                column = np.where(np.isnan(column), 0.0, column + 0.0)  # -0.0 == 0.0
            frame[f"k{i}"] = column
        frame["nan"] = np.where(nan, np.arange(n), -1)
        frame["i"] = np.arange(n)
        table = pl.DataFrame(frame)
        names = [c for c in table.columns if c != "i"]
        ordered = table.sort(names + ["i"])
        order = ordered.get_column("i").to_numpy()
        changed = ordered.select(pl.any_horizontal([pl.col(c) != pl.col(c).shift(1) for c in names])
                                 .fill_null(True)).to_series().to_numpy()
        return order, np.flatnonzero(changed)

    def _replay(self, batch, pos, lo, hi, accepted):
        """One account's records pos[lo:hi] judged one at a time."""
        m = self.m
        where = pos[lo:hi]
        keys = [list(zip(*[_python_values(_value_column(batch, k), where) for k in rule.keys]))
                for rule in m.duplicates]
        bounds = [(_python_values(_value_column(batch, o.start), where),
                   _python_values(_value_column(batch, o.end), where)) for o in m.overlaps]
        seen = [set() for _ in m.duplicates]
        latest = [None for _ in m.overlaps]
        for i in range(hi - lo):
            rejected = False
            for r, rule in enumerate(m.duplicates):
                if keys[r][i] in seen[r]:
                    rejected = True
                    break
            if not rejected:
                for r, rule in enumerate(m.overlaps):
                    if latest[r] is not None and bounds[r][0][i] < latest[r]:
                        rejected = True
                        break
            if rejected:
                accepted[lo + i] = False
                continue
            for r in range(len(m.duplicates)):
                seen[r].add(keys[r][i])
            for r in range(len(m.overlaps)):
                end = bounds[r][1][i]
                if latest[r] is None or end > latest[r]:
                    latest[r] = end

    # ------------------------------------------------------------ windows
    def _windows(self, batch, pos, account, time):
        # keys increasing along (account, time): account code, then the rank of the time
        for rule in list(self.m.flags) + list(self.m.bonuses):
            window = rule.window_seconds * 1_000_000
            low = time - window
            values, inverse = np.unique(np.concatenate([time, low]), return_inverse=True)
            width = values.size + 1
            key = account.astype(np.int64) * width + inverse[:time.size]
            probe = account.astype(np.int64) * width + inverse[time.size:]
            first = np.searchsorted(key, probe, side="right")
            count = np.arange(pos.size) - first + 1
            if isinstance(rule, ir.Flag):
                hit = count > rule.count
                batch.flags[pos[hit]] |= self.flag_bit[rule.code]
            else:
                hit = count == rule.ordinal
                batch.bonus[pos[hit]] += rule.points

    # ------------------------------------------------------------ caps
    def _cap(self, batch, pos, account, time, cap: ir.Cap, reason: int, index: int = 0,
             state: Optional[dict] = None):
        """One cap over the accepted records (canonical order). With `state`, each
        (account, period) starts from the total its account's state holds for the cap and
        the total is left updated (what was credited under it, a negative amount counting
        as nothing), as engine/cross_record.py does."""
        zone = zone_table(cap.timezone)
        period = period_index(zone.local_day(time), cap.period)
        target = batch.reduction_mg if cap.target == "reduction" else batch.points
        value = target[pos]
        # groups (account, period), keeping the canonical order inside each; they are
        # already contiguous unless a local clock went back across midnight
        account_change = account[1:] != account[:-1]
        if np.all(account_change | (period[1:] >= period[:-1])):
            order = np.arange(pos.size)
            new = np.r_[True, account_change | (period[1:] != period[:-1])]
        else:
            order = np.lexsort((np.arange(pos.size), period, account))
            g_account, g_period = account[order], period[order]
            new = np.r_[True, (g_account[1:] != g_account[:-1]) | (g_period[1:] != g_period[:-1])]
        group = np.cumsum(new) - 1
        v = value[order]
        starts = np.flatnonzero(new)
        negative_group = np.zeros(starts.size, dtype=bool)
        if (v < 0).any() or cap.limit < 0:
            negative_group = np.ones(starts.size, dtype=bool) if cap.limit < 0 else \
                np.bitwise_or.reduceat((v < 0).astype(np.int8), starts).astype(bool)
        cs = np.cumsum(v)
        base = np.repeat(np.r_[0, cs[starts[1:] - 1]] if starts.size else np.zeros(0, np.int64),
                         np.diff(np.r_[starts, v.size]))
        within = cs - base
        stored = None
        if state is not None:  # each (account, period)'s total so far, from the state
            from ..state import AccountState
            heads = order[starts]
            texts = batch.accounts.gather(pos[heads]).to_list()
            periods = period[heads].tolist()
            states = [state.setdefault(a, AccountState.empty(self.m)) for a in texts]
            stored = np.array([s.caps[index].get(p, 0) for s, p in zip(states, periods)], dtype=np.int64)
            within = within + np.repeat(stored, np.diff(np.r_[starts, v.size]))
        before = within - v
        limit = cap.limit
        allowed = np.minimum(within, limit) - np.minimum(before, limit)
        slow = negative_group[group]
        if slow.any():
            for g in np.flatnonzero(negative_group).tolist():
                lo = int(starts[g])
                hi = int(starts[g + 1]) if g + 1 < starts.size else v.size
                used = int(stored[g]) if stored is not None else 0
                for i in range(lo, hi):
                    a = max(0, min(int(v[i]), limit - used))
                    allowed[i] = a
                    used += a  # a negative amount counts as nothing (cross_record.py)
        if stored is not None:  # what each (account, period) credited under the cap
            added = np.add.reduceat(np.maximum(allowed, 0), starts) if starts.size else stored
            for s, p, total in zip(states, periods, (stored + added).tolist()):
                s.caps[index][p] = total
        capped_sorted = allowed < v
        if capped_sorted.any():
            self._capped(batch, cap, reason, pos[order[capped_sorted]], allowed[capped_sorted])

    def _capped(self, batch, cap: ir.Cap, reason: int, capped_at: np.ndarray, new_value: np.ndarray) -> None:
        """The records at `capped_at` capped by `cap` to `new_value` (points recomputed
        by the methodology's formulas after a capped reduction)."""
        batch.reason[capped_at] = reason
        if cap.target == "reduction":
            batch.reduction_mg[capped_at] = new_value
            if self.recompute is not None:
                batch.points[capped_at] = self.recompute(batch, capped_at, new_value)
        else:
            batch.points[capped_at] = new_value


# ---------------------------------------------------------------- helpers
def segmented_cummax(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Running maximum of int64 values, restarting at each segment start."""
    n = values.size
    if n == 0:
        return values.copy()
    lengths = np.diff(np.r_[starts, n])
    low = int(values.min())
    span = int(values.max()) - low + 1
    if span * starts.size < 2 ** 62:
        offset = np.repeat(np.arange(starts.size, dtype=np.int64) * span, lengths) - low
        return np.maximum.accumulate(values + offset) - offset
    segment = np.repeat(np.arange(starts.size), lengths)  # pragma: no cover - huge spans
    return pl.DataFrame({"s": segment, "v": values}).select(
        pl.col("v").cum_max().over("s")).to_series().to_numpy()


_SECOND_SEED = 0x9E3779B97F4A7C15 >> 1  # any seed other than the first hash's 0


def account_hashes(accounts: pl.Series, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two independently seeded 64-bit hashes of the accounts at `positions`.

    The first groups the records; the second tells two accounts apart when they share
    the first (canonical checks it). Hashing every row and then indexing the integers is
    faster than gathering the texts first.
    """
    first = accounts.hash(seed=0).to_numpy()
    second = accounts.hash(seed=_SECOND_SEED).to_numpy()
    if positions.size == first.size:
        return first, second
    return first[positions], second[positions]



def canonical(batch: Batch, positions: np.ndarray, hashes: np.ndarray, check: np.ndarray,
              native: Optional["AccountOrder"] = None):
    """(order of `positions` by (account, time, id, row), account code and time along it).

    Accounts are told apart by `hashes` (a 64-bit hash of their text); `check`, another
    hash of the same texts, must agree wherever the `hashes` sorted on agree, else
    HashCollision. With `native` (AccountOrder: C, where a compiler is), one sort of the
    times and one C pass grouping the accounts (`_native_order`); without, two sorts on
    NumPy/Polars (`_sorted_order`). Within an account both give (time, position), so the
    same order, whichever accounts come first (no rule looks across accounts).
    """
    time = batch.time if _everything(batch, positions) else batch.time[positions]
    if time.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), time
    got = native.order(hashes, check, time) if native is not None else None
    if got is not None:
        order, c, t, tied = got
    else:
        order, c = _sorted_order(hashes, check, time)
        t = time[order]
        tied = True
    if tied:  # the C pass said whether there is a tie: the mask is made only then
        tie = np.r_[False, (c[1:] == c[:-1]) & (t[1:] == t[:-1])]
        tied = bool(tie.any())
    if tied:
        # runs of equal (account, time): order them by (id, row)
        run_start = tie.copy()
        run_start[:-1] |= tie[1:]
        members = np.flatnonzero(run_start)
        run = np.cumsum(~tie[members])
        chosen = order[members]
        ids = batch.ids.gather(positions[chosen])
        id_rank = ids.rank("dense").cast(pl.Int64).to_numpy()
        inner = np.lexsort((batch.rows[positions[chosen]], id_rank, run))
        order[members] = chosen[inner]
    return order, c, t


def _everything(batch, positions: np.ndarray) -> bool:
    """Whether `positions` (increasing, as np.flatnonzero gives them) are all the
    batch's rows: then they are 0..n-1, and the gathers through them are skipped."""
    return positions.size == batch.time.size


def ordered_positions(batch, positions: np.ndarray, native: Optional["AccountOrder"] = None):
    """(`positions` in canonical order, the account code along it, the time along it):
    `canonical` on the accounts' hashes, on the text itself when two share a hash."""
    first, second = account_hashes(batch.accounts, positions)
    try:
        order, code, time = canonical(batch, positions, first, second, native)
    except HashCollision:
        exact = batch.accounts.gather(positions).rank("dense").cast(pl.UInt64).to_numpy()
        order, code, time = canonical(batch, positions, exact, exact)
    return (order if _everything(batch, positions) else positions[order]), code, time


def subsequence(ordered: tuple[np.ndarray, np.ndarray, np.ndarray], keep: np.ndarray):
    """(positions, where each account starts, time) along the canonical order of the
    records `keep` (a boolean per row) selects among those of `ordered`: the order of a
    subset is the subsequence of the whole's, since (account, time, id, row) is a total
    order; taken in one pass along it, not gathered at random."""
    order, code, time = ordered
    chosen = keep[order]
    if not chosen.all():  # else all of them (no record refused): no copies
        order, code, time = order[chosen], code[chosen], time[chosen]
    return order, np.r_[True, code[1:] != code[:-1]] if code.size else np.zeros(0, dtype=bool), time


def _sorted_order(hashes: np.ndarray, check: np.ndarray, time: np.ndarray):
    """(order by (account hash, time, position), account code along it), by two sorts."""
    # by the hashes' high bits (pack_sort keeps about 46 of 64): two accounts alike there
    # differ in `check` but for a chance of 2**-64 per pair
    by_hash, prefix, _ = pack_sort(hashes)
    equal = prefix[1:] == prefix[:-1]
    sorted_check = check[by_hash]
    if (equal & (sorted_check[1:] != sorted_check[:-1])).any():
        raise HashCollision()
    code = np.cumsum(np.r_[0, ~equal])  # along by_hash
    time = time[by_hash]
    # times as multiples of their common step (a minute, a second) keep their order and
    # usually leave room in 64 bits for the account code and the position
    offset = time - int(time.min())
    step = int(np.gcd.reduce(offset)) or 1
    span = int(offset.max()) // step + 1
    if (int(code[-1]) + 1) * span < 2 ** 62:
        key = code * span + (offset // step if step > 1 else offset)
        within, _, lossy = pack_sort(key)
        if lossy:
            within = np.argsort(key, kind="stable")
    else:  # pragma: no cover - centuries of microseconds times millions of accounts
        within = np.lexsort((time, code))
    return by_hash[within], code[within]


def time_order(time: np.ndarray) -> Optional[np.ndarray]:
    """The positions of int64 `time` in (time, position) order; None when `time` is in
    that order already (a file written in time order: one comparison pass, no sort)."""
    got = _times_sorted(time)
    if got is None or isinstance(got, np.ndarray):
        return got
    packed, bits, _, _ = got
    return (packed & np.uint64((1 << bits) - 1)).astype(np.int64)


def _times_sorted(time: np.ndarray):
    """`time` (int64) in (time, position) order: None when in that order already (one
    comparison pass, no sort); else (packed, bits, step, base), the sorted uint64 words
    ((time - base) / step << bits | position) that AccountOrder's C pass unpacks itself
    (no separate passes taking the positions and the times out); or, where the times are
    too wide to pack, the positions by a stable argsort."""
    if time.size < 2 or bool((time[1:] >= time[:-1]).all()):
        return None
    base = int(time.min())
    offset = (time - base).view(np.uint64)
    bits = (time.size - 1).bit_length()
    step = 1
    if int(offset.max()).bit_length() + bits > 64:
        # microseconds over weeks beside millions of positions: as multiples of their
        # step (a second, a minute), which keeps their order. The step of the first 4096
        # times, checked on all by the division itself (a third of the CPU of a gcd over
        # all), their gcd where it does not divide them all; any common divisor gives
        # the same order
        sample = int(np.gcd.reduce(offset[:4096].view(np.int64)))
        divided, step = _divided(offset, sample) if sample else (offset, 0)
        if step == 0:
            divided, step = _divided(offset, int(np.gcd.reduce(offset.view(np.int64))))
        offset = divided
    packed, bits, shift = _packed_sort(offset)
    if shift:
        return np.argsort(time, kind="stable")
    return packed, bits, step, base


# One pass grouping records by account (a hash table of the account hashes, in C), then
# a stable counting sort of the records taken in time order into their account's run:
# O(n) after the one sort of the times, where _sorted_order needs two sorts and the
# gathers between them (bench/bench_history.py, bench_rewards.py; docs/engine.md). It also
# writes the time along the order, unpacked from the sorted words, and whether any tie on
# (account, time) is there: a gather of the times and three NumPy passes less per order.
ORDER_SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#define AHEAD 16  /* records ahead whose random reads are prefetched */
typedef struct { uint64_t h1, h2; int64_t code; } slot_t;  /* code + 1; 0: empty */
static inline int64_t place(uint64_t h, int bits) {
    return (int64_t)((h * 0x9E3779B97F4A7C15ULL) >> (64 - bits));
}
/* a[0] h1, a[1] h2 (uint64 n); the records in (time, position) order, one of:
   a[2] packed (uint64 n: (time - base) / step << bits | position, sorted; or 0),
   a[3] by_time (int64 n positions; or 0), neither: the identity;
   a[4] time (int64 n); out: a[5] order, a[6] code and a[7] time along order (int64 n);
   a[8] int64[6]: in [0] bits, [1] step, [2] base, [5] the bits of the table's first
   size; out [3] the number of accounts, -1 when two accounts share h1, -2 when out of
   memory; [4] 1 when two neighbours along the order have the same account and time (a
   tie for (id, row) to break), else 0. */
void tanpu_account_order(int64_t n, void **a) {
    const uint64_t *h1 = (const uint64_t *)a[0], *h2 = (const uint64_t *)a[1];
    const uint64_t *packed = (const uint64_t *)a[2];
    const int64_t *by_time = (const int64_t *)a[3], *time = (const int64_t *)a[4];
    int64_t *order = (int64_t *)a[5], *code = (int64_t *)a[6], *along = (int64_t *)a[7];
    int64_t *io = (int64_t *)a[8];
    const int low = (int)io[0];  /* the bits of the position, 1..63 */
    const uint64_t mask = ((uint64_t)1 << low) - 1, step = (uint64_t)io[1];
    const uint64_t base = (uint64_t)io[2];
    int bits = (int)io[5];  /* the table's first size (AccountOrder.order): grown when half full */
    int64_t slots = (int64_t)1 << bits, room = 1024, k = 0;
    slot_t *slot = calloc(slots, sizeof(slot_t));
    int64_t *count = malloc(room * sizeof(int64_t));
    uint32_t *code_at = malloc((n > 0 ? n : 1) * sizeof(uint32_t));
    io[3] = -2;
    io[4] = 0;
    if (!slot || !count || !code_at || n >= ((int64_t)1 << 32)) goto done;
    for (int64_t i = 0; i < n; i++) {
        uint64_t h = h1[i];
        int64_t s = place(h, bits), c;
        if (i + AHEAD < n) __builtin_prefetch(&slot[place(h1[i + AHEAD], bits)]);
        while (slot[s].code && slot[s].h1 != h) s = (s + 1) & (slots - 1);
        if (slot[s].code) {
            if (slot[s].h2 != h2[i]) { io[3] = -1; goto done; }
            c = slot[s].code - 1;
        } else {
            if (k == room) {
                room *= 2;
                int64_t *more = realloc(count, room * sizeof(int64_t));
                if (!more) goto done;
                count = more;
            }
            c = k++;
            count[c] = 0;
            slot[s].h1 = h; slot[s].h2 = h2[i]; slot[s].code = c + 1;
            if (2 * k > slots) {  /* at most half full: twice the slots, each account again */
                slot_t *old = slot;
                int64_t old_slots = slots;
                bits++; slots <<= 1;
                slot = calloc(slots, sizeof(slot_t));
                if (!slot) { free(old); goto done; }
                for (int64_t j = 0; j < old_slots; j++) {
                    if (!old[j].code) continue;
                    int64_t t = place(old[j].h1, bits);
                    while (slot[t].code) t = (t + 1) & (slots - 1);
                    slot[t] = old[j];
                }
                free(old);
            }
        }
        count[c]++;
        code_at[i] = (uint32_t)c;
    }
    int64_t start = 0;
    for (int64_t c = 0; c < k; c++) {  /* count -> the next free place of the account's run */
        int64_t m = count[c];
        for (int64_t j = start; j < start + m; j++) code[j] = c;
        count[c] = start;
        start += m;
    }
    if (packed) {  /* the sorted times unpacked here: no gather of the times along the order */
        for (int64_t j = 0; j < n; j++) {
            uint64_t w = packed[j];
            if (j + AHEAD < n) __builtin_prefetch(&code_at[packed[j + AHEAD] & mask]);
            int64_t p = (int64_t)(w & mask), at = count[code_at[p]]++;
            order[at] = p;
            along[at] = (int64_t)((w >> low) * step + base);  /* mod 2**64 */
        }
    } else {
        for (int64_t j = 0; j < n; j++) {
            if (by_time && j + AHEAD < n) __builtin_prefetch(&code_at[by_time[j + AHEAD]]);
            int64_t p = by_time ? by_time[j] : j, at = count[code_at[p]]++;
            order[at] = p;
            along[at] = time[p];
        }
    }
    for (int64_t j = 1; j < n; j++) {
        if (code[j] == code[j - 1] && along[j] == along[j - 1]) { io[4] = 1; break; }
    }
    io[3] = k;
done:
    free(slot); free(count); free(code_at);
}
"""


# the C pass's account table (24 bytes a slot, at most half full) is first made for all
# the records' accounts up to this many bits (2**20 slots, 24 MiB), and grown beyond: a
# chunk's table then never grows, while a whole file of millions of records (the
# in-memory store) still takes a table for its accounts, not its records
TABLE_BITS = 20


def table_bits(n: int) -> int:
    """The bits of the C pass's first table for n records: room for n accounts at most
    half full, 2**10 slots at least, 2**TABLE_BITS at most. Growing it from 2**10 as accounts
    came took 19-29 ms of a chunk of 175k credited records of 163k accounts, against
    2.5-3.5 ms made at its size at once (docs/engine.md, "Time-ordered files, sixth round")."""
    return min(TABLE_BITS, max(10, (2 * max(n, 1) - 1).bit_length()))


class AccountOrder:
    """`canonical`'s C pass (ORDER_SOURCE), built by `build` (engine/native/build.py) the
    first time an order is asked for: a methodology that never sorts (or a process that
    only checks) compiles nothing, and a compiler's failure is warned where it happens."""

    def __init__(self, build):
        self.build = build
        self.function = None  # resolved by `_entry`; False: no compiler, the sorts instead
        self.lock = threading.Lock()

    @classmethod
    def of(cls, build) -> Optional["AccountOrder"]:
        """The C pass to be built, or None without a compiler (canonical then sorts twice)."""
        return None if build is None else cls(build)

    def _entry(self):
        with self.lock:
            if self.function is None:
                library = self.build(ORDER_SOURCE)
                if library is None:
                    self.function = False
                else:
                    from .kernel import entry
                    self.function = entry(library, "tanpu_account_order")
            return self.function

    def order(self, hashes: np.ndarray, check: np.ndarray, time: np.ndarray):
        """(order, code along it, time along it, whether any two neighbours along it
        have one account and one time), None when out of memory; HashCollision when two
        accounts share `hashes`; None too without a compiler."""
        import ctypes
        function = self._entry()
        if not function:
            return None
        n = time.size
        time = np.ascontiguousarray(time, dtype=np.int64)
        sorted_times = _times_sorted(time)
        packed = by_time = None
        io = np.zeros(6, dtype=np.int64)
        io[5] = table_bits(n)
        if isinstance(sorted_times, tuple):
            packed, io[0], io[1], base = sorted_times
            io[2] = base  # the times' minimum: an int64
        elif sorted_times is not None:
            by_time = np.ascontiguousarray(sorted_times, dtype=np.int64)
        h1 = np.ascontiguousarray(hashes, dtype=np.uint64)
        h2 = np.ascontiguousarray(check, dtype=np.uint64)
        order = np.empty(n, dtype=np.int64)
        code = np.empty(n, dtype=np.int64)
        along = np.empty(n, dtype=np.int64)
        function(n, (ctypes.c_void_p * 9)(
            h1.ctypes.data, h2.ctypes.data, packed.ctypes.data if packed is not None else None,
            by_time.ctypes.data if by_time is not None else None, time.ctypes.data,
            order.ctypes.data, code.ctypes.data, along.ctypes.data, io.ctypes.data))
        if io[3] == -1:
            raise HashCollision()
        if io[3] < 0:  # pragma: no cover - out of memory in C: the sorts instead
            return None
        return order, code, along, bool(io[4])


def _numpy_sorts_fast() -> bool:
    """Whether NumPy's sort of uint64 has its AVX-512 kernel (x86-simd-sort) on this CPU.

    Measured on 5M packed uint64 keys (bench/bench_history.py prints both): on an AVX-512 machine NumPy 2.4 sorts them in 0.054 s CPU against Polars' 0.112 s
    (one thread); on the project's earlier AMD VM, without that kernel, NumPy took 0.33 s
    against Polars' 0.11 s. Decided once from the CPU features NumPy itself reports
    (`numpy.__config__`): the same machine always takes the same sort, and both give the
    same bits (the keys sorted are distinct, or plain values), so results never depend
    on it."""
    try:
        found = np.__config__.CONFIG["SIMD Extensions"]["found"]
    except (AttributeError, KeyError, TypeError):  # NumPy 1.x: no such report
        return False
    return int(np.__version__.split(".")[0]) >= 2 and ("X86_V4" in found or "AVX512_SKX" in found)


NUMPY_SORTS_FAST = _numpy_sorts_fast()


def sort_values(values: np.ndarray) -> np.ndarray:
    """`values` (a plain integer column) sorted ascending, by the faster sort measured for
    this CPU (_numpy_sorts_fast): the same bits either way."""
    if NUMPY_SORTS_FAST:
        return np.sort(values)
    return pl.Series(values).sort(multithreaded=False).to_numpy()


def pack_sort(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """(order, sorted keys, lossy) of non-negative integer keys, ties in position order.

    Sorts one uint64 column of (key, position) packed together instead of arg-sorting:
    a plain integer column sorts several times faster than an argsort moves its indexes.
    NumPy sorts it where its AVX-512 kernel runs, Polars (one thread: partitions already
    run in threads) elsewhere (sort_values says why). A key too wide to share 64 bits
    with a position keeps only its high bits (`lossy`): equal sorted keys may then stand
    for different keys, which the caller must check.
    """
    packed, bits, shift = _packed_sort(keys)
    order = (packed & np.uint64((1 << bits) - 1)).astype(np.int64)
    return order, np.right_shift(packed, np.uint64(bits)), shift > 0


def _divided(offset: np.ndarray, step: int) -> tuple[np.ndarray, int]:
    """(offset / step, step) when `step` divides every offset, (offset, 1) for a step of
    0 (all offsets 0) or 1, else (offset, 0)."""
    if step <= 1:
        return offset, 1
    quotient, remainder = np.divmod(offset, np.uint64(step))
    if remainder.any():
        return offset, 0
    return quotient, step


def _packed_sort(keys: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(the sorted uint64 words key >> shift << bits | position, bits, shift): pack_sort
    before its unpacking."""
    n = keys.size
    bits = max(1, (n - 1).bit_length())
    keys = keys.astype(np.uint64, copy=False)
    width = int(keys.max()).bit_length() if n else 0
    shift = max(0, width + bits - 64)
    packed = np.left_shift(np.right_shift(keys, np.uint64(shift)) if shift else keys, np.uint64(bits))
    packed |= np.arange(n, dtype=np.uint64)
    return sort_values(packed), bits, shift


class HashCollision(Exception):
    """Two accounts (or ids) with the same 64-bit hash: the caller sorts by the text."""


class NotInOrder(Exception):
    """Records that a state carried from chunk to chunk cannot judge as the whole file
    would be judged (Rules.judge_carried, carried.py): the caller judges the file whole."""


def find_duplicate_ids(ids: pl.Series, accounts: pl.Series, time: np.ndarray, rows: np.ndarray,
                       valid: np.ndarray) -> np.ndarray:
    """Positions of the valid records whose id an earlier record (canonical order) has."""
    candidates = np.flatnonzero(valid)
    if candidates.size < 2:
        return np.zeros(0, dtype=np.int64)
    hashes = ids.hash().to_numpy()
    if candidates.size < hashes.size:
        hashes = hashes[candidates]
    ordered = sort_values(hashes)
    repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    if repeated.size == 0:
        return np.zeros(0, dtype=np.int64)
    candidates = candidates[np.isin(hashes, repeated)]
    sub = pl.DataFrame({
        "id": ids.gather(candidates), "account": accounts.gather(candidates),
        "time": time[candidates], "row": rows[candidates], "pos": candidates,
    }).sort(["id", "account", "time", "row"])
    later = ~sub.get_column("id").is_first_distinct().to_numpy()
    return np.sort(sub.get_column("pos").to_numpy()[later])
