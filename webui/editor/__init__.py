"""The methodology editor: highlighting, live diagnostics, a try-it panel, save and submit.

The views are in views.py; the checking and evaluating they do is in webui/evaluation.py
and webui/records.py (no Flask there)."""

from .views import bp  # noqa: F401
