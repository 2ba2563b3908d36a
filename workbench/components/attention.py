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


class RelativeAttentionCore(nn.Module):
    """The relative multi-head attention of Transformer-XL (Dai et al. 2019, section 3.3), shared by
    Transformer-XL and XLNet (whose two-stream attention adds segment terms and a query stream on top).

    Parameters: ``q``, ``k``, ``v`` and ``r`` (W_R, the projection of the relative-position embeddings), all
    without biases; ``r_w_bias`` and ``r_r_bias`` [head, d_head] (the paper's u and v; Transformer-XL may
    share one pair between all layers, passed in). A score is

        (q_i + r_w_bias) . k_j  +  (q_i + r_r_bias) . W_R R_(i-j)

    (content and position terms, the paper's (a)+(c) and (b)+(d)); the position term is computed against every
    row of the relative table and moved into place by :func:`~workbench.components.positions.rel_shift`.
    Subclasses register their other hooks, the output projection ``o`` and their forward.

    Hooks (registered here, first): hook_q [batch, query_pos, head, d_head]; hook_k, hook_v [batch, key_pos,
    head, d_head]; hook_k_rel [batch, rel_pos, head, d_head] (W_R times the relative embeddings).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_head: int,
        r_w_bias: nn.Parameter | None = None,
        r_r_bias: nn.Parameter | None = None,
    ) -> None:
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_head
        self.scale = d_head**-0.5
        width = n_heads * d_head
        self.q = nn.Linear(d_model, width, bias=False)
        self.k = nn.Linear(d_model, width, bias=False)
        self.v = nn.Linear(d_model, width, bias=False)
        self.r = nn.Linear(d_model, width, bias=False)
        self.r_w_bias = r_w_bias if r_w_bias is not None else nn.Parameter(torch.zeros(n_heads, d_head))
        self.r_r_bias = r_r_bias if r_r_bias is not None else nn.Parameter(torch.zeros(n_heads, d_head))
        self.hook_q = HookPoint()  # [batch, query_pos, head, d_head]
        self.hook_k = HookPoint()  # [batch, key_pos, head, d_head]
        self.hook_v = HookPoint()  # [batch, key_pos, head, d_head]
        self.hook_k_rel = HookPoint()  # [batch, rel_pos, head, d_head]

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """[..., head * d_head] -> [..., head, d_head]"""
        return x.view(*x.shape[:-1], self.n_heads, self.d_head)

    @staticmethod
    def mask_heads(z: torch.Tensor, head_mask: torch.Tensor | None) -> torch.Tensor:
        """z [batch, pos, head, d_head] times Hugging Face's head_mask [head] (the pattern stays unmasked)."""
        return z if head_mask is None else z * head_mask.view(1, 1, -1, 1).to(z.dtype)

    def content_scores(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """(q + r_w_bias) . k, unscaled: q [batch, query_pos, head, d_head], k [batch, key_pos, head, d_head]
        -> [batch, head, query_pos, key_pos]."""
        return torch.einsum("bqhd,bkhd->bhqk", q + self.r_w_bias, k)

    def position_scores(self, q: torch.Tensor, k_rel: torch.Tensor) -> torch.Tensor:
        """(q + r_r_bias) . W_R R_t against every row t of the relative table, unscaled and not yet shifted:
        k_rel [batch, rel_pos, head, d_head] -> [batch, head, query_pos, rel_pos]."""
        return torch.einsum("bqhd,bkhd->bhqk", q + self.r_r_bias, k_rel)

    @staticmethod
    def mix_values(pattern: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """pattern [batch, head, query_pos, key_pos], v [batch, key_pos, head, d_head] -> z [batch, query_pos,
        head, d_head]: each head's pattern-weighted values."""
        return torch.einsum("bhqk,bkhd->bqhd", pattern, v)
