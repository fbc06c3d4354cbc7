"""The JSON API /api/v1 for integrators: published methodologies, their schema, evaluation
by the version applicable at each record's time, and idempotent credits to the ledger.

Token authentication with scopes (registry/tokens.py), rate limits (webui/limits.py). The
views are in views.py (accounts.py, ledger.py, rewards.py add theirs), the work they do in
service.py (no Flask there); the bodies are declared in models.py, the OpenAPI document is
generated from the declarations by openapi.py, errors are problem details (problems.py)."""

from .views import bp, init_app  # noqa: F401
