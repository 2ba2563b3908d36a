"""Taps: how a hook point reads (and edits) a place inside a Hugging Face model, with torch module hooks.

A tap belongs to one Hugging Face module and holds one hook point per call of that module in a forward: one
for an ordinary module, one per layer for a block that a model runs several times (ALBERT's shared layer).
``tap.attach(state)`` registers its torch hook for one forward (the returned handle removes it); the hook
shows the hook point the activation in its canonical shape ([batch, pos, ...], heads split) and, when the hook
returns a replacement, hands Hugging Face the edit in its own shape.

Kinds:
- :class:`Tap`: a module's output (its first tensor) or its first input;
- :class:`FusedQKVTap`: queries, keys and values inside one fused projection's output;
- :class:`PatternTap`: the attention probabilities a module returns (read only: the family computes its output
  inside the module, so an edit could not reach it);
- :class:`ResidMidTap`: ``resid_pre + attn_out`` of a pre-norm block, an edit added to the attention output.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from ..hook_points import HookPoint


class RunState:
    """What the taps of one forward share: the batch size (to view [batch * pos, d] tensors as [batch, pos, d]),
    how often each tap's module has run (which hook point a shared block's k-th call goes to), and each
    block's input (for ``hook_resid_mid``)."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.calls: dict[int, int] = {}
        self.inputs: dict[tuple[int, int], torch.Tensor] = {}

    def next_call(self, tap: object) -> int:
        """The index of this call of ``tap``'s module in the forward (0, 1, ...)."""
        count = self.calls.get(id(tap), 0)
        self.calls[id(tap)] = count + 1
        return count


@dataclass(eq=False)
class Tap:
    """``points[k]`` reads the output (``where="out"``) or the first input (``"in"``) of ``module`` on its k-th
    call in a forward (the last point for any later call).

    Attributes:
        d_head: the tensor's last dimension holds heads of that size ([batch, pos, head * d_head] shown as
            [batch, pos, head, d_head]).
        calls_per_point: the module runs this many times per hook point, and only the first call is the hook
            point's (DeBERTa-v3 runs its query/key projections again on the relative-position table).
        copy_output: hand Hugging Face a copy of the output, for modules whose output the family later edits in
            place (Falcon adds the attention output into its MLP output): the cached value stays the module's.
        read_only: a hook returning a replacement here is an error (the family has used the value already).
    """

    points: tuple[HookPoint, ...]
    module: nn.Module
    where: str = "out"
    d_head: int | None = None
    calls_per_point: int = 1
    copy_output: bool = False
    read_only: bool = False

    @property
    def is_active(self) -> bool:
        return any(point.is_active for point in self.points)

    def point_for(self, state: RunState) -> HookPoint | None:
        """The hook point of this call, or None for a call that belongs to no hook point."""
        call, extra = divmod(state.next_call(self), self.calls_per_point)
        return None if extra else self.points[min(call, len(self.points) - 1)]

    def attach(self, state: RunState) -> Any:
        if self.where == "out":
            return self.module.register_forward_hook(partial(self._on_output, state))
        return self.module.register_forward_pre_hook(partial(self._on_input, state), with_kwargs=True)

    def _on_output(self, state: RunState, module: nn.Module, args: Any, output: Any) -> Any:
        point = self.point_for(state)
        x = first_tensor(output)
        if x is None or point is None:
            return None
        edited = through(point, x, state.batch, self.d_head)
        if edited is not x and self.read_only:
            raise read_only_error(point, module)
        if self.copy_output:
            return replace_first(output, edited.clone())
        return None if edited is x else replace_first(output, edited)

    def _on_input(self, state: RunState, module: nn.Module, args: tuple, kwargs: dict) -> Any:
        point = self.point_for(state)
        if point is None:
            return None
        if args and isinstance(args[0], torch.Tensor):
            edited = through(point, args[0], state.batch, self.d_head)
            return None if edited is args[0] else ((edited, *args[1:]), kwargs)
        name = next((k for k, v in kwargs.items() if isinstance(v, torch.Tensor)), None)
        if name is None:
            return None
        edited = through(point, kwargs[name], state.batch, self.d_head)
        return None if edited is kwargs[name] else (args, {**kwargs, name: edited})


