"""Record files: activity records read from CSV, JSON Lines and Parquet; results written.

The one reader of record files, for every caller: the command line and the web UI's
try-it panel and impact preview read rows (`open_records`: dicts, what engine.Engine
takes), the batch engine reads the same rows as frames in chunks (`open_chunks`). Both
take the format from the extension (FORMATS) and the units from the headers
(`split_header`), and agree on what a row is:

- CSV: cells as text (a record's legs as repeated columns `legs[0].mode`, `legs[0].distance`
  ..., or a JSON list in one cell: engine/legs.py); a row whose cells are all blank is skipped and not counted; a
  header may carry the unit of its plain numbers, `distance[km]` or `distance (km)`;
  without it every quantity cell must carry its own unit (`8.2 km`), so that no number
  is silently taken to be kilometres. What is wrong with one row is that row's error
  (`records.INVALID`, reported with its row number, and the rest goes on): a row with
  more cells than the header, unless the extra cells are empty (a trailing comma). What
  makes the rest of the file unreadable stops the whole file with a FileFormatError
  that names the line and byte, the same on every engine (`tanpu eval` then leaves no
  output file): a header that names a column twice, bytes that are not UTF-8, a quoted
  cell that is never closed;
- JSON Lines: values as parsed; a line that is not an object (or not UTF-8) is a row
  holding only the reason (`records.INVALID`), which the engine reports with its row
  number;
- Parquet: columns as typed; units in the column names as in CSV headers.

Writing results (`ResultWriter`, `write_results`): engine.result.FILE_COLUMNS; compact
Parquet (`ResultWriter(compact=True)`): COMPACT_COLUMNS, the methodology in the file's
metadata (COMPACT_METADATA; `compact_metadata` reads it back).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

from typing import TYPE_CHECKING

from . import pools
from .records import INVALID
from .result import (COMPACT_COLUMNS, COMPACT_METADATA, FILE_COLUMNS, REF_COLUMNS, SHORT_COLUMNS,
                     MethodologyRef)

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
# NumPy and Polars are imported by the functions that use them: a small file is read and
# its results written by the csv and json modules alone (`tanpu eval` of ten records does
# not load them; Polars alone took longer to import than the whole run, docs/engine.md)

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
           ".parquet": "parquet"}
# a name may hold leg indexes (`legs[0].distance[km]`: the name `legs[0].distance`)
_HEADER_UNIT = re.compile(r"^\s*((?:[^\[\(]|\[[0-9]+\](?=\.))+?)\s*(?:\[([^\]]+)\]|\(([^)]+)\))\s*$")


class FileFormatError(ValueError):
    pass


def format_of(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise FileFormatError(f"{path}: unknown format (use .csv, .jsonl or .parquet)")
    return fmt


def split_header(header: str) -> tuple[str, Optional[str]]:
    """`distance[km]`, `distance (km)` -> ("distance", "km"); `distance` -> ("distance", None)."""
    match = _HEADER_UNIT.match(header)
    if match:
        return match.group(1), match.group(2) or match.group(3)
    return header.strip(), None


def header_units(headers: Iterable[str], source: object = "") -> tuple[list[str], dict[str, str]]:
    """Column headers -> (the column names, the units the headers declare by name). A
    name given twice is a FileFormatError: which of the two cells is the record's would
    be a guess (`distance[km]` and `distance[m]`, say)."""
    names, units, seen = [], {}, {}
    for number, header in enumerate(headers, start=1):
        name, unit = split_header(header)
        if name in seen:
            raise FileFormatError(f"{source}: line 1: the header names column `{name}` twice "
                                  f"(columns {seen[name]} and {number})")
        seen[name] = number
        names.append(name)
        if unit:
            units[name] = unit
    return names, units


def not_utf8(path: Path) -> FileFormatError:
    """The error for a file with bytes that are not UTF-8: where the first one is (line
    and byte offset, from the start of the file). Read again from the start, so every
    reader says the same whichever way it found out."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    line, offset = 1, 0
    with open(path, "rb") as handle:
        while True:
            block = handle.read(1 << 20)
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as error:
                at = max(error.start, 0)  # counted from the start of this block
                pending = len(error.object) - len(block)  # bytes held from the last block
                position = offset - pending + at
                line += block[:max(at - pending, 0)].count(b"\n")
                byte = error.object[at] if at < len(error.object) else 0
                return FileFormatError(f"{path}: line {line} (byte {position}): not UTF-8 text "
                                       f"(byte 0x{byte:02x}); save the file as UTF-8")
            if not block:
                return FileFormatError(f"{path}: not UTF-8 text")
            line += block.count(b"\n")
            offset += len(block)


def unclosed_quote(path: Path) -> FileFormatError:
    """The error for a CSV file with an odd number of quote characters: a quoted cell
    opens and never closes, so the rest of the file would be read as one cell. Where:
    the line of the last quote (the pairs before it close)."""
    line, last, offset = 1, None, 0
    with open(path, "rb") as handle:
        for raw in handle:
            if b'"' in raw:
                last = (line, offset + raw.rindex(b'"'))
            line += 1
            offset += len(raw)
    where = f"line {last[0]} (byte {last[1]})" if last else "the end"
    return FileFormatError(f"{path}: {where}: a quoted cell opens here and is never closed "
                           f"(the file has an odd number of \" characters)")


def _extra_cells(count: int, width: int) -> str:
    return (f"the row has {count} cells and the header {width} columns: "
            f"cells beyond the header's must be empty")


def _csv_header(path: Path) -> Optional[list[str]]:
    """The header row of a CSV file as the csv module reads it; None when empty."""
    try:
        with open(path, "r", encoding="utf-8-sig", newline="") as handle:
            return next(csv.reader(handle), None) or None
    except UnicodeDecodeError:
        raise not_utf8(path) from None


def _csv_rows(cells_of_rows: Iterable[list[str]], names: list[str]) -> Iterator[dict]:
    width = len(names)
    for cells in cells_of_rows:
        if not any(c.strip() for c in cells):
            continue
        row = dict(zip(names, cells))
        if len(cells) > width and any(c.strip() for c in cells[width:]):
            row[INVALID] = _extra_cells(len(cells), width)
        yield row


class _CountingLines:
    """A text file's lines for csv.reader, counting quote characters (an odd count at the
    end: a quoted cell never closed) and turning a decoding error into the file's error."""

    def __init__(self, handle, path: Path):
        self.handle, self.path, self.quotes = handle, path, 0

    def __iter__(self):
        try:
            for line in self.handle:
                self.quotes += line.count('"')
                yield line
        except UnicodeDecodeError:
            raise not_utf8(self.path) from None
        if self.quotes % 2:
            raise unclosed_quote(self.path)


