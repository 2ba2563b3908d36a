"""Hook points: named places in the forward pass where activations can be read and edited.

A :class:`HookPoint` is an identity module. Its name is its attribute path inside the model, assigned by
walking ``named_modules()``, so ``blocks.0.attn.hook_pattern`` is not a string typed anywhere: it is where
the module sits. Every architecture names its attributes the same way (see ``docs/hooks.md``).

A hook function has the signature ``fn(activation, hook) -> Tensor | None``: return a tensor to replace
the activation, or ``None`` to leave it unchanged. ``hook`` is the :class:`HookPoint` (``hook.name``,
``hook.layer``).
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Union

import torch
from torch import nn

HookFn = Callable[[torch.Tensor, "HookPoint"], Union[torch.Tensor, None]]
NameOrPredicate = Union[str, Callable[[str], bool]]

_LAYER_RE = re.compile(r"blocks\.(\d+)\.")
_hook_ids = itertools.count()  # unique keys for attached hooks


class HookHandle:
    """Returned by :meth:`HookPoint.add_hook`; ``remove()`` detaches the hook (again is harmless)."""

    def __init__(self, hooks: dict, key: int) -> None:
        self._hooks = hooks
        self._key = key

    def remove(self) -> None:
        self._hooks.pop(self._key, None)


class HookPoint(nn.Module):
    """An identity module that marks a place where an activation can be read or replaced.

    Hook functions run in the order they were added; each sees the activation as the previous one left it.
    They are kept in a plain dict rather than as torch forward hooks: a forward with hundreds of cached
    hook points then costs one Python call per hook, not torch's general hook machinery.

    Attributes:
        name: the attribute path of this hook point in its model, e.g. ``"blocks.3.attn.hook_pattern"``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.name: str | None = None
        self._hooks: dict[int, tuple[HookFn, bool]] = {}  # id -> (fn, read_only), in the order added

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for fn, _ in tuple(self._hooks.values()):
            replacement = fn(x, self)
            if replacement is not None:
                x = replacement
        return x

    @property
    def is_active(self) -> bool:
        """True when a hook is attached, i.e. somebody wants to look at (or edit) this activation."""
        return bool(self._hooks)

    @property
    def may_edit(self) -> bool:
        """True when an attached hook may replace or modify the activation (is not read-only)."""
        return any(not read_only for _, read_only in self._hooks.values())

    @property
    def layer(self) -> int | None:
        """The block index this hook point lives in, or None for hook points outside the blocks."""
        match = _LAYER_RE.match(self.name or "")
        return int(match.group(1)) if match else None

    def add_hook(self, fn: HookFn, read_only: bool = False) -> HookHandle:
        """Attach ``fn(activation, hook)``; returns a handle whose ``remove()`` detaches it.

        Args:
            read_only: a promise that ``fn`` only reads the activation (as caching does). Components may then
                keep their fused kernels and hand the hook an equal value computed another way.
        """
        key = next(_hook_ids)
        self._hooks[key] = (fn, read_only)
        return HookHandle(self._hooks, key)

    def remove_hooks(self) -> None:
        self._hooks.clear()

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
                    handles.append(points[name].add_hook(fn, read_only=read_only))
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def reset_hooks(self) -> None:
        """Remove every hook attached to any hook point (for hooks added by hand with ``add_hook``)."""
        for point in self.hook_points().values():
            point.remove_hooks()


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