#: Layouts of a fused q/k/v projection's output [batch, pos, width]: ``"concat"`` = [q | k | v] (each head's
#: slices in order); ``"per_head"`` = for each head its q, k, v in turn ([batch, pos, head, 3, d_head], BLOOM,
#: GPT-NeoX).
FUSED_LAYOUTS = ("concat", "per_head")


class SplitTap:
    """Several hook points reading parts of one module's output (``parts`` splits it into views); an edit of
    any part is written into a copy of the output, which Hugging Face then gets."""

    groups: tuple[tuple[HookPoint, ...], ...]  # one tuple of hook points (one per call) per part
    module: nn.Module

    @property
    def is_active(self) -> bool:
        return any(point.is_active for group in self.groups for point in group)

    def attach(self, state: RunState) -> Any:
        return self.module.register_forward_hook(partial(self._on_output, state))

    def parts(self, whole: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def _on_output(self, state: RunState, module: nn.Module, args: Any, output: Any) -> Any:
        call = state.next_call(self)
        whole = first_tensor(output)
        view = canonical(whole, state.batch)
        edits = {}
        for which, (points, part) in enumerate(zip(self.groups, self.parts(view))):
            edited = points[min(call, len(points) - 1)](part)
            if edited is not part:
                edits[which] = edited
        if not edits:
            return None
        view = view.clone()  # the edits go into a copy: the module's own output stays as it was
        parts = self.parts(view)
        for which, edited in edits.items():
            parts[which].copy_(edited)
        return replace_first(output, view.reshape(whole.shape))


@dataclass(eq=False)
class FusedQKVTap(SplitTap):
    """Queries, keys and values in one projection's output: ``q``, ``k``, ``v`` are hook-point tuples as in
    :class:`Tap`; ``n_heads``/``n_kv_heads``/``d_head`` split the output per ``layout``."""

    q: tuple[HookPoint, ...]
    k: tuple[HookPoint, ...]
    v: tuple[HookPoint, ...]
    module: nn.Module
    layout: str
    n_heads: int
    n_kv_heads: int
    d_head: int

    @property
    def groups(self) -> tuple[tuple[HookPoint, ...], ...]:  # type: ignore[override]
        return (self.q, self.k, self.v)

    def parts(self, fused: torch.Tensor) -> list[torch.Tensor]:
        """fused [batch, pos, width] -> views q [batch, pos, head, d_head], k and v [batch, pos, kv_head, d_head]."""
        lead = fused.shape[:-1]
        if self.layout == "per_head":
            heads = fused.view(*lead, self.n_heads, 3, self.d_head)
            return [heads[..., 0, :], heads[..., 1, :], heads[..., 2, :]]
        sizes = [self.n_heads * self.d_head, self.n_kv_heads * self.d_head, self.n_kv_heads * self.d_head]
        return [part.view(*lead, -1, self.d_head) for part in fused.split(sizes, dim=-1)]



@dataclass(eq=False)
class HalvesTap(SplitTap):
    """A gated MLP's fused input projection (ModernBERT's ``Wi``, Phi-3's ``gate_up_proj``): its output's first
    half is ``mlp.hook_pre`` (the activated half), the second ``mlp.hook_pre_linear``."""

    pre: tuple[HookPoint, ...]
    pre_linear: tuple[HookPoint, ...]
    module: nn.Module

    @property
    def groups(self) -> tuple[tuple[HookPoint, ...], ...]:  # type: ignore[override]
        return (self.pre, self.pre_linear)

    def parts(self, whole: torch.Tensor) -> list[torch.Tensor]:
        return list(whole.chunk(2, dim=-1))


@dataclass(eq=False)
class PatternTap:
    """The attention probabilities [batch, head, query_pos, key_pos] at ``index`` of ``module``'s output, read
    only: returning a replacement is an error that says so."""

    points: tuple[HookPoint, ...]
    module: nn.Module
    index: int = 1
    family: str = ""

    @property
    def is_active(self) -> bool:
        return any(point.is_active for point in self.points)

    def attach(self, state: RunState) -> Any:
        return self.module.register_forward_hook(partial(self._on_output, state))

    def _on_output(self, state: RunState, module: nn.Module, args: Any, output: Any) -> None:
        point = self.points[min(state.next_call(self), len(self.points) - 1)]
        pattern = output[self.index] if isinstance(output, tuple) and len(output) > self.index else None
        if pattern is None:
            return None
        if point(pattern) is not pattern:
            raise read_only_error(point, module, "edit hook_q, hook_k, hook_v or hook_z instead")
        return None


@dataclass(eq=False)
class ResidMidTap:
    """``hook_resid_mid`` of a pre-norm block: the block's input plus its attention output. The block's input is
    kept as the block starts; an edit of resid_mid is added to the attention output, which is what the block
    adds to its residual stream."""

    points: tuple[HookPoint, ...]
    block: nn.Module
    attn_out: nn.Module

    @property
    def is_active(self) -> bool:
        return any(point.is_active for point in self.points)

    def attach(self, state: RunState) -> Any:
        keep = self.block.register_forward_pre_hook(partial(self._keep_input, state), with_kwargs=True)
        edit = self.attn_out.register_forward_hook(partial(self._on_attn_out, state))
        return _Handles(keep, edit)

    def _keep_input(self, state: RunState, module: nn.Module, args: tuple, kwargs: dict) -> None:
        x = args[0] if args and isinstance(args[0], torch.Tensor) else kwargs.get("hidden_states")
        state.inputs[(id(self), state.next_call(self))] = x

    def _on_attn_out(self, state: RunState, module: nn.Module, args: Any, output: Any) -> Any:
        call = state.calls.get(id(self), 1) - 1
        attn_out, resid_pre = first_tensor(output), state.inputs.pop((id(self), call), None)
        if attn_out is None or resid_pre is None:
            return None
        point = self.points[min(call, len(self.points) - 1)]
        mid = resid_pre + attn_out
        edited = point(mid)
        return None if edited is mid else replace_first(output, attn_out + (edited - mid))


class _Handles:
    """Several torch hook handles removed as one."""

    def __init__(self, *handles: Any) -> None:
        self.handles = handles

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def read_only_error(point: HookPoint, module: nn.Module, advice: str = "") -> ValueError:
    return ValueError(
        f"{point.name} is read only: {type(module).__name__} has used the value before the hook sees it (or "
        f"computes its output from it inside the module), so an edit could not take effect"
        + (f"; {advice}" if advice else "")
    )


# Shapes ----------------------------------------------------------------------------------------------------


def canonical(x: torch.Tensor, batch: int) -> torch.Tensor:
    """Hugging Face's [batch * pos, d] (OPT's MLP) as [batch, pos, d], and a [1, pos, d] shared by the batch
    (GPT-2's position embeddings) expanded to [batch, pos, d]; other shapes as they are."""
    if x.dim() == 2 and batch and x.shape[0] % batch == 0 and x.shape[0] != batch:
        return x.view(batch, x.shape[0] // batch, x.shape[1])
    if x.dim() >= 2 and x.shape[0] == 1 and batch > 1:
        return x.expand(batch, *x.shape[1:])
    return x


def through(point: HookPoint, x: torch.Tensor, batch: int, d_head: int | None = None) -> torch.Tensor:
    """``x`` passed through ``point`` in its canonical shape (heads split when ``d_head``), returned in Hugging
    Face's (an edit of an expanded [1, pos, d] stays per sequence: what reads it adds it to [batch, pos, d])."""
    view = canonical(x, batch)
    if d_head:
        view = view.view(*view.shape[:-1], -1, d_head)
    edited = point(view)
    if edited is view:
        return x
    return edited.reshape(x.shape) if view.numel() == x.numel() else edited


def replace_first(value: Any, new: torch.Tensor) -> Any:
    """A module's output with its first tensor replaced (modules return a tensor or a tuple starting with one)."""
    if isinstance(value, torch.Tensor):
        return new
    return (new, *value[1:]) if isinstance(value, tuple) else type(value)(new, *value[1:])


def first_tensor(value: Any) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    return None
