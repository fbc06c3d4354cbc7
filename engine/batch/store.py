"""Where the kept columns of a run wait for the cross-record rules.

`MemoryStore` keeps them in memory. `DiskStore` (for files of more rows than fit a
budget) writes each chunk, as Arrow IPC in a temporary folder, to two sets of P
partitions: every row by a hash of its account (all of an account's records meet in one
partition, which is all the per-account rules need) and the valid rows' (id, account,
time, row) by a hash of the id (all records of an id meet, which is all the duplicate-id
rule needs). Then: duplicate ids partition by partition; the account rules partition by
partition; the results are merged back in row order chunk by chunk. Memory holds one
partition and one chunk, whatever the size of the file.
"""

from __future__ import annotations

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


class _Appender:
    """Arrow IPC stream files, one per partition, appended chunk by chunk."""

    def __init__(self, folder: Path, prefix: str, count: int):
        self.paths = [folder / f"{prefix}-{i}.arrows" for i in range(count)]
        self.writers: list[Optional[pa.ipc.RecordBatchStreamWriter]] = [None] * count
        self.schema: Optional[pa.Schema] = None

    def write(self, index: int, frame: pl.DataFrame) -> None:
        table = frame.to_arrow()
        if self.schema is None:
            self.schema = table.schema
        table = table.cast(self.schema)
        if self.writers[index] is None:
            self.writers[index] = pa.ipc.new_stream(str(self.paths[index]), self.schema)
        self.writers[index].write_table(table)

    def close(self) -> None:
        for writer in self.writers:
            if writer is not None:
                writer.close()
        self.writers = [None] * len(self.writers)

    def read(self, index: int) -> Optional[pl.DataFrame]:
        if not self.paths[index].exists():
            return None
        with pa.OSFile(str(self.paths[index]), "rb") as source:  # read, not mapped: RSS stays honest
            table = pa.ipc.open_stream(source).read_all()
        return pl.from_arrow(table)


class DiskStore:
    def __init__(self, engine, partitions: int, folder: Optional[Path] = None):
        self.engine = engine
        self.partitions = max(1, partitions)
        self._own = folder is None
        self.folder = Path(tempfile.mkdtemp(prefix="tanpu-batch-")) if folder is None else Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.accounts = _Appender(self.folder, "accounts", self.partitions)
        self.ids = _Appender(self.folder, "ids", self.partitions)
        self.chunk_starts: list[int] = []
        self.result_paths = [self.folder / f"results-{i}.arrow" for i in range(self.partitions)]

    def add(self, part: Part) -> None:
        if part.n == 0:
            return
        self.chunk_starts.append(int(part.rows[0]))
        frame = part_frame(self.engine, part)
        p = self.partitions
        by_account = (frame.get_column("account").hash() % p).cast(pl.Int64).to_numpy()
        self._split(self.accounts, frame, by_account)
        valid = part.reason != Reasons.INVALID
        ids = frame.select("id", "account", "time", "row").filter(pl.Series(valid))
        by_id = (ids.get_column("id").hash() % p).cast(pl.Int64).to_numpy()
        self._split(self.ids, ids, by_id)

    def _split(self, appender: _Appender, frame: pl.DataFrame, partition: np.ndarray) -> None:
        order = np.argsort(partition, kind="stable")
        bounds = np.searchsorted(partition[order], np.arange(self.partitions + 1))
        for i in range(self.partitions):
            chosen = order[bounds[i]:bounds[i + 1]]
            if chosen.size:
                appender.write(i, frame[chosen])

    def results(self) -> Iterator[pl.DataFrame]:
        self.accounts.close()
        self.ids.close()
        engine = self.engine
        # 1. duplicate ids, partition by id
        duplicates = []
        for i in range(self.partitions):
            frame = self.ids.read(i)
            if frame is None or frame.height == 0:
                continue
            rows = frame.get_column("row").to_numpy()
            found = find_duplicate_ids(frame.get_column("id"), frame.get_column("account"),
                                       frame.get_column("time").to_numpy(), rows,
                                       np.ones(frame.height, dtype=bool))
            duplicates.append(rows[found])
        duplicate_rows = np.sort(np.concatenate(duplicates)) if duplicates else np.zeros(0, np.int64)
        # 2. the account rules, partition by account; results in row order, one Arrow
        # record batch per input chunk
        starts = np.asarray(self.chunk_starts, dtype=np.int64)
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
            cuts = np.r_[np.searchsorted(rows, starts), rows.size]
            table = results.to_arrow()
            with pa.OSFile(str(self.result_paths[i]), "wb") as sink:
                with pa.ipc.new_file(sink, table.schema) as writer:
                    for k in range(starts.size):
                        piece = table.slice(int(cuts[k]), int(cuts[k + 1] - cuts[k])).combine_chunks()
                        batches = piece.to_batches()
                        writer.write_batch(batches[0] if batches else
                                           pa.RecordBatch.from_pylist([], schema=table.schema))
            del frame, part, batch, results, table
        # 3. merge back in row order
        readers = []
        maps = []
        try:
            for path in self.result_paths:
                source = pa.OSFile(str(path), "rb")
                maps.append(source)
                readers.append(pa.ipc.open_file(source))
            for k in range(starts.size):
                pieces = [pl.from_arrow(r.get_batch(k)) for r in readers]
                yield pl.concat([p for p in pieces if p.height] or pieces[:1]).sort("row")
        finally:
            for source in maps:
                source.close()

    def close(self) -> None:
        self.accounts.close()
        self.ids.close()
        if self._own:
            shutil.rmtree(self.folder, ignore_errors=True)


def _empty_part(engine) -> Part:
    return engine.per_record(pl.DataFrame(), None, 1)
