"""Languages (Simplified Chinese by default, English) and dates (Asia/Shanghai).

The language is the one chosen with the switch (/lang/<code>, kept in a cookie for a
year), else zh. `?lang=en` on any page shows it in that language once.

Messages: English msgids in the code and templates (`_("...")`), Chinese in
translations/zh/LC_MESSAGES/messages.po. Each blueprint package may have its own
`translations/` folder beside its `__init__.py` (webui/editor/translations/...): every
such folder is used, and catalogs are merged. The .mo files are committed; where one does
not say what its .po says, the catalogs are compiled into a temporary folder at start-up
(never in place: running the tests or the server leaves the work tree clean).

    make i18n    # extract the msgids, update the .po files (then translate), compile
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from pathlib import Path
from typing import Iterable, Optional
from zoneinfo import ZoneInfo

from flask import Blueprint, current_app, g, redirect, request
from flask_babel import get_locale

from dsl.zones import DEFAULT_TIMEZONE, zone

LANGUAGES = {"zh": "中文", "en": "English"}
DEFAULT_LANGUAGE = "zh"
DISPLAY_TIMEZONE = DEFAULT_TIMEZONE  # dates shown in the methodologies' default zone
COOKIE = "tanpu_lang"

PACKAGE = Path(__file__).resolve().parent
log = logging.getLogger(__name__)

bp = Blueprint("i18n", __name__)


def select_locale() -> str:
    wanted = request.args.get("lang") or request.cookies.get(COOKIE)
    return wanted if wanted in LANGUAGES else DEFAULT_LANGUAGE


def lang() -> str:
    """The request's language code: zh or en."""
    return str(get_locale() or DEFAULT_LANGUAGE).split("_")[0]


@bp.get("/lang/<code>")
def switch(code: str):
    from .auth import safe_next
    target = safe_next(request.args.get("next"))
    response = redirect(target)
    if code in LANGUAGES:
        response.set_cookie(COOKIE, code, max_age=365 * 24 * 3600, samesite="Lax",
                            httponly=True, secure=current_app.config["SESSION_COOKIE_SECURE"])
    return response


def for_reader(diagnostics: Iterable[dict]) -> list[dict]:
    """Diagnostics (as JSON) in the request's language: dsl/messages_zh.py translates
    the message, label, help and notes of each for a zh page; `tanpu check` and the API
    keep the English."""
    if lang() != "zh":
        return list(diagnostics)
    from dsl.messages_zh import translate
    return [translate(d) for d in diagnostics]


def server(text) -> str:
    """A message of the registry (why it refused) in the request's language."""
    from .messages_zh import server_text
    return server_text(str(text or ""), lang())


def ticks(text) -> "Markup":
    """A message with `backticks` (a name, a piece of the language) shown as code; the rest
    escaped as text."""
    import re

    from markupsafe import Markup, escape
    return Markup(re.sub(r"`([^`\n]+)`", r"<code>\1</code>", str(escape(str(text or "")))))


def back_link() -> str:
    """Where the user came from (the Referer, when it is a page of this site), else ""."""
    from urllib.parse import urlsplit
    referrer = request.referrer or ""
    parts = urlsplit(referrer)
    if not referrer or parts.netloc != request.host:
        return ""
    target = parts.path + ("?" + parts.query if parts.query else "")
    return "" if target == request.full_path.rstrip("?") else target


# ---------------------------------------------------------------- dates
def _zone() -> ZoneInfo:
    return zone(current_app.config.get("DISPLAY_TIMEZONE", DISPLAY_TIMEZONE))


def local(value: Optional[dt.datetime]) -> Optional[dt.datetime]:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(_zone())


