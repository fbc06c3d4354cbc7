"""The review page: side-by-side diff against the previous published version, line
comments, votes and quorum, compile and example status, and the impact preview.

The views are in views.py; diff.py and impact.py are pure (no Flask)."""

from .views import bp  # noqa: F401
