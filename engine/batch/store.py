"""Where the kept columns of a run wait for the cross-record rules.

`MemoryStore` keeps them in memory. `DiskStore` (for files of more rows than fit a
budget) gathers chunks into runs of up to a quarter of the budget and writes each run
(by one of SPILL_WRITERS threads, while the next chunks are evaluated) into one unlinked
file (`_Segments`), split into P partitions twice: every row by a hash of its account (all
of an account's records meet in one partition, which is all the per-account rules need)
and the valid rows' (id, account, time, row) by a hash of the id (all records of an id
meet, which is all the duplicate-id rule needs; not when the repeated ids are known
already, or hashed as the runs are written and found at the end of phase 1: `later`,
`settle`). Then:
duplicate ids partition by partition; the account rules partition by partition, each
partition's outcomes (engine.outcomes) split by run (by group of runs where the
partitions are many: `_shown_runs`) into a second file; group by group they are read back,
put in row order and shown (engine.presented; only the columns the caller reads, which a
compact run's outcomes are spilled without the others for). Memory holds one group of runs,
or one partition, whatever the size of the file; three files at most are open, whatever P and the
number of runs; a killed run leaves nothing (the files never had a name). The segments
are compressed by Zstandard, their row numbers written as steps and their datetime inputs
as differences from the time, a column of one value left out, the integers (and floats
that are whole numbers, or nearly: a distance in metres) narrowed and text given 32-bit
offsets (`_Segments._encoded`: a kept row 91 -> 38 bytes before compression), the number
columns put in partition order once narrowed; from a Parquet file the outcomes leave the
id and account of valid records out, read again from the file as each run is shown
(`recall`). Measured and argued in docs/engine.md, "Spilling to disk", "The spill's
bytes" and "Random order, eighth round" and "ninth round".
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections import deque
from pathlib import Path
from concurrent.futures import Future, ThreadPoolExecutor, wait as futures_wait
from functools import lru_cache
from typing import Callable, Collection, Iterator, NamedTuple, Optional

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from dsl.types import Kind

from .hashes import RepeatedHashes
from .part import Part
from .rules import find_duplicate_ids
from .values import Cat, Reasons, nulls


def part_frame(engine, part: Part) -> pl.DataFrame:
    columns = {
        "row": part.rows, "id": part.ids, "account": part.accounts, "time": part.time,
        "reason": part.reason, "message": part.messages, "reduction_mg": part.reduction_mg,
        "points": part.points, "credited": part.credited,
    }
    for name, values in part.masses.items():
        columns[f"m:{name}"] = values
    for name, column in part.columns.items():
        if column is part.ids or column is part.accounts:  # written once, as `id`, `account`
            continue
        columns[f"k:{name}"] = column.codes if isinstance(column, Cat) else column
    return pl.DataFrame({k: (v.alias(k) if isinstance(v, pl.Series) else pl.Series(k, v))
                         for k, v in columns.items()})


def frame_part(engine, frame: pl.DataFrame) -> Part:
    def array(name, dtype):
        return frame.get_column(name).to_numpy().astype(dtype, copy=False)
    masses = {c[2:]: array(c, np.int64) for c in frame.columns if c.startswith("m:")}
    columns = {}
    choices = {s.name: s.type.choices for s in engine.methodology.inputs}
    for c in frame.columns:
        if not c.startswith("k:"):
            continue
        name = c[2:]
        series = frame.get_column(c)
        if name in choices and choices[name]:
            columns[name] = Cat(series.to_numpy().astype(np.int32), tuple(choices[name]))
        elif series.dtype == pl.String or isinstance(series.dtype, pl.List):  # text, legs
            columns[name] = series.alias(name)
        else:
            columns[name] = series.to_numpy()
    ids, accounts = frame.get_column("id"), frame.get_column("account")
    for name in engine.keep:  # the kept columns part_frame did not write again
        if f"k:{name}" not in frame.columns and name in ("id", "account"):
            columns[name] = (ids if name == "id" else accounts).alias(name)
    return Part(array("row", np.int64), ids, accounts,
                array("time", np.int64), array("reason", np.int32).copy(), frame.get_column("message"),
                array("reduction_mg", np.int64), array("points", np.int64), masses,
                frame.get_column("credited").to_numpy(), columns)


# the outcome columns shown as the result column of the same name (BatchEngine.presented):
# left out of the spill when the caller shows none of them (DiskStore's `columns`)
_SHOWN_AS_THEMSELVES = ("time", "message", "reduction_mg", "points", "bonus", "baseline_mg", "project_mg",
                        "leakage_mg", "flags", "counters")
# phase 3 shows several runs at once when the partitions are many (DiskStore._shown_runs):
# the outcome segments about this many rows each, at most SHOWN_RUNS runs at once. A
# billion rows: 636 runs x 335 partitions, ~213k segments of ~3k rows, become 318 groups
# of 2 runs, ~107k segments of ~9k (about 0.25 ms a segment: ~27 s of CPU, extrapolated).
# Not 4: a shown row costs about 225 bytes at phase 3's peak (a group shown, the next
# read meanwhile); 50M rides in process with groups of 4 runs peaked at 3,940 MiB, of 2
# at 2,612 MiB, of 1 at 1,937 MiB (docs/engine.md, "seventh round")
SHOWN_SEGMENT_ROWS = 16_384
SHOWN_RUNS = 2


class MemoryStore:
    """The kept columns of every chunk, in memory. The numeric ones are copied as each
    chunk arrives into arrays sized for the file's expected rows (grown by half when it
    holds more), while the next chunks are evaluated: concatenating the parts after the
    last chunk held every kept column twice at the peak and made the rules wait for the
    copy (5M capped rides: about 75 bytes a row, a seventh of the main thread's samples
    in a profile). Text columns are joined as they are (Polars, no copy)."""

    def __init__(self, engine, expected: int = 0, columns: Optional[Collection[str]] = None):
        """`columns`: the result columns shown (BatchEngine.presented; all by default)."""
        self.engine = engine
        self.columns = columns
        self.expected = max(1, expected)
        self.parts: list[Part] = []  # parts that cannot be filled in (a chunk's windows' order)
        self.first: Optional[Part] = None
        self.n = 0
        self.arrays: dict = {}
        self.series: dict = {}

    def add(self, part: Part) -> None:
        if part.ordered is not None or part.duplicate_ids is not None or self.parts:
            if self.first is not None:  # pragma: no cover - files give parts without them
                raise ValueError("a part with its own order after filled parts")
            self.parts.append(part)
            return
        if self.first is None:
            self.first = part
        for key, values in _flat(part):
            if isinstance(values, pl.Series):
                self.series.setdefault(key, []).append(values)
                continue
            into = self.arrays.get(key)
            if into is None or into.size < self.n + values.size:
                grown = np.empty(max(self.expected, self.n + values.size, int(self.n * 1.5)), dtype=values.dtype)
                if into is not None:
                    grown[:self.n] = into[:self.n]
                self.arrays[key] = into = grown
            into[self.n:self.n + values.size] = values
        self.n += part.n

    def _filled(self) -> Part:
        n = self.n
        got = {key: into[:n] for key, into in self.arrays.items()}
        got.update((key, pl.concat(pieces, rechunk=False)) for key, pieces in self.series.items())
        first = self.first
        columns = {name: Cat(got[("col", name)], column.labels) if isinstance(column, Cat) else got[("col", name)]
                   for name, column in first.columns.items()}
        return Part(got[("rows",)], got[("ids",)], got[("accounts",)], got[("time",)], got[("reason",)],
                    got[("messages",)], got[("reduction_mg",)], got[("points",)],
                    {k: got[("mass", k)] for k in first.masses}, got[("credited",)], columns)

    def settle(self) -> bool:
        """DiskStore's end of phase 1: nothing to wait for here."""
        return True

    def results(self) -> Iterator[pl.DataFrame]:
        """The results a chunk at a time, each shown (engine.presented) as it is handed
        out: the whole file's shown results (status, code and message as text, the flags
        as lists) are never held at once, and showing overlaps the writing of the chunk
        before."""
        engine = self.engine
        if self.first is not None:
            outcomes = engine.judged([self._filled()], own=True)
        elif self.parts:
            outcomes = engine.judged(self.parts)
        else:
            return
        self.close()
        step = engine.chunk_rows
        for start in range(0, outcomes.height, step):
            yield engine.presented(outcomes.slice(start, step), self.columns)

    def close(self) -> None:
        self.parts = []
        self.first = None
        self.arrays = {}
        self.series = {}


