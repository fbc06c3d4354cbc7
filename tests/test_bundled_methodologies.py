"""The bundled methodologies and their sample activity files.

- every methodologies/*.tanpu compiles with no error and no warning (the cross-file
  W0401 check included), has at least two examples, and they all pass;
- methodologies/samples/generate.py writes exactly the committed sample files;
- each sample evaluates with its methodology and shows what the generator put in:
  credited, rejected, duplicate and unreadable records, and capped ones where the
  methodology has a cap.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import pytest

from dsl.check.library import check_library
from engine import Engine
from engine.examples import run_examples
from tanpu import sources
from engine.recordfiles import open_records

ROOT = Path(__file__).resolve().parent.parent
METHODOLOGIES = ROOT / "methodologies"
SAMPLES = METHODOLOGIES / "samples"
FILES = sorted(METHODOLOGIES.glob("*.tanpu"))


def _generator():
    spec = importlib.util.spec_from_file_location("tanpu_samples_generate", SAMPLES / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = _generator()


@pytest.fixture(scope="module")
def compiled():
    found = sources.compile_paths([METHODOLOGIES])
    for diagnostic in check_library(found):
        next(c for c in found if c.file == diagnostic.file).diagnostics.append(diagnostic)
    return {Path(c.file).name: c for c in found}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_methodology_is_clean_and_its_examples_pass(path: Path, compiled):
    c = compiled[path.name]
    assert not c.diagnostics, c.render()
    outcomes = run_examples(Engine(c.methodology))
    assert len(outcomes) >= 2, f"{path.name} has {len(outcomes)} example(s)"
    failed = [f"{o.title}: {'; '.join(o.failures)}" for o in outcomes if not o.passed]
    assert not failed, "\n".join(failed)


def test_at_least_eight_methodologies_and_sixteen_examples(compiled):
    assert len(compiled) >= 8
    assert sum(len(c.methodology.examples) for c in compiled.values()) >= 16


@pytest.mark.parametrize("name", sorted(GENERATOR.SAMPLES))
def test_sample_is_reproducible(name: str, tmp_path: Path):
    path, _ = GENERATOR.generate(name, tmp_path)
    committed = SAMPLES / f"{name}.csv"
    assert committed.is_file(), f"run python methodologies/samples/generate.py {name}"
    assert path.read_bytes() == committed.read_bytes(), \
        f"{committed.name} is not what generate.py writes: regenerate it"


@pytest.mark.parametrize("name", sorted(GENERATOR.SAMPLES))
def test_sample_evaluates(name: str, compiled):
    c = compiled.get(f"{name}.tanpu")
    if c is None:
        pytest.skip(f"methodologies/{name}.tanpu is not there")
    engine = Engine(c.methodology)
    source = open_records(SAMPLES / f"{name}.csv")
    results = engine.evaluate(source.rows, column_units=source.column_units)
    assert 150 <= len(results) <= 1000
    statuses = Counter(r.status for r in results)
    assert statuses["credited"] > len(results) // 2, statuses
    for status in ("rejected", "duplicate", "invalid"):
        assert statuses[status] >= 1, f"{name}: no {status} record ({dict(statuses)})"
    assert sum(1 for r in results if r.code == "DUPLICATE_ID") >= 1
    if c.methodology.caps:
        assert statuses["capped"] >= 1, f"{name}: nothing reaches the cap ({dict(statuses)})"
    if c.methodology.overlaps:
        codes = {o.code for o in c.methodology.overlaps}
        assert any(r.code in codes for r in results), f"{name}: no overlapping record"
    accounts = {r.account for r in results if r.status != "invalid"}
    assert len(accounts) >= 3
