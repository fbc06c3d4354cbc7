"""Activity records that a person pastes or uploads in the web UI (try-it panel, impact
preview), read the way `tanpu eval` reads files (engine/recordfiles.py): CSV with units in
the headers (`distance[km]`), JSON Lines, a JSON array of objects, or Parquet.

Pure: no Flask, no database.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from engine.recordfiles import FORMATS, FileFormatError, open_records

MAX_BYTES = 5 * 1024 * 1024  # an upload or a paste
MAX_RECORDS = 20_000


class RecordsError(ValueError):
    """The records cannot be read at all (not one bad row: that is an `invalid` result)."""


@dataclass
class Records:
    rows: list[dict]
    column_units: dict[str, str] = field(default_factory=dict)
    name: str = ""  # where they came from: a file name, "pasted", a sample's name

    def __len__(self) -> int:
        return len(self.rows)


def _sniff(text: str) -> str:
    head = text.lstrip("\ufeff \t\r\n")
    if head.startswith("["):
        return "json"
    if head.startswith("{"):
        return "jsonl"
    return "csv"


def _from_path(path: Path, name: str) -> Records:
    try:
        source = open_records(path)
        rows = []
        for row in source.rows:
            rows.append(row)
            if len(rows) > MAX_RECORDS:
                raise RecordsError(f"more than {MAX_RECORDS} records: try fewer")
        return Records(rows, dict(source.column_units), name)
    except FileFormatError as error:
        raise RecordsError(str(error)) from None
    except (UnicodeDecodeError, OSError) as error:
        raise RecordsError(f"{name}: cannot be read ({type(error).__name__}: {error})") from None
    except RecordsError:
        raise
    except Exception as error:  # a malformed Parquet file, a CSV the csv module refuses
        raise RecordsError(f"{name}: cannot be read ({type(error).__name__}: {error})") from None


def from_path(path: Path) -> Records:
    return _from_path(Path(path), Path(path).name)


def from_bytes(data: bytes, filename: str = "") -> Records:
    """An uploaded file; the format comes from its extension, else from its content."""
    if len(data) > MAX_BYTES:
        raise RecordsError(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MB")
    suffix = Path(filename or "").suffix.lower()
    if suffix not in FORMATS:
        try:
            return from_text(data.decode("utf-8-sig"), filename or "upload")
        except UnicodeDecodeError:
            raise RecordsError("the file is neither UTF-8 text nor .parquet") from None
    if FORMATS[suffix] != "parquet":
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise RecordsError(f"{filename}: not UTF-8 text") from None
        if suffix == ".json":
            return from_text(text, filename)
    handle, name = tempfile.mkstemp(suffix=suffix)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        return _from_path(Path(name), filename)
    finally:
        os.unlink(name)


def from_text(text: str, name: str = "pasted") -> Records:
    """Pasted records: a JSON array of objects, JSON Lines, or CSV with a header row."""
    if len(text.encode("utf-8")) > MAX_BYTES:
        raise RecordsError(f"more than {MAX_BYTES // (1024 * 1024)} MB of records")
    if not text.strip():
        raise RecordsError("no records: paste CSV (with a header row), JSON Lines or a JSON array")
    kind = _sniff(text)
    if kind == "json":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise RecordsError(f"not valid JSON: {error.msg} at line {error.lineno} "
                               f"column {error.colno}") from None
        return from_objects(value, name)
    if kind == "jsonl":  # one object holding `records`: the API's request body
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict) and isinstance(value.get("records"), list):
            return from_objects(value, name)
    suffix = ".jsonl" if kind == "jsonl" else ".csv"
    handle, path = tempfile.mkstemp(suffix=suffix)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text.lstrip("\ufeff"))
        found = _from_path(Path(path), name)
    finally:
        os.unlink(path)
    if not found.rows:
        raise RecordsError("no records: CSV needs a header row and at least one record")
    return found


def from_objects(value, name: str = "json") -> Records:
    """A JSON value that should be a list of objects; a non-object element becomes a row
    the engine reports as invalid (with its row number)."""
    if isinstance(value, dict) and isinstance(value.get("records"), list):
        value = value["records"]
    if not isinstance(value, list):
        raise RecordsError("records must be a JSON array of objects")
    if len(value) > MAX_RECORDS:
        raise RecordsError(f"more than {MAX_RECORDS} records: try fewer")
    rows = [row if isinstance(row, dict) else {"__invalid__": "not a JSON object"}
            for row in value]
    return Records(rows, {}, name)


def bundled_samples_folder() -> Optional[Path]:
    folder = Path(__file__).resolve().parent.parent / "methodologies" / "samples"
    return folder if folder.is_dir() else None
