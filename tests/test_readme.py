"""The methodology shown in the README compiles and its examples pass."""

import re
from pathlib import Path

from dsl import compile_source
from engine import Engine
from engine.examples import run_examples

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_readme_methodology_compiles_and_its_examples_pass():
    (block,) = re.findall(r"```tanpu\n(.*?)```", README, re.S)
    compiled = compile_source(block, "README.md")
    assert compiled.ok and not compiled.diagnostics, compiled.render()
    outcomes = run_examples(Engine(compiled.methodology))
    assert len(outcomes) == 2 and all(o.passed for o in outcomes), [o.failures for o in outcomes]
