"""Running a methodology's embedded examples: what `tanpu test` reports."""

from __future__ import annotations

from dataclasses import dataclass, field

from dsl.ir import ast as ir

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
    if mg is None:
        return "nothing"
    return f"{mg / 1000:g} g" if abs(mg) < 1_000_000 else f"{mg / 1_000_000:g} kg"


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
                problems.append(f"expected {name} {_mass(want)}, got {_mass(got)}")
    if expected.flags and set(expected.flags) != set(result.flags):
        problems.append(f"expected flags {', '.join(expected.flags)}, got {', '.join(result.flags) or 'none'}")
    if expected.bonus is not None and expected.bonus != result.bonus:
        problems.append(f"expected bonus {expected.bonus}, got {result.bonus}")
    return problems


def run_examples(engine: Engine) -> list[ExampleOutcome]:
    outcomes = []
    for example in engine.methodology.examples:
        records = [from_example(step.record, engine.schema) for step in example.steps]
        results = engine.evaluate_prepared(records)
        outcome = ExampleOutcome(example.title, example.line)
        for number, (step, result) in enumerate(zip(example.steps, results), start=1):
            for problem in compare(step, result):
                prefix = f"record {number}: " if len(example.steps) > 1 else ""
                outcome.failures.append(prefix + problem)
        outcomes.append(outcome)
    return outcomes
