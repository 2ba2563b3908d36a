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
- :func:`map_units`: a sweep: units of uneven cost shared among the ranks, each run at its rank's own pace,
  the results of all of them back on every rank in the units' order.

>>> ctx = context()  # outside a launcher: rank 0 of 1
>>> (ctx.rank, ctx.world_size, ctx.is_main)
(0, 1, True)
>>> share(["a", "b", "c", "d", "e"], rank=1, world_size=2)
['b', 'd']
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
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
    from the launcher's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), else rank 0 of 1; inside
    :func:`alone`, rank 0 of 1.

    Raises:
        ValueError: the environment is inconsistent (a rank outside 0 .. WORLD_SIZE - 1, a non-integer).
    """
    if _alone_depth:
        return Context(0, 1, _env_int(_ENV_LOCAL, 0))
    return _launched_context()


# > 0 inside alone(): this process's work is its own, whatever the job.
_alone_depth = 0


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Within this block the process acts as rank 0 of 1 for every helper here: collectives are identities,
    :func:`share` gives all units, bars show. :func:`map_units` runs each unit in it, so that library code
    that would share its work among the ranks (a streamed probe summing its gradient over them) computes it
    all on this rank instead, as the unit is this rank's alone. Log lines keep naming the real rank."""
    global _alone_depth
    _alone_depth += 1
    try:
        yield
    finally:
        _alone_depth -= 1


def _launched_context() -> Context:
    """:func:`context` of the job as launched (:func:`alone` or not)."""
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
    """``"[rank 1/4] "`` in a job of several processes (also inside :func:`alone`), ``""`` alone."""
    ctx = _launched_context()
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


class UnitFailed(RuntimeError):
    """Another rank's unit of a :func:`map_units` sweep raised (that rank raises the original error)."""


def map_units(
    work: Callable[[Unit], Any],
    units: Sequence[Unit],
    order: Callable[[Unit], Any] | None = None,
    progress: bool = True,
    desc: str = "",
    unit: str = "unit",
) -> list[Any]:
    """``[work(u) for u in units]``, the units shared among the ranks; every rank gets the whole list back.

    Each rank runs its :func:`share` of ``units`` (strided: deterministic and disjoint), at its own pace: no
    collective runs between two units, so a rank with cheap units is never held back by one with costly
    units until the end, where the results are gathered on rank 0 and broadcast (they must be picklable).
    ``work`` runs on one rank, inside :func:`alone` (whatever it calls computes on this rank alone). Alone it
    is a plain loop.

    Args:
        work: computes one unit's result.
        units: the whole sweep, the same list on every rank.
        order: a key: a rank runs its own units sorted by it (e.g. the model they need, so that each rank
            loads each of its models once); the results keep the order of ``units``.
        progress: a tqdm bar on rank 0 counting the finished units of every rank (read from the process
            group's key-value store, which the ranks add to as they finish: no lockstep).
        desc, unit: tqdm's.

    Raises:
        whatever ``work`` raised, on the rank where it raised (that rank skips its remaining units; the
        others finish theirs, so their stored results stay usable), and :class:`UnitFailed` naming the rank,
        the unit and the error on every other rank.
    """
    ctx = init()
    mine = share_indices(len(units))
    if order is not None:
        mine.sort(key=lambda index: order(units[index]))
    if not ctx.distributed:
        return _map_alone(work, units, mine, progress, desc, unit)
    counter = _UnitCounter(len(units), progress, desc, unit)
    results: dict[int, Any] = {}
    failure: tuple[int, BaseException] | None = None
    for position, index in enumerate(mine):
        try:
            with alone():
                results[index] = work(units[index])
        except Exception as err:  # told to every rank below, so that none waits forever for this one
            failure = (index, err)
            counter.add(len(mine) - position)  # the skipped units count as finished: rank 0 stops waiting
            break
        counter.add(1)
    counter.wait_for_all()
    told = None if failure is None else (failure[0], f"{type(failure[1]).__name__}: {failure[1]}")
    gathered = gather_objects((results, told))
    merged = None
    if ctx.is_main:
        merged = {"results": {}, "failure": None}
        for rank, (rank_results, rank_failure) in enumerate(gathered):
            merged["results"].update(rank_results)
            if rank_failure is not None and merged["failure"] is None:
                merged["failure"] = (rank, *rank_failure)
        merged = (
            {"failure": merged["failure"]}
            if merged["failure"] is not None
            else {"results": [merged["results"][index] for index in range(len(units))]}
        )
    merged = broadcast_object(merged)
    if failure is not None:
        raise failure[1]
    if "failure" in merged:
        rank, index, message = merged["failure"]
        raise UnitFailed(f"rank {rank} failed on unit {units[index]!r}: {message}")
    return merged["results"]


def _map_alone(work, units, mine, progress: bool, desc: str, unit: str) -> list[Any]:
    from tqdm.auto import tqdm

    results: dict[int, Any] = {}
    with tqdm(total=len(units), disable=not progress, desc=desc, unit=unit) as bar:
        for index in mine:
            results[index] = work(units[index])
            bar.update(1)
    return [results[index] for index in range(len(units))]


class _UnitCounter:
    """The finished units of all ranks, counted in the default process group's key-value store (the store
    torchrun's rendezvous made: an ``add`` is one small request, not a collective); rank 0 draws the bar."""

    _POLL_S = 0.2

    def __init__(self, total: int, enabled: bool, desc: str, unit: str) -> None:
        import uuid

        from torch.distributed import distributed_c10d
        from tqdm.auto import tqdm

        self.total = total
        self.key = broadcast_object(f"workbench.map_units/{uuid.uuid4().hex}")  # one key per sweep
        self._store = distributed_c10d._get_default_store()
        self._bar = tqdm(total=total, disable=not (enabled and is_main()), desc=desc, unit=unit)

    def add(self, count: int) -> None:
        self._refresh(int(self._store.add(self.key, count)))

    def _refresh(self, done: int) -> None:
        if done > self._bar.n:
            self._bar.update(done - self._bar.n)

    def wait_for_all(self) -> None:
        """Rank 0 keeps its bar moving until every unit is finished; then the bar is closed on every rank."""
        import time

        if is_main() and not self._bar.disable:
            while (done := int(self._store.add(self.key, 0))) < self.total:
                self._refresh(done)
                time.sleep(self._POLL_S)
            self._refresh(done)
        self._bar.close()
