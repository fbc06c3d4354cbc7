"""What registry operations raise. The web layer maps them to HTTP statuses:
NotFound 404, Forbidden 403, InvalidTransition / Conflict / QuorumNotMet 409,
Invalid (and SubmissionRejected) 422."""

from __future__ import annotations


class RegistryError(Exception):
    pass


class NotFound(RegistryError, LookupError):
    pass


class Forbidden(RegistryError, PermissionError):
    """The actor may not do this (checked on the server for every action)."""


class Invalid(RegistryError, ValueError):
    """Bad input: a malformed email or version number, an unknown role, ..."""


class InvalidTransition(RegistryError):
    """The version's state does not allow this action."""


class Conflict(RegistryError):
    """The action clashes with what is stored (a second vote, a reused idempotency key, ...)."""


class QuorumNotMet(RegistryError):
    pass


class SubmissionRejected(Invalid):
    """The source does not compile, or an example fails, or it has none: not submittable.

    `diagnostics` and `example_results` are what would have been stored.
    """

    def __init__(self, message: str, diagnostics: list[dict], example_results: list[dict]):
        super().__init__(message)
        self.diagnostics = diagnostics
        self.example_results = example_results
