"""The import graph between the project's packages, and the lines of code of each.

    .venv/bin/python bench/imports.py

For each package (dsl, engine, registry, docgen, webui, tanpu): the packages it imports
with the number of import statements (lazy ones inside functions included), marked
`UPWARD` where one goes against the layering that tests/test_layers.py enforces; then the
files and lines (all, and not blank) of each package, and of each folder of engine/. For a
before/after note: run it on both commits.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_layers import RANK, imports, source_files, upward  # noqa: E402


def graph() -> dict[str, Counter]:
    edges: dict[str, Counter] = defaultdict(Counter)
    for found in imports(ROOT):
        if found.target in RANK and found.target != found.package:
            edges[found.package][found.target] += 1
    return edges


def lines(files) -> tuple[int, int, int]:
    """(files, lines, lines that are not blank)"""
    total = code = count = 0
    for path in files:
        text = path.read_text(encoding="utf-8").splitlines()
        count += 1
        total += len(text)
        code += sum(1 for line in text if line.strip())
    return count, total, code


def main() -> None:
    edges = graph()
    print("imports between packages (package -> package: import statements)")
    for package in RANK:
        targets = edges.get(package)
        shown = ", ".join(
            f"{t} {n}" + (" UPWARD" if RANK[t] >= RANK[package] else "")
            for t, n in sorted(targets.items(), key=lambda item: (RANK[item[0]], item[0]))
        ) if targets else "-"
        print(f"  {package:9} -> {shown}")
    wrong = [f for f in imports(ROOT) if upward(f)]
    print(f"  upward imports: {len(wrong)}")
    for found in wrong:
        print(f"    {found.path}:{found.line} imports {found.module}")

    files = list(source_files(ROOT))
    print("\nlines of code (files, lines, not blank)")
    for package in RANK:
        count, total, code = lines(p for p in files if p.relative_to(ROOT).parts[0] == package)
        print(f"  {package + '/':16} {count:4} {total:7} {code:7}")
        if package == "engine":
            folders = sorted({p.relative_to(ROOT).parts[1] for p in files
                              if p.relative_to(ROOT).parts[0] == "engine" and
                              len(p.relative_to(ROOT).parts) > 2})
            for folder in folders:
                count, total, code = lines(p for p in files
                                           if p.relative_to(ROOT).parts[:2] == ("engine", folder))
                print(f"    {'engine/' + folder + '/':14} {count:4} {total:7} {code:7}")
    count, total, code = lines(files)
    print(f"  {'all':16} {count:4} {total:7} {code:7}")


if __name__ == "__main__":
    main()