def _json_rows(lines: Iterable[bytes]) -> Iterator[dict]:
    for line in lines:
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            yield {INVALID: f"not a JSON object ({error.msg})"}
            continue
        except UnicodeDecodeError as error:
            yield {INVALID: f"not UTF-8 text (byte 0x{line[error.start]:02x} at column "
                            f"{error.start + 1} of the line)"}
            continue
        yield value if isinstance(value, dict) else {INVALID: "not a JSON object"}


# ---------------------------------------------------------------- rows
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
        reader = csv.reader(_CountingLines(handle, path))
        try:
            headers = next(reader)
        except StopIteration:
            handle.close()
            return RecordSource(iter(()), {}, size, lambda: size)
        except FileFormatError:
            handle.close()
            raise
        names, units = header_units(headers, path)

        def rows():
            with handle:
                yield from _csv_rows(reader, names)
        return RecordSource(rows(), units, size, lambda: handle.tell() if not handle.closed else size)
    if fmt == "jsonl":
        handle = open(path, "rb")

        def rows():
            with handle:
                yield from _json_rows(handle)
        return RecordSource(rows(), {}, size, lambda: handle.tell() if not handle.closed else size)
    import pyarrow.parquet as pq
    table = pq.ParquetFile(path)
    total = table.metadata.num_rows or 1
    done = [0]
    columns, units = header_units(table.schema_arrow.names)

    def rows():
        for batch in table.iter_batches(batch_size=65_536):
            for row in batch.to_pylist():
                done[0] += 1
                yield {columns[i]: v for i, v in enumerate(row.values())}
    return RecordSource(rows(), units, total, lambda: done[0])


# ---------------------------------------------------------------- frames, for the batch engine
@dataclass
class Chunks:
    """An open record file as frames of raw rows, the header units, progress."""

    frames: Iterator[tuple[pl.DataFrame, int]]  # (rows, first row number)
    column_units: dict[str, str]
    size: int                                   # bytes (rows for Parquet)
    position: Callable[[], int]                 # how far the reading is, same unit
    estimated_rows: Callable[[], Optional[int]]


def open_chunks(path: Path, chunk_rows: int = 1 << 18, block_bytes: int = 8 << 20) -> Chunks:
    """The rows open_records gives, as frames of at most `chunk_rows` rows (CSV and
    Parquet read by Polars and Arrow; JSON Lines by open_records)."""
    fmt = format_of(path)
    if fmt == "csv":  # read in blocks of about `block_bytes` (whole records)
        return _csv_chunks(path, chunk_rows, block_bytes)
    if fmt == "jsonl":
        return _row_chunks(open_records(path), chunk_rows)
    return _parquet_chunks(path, chunk_rows)


def _row_chunks(source: RecordSource, chunk_rows: int) -> Chunks:
    """open_records' rows in frames of `chunk_rows`."""
    from .batch.ingest import raw_frame

    def frames():
        row, batch = 1, []
        for record in source.rows:
            batch.append(record)
            if len(batch) >= chunk_rows:
                yield raw_frame(batch), row
                row, batch = row + len(batch), []
        if batch:
            yield raw_frame(batch), row

    return Chunks(frames(), source.column_units, source.size, source.position, lambda: None)


# ---------------------------------------------------------------- CSV
def _blank_rows(frame: pl.DataFrame) -> np.ndarray:
    """Rows whose every cell is missing or only spaces (the csv path skips them)."""
    import numpy as np
    from .batch import text as tx

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


@lru_cache(maxsize=1)
def _field_start():
    import numpy as np

    starts = np.zeros(256, dtype=bool)
    starts[[ord(","), 10, 13, _QUOTE]] = True
    return starts


def _record_end(buffer: bytes, final: bool) -> Optional[int]:
    """Where the last whole record of `buffer` ends (after its newline), by quote parity;
    -1 when a quote stands inside a field (parity then says nothing: read it all at once)."""
    import numpy as np
    data = np.frombuffer(buffer, dtype=np.uint8)
    quotes = np.flatnonzero(data == _QUOTE)
    newlines = np.flatnonzero(data == _NEWLINE)
    if quotes.size:
        opening = quotes[0::2]
        closing = quotes[1::2]
        before = data[np.maximum(opening - 1, 0)]
        if not np.all(_field_start()[before] | (opening == 0)):
            return -1
        after = data[np.minimum(closing + 1, data.size - 1)]
        if not np.all(_field_start()[after] | (closing + 1 >= data.size)):
            return -1
        outside = np.searchsorted(quotes, newlines) % 2 == 0
        newlines = newlines[outside]
    if final:
        return data.size
    return int(newlines[-1]) + 1 if newlines.size else None


