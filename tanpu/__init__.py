"""Tanpu: executable, reviewable, auditable carbon-inclusion (碳普惠) methodologies."""

__version__ = "0.1.0"
