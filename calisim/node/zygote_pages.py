"""The node zygote's pages, made ready to be shared by its forks (calisim.node.zygote).

What a forked calico-node or dockerd holds of its own is mostly pages of the zygote it wrote:
Python 3.11 writes an object's reference count whenever it is used and a function's bytecode as
it specialises it, so each fork copies ~10-13 MiB of the zygote's pages (benchmarks/bringup.py
--docker measures it).  Page by page (/proc/PID/pagemap against the zygote's, then the bytes
that differ), about a quarter of those copies end up with the zygote's own bytes again (a count
raised and lowered), and most of the rest hold the same bytes in every fork of a kind: every
dockerd, and every calico-node, runs the same code over the same objects.  Two preparations:

- the kernel's same-page merging (KSM) may merge them: the zygote opts itself, and so every
  process it forks, in.  The machine's ksmd does the merging only when it runs
  (/sys/kernel/mm/ksm/run is 1, the machine's choice: calisim never turns it on; the bring-up
  benchmark's --ksm does for its run); otherwise opting in changes nothing.
- the small-object allocator's free blocks in the zygote's partly used pools are filled before
  the forks, so that a fork's first allocations fill fresh pages of its own instead of copying a
  shared page for each object they put in its holes.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import tempfile
from pathlib import Path

PR_SET_MEMORY_MERGE = 67  # linux/prctl.h, Linux 6.4: every mapping of the process and its forks
MADV_MERGEABLE = 12  # linux/mman.h: one mapping (inherited by forks), for older kernels
KSM_RUN = Path("/sys/kernel/mm/ksm/run")
# a row of sys._debugmallocstats()'s table of size classes: class, size, pools, blocks in use, free blocks
SIZE_CLASS_ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$", re.MULTILINE)

_libc = ctypes.CDLL(None, use_errno=True)
_fillers: list[object] = []  # kept for the zygote's life: its children never touch them


def prepare() -> str:
    """Both preparations; a line for the zygote's log saying what KSM will do."""
    fill_free_blocks()
    return share_identical_pages()


def share_identical_pages() -> str:
    """Opt this process (and its forks) into KSM; says how, and whether the machine's ksmd runs."""
    if _libc.prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0) == 0:
        how = "every mapping"
    else:
        how = f"{mark_mappings_mergeable()} mappings"  # before Linux 6.4: those that exist now
    running = ksm_running()
    state = "ksmd runs" if running else ("ksmd does not run" if running is not None else "no KSM in this kernel")
    return f"pages open to same-page merging ({how}; {state})"


def mark_mappings_mergeable() -> int:
    """madvise(MADV_MERGEABLE) over this process's private writable anonymous mappings (the
    interpreter's heap and arenas); how many took it."""
    marked = 0
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split()
        if fields[1] != "rw-p" or (len(fields) > 5 and not fields[5].startswith("[")):
            continue
        start, end = (int(address, 16) for address in fields[0].split("-"))
        if _libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), MADV_MERGEABLE) == 0:
            marked += 1
    return marked


def ksm_running() -> bool | None:
    """Whether the machine's ksmd merges pages now (None: a kernel without KSM)."""
    try:
        return KSM_RUN.read_text().strip() == "1"
    except OSError:
        return None


def free_blocks() -> dict[int, int]:
    """Free blocks in the small-object allocator's partly used pools, by block size."""
    with tempfile.TemporaryFile() as capture:
        saved = os.dup(2)
        sys.stderr.flush()
        os.dup2(capture.fileno(), 2)  # the statistics are printed on the C level's standard error
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode()
    return {int(row[1]): int(row[4]) for row in SIZE_CLASS_ROW.findall(text)}


def filler(size: int) -> object:
    """A new object taking one block of size bytes: object() 16, a float 32, bytes the rest (33
    bytes of header and terminator)."""
    if size == 16:
        return object()
    if size == 32:
        return float(len(_fillers)) + 0.5
    return bytes(size - 33)


def fill_free_blocks() -> None:
    """Take every free block of every partly used pool (see the module's docstring)."""
    for size, count in free_blocks().items():
        _fillers.extend(filler(size) for _ in range(count))
