"""tanpu/memory.py: a process that asked glibc to keep freed memory reuses it.

Run in subprocesses: the setting is process-wide and must not leak into the test run.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tanpu.memory import POLARS_ALLOCATOR

PROBE = """
import resource, sys
import numpy as np
from tanpu.memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
for _ in range(3):
    a = np.ones(5_000_000); del a  # 40 MB, written, freed
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    a = np.ones(5_000_000); del a
print(kept, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


# Polars' allocator (jemalloc) returns freed pages after its decay time, when it is next
# called: freed and reallocated after a pause, a column faults again unless the decay
# was lengthened before Polars loaded
POLARS_PROBE = """
import resource, sys, time
from tanpu.memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
import polars as pl
s = pl.int_range(0, 5_000_000, eager=True)  # 40 MB
for _ in range(3):
    t = s * 2; del t
time.sleep(1.6)  # longer than Polars' own decay (0.5 s dirty, then 1 s muzzy)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(2):
    t = s * 2; del t
    time.sleep(0.6)
print(kept, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 2)
"""


def _probe(mode: str, probe: str = PROBE) -> tuple[str, float]:
    env = {k: v for k, v in os.environ.items() if k != POLARS_ALLOCATOR}  # as a user's shell has it
    done = subprocess.run([sys.executable, "-c", probe, mode], capture_output=True, text=True, check=True,
                          env=env)
    kept, faults = done.stdout.split()
    return kept, float(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_arrays_are_reused_without_page_faults():
    kept, faults = _probe("keep")
    assert kept == "True"
    # 40 MB written is 9,766 pages of 4 kB (20 of 2 MB): a reused block faults on none
    assert faults < 5
    _, default_faults = _probe("default")
    assert default_faults > faults


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Polars links jemalloc on Linux")
def test_freed_polars_columns_are_reused_after_a_pause():
    kept, faults = _probe("keep", POLARS_PROBE)
    assert kept == "True"
    assert faults < 100  # of 9,766 pages of 4 kB
    _, default_faults = _probe("default", POLARS_PROBE)
    assert default_faults > 1000


def test_polars_setting_is_not_claimed_once_polars_is_loaded():
    done = subprocess.run([sys.executable, "-c", "import polars, tanpu.memory as m; "
                           "print(m.keep_polars_memory())"], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
