"""The JSON API /api/v1 for integrators: published methodologies, their schema, evaluation
by the version applicable at each record's time, and idempotent credits to the ledger.

Token authentication (registry/tokens.py). The views are in views.py, the work they do in
service.py (no Flask there)."""

from .views import bp, init_app  # noqa: F401
