"""Hook points: named places in the forward pass where activations can be read and edited.

A :class:`HookPoint` is an identity module. Its name is its attribute path inside the model, assigned by
walking ``named_modules()``, so ``blocks.0.attn.hook_pattern`` is not a string typed anywhere: it is where
the module sits. Every architecture names its attributes the same way (see ``docs/hooks.md``).

A hook function has the signature ``fn(activation, hook) -> Tensor | None``: return a tensor to replace
the activation, or ``None`` to leave it unchanged (an in-place edit of ``activation`` then stays). A
replacement must have the activation's exact shape, dtype and device: anything else is an error naming the
hook point, the function and both, never a silent broadcast. ``hook`` is the :class:`HookPoint`
(``hook.name``, ``hook.layer``).

Threads: hooks attached for a call or a ``with`` block (``model.hooks``, ``run_with_hooks``,
``run_with_cache``, ``generate(fwd_hooks=...)``) belong to the thread that attached them; a forward in
another thread neither runs them nor sees them in ``is_active``. Hooks attached by hand with
:meth:`HookPoint.add_hook` are model-wide: every thread's forward runs them until they are removed.
"""

from __future__ import annotations

import difflib
import itertools
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Union

import torch
from torch import nn

HookFn = Callable[[torch.Tensor, "HookPoint"], Union[torch.Tensor, None]]
NameOrPredicate = Union[str, Callable[[str], bool]]

_LAYER_RE = re.compile(r"blocks\.(\d+)\.")
_hook_ids = itertools.count()  # unique keys for attached hooks, increasing: the order they were added
_attach_lock = threading.Lock()  # adding and removing (never taken by a forward)


class HookHandle:
    """Returned by :meth:`HookPoint.add_hook`; ``remove()`` detaches the hook (again is harmless), from any
    thread."""

    def __init__(self, point: HookPoint, key: int, thread: int | None = None) -> None:
        self._point = point
        self._key = key
        self._thread = thread  # the owning thread's id for a thread-local hook, None for a model-wide one

    def remove(self) -> None:
        self._point._detach(self._key, self._thread)


