"""Reading activity-record files and writing result files (CSV, JSON Lines, Parquet).

The format comes from the extension. A column header may carry the unit of its plain
numbers, `distance[km]` or `distance (km)`; without it every quantity cell must carry its
own unit (`8.2 km`), so that no number is silently taken to be kilometres.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
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
