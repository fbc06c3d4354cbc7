"""The columnar batch evaluator: frames of raw records in, a frame of results out.

Per-record evaluation goes chunk by chunk (ingest.py, kernel.py); of each chunk only
what the results and the cross-record rules need is kept (no Python object per row).
Cross-record rules (rules.py) then run on all kept records, in memory or, for a file too
big for that, partition by partition from disk (store.py). Results are the same, bit
for bit, as engine.Engine's: `Result.key()` of every record.
"""

from __future__ import annotations

import dataclasses
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Collection, Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np
import polars as pl

from dsl.ir import ast as ir
from dsl.ir.printer import content_hash
from dsl.types import Kind

from .. import pools
from ..records import Schema
from ..result import COLUMNS, MethodologyRef, Result
from ..scalar import ScalarProgram
from . import carried, history
from .ingest import Ingested, ReadDatetimes, ingest_frame, raw_frame, text_series
from .kernel import Kernels
from .native_text import NativeText
from .part import Part, concat_parts
from .counters import COLUMN as COUNTER_COLUMN
from .hashes import MEMORY_ROWS as HASHES_IN_MEMORY, RepeatedHashes
from .rules import Batch, Rules, find_duplicate_ids
from .store import DiskStore, MemoryStore
from .values import Cat, Reasons, empty_lists, nulls

CHUNK_ROWS = 1 << 18
# a file of at most this many rows keeps what the cross-record rules need in memory (more
# spill to disk, store.py): 1,958-2,165 MiB at the peak for 10M Shenzhen rides with a cap
# and an overlap rule, in 18.8 s against 40.5 s and 2,202 MiB spilled (`tanpu eval
# --compact`, load 19-22, 2026-12-07). It was 2M, then 6M (1.6 GiB at 5M before the store filled
# its arrays as the chunks came and showed the results a chunk at a time; docs/engine.md)
MEMORY_ROWS = 10_000_000
# a spilled file's runs and partitions are sized for this budget, whatever `memory_rows`
# (smaller, as tests give it, is taken): sized for 10M, 50M capped rides peaked at
# 4,381 MiB, over issue 16's 4 GB; for 6M, at 2,178-2,355 MiB
SPILL_ROWS = 6_000_000
# ids hashed in memory for the duplicate-id check of a per-record methodology's file (8
# bytes each); a larger file's hashes go to files (hashes.RepeatedHashes)
HASH_ROWS = HASHES_IN_MEMORY

RESULT_COLUMNS = COLUMNS  # the results frame's columns: engine.result's, in its order


