"""Keep freed heap memory in the process (glibc), for CPU training and encoding loops.

glibc's ``malloc`` serves every block above its mmap threshold (at most 32 MiB) with a fresh ``mmap``
and gives it back with ``munmap`` on ``free``. A training step on the CPU allocates and frees
activation and attention tensors of hundreds of MiB, so each step the kernel maps and zero-fills
them again: on a 2-core machine a MiniLM step of 32 x (query + 2 passages of 256 tokens) spent 4.7 s
of its 8.9 s in the kernel. With mmap off and a high trim threshold the blocks come from the heap
and are reused by the next step (5.7 s, 1.0 s in the kernel). The cost: memory freed by a step stays
in the process (up to the peak of one step) instead of going back to the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt parameters, from glibc's malloc.h
TRIM_THRESHOLD_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Tell glibc to serve large blocks from the heap and keep up to 1 GiB of freed memory.

    Returns whether it took effect: False off Linux or on a libc without ``mallopt`` (musl), where
    nothing changes. Affects the whole process from now on; call it in the worker that trains.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    if not ok:
        log.warning("mallopt refused the settings: freed memory goes back to the system after each step")
    return ok
