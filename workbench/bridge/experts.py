"""Each expert's output of a sparse mixture-of-experts MLP as a hook point.

transformers 5 keeps a mixture's experts as fused 3D parameters (Mixtral's ``MixtralExperts.gate_up_proj``
[expert, 2 * d_mlp, d_model], ``down_proj`` [expert, d_model, d_mlp]) run in one loop, so no module's output is
one expert's. Its experts modules choose their function from a registry (``ALL_EXPERTS_FUNCTIONS``, by
``config._experts_implementation``), as attention does; the bridge registers ``"workbench"`` and switches a
model to it for a run that hooks an expert. It computes every chosen expert's output as the eager loop does and
shows it to ``blocks.{i}.mlp.experts.{e}.hook_out`` [batch, pos, d_model] (before the routing weight; zero at the
tokens not routed to expert e), then sums the (possibly edited) outputs with the routing weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .attention import CallCycle

IMPLEMENTATION = "workbench"
HOOKS_ATTRIBUTE = "_workbench_expert_hooks"


def register() -> None:
    """Add ``"workbench"`` to transformers' experts registry (idempotent)."""
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    if IMPLEMENTATION not in ALL_EXPERTS_FUNCTIONS:
        ALL_EXPERTS_FUNCTIONS.register(IMPLEMENTATION, hooked_experts)


class ExpertCalls(CallCycle):
    """What one experts module's hooked calls need: the hook-point containers (one per call in a forward, each
    with ``experts[e].hook_out``) and the batch size, to show [tokens, d_model] as [batch, pos, d_model]."""

    def __init__(self, containers: list, batch: int) -> None:
        super().__init__(containers)
        self.batch = batch


def check_supported(module: nn.Module) -> None:
    """The layout this function computes: un-transposed, bias-free fused gate/up and down projections."""
    needed = ("gate_up_proj", "down_proj", "num_experts")
    flags = [flag for flag in ("has_bias", "is_transposed", "has_post_expert_norm") if getattr(module, flag, False)]
    if any(not hasattr(module, name) for name in needed) or flags or not getattr(module, "has_gate", True):
        raise TypeError(
            f"{type(module).__name__}: per-expert hook points need fused gate_up_proj/down_proj experts without "
            f"bias, transposition or post-expert norm (as Mixtral's); this one has {flags or 'another layout'}"
        )


def hooked_experts(
    module: nn.Module, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
) -> torch.Tensor:
    """hidden_states [tokens, d_model], top_k_index / top_k_weights [tokens, k] -> [tokens, d_model]: the
    routing-weighted sum of the chosen experts' outputs, each passed through its hook point first."""
    calls = module.__dict__.get(HOOKS_ATTRIBUTE)
    if calls is None:  # a module of this model no hook looks at: the eager loop, unchanged
        return type(module).forward.__wrapped__(module, hidden_states, top_k_index, top_k_weights)
    hooks = calls.next()
    tokens, d_model = hidden_states.shape
    batch = calls.batch if calls.batch and tokens % calls.batch == 0 else 1
    output = torch.zeros_like(hidden_states)
    for expert in range(module.num_experts):
        routed = top_k_index == expert  # [tokens, k]
        token_idx = routed.any(-1).nonzero().flatten()
        expert_out = torch.zeros_like(hidden_states)
        if token_idx.numel():
            gate_up = nn.functional.linear(hidden_states[token_idx], module.gate_up_proj[expert])
            expert_out[token_idx] = nn.functional.linear(module._apply_gate(gate_up), module.down_proj[expert])
        point = hooks.experts[expert].hook_out
        if point.is_active:
            view = expert_out.view(batch, tokens // batch, d_model)
            expert_out = point(view).reshape(tokens, d_model)
        weight = (top_k_weights * routed).sum(-1, keepdim=True)  # [tokens, 1]: 0 where not routed
        output = output + expert_out * weight.to(expert_out.dtype)
    return output


def experts_count(hf_config: Any, field: str) -> int:
    text = hf_config.get_text_config() if hasattr(hf_config, "get_text_config") else hf_config
    return int(getattr(text, field))
