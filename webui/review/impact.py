"""The impact preview of a new version: the same records evaluated by the previous
(published) version and by the new one, the change in total reduction and points, and the
records whose result changed.

Pure (no Flask, no database). The records must be ones the methodology applies to
(issue 15: a new e-bike methodology previewed on another methodology's sample reported
"no record changed" with 452 of 456 rows not applicable). `preview_records` chooses, in
this order:

1. `ledger`: the records credited under the methodology in the last 30 days, anonymised
   (registry.ledger.recent_records; the caller reads them);
2. `sample`: its bundled sample file (methodologies/samples/<file>.csv), or the sample
   whose columns match it, when most of its rows apply (at least APPLIES_AT_LEAST);
3. `generated`: records made from its input schema, across every choice and the bounds.

The preview says which it used and how many rows the new version applies to.

    records, kind = preview_records(new_methodology, new_source, ledger_rows)
    preview = impact(old_source, new_source, records, kind=kind)
    preview.delta_reduction_mg, preview.changed, preview.applied   # what the page shows
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from engine import Result
from engine.explain import written_number
from engine.result import INVALID, NOT_APPLICABLE

from .. import evaluation
from ..records import Records, bundled_samples_folder, from_path

_DECLARES = re.compile(r"^\s*methodology\s+([a-z0-9][a-z0-9._-]*)\s", re.MULTILINE)


@dataclass
class SideTotals:
    ref: Optional[dict]  # {id, version, content_hash}; None: no such side
    totals: Optional[evaluation.Totals]

    def to_dict(self) -> dict:
        return {"ref": self.ref, "totals": self.totals.to_dict() if self.totals else None}


@dataclass
class ChangedRecord:
    row: int
    id: str
    account: str
    old: Optional[dict]  # status, code, reduction_mg, points, bonus
    new: dict

    @property
    def delta_reduction_mg(self) -> int:
        return _counted_mg(self.new) - _counted_mg(self.old)

    @property
    def delta_points(self) -> int:
        return _counted_points(self.new) - _counted_points(self.old)

    def to_dict(self) -> dict:
        return {"row": self.row, "id": self.id, "account": self.account, "old": self.old,
                "new": self.new, "delta_reduction_mg": self.delta_reduction_mg,
                "delta_points": self.delta_points}


def _counted_mg(outcome: Optional[dict]) -> int:
    if not outcome or outcome["status"] not in evaluation.CREDIT_STATUSES:
        return 0
    return outcome["reduction_mg"]


def _counted_points(outcome: Optional[dict]) -> int:
    if not outcome or outcome["status"] not in evaluation.CREDIT_STATUSES:
        return 0
    return outcome["points"] + outcome["bonus"]


def _outcome(r: Result) -> dict:
    return {"status": r.status, "code": r.code, "message": r.message,
            "reduction_mg": r.reduction_mg, "points": r.points, "bonus": r.bonus}


@dataclass
class Impact:
    records_name: str
    records: int
    old: SideTotals
    new: SideTotals
    changed: list[ChangedRecord] = field(default_factory=list)  # the first `limit`
    changed_count: int = 0
    error: str = ""  # why there is no preview (the records cannot be read, ...)
    kind: str = "upload"  # ledger | sample | generated | upload
    applied: Optional[int] = None  # rows the new version applies to (not n/a, not invalid)

    @property
    def delta_reduction_mg(self) -> Optional[int]:
        if self.old.totals is None or self.new.totals is None:
            return None
        return self.new.totals.reduction_mg - self.old.totals.reduction_mg

    @property
    def delta_points(self) -> Optional[int]:
        if self.old.totals is None or self.new.totals is None:
            return None
        return self.new.totals.points - self.old.totals.points

    @property
    def delta_percent(self) -> Optional[float]:
        delta = self.delta_reduction_mg
        if delta is None or not self.old.totals.reduction_mg:
            return None
        return 100.0 * delta / self.old.totals.reduction_mg

    def to_dict(self) -> dict:
        return {"records_name": self.records_name, "records": self.records,
                "old": self.old.to_dict(), "new": self.new.to_dict(),
                "delta_reduction_mg": self.delta_reduction_mg,
                "delta_reduction_kg": (self.delta_reduction_mg / 1_000_000
                                       if self.delta_reduction_mg is not None else None),
                "delta_points": self.delta_points, "delta_percent": self.delta_percent,
                "changed_count": self.changed_count,
                "changed": [c.to_dict() for c in self.changed], "error": self.error,
                "kind": self.kind, "applied": self.applied}


def _ref(engine) -> dict:
    return {"id": engine.ref.id, "version": engine.ref.version,
            "content_hash": engine.ref.content_hash}


def _applied(results: list[Result]) -> int:
    return sum(1 for r in results if r.status not in (NOT_APPLICABLE, INVALID))


def impact(old_source: Optional[str], new_source: str, records: Records, *,
           limit: int = 200, kind: str = "upload") -> Impact:
    """Evaluates `records` with both versions (old_source None: there is no previous
    version, only the new totals). Records are matched by their row."""
    empty = SideTotals(None, None)
    try:
        new_engine = evaluation.engine_for(new_source)
    except ValueError as error:
        return Impact(records.name, len(records), empty, empty,
                      error=f"the new version cannot be evaluated: {error}")
    new_results = evaluation.evaluate(new_engine, records)
    new_side = SideTotals(_ref(new_engine), evaluation.totals(new_results))
    applied = _applied(new_results)
    if old_source is None:
        return Impact(records.name, len(records), empty, new_side, kind=kind, applied=applied)
    try:
        old_engine = evaluation.engine_for(old_source)
    except ValueError as error:
        return Impact(records.name, len(records), empty, new_side,
                      error=f"the previous version cannot be evaluated: {error}", kind=kind,
                      applied=applied)
    old_results = evaluation.evaluate(old_engine, records)
    old_side = SideTotals(_ref(old_engine), evaluation.totals(old_results))
    changed = []
    for old, new in zip(old_results, new_results):
        a, b = _outcome(old), _outcome(new)
        if a != b:
            changed.append(ChangedRecord(new.row, new.id, new.account or old.account, a, b))
    return Impact(records.name, len(records), old_side, new_side, changed[:limit], len(changed),
                  kind=kind, applied=applied)


# ---------------------------------------------------------------- the bundled samples
def _declared_id(path: Path) -> Optional[str]:
    try:
        match = _DECLARES.search(path.read_text(encoding="utf-8"))
    except OSError:
        return None
    return match.group(1) if match else None


def _sample_headers(path: Path) -> set[str]:
    from engine.recordfiles import split_header
    try:
        with open(path, encoding="utf-8-sig") as handle:
            first = handle.readline()
    except OSError:
        return set()
    return {split_header(h)[0] for h in first.strip().split(",") if h}


def sample_for(methodology, samples: Optional[Path] = None) -> Optional[Path]:
    """The bundled sample file of a methodology (IR): the one named after the bundled
    source that declares the same id; else the sample whose columns cover the most of
    its inputs (all of the required ones), e.g. a copy of a bundled methodology under
    another id."""
    samples = samples or bundled_samples_folder()
    if samples is None or methodology is None:
        return None
    methodologies = samples.parent
    wanted = methodology.metadata.id
    for source in sorted(methodologies.glob("*.tanpu")):
        if _declared_id(source) == wanted and (samples / f"{source.stem}.csv").is_file():
            return samples / f"{source.stem}.csv"
    inputs = {spec.name for spec in methodology.inputs}
    required = {spec.name for spec in methodology.inputs if spec.required}
    best, best_score = None, 0
    for path in sorted(samples.glob("*.csv")):
        headers = _sample_headers(path)
        if not required <= headers:
            continue
        score = len(inputs & headers) * 100 - len(headers - inputs - {"id", "account", "time"})
        if score > best_score:
            best, best_score = path, score
    return best


def sample_records(methodology) -> Optional[Records]:
    path = sample_for(methodology)
    if path is None:
        return None
    records = from_path(path)
    records.name = f"methodologies/samples/{path.name}"
    return records


# ---------------------------------------------------------------- choosing the records
APPLIES_AT_LEAST = 0.5  # a sample of another methodology is used when this share applies
GENERATED = 240


def generated_records(methodology, count: int = GENERATED) -> Records:
    """Records made from the methodology's input schema: every choice in turn, numbers
    spread across their bounds (or 1 to 50 without them), times over the 30 days from its
    `effective from`, booleans alternating. Deterministic, so the preview is the same on
    every page load."""
    meta = methodology.metadata
    start = dt.datetime.combine(meta.effective_from or dt.date.today(), dt.time(7, 0))
    column_units: dict[str, str] = {}
    rows = []
    for i in range(count):
        row: dict = {"id": f"gen-{i + 1}", "account": f"gen-acct-{i % 24 + 1}",
                     "time": (start + dt.timedelta(hours=3 * i + i % 5)).isoformat()}
        for n, spec in enumerate(methodology.inputs):
            kind = spec.type.kind.name
            step = (i * (2 * n + 3) + n) % 11 / 10  # 0.0 .. 1.0, each input its own order
            if kind == "CHOICE":
                choices = spec.type.choices
                row[spec.name] = choices[(i + n) % len(choices)] if choices else ""
            elif kind == "BOOLEAN":
                row[spec.name] = (i + n) % 2 == 0
            elif kind in ("QUANTITY", "INTEGER"):
                low = spec.low if spec.low is not None else None
                high = spec.high if spec.high is not None else None
                unit = spec.type.unit.text if spec.type.dimension else ""
                if low is None and high is None:
                    value_si = None
                    value = 1 + 49 * step
                else:
                    lo = float(low) if low is not None else 0.0
                    hi = float(high) if high is not None else (lo * 10 if lo > 0 else lo + 100)
                    value_si = lo + (hi - lo) * (0.02 + 0.96 * step)
                    value = written_number(value_si, unit) if unit else value_si
                if kind == "INTEGER":
                    value = int(round(value))
                else:
                    value = round(float(value), 3)
                    if unit:
                        column_units[spec.name] = unit
                row[spec.name] = value
            elif kind == "DATETIME":
                row[spec.name] = (start + dt.timedelta(hours=3 * i, minutes=10 + 7 * n)).isoformat()
            elif kind == "DATE":
                row[spec.name] = (start.date() + dt.timedelta(days=i % 30)).isoformat()
            else:
                row[spec.name] = f"t{i % 7}"
        rows.append(row)
    return Records(rows, column_units, "generated from the input schema")


def preview_records(methodology, source: str,
                    ledger_rows: Optional[list[dict]] = None) -> tuple[Optional[Records], str]:
    """The records to preview a version on, and which kind they are (see the module's
    docstring): (records, "ledger" | "sample" | "generated")."""
    if ledger_rows:
        return Records(list(ledger_rows), {}, "ledger: credited in the last 30 days"), "ledger"
    sample = sample_records(methodology)
    if sample is not None:
        own = _declared_id_of_sample(sample) == methodology.metadata.id
        if own:
            return sample, "sample"
        try:
            results = evaluation.evaluate(evaluation.engine_for(source), sample)
        except ValueError:
            results = []
        if results and _applied(results) >= APPLIES_AT_LEAST * len(results):
            return sample, "sample"
    if methodology is None or not methodology.inputs:
        return None, ""
    return generated_records(methodology), "generated"


def _declared_id_of_sample(records: Records) -> Optional[str]:
    folder = bundled_samples_folder()
    if folder is None or not records.name.startswith("methodologies/samples/"):
        return None
    stem = Path(records.name).stem
    return _declared_id(folder.parent / f"{stem}.tanpu")
