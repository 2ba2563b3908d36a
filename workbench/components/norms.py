"""Normalization layers, each with its hook points."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..hook_points import HookPoint


class LayerNorm(nn.Module):
    """LayerNorm with hook points for its scale and its output.

    Hooks:
        hook_scale: [batch, pos, 1], sqrt(var + eps), the divisor of the centred input.
        hook_normalized: [batch, pos, d_model], the output (after the affine weight and bias).
    """

    def __init__(self, d_model: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))
        self.hook_scale = HookPoint()  # [batch, pos, 1]
        self.hook_normalized = HookPoint()  # [batch, pos, d_model]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.hook_scale.is_active:
            return self.hook_normalized(F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps))
        if not self.hook_scale.may_edit:
            # Only read (cached): keep the fused kernel, which also returns 1 / scale.
            out, _, inverse_scale = torch.native_layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)
            self.hook_scale(inverse_scale.reciprocal())
            return self.hook_normalized(out)
        centred = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((centred.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        return self.hook_normalized(centred / scale * self.weight + self.bias)
