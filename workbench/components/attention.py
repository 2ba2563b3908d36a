"""Attention layers, each with its hook points."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..hook_points import HookPoint

if TYPE_CHECKING:
    from .kv_cache import LayerKV


class Attention(nn.Module):
    """Multi-head self-attention, scaled dot product (Vaswani et al. 2017, section 3.2).

    Uses ``scaled_dot_product_attention`` when nobody looks at the pattern, and the explicit softmax
    when ``hook_scores``/``hook_pattern`` have hooks or the caller asks for the pattern.

    Hooks:
        hook_q, hook_k, hook_v: [batch, pos, head, d_head]
        hook_scores: [batch, head, query_pos, key_pos], scaled scores with the mask added (pre-softmax).
        hook_pattern: [batch, head, query_pos, key_pos], softmax of the scores (Hugging Face's attentions).
        hook_z: [batch, pos, head, d_head], the pattern-weighted values of each head.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float, scale: float | None = None) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not a multiple of the number of heads n_heads={n_heads}")
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.dropout = dropout
        # The factor on q.k: 1/sqrt(d_head) (Vaswani et al.), unless an architecture says otherwise.
        self.scale = self.d_head**-0.5 if scale is None else scale
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.hook_q = HookPoint()  # [batch, pos, head, d_head]
        self.hook_k = HookPoint()  # [batch, pos, head, d_head]
        self.hook_v = HookPoint()  # [batch, pos, head, d_head]
        self.hook_scores = HookPoint()  # [batch, head, query_pos, key_pos]
        self.hook_pattern = HookPoint()  # [batch, head, query_pos, key_pos]
        self.hook_z = HookPoint()  # [batch, pos, head, d_head]
        self.o = nn.Linear(d_model, d_model)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """[batch, pos, d_model] -> [batch, pos, head, d_head]"""
        return x.view(*x.shape[:-1], self.n_heads, self.d_head)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        need_pattern: bool = False,
        past: LayerKV | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        Args:
            x: [batch, pos, d_model]
            mask: additive, broadcastable to [batch, head, query_pos, key_pos] (0 = attend, very negative = not).
            head_mask: [head], multiplies each head's output (1 keeps, 0 removes), Hugging Face's head_mask.
            need_pattern: return the attention pattern even when no hook asks for it.
            past: this layer's key/value cache; the new keys and values are appended to it and attention
                runs over all of them (``hook_k``/``hook_v`` see the new positions only).

        Returns:
            out: [batch, pos, d_model], before the residual add.
            pattern: [batch, head, query_pos, key_pos] when computed, else None.
        """
        q = self.hook_q(self.split_heads(self.q(x)))
        k = self.hook_k(self.split_heads(self.k(x)))
        v = self.hook_v(self.split_heads(self.v(x)))
        if past is not None:
            k, v = past.update(k, v)
        dropout = self.dropout if self.training else 0.0
        pattern = None
        if need_pattern or self.hook_scores.is_active or self.hook_pattern.is_active:
            scores = self.hook_scores(attention_scores(q, k, mask, self.scale))
            pattern = self.hook_pattern(scores.softmax(dim=-1))
            z = torch.matmul(F.dropout(pattern, dropout, self.training), v.transpose(1, 2)).transpose(1, 2)
        else:
            z = F.scaled_dot_product_attention(
                q.transpose(1, 2),
                k.transpose(1, 2),
                v.transpose(1, 2),
                attn_mask=mask,
                dropout_p=dropout,
                scale=self.scale,
            ).transpose(1, 2)
        if head_mask is not None:
            z = z * head_mask.view(1, 1, -1, 1).to(z.dtype)
        z = self.hook_z(z)
        return self.o(z.flatten(-2)), pattern


def attention_scores(
    q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None, scale: float
) -> torch.Tensor:
    """q: [batch, query_pos, head, d_head], k: [batch, key_pos, head, d_head]
    -> [batch, head, query_pos, key_pos] = scale * q.k + mask."""
    scores = torch.matmul(q.transpose(1, 2), k.permute(0, 2, 3, 1)).mul_(scale)
    return scores if mask is None else scores.add_(mask)
