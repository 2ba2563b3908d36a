"""Transformer blocks (attention then MLP, with residual adds and norms), each with its hook points."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ..hook_points import HookPoint
from .attention import Attention
from .mlp import MLP
from .norms import LayerNorm

if TYPE_CHECKING:
    from .kv_cache import LayerKV


class PostNormBlock(nn.Module):
    """A post-norm block (BERT, GPT): ``x = LN1(x + Attention(x))``, then ``x = LN2(x + MLP(x))``.

    The stream a post-norm block hands on is its LayerNorms' output: ``hook_resid_mid`` is ``ln1``'s output
    and ``hook_resid_post`` is ``ln2``'s.

    Hooks (in forward order): hook_resid_pre; attn.*; hook_attn_out; ln1.*; hook_resid_mid; mlp.*;
    hook_mlp_out; ln2.*; hook_resid_post. All residual hooks are [batch, pos, d_model].
    """

    def __init__(self, attn: Attention, mlp: MLP, d_model: int, eps: float, dropout: float) -> None:
        super().__init__()
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        self.attn = attn
        self.hook_attn_out = HookPoint()  # [batch, pos, d_model]
        self.ln1 = LayerNorm(d_model, eps)
        self.hook_resid_mid = HookPoint()  # [batch, pos, d_model]
        self.mlp = mlp
        self.hook_mlp_out = HookPoint()  # [batch, pos, d_model]
        self.ln2 = LayerNorm(d_model, eps)
        self.hook_resid_post = HookPoint()  # [batch, pos, d_model]
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        resid_pre: torch.Tensor,
        mask: torch.Tensor | None,
        head_mask: torch.Tensor | None = None,
        need_pattern: bool = False,
        past: LayerKV | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """resid_pre: [batch, pos, d_model] -> (resid_post [batch, pos, d_model], pattern or None)."""
        resid_pre = self.hook_resid_pre(resid_pre)
        attn_out, pattern = self.attn(resid_pre, mask, head_mask, need_pattern, past)
        attn_out = self.hook_attn_out(self.dropout(attn_out))
        resid_mid = self.hook_resid_mid(self.ln1(resid_pre + attn_out))
        mlp_out = self.hook_mlp_out(self.dropout(self.mlp(resid_mid)))
        resid_post = self.hook_resid_post(self.ln2(resid_mid + mlp_out))
        return resid_post, pattern


class PreNormBlock(nn.Module):
    """A pre-norm block (GPT-2): ``x = x + Attention(LN1(x))``, then ``x = x + MLP(LN2(x))``.

    Hooks (in forward order): hook_resid_pre; ln1.*; attn.*; hook_attn_out; hook_resid_mid; ln2.*; mlp.*;
    hook_mlp_out; hook_resid_post. All residual hooks are [batch, pos, d_model].
    """

    def __init__(self, attn: Attention, mlp: MLP, d_model: int, eps: float, dropout: float) -> None:
        super().__init__()
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        self.ln1 = LayerNorm(d_model, eps)
        self.attn = attn
        self.hook_attn_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_mid = HookPoint()  # [batch, pos, d_model]
        self.ln2 = LayerNorm(d_model, eps)
        self.mlp = mlp
        self.hook_mlp_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_post = HookPoint()  # [batch, pos, d_model]
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        resid_pre: torch.Tensor,
        mask: torch.Tensor | None,
        head_mask: torch.Tensor | None = None,
        need_pattern: bool = False,
        past: LayerKV | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """resid_pre: [batch, pos, d_model] -> (resid_post [batch, pos, d_model], pattern or None)."""
        resid_pre = self.hook_resid_pre(resid_pre)
        attn_out, pattern = self.attn(self.ln1(resid_pre), mask, head_mask, need_pattern, past)
        attn_out = self.hook_attn_out(self.dropout(attn_out))
        resid_mid = self.hook_resid_mid(resid_pre + attn_out)
        mlp_out = self.hook_mlp_out(self.dropout(self.mlp(self.ln2(resid_mid))))
        resid_post = self.hook_resid_post(resid_mid + mlp_out)
        return resid_post, pattern
