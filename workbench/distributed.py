"""Run the same code alone or under ``torchrun``: ranks, shares of work, collectives, rank-0 progress.

The engine is ``torch.distributed``. A launcher (``torchrun``, SLURM with ``srun`` exporting the variables,
Kubernetes' PyTorch operator) sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; without them the process is rank 0 of 1 and every helper here is a cheap no-op, so library
code calls them unconditionally. The process group is initialized on demand, by :func:`init` or by the first
collective: gloo on CPU, NCCL for CUDA tensors (with gloo beside it for Python objects) when CUDA is there.

Nothing is kept here beyond ``torch.distributed``'s own state: the rank is read from the process group
once it exists, else from the environment.

- :func:`context`, :func:`is_main`: who am I (rank, world size, local rank).
- :func:`share`, :func:`share_indices`: a deterministic, disjoint share of a list of units per rank (strided,
  so a list sorted by cost is spread evenly); the shares of all ranks together are the whole list.
- :func:`barrier`, :func:`all_reduce`, :func:`all_reduce_scalar`, :func:`gather_objects`: collectives that
  are identities in a single process.
- :func:`rank_prefix`, :func:`get_logger`: log lines that name the rank.
- :class:`GlobalProgress`: a tqdm bar shown on rank 0 only, counting the work of all ranks.

>>> ctx = context()  # outside a launcher: rank 0 of 1
>>> (ctx.rank, ctx.world_size, ctx.is_main)
(0, 1, True)
>>> share(["a", "b", "c", "d", "e"], rank=1, world_size=2)
['b', 'd']
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

Unit = TypeVar("Unit")

# The environment a launcher sets (torchrun's names; SLURM and the PyTorch operator export the same ones).
_ENV_RANK, _ENV_WORLD, _ENV_LOCAL = "RANK", "WORLD_SIZE", "LOCAL_RANK"
_REDUCE_OPS = {"sum": "SUM", "max": "MAX", "min": "MIN", "product": "PRODUCT"}


@dataclass(frozen=True)
class Context:
    """Where this process stands in the job.

    Attributes:
        rank: 0 .. world_size - 1 (global over all nodes).
        world_size: the number of processes in the job (1 when not launched).
        local_rank: the rank on this node (which GPU to use).
    """

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r} is not an integer") from None


def context() -> Context:
    """This process's rank, world size and local rank: from the process group when it is initialized, else
    from the launcher's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), else rank 0 of 1.

    Raises:
        ValueError: the environment is inconsistent (a rank outside 0 .. WORLD_SIZE - 1, a non-integer).
    """
    local_rank = _env_int(_ENV_LOCAL, 0)
    if dist.is_available() and dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size(), local_rank)
    world_size = _env_int(_ENV_WORLD, 1)
    rank = _env_int(_ENV_RANK, 0)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"inconsistent launcher environment: RANK={rank}, WORLD_SIZE={world_size}")
    return Context(rank, world_size, local_rank)


def is_main() -> bool:
    """True on rank 0 (and in a process that was not launched as part of a job)."""
    return context().is_main


def default_backend() -> str:
    """``"cpu:gloo,cuda:nccl"`` when CUDA is available (CUDA tensors over NCCL, Python objects and CPU
    tensors over gloo), else ``"gloo"``."""
    if torch.cuda.is_available() and dist.is_nccl_available():
        return "cpu:gloo,cuda:nccl"
    return "gloo"


def init(backend: str | None = None, timeout_s: float = 1800.0) -> Context:
    """Initialize the process group if the launcher asked for several processes and it is not done yet.

    Args:
        backend: a ``torch.distributed`` backend string; default :func:`default_backend`.
        timeout_s: how long a collective waits for the other ranks before failing.

    Returns:
        the :class:`Context` (rank 0 of 1 without a launcher: nothing is initialized then).

    Raises:
        RuntimeError: ``WORLD_SIZE`` > 1 but ``MASTER_ADDR``/``MASTER_PORT`` are not set (not launched by
            ``torchrun`` or an equivalent launcher).
    """
    ctx = context()
    if not ctx.distributed or dist.is_initialized():
        return ctx
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise RuntimeError(
            f"WORLD_SIZE={ctx.world_size} but {', '.join(missing)} is not set; launch with torchrun "
            f"(or a launcher that sets the torch.distributed environment), or unset WORLD_SIZE"
        )
    backend = backend or default_backend()
    if "nccl" in backend:
        torch.cuda.set_device(ctx.local_rank)  # one GPU per process, before NCCL creates its communicator
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return context()


def shutdown() -> None:
    """Destroy the process group if one was initialized (call once at the end of a launched program)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def share_indices(n_units: int, rank: int | None = None, world_size: int | None = None) -> list[int]:
    """The indices of the units that ``rank`` handles out of ``n_units``: ``rank, rank + world_size, ...``.

    Strided rather than contiguous: work sorted by cost (longest sentences first) is spread evenly over the
    ranks. Deterministic, disjoint across ranks, and together the whole range.
    """
    ctx = context() if rank is None or world_size is None else None
    rank = ctx.rank if rank is None else rank
    world_size = ctx.world_size if world_size is None else world_size
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in 0 .. world_size - 1, got rank={rank}, world_size={world_size}")
    return list(range(rank, n_units, world_size))