def _flat(part: Part):
    """(key, column) of every column of a part: arrays, or Polars Series (text)."""
    yield ("rows",), part.rows
    yield ("ids",), part.ids
    yield ("accounts",), part.accounts
    yield ("time",), part.time
    yield ("reason",), part.reason
    yield ("messages",), part.messages
    yield ("reduction_mg",), part.reduction_mg
    yield ("points",), part.points
    for k, values in part.masses.items():
        yield ("mass", k), values
    yield ("credited",), part.credited
    for name, column in part.columns.items():
        yield ("col", name), column.codes if isinstance(column, Cat) else column


# Spilled segments are compressed by Zstandard (level 1), LZ4 before: on 1.5M kept rows of
# Shenzhen rides (110 bytes a row in memory) LZ4 made 61 bytes a row for 0.33 s of CPU to
# write and 0.16 s to read, Zstandard 37 bytes for 0.56 s + 0.25 s, and a small segment
# took longer to read (a decompression context per buffer; 3k rows of 12 columns: 204
# against 107 ns a row, 50k rows 102 against 75; load 5). What decided it, measured end to
# end (50M capped rides, 2026-12-07, load 10-12, with the coded columns of `_Segments`):
# the spill's peak on disk 4.3 GB -> 1.85 GB (86 -> 37 bytes a row, 2.95 times the
# Parquet input) for the same CPU time (0.97-1.03x: the page faults of the larger writes
# cost as much as the compression saved), wall 0.96-1.19x at that load; in process, 5M
# rides spilled, 5-10% more CPU. Uncompressed: 0.54 s to write the 1.5M rows (the copy
# into the stream).
#
# A segment is compressed whole, as one buffer (its IPC message), not buffer by buffer as
# Arrow's IPC compression does: each compression or decompression call makes a Zstandard
# context of its own, about 60 us of CPU and fresh pages (system time) however small the
# buffer, and a segment has a dozen buffers. At 1 billion rows a segment is about 3k rows
# (335 partitions x 667 runs, twice: kept rows and outcomes), and those calls were about
# 1.5 ms a segment, written and read: some 10 minutes of CPU, the part of the run that
# grew with the rows squared (docs/engine.md, "Segments compressed whole").
SPILL_CODEC = ("zstd", 1)  # (codec, level) for pyarrow.Codec; None: not compressed


@lru_cache(maxsize=1)
def _codec() -> Optional[pa.Codec]:
    return pa.Codec(*SPILL_CODEC) if SPILL_CODEC else None


