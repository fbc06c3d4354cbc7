"""The blueprints of the web UI, by module path, registered in this order by create_app().

A module listed here that does not exist (yet) is skipped, so a blueprint can be added
by dropping its package in: webui/editor/__init__.py with

    bp = Blueprint("editor", __name__, template_folder="templates", url_prefix="/editor")

and optionally `def init_app(app): ...` (called after registering, e.g. to exempt an API
blueprint from CSRF with webui.extensions.csrf.exempt(bp)). A module that exists but fails
to import is an error, not skipped. Templates extend "base.html"; see the "Writing a
blueprint" notes in webui/__init__.py.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Optional

from flask import Blueprint, Flask

log = logging.getLogger(__name__)

# "module:attribute" (attribute defaults to bp), url_prefix (None: the blueprint's own)
BLUEPRINTS: list[tuple[str, Optional[str]]] = [
    ("webui.auth", None),
    ("webui.views.catalogue", None),
    ("webui.views.methodology", None),
    ("webui.views.dashboard", None),
    ("webui.views.notifications", None),
    ("webui.views.audit", None),
    ("webui.views.admin", None),
    ("webui.views.rewards", None),
    # the second web engineer's blueprints (skipped while they do not exist)
    ("webui.editor", None),
    ("webui.review", None),
    ("webui.api", None),
]


@dataclass
class Registered:
    module: str
    name: Optional[str]  # the blueprint's name, None: skipped
    reason: str = ""


def _missing(error: ModuleNotFoundError, module: str) -> bool:
    """Whether the error is about `module` (or a parent package) itself, and not about
    something it imports."""
    name = error.name or ""
    return module == name or module.startswith(name + ".")


def register_all(app: Flask, blueprints=None) -> list[Registered]:
    done = []
    for spec, url_prefix in (BLUEPRINTS if blueprints is None else blueprints):
        module_name, _, attribute = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if not _missing(error, module_name):
                raise
            log.debug("blueprint %s skipped: not there", module_name)
            done.append(Registered(module_name, None, "module not found"))
            continue
        blueprint = getattr(module, attribute or "bp", None)
        if not isinstance(blueprint, Blueprint):
            raise TypeError(f"{module_name} has no blueprint `{attribute or 'bp'}`")
        options = {} if url_prefix is None else {"url_prefix": url_prefix}
        app.register_blueprint(blueprint, **options)
        init = getattr(module, "init_app", None)
        if callable(init):
            init(app)
        done.append(Registered(module_name, blueprint.name))
    app.extensions["tanpu.blueprints"] = done
    return done
