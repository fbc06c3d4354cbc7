"""Reading record files in chunks of raw columns (for `tanpu eval`): CSV, JSON Lines, Parquet.

The rows are what tanpu/recordfiles.py gives the scalar path, as frames: CSV cells as
text (a row whose cells are all blank is skipped and not counted), header units
(`distance[km]`, `distance (km)`) in `column_units`; JSON Lines values as parsed (a line
that is not an object becomes a row with no fields); Parquet columns as typed.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import polars as pl

from . import text as tx
from .ingest import raw_frame

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
           ".parquet": "parquet"}


@dataclass
class Chunks:
    """An open record file: frames of raw rows, the header units, progress."""

    frames: Iterator[tuple[pl.DataFrame, int]]  # (rows, first row number)
    column_units: dict[str, str]
    size: int                                   # bytes (rows for Parquet)
    position: Callable[[], int]                 # how far the reading is, same unit
    estimated_rows: Callable[[], Optional[int]]


def _split_header(header: str):
    import re
    match = re.match(r"^\s*([^\[\(]+?)\s*(?:\[([^\]]+)\]|\(([^)]+)\))\s*$", header)
    if match:
        return match.group(1), match.group(2) or match.group(3)
    return header.strip(), None


def open_chunks(path: Path, chunk_rows: int = 1 << 18) -> Chunks:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown format (use .csv, .jsonl or .parquet)")
    if fmt == "csv":
        return _csv(path, chunk_rows)
    if fmt == "jsonl":
        return _jsonl(path, chunk_rows)
    return _parquet(path, chunk_rows)


# ---------------------------------------------------------------- CSV
def _blank_rows(frame: pl.DataFrame) -> np.ndarray:
    """Rows whose every cell is missing or only spaces (the csv path skips them)."""
    blank = np.ones(frame.height, dtype=bool)
    for series in frame.get_columns():
        b = tx.Bytes.of(series)
        empty = ~b.valid | (b.length == 0)
        maybe = tx.maybe_padded(series) & ~empty & blank
        if maybe.any():
            positions = np.flatnonzero(maybe)
            cells = series.gather(positions).to_list()
            empty[positions] = np.array([c.strip() == "" for c in cells], dtype=bool)
        blank &= empty
        if not blank.any():
            break
    return blank


_QUOTE, _NEWLINE = 34, 10
_FIELD_START = np.zeros(256, dtype=bool)
_FIELD_START[[ord(","), 10, 13, _QUOTE]] = True


def _record_end(buffer: bytes, final: bool) -> Optional[int]:
    """Where the last whole record of `buffer` ends (after its newline), by quote parity;
    -1 when a quote stands inside a field (parity then says nothing: read it all at once)."""
    data = np.frombuffer(buffer, dtype=np.uint8)
    quotes = np.flatnonzero(data == _QUOTE)
    newlines = np.flatnonzero(data == _NEWLINE)
    if quotes.size:
        opening = quotes[0::2]
        closing = quotes[1::2]
        before = data[np.maximum(opening - 1, 0)]
        if not np.all(_FIELD_START[before] | (opening == 0)):
            return -1
        after = data[np.minimum(closing + 1, data.size - 1)]
        if not np.all(_FIELD_START[after] | (closing + 1 >= data.size)):
            return -1
        outside = np.searchsorted(quotes, newlines) % 2 == 0
        newlines = newlines[outside]
    if final:
        return data.size
    return int(newlines[-1]) + 1 if newlines.size else None


def _csv(path: Path, chunk_rows: int, block_bytes: int = 8 << 20) -> Chunks:
    size = path.stat().st_size
    with open(path, "r", encoding="utf-8-sig", newline="") as handle:
        try:
            headers = next(csv.reader(handle))
        except StopIteration:
            headers = None
    if not headers:
        return Chunks(iter(()), {}, size, lambda: size, lambda: 0)
    names, units = [], {}
    for header in headers:
        name, unit = _split_header(header)
        names.append(name)
        if unit:
            units[name] = unit
    if len(set(names)) < len(names):
        return _csv_rows(path, names, units, chunk_rows)
    placeholders = [f"c{i}" for i in range(len(names))]
    # a later column of the same name wins, as dict(zip(names, cells)) does
    last = {name: i for i, name in enumerate(names)}
    keep = [placeholders[i] for i in sorted(last.values())]
    rename = {placeholders[i]: names[i] for i in last.values()}
    state = {"bytes": 0}
    options = dict(has_header=False, schema={c: pl.String for c in placeholders},
                   truncate_ragged_lines=True, raise_if_empty=False, missing_columns="insert",
                   extra_columns="ignore")

    def parse(source, skip_rows: int = 0) -> pl.DataFrame:
        return pl.scan_csv(source, skip_rows=skip_rows, **options).collect()

    def blocks():
        """The file after its header in blocks of whole records (quote-aware)."""
        with open(path, "rb") as source:
            head = source.read(min(size, 1 << 20))
            start = _header_end(head)
            if start is None:  # a header longer than 1 MB or not parity-clean
                yield parse(path, skip_rows=1)
                state["bytes"] = size
                return
            source.seek(start)
            carry = b""
            while True:
                data = source.read(block_bytes)
                final = not data
                buffer = carry + data
                if not buffer:
                    return
                end = _record_end(buffer, final=final)
                if end == -1:  # a quote inside a field: let the parser see the rest at once
                    buffer += source.read()
                    end, final = len(buffer), True
                if end is None:  # no whole record yet
                    carry = buffer
                    continue
                state["bytes"] = source.tell() - (len(buffer) - end)
                yield parse(buffer[:end])
                carry = buffer[end:]
                if final:
                    return

    def frames():
        row = 1
        for block in blocks():
            for at in range(0, max(block.height, 1), chunk_rows):
                frame = block.slice(at, chunk_rows)
                if frame.width < len(placeholders):
                    for name in placeholders[frame.width:]:
                        frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(name))
                frame = frame.select(keep).rename(rename)
                blank = _blank_rows(frame)
                if blank.any():
                    frame = frame.filter(pl.Series(~blank))
                if frame.height:
                    yield frame, row
                    row += frame.height

    return Chunks(frames(), units, size, lambda: state["bytes"], lambda: None)


def _csv_rows(path: Path, names: list[str], units: dict, chunk_rows: int) -> Chunks:
    """A CSV whose header names a column twice, read by the csv module as tanpu/recordfiles.py
    reads it (a short row keeps the earlier column's cell)."""
    size = path.stat().st_size
    handle = open(path, "r", encoding="utf-8-sig", newline="")
    reader = csv.reader(handle)
    next(reader, None)

    def frames():
        row, batch = 1, []
        with handle:
            for cells in reader:
                if not any(c.strip() for c in cells):
                    continue
                batch.append(dict(zip(names, cells)))
                if len(batch) >= chunk_rows:
                    yield raw_frame(batch), row
                    row, batch = row + len(batch), []
        if batch:
            yield raw_frame(batch), row

    return Chunks(frames(), units, size, lambda: handle.tell() if not handle.closed else size,
                  lambda: None)


def _header_end(head: bytes) -> Optional[int]:
    """Offset just after the header record (BOM included), or None."""
    end = _record_end(head, final=False) if head else None
    if end in (None, -1):
        return None
    data = np.frombuffer(head, dtype=np.uint8)
    quotes = np.flatnonzero(data == _QUOTE)
    for newline in np.flatnonzero(data == _NEWLINE).tolist():
        if np.searchsorted(quotes, newline) % 2 == 0:
            return newline + 1
    return None


_SAMPLES: dict = {}


def _bytes_per_row(path: Path, size: int) -> float:
    """Average bytes per row from the first 64 kB (for progress and estimates)."""
    key = (str(path), size)
    found = _SAMPLES.get(key)
    if found is None:
        with open(path, "rb") as handle:
            head = handle.read(65536)
        lines = max(head.count(b"\n") - 1, 1)
        found = _SAMPLES[key] = max(len(head) / (lines + 1), 1.0)
    return found


def estimate_rows(path: Path) -> int:
    """About how many rows a file holds (exact for Parquet)."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt == "parquet":
        import pyarrow.parquet as pq
        return pq.ParquetFile(path).metadata.num_rows
    size = path.stat().st_size
    return int(size / _bytes_per_row(path, size))


# ---------------------------------------------------------------- JSON Lines
def _jsonl(path: Path, chunk_rows: int) -> Chunks:
    size = path.stat().st_size
    state = {"pos": 0}

    def frames():
        row = 1
        batch = []
        with open(path, "rb") as handle:
            for line in handle:
                state["pos"] += len(line)
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as error:
                    value = {"__invalid__": f"not a JSON object ({error.msg})"}
                batch.append(value if isinstance(value, dict) else {"__invalid__": "not a JSON object"})
                if len(batch) >= chunk_rows:
                    yield raw_frame(batch), row
                    row += len(batch)
                    batch = []
        if batch:
            yield raw_frame(batch), row

    return Chunks(frames(), {}, size, lambda: state["pos"], lambda: None)


# ---------------------------------------------------------------- Parquet
def _parquet(path: Path, chunk_rows: int) -> Chunks:
    import pyarrow.parquet as pq
    table = pq.ParquetFile(path)
    total = table.metadata.num_rows or 0
    units, names = {}, []
    for name in table.schema_arrow.names:
        base, unit = _split_header(name)
        names.append(base)
        if unit:
            units[base] = unit
    state = {"rows": 0}

    def frames():
        row = 1
        for batch in table.iter_batches(batch_size=chunk_rows):
            frame = pl.from_arrow(batch)
            if isinstance(frame, pl.Series):  # pragma: no cover
                frame = frame.to_frame()
            last = {name: i for i, name in enumerate(names)}
            frame = frame.select([frame.columns[i] for i in sorted(last.values())])
            frame.columns = [names[i] for i in sorted(last.values())]
            state["rows"] += frame.height
            if frame.height:
                yield frame, row
                row += frame.height

    return Chunks(frames(), units, max(total, 1), lambda: state["rows"], lambda: total)
