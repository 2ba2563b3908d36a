"""Position-wise feed-forward networks, each with its hook points."""

from __future__ import annotations

import torch
from torch import nn

from ..hook_points import HookPoint
from .activations import activation


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
