"""Reading activity-record files and writing result files (CSV, JSON Lines, Parquet).

The format comes from the extension. A column header may carry the unit of its plain
numbers, `distance[km]` or `distance (km)`; without it every quantity cell must carry its
own unit (`8.2 km`), so that no number is silently taken to be kilometres.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator, Optional

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
           ".parquet": "parquet"}
_HEADER_UNIT = re.compile(r"^\s*([^\[\(]+?)\s*(?:\[([^\]]+)\]|\(([^)]+)\))\s*$")


class FileFormatError(ValueError):
    pass


def format_of(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise FileFormatError(f"{path}: unknown format (use .csv, .jsonl or .parquet)")
    return fmt


def split_header(header: str) -> tuple[str, Optional[str]]:
    match = _HEADER_UNIT.match(header)
    if match:
        return match.group(1), match.group(2) or match.group(3)
    return header.strip(), None


@dataclass
class RecordSource:
    """An open record file: its rows as dicts, the units its headers declare, its size."""

    rows: Iterator[dict]
    column_units: dict[str, str]
    size: int
    position: Callable[[], int]


def open_records(path: Path) -> RecordSource:
    fmt = format_of(path)
    size = path.stat().st_size
    if fmt == "csv":
        handle = open(path, "r", encoding="utf-8-sig", newline="")
        reader = csv.reader(handle)
        try:
            headers = next(reader)
        except StopIteration:
            return RecordSource(iter(()), {}, size, lambda: size)
        names, units = [], {}
        for header in headers:
            name, unit = split_header(header)
            names.append(name)
            if unit:
                units[name] = unit

        def rows():
            with handle:
                for cells in reader:
                    if not any(c.strip() for c in cells):
                        continue
                    yield dict(zip(names, cells))
        return RecordSource(rows(), units, size, lambda: handle.tell() if not handle.closed else size)
    if fmt == "jsonl":
        handle = open(path, "rb")

        def rows():
            with handle:
                for line in handle:
                    if not line.strip():
                        continue
                    try:
                        value = json.loads(line)
                    except json.JSONDecodeError as error:
                        yield {"__invalid__": f"not a JSON object ({error.msg})"}
                        continue
                    yield value if isinstance(value, dict) else {"__invalid__": "not a JSON object"}
        return RecordSource(rows(), {}, size, lambda: handle.tell() if not handle.closed else size)
    import pyarrow.parquet as pq
    table = pq.ParquetFile(path)
    total = table.metadata.num_rows or 1
    done = [0]
    units = {}
    columns = []
    for name in table.schema_arrow.names:
        base, unit = split_header(name)
        columns.append(base)
        if unit:
            units[base] = unit

    def rows():
        for batch in table.iter_batches(batch_size=65_536):
            for row in batch.to_pylist():
                done[0] += 1
                yield {columns[i]: v for i, v in enumerate(row.values())}
    return RecordSource(rows(), units, total, lambda: done[0])


_RESULT_COLUMNS = ["row", "id", "account", "time", "status", "code", "message", "reduction_kg",
                   "reduction_mg", "points", "bonus", "baseline_mg", "project_mg", "leakage_mg",
                   "flags", "methodology", "version", "content_hash"]


def write_results(path: Path, rows: list[dict]) -> None:
    fmt = format_of(path)
    explained = any("explanation" in r for r in rows)
    columns = _RESULT_COLUMNS + (["explanation"] if explained else [])
    if fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as out:
            for r in rows:
                out.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
        return
    flat = []
    for r in rows:
        item = {c: r.get(c) for c in columns}
        item["flags"] = ";".join(r.get("flags") or [])
        if explained:
            item["explanation"] = json.dumps(r.get("explanation"), ensure_ascii=False, default=str)
        flat.append(item)
    if fmt == "csv":
        with open(path, "w", encoding="utf-8", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=columns)
            writer.writeheader()
            writer.writerows(flat)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist(flat), path)


def results_to_text(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_RESULT_COLUMNS[:11], extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({**r, "flags": ";".join(r.get("flags") or [])})
    return buffer.getvalue()


# ---------------------------------------------------------------- results as columns
@lru_cache(maxsize=1)
def _preparing_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1), thread_name_prefix="tanpu-write")


def _kilograms(milligrams):
    """mg / 10**6, correctly rounded as Python's `/` (engine.Result.reduction_kg) gives it.

    Not Polars' `/ 1_000_000`: on long columns it multiplies by the reciprocal, and
    924193 mg came out as 0.9241929999999999 kg.
    """
    import polars as pl

    return pl.Series(milligrams.name, milligrams.to_numpy() / 1_000_000, dtype=pl.Float64)


_WHOLE_SECONDS = "%Y-%m-%dT%H:%M:%SZ"


def _result_columns(frame, ref, fmt: str):
    """A frame of engine results (engine.batch RESULT_COLUMNS) -> the columns written."""
    import polars as pl

    t = pl.col("time")
    moment = pl.from_epoch(t, time_unit="us")
    if frame.select((t % 1_000_000 != 0).any()).item():  # as isoformat: a fraction if any
        time = (pl.when(t % 1_000_000 == 0).then(moment.dt.strftime(_WHOLE_SECONDS))
                .otherwise(moment.dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ")))
    elif fmt == "csv":  # formatted by write_csv's threads (_emit), not here on one
        time = moment
    else:
        time = moment.dt.strftime(_WHOLE_SECONDS)
    if fmt == "jsonl":
        flags = pl.col("flags")
    elif frame.height and frame.get_column("flags").list.len().max():
        flags = pl.col("flags").list.join(";")
    else:  # no flag on any row (the usual case): joining a million empty lists took 70 ms
        flags = pl.lit(None, dtype=pl.String)
    out = frame.select(
        pl.col("row"), pl.col("id"), pl.col("account"), time.alias("time"), pl.col("status"),
        pl.col("code"), pl.col("message"),
        pl.col("reduction_mg").map_batches(_kilograms, return_dtype=pl.Float64).alias("reduction_kg"),
        pl.col("reduction_mg"),
        pl.col("points"), pl.col("bonus"), pl.col("baseline_mg"), pl.col("project_mg"),
        pl.col("leakage_mg"), flags.alias("flags"),
        pl.lit(ref.id).alias("methodology"), pl.lit(ref.version).alias("version"),
        pl.lit(ref.content_hash).alias("content_hash"))
    if fmt == "csv":  # an empty text is an empty cell, as the csv module writes it
        constant = {"methodology", "version", "content_hash"}  # never empty
        text = [c for c, t in out.schema.items() if t == pl.String and c not in constant]
        out = out.with_columns(pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)).alias(c)
                               for c in text)
    return out


class ResultWriter:
    """Writes frames of results as they come: to a file (.csv, .jsonl, .parquet), or the
    first columns as CSV to a text stream (stdout).

    Turning a frame into the written columns (times as text, kilograms) is Polars work
    that releases the GIL, so the next frames are prepared in threads while one is
    written; frames are still written in the order they came.
    """

    AHEAD = 2  # frames prepared ahead of the one being written

    def __init__(self, path: Optional[Path], ref, stream=None):
        self.path = path
        self.ref = ref
        self.fmt = format_of(path) if path is not None else "stdout"
        self.stream = stream
        self._handle = None
        self._parquet = None
        self._header = True
        self._pending: deque = deque()

    def write(self, frame) -> None:
        fmt = "csv" if self.fmt == "stdout" else self.fmt
        self._pending.append(_preparing_pool().submit(_result_columns, frame, self.ref, fmt))
        while len(self._pending) > self.AHEAD:
            self._emit(self._pending.popleft().result())

    def _flush(self) -> None:
        while self._pending:
            self._emit(self._pending.popleft().result())

    def _emit(self, out) -> None:
        if self.fmt == "stdout":
            self.stream.write(out.select(_RESULT_COLUMNS[:11]).write_csv(
                include_header=self._header, datetime_format=_WHOLE_SECONDS))
            self._header = False
            return
        if self.fmt == "parquet":
            import pyarrow.parquet as pq
            table = out.to_arrow()
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, table.schema)
            self._parquet.write_table(table.cast(self._parquet.schema))
            return
        if self._handle is None:
            self._handle = open(self.path, "wb")
        if self.fmt == "csv":
            out.write_csv(self._handle, include_header=self._header, datetime_format=_WHOLE_SECONDS)
        else:
            out.write_ndjson(self._handle)
        self._header = False

    def close(self) -> None:
        self._flush()
        if self.fmt == "parquet" and self._parquet is None:
            from engine.batch.engine import results_frame
            self._emit(_result_columns(results_frame([]), self.ref, "parquet"))
        if self._parquet is not None:
            self._parquet.close()
        if self.fmt in ("csv", "jsonl") and self._handle is None:
            self._handle = open(self.path, "wb")
            if self.fmt == "csv":
                from engine.batch.engine import results_frame
                _result_columns(results_frame([]), self.ref, "csv").write_csv(
                    self._handle, datetime_format=_WHOLE_SECONDS)
        if self._handle is not None:
            self._handle.close()
        if self.fmt == "stdout" and self._header:
            self.stream.write(",".join(_RESULT_COLUMNS[:11]) + "\n")
