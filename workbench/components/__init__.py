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
                q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask, dropout_p=dropout,
                scale=self.scale,
            ).transpose(1, 2)
        if head_mask is not None:
            z = z * head_mask.view(1, 1, -1, 1).to(z.dtype)
        z = self.hook_z(z)
        return self.o(z.flatten(-2)), pattern


def attention_scores(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None, scale: float) -> torch.Tensor:
    """q: [batch, query_pos, head, d_head], k: [batch, key_pos, head, d_head]
    -> [batch, head, query_pos, key_pos] = scale * q.k + mask."""
    scores = torch.matmul(q.transpose(1, 2), k.permute(0, 2, 3, 1)).mul_(scale)
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


def causal_mask(
    attention_mask: torch.Tensor | None, query_len: int, key_len: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Additive mask [batch or 1, 1, query_pos, key_pos] for causal attention over past + new positions.

    Query i (the new positions are the last ``query_len`` of ``key_len``) may attend to key j when
    j <= i and key j is not padding (``attention_mask`` [batch, key_pos], 1 real / 0 padding).
    """
    past = key_len - query_len
    key_positions = torch.arange(key_len, device=device)
    query_positions = torch.arange(past, key_len, device=device)
    allowed = (key_positions[None, :] <= query_positions[:, None])[None, None]  # [1, 1, query, key]
    if attention_mask is not None:
        if not torch.jit.is_tracing() and attention_mask.shape[-1] != key_len:
            raise ValueError(
                f"attention_mask covers {attention_mask.shape[-1]} positions but there are {key_len} "
                f"({past} cached + {query_len} new); with a key/value cache pass the mask of all of them"
            )
        allowed = allowed & attention_mask[:, None, None, :].to(torch.bool)
    return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)


def positions_from_mask(attention_mask: torch.Tensor, query_len: int) -> torch.Tensor:
    """Position ids [batch, query_len] that count real tokens only, so left or right padding does not
    shift them: ``cumsum(attention_mask) - 1`` over all positions (past included), padding at 0."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -query_len:]


class KVCache:
    """Keys and values of the positions already processed, for incremental decoding.

    Attributes:
        keys, values: one [batch, pos, head, d_head] tensor per layer.
    """

    def __init__(self) -> None:
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    def __len__(self) -> int:
        """Number of cached positions."""
        return self.keys[0].shape[1] if self.keys else 0

    def layer(self, index: int) -> LayerKV:
        return LayerKV(self, index)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append the new positions of ``layer``; return all its keys and values."""
        if layer == len(self.keys):
            self.keys.append(k)
            self.values.append(v)
        else:
            self.keys[layer] = torch.cat([self.keys[layer], k], dim=1)
            self.values[layer] = torch.cat([self.values[layer], v], dim=1)
        return self.keys[layer], self.values[layer]

    def reorder(self, batch_indices: torch.Tensor) -> None:
        """Keep (and reorder) the given batch rows, e.g. when finished sequences leave a batch."""
        self.keys = [k[batch_indices] for k in self.keys]
        self.values = [v[batch_indices] for v in self.values]


class LayerKV:
    """One layer's view of a :class:`KVCache`."""

    def __init__(self, cache: KVCache, layer: int) -> None:
        self.cache = cache
        self.layer = layer

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cache.update(self.layer, k, v)


def additive_padding_mask(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """[batch, key_pos] of 1 (real) / 0 (padding) -> additive [batch, 1, 1, key_pos], 0 or dtype's minimum."""
    if attention_mask is None:
        return None
    keep = attention_mask[:, None, None, :].to(torch.bool)
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, torch.finfo(dtype).min)
