"""Running a methodology's embedded examples: what `tanpu test` reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from dsl.ir import ast as ir

from . import expectations
from .counters import parse_moved
from .evaluate import Engine
from .records import from_example
from .result import Result


@dataclass
class ExampleOutcome:
    title: str
    line: int
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def _mass(mg: int) -> str:
    """Whole milligrams in g or kg with every digit (a float's 6 significant figures would
    print two different masses alike)."""
    if mg is None:
        return "nothing"
    unit, scale = ("g", 1000) if abs(mg) < 1_000_000 else ("kg", 1_000_000)
    return f"{format((Decimal(mg) / scale).normalize(), 'f')} {unit}"


def compare(step: ir.ExampleStep, result: Result) -> list[str]:
    expected = step.expected
    problems = []
    if expected.status_given:
        if result.status != expected.status or (expected.code and result.code != expected.code):
            want = expected.status + (f" {expected.code}" if expected.code else "")
            got = result.status + (f" {result.code}" if result.code else "")
            problems.append(f"expected {want}, got {got}" + (f" ({result.message})" if result.message else ""))
    elif result.status != "credited":
        problems.append(f"expected credited, got {result.status} {result.code}".rstrip()
                        + (f" ({result.message})" if result.message else ""))
    actual = {"reduction": result.reduction_mg, "points": result.points,
              "baseline": result.baseline_mg, "project": result.project_mg,
              "leakage": result.leakage_mg}
    for name, want in expected.outputs:
        got = actual[name]
        if got != want:
            if name == "points":
                problems.append(f"expected points {want}, got {got}")
            else:
                difference = f" ({got - want:+,d} mg)" if want is not None and got is not None else ""
                problems.append(f"expected {name} {_mass(want)}, got {_mass(got)}{difference}")
    if expected.flags and set(expected.flags) != set(result.flags):
        problems.append(f"expected flags {', '.join(expected.flags)}, got {', '.join(result.flags) or 'none'}")
    if expected.bonus is not None and expected.bonus != result.bonus:
        problems.append(f"expected bonus {expected.bonus}, got {result.bonus}")
    return problems


def run_examples(engine: Engine) -> list[ExampleOutcome]:
    outcomes = []
    for example in engine.methodology.examples:
        records = [from_example(step.record, engine.schema) for step in example.steps]
        named = any(step.expected.checks for step in example.steps)  # values from the trace
        results = engine.evaluate_prepared(records, explain=named)
        outcome = ExampleOutcome(example.title, example.line)
        totals: dict[str, dict] = {}
        for number, (step, result) in enumerate(zip(example.steps, results), start=1):
            total = totals.setdefault(result.account, {"reduction_mg": 0, "points": 0, "counters": {}})
            total["reduction_mg"] += result.reduction_mg
            total["points"] += result.points + result.bonus
            for name, amount in parse_moved(result.counters).items():  # counters and rewards
                total["counters"][name] = total["counters"].get(name, 0) + amount
            problems = compare(step, result)
            problems += [p for p in (expectations.compare(c, result, total) for c in step.expected.checks) if p]
            for problem in problems:
                prefix = f"record {number}: " if len(example.steps) > 1 else ""
                outcome.failures.append(prefix + problem)
        outcomes.append(outcome)
    return outcomes
