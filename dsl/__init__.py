"""The Tanpu methodology language: grammar, AST, checks and typed IR.

    >>> from dsl import compile_source
    >>> compiled = compile_source(text, "bus.tanpu")
    >>> compiled.ok, compiled.diagnostics, compiled.methodology

Pure: no files, no database. Reading files is the caller's business (tanpu/).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Optional

from .diagnostics import Diagnostic, has_errors, render_json, render_text
from .ir import ast as ir
from .ir.printer import content_hash
from .messages import Reporter


@dataclass
class Compiled:
    """One file's compilation: its diagnostics, and its IR when it has no errors."""

    file: str
    source: str
    methodology: Optional[ir.Methodology]
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.methodology is not None and not has_errors(self.diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if not d.is_error]

    @cached_property
    def content_hash(self) -> Optional[str]:
        return content_hash(self.methodology) if self.methodology is not None else None

    def render(self) -> str:
        return "\n\n".join(render_text(d, self.source) for d in self.diagnostics)


def compile_source(text: str, file: str = "<source>") -> Compiled:
    """Never raises for any text: a failure of the checker itself is the diagnostic E9999,
    and the input is kept for a bug report (`crash_report`, where its help says)."""
    from .ir.from_surface import lower
    from .surface.parse import parse

    report = Reporter(file)
    try:
        parsed = parse(text, file, report)
        methodology = None
        if parsed is not None:
            methodology = lower(parsed.module, report, parsed.failed_names, parsed.broken)
            if report.has_errors:
                methodology = None
    except RecursionError as error:  # deep input the depth limits missed: still a bug
        return _crashed(file, text, error)
    except Exception as error:  # noqa: BLE001 - the checker's own bug, said as a diagnostic
        return _crashed(file, text, error)
    return Compiled(file, text, methodology, report.sorted())


def _crashed(file: str, text: str, error: BaseException) -> Compiled:
    import traceback

    from .cache import crash_report

    trace = "".join(traceback.format_exception(error))
    saved = crash_report(text, trace)
    report = Reporter(file)
    report.report("E9999", None, error=type(error).__name__,
                  help=(f"the file and the error were saved in {saved}: please attach them to "
                        f"a bug report" if saved else "please report it with the file"))
    return Compiled(file, text, None, report.sorted())


def compile_bytes(data: bytes, file: str = "<source>") -> Compiled:
    """Like compile_source, for bytes that may not be text at all."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        report = Reporter(file)
        before = data[:error.start]
        line = before.count(b"\n") + 1
        column = error.start - (before.rfind(b"\n") + 1) + 1
        from .diagnostics import Span
        report.report("E0001", Span(line, column, line, column + 1),
                      help=f"byte 0x{data[error.start]:02x} at offset {error.start} is not UTF-8")
        return Compiled(file, data.decode("utf-8", errors="replace"), None, report.sorted())
    if text.startswith("\ufeff"):
        text = text[1:]
    return compile_source(text, file)


__all__ = ["Compiled", "compile_source", "compile_bytes", "Diagnostic", "render_text",
           "render_json", "ir"]