def _csv_chunks(path: Path, chunk_rows: int, block_bytes: int = 8 << 20) -> Chunks:
    import polars as pl
    size = path.stat().st_size
    headers = _csv_header(path)
    if not headers:
        return Chunks(iter(()), {}, size, lambda: size, lambda: 0)
    names, units = header_units(headers, path)
    width = len(names)
    # one more column than the header: a row with one extra cell parses, and that cell is
    # checked (empty: a trailing comma); a row with more makes Polars refuse the block,
    # which is then read by the csv module (`parse_slowly`), as open_records reads it
    placeholders = [f"c{i}" for i in range(width + 1)]
    extra = placeholders[width]
    rename = {placeholders[i]: names[i] for i in range(width)}
    state = {"bytes": 0}
    options = dict(has_header=False, schema={c: pl.String for c in placeholders},
                   truncate_ragged_lines=False, raise_if_empty=False, missing_columns="insert")

    def parse_slowly(buffer: bytes) -> pl.DataFrame:
        from .batch.ingest import raw_frame

        text = buffer.decode("utf-8")
        rows = list(_csv_rows(csv.reader(io.StringIO(text, newline="")), names))
        frame = raw_frame(rows)
        # what parse() gives: every column, as text, in the header's order
        for name in names:
            if name not in frame.columns:
                frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(name))
        return frame.select(*names, *([INVALID] if INVALID in frame.columns else []))

    def parse(source, skip_rows: int = 0) -> pl.DataFrame:
        try:
            frame = pl.scan_csv(source, skip_rows=skip_rows, **options).collect()
        except (pl.exceptions.ComputeError, pl.exceptions.SchemaError):  # more cells
            if not isinstance(source, bytes):
                with open(source, "rb") as handle:
                    source = handle.read()
                    source = source[_header_end_any(source):]
            return parse_slowly(source)
        if frame.width < len(placeholders):
            for name in placeholders[frame.width:]:
                frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(name))
        spare = frame[extra]
        if spare.null_count() < frame.height:
            bad = spare.str.strip_chars().str.len_bytes().fill_null(0) > 0
            if bad.any():
                reason = _extra_cells(width + 1, width)
                frame = frame.with_columns(pl.when(bad).then(pl.lit(reason))
                                           .otherwise(pl.lit(None, dtype=pl.String)).alias(INVALID))
        return frame.drop(extra).rename(rename)

    def checked(buffer: bytes, final: bool) -> bytes:
        """The bytes of whole records, as the file's error when they cannot be read."""
        if not buffer.isascii():
            try:
                buffer.decode("utf-8")
            except UnicodeDecodeError:
                raise not_utf8(path) from None
        if final and buffer.count(b'"') % 2:
            raise unclosed_quote(path)
        return buffer

    def blocks():
        """The file after its header in blocks of whole records (quote-aware)."""
        with open(path, "rb") as source:
            head = source.read(min(size, 1 << 20))
            start = _header_end(head)
            if start is None:  # a header longer than 1 MB or not parity-clean
                source.seek(0)
                whole = source.read()
                checked(whole, final=True)
                yield parse(whole[_header_end_any(whole):])
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
                yield parse(checked(buffer[:end], final))
                carry = buffer[end:]
                if final:
                    return

    def frames():
        row = 1
        for block in blocks():
            for at in range(0, max(block.height, 1), chunk_rows):
                frame = block.slice(at, chunk_rows)
                blank = _blank_rows(frame)
                if blank.any():
                    frame = frame.filter(pl.Series(~blank))
                if frame.height:
                    yield frame, row
                    row += frame.height

    return Chunks(frames(), units, size, lambda: state["bytes"], lambda: None)


def _header_end_any(data: bytes) -> int:
    """Offset just after the header record of a whole file, as the csv module reads it
    (a header of any length, quotes in it or not)."""
    text = data.decode("utf-8")
    lines = io.StringIO(text, newline="")
    next(csv.reader(lines), None)
    return len(text[:lines.tell()].encode("utf-8"))


def _header_end(head: bytes) -> Optional[int]:
    """Offset just after the header record (BOM included), or None."""
    import numpy as np
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
    if format_of(path) == "parquet":
        return parquet_shape(path)[1]
    size = path.stat().st_size
    return int(size / _bytes_per_row(path, size))


# ---------------------------------------------------------------- Parquet
def parquet_shape(path: Path) -> tuple[list[str], int]:
    """(column names as written, rows) of a Parquet file, from its footer, by Polars: the
    batch engine's reading needs no `pyarrow.parquet`, whose import (with `pyarrow.fs`,
    the cloud file systems and `ssl`) costs 18 ms of CPU (parquet_writer)."""
    import polars as pl
    return list(pl.read_parquet_schema(path)), pl.scan_parquet(path).select(pl.len()).collect().item()


def parquet_column_chunks(path: Path, name: str, chunk_rows: int) -> Iterator[pl.DataFrame]:
    """The one column of a Parquet file whose header (its unit aside) is `name`, as frames
    of `chunk_rows` rows in file order (the frames open_chunks gives, of that column
    alone); frames of no column when the file has none."""
    import polars as pl
    raw, total = parquet_shape(path)
    names, _ = header_units(raw)
    chosen = [r for r, n in zip(raw, names) if n == name][:1]
    if not chosen:
        for start in range(0, total, chunk_rows):
            yield pl.DataFrame(height=min(chunk_rows, total - start))
        return
    for frame in pl.scan_parquet(path).select(chosen).collect_batches(chunk_size=chunk_rows):
        frame.columns = [name]
        if frame.height:
            yield frame


def parquet_column_rows(path: Path, names: tuple, start: int, length: int,
                        shape: Optional[tuple[list[str], int]] = None) -> pl.DataFrame:
    """Rows start .. start + length - 1 (from 0) of the columns of a Parquet file whose
    headers (their units aside) are `names`, named so (a name the file has no column of
    left out): what open_chunks gives of those columns, for one range of rows. `shape`:
    the file's parquet_shape when the caller has it (a spilled file's ids and accounts are
    read again run by run, about 667 runs at 1 billion rows, and the footer grows with the
    file: 10 ms of CPU to read at 200M rows)."""
    import polars as pl
    raw, _ = shape if shape is not None else parquet_shape(path)
    named, _ = header_units(raw)
    chosen = [(r, n) for r, n in zip(raw, named) if n in names]
    if not chosen:
        return pl.DataFrame(height=length)
    frame = pl.scan_parquet(path).select([r for r, _ in chosen]).slice(start, length).collect()
    frame.columns = [n for _, n in chosen]
    return frame


def parquet_rows(path: Path, start: int, length: int) -> pl.DataFrame:
    """Rows start .. start + length - 1 (from 0) of a Parquet file, every column, named as
    open_chunks names them."""
    import polars as pl
    names, _ = header_units(parquet_shape(path)[0])
    frame = pl.scan_parquet(path).slice(start, length).collect()
    frame.columns = names
    return frame


def _parquet_chunks(path: Path, chunk_rows: int) -> Chunks:
    """Polars' own reader, streaming (`collect_batches`): frames of `chunk_rows`, memory
    bounded by a few of them whatever the file's row groups. PyArrow's `iter_batches`
    and `pl.from_arrow` read 1M rows in 0.087 s, this in 0.057 s (one file of 8 row
    groups), 0.140 s against 0.038 s in one row group (load 6, bench/README.md)."""
    import polars as pl
    written, total = parquet_shape(path)
    names, units = header_units(written)
    state = {"rows": 0}

    def frames():
        row = 1
        if not total:
            return
        for frame in pl.scan_parquet(path).collect_batches(chunk_size=chunk_rows):
            frame.columns = names
            state["rows"] += frame.height
            if frame.height:
                yield frame, row
                row += frame.height

    return Chunks(frames(), units, max(total, 1), lambda: state["rows"], lambda: total)


