"""engine/pools.py: the process's thread pools, kept per purpose and size, and forgotten
in a forked child (a pre-forked server's worker), whose copy of a pool has no threads."""

from __future__ import annotations

import os

from engine import pools


def test_a_pool_is_kept_per_purpose_and_size():
    assert pools.pool("test-kept", 2) is pools.pool("test-kept", 2)
    assert pools.pool("test-kept", 2) is not pools.pool("test-kept", 1)
    assert pools.pool("test-kept", 2) is not pools.pool("test-other", 2)
    assert 1 <= pools.up_to(4) <= 4 and pools.up_to(0) == 1


def test_a_forked_child_gets_pools_of_its_own_that_run_its_tasks():
    parent = pools.pool("test-fork", 2)
    assert parent.submit(lambda: 6 * 7).result(timeout=30) == 42  # its threads running
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its pool is a new one, and its tasks run
        code = 1
        try:
            child = pools.pool("test-fork", 2)
            if child is not parent and child.submit(lambda: 6 * 7).result(timeout=30) == 42:
                os.write(write, b"ran")
                code = 0
        finally:
            os._exit(code)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    answer = os.read(read, 16)
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0 and answer == b"ran"
