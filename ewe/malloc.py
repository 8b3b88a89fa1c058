"""Keep freed memory for reuse instead of handing it back to the OS (glibc on Linux).

glibc serves large blocks with mmap and trims the heap after frees, so each training step gets its
activations (tens of MB at the paper's batch size) as fresh pages and page-faults them in again: on this
2-core machine 10-18 % of the CPU time went to the kernel, and a 256-image step took 218 ms instead
of 178 (docs/history/2026-11-28-presets-and-step-cost.md). PyTorch's performance tuning guide gives the
same advice for CPU training (use an allocator that reuses memory: jemalloc or tcmalloc); ``mallopt`` does
it for glibc's own allocator without a preloaded library. The process keeps its peak heap, which it reaches anyway.

A library must not change the process that imports it (a notebook, a server, another tool), so
``import ewe`` does not do this: the entry points do, with ``apply_unless_disabled()`` at their start
(``python -m ewe``, the app's app.py, the bench/ scripts, the sweep's worker processes). Set the
environment variable ``EWE_MALLOC=0`` to leave the allocator alone there too; a notebook or script that
wants the speed-up calls ``ewe.malloc.reuse_freed_memory()`` itself.
"""
from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3    # glibc's mallopt parameter numbers (malloc.h)
MMAP_THRESHOLD = 32 * 1024 * 1024              # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 1 << 30


def reuse_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds; True if applied (False off Linux/glibc: nothing to do)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        # the C library the process already runs on: no ctypes.util.find_library, which may spawn
        # ldconfig or a compiler, at every start of an entry point
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):   # musl and other libcs have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


ENV = "EWE_MALLOC"


def apply_unless_disabled() -> bool:
    """For entry points only: ``reuse_freed_memory()`` unless ``EWE_MALLOC`` is 0 / false / no / off.
    True if applied."""
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    return reuse_freed_memory()
