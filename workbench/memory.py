"""Process memory settings for heavy caching on Linux.

A full ``run_with_cache`` of a base-sized model allocates hundreds of MiB of fresh tensors per call. glibc
hands freed blocks of that size back to the kernel, so the next call page-faults them in again, which can
cost as much as the forward pass itself on a small machine. :func:`keep_freed_memory` asks glibc to keep
freed memory in the process instead. It changes the whole process, so it is opt-in, never done on import.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

logger = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(threshold_bytes: int = 2**30) -> bool:
    """Make glibc keep freed blocks below ``threshold_bytes`` in the process (no trimming, no mmap).

    The same as starting Python with ``MALLOC_TRIM_THRESHOLD_`` and ``MALLOC_MMAP_THRESHOLD_`` set. Memory
    the process has freed stays reserved for it (up to its peak), which is what repeated caching wants.

    Returns:
        True when glibc accepted both settings; False elsewhere (macOS, Windows, musl), where it does nothing.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    accepted = bool(mallopt(_M_TRIM_THRESHOLD, threshold_bytes)) and bool(mallopt(_M_MMAP_THRESHOLD, threshold_bytes))
    if not accepted:
        logger.warning("glibc refused mallopt(%d bytes); the allocator is unchanged", threshold_bytes)
    return accepted