class _Segments:
    """Spilled rows in one file: segments appended one after the other, each the rows of
    one (run, partition) pair as one Arrow IPC record batch message compressed whole
    (SPILL_CODEC, one call a segment), found again by its key through an index held in
    memory (offset, length, size uncompressed, schema, coded columns). The file is
    unlinked from the start (O_TMPFILE where the system has it): a killed run leaves
    nothing on the disk, and each store holds one open file however many partitions and
    runs it has (`ulimit -n` never binds). A segment is read by one pread at its offset
    and decoded against the schema kept in the index: where a file per run, opened and
    its footer parsed for each partition, cost about 2 ms a (partition, run) pair (the
    cost that grew with the rows squared, issue 16), and a stream of its own per segment
    (its schema written and parsed each time) about as much.

    A column that is null in every row of what one `write` is given (the messages of
    valid records, the masses a methodology does not define), or one value in every row
    (`_encoded`), is not written: `get` puts it back. The others are coded before they
    are compressed (`_encoded`, `_decoded`; docs/engine.md, "Random order, eighth round").
    """

    def __init__(self, folder: Path, along: tuple = (), against: Optional[dict] = None):
        """`along`: Int64 columns written as the difference from the row before in their
        segment (its first row as it is), read back as their running sum: the row
        numbers, ascending in every segment, become small steps; `against`: {column:
        base} Int64 columns written as their difference from another column of the same
        rows, read back by adding it (a datetime input minus the record's time: nothing
        for the time's own input, the ride's duration for its end). Both exact for every
        value (64-bit arithmetic wraps, and wraps back)."""
        self.file = tempfile.TemporaryFile(dir=folder, buffering=0)  # pread sees every write
        self.index: dict = {}
        # `write` may be called by several threads at once (DiskStore's spill writers):
        # each gathers, codes and compresses its segments alone, and only the append of
        # their bytes, the index and the schema are taken one thread at a time
        self.lock = threading.Lock()
        self.size = 0
        self.schema: Optional[pa.Schema] = None
        self.along = tuple(along)
        self.against = dict(against or {})

    def write(self, frame: pl.DataFrame, partition: np.ndarray, partitions: int, key,
              ordered: bool = False) -> None:
        """`frame`'s rows split by `partition` (0 .. partitions - 1): segment `key(i)` for
        partition i (none where it has no row). `ordered`: `partition` never goes down
        along the rows (a partition's outcomes, in row order, split by run), so the rows
        are cut where it steps, not sorted and gathered (a copy of every column)."""
        if ordered:
            bounds = np.searchsorted(partition, np.arange(partitions + 1))
        elif partitions > 1:
            order = np.argsort(partition.astype(np.uint16 if partitions <= 1 << 16 else np.int64),
                               kind="stable")  # 16-bit keys: a radix sort
            bounds = np.searchsorted(partition[order], np.arange(partitions + 1))
        else:
            bounds = np.array([0, frame.height])
        with self.lock:
            if self.schema is None:  # dictionaries as their values: a segment is read without them
                empty = frame.head(0).to_arrow(compat_level=pl.CompatLevel.oldest())
                self.schema = pa.schema([f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f
                                         for f in empty.schema])
        # the columns null in every row are left out before the rows are gathered (`get`
        # puts them back), and the rest made one chunk first: Polars gathers a column of
        # several chunks (a run's parts) about three times slower, and an all-null text
        # column as slowly as a full one (1.5M kept rows: 330 -> 110 ms)
        nulls = frame.null_count().row(0)
        kept = [name for name, count in zip(frame.columns, nulls) if count < frame.height]
        if not kept:
            return
        # offsets, not views: a slice of a string view column would write every data buffer
        chosen = frame.select(kept).rechunk()
        later = frozenset()
        if partitions > 1 and not ordered:  # one partition, or ordered: the rows as they are
            # the number columns without nulls put in partition order after they are coded
            # (`_encoded`: NumPy takes of their narrow codes, none for a constant), the
            # others by Polars here: Polars' gather of a run's 10 number columns cost about
            # 80 ms of CPU a million kept rows, its text columns' 30
            later = frozenset(name for name, count in zip(frame.columns, nulls) if name in kept and count == 0
                              and (chosen.schema[name].is_integer() or chosen.schema[name].is_float()))
            gathered = chosen.select([name for name in kept if name not in later])[order]
            chosen = pl.DataFrame([chosen.get_column(name) if name in later else gathered.get_column(name)
                                   for name in kept])
        table = chosen.to_arrow(compat_level=pl.CompatLevel.oldest())
        table = table.cast(pa.schema([self.schema.field(name) for name in kept]))
        table, coding, firsts = self._encoded(table.combine_chunks(), bounds, order if later else None, later)
        whole = table.to_batches()
        if not whole or whole[0].num_rows == 0:
            return
        batch = whole[0]
        codec = _codec()
        pieces, placed, at = [], [], 0
        segment = 0
        for i in range(partitions):
            rows = int(bounds[i + 1] - bounds[i])
            if rows:
                # one IPC message (no schema: the index keeps it), compressed as one buffer
                message = batch.slice(int(bounds[i]), rows).serialize()
                # bytes: a compressed ResizableBuffer exports its capacity, not its size
                stored = codec.compress(message, asbytes=True) if codec is not None else message.to_pybytes()
                pieces.append(stored)
                coded = (coding, firsts[segment]) if coding is not None else ()
                placed.append((key(i), at, len(stored), message.size if codec is not None else 0, coded))
                at += len(stored)
                segment += 1
        data = b"".join(pieces)
        with self.lock:  # appended at the end, whichever thread's segments come first
            view, done = memoryview(data), 0
            while done < len(view):  # an unbuffered write may write part of it
                done += self.file.write(view[done:])
            for k, offset, length, raw, coded in placed:
                self.index[k] = (self.size + offset, length, raw, batch.schema, coded)
            self.size += at

    def get(self, key) -> Optional[pa.RecordBatch]:
        found = self.index.get(key)
        if found is None:
            return None
        offset, length, raw, schema, coded = found
        data = pa.py_buffer(os.pread(self.file.fileno(), length, offset))
        if raw:  # compressed whole (`write`)
            data = _codec().decompress(data, decompressed_size=raw, asbytes=False)
        batch = pa.ipc.read_record_batch(data, schema)
        if coded:
            batch = _decoded(batch, coded)
        if batch.num_columns < len(self.schema):
            batch = pa.RecordBatch.from_arrays(
                [batch.column(f.name) if f.name in batch.schema.names else pa.nulls(batch.num_rows, f.type)
                 for f in self.schema], schema=self.schema)
        return batch

    def _encoded(self, table: pa.Table, bounds: np.ndarray, order: Optional[np.ndarray] = None,
                 later: Collection[str] = ()) -> tuple[pa.Table, Optional["_Coding"], list]:
        """`table` (its rows in segment order, segment i from bounds[i] to bounds[i + 1])
        as written, how it was coded (`_Coding`, None when nothing was) and, for each
        segment, the first value of each `along` column in it (kept in the index).
        `later`: number columns without nulls still in the order of the rows as given,
        put in segment order (`order`: the given row of each place) as they are coded:
        a take of their narrow codes (none for a constant) instead of their 8 bytes.

        - `along`: an Int64 column without nulls as the step from the row before in its
          segment, 0 for the segment's first row (its value kept in the index);
        - `against`: an Int64 column without nulls (and its base without) as its
          difference from the base;
        - then every column: one value in every row (the reason and `credited` of the
          credited records, an input the file does not have, a datetime input that is the
          time itself) is not written (`_Coding.constants`); an integer column without
          nulls as its difference from its least value, divided by their greatest common
          divisor (an Int64's: times and durations in whole minutes or seconds), in the
          narrowest unsigned type that holds them (`_Coding.narrowed`); a text column with
          32-bit offsets (Polars hands 64-bit ones over) when its text fits.
        Exact for every value: 64-bit differences wrap, and wrap back."""
        n = table.num_rows
        later = frozenset(later) if order is not None else frozenset()
        if n == 0:
            return table, None, []
        columns = dict(zip(table.column_names, (c.chunk(0) if c.num_chunks == 1 else c.combine_chunks()
                                                for c in table.columns)))
        placed = set(table.column_names) - later  # the columns in segment order already

        def plain(name):
            column = columns.get(name)
            return column is not None and column.type == pa.int64() and column.null_count == 0
        along = tuple(name for name in self.along if plain(name))
        against = tuple((name, base) for name, base in self.against.items() if plain(name) and plain(base))
        starts = bounds[:-1][bounds[:-1] < bounds[1:]]  # each (non-empty) segment's first row
        firsts = []
        for name in along:
            values = columns[name].to_numpy()
            if name not in placed:
                values = values[order]
                placed.add(name)
            steps = np.empty_like(values)
            steps[0] = 0
            np.subtract(values[1:], values[:-1], out=steps[1:])
            steps[starts] = 0
            firsts.append(values[starts])
            columns[name] = steps
        for name, base in against:  # both in the same order (`later` or not: no nulls either way)
            columns[name] = columns[name].to_numpy() - columns[base].to_numpy()
        constants, narrowed, texts, ulps = {}, {}, [], []

        def narrow(name, values, kind, pending):
            """`values` (integers, in the table's order) as their difference from the
            least divided by their common divisor, in the narrowest unsigned type, put in
            segment order if `pending`; one value: a constant."""
            values = values.astype(np.int64, copy=False)
            low, high = int(values.min()), int(values.max())
            if low == high:
                constants[name] = (low, kind)
                placed.add(name)
                return
            spread = (values - np.int64(low)).view(np.uint64)  # wraps: the true difference
            step = 1
            if kind.bit_width == 64 and high - low > 0xFFFF:
                step = int(np.gcd.reduce(spread))
                if step > 1:
                    spread = spread // np.uint64(step)
            top = (high - low) // step
            kept = spread.astype(next(t for t in (np.uint8, np.uint16, np.uint32, np.uint64)
                                      if top <= np.iinfo(t).max))
            columns[name] = kept[order] if pending else kept
            placed.add(name)
            narrowed[name] = (low, step, kind)
        for name, column in list(columns.items()):
            if isinstance(column, np.ndarray):
                values, kind = column, table.schema.field(name).type
            elif column.null_count:
                if column.type == pa.large_string() and _fits_32(column):
                    columns[name] = column.cast(pa.string())
                    texts.append(name)
                continue
            else:
                values, kind = None, column.type
            pending = name not in placed
            if values is None and pa.types.is_floating(kind) and kind.bit_width in (32, 64):
                floats = column.to_numpy()
                bits = floats.view(np.int64 if kind.bit_width == 64 else np.int32)
                if bits.min() == bits.max():
                    constants[name] = (column[0].as_py(), kind)
                    continue
                # narrowed as integers below, given back as floats: whole numbers, or
                # nearly (their bits' distance from the whole number's kept beside)
                values, off = _whole(floats)
                if values is None:
                    continue  # written as it is
                if off is not None:
                    extra = f"{name}\x00ulps"
                    narrow(extra, off, pa.int64(), pending)
                    ulps.append((name, extra))
            if values is not None or pa.types.is_integer(kind) and kind.bit_width <= 64 and not (
                    pa.types.is_unsigned_integer(kind) and kind.bit_width == 64):
                narrow(name, column.to_numpy() if values is None else values, kind, pending)
            elif pa.types.is_boolean(kind):
                trues = column.true_count
                if trues in (0, n):
                    constants[name] = (trues == n, kind)
            elif pa.types.is_large_string(kind) or pa.types.is_string(kind):
                first = column[0]
                if column.slice(0, 16).equals(pa.repeat(first, min(n, 16))) and \
                        pc.all(pc.equal(column, first)).as_py():
                    constants[name] = (first.as_py(), kind)
                elif kind == pa.large_string() and _fits_32(column):
                    columns[name] = column.cast(pa.string())
                    texts.append(name)
        for name in set(columns) - placed - set(constants):  # not coded: put in order as they are
            column = columns[name]
            columns[name] = (column if isinstance(column, np.ndarray) else column.to_numpy())[order]
        if len(constants) == len(columns):  # a segment holds one column at least (its rows)
            name = next(iter(constants))
            value, kind = constants.pop(name)
            columns[name] = pa.repeat(pa.scalar(value, kind), n)
        if not (along or against or constants or narrowed or texts):
            if not later:
                return table, None, []
            return pa.table([pa.array(columns[f.name], type=f.type) if f.name in later else columns[f.name]
                             for f in table.schema], schema=table.schema), None, []
        arrays = [pa.array(c) if isinstance(c, np.ndarray) else c for name, c in columns.items()
                  if name not in constants]
        names = [name for name in columns if name not in constants]
        coding = _Coding(table.schema, along, against, constants, narrowed, tuple(texts), tuple(ulps))
        segments = [tuple(int(f[i]) for f in firsts) for i in range(starts.size)]
        return pa.table(arrays, names=names), coding, segments

    def frame(self, keys) -> Optional[pl.DataFrame]:
        """The segments of `keys` as one frame; None when they hold no row."""
        pieces = [b for b in (self.get(k) for k in keys) if b is not None]
        if not pieces:
            return None
        return pl.from_arrow(pa.Table.from_batches(pieces, schema=self.schema))

    def close(self) -> None:
        self.file.close()
        self.index = {}