def format_datetime(value: Optional[dt.datetime], seconds: bool = False) -> str:
    """2024-05-20 16:00 in Asia/Shanghai (the same digits in both languages)."""
    shown = local(value)
    if shown is None:
        return ""
    return shown.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def format_date(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        value = local(value).date()
    return value.isoformat()


def iso_utc(value: Optional[dt.datetime]) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_local_date(text: str) -> Optional[dt.date]:
    try:
        return dt.date.fromisoformat((text or "").strip())
    except ValueError:
        return None


def local_day_start(day: dt.date) -> dt.datetime:
    """The UTC instant a local (Asia/Shanghai) day starts; the first and the last days
    a date can name give the earliest and latest instants (not an overflow)."""
    if day <= dt.date.min + dt.timedelta(days=1):
        return dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    if day >= dt.date.max - dt.timedelta(days=1):
        return dt.datetime.max.replace(tzinfo=dt.timezone.utc)
    return dt.datetime.combine(day, dt.time(), tzinfo=_zone()).astimezone(dt.timezone.utc)


# ---------------------------------------------------------------- catalogs
def translation_directories() -> list[Path]:
    """webui/translations and every webui/<blueprint>/translations."""
    found = [PACKAGE / "translations"]
    found += sorted(p for p in PACKAGE.glob("*/translations") if p.is_dir() and p not in found)
    return [p for p in found if p.is_dir()]


def _messages(catalog) -> dict:
    return {m.id: m.string for m in catalog if m.id and m.string and not m.fuzzy}


def catalog_is_current(po: Path, mo: Path) -> bool:
    """The .mo holds exactly the translations of its .po (compared by content, not by
    modification time, which a git checkout sets arbitrarily)."""
    from babel.messages.mofile import read_mo
    from babel.messages.pofile import read_po

    if not mo.exists():
        return False
    with po.open("rb") as f:
        source = _messages(read_po(f))
    with mo.open("rb") as f:
        compiled = {m.id: m.string for m in read_mo(f) if m.id}
    return compiled == source


def compile_catalog(po: Path, mo: Path) -> None:
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with po.open("rb") as f:
        catalog = read_po(f)
    mo.parent.mkdir(parents=True, exist_ok=True)
    tmp = mo.with_suffix(".mo.tmp")
    with tmp.open("wb") as f:
        write_mo(f, catalog, use_fuzzy=False)
    tmp.replace(mo)


def compiled_directories(directories: Iterable[Path]) -> list[str]:
    """The directories Flask-Babel reads, each with .mo files that say what their .po say.

    Never writes into the source tree (running the tests or the server leaves the work
    tree clean): where a committed .mo is out of date, every catalog of that folder is
    compiled into a temporary folder, read from there, and a warning says to run
    `pybabel compile -d webui/translations`."""
    out = []
    for directory in directories:
        pos = sorted(directory.glob("*/LC_MESSAGES/*.po"))
        key = (directory, tuple((p, p.stat().st_mtime_ns, p.with_suffix(".mo").exists() and
                                 p.with_suffix(".mo").stat().st_mtime_ns) for p in pos))
        if key not in _COMPILED:  # one app per test: each folder is read once per change
            _COMPILED[key] = _readable_directory(directory, pos)
        out.append(_COMPILED[key])
    return out


_COMPILED: dict[tuple, str] = {}


def _readable_directory(directory: Path, pos: list[Path]) -> str:
    if all(catalog_is_current(po, po.with_suffix(".mo")) for po in pos):
        return str(directory)
    target = Path(tempfile.mkdtemp(prefix="tanpu-i18n-"))
    for po in pos:
        compile_catalog(po, target / po.relative_to(directory).with_suffix(".mo"))
    log.warning("the .mo files of %s are out of date: compiled into %s "
                "(run pybabel compile -d %s)", directory, target, directory)
    return str(target)


def init_app(app) -> None:
    from .extensions import babel

    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LANGUAGE)
    app.config.setdefault("BABEL_DEFAULT_TIMEZONE", DISPLAY_TIMEZONE)
    app.config.setdefault("DISPLAY_TIMEZONE", DISPLAY_TIMEZONE)
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = ";".join(
        compiled_directories(translation_directories()))
    babel.init_app(app, locale_selector=select_locale)
    app.register_blueprint(bp)
    app.add_template_filter(format_datetime, "datetime")
    app.add_template_filter(format_date, "date")
    app.add_template_filter(iso_utc, "utc")
    app.add_template_global(for_reader)
    app.add_template_global(back_link)
    app.add_template_filter(server, "server")
    app.add_template_filter(ticks, "ticks")

    @app.context_processor
    def _languages():
        return {"LANGUAGES": LANGUAGES, "lang": lang(), "DISPLAY_TIMEZONE":
                app.config["DISPLAY_TIMEZONE"]}

    @app.after_request
    def _content_language(response):
        # select_locale() is what get_locale() parses into the request's locale (lang()),
        # read without making babel's Locale: most responses (every API one) render no
        # text that needs it; "Vary: Cookie" written directly when no Vary is there yet
        headers = response.headers
        if "Content-Language" not in headers:
            headers["Content-Language"] = "zh-Hans" if select_locale() == "zh" else "en"
        if "Vary" in headers:
            response.vary.add("Cookie")
        else:
            headers["Vary"] = "Cookie"
        return response
