"""A time-ordered file judged chunk by chunk, each account's rule state carried in arrays.

A day's feed usually comes in time order. When every account's records come chunk after
chunk in canonical order (account, time, id, row), the cross-record rules can judge each
chunk after what the chunks before left of each account, the "prior state in, new state
out" model of the ledger (engine/state.py), instead of keeping every record for the end
(store.py: in memory, or spilled to disk partitioned by account). For overlap rules and
caps (Rules.carries) that state is a few numbers an account, held in NumPy arrays indexed
by a lasting account code (`Carried`):

- per overlap rule, the latest end of the account's accepted records (none: NO_END);
- per cap, the account's latest period and what it credited in it.

Memory grows with the accounts, not the records: about 60 bytes an account with one cap
and one overlap rule (AccountIndex's table and hashes, the arrays; grown by half).

The same C passes judge the store's partitions of a file in any order (Carried.fresh, from
Rules._accounts): a partition holds every record of its accounts, so one pass in canonical
order from a state in which no account has a record yet is the whole file's verdict.

The conditions, each checked, and what happens when one fails (`stream`: the frames
already given are taken back by the caller's `rewind` and the file is evaluated as
before, BatchEngine.evaluate_file):
- order: no record the rules judge (credited by the formulas) has a time before the
  latest such time of an earlier chunk. Records of one account at that very time in two
  chunks may sort either way (by id): each chunk's records at its latest time are held
  and judged with the next chunk of a later time, in canonical order
  (CarriedRun._judge_held), so a feed of whole-minute times with ids in no order holds;
- a cap's period never goes back within an account (a clock set back across midnight in
  a zone with daylight saving time): the cap's C pass (Carried.cap) raises NotInOrder;
- two accounts with one 64-bit hash (AccountIndex, or the chunk's own canonical order):
  HashCollision;
- repeated ids: hashed as the chunks come (hashes.RepeatedHashes, as BatchEngine's
  `_per_record_once`); when some record turns out to be a duplicate, a Parquet file is
  streamed again with the repeated rows known (BatchEngine.duplicate_rows), another file
  is evaluated as before.

Why a hash table of our own (AccountIndex, C) rather than Polars' categoricals (a lasting
string -> u32 mapping, `pl.Categorical(pl.Categories(name))`): casting a 262k-row chunk of
accounts took 73 ms with 5M accounts known and 180-310 ms with 10-20M (Polars 2.1, load
4), about 1 µs a record, where the whole per-record evaluation costs about 0.17 µs; and
20M accounts held 2.2 GB. The table here looks up each chunk's accounts (their two 64-bit
hashes, which Polars makes in about 1 ms a chunk) in a few ms, in about 28 bytes an
account (docs/engine.md, "Time-ordered files").
"""

from __future__ import annotations

import ctypes
import threading
from collections import deque
from concurrent.futures import wait
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import numpy as np
import polars as pl

from .. import pools
from .hashes import RepeatedHashes
from .rules import HashCollision, NotInOrder, account_hashes, canonical
from .values import Reasons

NO_END = np.iinfo(np.int64).min  # no accepted record yet (a date or datetime is never this)
NO_PERIOD = np.iinfo(np.int64).min

