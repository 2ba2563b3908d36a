"""Parts that several architectures share, each with its hook points.

Dimension names used in shapes throughout the workbench (and their names in the papers):

- ``batch``: sequences in a batch.
- ``pos``, ``query_pos``, ``key_pos``: token positions (Vaswani et al.'s sequence index).
- ``d_model``: width of the residual stream (BERT's ``hidden_size``, H).
- ``head``: attention heads (``num_attention_heads``, A); ``d_head = d_model / head`` (their d_k = d_v).
- ``d_mlp``: width of the feed-forward layer (``intermediate_size``, 4H in BERT).
- ``vocab``: vocabulary size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .hook_points import HookPoint


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """The tanh approximation of GELU used by GPT-2 (``gelu_new``)."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": gelu_new,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
    "tanh": torch.tanh,
}


def activation(name: str):
    """The activation function called ``name`` in a Hugging Face config (``hidden_act``)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unsupported hidden_act {name!r}; supported: {sorted(ACTIVATIONS)}") from None


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

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not a multiple of the number of heads n_heads={n_heads}")
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.dropout = dropout
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
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        Args:
            x: [batch, pos, d_model]
            mask: additive, broadcastable to [batch, head, query_pos, key_pos] (0 = attend, very negative = not).
            head_mask: [head], multiplies each head's output (1 keeps, 0 removes), Hugging Face's head_mask.
            need_pattern: return the attention pattern even when no hook asks for it.

        Returns:
            out: [batch, pos, d_model], before the residual add.
            pattern: [batch, head, query_pos, key_pos] when computed, else None.
        """
        q = self.hook_q(self.split_heads(self.q(x)))
        k = self.hook_k(self.split_heads(self.k(x)))
        v = self.hook_v(self.split_heads(self.v(x)))
        dropout = self.dropout if self.training else 0.0
        pattern = None
        if need_pattern or self.hook_scores.is_active or self.hook_pattern.is_active:
            scores = self.hook_scores(attention_scores(q, k, mask))
            pattern = self.hook_pattern(scores.softmax(dim=-1))
            z = torch.matmul(F.dropout(pattern, dropout, self.training), v.transpose(1, 2)).transpose(1, 2)
        else:
            z = F.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask, dropout_p=dropout
            ).transpose(1, 2)
        if head_mask is not None:
            z = z * head_mask.view(1, 1, -1, 1).to(z.dtype)
        z = self.hook_z(z)
        return self.o(z.flatten(-2)), pattern


def attention_scores(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """q, k: [batch, pos, head, d_head] -> [batch, head, query_pos, key_pos] = q.k / sqrt(d_head) + mask."""
    scores = torch.matmul(q.transpose(1, 2), k.permute(0, 2, 3, 1)).mul_(q.shape[-1] ** -0.5)
    return scores if mask is None else scores.add_(mask)


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


def additive_padding_mask(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """[batch, key_pos] of 1 (real) / 0 (padding) -> additive [batch, 1, 1, key_pos], 0 or dtype's minimum."""
    if attention_mask is None:
        return None
    keep = attention_mask[:, None, None, :].to(torch.bool)
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, torch.finfo(dtype).min)
