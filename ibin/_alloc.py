"""Keep freed memory in the process: the C allocator's settings for work on arrays of a few megabytes.

A full comparison of two cartridge cases allocates hundreds of arrays of
0.1-3 MB (FFT outputs, stacks of rotated grids, NumPy temporaries) and frees
them again within milliseconds. With glibc's defaults (``mallopt(3)``), a
block above the mmap threshold is mapped for each request and unmapped when
freed, and free memory above 128 KiB at the top of the heap is returned to
the system at once; either way the next array's pages are faulted in and
zeroed by the kernel again. glibc raises its mmap threshold by itself, but
only after a large mapped block has been freed, so how often this happens
depends on what the process did before. Raising both limits keeps that
memory in the process for the next array. In a process that reads its
exhibits from a database and compares them, a full comparison of two Fadul
scans took 34-40 ms with ~4,600 page faults under the defaults and 20-25 ms
with none so, with identical results: only where the memory comes from
changes. A search worker screens its candidates before it compares them,
which raises glibc's threshold by itself: whole lead lists were no faster
(``benchmarks/results/allocator.json``). The setting makes the speed of a
comparison independent of what the process did before.

The processes ibin starts (search and sweep workers) and its command line
set this; a program using ibin as a library may call
:func:`keep_freed_memory` itself. Environment variables that set the same
limits (``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_``) win: nothing
is changed when either is set; ``IBIN_KEEP_FREED_MEMORY=0`` leaves glibc's
defaults too (processes started afterwards inherit it).
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["keep_freed_memory", "keeps_freed_memory"]

#: ``mallopt`` parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Free memory kept at the top of the heap before any is returned.
TRIM_THRESHOLD_BYTES = 256 * 2**20
#: Requests served from the heap up to this size (the largest glibc accepts on 64-bit systems).
MMAP_THRESHOLD_BYTES = 32 * 2**20

_state: dict = {}


def keep_freed_memory() -> bool:
    """Have the C allocator keep freed memory for reuse (glibc on Linux); True when it does.

    Idempotent; a no-op returning False on other systems and C libraries,
    when the allocator's limits are already set through the environment, or
    with ``IBIN_KEEP_FREED_MEMORY=0``.
    The process may then hold up to :data:`TRIM_THRESHOLD_BYTES` of free
    memory that the system would otherwise have back.
    """
    if "applied" not in _state:
        _state["applied"] = _apply()
    return _state["applied"]


def keeps_freed_memory() -> bool:
    """Whether :func:`keep_freed_memory` has set the allocator in this process."""
    return bool(_state.get("applied", False))


def _apply() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    if os.environ.get("IBIN_KEEP_FREED_MEMORY", "1").strip() == "0":
        return False
    if any(v in os.environ for v in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # glibc only: other C libraries' mallopt may ignore these parameters
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
                and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1)