class _Coding(NamedTuple):
    """How one `_Segments.write` coded its columns (`_Segments._encoded`), shared by its
    segments; each segment's index entry holds it with the first value of each `along`
    column in that segment."""
    schema: pa.Schema      # the columns as given, which `_decoded` gives back
    along: tuple           # columns written as steps along their segment
    against: tuple         # (column, base): columns written as their difference from base
    constants: dict        # column: (value, type), one value in every row: not written
    narrowed: dict         # column: (least value, divisor, type): (value - least) / divisor, unsigned
    texts: tuple           # text columns written with 32-bit offsets
    ulps: tuple = ()       # (float column, stored column): its bits less its narrowed whole number's


def _whole(floats: np.ndarray) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """A float column (no nulls) as int64, when its values are whole numbers (a distance in
    metres: 8 bytes a row that Zstandard compresses and decompresses for nothing, 2 once
    narrowed) or, for 64-bit floats, nearly: (the nearest whole numbers, None) when each
    gives back its value bit for bit, (the nearest whole numbers, each value's bits less
    its whole number's bits) when those differences are small (16047.999999999998, a
    distance of 16.048 km in metres: 1 bit pattern away from 16048.0) and the whole
    numbers fit 32 bits; (None, None) otherwise (fractions, NaN, infinities: written as
    they are). Exact either way: int64 differences wrap, and wrap back (`_decoded`).
    The first values are tried before the whole column."""
    kind = np.int64 if floats.dtype.itemsize == 8 else np.int32
    for values in (floats[:16], floats):
        with np.errstate(invalid="ignore"):
            ints = np.rint(values).astype(np.int64)
        off = values.view(kind).astype(np.int64) - ints.astype(floats.dtype).view(kind)
        if not off.any():
            continue
        if kind is np.int32 or int(off.max()) - int(off.min()) > 0xFFFF or \
                int(ints.max()) - int(ints.min()) > 0xFFFFFFFF:
            return None, None
    return ints, (off if off.any() else None)


