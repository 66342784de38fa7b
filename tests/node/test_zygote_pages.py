"""The node zygote's preparation of its pages for its forks (calisim.node.zygote_pages): free
blocks of the small-object allocator taken, and its mappings, and its forks', open to KSM."""

import subprocess
import sys

import pytest

from calisim.node import zygote_pages

POOL = 16384  # bytes in one of the allocator's pools (Python 3.11, 64-bit)


@pytest.mark.parametrize("size", range(16, 513, 16))
def test_a_filler_takes_one_block_of_its_size_class(size):
    assert -(-sys.getsizeof(zygote_pages.filler(size)) // 16) * 16 == size


def test_filling_takes_the_free_blocks_of_partly_used_pools():
    """Holes made in many pools of each size class are all taken: what is left free in a class is
    at most one pool (16 KiB) that the filling itself opened."""
    junk = [bytes(n % 400 + 20) for n in range(40000)]
    del junk[::2]
    before = zygote_pages.free_blocks()
    holey = [size for size, free in before.items() if free > 2 * POOL // size]
    assert len(holey) > 10, before
    zygote_pages.fill_free_blocks()
    after = zygote_pages.free_blocks()
    assert len(after) == 32
    assert all(after[size] <= POOL // size for size in holey), (before, after)


PROBE = """
import os, sys
from calisim.node import zygote_pages
print(zygote_pages.share_identical_pages() if sys.argv[1] == "prctl" else zygote_pages.mark_mappings_mergeable())
if os.fork() == 0:  # a fork's mappings: inherited, as the zygote's forks inherit them
    heap = open("/proc/self/smaps").read().split("[heap]", 1)[1]
    print([line for line in heap.splitlines() if line.startswith("VmFlags:")][0])
    os._exit(0)
os.wait()
"""


def fork_of_prepared_process(how: str) -> tuple[str, str]:
    """What the preparation said, and the VmFlags of a fork's heap."""
    result = subprocess.run([sys.executable, "-c", PROBE, how], capture_output=True, text=True, timeout=60, check=True)
    said, flags = result.stdout.splitlines()
    return said, flags.split(":", 1)[1].split()


@pytest.mark.skipif(zygote_pages.ksm_running() is None, reason="a kernel without KSM")
def test_a_fork_of_a_prepared_process_has_its_heap_open_to_merging():
    said, flags = fork_of_prepared_process("prctl")
    assert said.startswith("pages open to same-page merging (") and "ksmd" in said
    assert "mg" in flags  # VM_MERGEABLE


@pytest.mark.skipif(zygote_pages.ksm_running() is None, reason="a kernel without KSM")
def test_before_linux_6_4_the_mappings_are_marked_one_by_one():
    marked, flags = fork_of_prepared_process("madvise")
    assert int(marked) >= 2  # the heap and the allocator's arenas at least
    assert "mg" in flags
