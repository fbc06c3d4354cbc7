"""The documentation's examples are runnable, so the docs cannot drift from the language.

In docs/*.md:
- every ```tanpu block is a complete methodology that compiles with no error and no
  warning, and whose embedded examples pass (as `tanpu test` runs them);
- every ```tanpu-error block starts with a comment line `# expect: CODE` and compiles to
  diagnostics that all have exactly that code (an error, or a warning such as W0301);
- a ```console block that starts with `$ tanpu check FILE` and comes right after a
  tanpu or tanpu-error block shows exactly what `tanpu check` prints for that block;
- every ```tanpu-fragment block (a piece shown while building up a file) appears, up to
  whitespace, in the file the fragment's page builds (see FRAGMENT_TARGETS).
docs/language.md names every diagnostic code of dsl.messages.CATALOGUE.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from dsl import compile_source, render_text
from dsl.messages import CATALOGUE

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
METHODOLOGIES = ROOT / "methodologies"

# page -> the methodology file its fragments are taken from
FRAGMENT_TARGETS = {"tutorial.md": METHODOLOGIES / "hello-shared-bike.tanpu"}

FENCE = re.compile(r"^```([\w-]*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
EXPECT = re.compile(r"^\s*#\s*expect:\s*([EW]\d{4})\s*$")


@dataclass
class Block:
    page: str
    line: int
    kind: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _blocks() -> list[Block]:
    blocks = []
    for path in sorted(DOCS.glob("*.md")):
        source = path.read_text(encoding="utf-8")
        for m in FENCE.finditer(source):
            line = source.count("\n", 0, m.start()) + 2  # the block's first line
            blocks.append(Block(path.name, line, m.group(1), m.group(2)))
    return blocks


BLOCKS = _blocks()


def _of(kind: str) -> list[Block]:
    return [b for b in BLOCKS if b.kind == kind]


def _shown(compiled) -> str:
    return compiled.render() or "(no diagnostics)"


def test_the_docs_have_examples():
    assert (DOCS / "language.md").is_file() and (DOCS / "tutorial.md").is_file()
    assert len(_of("tanpu")) >= 20 and len(_of("tanpu-error")) >= 10


@pytest.mark.parametrize("block", _of("tanpu"), ids=lambda b: b.id)
def test_tanpu_block_compiles_cleanly(block: Block):
    compiled = compile_source(block.text, block.id)
    assert not compiled.diagnostics, _shown(compiled)
    assert compiled.ok


@pytest.mark.parametrize("block", [b for b in _of("tanpu") if "example " in b.text],
                         ids=lambda b: b.id)
def test_tanpu_block_examples_pass(block: Block):
    """What `tanpu test` does: the examples of the docs give the results they claim."""
    from engine.evaluate import Engine
    from engine.examples import run_examples

    compiled = compile_source(block.text, block.id)
    assert compiled.ok, _shown(compiled)
    failed = [f"line {o.line} {o.title}: {'; '.join(o.failures)}"
              for o in run_examples(Engine(compiled.methodology)) if not o.passed]
    assert not failed, "\n".join(failed)


@pytest.mark.parametrize("block", _of("tanpu-error"), ids=lambda b: b.id)
def test_tanpu_error_block_gives_its_code(block: Block):
    first = block.text.splitlines()[0] if block.text else ""
    m = EXPECT.match(first)
    assert m, f"{block.id}: the first line must be `# expect: CODE`, found {first!r}"
    expected = m.group(1)
    assert expected in CATALOGUE, f"{block.id}: {expected} is not a diagnostic code"
    # The `# expect:` line is the test's, not the example's: blank it (keeping the line
    # numbers), so that the example is checked exactly as a reader would write it.
    compiled = compile_source("\n" + block.text.partition("\n")[2], block.id)
    codes = {d.code for d in compiled.diagnostics}
    assert codes == {expected}, f"expected only {expected}, got {sorted(codes)}:\n{_shown(compiled)}"


def _console_pairs():
    pairs = []
    for page in sorted({b.page for b in BLOCKS}):
        on_page = [b for b in BLOCKS if b.page == page]
        for before, block in zip(on_page, on_page[1:]):
            if block.kind == "console" and block.text.startswith("$ tanpu check "):
                pairs.append((before, block))
    return pairs


@pytest.mark.parametrize("pair", _console_pairs(), ids=lambda p: p[1].id)
def test_console_output_is_what_tanpu_check_prints(pair):
    source, console = pair
    assert source.kind in ("tanpu", "tanpu-error"), \
        f"{console.id}: `$ tanpu check` must follow the tanpu block it checks"
    command, _, shown = console.text.partition("\n")
    file = command.split()[-1]
    compiled = compile_source(source.text, file)
    printed = [render_text(d, compiled.source) + "\n" for d in compiled.diagnostics]
    printed.append(f"checked 1 file(s): {len(compiled.errors)} error(s), "
                   f"{len(compiled.warnings)} warning(s)\n")
    assert shown == "\n".join(printed)


def _normal(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("block", _of("tanpu-fragment"), ids=lambda b: b.id)
def test_fragment_is_part_of_the_final_file(block: Block):
    target = FRAGMENT_TARGETS.get(block.page)
    assert target is not None, f"{block.id}: no file is named for the fragments of {block.page}"
    assert _normal(block.text) in _normal(target.read_text(encoding="utf-8")), \
        f"{block.id}: this fragment is not in {target.relative_to(ROOT)}"


def test_language_reference_names_every_diagnostic_code():
    text = (DOCS / "language.md").read_text(encoding="utf-8")
    missing = [code for code in CATALOGUE if not re.search(rf"\b{code}\b", text)]
    assert not missing, f"docs/language.md does not mention {missing}"


def test_tutorial_ends_with_the_bundled_file():
    """The tutorial's last complete file is methodologies/hello-shared-bike.tanpu."""
    final = [b for b in BLOCKS if b.page == "tutorial.md" and b.kind == "tanpu"][-1]
    bundled = (METHODOLOGIES / "hello-shared-bike.tanpu").read_text(encoding="utf-8")
    assert final.text == bundled


@pytest.mark.parametrize("name", ["hello-shared-bike.tanpu", "rooftop-pv-grid.tanpu"])
def test_documented_methodologies_have_no_diagnostics(name: str):
    path = METHODOLOGIES / name
    compiled = compile_source(path.read_text(encoding="utf-8"), str(path))
    assert not compiled.diagnostics, _shown(compiled)