def _fits_32(column: pa.Array) -> bool:
    """Whether a 64-bit offset text column's text fits 32-bit offsets."""
    data = column.buffers()[2]  # the whole buffer, a slice's or not: never too small
    return data is None or data.size < 2**31 - 1


def _decoded(batch: pa.RecordBatch, coded: tuple) -> pa.RecordBatch:
    """A segment's columns as they were given to `_Segments.write` (`coded`: the write's
    `_Coding` and the segment's first value of each `along` column)."""
    coding, firsts = coded
    n = batch.num_rows
    arrays = dict(zip(batch.schema.names, batch.columns))
    values = {}  # int64, as given to the narrowing; each array its own (added to in place)

    def numbers(name):
        if name in values:
            return values[name]
        if name in coding.constants:
            return np.full(n, coding.constants[name][0], dtype=np.int64)
        return arrays[name].to_numpy().astype(np.int64)
    for name, (low, step, kind) in coding.narrowed.items():
        spread = arrays[name].to_numpy().astype(np.uint64)
        if step != 1:
            spread *= np.uint64(step)
        spread = spread.view(np.int64)
        spread += np.int64(low)  # wraps back
        values[name] = spread
    for name, extra in coding.ulps:  # the whole numbers' bits moved back to the values'
        whole = values[name].astype(coding.schema.field(name).type.to_pandas_dtype())
        values[name] = (whole.view(np.int64) + numbers(extra)).view(whole.dtype)
        values.pop(extra, None)
    for name, first in zip(coding.along, firsts):
        steps = numbers(name)
        np.cumsum(steps, out=steps)
        steps += np.int64(first)
        values[name] = steps
    for name, base in coding.against:  # the bases are never coded so themselves
        got = numbers(name)
        got += numbers(base)
        values[name] = got
    for name, (value, kind) in coding.constants.items():
        if name not in values:
            arrays[name] = pa.repeat(pa.scalar(value, kind), n)
    for name, got in values.items():
        kind = coding.schema.field(name).type
        arrays[name] = pa.array(got if kind == pa.int64() else got.astype(kind.to_pandas_dtype()), type=kind)
    for name in coding.texts:
        arrays[name] = arrays[name].cast(pa.large_string())
    return pa.RecordBatch.from_arrays([arrays[f.name] for f in coding.schema], schema=coding.schema)


def _stale_spills(parent: Path) -> None:
    """Removes the spill folders of runs that were killed (`tanpu-batch-PID-*`, PID gone):
    a SIGKILL leaves no time to clean up, so the next run does. (DiskStore's own files
    are unlinked from the start; what is left is folders of older versions and of
    hashes.RepeatedHashes.)"""
    for folder in parent.glob("tanpu-batch-*-*"):
        pid = folder.name.split("-")[2]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still running
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:  # another user's, running
            continue


# threads writing spilled runs at once (DiskStore): each holds a run (about a quarter of
# the spill budget's rows) while it is written
SPILL_WRITERS = 2
# ids hashed in memory at most by a DiskStore (8 bytes each, 512 MiB), beside the runs
# being written; beyond, in files (hashes.RepeatedHashes)
HASHED_ROWS = 64 << 20


