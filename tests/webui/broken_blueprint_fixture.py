"""A blueprint module that imports something missing: the registry must not skip it."""

import webui.no_such_module  # noqa: F401

from flask import Blueprint

bp = Blueprint("broken", __name__)