# ---------------------------------------------------------------- results
def write_results(path: Path, rows: list[dict]) -> None:
    fmt = format_of(path)
    explained = any("explanation" in r for r in rows)
    columns = list(FILE_COLUMNS) + (["explanation"] if explained else [])
    if fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as out:
            for r in rows:
                out.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
        return
    flat = []
    for r in rows:
        item = {c: r.get(c) for c in columns}
        item["flags"] = ";".join(r.get("flags") or [])
        item["counters"] = ";".join(r.get("counters") or [])
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


# ---------------------------------------------------------------- results as columns
def _preparing_pool() -> ThreadPoolExecutor:
    return pools.pool("write", pools.up_to(2))


def _kilograms(milligrams):
    """mg / 10**6, correctly rounded as Python's `/` (engine.Result.reduction_kg) gives it.

    Not Polars' `/ 1_000_000`: on long columns it multiplies by the reciprocal, and
    924193 mg came out as 0.9241929999999999 kg.
    """
    import polars as pl
    return pl.Series(milligrams.name, milligrams.to_numpy() / 1_000_000, dtype=pl.Float64)


_WHOLE_SECONDS = "%Y-%m-%dT%H:%M:%SZ"


def _result_columns(frame, ref, fmt: str):
    """A frame of engine results (engine.result.COLUMNS) -> the columns written (FILE_COLUMNS)."""
    import polars as pl
    t = pl.col("time")
    moment = pl.from_epoch(t, time_unit="us")
    if frame.select((t % 1_000_000 != 0).any()).item():  # as isoformat: a fraction if any
        time = (pl.when(t % 1_000_000 == 0).then(moment.dt.strftime(_WHOLE_SECONDS))
                .otherwise(moment.dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ")))
    elif fmt == "csv":  # formatted by write_csv's threads (_emit), not here on one
        time = moment
    elif fmt == "parquet" and _whole_seconds_in_range(frame):  # as text by _parquet_table
        time = t
    else:
        time = moment.dt.strftime(_WHOLE_SECONDS)
    if fmt == "jsonl":
        flags = pl.col("flags")
    elif frame.height and frame.get_column("flags").list.len().max():
        flags = pl.col("flags").list.join(";")
    else:  # no flag on any row (the usual case): joining a million empty lists took 70 ms
        flags = pl.lit(None, dtype=pl.String)
    if fmt == "jsonl":
        counters = pl.col("counters")
    elif frame.height and frame.get_column("counters").list.len().max():
        counters = pl.col("counters").list.join(";")
    else:
        counters = pl.lit(None, dtype=pl.String)
    computed = {
        "time": time, "flags": flags, "counters": counters,
        "reduction_kg": pl.col("reduction_mg").map_batches(_kilograms, return_dtype=pl.Float64),
        **{name: pl.lit(getattr(ref, f.name)) for name, f in zip(REF_COLUMNS, fields(MethodologyRef))},
    }
    # Parquet: the methodology's columns are added by ResultWriter as Arrow dictionaries
    # (one value, an index per row), not as a text repeated on every row
    columns = FILE_COLUMNS if fmt != "parquet" else FILE_COLUMNS[:-len(REF_COLUMNS)]
    out = frame.select([computed.get(name, pl.col(name)).alias(name) for name in columns])
    if fmt == "csv":  # an empty text is an empty cell, as the csv module writes it
        # (the methodology's columns are never empty)
        text = [c for c, t in out.schema.items() if t == pl.String and c not in REF_COLUMNS]
        out = out.with_columns(pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)).alias(c)
                               for c in text)
    return out


_FIRST_US, _LAST_US = -30_610_224_000_000_000, 253_402_300_799_000_000  # 1000-01-01, 9999-12-31T23:59:59


def _whole_seconds_in_range(frame) -> bool:
    """Every time of the frame a whole second of the years 1000 to 9999 (the fixed-width
    text `_iso_seconds` writes), or none at all."""
    import polars as pl
    t = pl.col("time")
    low, high = frame.select(t.min().alias("low"), t.max().alias("high")).row(0)
    return low is None or (_FIRST_US <= low and high <= _LAST_US)


def _iso_seconds(time):
    """Microseconds since the epoch (an Int64 Series, whole seconds, years 1000-9999) ->
    `YYYY-MM-DDTHH:MM:SSZ` as an Arrow string array, nulls kept: what
    `strftime(_WHOLE_SECONDS)` gives (tests/test_eval_small.py compares them), 20 bytes a
    row gathered by NumPy into one buffer: the day's 11 bytes from a table of the days
    the times span, the second's 9 from a table of a day's seconds. Polars' strftime took
    0.55 s of CPU for 1M times (issue 16)."""
    import numpy as np
    import pyarrow as pa

    n = len(time)
    valid = time.is_not_null().to_numpy()
    seconds = time.fill_null(0).to_numpy() // 1_000_000
    days = seconds // 86_400
    of_day = seconds - days * 86_400
    first = int(days[valid].min()) if valid.any() else 0
    last = int(days[valid].max()) if valid.any() else 0
    if last - first < 1 << 20:
        index, spanned = np.where(valid, days - first, 0), np.arange(first, last + 1)
    else:  # times over more than 2,800 years: a table of the days that occur
        spanned, index = np.unique(days, return_inverse=True)
    text = np.empty(n, dtype=[("day", "S11"), ("second", "S9")])
    text["day"] = _day_texts(spanned)[index]
    text["second"] = _second_texts()[of_day]
    offsets = pa.py_buffer(np.arange(0, 20 * n + 1, 20, dtype=np.int64))
    nulls = n - int(valid.sum())
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    return pa.Array.from_buffers(pa.large_string(), n, [bitmap, offsets, pa.py_buffer(text)],
                                 null_count=nulls)


def _digits(value, width: int):
    """Non-negative integers -> their decimal digits, zero-padded, as (n, width) bytes."""
    import numpy as np
    out = np.empty((len(value), width), dtype=np.uint8)
    for k in range(width):
        out[:, width - 1 - k] = 48 + value // 10 ** k % 10
    return out


def _day_texts(days):
    """Days since the epoch -> `YYYY-MM-DDT` (S11)."""
    import numpy as np
    day = np.asarray(days, dtype=np.int64).astype("datetime64[D]")
    month = day.astype("datetime64[M]")
    year = month.astype("datetime64[Y]").astype(np.int64) + 1970
    out = np.empty((len(day), 11), dtype=np.uint8)
    out[:, 0:4] = _digits(year, 4)
    out[:, 5:7] = _digits(month.astype(np.int64) % 12 + 1, 2)
    out[:, 8:10] = _digits((day - month).astype(np.int64) + 1, 2)
    out[:, [4, 7]], out[:, 10] = ord("-"), ord("T")
    return out.view("S11").ravel()