class HookPoint(nn.Module):
    """An identity module that marks a place where an activation can be read or replaced.

    Hook functions run in the order they were added; each sees the activation as the previous one left it.
    They are kept in plain dicts rather than as torch forward hooks: a forward with hundreds of cached
    hook points then costs one Python call per hook, not torch's general hook machinery, and a hook point
    with no hooks costs two dict checks.

    Model-wide hooks (``add_hook``) run in every thread; thread-local ones (``add_hook(...,
    thread_local=True)``, what ``model.hooks`` attaches) only in the thread that attached them.

    Attributes:
        name: the attribute path of this hook point in its model, e.g. ``"blocks.3.attn.hook_pattern"``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.name: str | None = None
        # Model-wide: id -> (fn, read_only), in the order added.
        self._hooks: dict[int, tuple[HookFn, bool]] = {}
        # Thread-local: thread id -> {id: (fn, read_only)}; a thread's entry goes when its last hook does.
        self._thread_hooks: dict[int, dict[int, tuple[HookFn, bool]]] = {}
        # Thread id -> the tensor that thread's run_with_cache(out=...) lends this point to compute into.
        self._lent: dict[int, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._hooks and not self._thread_hooks:
            return x
        for fn, _ in self.attached_hooks():
            replacement = fn(x, self)
            if replacement is not None:
                self._check_replacement(fn, x, replacement)
                x = replacement
        return x

    def attached_hooks(self) -> list[tuple[HookFn, bool]]:
        """``(fn, read_only)`` of the hooks a forward in the calling thread runs here, in the order added:
        the model-wide ones and this thread's own."""
        mine = self._thread_hooks.get(threading.get_ident()) if self._thread_hooks else None
        if not mine:
            return list(self._hooks.values())
        if not self._hooks:
            return list(mine.values())
        merged = {**self._hooks, **mine}
        return [merged[key] for key in sorted(merged)]

    def _check_replacement(self, fn: HookFn, x: torch.Tensor, replacement: object) -> None:
        if not isinstance(replacement, torch.Tensor):
            raise TypeError(
                f"the hook {_describe(fn)} at {self.name!r} returned a {type(replacement).__name__}; a hook must "
                f"return a tensor of the activation's shape {_shape(x)} and dtype {x.dtype}, or None to keep it"
            )
        if replacement.shape != x.shape or replacement.dtype != x.dtype or replacement.device != x.device:
            raise ValueError(
                f"the hook {_describe(fn)} at {self.name!r} returned a tensor of shape {_shape(replacement)}, "
                f"{replacement.dtype} on {replacement.device}, but the activation is {_shape(x)}, {x.dtype} on "
                f"{x.device}: a replacement must match it exactly (nothing is broadcast; use "
                f"value.expand_as(activation) or .to(activation.dtype, activation.device) if that is what you mean)"
            )

    def empty(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A tensor for a component to compute this activation into: the one ``run_with_cache(...,
        out=previous_cache)`` lent this hook point in the calling thread, when it has this shape, dtype and
        device and no hook may edit the activation (the cache then keeps it with no copy), else a new
        ``torch.empty``. Attention computes its scores and pattern this way."""
        if self._lent:
            lent = self._lent.get(threading.get_ident())
            if (
                lent is not None
                and (lent.shape, lent.dtype, lent.device) == (torch.Size(shape), dtype, torch.device(device))
                and lent.is_contiguous()
                and not self.may_edit
            ):
                return lent
        return torch.empty(shape, dtype=dtype, device=device)

    @property
    def is_active(self) -> bool:
        """True when a hook that the calling thread's forward runs is attached, i.e. somebody wants to look at
        (or edit) this activation."""
        if self._hooks:
            return True
        return bool(self._thread_hooks) and bool(self._thread_hooks.get(threading.get_ident()))

    @property
    def may_edit(self) -> bool:
        """True when a hook the calling thread's forward runs may replace or modify the activation (is not
        read-only)."""
        return any(not read_only for _, read_only in self.attached_hooks())

    @property
    def layer(self) -> int | None:
        """The block index this hook point lives in, or None for hook points outside the blocks."""
        match = _LAYER_RE.match(self.name or "")
        return int(match.group(1)) if match else None

    def add_hook(self, fn: HookFn, read_only: bool = False, thread_local: bool = False) -> HookHandle:
        """Attach ``fn(activation, hook)``; returns a handle whose ``remove()`` detaches it.

        Args:
            read_only: a promise that ``fn`` only reads the activation (as caching does). Components may then
                keep their fused kernels and hand the hook an equal value computed another way.
            thread_local: only forwards in the calling thread run ``fn`` (what ``model.hooks`` uses); by
                default the hook is model-wide and every thread's forward runs it.
        """
        if not callable(fn):
            raise TypeError(
                f"a hook must be a function fn(activation, hook), got {type(fn).__name__} at {self.name!r}"
            )
        key = next(_hook_ids)
        with _attach_lock:
            if thread_local:
                thread = threading.get_ident()
                self._thread_hooks.setdefault(thread, {})[key] = (fn, read_only)
                return HookHandle(self, key, thread)
            self._hooks[key] = (fn, read_only)
        return HookHandle(self, key)

    def _detach(self, key: int, thread: int | None) -> None:
        with _attach_lock:
            if thread is None:
                self._hooks.pop(key, None)
                return
            mine = self._thread_hooks.get(thread)
            if mine is not None:
                mine.pop(key, None)
                if not mine:
                    del self._thread_hooks[thread]

    def remove_hooks(self, all_threads: bool = False) -> None:
        """Remove the model-wide hooks and the calling thread's own (``all_threads``: every thread's)."""
        with _attach_lock:
            self._hooks.clear()
            if all_threads:
                self._thread_hooks.clear()
            else:
                self._thread_hooks.pop(threading.get_ident(), None)

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


class HookedModule(nn.Module):
    """Mixin for models whose hook points are addressed by name.

    Gives ``hook_names``, ``hook_points()``, the ``hooks()`` context manager and the name resolution that
    ``run_with_hooks``/``run_with_cache`` build on.
    """

    def hook_points(self) -> dict[str, HookPoint]:
        """All hook points by name, in forward (registration) order.

        Built once by walking ``named_modules()`` (which also sets each ``hook.name``) and kept; call
        :meth:`refresh_hook_points` after replacing submodules by hand.
        """
        points = self.__dict__.get("_hook_points")
        if points is None:
            points = {}
            for name, module in self.named_modules():
                if isinstance(module, HookPoint):
                    module.name = name
                    points[name] = module
            self.__dict__["_hook_points"] = points
        return points

    def refresh_hook_points(self) -> dict[str, HookPoint]:
        """Walk the modules again (after submodules were replaced) and return the new hook points."""
        self.__dict__.pop("_hook_points", None)
        return self.hook_points()

    @property
    def hook_names(self) -> list[str]:
        """The ordered list of hook point names of this model."""
        return list(self.hook_points())

    def resolve_hook_names(self, name_or_predicate: NameOrPredicate | Iterable[str] | None) -> list[str]:
        """Turn a name, a list of names, a predicate on names, or None (all) into a list of hook names.

        Raises:
            KeyError: a name that is not a hook point of this model (with the closest matches).
        """
        return _resolve(self.hook_points(), name_or_predicate, type(self).__name__)

    @contextmanager
    def hooks(
        self, fwd_hooks: Iterable[tuple[NameOrPredicate, HookFn]] = (), read_only: bool = False
    ) -> Iterator[HookedModule]:
        """Attach forward hooks for the duration of a ``with`` block; they are removed on exit, also on error.

        The hooks are the calling thread's: a forward of this model in another thread does not run them.

        Args:
            fwd_hooks: pairs ``(name_or_predicate, fn)``; a predicate attaches ``fn`` to every matching name.
            read_only: the hooks only read activations (see :meth:`HookPoint.add_hook`).

        >>> with model.hooks([("blocks.0.hook_resid_post", lambda x, hook: x * 0)]):  # doctest: +SKIP
        ...     out = model(input_ids)
        """
        points = self.hook_points()
        owner = type(self).__name__
        handles = []
        try:
            for name_or_predicate, fn in fwd_hooks:
                for name in _resolve(points, name_or_predicate, owner):
                    handles.append(points[name].add_hook(fn, read_only=read_only, thread_local=True))
            yield self
        finally:
            for handle in handles:
                handle.remove()

    @contextmanager
    def lend(self, tensors: Mapping[str, torch.Tensor]) -> Iterator[HookedModule]:
        """Lend each named hook point a tensor to compute its activation into (see :meth:`HookPoint.empty`),
        in the calling thread, for the duration of a ``with`` block. What ``run_with_cache(...,
        out=previous_cache)`` does with the previous cache's tensors."""
        points, thread = self.hook_points(), threading.get_ident()
        lent = [points[name] for name in tensors if name in points]
        try:
            for point in lent:
                point._lent[thread] = tensors[point.name]
            yield self
        finally:
            for point in lent:
                point._lent.pop(thread, None)

    def reset_hooks(self, all_threads: bool = False) -> None:
        """Remove the hooks attached to any hook point: the model-wide ones (added by hand with ``add_hook``)
        and the calling thread's; ``all_threads=True`` also those other threads' ``with`` blocks hold."""
        for point in self.hook_points().values():
            point.remove_hooks(all_threads=all_threads)

    def attached_hooks(self) -> list[tuple[str, HookFn, bool]]:
        """``(hook name, fn, read_only)`` of every hook a forward in the calling thread runs, in forward order."""
        return [
            (name, fn, ro) for name, point in self.hook_points().items() for fn, ro in point.attached_hooks()
        ]


def _describe(fn: object) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(getattr(fn, "func", None), "__qualname__", None)
    return repr(name) if name else repr(fn)[:60]


def _shape(x: torch.Tensor) -> str:
    return "[" + ", ".join(str(d) for d in x.shape) + "]"


def _resolve(points: dict[str, HookPoint], name_or_predicate, owner: str) -> list[str]:
    if name_or_predicate is None:
        return list(points)
    if callable(name_or_predicate):
        return [name for name in points if name_or_predicate(name)]
    names = [name_or_predicate] if isinstance(name_or_predicate, str) else list(name_or_predicate)
    for name in names:
        if name not in points:
            raise KeyError(unknown_hook_message(name, points, owner))
    return names


def unknown_hook_message(name: str, known: Iterable[str], owner: str) -> str:
    known = list(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return (
        f"{name!r} is not a hook point of {owner}.{hint} "
        f"It has {len(known)} hook points; list them with model.hook_names (see docs/hooks.md)."
    )
