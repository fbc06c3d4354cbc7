"""Where the kept columns of a run wait for the cross-record rules.

`MemoryStore` keeps them in memory. `DiskStore` (for files of more rows than fit a
budget) gathers chunks into runs of up to a quarter of the budget and writes each run, as
Arrow IPC in a temporary folder, split into P partitions twice: every row by a
hash of its account (all of an account's records meet in one partition, which is all the
per-account rules need) and the valid rows' (id, account, time, row) by a hash of the id
(all records of an id meet, which is all the duplicate-id rule needs). Then: duplicate
ids partition by partition; the account rules partition by partition, each partition's
results split by run; the results are merged back in row order run by run. Memory holds
one run, or one partition, whatever the size of the file; one file is open at a time
(`_Runs`); the files of each step are removed when the next has what it needs (peak disk:
the kept columns of every row, then the results), the folder at the end, and a killed
run's folder by the next run.
Pieces written: 3 × runs × P, where one per chunk and partition made 4 × chunks × P
(about 2 ms each: the cost that grew with the rows squared, issue 16). Not compressed:
Zstandard made a run a quarter of its size but cost 3 s of CPU more at 5M rows, LZ4
more still (measured, docs/engine.md).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import polars as pl
import pyarrow as pa

from .part import Part
from .rules import find_duplicate_ids
from .values import Cat, Reasons


def part_frame(engine, part: Part) -> pl.DataFrame:
    columns = {
        "row": part.rows, "id": part.ids, "account": part.accounts, "time": part.time,
        "reason": part.reason, "message": part.messages, "reduction_mg": part.reduction_mg,
        "points": part.points, "credited": part.credited,
    }
    for name, values in part.masses.items():
        columns[f"m:{name}"] = values
    for name, column in part.columns.items():
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
    return Part(array("row", np.int64), frame.get_column("id"), frame.get_column("account"),
                array("time", np.int64), array("reason", np.int32).copy(), frame.get_column("message"),
                array("reduction_mg", np.int64), array("points", np.int64), masses,
                frame.get_column("credited").to_numpy(), columns)


class MemoryStore:
    def __init__(self, engine):
        self.engine = engine
        self.parts: list[Part] = []

    def add(self, part: Part) -> None:
        self.parts.append(part)

    def results(self) -> Iterator[pl.DataFrame]:
        if not self.parts:
            return
        frame = self.engine.finish(self.parts)
        self.parts = []
        step = self.engine.chunk_rows
        for start in range(0, frame.height, step):
            yield frame.slice(start, step)

    def close(self) -> None:
        self.parts = []


class _Runs:
    """Spilled rows as runs: each run (the rows of several chunks, up to the store's run
    size) is one Arrow IPC file holding one record batch per partition, the partition's
    rows of that run (none, possibly). A partition is then read as its batch of every run
    (random access by the file's footer). Only one file is ever open at a time, however
    many partitions and runs: the open-file limit (`ulimit -n`, 1,024 by default) never
    binds, where one appender per partition opened 2 files per partition at once.
    """

    def __init__(self, folder: Path, prefix: str, partitions: int):
        self.folder, self.prefix, self.partitions = folder, prefix, partitions
        self.paths: list[Path] = []
        self.schema: Optional[pa.Schema] = None

    def write(self, frame: pl.DataFrame, partition: np.ndarray) -> None:
        order = np.argsort(partition, kind="stable")
        bounds = np.searchsorted(partition[order], np.arange(self.partitions + 1))
        # offsets, not views: a slice of a string view column would write every data buffer
        table = frame[order].to_arrow(compat_level=pl.CompatLevel.oldest())
        if self.schema is None:
            self.schema = table.schema
        table = table.cast(self.schema).combine_chunks()
        whole = table.to_batches()
        batch = whole[0] if whole else pa.RecordBatch.from_pylist([], schema=self.schema)
        path = self.folder / f"{self.prefix}-{len(self.paths)}.arrow"
        with pa.OSFile(str(path), "wb") as sink:
            with pa.ipc.new_file(sink, self.schema) as writer:
                for i in range(self.partitions):
                    writer.write_batch(batch.slice(int(bounds[i]), int(bounds[i + 1] - bounds[i])))
        self.paths.append(path)

    def remove(self) -> None:
        for path in self.paths:
            path.unlink(missing_ok=True)

    def read(self, index: int) -> Optional[pl.DataFrame]:
        pieces = []
        for path in self.paths:
            with pa.OSFile(str(path), "rb") as source:  # read, not mapped: RSS stays honest
                batch = pa.ipc.open_file(source).get_batch(index)
            if batch.num_rows:
                pieces.append(batch)
        if not pieces:
            return None
        return pl.from_arrow(pa.Table.from_batches(pieces, schema=self.schema))


def _stale_spills(parent: Path) -> None:
    """Removes the spill folders of runs that were killed (`tanpu-batch-PID-*`, PID gone):
    a SIGKILL leaves no time to clean up, so the next run does."""
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


class DiskStore:
    def __init__(self, engine, partitions: int, folder: Optional[Path] = None, run_rows: int = 1_000_000,
                 duplicates: Optional[np.ndarray] = None):
        """`run_rows`: rows gathered in memory before they are spilled as one run;
        `duplicates`: the row numbers the duplicate-id check rejects, when already known
        (BatchEngine.duplicate_rows, from a Parquet file's ids): then the ids are not
        spilled at all."""
        self.engine = engine
        self.duplicates = duplicates
        self.partitions = max(1, partitions)
        self._own = folder is None
        if folder is None:
            parent = Path(tempfile.gettempdir())
            _stale_spills(parent)
            folder = Path(tempfile.mkdtemp(prefix=f"tanpu-batch-{os.getpid()}-", dir=parent))
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.run_rows = max(1, run_rows)
        self.accounts = _Runs(self.folder, "accounts", self.partitions)
        self.ids = _Runs(self.folder, "ids", self.partitions)
        self.pending: list[Part] = []
        self.pending_rows = 0
        self.run_starts: list[int] = []  # the first row of each run (rows come in order)

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
        self.run_starts.append(int(frame.get_column("row")[0]))
        p = self.partitions
        self.accounts.write(frame, (frame.get_column("account").hash() % p).cast(pl.Int64).to_numpy())
        if self.duplicates is None:
            ids = frame.filter(pl.col("reason") != Reasons.INVALID).select("id", "account", "time", "row")
            self.ids.write(ids, (ids.get_column("id").hash() % p).cast(pl.Int64).to_numpy())

    def results(self) -> Iterator[pl.DataFrame]:
        self._spill()
        engine = self.engine
        # 1. duplicate ids, partition by id (unless known)
        duplicates = [] if self.duplicates is None else [self.duplicates]
        for i in range(self.partitions if self.duplicates is None else 0):
            frame = self.ids.read(i)
            if frame is None or frame.height == 0:
                continue
            rows = frame.get_column("row").to_numpy()
            found = find_duplicate_ids(frame.get_column("id"), frame.get_column("account"),
                                       frame.get_column("time").to_numpy(), rows,
                                       np.ones(frame.height, dtype=bool))
            duplicates.append(rows[found])
        duplicate_rows = np.sort(np.concatenate(duplicates)) if duplicates else np.zeros(0, np.int64)
        self.ids.remove()  # the disk of each step is given back before the next writes
        # 2. the account rules, partition by account; each partition's results as one
        # file of one batch per run (the rows of that run, in row order)
        starts = np.asarray(self.run_starts, dtype=np.int64)
        results_of = _Runs(self.folder, "results", starts.size)
        for i in range(self.partitions):
            frame = self.accounts.read(i)
            if frame is None:
                frame = part_frame(engine, _empty_part(engine))
            part = frame_part(engine, frame)
            batch = engine.batch_of(part)
            at = np.flatnonzero(np.isin(part.rows, duplicate_rows)) if duplicate_rows.size else \
                np.zeros(0, dtype=np.int64)
            engine.rules.apply(batch, duplicate_ids=at)
            results = engine.results(part, batch)
            rows = results.get_column("row").to_numpy()
            run = np.searchsorted(starts, rows, side="right") - 1
            results_of.write(results, run)
            del frame, part, batch, results
        self.accounts.remove()
        # 3. merge back in row order, run by run
        step = engine.chunk_rows
        for k in range(starts.size):
            merged = results_of.read(k)
            if merged is None:
                continue
            merged = merged.sort("row")
            for start in range(0, merged.height, step):
                yield merged.slice(start, step)

    def close(self) -> None:
        self.pending = []
        if self._own:
            shutil.rmtree(self.folder, ignore_errors=True)


def _empty_part(engine) -> Part:
    return engine.per_record(pl.DataFrame(), None, 1)