class BatchEngine:
    """A methodology compiled for columns. `evaluate_frame` is the entry point."""

    threads = min(4, os.cpu_count() or 1)  # chunks evaluated at once
    hash_rows = HASH_ROWS  # duplicate_rows: ids hashed in memory at most
    # evaluate_file's carried runs (carried.CarriedRun) are appended here when it is a
    # list: how a file was read (tests)
    carried_runs: Optional[list] = None

    def __init__(self, methodology: ir.Methodology, chunk_rows: int = CHUNK_ROWS,
                 kernels: Optional[Callable[[str], Any]] = None):
        """`kernels`: C source -> the loaded library, or None (engine/native/build.py builds
        them); with it the formulas run as one C function per chunk (kernel.py) and text
        cells are read by the installed fixed C (native_text.py), without it the formulas
        run as the scalar path's function row by row and text cells as NumPy operations
        (text.py). The results are the same."""
        self.methodology = methodology
        self.schema = Schema.of(methodology)
        meta = methodology.metadata
        self.ref = MethodologyRef(meta.id, meta.version, content_hash(methodology))
        self.chunk_rows = chunk_rows
        # a frame already in memory goes in chunks twice a file's: its memory is spent
        # already, and each chunk costs some Python work that holds the GIL (with 262k-row
        # chunks two threads ran at 1.3x the speed of one; 5M rows, 2 cores)
        self.frame_rows = 2 * chunk_rows
        self.reasons = Reasons()
        self.scalar = ScalarProgram(methodology)
        self.plan = self.scalar.plan
        self.formulas = Kernels(self.plan, self.reasons, self.scalar, kernels)
        self.native_text = NativeText() if kernels is not None else None
        self.rules = Rules(self.plan.rules, self.reasons, recompute=self._recompute, build=kernels)
        self.masses = tuple(n for n in ("baseline", "project", "leakage") if n in self.plan.masses)
        keep = set(self.rules.needed_inputs())
        self.histories = self.plan.rules.histories
        # the definitions the windows aggregate, as their own kernel (engine/plan/history.py)
        self.subjects = (Kernels(self.scalar.subjects.plan, Reasons(), self.scalar.subjects, kernels)
                         if self.scalar.subjects is not None else None)
        if any(c.target == "reduction" for c in methodology.caps):
            keep |= {s.name for s in methodology.inputs} | {"activity", "id", "account"}
            keep |= {name for name, _ in self.plan.inputs}  # the history windows' columns
            keep |= {g.name for g in methodology.groups}
        # the time is the part's own column (Part.time, equal on every valid row, and only
        # valid rows are judged or recomputed: rules._value_column and _Gathered read it
        # there); kept again it cost 8 bytes a row in memory and in the spill
        keep.discard("time")
        self.keep = sorted(keep)
        self.kinds = {s.name: s.type.kind for s in methodology.inputs}
        self.kinds.update(activity=Kind.TEXT, id=Kind.TEXT, account=Kind.TEXT)

    # ------------------------------------------------------------ per record
    def per_record(self, frame: pl.DataFrame, column_units: Optional[Mapping[str, str]] = None,
                   first_row: int = 1, state: Optional[dict] = None, whole: bool = False,
                   datetimes: Optional[ReadDatetimes] = None, coded: bool = False) -> Part:
        """Reads and evaluates one chunk (no cross-record rules); `state`: evaluate_frame's;
        `whole`: the chunk is the whole batch, whose repeated ids are then found on another
        core while its history windows are computed (Part.duplicate_ids); `datetimes`:
        the chunk's datetime text columns as read before (ingest.ReadDatetimes); `coded`:
        the text columns read as codes kept so too (Part.coded: a carried run's)."""
        got = ingest_frame(frame, self.schema, column_units, first_row, self.native_text, datetimes)
        return self._evaluate(got, state, whole, coded)

    def per_record_chunks(self, chunks: Iterable[tuple[pl.DataFrame, int]],
                          column_units: Optional[Mapping[str, str]] = None,
                          work: Optional[Callable[..., Any]] = None) -> Iterator[Any]:
        """(frame, first row) chunks -> their Parts, in order, several chunks at once.

        Reading a chunk (mostly Polars and NumPy, which release the GIL) and evaluating it
        take about as long as each other, so whole chunks in threads keep every core busy
        where slices of one chunk leave the reading single-threaded. At most `threads`
        chunks beyond the one being handed out are in flight, so memory stays bounded.
        `work(frame, column_units, first_row)`: what is done with each chunk in its thread
        (per_record, by default).
        """
        work = work or self.per_record
        if self.threads <= 1:
            for frame, first_row in chunks:
                yield work(frame, column_units, first_row)
            return
        pool = _pool(self.threads)
        pending: deque = deque()
        for frame, first_row in chunks:
            pending.append(pool.submit(work, frame, column_units, first_row))
            if len(pending) > self.threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def _evaluate(self, got: Ingested, state: Optional[dict] = None, whole: bool = False,
                  keep_coded: bool = False) -> Part:
        n = got.n
        reason = np.zeros(n, dtype=np.int32)
        reason[got.invalid] = Reasons.INVALID
        columns = got.columns
        columns["id"] = got.ids
        columns["account"] = got.accounts
        ordered = None  # the canonical order, where the windows sorted the records
        ahead = None
        if whole and self.histories and n >= self.rules.ahead_rows:
            # the ids repeated in the batch (finish's first step) beside the windows: they
            # read ids, accounts, times and rows only, which nothing here writes
            ahead = _pool(2).submit(find_duplicate_ids, got.ids, got.accounts, columns["time"], got.rows,
                                    ~got.invalid)
        if self.histories:  # the chunk is the whole stream (evaluate_frame, evaluate_file)
            defined = None
            if self.subjects is not None:  # each record's value of the definitions aggregated
                failed = np.zeros(n, dtype=np.int32)
                failed[got.invalid] = Reasons.INVALID
                values = self.subjects.run(columns, n, failed)
                for name, column in zip(self.subjects.plan.counters, values.counters):
                    columns[history.subject_key(name)] = column
                defined = failed == Reasons.CREDITED
            if state is not None:
                history.compute_with_state(self.histories, columns, got.accounts, got.ids, columns["time"],
                                           got.rows, got.invalid, n, state, self.plan.rules,
                                           self.formulas.build, defined)
            else:
                ordered = history.compute(self.histories, columns, got.accounts, got.ids, columns["time"],
                                          got.rows, got.invalid, n, self.formulas.build, defined)
        # amounts of credited rows only, on the whole chunk at once (C needs no
        # cache-sized slices)
        outcome = self.formulas.run(columns, n, reason)
        masses = dict(outcome.masses)
        masses.setdefault("reduction", np.zeros(n, dtype=np.int64))
        points = outcome.points
        credited = reason == Reasons.CREDITED
        reduction = masses["reduction"]
        if got.messages:
            positions = np.fromiter(got.messages.keys(), dtype=np.int64)
            messages = pl.Series("message", [None], dtype=pl.String).new_from_index(0, n)
            messages.scatter(positions, pl.Series(list(got.messages.values()), dtype=pl.String))
        else:
            # one null repeated, not pl.repeat: that runs on Polars' thread pool, which the
            # chunk threads and the spill writer share (a profile at 20M rows found the
            # chunk threads waiting on it for about 6% of the samples)
            messages = pl.Series("message", [None], dtype=pl.String).new_from_index(0, n)
        kept = {name: text_series(columns[name]) if self.kinds.get(name) == Kind.TEXT else columns[name]
                for name in self.keep}
        coded = {name: columns[name] for name in self.keep
                 if self.kinds.get(name) == Kind.TEXT and isinstance(columns[name], Cat)} if keep_coded else {}
        for name, amounts in zip(self.plan.counters, outcome.counters):  # kept for the counters
            kept[COUNTER_COLUMN + name] = np.where(credited, amounts, 0)
        time = np.where(got.invalid, 0, columns["time"])
        return Part(got.rows, got.ids, got.accounts, time, reason, messages, reduction, points,
                    {name: masses[name] for name in self.masses}, credited, kept, ordered, ahead, coded)

    def _recompute(self, batch: Batch, positions: np.ndarray, reduction_mg: np.ndarray) -> np.ndarray:
        """Points of capped records: the formulas re-run with the capped reduction."""
        columns = _Gathered(batch, positions)
        k = positions.size
        reason = np.zeros(k, dtype=np.int32)
        outcome = self.formulas.run(columns, k, reason, override_mg=reduction_mg)
        return np.where(reason == 0, outcome.points, 0)

    # ------------------------------------------------------------ whole frames
    def evaluate_frame(self, frame: pl.DataFrame, column_units: Optional[Mapping[str, str]] = None,
                       first_row: int = 1, state: Optional[dict] = None,
                       duplicate_ids: Optional[np.ndarray] = None,
                       datetimes: Optional[ReadDatetimes] = None) -> pl.DataFrame:
        """Raw records (one per row) -> results (one per row, in the same order).

        `state` (account -> engine.state.AccountState), as engine.Engine.evaluate takes
        it: each account's history windows (engine/batch/history.py
        `compute_with_state`), caps' period totals (rules.py `_cap`), counters' cap
        totals, counters' totals and rewards' remainders (counters.py) start from what it
        remembers, and so do duplicate keys, near duplicates, overlaps, flag and bonus
        windows (rules.py `_with_state`: the reference's own judging, on the credited
        records); it is left updated, so a stream evaluated in pieces in time order
        gives what it gives whole.

        `duplicate_ids`: the positions (in the frame) of the records whose id an earlier
        record has, when the frame is part of a larger stream that decided them (Spark's
        account partitions: a repeated id may be another account's); they are DUPLICATE_ID
        and no rule counts them, but a history window still holds them, as it holds every
        record read (engine/history.py).

        `datetimes`: the frame's datetime text columns as another reading of these rows
        read them (ingest.ReadDatetimes: the API's reading of the activity times), taken
        when the frame is one chunk."""
        if self.histories:  # a window reaches across chunks: the frame is one chunk
            parts = [self.per_record(frame, column_units, first_row, state, whole=duplicate_ids is None,
                                     datetimes=datetimes)]
        elif datetimes is not None and frame.height <= self.frame_rows:
            parts = [self.per_record(frame, column_units, first_row, datetimes=datetimes)]
        else:
            parts = list(self.per_record_chunks(self.frame_chunks(frame, first_row), column_units)) or \
                [self.per_record(frame, column_units, first_row)]
        return self.finish(parts, state, duplicate_ids)

    def frame_chunks(self, frame: pl.DataFrame, first_row: int = 1) -> Iterator[tuple[pl.DataFrame, int]]:
        """A frame in memory as (chunk, first row) pieces for per_record_chunks."""
        step = self.frame_rows
        return ((frame.slice(start, step), first_row + start) for start in range(0, frame.height, step))

    def finish(self, parts: list[Part], state: Optional[dict] = None,
               duplicate_ids: Optional[np.ndarray] = None, own: bool = False) -> pl.DataFrame:
        """Cross-record rules over the kept columns of every chunk -> results;
        `duplicate_ids`: evaluate_frame's; `own`: the parts' arrays are the caller's to
        give (store.MemoryStore's), written into rather than copied."""
        return self.presented(self.judged(parts, state, duplicate_ids, own))

    def judged(self, parts: list[Part], state: Optional[dict] = None,
               duplicate_ids: Optional[np.ndarray] = None, own: bool = False) -> pl.DataFrame:
        """finish() before the results are shown: their outcomes (`outcomes`), which a
        caller may show a slice at a time (`presented` of each slice is that slice of
        the whole's)."""
        merged = concat_parts(parts)
        if duplicate_ids is None and merged.duplicate_ids is not None:  # found beside the windows
            duplicate_ids = merged.duplicate_ids.result()
        # the rules write into the batch: a concatenation is already a copy of the parts
        batch = self.batch_of(merged, copy=len(parts) == 1 and not own)
        self.rules.apply(batch, duplicate_ids, state=state)
        return self.outcomes(merged, batch)

    def batch_of(self, part: Part, copy: bool = True) -> Batch:
        """The part as the rules' batch; `copy=False` lets the rules write into the part's
        reason, reduction and points (which results() then no longer reads from it)."""
        n = part.n

        def own(array: np.ndarray) -> np.ndarray:
            return array.copy() if copy else array
        return Batch(part.rows, part.ids, part.accounts, part.time, own(part.reason),
                     own(part.reduction_mg), own(part.points), np.zeros(n, dtype=np.int64),
                     np.zeros(n, dtype=np.int64), part.columns, ordered=part.ordered)

    def results(self, part: Part, batch: Batch) -> pl.DataFrame:
        return self.presented(self.outcomes(part, batch))

    def per_record_results(self, part: Part, batch: Batch, frame: pl.DataFrame,
                           records: "Sequence[Mapping]", column_units: Optional[Mapping[str, str]] = None):
        """`frame` (results(part, batch) of a part no rule judged) as the scalar Engine's
        per-record Results, carrying what a caller applying the cross-record rules itself
        reads (the ledger: per_record.py); `records`: the part's records as sent, one a
        row, from which a capped record's points are recomputed (`recompute_points`)."""
        from ..records import reader
        from .per_record import PerRecordResults
        return PerRecordResults(frame, part, batch, self.rules, tuple(self.plan.counters),
                                self.scalar, reader(self.schema), records, column_units)

    def outcomes(self, part: Part, batch: Batch) -> pl.DataFrame:
        """What results() shows, before it is shown: the reason as its index, the flags as
        their bit mask, a time or mass that is not shown as null; a mass the methodology
        does not define, and counters when it counts nothing, left out. A spilled run
        (store.DiskStore) keeps these, half the bytes of the results, until `presented`
        shows them in row order."""
        n = part.n
        time = pl.Series("time", batch.time)
        invalid = batch.reason == Reasons.INVALID
        if invalid.any():
            time = time.zip_with(pl.Series(~invalid), nulls(n))
        columns = {
            "row": part.rows, "id": part.ids, "account": part.accounts, "time": time,
            "reason": batch.reason, "message": part.messages,
            "reduction_mg": batch.reduction_mg, "points": batch.points, "bonus": batch.bonus,
        }
        credited = pl.Series(part.credited)
        for name in ("baseline", "project", "leakage"):
            if name in part.masses:
                columns[f"{name}_mg"] = pl.Series(part.masses[name]).zip_with(
                    credited, nulls(n))
        columns["flags"] = batch.flags
        if batch.counters is not None:
            columns["counters"] = batch.counters
        return pl.DataFrame({k: pl.Series(k, v) if isinstance(v, np.ndarray) else v.alias(k)
                             for k, v in columns.items()})

    def presented(self, outcomes: pl.DataFrame, columns: Optional[Collection[str]] = None) -> pl.DataFrame:
        """outcomes() as the results frame (RESULT_COLUMNS); `columns`: only those of them
        (in RESULT_COLUMNS' order), the others not made (`evaluate_file`'s `columns`: a
        compact file's run makes no flags, time or masses to drop them)."""
        n = outcomes.height
        wanted = RESULT_COLUMNS if columns is None else [k for k in RESULT_COLUMNS if k in columns]
        made = {}
        reason_codes = outcomes.get_column("reason")
        reason = reason_codes.cast(pl.UInt32) if {"status", "code", "message"} & set(wanted) else None

        def shown(name: str) -> pl.Series:
            if name in ("status", "code", "message"):
                value = self.reasons.column(("status", "code", "message").index(name)).gather(reason)
                if name == "message":
                    invalid = (reason_codes == Reasons.INVALID).to_numpy()
                    if invalid.any():
                        value = value.zip_with(pl.Series(~invalid), outcomes.get_column("message"))
                return value
            if name in ("baseline_mg", "project_mg", "leakage_mg"):
                return outcomes.get_column(name) if name in outcomes.columns else nulls(n)
            if name == "flags":
                return self.flag_lists(outcomes.get_column("flags").to_numpy())
            if name == "counters":
                return outcomes.get_column("counters") if "counters" in outcomes.columns else \
                    empty_lists("counters", n)
            return outcomes.get_column(name)  # row, id, account, time, reduction_mg, points, bonus
        for name in wanted:
            made[name] = shown(name).alias(name)
        return pl.DataFrame([made[k] for k in wanted])

    def flag_lists(self, flags: np.ndarray) -> pl.Series:
        codes = self.rules.flag_codes
        if not codes or not flags.any():  # all empty: one empty list repeated, not via Arrow
            # (converting an Arrow array imports pyarrow.compute: 40 ms of every `tanpu eval`)
            return empty_lists("flags", flags.size)
        distinct, inverse = np.unique(flags, return_inverse=True)
        lists = [[c for i, c in enumerate(codes) if int(v) >> i & 1] for v in distinct]
        return pl.Series("flags", lists, dtype=pl.List(pl.String)).gather(inverse)

    # ------------------------------------------------------------ files
    def evaluate_file(self, path, column_units: Optional[Mapping[str, str]] = None, *,
                      memory_rows: int = MEMORY_ROWS, progress=None, spill_dir=None,
                      partitions: tuple[tuple[str, str], ...] = (),
                      rewind: Optional[Callable[[], None]] = None,
                      columns: Optional[Collection[str]] = None) -> Iterator[pl.DataFrame]:
        """A record file (.csv, .jsonl, .parquet) -> frames of results, in row order.

        Streams: a chunk at a time is read and evaluated; what the cross-record rules need
        is kept in memory when the file has at most `memory_rows` rows (estimated from
        its size), else in partitions on disk (store.DiskStore). `progress(done, total)`
        is called as the file is read. `partitions`: (name, value) columns every row of the
        file has (a hive-partitioned dataset's folder names, recordfiles.open_dataset).

        `rewind`: given by a caller that can discard the frames it was given (a result file
        written under a temporary name), it lets a per-record methodology's Parquet file be
        read once instead of twice (_per_record_once): the results are yielded before the
        repeated ids are known, and if some record turns out to be a duplicate, `rewind()`
        is called and every frame is yielded again, from the first, right this time. It
        also lets a file whose only cross-record rules are overlap rules and caps
        (`carries`) be judged chunk by chunk when its records come in time order, each
        account's state carried in memory (carried.py), with no store: if the order breaks
        after some frames were yielded, `rewind()` and the file is evaluated as before.

        `columns`: the result columns the caller reads (RESULT_COLUMNS by default); the
        frames hold at least these. A file kept in memory or spilled then makes only these
        (`presented`), and a spilled one keeps out of its spilled outcomes what none of
        them shows (a `--compact` run's: the time, flags and masses; 5M rides spilled,
        the outcomes 10.1 -> 4.5 bytes a row written, 48 -> 32 before compression:
        written, read back and shown for nothing; docs/engine.md, "seventh round").
        """
        from pathlib import Path

        from ..recordfiles import estimate_rows, format_of, open_chunks, with_partitions
        path = Path(path)

        def opened():
            chunks = open_chunks(path, self.chunk_rows)
            if partitions:
                chunks.frames = ((with_partitions(frame, partitions), row) for frame, row in chunks.frames)
            return chunks
        chunks = opened()
        units = dict(chunks.column_units)
        units.update(column_units or {})
        if self.histories:  # windows reach across chunks: the file is read whole, then evaluated
            frames = [frame for frame, _ in chunks.frames]
            whole = pl.concat(frames, how="diagonal_relaxed") if frames else None
            if whole is not None:
                yield self.evaluate_frame(whole, units)
            return
        if self.per_record_only and format_of(path) == "parquet":
            if rewind is not None:
                stands, duplicates = yield from self._per_record_once(chunks, path, units, partitions,
                                                                      memory_rows, progress)
                if stands:
                    return
                rewind()  # a duplicate found once its record's results were yielded: again
                chunks = open_chunks(path, self.chunk_rows)
                if partitions:
                    chunks.frames = ((with_partitions(frame, partitions), row) for frame, row in chunks.frames)
            else:
                duplicates = self.duplicate_rows(path, units, partitions, memory_rows)
            if duplicates is not None:  # no store: each chunk's results as it is evaluated
                def work(frame, units, first_row):
                    return self.chunk_results(self.per_record(frame, units, first_row), duplicates)
                for results in self.per_record_chunks(chunks.frames, units, work):
                    if progress is not None:
                        progress(chunks.position(), chunks.size)
                    yield results
                return
        parts = None  # the parts already evaluated when a carried run handed them on
        if rewind is not None and self.carries:
            first = [chunks]

            def again():
                return first.pop() if first else opened()
            stands, parts = yield from carried.stream(self, again, path, units, partitions, memory_rows,
                                                      progress, rewind, self.carried_runs)
            if stands:
                return
            if parts is None:
                chunks = opened()
        if parts is None:
            parts = self.per_record_chunks(chunks.frames, units)
        expected = estimate_rows(path)
        parquet = format_of(path) == "parquet"

        def spilled(hashed: bool) -> DiskStore:
            """`hashed`: the file's ids are hashed as its runs are written, and its
            repeated ids, if some hash occurs twice, found at the end of phase 1
            (DiskStore's `later`, `settle`): only the account partitions are spilled, not
            the ids as well, and the id column is not read before the first chunk
            (duplicate_rows did: 11 % of a billion rows' samples). A Parquet file's are
            found from its id column; a CSV or JSON Lines file has no column to read
            alone, so one with a repeated id (rare) is spilled again with its ids."""
            budget = min(memory_rows, SPILL_ROWS)  # partitions of about half of it
            later = None
            if hashed:
                later = (lambda: self.duplicate_rows(path, units, partitions, memory_rows)) if parquet else \
                    (lambda: None)
            return DiskStore(self, -(-expected * 2 // budget) + 1, spill_dir, run_rows=max(1, budget // 4),
                             later=later, expected=expected,
                             recall=self._recall(path, partitions) if parquet else None, columns=columns)
        store = spilled(True) if expected > memory_rows else MemoryStore(self, expected, columns)
        try:
            for part in parts:
                store.add(part)
                if progress is not None:
                    progress(chunks.position(), chunks.size)
            if not store.settle():
                # more records share an id than duplicate_rows finds so: spilled again,
                # the ids with them (nothing was given out yet)
                store.close()
                store = spilled(False)
                chunks = opened()
                for part in self.per_record_chunks(chunks.frames, units):
                    store.add(part)
                    if progress is not None:
                        progress(chunks.position(), chunks.size)
            yield from store.results()
        finally:
            store.close()

    def _recall(self, path, partitions: tuple[tuple[str, str], ...] = ()):
        """(first row, rows) -> (ids, accounts) of those rows of a Parquet file as the
        records were read (ingest.record_ids, record_accounts: the same code), from its
        id and account columns alone: a spilled run's results are shown with them
        (store.DiskStore's `recall`) instead of spilling them twice (about 6.6 bytes a
        row of the spill, Zstandard; docs/engine.md, "The spill's bytes")."""
        from ..recordfiles import parquet_column_rows, parquet_shape, with_partitions
        from .ingest import record_accounts, record_ids
        named = tuple((k, v) for k, v in partitions if k in ("id", "account"))
        shape = parquet_shape(path)  # read once, not once a run

        def recall(first_row: int, rows: int):
            frame = parquet_column_rows(path, ("id", "account"), first_row - 1, rows, shape)
            if named:
                frame = with_partitions(frame, named)
            return (record_ids(frame, self.schema, first_row, self.native_text),
                    record_accounts(frame, self.schema, self.native_text))
        return recall

    # ------------------------------------------------------------ per record, streaming
    @property
    def carries(self) -> bool:
        """Whether a file in time order can be judged chunk by chunk with each account's
        state carried (carried.py): overlap rules and caps only (Rules.carries), and a C
        compiler for the account table (the chunk's canonical order needs it too)."""
        return not self.histories and self.rules.carries and self.rules.native is not None

    @property
    def per_record_only(self) -> bool:
        """Whether the only rule that reads other records is the duplicate-id check (no
        caps, overlaps, duplicate keys, flags, bonuses, counters, rewards, windows): then a
        file's results can be written chunk by chunk once the repeated ids are known."""
        return not self.histories and not self.plan.rules.has_cross_record_rules

    def chunk_results(self, part: Part, duplicates: np.ndarray) -> pl.DataFrame:
        """A chunk's results for a per-record methodology, `duplicates` the sorted row
        numbers of the whole file's records the duplicate-id check rejects
        (duplicate_rows): what finish() gives those rows, without the other chunks."""
        if part.n:
            lo, hi = np.searchsorted(duplicates, (part.rows[0], part.rows[-1] + 1))
            at = duplicates[lo:hi] - part.rows[0]
        else:
            at = np.zeros(0, dtype=np.int64)
        batch = self.batch_of(part, copy=False)  # the part is not read again
        self.rules.apply(batch, duplicate_ids=at)
        return self.results(part, batch)

    def _per_record_once(self, chunks, path, units, partitions, memory_rows, progress):
        """Generator: a per-record methodology's Parquet file read once (evaluate_file's
        `rewind`): each chunk's results are yielded as if no record were a duplicate, its
        ids hashed in the chunk's thread as they were made for evaluation; the hashes that
        occur twice are found at the end (hashes.RepeatedHashes: each chunk's hashes
        sorted in its thread, the ranges of them sorted on both cores at the end). Returns (whether the results yielded stand, the duplicate rows if not).

        Usually no hash occurs twice: then no record is a duplicate (the check compares
        these ids, and equal ids have equal hashes) and the results stand. Otherwise
        duplicate_rows decides as before (the id column read again): the results stand if
        no record is rejected, else they are rewound and the file evaluated again with
        those rows known (None: too many, for the store). Against duplicate_rows first,
        the id column is read and its ids made once instead of twice, and the sort of
        the hashes overlaps the writing."""
        from ..recordfiles import estimate_rows

        hashes = RepeatedHashes(estimate_rows(path), self.hash_rows)
        nothing = np.zeros(0, dtype=np.int64)

        def work(frame, units, first_row):
            part = self.per_record(frame, units, first_row)
            return self.chunk_results(part, nothing), hashes.prepare(part.ids.hash().to_numpy())
        try:
            for results, hashed in self.per_record_chunks(chunks.frames, units, work):
                hashes.add(hashed)
                if progress is not None:
                    progress(chunks.position(), chunks.size)
                yield results
            repeated = hashes.repeated()
        finally:
            hashes.close()
        if repeated.size == 0:
            return True, nothing
        duplicates = self.duplicate_rows(path, units, partitions, memory_rows)
        return duplicates is not None and duplicates.size == 0, duplicates

    def duplicate_rows(self, path, column_units: Optional[Mapping[str, str]] = None,
                       partitions: tuple[tuple[str, str], ...] = (),
                       memory_rows: int = MEMORY_ROWS) -> Optional[np.ndarray]:
        """The row numbers (sorted) of a Parquet file's records that the duplicate-id check
        rejects, before any record is evaluated; None when too many records share an id
        for this way (more than `memory_rows` // 2), which the store then decides.

        The ids are read from the `id` column alone (ingest.record_ids, the same code as
        ingest_frame) and hashed, 8 bytes a row: in memory for up to `hash_rows` rows (HASH_ROWS),
        beyond that in hash files (hashes.RepeatedHashes; one read and sorted at a time,
        whatever the file's size). Only when some hash is repeated (rarely) is the id
        column read again, for the rows of those hashes; only their records are then
        evaluated (their chunks, read again), and find_duplicate_ids judges them as it
        judges a whole file: the same records, the same canonical order."""
        from pathlib import Path

        from ..recordfiles import estimate_rows, parquet_column_chunks, parquet_rows, with_partitions
        from .ingest import record_ids
        from .rules import find_duplicate_ids

        path = Path(path)
        total = estimate_rows(path)
        step = self.chunk_rows
        named_id = tuple((k, v) for k, v in partitions if k == "id")

        def hashed() -> Iterator[np.ndarray]:
            row = 1
            for frame in parquet_column_chunks(path, "id", step):
                if named_id:
                    frame = with_partitions(frame, named_id)
                yield record_ids(frame, self.schema, row, self.native_text).hash().to_numpy()
                row += frame.height

        hashes = RepeatedHashes(total, self.hash_rows)
        try:
            for h in hashed():
                hashes.add(hashes.prepare(h))
            repeated = hashes.repeated()
        finally:
            hashes.close()
        if repeated.size == 0:
            return np.zeros(0, dtype=np.int64)
        found, at = [], 0  # the rows of the repeated hashes: the id column read again
        for h in hashed():
            found.append(np.flatnonzero(np.isin(h, repeated)) + at)
            at += h.size
        candidates = np.concatenate(found)
        if candidates.size > memory_rows // 2:
            return None
        ids, accounts, times, rows, valid = [], [], [], [], []
        for chunk in np.unique(candidates // step):
            start = int(chunk) * step
            frame = parquet_rows(path, start, step)
            if partitions:
                frame = with_partitions(frame, partitions)
            part = self.per_record(frame, column_units, start + 1)
            local = candidates[(candidates >= start) & (candidates < start + step)] - start
            ids.append(part.ids.gather(local))
            accounts.append(part.accounts.gather(local))
            times.append(part.time[local])
            rows.append(part.rows[local])
            valid.append(part.reason[local] != Reasons.INVALID)
        rows_of = np.concatenate(rows)
        found = find_duplicate_ids(pl.concat(ids), pl.concat(accounts), np.concatenate(times), rows_of,
                                   np.concatenate(valid))
        return np.sort(rows_of[found])

    # ------------------------------------------------------------ the Result adapter
    def evaluate(self, raw_records: Iterable[Mapping], column_units: Optional[Mapping[str, str]] = None,
                 first_row: int = 1, state: Optional[dict] = None) -> list[Result]:
        """Like engine.Engine.evaluate (without explanations): dicts in, Results out;
        `state` as evaluate_frame takes it."""
        frame = raw_frame(list(raw_records))
        return to_results(self.evaluate_frame(frame, column_units, first_row, state))


class _Gathered(dict):
    """The batch's columns at some positions, each gathered when the formulas first read it.

    A cap keeps every input (and id, account, activity) for this recomputation, but the
    points formula reads only a few of them: gathering the text columns it never reads
    was most of the recomputation's time.
    """

    def __init__(self, batch: Batch, positions: np.ndarray):
        super().__init__()
        self.batch = batch
        self.positions = positions

    def __missing__(self, name: str):
        positions = self.positions
        column = self.batch.time if name == "time" else self.batch.columns[name]
        if isinstance(column, Cat):
            value = Cat(column.codes[positions], column.labels)
        elif isinstance(column, pl.Series):
            value = column.gather(positions)
        else:
            value = column[positions]
        self[name] = value
        return value


def _pool(threads: int) -> ThreadPoolExecutor:
    return pools.pool("chunk", threads)


def to_results(frame: pl.DataFrame) -> list[Result]:
    out = []
    for r in frame.iter_rows(named=True):
        r["flags"] = tuple(r["flags"])
        r["counters"] = tuple(r["counters"])
        out.append(Result(**{name: r[name] for name in RESULT_COLUMNS}))
    return out


# Result's field types -> the frame's: Optional[int] masses and a missing time are nulls
_DTYPES = {"str": pl.String, "int": pl.Int64, "Optional[int]": pl.Int64,
           "tuple[str, ...]": pl.List(pl.String)}
RESULT_SCHEMA = {name: _DTYPES[field.type] for name in RESULT_COLUMNS
                 for field in dataclasses.fields(Result) if field.name == name}


def results_frame(results: list[Result]) -> pl.DataFrame:
    """engine.Engine's results as the batch engine's frame (to write both the same way)."""
    data = {name: [getattr(r, name) for r in results] for name in RESULT_COLUMNS}
    data["flags"] = [list(flags) for flags in data["flags"]]
    data["counters"] = [list(moved) for moved in data["counters"]]
    return pl.DataFrame(data, schema=RESULT_SCHEMA)
