"""Shared pytest configuration: Hypothesis profiles.

Profiles: "default" (local runs), "ci" (CI=true; the same 100 examples, derandomized, so a
CI run is repeatable) and "fuzz" (`make fuzz`). HYPOTHESIS_PROFILE picks one explicitly.

A test whose example count follows the profile (no max_examples of its own, or one
scaled from the profile: tests/engine/test_batch_differential.py) is marked `fuzz`:
`make fuzz` runs it with the fuzz profile's budget, so CI may run it with fewer (CI ran
200 until 2026-12-07, twice the local count).
"""

import os
import tempfile

from hypothesis import settings

# The parser and unit caches (dsl/cache.py) of this run live in a folder of its own, not in
# the user's ~/.cache/tanpu; subprocesses started by the tests inherit it.
if "TANPU_CACHE_DIR" not in os.environ:
    os.environ["TANPU_CACHE_DIR"] = tempfile.mkdtemp(prefix="tanpu-test-cache-")

settings.register_profile("default", max_examples=100, deadline=None, derandomize=False)
settings.register_profile("ci", max_examples=100, deadline=None, derandomize=True)
settings.register_profile("fuzz", max_examples=20000, deadline=None, derandomize=False)

settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "default")
)


def pytest_collection_modifyitems(config, items):
    """`make test` stays fast: tests marked slow run only when asked for (`make fuzz`
    runs `pytest -m slow` with the fuzz profile)."""
    import pytest

    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run by `make fuzz` (pytest -m slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
