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
        return self.normalize(x, self.hook_scale, self.hook_normalized)

    def normalize(self, x: torch.Tensor, hook_scale: HookPoint, hook_normalized: HookPoint) -> torch.Tensor:
        """The norm of ``x`` through the given pair of hooks (a module shared by two streams has two pairs)."""
        if not hook_scale.is_active:
            return hook_normalized(F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps))
        if not hook_scale.may_edit:
            # Only read (cached): keep the fused kernel, which also returns 1 / scale.
            out, _, inverse_scale = torch.native_layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)
            hook_scale(inverse_scale.reciprocal())
            return hook_normalized(out)
        centred = x - x.mean(-1, keepdim=True)
        scale = hook_scale((centred.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        return hook_normalized(centred / scale * self.weight + self.bias)


class RMSNorm(nn.Module):
    """Root-mean-square norm (Zhang & Sennrich 2019; Llama's): ``x / sqrt(mean(x^2) + eps) * w``, no centring
    and no bias. With ``weight_offset=1.0`` the weight is stored as ``w - 1`` and applied as ``(1 + w)``
    (Gemma's RMSNorm), so that a zero-initialised weight is the identity scale.

    Computed in float32 whatever the input dtype, as Llama's and Gemma's implementations do (float64 inputs
    stay float64); Llama casts back to the input dtype before the weight, Gemma and OLMo 2 after it
    (``cast_after_weight``; default: when there is a ``weight_offset``, Gemma's order). With no hook on
    ``hook_scale`` the input is multiplied by ``rsqrt`` (bitwise Hugging Face's); with one, it is divided by
    the hooked scale (equal up to rounding).

    Hooks:
        hook_scale: [batch, pos, 1], sqrt(mean(x^2) + eps) in float32, the divisor of the input.
        hook_normalized: [batch, pos, d_model], the output (after the weight).
    """

    def __init__(
        self, d_model: int, eps: float, weight_offset: float = 0.0, cast_after_weight: bool | None = None
    ) -> None:
        super().__init__()
        self.eps = eps
        self.weight_offset = weight_offset
        self.cast_after_weight = bool(weight_offset) if cast_after_weight is None else cast_after_weight
        self.weight = nn.Parameter(torch.full((d_model,), 1.0 - weight_offset))
        self.hook_scale = HookPoint()  # [batch, pos, 1]
        self.hook_normalized = HookPoint()  # [batch, pos, d_model]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.to(torch.promote_types(x.dtype, torch.float32))  # float32, or float64 for a float64 model
        mean_square = x32.pow(2).mean(-1, keepdim=True)
        if self.hook_scale.is_active:
            normed = x32 / self.hook_scale((mean_square + self.eps).sqrt())
        else:  # Llama's and Gemma's kernel: bitwise their outputs
            normed = x32 * torch.rsqrt(mean_square + self.eps)
        if self.cast_after_weight:
            out = (normed * (self.weight_offset + self.weight.to(x32.dtype))).to(x.dtype)
        else:
            out = self.weight * normed.to(x.dtype)
        return self.hook_normalized(out)