class DiskStore:
    def __init__(self, engine, partitions: int, folder: Optional[Path] = None, run_rows: int = 1_000_000,
                 duplicates: Optional[np.ndarray] = None, recall=None,
                 columns: Optional[Collection[str]] = None, shown_runs: Optional[int] = None,
                 later: Optional[Callable[[], Optional[np.ndarray]]] = None, expected: int = 0):
        """`run_rows`: rows gathered in memory before they are spilled as one run;
        `duplicates`: the row numbers the duplicate-id check rejects, when already known
        (BatchEngine.duplicate_rows, from a Parquet file's ids): then the ids are not
        spilled at all. `later()`: those row numbers, asked for at the end of phase 1
        when some hash of an id occurs twice (None: too many to find so); with it the ids
        are not spilled either, but hashed as each run is written (`expected`: about how
        many rows the file has) and, usually, found all different (`settle`).
        `folder`: where the (unlinked) spill files are made, the system's
        temporary folder by default. `recall(first_row, rows)`: (ids, accounts) of those
        rows as the records were read (a Parquet input's id and account columns read
        again, BatchEngine.evaluate_file): then the outcomes keep the id and account of
        the invalid records only (the slow reading's, which may differ), and the others
        are recalled as each run is shown. `columns`: the result columns shown (all by
        default): the outcome columns none of them shows are not spilled (`_shed`).
        `shown_runs`: how many runs are shown at once (`_shown_runs` by default)."""
        self.engine = engine
        self.columns = columns
        self.unshown = tuple(name for name in _SHOWN_AS_THEMSELVES if name not in columns) \
            if columns is not None else ()
        self.shown_runs = shown_runs
        self.duplicates = duplicates
        self.recall = recall
        # the ids hashed by the spill writers (`later`), in memory up to HASHED_ROWS: the
        # hashes wait beside the runs being written, where duplicate_rows's, made before
        # the first chunk, did not
        self.later = later if duplicates is None else None
        self.hashes = RepeatedHashes(expected, HASHED_ROWS) if self.later is not None else None
        self._hashes_lock = threading.Lock()
        # the duplicates found by `settle` after the early outcomes were written without
        # them: those rows' early outcomes are marked as their run is shown (`_marked`)
        self.late = np.zeros(0, dtype=np.int64)
        self.partitions = max(1, partitions)
        if folder is None:
            folder = Path(tempfile.gettempdir())
            _stale_spills(folder)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.run_rows = max(1, run_rows)
        # the row numbers as steps along each segment, a kept datetime input as its
        # difference from the record's time (`_Segments`): 3M capped rides, a 1M budget,
        # LZ4: kept rows 42.2 -> 33.8 bytes a file row, outcomes 42.0 -> 39.5 (Zstandard:
        # 23.0 -> 16.6 and 18.7 -> 18.5)
        datetimes = {f"k:{name}": "time" for name in engine.keep if engine.kinds.get(name) == Kind.DATETIME}
        self.accounts = _Segments(self.folder, along=("row",), against=datetimes)
        self.ids = _Segments(self.folder, along=("row",))
        self.outcomes = _Segments(self.folder, along=("row",))
        # with the repeated ids known and no counters, a record the formulas did not
        # credit is touched by no other rule but the duplicate-id check (rules.py: the
        # account rules judge the credited records only): its outcome is made as its run
        # is spilled, and only the credited records go to the account partitions (the
        # Shenzhen rides: a third of the rows, written and read once instead of twice)
        self.early = (duplicates is not None or self.later is not None) and not engine.rules.counting.active
        self.pending: list[pl.DataFrame] = []
        self.pending_rows = 0
        self.run_starts: list[int] = []  # the first row of each run (rows come in order)
        # the runs are written by SPILL_WRITERS threads while the next chunks are evaluated
        # (Polars, Arrow, Zstandard and the writes release the GIL), SPILL_WRITERS runs in
        # flight at most: with one writer the chunk threads waited for it, and phase 1 kept
        # 1.3 of the 2 cores busy (docs/engine.md, "Random order, seventh round")
        self._writer = ThreadPoolExecutor(max_workers=SPILL_WRITERS, thread_name_prefix="tanpu-spill")
        self._written: deque[Future] = deque()

    def add(self, part: Part) -> None:
        if part.n == 0:
            return
        self.pending.append(part_frame(self.engine, part))  # the part's arrays are let go
        self.pending_rows += part.n
        if self.pending_rows >= self.run_rows:
            self._spill()

    def _spill(self) -> None:
        if not self.pending:
            return
        frame = pl.concat(self.pending, rechunk=False)
        self.pending, self.pending_rows = [], 0
        run = len(self.run_starts)
        self.run_starts.append(int(frame.get_column("row")[0]))
        while len(self._written) >= SPILL_WRITERS:
            self._written.popleft().result()
        self._written.append(self._writer.submit(self._write_run, frame, run))

    def _wait_written(self) -> None:
        """Every run spilled so far written (the first error raised)."""
        while self._written:
            self._written.popleft().result()

    def _write_run(self, frame: pl.DataFrame, run: int) -> None:
        p = self.partitions
        if self.hashes is not None:  # the ids the duplicate-id check compares: the valid records'
            # (find_duplicate_ids judges those alone; a feed's invalid rows often share a
            # missing id, which would make every CSV file's `later` spill it again)
            ids = frame.get_column("id")
            valid = frame.get_column("reason") != Reasons.INVALID
            hashed = self.hashes.prepare((ids if valid.all() else ids.filter(valid)).hash().to_numpy())
            with self._hashes_lock:
                self.hashes.add(hashed)
        if self.early:
            credited = frame.get_column("reason") == Reasons.CREDITED
            if not credited.all():
                self._early_outcomes(frame.filter(~credited), run)
                frame = frame.filter(credited)
        self.accounts.write(frame, (frame.get_column("account").hash() % p).cast(pl.Int64).to_numpy(),
                            p, lambda i: (i, run))
        if self.duplicates is None and self.later is None:  # else known, or found by `settle`
            ids = frame.filter(pl.col("reason") != Reasons.INVALID).select("id", "account", "time", "row")
            self.ids.write(ids, (ids.get_column("id").hash() % p).cast(pl.Int64).to_numpy(),
                           p, lambda i: (i, run))

    def _early_outcomes(self, frame: pl.DataFrame, run: int) -> None:
        """The outcomes of a run's records that the formulas did not credit, as the
        account partitions would give them (the duplicate-id check alone), written as
        the run's segment of partition P (one past the account partitions)."""
        engine = self.engine
        part = frame_part(engine, frame)
        batch = engine.batch_of(part)
        # not known yet (`later`): none, and those found by `settle` are marked as shown
        known = self.duplicates if self.duplicates is not None else self.late
        at = np.flatnonzero(np.isin(part.rows, known)) if known.size else np.zeros(0, dtype=np.int64)
        engine.rules.apply(batch, duplicate_ids=at)
        got = self._shed(engine.outcomes(part, batch))
        self.outcomes.write(got, np.zeros(got.height, dtype=np.int64), 1, lambda _: (run, self.partitions))

    def _shed(self, outcomes: pl.DataFrame) -> pl.DataFrame:
        """Outcomes as spilled: without the columns no result column shown needs
        (`columns`); with `recall`, the id and account of the invalid records only (null
        elsewhere: a column null in every row of a write is not written)."""
        if self.unshown:
            outcomes = outcomes.drop(self.unshown, strict=False)
        if self.recall is None:
            return outcomes
        reason = outcomes.get_column("reason").to_numpy()
        if not (reason == Reasons.INVALID).any():  # an account partition's, with `early`: all credited
            return outcomes.with_columns(nulls(outcomes.height, outcomes.schema[name]).alias(name)
                                         for name in ("id", "account"))
        invalid = pl.col("reason") == Reasons.INVALID
        return outcomes.with_columns(pl.when(invalid).then(pl.col(name)).alias(name) for name in ("id", "account"))

    def settle(self) -> bool:
        """The end of phase 1: every run written, and, with `later`, the repeated ids
        found. No hash of an id twice (the usual case): no record is a duplicate, and the
        early outcomes stand. Some: `later()` gives the rows the duplicate-id check
        rejects, marked in the account partitions as before and in the early outcomes as
        their runs are shown (`_marked`). False when `later()` cannot tell (too many
        records share an id): then the ids were not spilled, and the file must be spilled
        again with them (BatchEngine.evaluate_file does)."""
        self._spill()
        self._wait_written()
        if self.hashes is None:
            return True
        hashes, self.hashes = self.hashes, None
        if hashes.repeated().size == 0:
            self.duplicates = np.zeros(0, dtype=np.int64)
            return True
        found = self.later()
        if found is None:
            return False
        self.duplicates = self.late = found
        return True

    def _marked(self, merged: pl.DataFrame) -> pl.DataFrame:
        """A run's outcomes (in row order) with the rows `settle` found duplicates marked
        as Rules.mark_duplicate_ids marks them (reason, reduction and points; the early
        outcomes were made without them; the account partitions' have them already, and
        marking again changes nothing)."""
        late = self.late
        if late.size == 0 or merged.height == 0:
            return merged
        rows = merged.get_column("row").to_numpy()
        lo, hi = np.searchsorted(late, (rows[0], rows[-1] + 1))
        at = np.flatnonzero(np.isin(rows, late[lo:hi])) if hi > lo else ()
        if len(at) == 0:
            return merged
        marked = []
        for name, value in self.engine.rules.duplicate_marks.items():
            if name not in merged.columns:  # not shown (DiskStore's `columns`)
                continue
            column = merged.get_column(name)
            values = column.to_numpy().copy()
            values[at] = value
            marked.append(pl.Series(name, values, dtype=column.dtype))
        return merged.with_columns(marked)

    def _shown_runs(self) -> int:
        """How many runs phase 3 shows at once (their outcomes split so by phase 2): as
        many as make the outcomes' segments about SHOWN_SEGMENT_ROWS rows each (a segment
        costs about 0.25 ms written and read back beyond its rows, and runs x partitions
        grows with the rows squared), at most SHOWN_RUNS (memory: each run shown at once
        holds about 225 bytes a row at the peak)."""
        if self.shown_runs is not None:
            return max(1, self.shown_runs)
        return max(1, min(SHOWN_RUNS, -(-self.partitions * SHOWN_SEGMENT_ROWS // self.run_rows)))

    def _recalled(self, merged: pl.DataFrame, first: int) -> pl.DataFrame:
        """Shown runs' outcomes (in row order, every row from `first` on) with the id and
        account `_shed` left out given back by `recall`."""
        if self.recall is None or merged.height == 0:
            return merged
        ids, accounts = self.recall(first, merged.height)
        replaced = []
        for name, again in (("id", ids), ("account", accounts)):
            spilled = merged.get_column(name)
            replaced.append(again.alias(name) if spilled.null_count() == merged.height else
                            again.zip_with(spilled.is_null(), spilled).alias(name))
        return merged.with_columns(replaced)

    def results(self) -> Iterator[pl.DataFrame]:
        if not self.settle():
            raise RuntimeError("the repeated ids of a spilled file could not be found (DiskStore.settle)")
        engine = self.engine
        runs = len(self.run_starts)
        # 1. duplicate ids, partition by id (unless known)
        duplicates = [] if self.duplicates is None else [self.duplicates]
        for i in range(self.partitions if self.duplicates is None else 0):
            frame = self.ids.frame([(i, r) for r in range(runs)])
            if frame is None or frame.height == 0:
                continue
            rows = frame.get_column("row").to_numpy()
            found = find_duplicate_ids(frame.get_column("id"), frame.get_column("account"),
                                       frame.get_column("time").to_numpy(), rows,
                                       np.ones(frame.height, dtype=bool))
            duplicates.append(rows[found])
        duplicate_rows = np.sort(np.concatenate(duplicates)) if duplicates else np.zeros(0, np.int64)
        self.ids.close()  # the disk of each step is given back before the next writes
        # 2. the account rules, partition by account; each partition's outcomes
        # (engine.outcomes) split by the runs shown together (`_shown_runs`: a group of
        # runs, one of their segments a partition); the next partition is read meanwhile
        together = self._shown_runs()
        starts = np.asarray(self.run_starts, dtype=np.int64)[::together]  # each group's first row
        groups = starts.size
        outcomes = self.outcomes
        # the outcomes of a partition are written by a thread of their own while the next
        # partition is judged, and a run's results are merged and shown by the reading
        # thread while the one before is handed out: each step waited for the one before
        # on one core while the other was idle (one run or partition ahead at most)
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tanpu-outcomes")
        written: Optional[Future] = None
        showing: Optional[Future] = None
        try:
            def read(i):
                return self.accounts.frame([(i, r) for r in range(runs)])
            reading = self._writer.submit(read, 0)
            for i in range(self.partitions):
                frame = reading.result()
                if i + 1 < self.partitions:
                    reading = self._writer.submit(read, i + 1)
                if frame is None:
                    frame = part_frame(engine, _empty_part(engine))
                part = frame_part(engine, frame)
                batch = engine.batch_of(part)
                at = np.flatnonzero(np.isin(part.rows, duplicate_rows)) if duplicate_rows.size else \
                    np.zeros(0, dtype=np.int64)
                engine.rules.apply(batch, duplicate_ids=at)
                got = self._shed(engine.outcomes(part, batch))
                group = np.searchsorted(starts, got.get_column("row").to_numpy(), side="right") - 1
                # in row order (the runs' segments read one after the other, each ascending):
                # cut, not sorted and gathered; checked, as it costs one pass
                ordered = bool(np.all(group[1:] >= group[:-1]))
                if written is not None:
                    written.result()
                written = writer.submit(outcomes.write, got, group, groups, lambda k, i=i: (k, i), ordered)
                del frame, part, batch, got
            if written is not None:
                written.result()
            self.accounts.close()

            # 3. merged back in row order, a group of runs at a time, shown as results
            # (the early outcomes are a segment a run: partition P of each run)
            def shown(g):
                ran = range(g * together, min(runs, (g + 1) * together))
                pieces = [outcomes.get(k) for k in [(g, i) for i in range(self.partitions)] +
                          [(r, self.partitions) for r in ran]]
                first = self.run_starts[ran[0]]
                merged = _in_row_order([p for p in pieces if p is not None and p.num_rows], first, outcomes.schema)
                if merged is None:
                    return None
                return engine.presented(self._recalled(self._marked(merged), first), self.columns)
            step = engine.chunk_rows
            showing = self._writer.submit(shown, 0) if groups else None
            for k in range(groups):
                merged = showing.result()
                if k + 1 < groups:
                    showing = self._writer.submit(shown, k + 1)
                if merged is None:
                    continue
                for start in range(0, merged.height, step):
                    yield merged.slice(start, step)
                del merged
        finally:
            writer.shutdown(wait=True)
            if showing is not None:  # a run being read when the results were let go
                showing.cancel()
                futures_wait([showing])
            outcomes.close()

    def close(self) -> None:
        self.pending = []
        for future in self._written:
            future.cancel()
        self._written.clear()
        self._writer.shutdown(wait=True)
        if self.hashes is not None:
            self.hashes.close()
            self.hashes = None
        self.accounts.close()
        self.ids.close()
        self.outcomes.close()


def _in_row_order(pieces: list, first: int, schema: pa.Schema) -> Optional[pl.DataFrame]:
    """Outcomes of every row from `first` on, each once, spread over `pieces` (the record
    batches of a shown group's segments, as `_Segments.get` gives them; `schema`: their
    columns, in the frame's order), as one frame in row order; None without a row. Each row's place is its number less `first`, so each
    column is put in order by one scatter of each piece into it: the segments are not
    concatenated first (Polars' copy of every column) and then gathered (a second): a
    number column without nulls straight into a NumPy array, a column null in every row
    as one null repeated, the rows as the range they are; the others (text, nulls in some
    rows) concatenated and gathered. Refuses a row missing or twice (never, unless broken)."""
    if not pieces:
        return None
    n = sum(p.num_rows for p in pieces)
    order = np.full(n, -1, dtype=np.int64)  # the piece row each place takes, pieces one after the other
    places, done = [], 0
    for piece in pieces:
        at = piece.column("row").to_numpy() - first
        if at.size and (at.min() < 0 or at.max() >= n):
            raise ValueError("a spilled run's outcomes do not cover its rows")
        order[at] = np.arange(done, done + at.size, dtype=np.int64)
        places.append(at)
        done += at.size
    if n and order.min() < 0:  # a row twice, another missing
        raise ValueError("a spilled run's outcomes do not cover its rows")
    dtypes = pl.from_arrow(pa.Table.from_batches([], schema=schema)).schema
    columns = []
    for f in schema:
        name, dtype = f.name, dtypes[f.name]
        arrays = [p.column(name) for p in pieces]
        nulls = sum(a.null_count for a in arrays)
        if name == "row" and f.type == pa.int64():
            columns.append(pl.Series(name, np.arange(first, first + n, dtype=np.int64)))
        elif nulls == n:
            columns.append(pl.Series(name, [None], dtype=dtype).new_from_index(0, n))
        elif nulls == 0 and (pa.types.is_integer(f.type) or pa.types.is_floating(f.type)):
            into = np.empty(n, dtype=f.type.to_pandas_dtype())
            for at, values in zip(places, arrays):
                into[at] = values.to_numpy()
            got = pl.Series(name, into)
            columns.append(got if got.dtype == dtype else got.cast(dtype))
        else:
            whole = pl.from_arrow(pa.chunked_array(arrays, type=f.type))
            columns.append(whole.gather(order).alias(name))
    return pl.DataFrame(columns)


def _empty_part(engine) -> Part:
    return engine.per_record(pl.DataFrame(), None, 1)
