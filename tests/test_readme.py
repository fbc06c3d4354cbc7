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


ROOT = Path(__file__).resolve().parents[1]


def test_every_file_the_readme_links_or_names_exists():
    linked = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    named = re.findall(r"`((?:bench|tests|engine|dsl|tanpu|registry|webui|docgen|docs)/[\w./-]+\.(?:py|md|c|h|lark))`",
                       README)
    assert linked and named
    missing = [p for p in linked + named if not (ROOT / p).exists()]
    assert missing == []


def test_every_command_and_option_the_readme_shows_exists():
    from click.testing import CliRunner

    from tanpu.cli import main

    (block,) = re.findall(r"```console\n(.*?)```", README, re.S)
    shown = 0
    for line in block.splitlines():
        words = line.split("#")[0].split()
        if len(words) < 2 or not words[1].endswith("tanpu"):
            continue
        command = words[2]
        help_text = CliRunner().invoke(main, [command, "--help"]).output
        assert f"Usage: main {command}" in help_text or f" {command} " in help_text, command
        for option in re.findall(r"(--[a-z][a-z-]*|-o\b)", line.split("#")[0]):
            assert option in help_text, (command, option)
        shown += 1
    assert shown >= 7
