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


# The files that took longest in a run of the whole suite (2026-12-07, 2 workers: 30-170 s
# each, most of it starting servers, browsers, Spark, or killing processes), longest first.
# Under xdist (`make test`: --dist loadfile --no-loadscope-reorder) a worker takes the next
# file in collection order, so these go first and the run ends on short files, not with one
# worker alone on a browser story. xdist's own reordering (by number of tests) put them last.
HEAVY = (
    "tests/browser/test_story.py",
    "tests/engine/test_spark.py",
    "tests/webui/test_jobs_crash.py",
    "tests/browser/test_phone.py",
    "tests/browser/test_review_threads.py",
    "tests/dsl/test_cache.py",
    "tests/browser/test_clipping.py",
    "tests/engine/test_batch_differential.py",
    "tests/engine/test_batch_carried.py",
    "tests/webui/test_api_fuzz.py",
    "tests/webui/test_review_threads.py",
    "tests/webui/test_crash.py",
    "tests/webui/test_hostile_routes.py",
    "tests/webui/test_serve_workers.py",
)


def pytest_collection_modifyitems(config, items):
    """`make test` stays fast: tests marked slow run only when asked for (`make fuzz`
    runs `pytest -m "slow or fuzz"` with the fuzz profile); in an xdist worker the HEAVY
    files come first (the order of the other files, and within a file, is kept)."""
    import pytest

    if hasattr(config, "workerinput"):  # an xdist worker: its order is the order handed out
        rank = {path: i for i, path in enumerate(HEAVY)}
        items.sort(key=lambda item: rank.get(item.nodeid.partition("::")[0], len(HEAVY)))
    if "slow" in (config.getoption("markexpr") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run by `make fuzz`")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