@lru_cache(maxsize=1)
def _second_texts():
    """A day's seconds -> `HH:MM:SSZ` (S9), 86,400 of them."""
    import numpy as np
    second = np.arange(86_400)
    out = np.empty((86_400, 9), dtype=np.uint8)
    out[:, 0:2] = _digits(second // 3600, 2)
    out[:, 3:5] = _digits(second // 60 % 60, 2)
    out[:, 6:8] = _digits(second % 60, 2)
    out[:, [2, 5]], out[:, 8] = ord(":"), ord("Z")
    return out.view("S9").ravel()


def _parquet_table(frame, ref):
    """A frame of engine results -> the Arrow table ResultWriter writes to Parquet: the
    columns of `_result_columns` (Polars' string views handed over without a copy), the
    time as text by `_iso_seconds` where it can, the methodology as `_ref_columns`."""
    import polars as pl
    import pyarrow as pa
    import pyarrow.compute as pc

    out = _result_columns(frame, ref, "parquet")
    table = out.to_arrow(compat_level=pl.CompatLevel.newest())
    columns = table.columns
    for name in _CODES:  # a few values each: their dictionaries built here, in the preparing
        at = table.column_names.index(name)  # threads, not by the one writing thread
        columns[at] = pc.dictionary_encode(columns[at].cast(pa.large_string()))
    if out.schema["time"] != pl.String:
        columns[table.column_names.index("time")] = _iso_seconds(out.get_column("time"))
    return pa.Table.from_arrays([*columns, *_ref_columns(ref, table.num_rows)],
                                names=[*table.column_names, *REF_COLUMNS])


def _compact_table(frame, ref):
    """A frame of engine results -> the Arrow table of compact Parquet (COMPACT_COLUMNS):
    Polars' columns handed over as they are (string views, no copy), the methodology in
    the schema's metadata; status and code dictionary-encoded by the writer. Against the
    19 columns of the full file, writing 5M results took 0.9-1.1 s of CPU instead of 2.8 s
    (load 5-6, one process); encoding status and code here instead (as _parquet_table
    does) took 0.1 s more, and importing pyarrow.compute for it 0.1-0.17 s of every run."""
    import polars as pl

    table = frame.select(COMPACT_COLUMNS).to_arrow(compat_level=pl.CompatLevel.newest())
    return table.replace_schema_metadata(
        {key: getattr(ref, f.name) for key, f in zip(COMPACT_METADATA, fields(MethodologyRef))})


def compact_metadata(path: Path) -> dict[str, str]:
    """The methodology of a compact result file (`tanpu eval --compact`): REF_COLUMNS ->
    its value, as a full file's rows carry it."""
    import pyarrow.parquet as pq

    stored = pq.read_schema(path).metadata or {}
    return {name: stored[key.encode()].decode() for name, key in zip(REF_COLUMNS, COMPACT_METADATA)
            if key.encode() in stored}


# ---------------------------------------------------------------- results, without Polars
def format_float(value: float) -> str:
    """A float as Polars writes it in CSV and JSON: the shortest digits that read back
    as the same float (repr's), placed as Rust's `ryu` places them (plain from 1e-5 up to
    1e16, else `d.ddde-7`; Polars adds `+` to a positive exponent). Checked against
    Polars on 60,000 floats (tests/test_eval_small.py)."""
    if value != value or value in (float("inf"), float("-inf")):
        return repr(value)
    text = repr(value)
    sign = "-" if text.startswith("-") else ""
    mantissa, _, exponent = text.lstrip("-").partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    if not digits:
        return sign + "0.0"
    k = int(exponent or 0) - len(fraction)  # value = digits * 10**k
    stripped = digits.rstrip("0")
    k += len(digits) - len(stripped)
    digits = stripped
    n = len(digits)
    point = n + k  # where the decimal point falls after the first digit's place
    if 0 <= k and point <= 16:
        out = digits + "0" * k + ".0"
    elif 0 < point <= 16:
        out = digits[:point] + "." + digits[point:]
    elif -5 < point <= 0:
        out = "0." + "0" * -point + digits
    else:
        e = point - 1
        out = (digits if n == 1 else digits[0] + "." + digits[1:]) + f"e{'-' if e < 0 else '+'}{abs(e)}"
    return sign + out


def _csv_cell(text: str) -> str:
    """Quoted as Polars' write_csv quotes: only where needed (, " CR LF)."""
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _iso_time(us) -> Optional[str]:
    if us is None:
        return None
    from .records import us_to_datetime

    return us_to_datetime(us).isoformat().replace("+00:00", "Z")


def result_lines(results, ref, fmt: str) -> Iterator[str]:
    """Results (engine.Result) as the lines ResultWriter writes for them, byte for byte
    (fmt "csv", "jsonl", or "stdout": the first columns as CSV), by plain Python: for a
    few records, where importing Polars would take longer than the whole run."""
    ref_values = dict(zip(REF_COLUMNS, (getattr(ref, f.name) for f in fields(MethodologyRef))))
    columns = SHORT_COLUMNS if fmt == "stdout" else FILE_COLUMNS
    if fmt != "jsonl":
        yield ",".join(columns) + "\n"
    for r in results:
        values = {}
        for name in columns:
            if name in ref_values:
                values[name] = ref_values[name]
            elif name == "time":
                values[name] = _iso_time(r.time)
            elif name == "reduction_kg":
                values[name] = r.reduction_mg / 1_000_000
            elif name in ("flags", "counters"):
                values[name] = list(getattr(r, name))
            else:
                values[name] = getattr(r, name)
        if fmt == "jsonl":
            yield "{" + ",".join(f'"{name}":{_json_value(value)}' for name, value in values.items()) + "}\n"
            continue
        cells = []
        for name, value in values.items():
            if value is None or value == "" or value == []:
                cells.append("")
            elif isinstance(value, list):
                cells.append(_csv_cell(";".join(value)))
            elif isinstance(value, float):
                cells.append(format_float(value))
            elif isinstance(value, int):
                cells.append(str(value))
            else:
                cells.append(_csv_cell(value))
        yield ",".join(cells) + "\n"


def _json_value(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, list):
        return "[" + ",".join(json.dumps(v, ensure_ascii=False) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def write_result_table(results, ref, path: Path, compact: bool = False) -> None:
    """result_table to a Parquet file, by ResultWriter (the same writer settings, the same
    temporary name renamed when whole)."""
    writer = ResultWriter(path, ref, compact=compact)
    try:
        writer.write_table(result_table(results, ref, compact))
        writer.close()
    except BaseException:
        writer.abort()
        raise


def write_result_lines(results, ref, path: Optional[Path], stream=None) -> None:
    """result_lines to a file (under a temporary name, renamed when whole, as
    ResultWriter does) or to `stream`."""
    if path is None:
        for line in result_lines(results, ref, "stdout"):
            stream.write(line)
        stream.flush()
        return
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        with open(partial, "w", encoding="utf-8", newline="") as out:
            out.writelines(result_lines(results, ref, format_of(path)))
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


# Parquet columns with few distinct values, dictionary-encoded; the others (row, id, account,
# time, amounts) plain: PyArrow tries a dictionary on every column by default and gives up
# on the long ones only after building it. Writing 1M results took 0.80 s instead of 1.35 s
# (best of 4, load 10), the file 11 % larger (bench/README.md, issue 16).
_FEW_VALUES = ["status", "code", "message", "flags", "counters", *REF_COLUMNS]
_CODES = ("status", "code", "message")
# the compact file's columns with min/max statistics: the numbers, not the text (writing
# 5.2M results, one thread, 2026-12-07, load 7-12: 0.94-0.97 s of CPU without the text
# columns' statistics against 1.07-1.17 s with them; the status and code alone 0.24
# against 0.34 s)
COMPACT_STATISTICS = ("reduction_mg", "points")
# the compact file's numbers as Parquet's DELTA_BINARY_PACKED (each page's differences,
# bit-packed), not compressed: Snappy over plain 64-bit values was a fifth of the writer's
# CPU and squeezed them to 3.6 and 2.5 bytes a row; packed they take 2.8 and 1.5, in half
# the CPU (5M results, one thread, 2026-12-07, load 8-12: reduction_mg 0.087 -> 0.046 s,
# points 0.085 -> 0.040 s). One of Parquet's standard encodings (PyArrow and Polars read
# the same values back, tests/test_cli_test_eval.py; docs/engine.md, "sixth round"); the
# text columns stay plain (or a dictionary) + Snappy.
COMPACT_ENCODINGS = {"reduction_mg": "DELTA_BINARY_PACKED", "points": "DELTA_BINARY_PACKED"}


def _compact_settings(schema) -> dict:
    """The compact file's writer settings beyond the dictionaries: statistics on the
    numbers only (COMPACT_STATISTICS), the numbers packed and not compressed
    (COMPACT_ENCODINGS), the rest compressed by Snappy, as before."""
    packed = {name: encoding for name, encoding in COMPACT_ENCODINGS.items() if name in schema.names}
    return {"write_statistics": list(COMPACT_STATISTICS), "column_encoding": packed,
            "compression": {name: "none" if name in packed else "snappy" for name in schema.names}}


def _ref_columns(ref, rows: int) -> list:
    """The methodology's columns (REF_COLUMNS) of `rows` results, as Arrow dictionary
    arrays: its one value and an index per row. Written as they are (a dictionary page and
    runs of zeros), not a 71-character hash copied a million times into a text column,
    then hashed back into a dictionary by the writer (issue 16: 0.23 s -> 0.10 s to hand
    1M results to PyArrow, and less to write; the file the same)."""
    import numpy as np
    import pyarrow as pa

    # from the buffer, not pa.array(ndarray): that looks for pandas types and imports
    # pandas where it is installed (0.17 s of a 10-record `tanpu eval` to Parquet)
    zeros = pa.Array.from_buffers(pa.int32(), rows, [None, pa.py_buffer(np.zeros(rows, dtype=np.int32))])
    def one(text: str):  # a string array of one value, from its buffers too
        data = text.encode("utf-8")
        offsets = np.array([0, len(data)], dtype=np.int32)
        return pa.Array.from_buffers(pa.string(), 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)])

    return [pa.DictionaryArray.from_arrays(zeros, one(getattr(ref, f.name)),
                                           safe=False)  # indices all 0: nothing to check
            for f in fields(MethodologyRef)]


def result_table(results, ref, compact: bool = False):
    """Results (engine.Result) as the Arrow table ResultWriter writes to Parquet for their
    frame (`_parquet_table`, or `_compact_table` when `compact`), by PyArrow alone: for a
    few records, where importing Polars and the batch engine would take longer than the
    whole run (issue 16: 10 records to Parquet, 0.5 s of CPU to 0.3 s). The text columns
    are Arrow's large strings where the batch path hands over Polars' string views: the
    same Parquet column (String), the same file read back (tests/test_eval_small.py)."""
    import pyarrow as pa

    results = list(results)
    names = COMPACT_COLUMNS if compact else FILE_COLUMNS[:-len(REF_COLUMNS)]
    joined = {}
    for name in ("flags", "counters"):  # as _result_columns: none anywhere, no text at all
        if any(getattr(r, name) for r in results):
            joined[name] = [";".join(getattr(r, name)) for r in results]
        else:
            joined[name] = [None] * len(results)
    columns = []
    for name in names:
        if name == "time":
            columns.append(_arrow_text([_iso_time(r.time) for r in results]))
        elif name in joined:
            columns.append(_arrow_text(joined[name]))
        elif name == "reduction_kg":
            columns.append(_arrow_numbers([r.reduction_mg / 1_000_000 for r in results], pa.float64()))
        elif name in ("id", "account", "status", "code", "message"):
            columns.append(_arrow_text([getattr(r, name) for r in results]))
        else:
            columns.append(_arrow_numbers([getattr(r, name) for r in results], pa.int64()))
    if compact:
        return pa.Table.from_arrays(columns, names=list(names)).replace_schema_metadata(
            {key: getattr(ref, f.name) for key, f in zip(COMPACT_METADATA, fields(MethodologyRef))})
    return pa.Table.from_arrays([*columns, *_ref_columns(ref, len(results))],
                                names=[*names, *REF_COLUMNS])


# Arrays built from their buffers: pa.array(list) imports pandas where it is installed
# (looking for its types), 0.17 s of a 10-record run.
def _validity(values: list):
    """(Arrow's validity bitmap of `values`, None where every value is there; null count)."""
    import numpy as np
    import pyarrow as pa

    valid = np.array([v is not None for v in values], dtype=bool)
    nulls = len(values) - int(valid.sum())
    return (pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None), nulls


def _arrow_text(values: list):
    import numpy as np
    import pyarrow as pa

    data = [v.encode("utf-8") if v is not None else b"" for v in values]
    offsets = np.zeros(len(data) + 1, dtype=np.int64)
    np.cumsum(np.array([len(d) for d in data], dtype=np.int64), out=offsets[1:])
    bitmap, nulls = _validity(values)
    return pa.Array.from_buffers(pa.large_string(), len(data),
                                 [bitmap, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))],
                                 null_count=nulls)


