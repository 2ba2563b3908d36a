"""The attention function a bridged model runs while attention hook points are active.

Hugging Face's attention modules compute q, k and v (with rotary positions applied and the key/value cache
updated), then call ``ALL_ATTENTION_FUNCTIONS[config._attn_implementation]``. The bridge registers one more
implementation, ``"workbench"``, and switches a model to it for a run that hooks q, k, v, the pattern or z.
It calls the family's own eager function (``eager_attention_forward`` in the module's modeling file, so
scaling, soft-capping, fp32 softmax and position biases stay exactly the family's), with the hook points
around it:

- ``hook_q`` [batch, pos, head, d_head], ``hook_k`` / ``hook_v`` [batch, key_pos, kv_head, d_head] before the
  call (an edit changes what the eager function sees); during cached generation keys and values cover the
  cached positions too, as Hugging Face hands them over;
- ``hook_pattern`` [batch, head, query_pos, key_pos] after it: an edited pattern is applied to the values
  again (each query head reading its key/value head), so the output follows the edit;
- ``hook_z`` [batch, pos, head, d_head], the pattern-weighted values before the output projection.

The masks are the eager ones (additive floats), registered under the same name.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

IMPLEMENTATION = "workbench"
# Set on a Hugging Face attention module (in its __dict__, so not as a submodule) for the runs that hook it.
HOOKS_ATTRIBUTE = "_workbench_attention_hooks"


def register() -> None:
    """Add the ``"workbench"`` attention and mask functions to transformers' registries (once; idempotent)."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if IMPLEMENTATION not in ALL_ATTENTION_FUNCTIONS:
        ALL_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, hooked_attention)
        ALL_MASK_ATTENTION_FUNCTIONS.register(IMPLEMENTATION, eager_mask)


class CallCycle:
    """The hook-point containers of one attention module, one per call in a forward (a shared block runs its
    attention once per layer; an ordinary one once)."""

    def __init__(self, containers: list) -> None:
        self.containers = containers
        self.calls = 0

    def next(self):
        container = self.containers[min(self.calls, len(self.containers) - 1)]
        self.calls += 1
        return container


def family_eager_function(module: nn.Module) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """The ``eager_attention_forward`` of the modeling file that defines ``module``'s class."""
    modeling = sys.modules[type(module).__module__]
    eager = getattr(modeling, "eager_attention_forward", None)
    if eager is None:
        raise TypeError(
            f"{type(module).__name__} ({type(module).__module__}) has no eager_attention_forward: its attention "
            f"does not go through transformers' attention registry, so its adapter must not declare "
            f"attention='interface'"
        )
    return eager


def hooked_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hugging Face's attention-function signature: query [batch, head, pos, d_head], key and value
    [batch, kv_head, key_pos, d_head] -> (z [batch, pos, head, d_head], pattern [batch, head, pos, key_pos])."""
    eager = family_eager_function(module)
    cycle = module.__dict__.get(HOOKS_ATTRIBUTE)
    hooks = cycle.next() if cycle is not None else None
    if hooks is None:
        return eager(module, query, key, value, attention_mask, **kwargs)
    # What q.k is multiplied by (the neuron view reads it): OPT scales q itself and passes 1.0.
    scaling = kwargs.get("scaling")
    hooks.scale = float(scaling if scaling is not None else query.shape[-1] ** -0.5)
    query = hooks.hook_q(query.transpose(1, 2)).transpose(1, 2)
    key = hooks.hook_k(key.transpose(1, 2)).transpose(1, 2)
    value = hooks.hook_v(value.transpose(1, 2)).transpose(1, 2)
    z, pattern = eager(module, query, key, value, attention_mask, **kwargs)
    if hooks.hook_pattern.is_active:
        edited = hooks.hook_pattern(pattern)
        if edited is not pattern:
            z = apply_pattern(edited, value)
            pattern = edited
    return hooks.hook_z(z), pattern


def apply_pattern(pattern: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """pattern [batch, head, pos, key_pos], value [batch, kv_head, key_pos, d_head] -> z [batch, pos, head,
    d_head]; query head h reads key/value head h // (head / kv_head), as grouped-query attention does."""
    group = pattern.shape[1] // value.shape[1]
    if group > 1:
        value = value.repeat_interleave(group, dim=1)
    return torch.matmul(pattern.to(value.dtype), value).transpose(1, 2).contiguous()
