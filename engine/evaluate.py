"""Evaluating records with a compiled methodology: the engine's public entry point.

Pure: records in, results out. Files, progress bars and databases are the callers'.
"""

from __future__ import annotations

import copy
from typing import Iterable, Mapping, Optional

from dsl.ir import ast as ir
from dsl.ir.printer import content_hash

from . import cross_record, history, records
from .gc_pause import cycle_collector_paused
from .records import RecordError, Schema
from .result import MethodologyRef, Result, invalid
from .scalar import ScalarProgram


class Engine:
    """A methodology compiled for evaluation. Immutable; safe to share between threads."""

    def __init__(self, methodology: ir.Methodology):
        self.methodology = methodology
        self.program = ScalarProgram(methodology)
        self.schema = Schema.of(methodology)
        self.reader = records.reader(self.schema)  # shared with records.ingest
        meta = methodology.metadata
        self.ref = MethodologyRef(meta.id, meta.version, content_hash(methodology))

    # ------------------------------------------------------------ one record
    def evaluate_values(self, values: dict, explain: bool = False, row: Optional[int] = None
                        ) -> Result:
        """Per-record formulas only (no cross-record rules) on ingested values."""
        if explain:
            trace = []
            verdict = self.program.run_traced(values, trace)
        else:
            trace = None
            verdict = self.program.run_plain(values)
        status, code, message, reduction_mg, points, baseline_mg, project_mg, leakage_mg, amounts = verdict
        return Result(values["id"], values["account"], values["time"], status, code, message,
                      reduction_mg, points, 0, baseline_mg, project_mg, leakage_mg, (), (), row,
                      trace, values, amounts)

    def recompute_points(self, result: Result, reduction_mg: int) -> int:
        return self.program.run(result.values, None, reduction_mg)[4]  # the verdict's points

    def recomputing_by(self, recompute_points) -> "Engine":
        """This engine with another `recompute_points(result, capped mg)`, for results
        whose `values` hold only what the cross-record rules read (the batch engine's
        per-record results, engine/batch/per_record.py: their points are recomputed from
        the record as sent, read again, not by these formulas on `values`). A shallow copy: the
        compiled program, schema and reader are shared, this engine is left as it is."""
        other = copy.copy(self)
        other.recompute_points = recompute_points
        return other

    # ------------------------------------------------------------ many records
    def evaluate(self, raw_records: Iterable[Mapping], *, explain: bool = False,
                 column_units: Optional[Mapping[str, str]] = None, first_row: int = 1,
                 state: Optional[dict] = None, per_record_only: bool = False) -> list[Result]:
        """Reads, evaluates and applies the cross-record rules to a batch of records.

        A record that cannot be read becomes an `invalid` result with its row number and
        the reason; the others are evaluated. `state` (account -> engine.state.AccountState):
        the accounts' prior state, left as their posterior. `per_record_only`: the
        per-record formulas only (the ledger applies the rules with the stored state).
        """
        if self.histories:
            return self._evaluate_with_history(raw_records, explain, column_units, first_row,
                                               state, per_record_only)
        read, evaluate_values = self.reader.read, self.evaluate_values
        results = []
        with cycle_collector_paused():
            for row, raw in enumerate(raw_records, start=first_row):
                try:
                    values = read(raw, f"row-{row}", column_units)
                except RecordError as error:
                    fields = raw if isinstance(raw, Mapping) else {}
                    results.append(invalid(row, str(fields.get("id") or f"row-{row}"),
                                           str(fields.get("account") or ""),
                                           f"{error.field}: {error.reason}"))
                    continue
                results.append(evaluate_values(values, explain, row))
            if not per_record_only:
                self._cross_record(results, explain, state)
        return results

    def _evaluate_with_history(self, raw_records, explain, column_units, first_row, state,
                               per_record_only) -> list[Result]:
        """evaluate() of a methodology with history windows: every record is read first,
        the windows are computed over them all (engine/history.py), then the formulas."""
        read = self.reader.read
        slots: list = []
        with cycle_collector_paused():
            for row, raw in enumerate(raw_records, start=first_row):
                try:
                    slots.append((row, read(raw, f"row-{row}", column_units)))
                except RecordError as error:
                    fields = raw if isinstance(raw, Mapping) else {}
                    slots.append(invalid(row, str(fields.get("id") or f"row-{row}"),
                                         str(fields.get("account") or ""),
                                         f"{error.field}: {error.reason}"))
            history.apply([s[1] for s in slots if isinstance(s, tuple)], self.histories, state,
                          self.program.subjects)
            results = [self.evaluate_values(s[1], explain, s[0]) if isinstance(s, tuple) else s
                       for s in slots]
            if not per_record_only:
                self._cross_record(results, explain, state)
        return results

    @property
    def histories(self):
        return self.program.plan.rules.histories

    def apply_history(self, results: list[Result], state: Optional[dict] = None) -> None:
        """Evaluates again, in place, results whose history windows were computed without
        the accounts' stored state (the ledger evaluates each request per record, then
        judges it with the state it has locked): the windows from `state` (left updated),
        then the formulas."""
        if not self.histories:
            return
        judged = [r for r in results if r.values is not None and r.status != "invalid"]
        values = []
        for r in judged:
            v = dict(r.values)
            v["account"] = r.account  # the ledger's platform account
            values.append(v)
        history.apply(values, self.histories, state, self.program.subjects)
        for r, v in zip(judged, values):
            fresh = self.evaluate_values(v, r.explanation is not None, r.row)
            for name in ("status", "code", "message", "reduction_mg", "points", "baseline_mg",
                         "project_mg", "leakage_mg", "explanation", "values"):
                setattr(r, name, getattr(fresh, name))

    def evaluate_prepared(self, records: list[dict], *, explain: bool = False,
                          state: Optional[dict] = None) -> list[Result]:
        """Ingested values in, results out (examples and benchmarks start here)."""
        evaluate_values = self.evaluate_values
        if self.histories:
            records = [dict(v) for v in records]
            history.apply(records, self.histories, state, self.program.subjects)
        with cycle_collector_paused():
            results = [evaluate_values(values, explain, row)
                       for row, values in enumerate(records, start=1)]
            self._cross_record(results, explain, state)
        return results

    def _cross_record(self, results: list[Result], explain: bool, state: Optional[dict]) -> None:
        """apply_cross_record, given a state only when there is one (a subclass or a test
        may replace apply_cross_record with one that takes none)."""
        if state is None:
            self.apply_cross_record(results, explain=explain)
        else:
            self.apply_cross_record(results, explain=explain, state=state)

    @property
    def rules(self):
        """The cross-record rules of the plan (engine.plan.ast.CrossRecord)."""
        return self.program.plan.rules

    def apply_cross_record(self, results: list[Result], *, explain: bool = False,
                           state: Optional[dict] = None) -> None:
        cross_record.apply(results, self.program.plan.rules, self.recompute_points, explain, state)