def share(units: Sequence[Unit], rank: int | None = None, world_size: int | None = None) -> list[Unit]:
    """This rank's share of ``units`` (see :func:`share_indices`), in their order."""
    return [units[index] for index in share_indices(len(units), rank, world_size)]


def _active() -> bool:
    """Whether collectives must really run (several processes); initializes the group on first use."""
    return init().distributed


def barrier() -> None:
    """Wait until every rank gets here (nothing alone)."""
    if _active():
        dist.barrier()


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Reduce ``tensor`` over all ranks in place (``op``: sum, max, min, product) and return it.

    A CUDA tensor goes over NCCL, a CPU tensor over gloo; alone, it is returned unchanged.
    """
    if op not in _REDUCE_OPS:
        raise ValueError(f"op must be one of {sorted(_REDUCE_OPS)}, got {op!r}")
    if _active():
        dist.all_reduce(tensor, op=getattr(dist.ReduceOp, _REDUCE_OPS[op]))
    return tensor


def all_reduce_scalar(value: float, op: str = "sum") -> float:
    """``value`` reduced over all ranks (float64 on CPU, so exact for counts below 2**53)."""
    tensor = torch.tensor([float(value)], dtype=torch.float64)
    return float(all_reduce(tensor, op).item())


def gather_objects(obj: Any) -> list[Any] | None:
    """Every rank's picklable ``obj``, in rank order, on rank 0; ``None`` on the other ranks.

    Alone: ``[obj]``. A collective: every rank must call it.
    """
    if not _active():
        return [obj]
    ctx = context()
    gathered: list[Any] | None = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def broadcast_object(obj: Any) -> Any:
    """Rank 0's picklable ``obj`` on every rank (what the others pass is ignored). A collective."""
    if not _active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def rank_prefix() -> str:
    """``"[rank 1/4] "`` in a job of several processes, ``""`` alone."""
    ctx = context()
    return f"[rank {ctx.rank}/{ctx.world_size}] " if ctx.distributed else ""


class _RankAdapter(logging.LoggerAdapter):
    def process(self, msg, kwargs):
        return f"{rank_prefix()}{msg}", kwargs


def get_logger(name: str) -> logging.LoggerAdapter:
    """``logging.getLogger(name)`` whose messages start with :func:`rank_prefix` (read at each call)."""
    return _RankAdapter(logging.getLogger(name), {})


class GlobalProgress:
    """A tqdm bar on rank 0 counting the work done by all ranks; nothing is drawn on the other ranks.

    :meth:`update` is a collective (a sum over ranks): every rank calls it the same number of times, with
    0 when it has nothing to report that round. Alone it is an ordinary tqdm bar.

    Args:
        total: the global amount of work (all ranks together).
        initial: already done before this run (a resumed job).
        enabled: False shows no bar anywhere (the counting still runs, so the calls stay collective).
        desc, unit: tqdm's.
    """

    def __init__(
        self, total: int, initial: int = 0, enabled: bool = True, desc: str = "", unit: str = "it"
    ) -> None:
        from tqdm.auto import tqdm

        self.done = int(initial)
        self._bar = tqdm(
            total=total, initial=initial, disable=not (enabled and is_main()), desc=desc, unit=unit
        )

    def update(self, local_count: int) -> int:
        """Add every rank's ``local_count`` to the bar; returns the global count so far."""
        added = int(all_reduce_scalar(local_count))
        self.done += added
        self._bar.update(added)
        return self.done

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> GlobalProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
