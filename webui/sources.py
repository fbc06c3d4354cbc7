"""What the pages need from a version's source: its metadata, compiled once and cached.

A published version never changes (database triggers), and a draft's cache key is its
source text, so a cached entry is never stale.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass, field
from typing import Optional

from dsl import Compiled, compile_source


@dataclass(frozen=True)
class SourceInfo:
    ok: bool
    id: str = ""
    version: str = ""
    title: str = ""
    titles: dict = field(default_factory=dict)  # lang -> title
    issuer: str = ""
    covers: tuple[str, ...] = ()
    descriptions: dict = field(default_factory=dict)
    effective_from: Optional[dt.date] = None
    effective_until: Optional[dt.date] = None
    timezone: str = ""
    citations: int = 0
    parameters: int = 0
    examples: int = 0

    def title_in(self, lang: str, fallback: str = "") -> str:
        return self.titles.get(lang) or self.title or fallback

    def other_title(self, lang: str) -> str:
        shown = self.title_in(lang)
        return next((t for t in self.titles.values() if t != shown), "")

    def issuer_in(self, lang: str) -> str:
        from docgen.i18n import pick
        return pick(self.issuer, lang)

    def description_in(self, lang: str) -> str:
        return self.descriptions.get(lang) or next(iter(self.descriptions.values()), "")

    def search_text(self) -> str:
        return " ".join([self.id, self.title, *self.titles.values(), self.issuer, *self.covers,
                         *self.descriptions.values()]).lower()


@functools.lru_cache(maxsize=256)
def compiled(source: str, name: str = "<source>") -> Compiled:
    return compile_source(source, name)


@functools.lru_cache(maxsize=1024)
def info(source: str) -> SourceInfo:
    from docgen.i18n import has_cjk

    result = compiled(source)
    if not result.ok:
        return SourceInfo(ok=False)
    m = result.methodology
    meta = m.metadata
    titles = dict(meta.titles)
    titles.setdefault("zh" if has_cjk(meta.title) else "en", meta.title)
    return SourceInfo(
        ok=True, id=meta.id, version=meta.version, title=meta.title, titles=titles,
        issuer=meta.issuer, covers=tuple(meta.covers), descriptions=dict(meta.descriptions),
        effective_from=meta.effective_from, effective_until=meta.effective_until,
        timezone=meta.timezone, citations=len(meta.citations), parameters=len(m.parameters),
        examples=len(m.examples))


@functools.lru_cache(maxsize=64)
def document(source: str, lang: str, content_hash: Optional[str] = None) -> Optional[dict]:
    """docgen's document content (parameter tables, equations, examples with results) in
    `lang`, or None when the source does not compile."""
    from docgen import document_context

    result = compiled(source)
    if not result.ok:
        return None
    return document_context(result.methodology, lang, content_hash)


@functools.lru_cache(maxsize=32)
def full_document(source: str, lang: str, content_hash: Optional[str] = None) -> Optional[str]:
    from docgen import render_html

    result = compiled(source)
    if not result.ok:
        return None
    return render_html(result.methodology, lang, content_hash)


@functools.lru_cache(maxsize=128)
def highlighted(source: str) -> str:
    from .highlight import highlight_source
    return highlight_source(source)
