"""How much memory a model needs, and process memory settings for heavy caching on Linux.

:class:`MemoryEstimate` is what a checkpoint needs before it is loaded (``wb.memory_estimate``): its weights
in the dtype they are loaded in, and the key/value cache of a batch. ``from_pretrained`` refuses a checkpoint
whose weights do not fit in the memory free on the device it loads to.

A full ``run_with_cache`` of a base-sized model allocates hundreds of MiB of fresh tensors per call. glibc
hands freed blocks of that size back to the kernel, so the next call page-faults them in again, which can
cost as much as the forward pass itself on a small machine. :func:`keep_freed_memory` asks glibc to keep
freed memory in the process instead. It changes the whole process, so it is never done on import:
``run_with_cache`` does it the first time a cache on the CPU holds more than
:data:`CAPTURE_KEEP_FREED_BYTES` (the process is a capturing one from then on), and logs it once, with a
threshold of twice the cache (at least 1 GiB), raised again when a larger cache comes: glibc trims the
heap whenever more than the threshold lies free at its top, which is what freeing a cache larger than the
threshold does (GPT-2-small's full cache of 1 × 1024 tokens is 2 GiB).
``wb.memory.auto_keep_freed_memory(False)`` (or ``WORKBENCH_KEEP_FREED_MEMORY=0`` in the environment) opts
out before that. ``run_with_cache(..., out=previous_cache)`` allocates no cache at all.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


# mallopt takes an int: a trim threshold above it is -1 ("never trim", mallopt(3)); the mmap threshold caps.
_INT_MAX = 2**31 - 1


def keep_freed_memory(threshold_bytes: int = 2**30) -> bool:
    """Make glibc keep freed blocks below ``threshold_bytes`` in the process (no trimming, no mmap).

    The same as starting Python with ``MALLOC_TRIM_THRESHOLD_`` and ``MALLOC_MMAP_THRESHOLD_`` set. Memory
    the process has freed stays reserved for it (up to its peak), which is what repeated caching wants.
    A threshold above 2 GiB - 1 (what mallopt's int holds) turns trimming off and puts the mmap threshold at
    2 GiB - 1.

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
    trim = threshold_bytes if threshold_bytes <= _INT_MAX else -1
    accepted = bool(mallopt(_M_TRIM_THRESHOLD, trim)) and bool(
        mallopt(_M_MMAP_THRESHOLD, min(threshold_bytes, _INT_MAX))
    )
    if not accepted:
        logger.warning("glibc refused mallopt(%d bytes); the allocator is unchanged", threshold_bytes)
    return accepted


# Set by the first large capture on the CPU (see the module docstring). The environment variable opts out.
CAPTURE_KEEP_FREED_BYTES = 64 * 2**20
_auto_keep_freed = {
    "enabled": os.environ.get("WORKBENCH_KEEP_FREED_MEMORY", "1") != "0",
    "done": False,
    "threshold": 0,  # the threshold set so far (bytes); raised when a larger cache comes
}


def auto_keep_freed_memory(enabled: bool) -> None:
    """Whether ``run_with_cache`` may call :func:`keep_freed_memory` once a CPU cache exceeds
    :data:`CAPTURE_KEEP_FREED_BYTES` (default: yes; ``WORKBENCH_KEEP_FREED_MEMORY=0`` starts with no). Turning
    it off does not undo a setting already made."""
    _auto_keep_freed["enabled"] = bool(enabled)


def note_capture(cache_bytes: int, on_cpu: bool) -> None:
    """Called by ``run_with_cache`` with the bytes of the cache it made and whether it lies in CPU memory
    (glibc's): the first such cache larger than :data:`CAPTURE_KEEP_FREED_BYTES` makes glibc keep freed
    memory in the process (logged once), so that the next captures reuse it instead of page-faulting it in
    again. The threshold is twice the cache, at least 1 GiB (the cache and the forward's own tensors lie free
    at the top of the heap after it), raised when a larger cache comes."""
    if not _auto_keep_freed["enabled"] or not on_cpu or cache_bytes < CAPTURE_KEEP_FREED_BYTES:
        return
    threshold = max(2**30, 2 * cache_bytes)
    if threshold <= _auto_keep_freed["threshold"]:
        return
    first = not _auto_keep_freed["done"]
    _auto_keep_freed["done"], _auto_keep_freed["threshold"] = True, threshold
    if keep_freed_memory(threshold) and first:
        logger.info(
            "run_with_cache made a %s cache: glibc now keeps freed memory in this process so that the next "
            "captures reuse it (opt out: workbench.memory.auto_keep_freed_memory(False) or "
            "WORKBENCH_KEEP_FREED_MEMORY=0)",
            gib(cache_bytes),
        )


# Memory estimates --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryEstimate:
    """The memory a model needs: its weights, and the key/value cache of one batch of sequences.

    Attributes:
        parameters: how many values the weights hold (from the checkpoint's file headers when it has
            safetensors, else from the config).
        dtype: the dtype the floating-point weights are loaded in.
        weight_bytes: the weights' bytes in that dtype (integer tensors at their stored size).
        kv_cache_bytes: keys and values of every layer for ``batch`` sequences of ``seq`` positions:
            ``2 * n_layers * batch * seq * n_kv_heads * d_head`` values in ``dtype`` (grouped-query attention
            stores only its key/value heads).
        batch, seq: the batch the cache is counted for.
    """

    parameters: int
    dtype: torch.dtype
    weight_bytes: int
    kv_cache_bytes: int
    batch: int
    seq: int

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.kv_cache_bytes

    def __str__(self) -> str:
        return (
            f"{self.parameters:.3g} parameters: {gib(self.weight_bytes)} of weights in "
            f"{str(self.dtype).removeprefix('torch.')} + {gib(self.kv_cache_bytes)} of key/value cache "
            f"({self.batch} x {self.seq} positions) = {gib(self.total_bytes)}"
        )


def kv_cache_bytes(
    n_layers: int, n_kv_heads: int, d_head: int, batch: int, seq: int, dtype: torch.dtype
) -> int:
    """Bytes of the keys and values [batch, seq, n_kv_heads, d_head] of every layer."""
    return 2 * n_layers * batch * seq * n_kv_heads * d_head * dtype.itemsize


def gib(n_bytes: int) -> str:
    """``'1.5 GiB'``, for messages."""
    return f"{n_bytes / 2**30:.3g} GiB"
