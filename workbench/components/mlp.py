"""Position-wise feed-forward networks, each with its hook points."""

from __future__ import annotations

import torch
from torch import nn

from ..hook_points import HookPoint
from .activations import activation
from .projections import joint_linear, mark_joint_group


class MLP(nn.Module):
    """The position-wise feed-forward network: fc_out(act(fc_in(x))).

    Hooks:
        hook_pre: [batch, pos, d_mlp], before the activation.
        hook_post: [batch, pos, d_mlp], after the activation (the "neurons").
    """

    def __init__(self, d_model: int, d_mlp: int, act: str) -> None:
        super().__init__()
        self.fc_in = nn.Linear(d_model, d_mlp)
        self.act = activation(act)
        self.hook_pre = HookPoint()  # [batch, pos, d_mlp]
        self.hook_post = HookPoint()  # [batch, pos, d_mlp]
        self.fc_out = nn.Linear(d_mlp, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(self.hook_post(self.act(self.hook_pre(self.fc_in(x)))))

    def joint_projections(self) -> list[list[nn.Linear]]:
        """The linear layers as :func:`~.projections.lay_out_for_decoding` lays them out: each alone."""
        return [[self.fc_in], [self.fc_out]]


class GatedMLP(nn.Module):
    """The gated feed-forward network of Llama and Gemma (Shazeer 2020, "GLU Variants Improve Transformer"):
    ``fc_out(act(fc_gate(x)) * fc_in(x))``, without biases by default. SwiGLU is ``act="silu"`` (Llama, Mistral,
    Qwen, OLMo 2), GeGLU ``act="gelu_pytorch_tanh"`` (Gemma). Hugging Face's ``gate_proj``/``up_proj`` are
    ``fc_gate``/``fc_in``; a fused ``gate_up_proj`` (Phi-3: gate rows first) splits into them by a
    :class:`~workbench.components.fused.FusedSplit` along dimension 0.

    Hooks:
        hook_pre: [batch, pos, d_mlp], the gate before the activation, fc_gate(x).
        hook_pre_linear: [batch, pos, d_mlp], the linear branch, fc_in(x).
        hook_post: [batch, pos, d_mlp], act(hook_pre) * hook_pre_linear (the "neurons").
    """

    def __init__(self, d_model: int, d_mlp: int, act: str, bias: bool = False) -> None:
        super().__init__()
        self.fc_gate = nn.Linear(d_model, d_mlp, bias=bias)
        self.fc_in = nn.Linear(d_model, d_mlp, bias=bias)
        self.act = activation(act)
        self.hook_pre = HookPoint()  # [batch, pos, d_mlp]
        self.hook_pre_linear = HookPoint()  # [batch, pos, d_mlp]
        self.hook_post = HookPoint()  # [batch, pos, d_mlp]
        self.fc_out = nn.Linear(d_mlp, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [batch, pos, d_model] -> [batch, pos, d_model]. One product computes the gate and the linear
        branch when their weights are laid side by side (:func:`~.projections.lay_out_for_decoding`), nobody
        hooks them and no gradient is recorded; else two."""
        joint = None
        if not (self.hook_pre.is_active or self.hook_pre_linear.is_active):
            joint = joint_linear(x, (self.fc_gate, self.fc_in))
        gate, linear = joint if joint is not None else (self.fc_gate(x), self.fc_in(x))
        gate = self.act(self.hook_pre(gate))
        return self.fc_out(self.hook_post(gate * self.hook_pre_linear(linear)))

    def joint_projections(self) -> list[list[nn.Linear]]:
        """The linear layers as :func:`~.projections.lay_out_for_decoding` lays them out: the gate and the
        linear branch side by side (they read the same input), the output projection alone."""
        return [[self.fc_gate, self.fc_in], [self.fc_out]]

    def prepare_compiled_call(self) -> None:
        """Before a compiled call (``model.compile``): record whether the first group of
        :meth:`joint_projections` is laid side by side, which the trace cannot see (see
        :func:`~.projections.traced_joint_weight`)."""
        mark_joint_group(self.joint_projections()[0])