# A lasting account -> code table: open addressing on the first hash (linear probing, at
# most half full), each slot the code + 1 (0: empty), each code's two hashes beside it to
# tell two accounts apart (a shared first hash with another second hash: -1).
INDEX_SOURCE = r"""
#include <stdint.h>
#define AHEAD 16  /* lookups ahead whose slots are prefetched (their hashes AHEAD / 2 later) */
static inline uint64_t place(uint64_t h, int bits) {
    return (h * 0x9E3779B97F4A7C15ULL) >> (64 - bits);
}
/* a[0] h1, a[1] h2 (uint64 n): the accounts; out a[2] code (int64 n); a[3] slots (uint32
   2**bits); a[4] the hashes by code (uint64 2 * capacity: h1, h2); a[5] int64[3]: in [0]
   bits, [1] count; out [1] the new count, [2] -1 when two accounts share h1, else 0.
   The caller leaves room: count + n codes, and count + n <= 2**bits / 2. */
void tanpu_account_codes(int64_t n, void **a) {
    const uint64_t *h1 = (const uint64_t *)a[0], *h2 = (const uint64_t *)a[1];
    int64_t *code = (int64_t *)a[2];
    uint32_t *slot = (uint32_t *)a[3];
    uint64_t *hashes = (uint64_t *)a[4];
    int64_t *io = (int64_t *)a[5];
    const int bits = (int)io[0];
    const uint64_t mask = ((uint64_t)1 << bits) - 1;
    int64_t count = io[1];
    io[2] = 0;
    for (int64_t i = 0; i < n; i++) {
        if (i + AHEAD < n) __builtin_prefetch(&slot[place(h1[i + AHEAD], bits)]);
        if (i + AHEAD / 2 < n) {
            uint32_t ahead = slot[place(h1[i + AHEAD / 2], bits)];
            if (ahead) __builtin_prefetch(&hashes[2 * (uint64_t)(ahead - 1)]);
        }
        uint64_t h = h1[i], s = place(h, bits);
        for (;;) {
            uint32_t c = slot[s];
            if (!c) {
                slot[s] = (uint32_t)(count + 1);
                hashes[2 * count] = h;
                hashes[2 * count + 1] = h2[i];
                code[i] = count++;
                break;
            }
            if (hashes[2 * (uint64_t)(c - 1)] == h) {
                if (hashes[2 * (uint64_t)(c - 1) + 1] != h2[i]) { io[2] = -1; io[1] = count; return; }
                code[i] = c - 1;
                break;
            }
            s = (s + 1) & mask;
        }
    }
    io[1] = count;
}
/* a[0] slots (uint32 2**bits, zeroed); a[1] the hashes by code (uint64 2 * n); a[2] int64[1]:
   bits. Every code placed again (the table grown). */
void tanpu_account_rehash(int64_t n, void **a) {
    uint32_t *slot = (uint32_t *)a[0];
    const uint64_t *hashes = (const uint64_t *)a[1];
    const int bits = (int)((int64_t *)a[2])[0];
    const uint64_t mask = ((uint64_t)1 << bits) - 1;
    for (int64_t c = 0; c < n; c++) {
        uint64_t s = place(hashes[2 * c], bits);
        while (slot[s]) s = (s + 1) & mask;
        slot[s] = (uint32_t)(c + 1);
    }
}
/* The overlap rules of one chunk's credited records, n in canonical order (an account's
   records together), one pass: a record is rejected by the first rule whose start is
   before the latest end the account's accepted records reached (its state: NO_END, the
   least int64, before any); an accepted record moves each rule's latest end on.
   a[0] positions, a[1] account codes, a[2] times (int64 n); a[3] int64[2]: in [0] the
   number of rules R; out [1] the number accepted, k; per rule r, a[4 + 3r] starts and
   a[5 + 3r] ends (int64, whole columns read at the positions), a[6 + 3r] the latest end
   by code (int64, updated); a[4 + 3R] the rules' reasons (int32 R); the batch's a[5 + 3R]
   reason (int32), a[6 + 3R] reduction and a[7 + 3R] points (int64), a rejected record's
   written there (the rule's reason, 0, 0); the accepted records' positions, codes and
   times moved to the first k places of a[0], a[1], a[2], in order. */
void tanpu_carried_overlaps(int64_t n, void **a) {
    int64_t *pos = (int64_t *)a[0], *account = (int64_t *)a[1], *time = (int64_t *)a[2];
    int64_t *io = (int64_t *)a[3];
    const int64_t rules = io[0];
    const int32_t *reasons = (const int32_t *)a[4 + 3 * rules];
    int32_t *reason = (int32_t *)a[5 + 3 * rules];
    int64_t *reduction = (int64_t *)a[6 + 3 * rules], *points = (int64_t *)a[7 + 3 * rules];
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++) {
        if (i + AHEAD < n) {  /* the state and the columns read AHEAD records on: random reads */
            const int64_t ca = account[i + AHEAD], pa = pos[i + AHEAD];
            for (int64_t r = 0; r < rules; r++) {
                __builtin_prefetch(&((const int64_t *)a[4 + 3 * r])[pa]);
                __builtin_prefetch(&((const int64_t *)a[5 + 3 * r])[pa]);
                __builtin_prefetch(&((const int64_t *)a[6 + 3 * r])[ca]);
            }
        }
        const int64_t c = account[i], p = pos[i];
        int64_t rejected = -1;
        for (int64_t r = 0; r < rules; r++) {
            const int64_t *start = (const int64_t *)a[4 + 3 * r], *latest = (const int64_t *)a[6 + 3 * r];
            if (start[p] < latest[c]) { rejected = r; break; }
        }
        if (rejected >= 0) {
            reason[p] = reasons[rejected];
            reduction[p] = 0;
            points[p] = 0;
            continue;
        }
        for (int64_t r = 0; r < rules; r++) {
            const int64_t *end = (const int64_t *)a[5 + 3 * r];
            int64_t *latest = (int64_t *)a[6 + 3 * r];
            if (end[p] > latest[c]) latest[c] = end[p];
        }
        pos[k] = p; account[k] = c; time[k] = time[i];
        k++;
    }
    io[1] = k;
}
/* One cap over one chunk's accepted records, n in canonical order: each record is allowed
   max(0, min(value, limit - used)), `used` what its account credited in the period so far
   (engine/cross_record.py: a negative amount counts as nothing), the account's state its
   latest period and that period's total (NO_PERIOD before any).
   a[0] account codes, a[1] periods, a[2] values (int64 n); a[3] the latest period and
   a[4] its total by code (int64, updated); out a[5] allowed (int64 n); a[6] int64[2]: in
   [0] the limit; out [1] -1 when a period comes before the account's latest (the state is
   then not to be used again), else 0. */
void tanpu_carried_cap(int64_t n, void **a) {
    const int64_t *account = (const int64_t *)a[0], *period = (const int64_t *)a[1];
    const int64_t *value = (const int64_t *)a[2];
    int64_t *latest = (int64_t *)a[3], *total = (int64_t *)a[4], *allowed = (int64_t *)a[5];
    int64_t *io = (int64_t *)a[6];
    const int64_t limit = io[0];
    io[1] = 0;
    for (int64_t i = 0; i < n; i++) {
        if (i + AHEAD < n) {  /* the account's state AHEAD records on: random reads */
            __builtin_prefetch(&latest[account[i + AHEAD]]);
            __builtin_prefetch(&total[account[i + AHEAD]]);
        }
        const int64_t c = account[i], p = period[i];
        if (p != latest[c]) {
            if (p < latest[c]) { io[1] = -1; return; }
            latest[c] = p;
            total[c] = 0;
        }
        const int64_t room = limit - total[c], v = value[i];
        const int64_t got = v < room ? v : room;
        allowed[i] = got > 0 ? got : 0;
        total[c] += allowed[i];
    }
}
"""

