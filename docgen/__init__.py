"""Methodologies as documents: the text a committee reads, generated from the rules that run.

    >>> from docgen import render_html
    >>> html = render_html(compiled.methodology, lang="zh")

Pure: an IR in, one self-contained HTML page out (formulas as MathML, inline CSS).
Neither language nor engine: it reads the IR (dsl/) and runs the examples (engine/).
"""

from .i18n import DEFAULT_LANG, LANGS
from .render import document_context, render_html

__all__ = ["render_html", "document_context", "LANGS", "DEFAULT_LANG"]
