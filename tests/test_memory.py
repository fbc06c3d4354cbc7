"""tanpu/memory.py: a process that asked glibc to keep freed memory reuses it.

Run in subprocesses: the setting is process-wide and must not leak into the test run.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

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


def _probe(mode: str) -> tuple[str, float]:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
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