_LIBRARIES: dict = {}
_LOCK = threading.Lock()


def _functions(build) -> Optional[tuple[Any, Any, Any, Any]]:
    """INDEX_SOURCE's C functions (the table's two, the overlap rules' and a cap's
    passes), built once per `build` (None without a compiler)."""
    with _LOCK:
        if build not in _LIBRARIES:
            library = build(INDEX_SOURCE)
            if library is None:
                _LIBRARIES[build] = None
            else:
                from .kernel import entry
                _LIBRARIES[build] = tuple(entry(library, f"tanpu_{name}") for name in (
                    "account_codes", "account_rehash", "carried_overlaps", "carried_cap"))
        return _LIBRARIES[build]


class AccountIndex:
    """Accounts (two independently seeded 64-bit hashes of the text, rules.account_hashes)
    -> codes 0, 1, 2, ... in order of first sight, lasting from chunk to chunk."""

    def __init__(self, functions, capacity: int = 1 << 16):
        self.codes_of, self.rehash = functions[:2]
        self.count = 0
        self.bits = max(4, (2 * capacity - 1).bit_length())
        self.slots = np.zeros(1 << self.bits, dtype=np.uint32)
        self.hashes = np.zeros(2 * capacity, dtype=np.uint64)

    @property
    def capacity(self) -> int:
        return self.hashes.size // 2

    def codes(self, h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
        """The codes of these accounts (new ones given the next codes); HashCollision when
        two accounts share `h1` (their `h2` differ)."""
        n = h1.size
        need = self.count + n
        if need > self.capacity:
            grown = np.zeros(2 * max(need, self.capacity * 3 // 2), dtype=np.uint64)
            grown[:2 * self.count] = self.hashes[:2 * self.count]
            self.hashes = grown
        if 2 * need > self.slots.size:
            bits = self.bits
            while 2 * need > 1 << bits:
                bits += 1
            self.bits = bits
            self.slots = np.zeros(1 << bits, dtype=np.uint32)
            io = np.array([bits], dtype=np.int64)
            self.rehash(self.count, (ctypes.c_void_p * 3)(self.slots.ctypes.data, self.hashes.ctypes.data,
                                                         io.ctypes.data))
        h1 = np.ascontiguousarray(h1, dtype=np.uint64)
        h2 = np.ascontiguousarray(h2, dtype=np.uint64)
        out = np.empty(n, dtype=np.int64)
        io = np.array([self.bits, self.count, 0], dtype=np.int64)
        self.codes_of(n, (ctypes.c_void_p * 6)(h1.ctypes.data, h2.ctypes.data, out.ctypes.data,
                                                self.slots.ctypes.data, self.hashes.ctypes.data, io.ctypes.data))
        self.count = int(io[1])
        if io[2] < 0:
            raise HashCollision()
        return out


class Carried:
    """What the overlap rules and caps (Rules.carries) remember of every account so far,
    as arrays indexed by its AccountIndex code; Rules.judge_carried reads and updates it."""

    def __init__(self, rules, functions, accounts: Optional[int] = None):
        """`accounts`: a fresh state for that many accounts, coded 0 .. accounts - 1 by
        the caller (`fresh`), with no table of its own; else a lasting table (`codes`)."""
        self.index = AccountIndex(functions) if accounts is None else None
        self.lock = threading.Lock()  # the index is looked up by the chunks' threads
        self.judge_overlaps, self.judge_cap = functions[2:]
        size = self.index.capacity if accounts is None else max(1, accounts)
        self.ends = [np.full(size, NO_END, dtype=np.int64) for _ in rules.m.overlaps]
        self.periods = [np.full(size, NO_PERIOD, dtype=np.int64) for _ in rules.m.caps]
        self.totals = [np.zeros(size, dtype=np.int64) for _ in rules.m.caps]

    @classmethod
    def fresh(cls, rules, accounts: int) -> Optional["Carried"]:
        """A state in which no account has a record yet, for `accounts` accounts whose
        codes the caller gives (rules.canonical's, 0 .. accounts - 1): every record of
        those accounts judged in one call of Rules.judge_carried from it is judged as the
        whole-file steps judge them (Rules._accounts: a partition of the store, whose
        accounts are all there). None without a compiler."""
        functions = _functions(rules.native.build) if rules.native is not None else None
        return None if functions is None else cls(rules, functions, accounts)

    def codes(self, h1: np.ndarray, h2: np.ndarray) -> tuple[np.ndarray, int]:
        """The accounts' lasting codes (AccountIndex.codes) and how many codes there are
        then (the arrays must hold that many before a record of theirs is judged:
        `reserve`). Thread-safe: each chunk's thread looks its accounts up as soon as
        it is ready (the codes' order is that of first sight, which no verdict depends
        on: each account's state is its own), beside the judging of the chunks before
        on the main thread, which took 17% of that thread's time when it did it here
        (50M capped rides in time order, 2026-12-07). The C lookup runs without the GIL
        (ctypes), under a lock of its own."""
        with self.lock:
            codes = self.index.codes(h1, h2)
            return codes, self.index.count

    def reserve(self, count: int) -> None:
        """The state arrays grown to hold codes below `count` (the main thread, before
        a chunk whose accounts `codes` gave is judged), by half at least."""
        size = self.ends[0].size if self.ends else self.periods[0].size if self.periods else count
        if size < count:
            size = max(count, size * 3 // 2)
            self.ends = [_grown(a, size, NO_END) for a in self.ends]
            self.periods = [_grown(a, size, NO_PERIOD) for a in self.periods]
            self.totals = [_grown(a, size, 0) for a in self.totals]

    def overlaps(self, batch, pos: np.ndarray, account: np.ndarray, time: np.ndarray,
                 bounds: list[tuple[np.ndarray, np.ndarray]], reasons: list[int]):
        """The overlap rules of the records at `pos` (canonical order, `account` their
        codes, `time` their times; `bounds` per rule the whole int64 columns of starts and
        ends), after each account's latest accepted end, which is left updated: each
        record a rule rejects is given that rule's reason (`reasons`, the first rule that
        rejects) and no reduction or points in `batch`; (pos, account, time) of the
        accepted ones back, in order. One C pass, tanpu_carried_overlaps."""
        n = pos.size
        pos, account, time = (np.array(a, dtype=np.int64) for a in (pos, account, time))  # written
        io = np.array([len(bounds), 0], dtype=np.int64)
        keep = [pos, account, time, io]
        for (start, end), ends in zip(bounds, self.ends):
            keep += [np.ascontiguousarray(start, dtype=np.int64), np.ascontiguousarray(end, dtype=np.int64), ends]
        keep += [np.array(reasons, dtype=np.int32), batch.reason, batch.reduction_mg, batch.points]
        assert batch.reason.dtype == np.int32 and batch.reduction_mg.dtype == batch.points.dtype == np.int64
        self.judge_overlaps(n, (ctypes.c_void_p * len(keep))(*[k.ctypes.data for k in keep]))
        k = int(io[1])
        return pos[:k], account[:k], time[:k]

    def cap(self, cap: int, account: np.ndarray, periods: np.ndarray, values: np.ndarray, limit: int) -> np.ndarray:
        """What cap `cap` allows each record (canonical order, `account` their codes),
        after what each account credited in its latest period, which is left updated
        (one C pass, tanpu_carried_cap); NotInOrder for a period before the account's
        latest (a local clock set back across midnight)."""
        n = account.size
        allowed = np.empty(n, dtype=np.int64)
        io = np.array([limit, 0], dtype=np.int64)
        keep = [np.ascontiguousarray(account, dtype=np.int64), np.ascontiguousarray(periods, dtype=np.int64),
                np.ascontiguousarray(values, dtype=np.int64), self.periods[cap], self.totals[cap], allowed, io]
        self.judge_cap(n, (ctypes.c_void_p * len(keep))(*[k.ctypes.data for k in keep]))
        if io[1] < 0:
            raise NotInOrder("a cap's period before the account's latest")
        return allowed


def _grown(array: np.ndarray, size: int, fill) -> np.ndarray:
    grown = np.full(size, fill, dtype=array.dtype)
    grown[:array.size] = array
    return grown


@dataclass
class _Prepared:
    """A chunk evaluated record by record and made ready for the carried rules in its
    thread: all that does not depend on the judging of the chunks before it."""

    part: Any
    batch: Any
    pos: np.ndarray            # the credited records, canonical order
    time: np.ndarray           # their times along it
    account: np.ndarray        # their accounts' lasting codes along it (Carried.codes)
    count: int                 # the codes given when this chunk's were (Carried.reserve)
    collision: bool = False    # two of the chunk's accounts share a hash


def _prepare(engine, part, duplicates: Optional[np.ndarray], hashes: Optional[RepeatedHashes],
             carried: Carried, copy: bool = False) -> _Prepared:
    """`copy`: the rules write into a copy of the part's outcomes (the part may go on to
    the store as it is); else into the part's own. `hashes`: the chunk's id hashes are
    added to it here (a lock of its own: `_Hashes`), unless `duplicates` are known."""
    rules = engine.rules
    batch = engine.batch_of(part, copy=copy)
    if part.coded:  # the text columns the formulas read as codes: the points recomputed
        batch.columns = {**batch.columns, **part.coded}  # after a cap read them so
    if duplicates is None:
        hashes.add(hashes.prepare(part.ids.hash().to_numpy()))
    elif part.n and duplicates.size:
        lo, hi = np.searchsorted(duplicates, (part.rows[0], part.rows[-1] + 1))
        rules.mark_duplicate_ids(batch, duplicates[lo:hi] - part.rows[0])
    credited = np.flatnonzero(batch.reason == Reasons.CREDITED)
    empty = np.zeros(0, dtype=np.int64)
    if credited.size == 0:
        return _Prepared(part, batch, empty, empty, empty, 0)
    h1, h2 = account_hashes(batch.accounts, credited)
    try:
        order, code, time = canonical(batch, credited, h1, h2, rules.native)
        starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
        heads = order[starts]
        codes, count = carried.codes(h1[heads], h2[heads])
    except HashCollision:
        return _Prepared(part, batch, empty, empty, empty, 0, collision=True)
    return _Prepared(part, batch, credited[order], time, np.repeat(codes, np.diff(np.r_[starts, order.size])),
                     count)


class _Hashes:
    """RepeatedHashes added to by the chunks' threads, one at a time (a lock), and
    nothing added once closed (a chunk still in flight when a run ends)."""

    def __init__(self, hashes: RepeatedHashes):
        self.hashes = hashes
        self.lock = threading.Lock()
        self.closed = False

    def prepare(self, ids_hashed: np.ndarray):
        return self.hashes.prepare(ids_hashed)

    def add(self, prepared) -> None:
        with self.lock:
            if not self.closed:
                self.hashes.add(prepared)

    def repeated(self) -> np.ndarray:
        with self.lock:
            self.closed = True
            return self.hashes.repeated()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.hashes.close()


@dataclass
class _Held:
    """A chunk's judged records at the latest time so far, judged with the next chunk
    that has a later time (`CarriedRun._judged`): records of one account at that time in
    the next chunk may sort before them (a smaller id)."""

    prepared: _Prepared
    pos: np.ndarray       # canonical order
    account: np.ndarray   # lasting codes along it
    time: np.ndarray


STANDS, AGAIN, BROKEN = "stands", "again", "broken"
# the first chunks' frames are held back until this many chunks were judged: a file out of
# time order is usually seen to be at the first chunk boundary, and its parts, not judged
# yet, then go on to the store as they are (nothing was given out: nothing is read again)
HOLD_CHUNKS = 4


class CarriedRun:
    """One reading of a file's chunks, judged with the state carried (`frames`).

    `taken`: chunks judged so far; `yielded`: frames given out (which the caller takes
    back if the run does not stand); `parts`, after a BROKEN return with nothing given
    out: the parts of the file's chunks as per-record evaluation left them, an iterator
    to hand on to the store (store.py); `why`: what broke the order; `tied`: how often
    an account's records at one time were judged against their chunks' order (a later
    chunk's record sorting before a held one of an earlier chunk: `_judge_held`)."""

    def __init__(self, engine, functions, expected_rows: int, duplicates: Optional[np.ndarray]):
        self.engine = engine
        self.duplicates = duplicates
        self.carried = Carried(engine.rules, functions)
        self.hashes = _Hashes(RepeatedHashes(expected_rows, engine.hash_rows)) if duplicates is None else None
        self.taken = 0
        self.yielded = 0
        self.parts: Optional[Iterator] = None
        self.broken = False
        self.why = ""
        self.tied = 0
        # the records at the latest time so far (`latest`), of one chunk or several, not
        # judged yet; the chunks whose frames wait for them (or for an earlier chunk's)
        self.latest: Optional[int] = None
        self.held: list[_Held] = []
        self.waiting: deque = deque()

    def frames(self, chunks, units, progress: Optional[Callable] = None):
        """Generator of the result frames; returns STANDS, AGAIN (some hash of an id is
        repeated: the repeated rows must be found, and the file read again) or BROKEN
        (the records are not in an order this run can judge)."""
        engine = self.engine
        copied: set = set()  # the first rows of the chunks that may go on to the store

        def numbered():
            for k, (frame, first_row) in enumerate(chunks.frames):
                if k <= HOLD_CHUNKS:
                    copied.add(first_row)
                yield frame, first_row

        def work(frame, units, first_row):
            part = engine.per_record(frame, units, first_row, coded=True)
            if self.broken:  # on to the store as it is
                return part
            # a part that may go on to the store is judged in a copy of its outcomes
            return _prepare(engine, part, self.duplicates, self.hashes, self.carried, copy=first_row in copied)
        stream = engine.per_record_chunks(numbered(), units, work)
        seen: list = []  # every chunk so far, while they may be handed on to the store
        handed_on = False
        # each chunk's results are shown (status, code, message as text) by a thread of
        # their own while the next chunk is judged: the judging is the one step that runs
        # chunk after chunk, on the main thread (a profile of 5M rides: half its samples)
        self.showing = pools.pool("shown", 1)
        pending: deque = deque()  # the frames of the chunks judged whole, in order
        try:
            for prepared in stream:
                if self.taken <= HOLD_CHUNKS:
                    seen.append(prepared)
                try:
                    done = self._judged(prepared)
                except (NotInOrder, HashCollision) as error:
                    self._broke(error)
                    # nothing given out and every part judged in a copy (the first
                    # HOLD_CHUNKS + 1 chunks): the parts go on to the store as they are
                    if not self.yielded and self.taken <= HOLD_CHUNKS:
                        self.parts = _parts([p.part for p in seen], stream)
                        handed_on = True
                    return BROKEN
                self.taken += 1
                if self.taken > HOLD_CHUNKS + 1:  # none can be handed on any more: let them go
                    seen = []
                if progress is not None:
                    progress(chunks.position(), chunks.size)
                pending.extend(self._shown(p) for p in done)
                if self.taken <= HOLD_CHUNKS:
                    continue
                while len(pending) > 1:  # one chunk shown while the next is judged
                    self.yielded += 1
                    yield pending.popleft().result()
            try:
                done = self._finished()
            except NotInOrder as error:
                self._broke(error)
                if not self.yielded and self.taken <= HOLD_CHUNKS + 1:  # every part in `seen`
                    self.parts = _parts([p.part for p in seen], (p for p in ()))
                return BROKEN
            pending.extend(self._shown(p) for p in done)
            while pending:
                self.yielded += 1
                yield pending.popleft().result()
            if self.hashes is not None and self.hashes.repeated().size:
                return AGAIN
            return STANDS
        finally:
            if not handed_on:
                stream.close()
            # what is still queued is not needed; what runs is waited for (nothing of this
            # run goes on after it)
            left = list(pending)
            for future in left:
                future.cancel()
            wait(left)
            if self.hashes is not None:
                self.hashes.close()

    def _broke(self, error: Exception) -> None:
        self.why = type(error).__name__ + (f": {error}" if str(error) else "")
        self.broken = True

    def _shown(self, prepared: _Prepared):
        return self.showing.submit(self.engine.results, prepared.part, prepared.batch)

    def _judged(self, prepared: _Prepared) -> list:
        """Judges what of the chunk can be judged now; the chunks (this or earlier ones)
        whose records are then all judged, in order.

        The chunk's records at its latest time are held (`held`) until a chunk with a
        later time comes (or the file ends): an account's records at that time in the
        next chunk come before them in canonical order when their ids sort first, and
        are then judged in that order (`_judge_held`). Each chunk's frame is shown once
        all its records are judged: the frames keep the chunks' order."""
        if prepared.collision:
            raise HashCollision()
        self.waiting.append(prepared)
        if prepared.pos.size == 0:
            return self._complete() if not self.held else []
        self.carried.reserve(prepared.count)
        pos, time, account = prepared.pos, prepared.time, prepared.account
        first, last = int(time.min()), int(time.max())
        later = None
        if self.latest is not None:
            if first < self.latest:
                raise NotInOrder("a record before a record of an earlier chunk")
            if first == self.latest:  # those at the held time join the held ones
                at = time == first
                self.held.append(_Held(prepared, pos[at], account[at], time[at]))
                if last == first:  # the whole chunk at that time: held too
                    return []
                later = ~at
        self._judge_held()
        rules = self.engine.rules
        before = time < last
        if later is not None:
            before &= later
        if before.any():
            rules.judge_carried(prepared.batch, pos[before], account[before], time[before], self.carried)
        at = time == last
        self.latest = last
        self.held = [_Held(prepared, pos[at], account[at], time[at])]
        return self._complete(keep=1)

    def _finished(self) -> list:
        """The held records judged (the file ended): the chunks still waiting."""
        self._judge_held()
        self.held = []
        return self._complete()

    def _complete(self, keep: int = 0) -> list:
        """The waiting chunks but the last `keep`."""
        out = []
        while len(self.waiting) > keep:
            out.append(self.waiting.popleft())
        return out

    def _judge_held(self) -> None:
        """The held records (all at `latest`) judged in canonical order (account, time,
        id, row). An account's records in one chunk are in that order already; those of
        an account held from several chunks are sorted by (id, row) and judged in runs
        of one chunk's records, the first run of every such account, then the second,
        ...: each account starts where its previous run left its state (`Carried`)."""
        held = [h for h in self.held if h.pos.size]
        self.held = []
        rules = self.engine.rules
        if len(held) == 1:
            h = held[0]
            rules.judge_carried(h.prepared.batch, h.pos, h.account, h.time, self.carried)
            return
        if not held:
            return
        # the accounts held from more than one chunk
        distinct = np.concatenate([np.unique(h.account) for h in held])
        values, counts = np.unique(distinct, return_counts=True)
        shared = values[counts > 1]
        mixed = [np.isin(h.account, shared) for h in held]
        for h, mix in zip(held, mixed):  # the others: in their chunk's order, any chunk first
            alone = ~mix
            if alone.any():
                rules.judge_carried(h.prepared.batch, h.pos[alone], h.account[alone], h.time[alone], self.carried)
        if shared.size == 0:
            return
        frame = pl.concat([pl.DataFrame({
            "account": h.account[mix], "id": h.prepared.batch.ids.gather(h.pos[mix]),
            "row": h.prepared.batch.rows[h.pos[mix]], "chunk": np.full(int(mix.sum()), k, dtype=np.int64),
            "at": np.flatnonzero(mix)}) for k, (h, mix) in enumerate(zip(held, mixed))])
        frame = frame.sort(["account", "id", "row"])
        account = frame.get_column("account").to_numpy()
        chunk = frame.get_column("chunk").to_numpy()
        at = frame.get_column("at").to_numpy()
        new_account = np.r_[True, account[1:] != account[:-1]]
        new_run = new_account | np.r_[True, chunk[1:] != chunk[:-1]]
        runs = np.cumsum(new_run) - 1
        run = runs - np.maximum.accumulate(np.where(new_account, runs, 0))  # the run's rank in its account
        self.tied += int((~new_account[1:] & (chunk[1:] < chunk[:-1])).sum())
        for r in range(int(run.max()) + 1):
            for k, h in enumerate(held):
                chosen = at[(run == r) & (chunk == k)]
                if chosen.size:
                    rules.judge_carried(h.prepared.batch, h.pos[chosen], h.account[chosen], h.time[chosen],
                                        self.carried)


def _parts(before: list, stream) -> Iterator:
    """The parts judged or made ready so far, then those still to come (a chunk in flight
    when the order broke may come prepared: its part was not judged)."""
    yield from before
    try:
        for got in stream:
            yield got.part if isinstance(got, _Prepared) else got
    finally:
        stream.close()


def stream(engine, open_chunks: Callable[[], Any], path, units, partitions, memory_rows: int,
           progress, rewind: Callable[[], None], runs: Optional[list] = None):
    """Generator: a file whose methodology `engine.carries` judged chunk by chunk with the
    state carried (module docstring). Returns (whether the frames given stand, the parts
    to hand on to the store when the order broke before any frame was given: None when the
    file is to be read again). When the frames do not stand, `rewind()` was called if
    any was given, and the caller evaluates the file as before. `runs`: each CarriedRun
    made is appended (tests look at them)."""
    from ..recordfiles import estimate_rows, format_of

    functions = _functions(engine.rules.native.build) if engine.rules.native is not None else None
    if functions is None:
        return False, None
    duplicates = None
    while True:
        run = CarriedRun(engine, functions, estimate_rows(path), duplicates)
        if runs is not None:
            runs.append(run)
        outcome = yield from run.frames(open_chunks(), units, progress)
        if outcome == STANDS:
            return True, None
        if outcome == AGAIN:  # some id hash repeated: the repeated records, if any
            duplicates = engine.duplicate_rows(path, units, partitions, memory_rows) \
                if format_of(path) == "parquet" else None
            if duplicates is not None and duplicates.size == 0:
                return True, None
        if run.yielded:
            rewind()
        if outcome == AGAIN and duplicates is not None:
            continue  # read again with the repeated records known: the order held
        return False, run.parts
