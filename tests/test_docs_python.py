"""The Python examples in docs/ run as written (from the repository root). Those that
begin `# example:` (docs/api.md) talk to a server: tests/webui/test_api_docs.py runs them
against a live one, in order."""

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = [(page.name, i, block)
          for page in sorted((ROOT / "docs").glob("*.md"))
          for i, block in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S))
          if not block.startswith("# example:")]


@pytest.mark.parametrize("page,index,block", BLOCKS, ids=[f"{p}:{i}" for p, i, _ in BLOCKS])
def test_python_block_runs(page, index, block, monkeypatch):
    monkeypatch.chdir(ROOT)
    exec(compile(block, f"{page}[{index}]", "exec"), {"__name__": "__docs__"})