def _arrow_numbers(values: list, kind):
    import numpy as np
    import pyarrow as pa

    dtype = np.float64 if kind == pa.float64() else np.int64
    filled = np.array([0 if v is None else v for v in values], dtype=dtype)
    bitmap, nulls = _validity(values)
    return pa.Array.from_buffers(kind, len(values), [bitmap, pa.py_buffer(filled)], null_count=nulls)


def parquet_writer(path: Path, schema, **options):
    """PyArrow's Parquet writer of `path` with pyarrow.parquet.ParquetWriter's settings
    (`options` added): the class that one wraps, pyarrow._parquet.ParquetWriter, made
    directly, because importing pyarrow.parquet imports pyarrow.fs, its cloud file
    systems and ssl: 18 ms of CPU of every `tanpu eval` to Parquet (0.040 s against 0.022
    s after NumPy, median of 15, 2026-12-07, load 14; issue 16, startup). The same C++
    writer and properties: the same bytes (tests/test_eval_small.py compares the files
    with pyarrow.parquet's). Where a PyArrow lacks that class or it takes other arguments,
    the public one. Both take write_table(table), add_key_value_metadata(mapping) and
    close()."""
    # pyarrow.parquet.ParquetWriter's defaults, as it passes them on
    settings = dict(version="2.6", compression="snappy", write_statistics=True,
                    use_deprecated_int96_timestamps=False, writer_engine_version="V2",
                    data_page_version="1.0", use_compliant_nested_type=True, use_dictionary=True)
    settings.update(options)
    try:
        from pyarrow._parquet import ParquetWriter
        return ParquetWriter(str(path), schema, **settings)
    except (ImportError, TypeError):  # pragma: no cover - a PyArrow whose private class differs
        import pyarrow.parquet as pq
        return pq.ParquetWriter(str(path), schema, **options)


