"""Did-you-mean: the one place that picks near names for every diagnostic."""

from __future__ import annotations

import difflib
from typing import Iterable, Optional


def closest(name: str, candidates: Iterable[str], cutoff: float = 0.6) -> Optional[str]:
    """The candidate nearest to ``name``, if one is near enough to be a likely typo.

    Case-insensitive, so ``Distance`` finds ``distance``; ties resolve in favour of the
    candidate that sorts first so the suggestion is stable from run to run.
    """
    pool = sorted(set(candidates))
    if not pool:
        return None
    lowered = {c.lower(): c for c in pool}
    if name.lower() in lowered and lowered[name.lower()] != name:
        return lowered[name.lower()]
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=cutoff)
    return lowered[match[0]] if match else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A help line, or "" when nothing is close."""
    guess = closest(name, candidates)
    return f"did you mean `{guess}`?" if guess else ""
