"""The packages are layers: dsl < engine < registry = docgen < webui < tanpu.

A package imports only packages below it (registry and docgen, of the same rank, not each
other), so that the language and the engine can be used, tested and changed without the
storage, the web UI or the command line; and no module takes another module's private
name (`_name`), so that what a module keeps to itself can change without breaking others.

Read with `ast`, not by importing: a lazy import inside a function counts as much as one
at the top. bench/imports.py prints the same imports as a graph.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
RANK = {"dsl": 0, "engine": 1, "registry": 2, "docgen": 2, "webui": 3, "tanpu": 4}
SKIPPED = (("registry", "migrations"),)  # Alembic's scripts: run by Alembic, not imported

@dataclass(frozen=True)
class Import:
    path: str              # the importing file, relative to the checkout ("engine/records.py")
    line: int
    module: str            # the module imported from, absolute ("engine.scalar")
    names: tuple[str, ...]  # the names a `from ... import` takes; () for `import x`

    @property
    def package(self) -> str:
        return self.path.split("/")[0]

    @property
    def target(self) -> str:
        return self.module.split(".")[0]


def module_of(path: str) -> str:
    """engine/batch/engine.py -> engine.batch.engine; engine/__init__.py -> engine."""
    parts = path[:-len(".py")].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_files(root: Path = ROOT) -> Iterator[Path]:
    for package in RANK:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).parts
            if not any(parts[:len(s)] == s for s in SKIPPED):
                yield path


def imports(root: Path = ROOT) -> Iterator[Import]:
    """Every import statement of the project's packages, relative ones made absolute."""
    for file in source_files(root):
        path = file.relative_to(root).as_posix()
        tree = ast.parse(file.read_text(encoding="utf-8"), path)
        here = module_of(path).split(".")
        if not path.endswith("__init__.py"):
            here = here[:-1]  # the package a relative import starts from
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(path, node.lineno, alias.name, ())
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[:len(here) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                yield Import(path, node.lineno, module, tuple(a.name for a in node.names))


def upward(found: Import) -> bool:
    """An import of a package above the importer's, or of its sibling of the same rank."""
    mine, theirs = found.package, found.target
    return theirs in RANK and theirs != mine and RANK[theirs] >= RANK[mine]


def private_names(found: Import) -> list[str]:
    """The `_private` names an import takes from another module of the project."""
    if found.target not in RANK:
        return []
    return [n for n in found.names if n.startswith("_") and not n.startswith("__")]


def test_no_package_imports_one_above_it():
    wrong = [f"{i.path}:{i.line} imports {i.module}" for i in imports() if upward(i)]
    assert wrong == []


def test_no_module_takes_another_modules_private_name():
    taken = {(i.path, i.module, name): i.line for i in imports() for name in private_names(i)}
    wrong = [f"{path}:{line} takes {name} from {module}"
             for (path, module, name), line in sorted(taken.items())]
    assert wrong == []


def test_the_checks_see_lazy_relative_and_sibling_imports(tmp_path):
    (tmp_path / "engine" / "batch").mkdir(parents=True)
    (tmp_path / "engine" / "batch" / "a.py").write_text(
        "def f():\n    from webui import x\n    from ..scalar import _hidden, shown\n", encoding="utf-8")
    (tmp_path / "registry").mkdir()
    (tmp_path / "registry" / "b.py").write_text("import docgen.render\nimport dsl\n", encoding="utf-8")
    found = list(imports(tmp_path))
    assert [(i.path, i.module) for i in found if upward(i)] == [
        ("engine/batch/a.py", "webui"), ("registry/b.py", "docgen.render")]
    assert [(i.module, private_names(i)) for i in found if private_names(i)] == [
        ("engine.scalar", ["_hidden"])]