class WrittenPages:
    """The page cache of a result file being written, let go behind the writer: each time
    the file has grown by STEP, the kernel is asked (posix_fadvise DONTNEED) to write its
    pages out and to drop those already written out, from where the call before began
    (so the pages whose writing out that call started, clean by now, are dropped). A
    result file is written once and not read by the run: at a billion compact results
    (19 GB) beside their input (9.3 GB) the cache of 23 GiB overflowed, and in the run's
    last minutes the kernel spent 57-86 % of the CPU reclaiming it while the input was
    read from disk again (docs/performance.md, Session 19, quiet); with this the result
    file holds about 2 STEP of the cache at any time (docs/engine.md, "sixth round").

    A descriptor of its own on the file (the advice is about the file, not the
    descriptor): PyArrow's and Python's file objects are not touched. Where posix_fadvise
    is missing (not Linux) or fails, nothing is done: the pages are only a cache."""

    STEP = 64 << 20

    def __init__(self, path: Path):
        self.path = path
        self.fd: Optional[int] = None
        self.kicked = 0   # the end of the range advised last
        self.begun = 0    # where that call's range began

    def grown(self) -> None:
        if not hasattr(os, "posix_fadvise"):  # pragma: no cover - not Linux
            return
        try:
            if self.fd is None:
                self.fd = os.open(self.path, os.O_RDONLY)
            size = os.fstat(self.fd).st_size
            if size - self.kicked < self.STEP:
                return
            os.posix_fadvise(self.fd, self.begun, size - self.begun, os.POSIX_FADV_DONTNEED)
            self.begun, self.kicked = self.kicked, size
        except OSError:  # pragma: no cover - the cache is left as it is
            pass

    def close(self) -> None:
        """The descriptor closed; the next `grown` (a file written anew) starts over."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.kicked = self.begun = 0


class ResultWriter:
    """Writes frames of results as they come: to a file (.csv, .jsonl, .parquet), or the
    first columns as CSV to a text stream (stdout).

    Turning a frame into the written columns (times as text, kilograms) is Polars work
    that releases the GIL, so the next frames are prepared in threads; each is then
    written by one writing thread (PyArrow's Parquet writer and Polars' CSV writer release
    the GIL too), in the order they came, while the caller evaluates the next chunk.
    """

    AHEAD = 2  # frames prepared or being written ahead of the caller

    def __init__(self, path: Optional[Path], ref, stream=None, compact: bool = False):
        """A file is written under a temporary name beside it and renamed when `close`
        ends, so the final path holds a whole result file or none (a full disk, a kill);
        `abort` removes what was written. `compact`: a Parquet file of COMPACT_COLUMNS
        (`_compact_table`)."""
        self.final = path
        self.path = (path.with_name(f".{path.name}.partial-{os.getpid()}")
                     if path is not None else None)
        self.ref = ref
        self.fmt = format_of(path) if path is not None else "stdout"
        if compact and self.fmt != "parquet":
            raise ValueError("compact results are written to Parquet only")
        self.compact = compact
        self.stream = stream
        self._handle = None
        self._parquet = None
        self._parquet_schema = None
        self._header = True
        self._pending: deque = deque()
        self._writing: Optional[ThreadPoolExecutor] = None
        self._pages = WrittenPages(self.path) if self.path is not None else None

    def write(self, frame) -> None:
        fmt = "csv" if self.fmt == "stdout" else self.fmt
        prepare = (_compact_table if self.compact else _parquet_table) if fmt == "parquet" else \
            (lambda f, r: _result_columns(f, r, fmt))
        prepared = _preparing_pool().submit(prepare, frame, self.ref)
        if self._writing is None:
            self._writing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tanpu-written")
        self._pending.append(self._writing.submit(lambda: self._emit(prepared.result())))
        while len(self._pending) > self.AHEAD:
            self._pending.popleft().result()

    def write_table(self, table) -> None:
        """A Parquet file's table already prepared (`result_table`'s, the small path):
        written as `write` writes a prepared frame, without Polars."""
        if self.fmt != "parquet":
            raise ValueError("a prepared table is written to Parquet only")
        self._flush()
        self._emit(table)

    def _flush(self) -> None:
        while self._pending:
            self._pending.popleft().result()
        if self._writing is not None:
            self._writing.shutdown()
            self._writing = None

    def _emit(self, out) -> None:
        if self.fmt == "stdout":
            self.stream.write(out.select(SHORT_COLUMNS).write_csv(
                include_header=self._header, datetime_format=_WHOLE_SECONDS))
            self._header = False
            return
        if self.fmt == "parquet":
            table = out  # _parquet_table's
            if self._parquet is None:
                # store_schema=False: no Arrow schema in the file, so that readers see
                # text (Parquet's String), not the dictionaries and views written here
                # a compact file's statistics (min, max) only where they can skip
                # anything: on the numbers; on the text columns (ids and accounts in no
                # order, a few statuses and codes in every row group) they were 15% of
                # the writer's CPU (COMPACT_STATISTICS)
                self._parquet = parquet_writer(self.path, table.schema,
                                               use_dictionary=list(_CODES[:2]) if self.compact
                                               else _FEW_VALUES, store_schema=False,
                                               **(_compact_settings(table.schema) if self.compact else {}))
                self._parquet_schema = table.schema
                if self.compact:  # kept apart: store_schema=False drops the schema's metadata
                    self._parquet.add_key_value_metadata(table.schema.metadata)
            if not table.schema.equals(self._parquet_schema):  # (Table.cast imports pyarrow.compute)
                table = table.cast(self._parquet_schema)
            self._parquet.write_table(table)
            self._pages.grown()
            return
        if self._handle is None:
            self._handle = open(self.path, "wb")
        if self.fmt == "csv":
            out.write_csv(self._handle, include_header=self._header, datetime_format=_WHOLE_SECONDS)
        else:
            out.write_ndjson(self._handle)
        self._header = False
        self._handle.flush()  # what was written is in the file: its pages can be let go
        self._pages.grown()

    def close(self) -> None:
        self._flush()
        if self.fmt == "parquet" and self._parquet is None:
            from .batch.engine import results_frame
            self._emit((_compact_table if self.compact else _parquet_table)(results_frame([]), self.ref))
        if self._parquet is not None:
            self._parquet.close()
        if self.fmt in ("csv", "jsonl") and self._handle is None:
            self._handle = open(self.path, "wb")
            if self.fmt == "csv":
                from .batch.engine import results_frame
                _result_columns(results_frame([]), self.ref, "csv").write_csv(
                    self._handle, datetime_format=_WHOLE_SECONDS)
        if self._handle is not None:
            self._handle.close()
        if self._pages is not None:
            self._pages.close()
        if self.fmt == "stdout":
            if self._header:
                self.stream.write(",".join(SHORT_COLUMNS) + "\n")
            self.stream.flush()  # a full disk or a closed pipe is an error now, not at exit
        else:
            os.replace(self.path, self.final)

    def restart(self) -> None:
        """Discards what was written: the frames come again from the first (the engine's
        `rewind`, BatchEngine.evaluate_file). A file only: what went to a stream is gone."""
        if self.path is None:
            raise ValueError("what was written to a stream cannot be taken back")
        self.abort()
        self._pending.clear()
        self._handle = None
        self._parquet = None
        self._header = True

    def abort(self) -> None:
        """Removes the partial file (the run failed)."""
        for waiting in self._pending:  # what is being written ends before the file closes
            waiting.cancel()
        if self._writing is not None:
            self._writing.shutdown(wait=True, cancel_futures=True)
            self._writing = None
        if self._pages is not None:
            self._pages.close()
        for closing in (self._handle, self._parquet):
            try:
                if closing is not None:
                    closing.close()
            except Exception:  # noqa: BLE001 - what failed is being reported already
                pass
        if self.path is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass


# ---------------------------------------------------------------- datasets
@dataclass(frozen=True)
class DatasetFile:
    """One file of a dataset: where it is, its path below the dataset's base folder (its
    partition in the output), and the values of the hive partitions its path names
    (`day=2026-01-01/part-0.parquet`: {"day": "2026-01-01"})."""

    path: Path
    relative: Path
    partitions: tuple[tuple[str, str], ...] = ()


_GLOB = re.compile(r"[*?\[]")


def is_dataset(spec: str) -> bool:
    """A folder or a glob (not one file)."""
    return Path(spec).is_dir() or (bool(_GLOB.search(spec)) and not Path(spec).is_file())


def open_dataset(spec: str) -> list[DatasetFile]:
    """A folder (every record file below it, recursively) or a glob -> its files, sorted
    by path (the order they are read in; row numbers restart at 1 in each).

    Partition values come from the folder names by PyArrow's hive partitioning
    (`pyarrow.dataset.HivePartitioning`: `key=value`, URL-decoded, the null partition);
    the files are read by this module's readers, so that a row of a file in a dataset is
    read exactly as the same file given alone. Hidden files and folders (`.x`, `_x`:
    `_SUCCESS`, the partial files of an interrupted run) hold no records.
    """
    import glob as globbing

    base = Path(spec)
    if base.is_dir():
        candidates = [p for p in base.rglob("*") if p.is_file()]
    else:
        candidates = [Path(p) for p in globbing.glob(spec, recursive=True) if Path(p).is_file()]
        fixed = _GLOB.split(spec, maxsplit=1)[0]  # the folder before the first wildcard
        base = Path(fixed) if fixed.endswith(os.sep) else Path(fixed).parent
    files = sorted(p for p in candidates
                   if p.suffix.lower() in FORMATS
                   and not any(part.startswith((".", "_")) for part in p.relative_to(base).parts))
    if not files:
        raise FileFormatError(f"{spec}: no record files (.csv, .jsonl, .parquet) found")
    return [DatasetFile(path, path.relative_to(base), _hive_keys(path.relative_to(base)))
            for path in files]


def _hive_keys(relative: Path) -> tuple[tuple[str, str], ...]:
    folders = [part for part in relative.parts[:-1] if "=" in part]
    if not folders:
        return ()
    import pyarrow as pa
    import pyarrow.dataset as ds

    names = [part.split("=", 1)[0] for part in folders]
    parse = ds.HivePartitioning(pa.schema([(name, pa.string()) for name in names])).parse
    keys = ds.get_partition_keys(parse("/".join(folders) + "/"))  # folders end with a slash
    return tuple((name, keys.get(name)) for name in names)


def with_partitions(frame: pl.DataFrame, partitions) -> pl.DataFrame:
    """A file's rows with its hive partition values as text columns (a column the file
    itself has wins: the folder name repeats what the rows say)."""
    import polars as pl
    added = [pl.lit(value, dtype=pl.String).alias(name) for name, value in partitions
             if name not in frame.columns]
    return frame.with_columns(added) if added else frame
