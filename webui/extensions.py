"""The Flask extensions, created once and bound to each app in create_app().

    from webui.extensions import csrf
    csrf.exempt(bp)          # a blueprint that authenticates by token, not by cookie
"""

from __future__ import annotations

from flask_babel import Babel
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()
babel = Babel()
