"""Attention layers, each with its hook points."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..hook_points import HookPoint
from .masks import CausalMask, as_tensor
from .projections import joint_linear, mark_joint_group

if TYPE_CHECKING:
    from .kv_cache import LayerKV
    from .rotary import RotaryAngles


class Attention(nn.Module):
    """Multi-head self-attention, scaled dot product (Vaswani et al. 2017, section 3.2), with the options of
    today's decoders: grouped-query / multi-query attention, q/k norms, rotary positions, a sliding window and
    soft-capped scores. With none of them it is the attention of BERT and GPT-2.

    Uses ``scaled_dot_product_attention`` when nobody looks at the pattern, and the explicit softmax when
    ``hook_scores``/``hook_pattern`` have hooks, the caller asks for the pattern, or the scores are soft-capped.

    Args:
        d_model: width of the residual stream.
        n_heads: query heads.
        dropout: dropout on the pattern while training.
        scale: the factor on q.k; default 1/sqrt(d_head). Gemma 2: ``query_pre_attn_scalar ** -0.5``.
        n_kv_heads: key/value heads (grouped-query attention, Ainslie et al. 2023; 1: multi-query, Shazeer 2019);
            default ``n_heads``. Query head h reads key/value head ``h // (n_heads // n_kv_heads)``.
        d_head: width of a head; default ``d_model // n_heads`` (Qwen3 and Gemma set it apart).
        bias: biases on the q, k, v projections; ``out_bias`` (default ``bias``) on the output projection
            (Qwen2: q, k, v biased, o not).
        qk_norm: makes the norms of queries and keys, given their width (e.g. ``lambda width: RMSNorm(width,
            eps)``); they are ``q_norm`` and ``k_norm``, applied after ``hook_q``/``hook_k`` and before the rotation.
        qk_norm_per_head: normalise each head's d_head values (Qwen3, Gemma 3) rather than the whole projection,
            all heads together (OLMo 2: widths ``n_heads * d_head`` and ``n_kv_heads * d_head``).
        rotary: the model rotates queries and keys by position (it passes :class:`~.rotary.RotaryAngles` to
            forward); registers ``hook_rot_q``/``hook_rot_k``.
        sliding_window: a query sees only the last ``sliding_window`` positions, itself included (Mistral,
            Gemma 2's local layers): key j is masked for query i when ``i - j >= sliding_window``, counted over
            all positions (cached ones and padding included), as Hugging Face counts them.
        softcap: scores become ``softcap * tanh(scores / softcap)`` before the mask (Gemma 2).

    Hooks (in forward order; those of options only when the option is set):
        hook_q: [batch, pos, head, d_head]; hook_k, hook_v: [batch, pos, kv_head, d_head] (the new positions).
        q_norm.*, k_norm.*: the norms' hooks ([..., d_head] per head, or [batch, pos, head * d_head]).
        hook_rot_q: [batch, pos, head, d_head]; hook_rot_k: [batch, pos, kv_head, d_head], after the rotation.
        hook_scores: [batch, head, query_pos, key_pos], scaled (soft-capped) scores with the mask added.
        hook_pattern: [batch, head, query_pos, key_pos], softmax of the scores (Hugging Face's attentions),
            one per query head also under grouped-query attention.
        hook_z: [batch, pos, head, d_head], the pattern-weighted values of each head.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        dropout: float,
        scale: float | None = None,
        *,
        n_kv_heads: int | None = None,
        d_head: int | None = None,
        bias: bool = True,
        out_bias: bool | None = None,
        qk_norm: Callable[[int], nn.Module] | None = None,
        qk_norm_per_head: bool = True,
        rotary: bool = False,
        sliding_window: int | None = None,
        softcap: float | None = None,
    ) -> None:
        super().__init__()
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        check_head_counts(d_model, n_heads, n_kv_heads, d_head)
        if sliding_window is not None and sliding_window < 1:
            raise ValueError(f"sliding_window={sliding_window}: a query must see at least itself")
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.d_head = d_model // n_heads if d_head is None else d_head
        self.dropout = dropout
        # The factor on q.k: 1/sqrt(d_head) (Vaswani et al.), unless an architecture says otherwise.
        self.scale = self.d_head**-0.5 if scale is None else scale
        self.sliding_window, self.softcap, self.qk_norm_per_head = sliding_window, softcap, qk_norm_per_head
        q_width, kv_width = n_heads * self.d_head, n_kv_heads * self.d_head
        self.q = nn.Linear(d_model, q_width, bias=bias)
        self.k = nn.Linear(d_model, kv_width, bias=bias)
        self.v = nn.Linear(d_model, kv_width, bias=bias)
        self.hook_q = HookPoint()  # [batch, pos, head, d_head]
        self.hook_k = HookPoint()  # [batch, pos, kv_head, d_head]
        self.hook_v = HookPoint()  # [batch, pos, kv_head, d_head]
        self.q_norm = self.k_norm = None
        if qk_norm is not None:
            self.q_norm = qk_norm(self.d_head if qk_norm_per_head else q_width)
            self.k_norm = qk_norm(self.d_head if qk_norm_per_head else kv_width)
        self.rotary = rotary
        if rotary:
            self.hook_rot_q = HookPoint()  # [batch, pos, head, d_head]
            self.hook_rot_k = HookPoint()  # [batch, pos, kv_head, d_head]
        self.hook_scores = HookPoint()  # [batch, head, query_pos, key_pos]
        self.hook_pattern = HookPoint()  # [batch, head, query_pos, key_pos]
        self.hook_z = HookPoint()  # [batch, pos, head, d_head]
        self.o = nn.Linear(q_width, d_model, bias=bias if out_bias is None else out_bias)

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """[batch, pos, n * d_head] -> [batch, pos, n, d_head] (n: query or key/value heads)."""
        return x.view(*x.shape[:-1], -1, self.d_head)

    def joint_projections(self) -> list[list[nn.Linear]]:
        """The linear layers as :func:`~.projections.lay_out_for_decoding` lays them out: q, k and v side by
        side (they read the same input), the output projection alone."""
        return [[self.q, self.k, self.v], [self.o]]

    def prepare_compiled_call(self) -> None:
        """Before a compiled call (``model.compile``): record whether the first group of
        :meth:`joint_projections` is laid side by side, which the trace cannot see (see
        :func:`~.projections.traced_joint_weight`)."""
        mark_joint_group(self.joint_projections()[0])

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | CausalMask | None = None,
        head_mask: torch.Tensor | None = None,
        need_pattern: bool = False,
        past: LayerKV | None = None,
        rotary: RotaryAngles | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        Args:
            x: [batch, pos, d_model]
            mask: additive, broadcastable to [batch, head, query_pos, key_pos] (0 = attend, very negative = not),
                or a :class:`~.masks.CausalMask` (causal, nothing padded: the fused kernel's ``is_causal``).
            head_mask: [head], multiplies each head's output (1 keeps, 0 removes), Hugging Face's head_mask.
            need_pattern: return the attention pattern even when no hook asks for it.
            past: this layer's key/value cache; the new keys and values are appended to it and attention
                runs over all of them (``hook_k``/``hook_v`` see the new positions only; the cache holds the
                rotated keys).
            rotary: cos and sin of the new positions (required when built with ``rotary=True``).

        Returns:
            out: [batch, pos, d_model], before the residual add.
            pattern: [batch, head, query_pos, key_pos] when computed, else None.
        """
        q, k, v = self.project(x)
        q, k = self.position(q, k, rotary)
        query_positions = None
        if past is not None:
            query_positions = past.static_query_positions(q.shape[1], q.device)
            k, v = past.update(k, v)
        z, pattern = self.attend(q, k, v, self.window(mask, q, k.shape[1], query_positions), need_pattern)
        if head_mask is not None:
            z = z * head_mask.view(1, 1, -1, 1).to(z.dtype)
        z = self.hook_z(z)
        return self.o(z.flatten(-2)), pattern

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [batch, pos, d_model] -> q [batch, pos, head, d_head], k, v [batch, pos, kv_head, d_head],
        through hook_q/k/v and, when there are any, the q/k norms.

        One product computes q, k and v when their weights are laid side by side
        (:func:`~.projections.lay_out_for_decoding`, what ``generate`` does), nobody hooks them and no gradient
        is recorded; else three, as always (a hook then sees its own contiguous tensor)."""
        joint = None
        if not (self.hook_q.is_active or self.hook_k.is_active or self.hook_v.is_active):
            joint = joint_linear(x, (self.q, self.k, self.v))
        q, k, v = joint if joint is not None else (self.q(x), self.k(x), self.v(x))
        q = self.hook_q(self.split_heads(q))
        k = self.hook_k(self.split_heads(k))
        v = self.hook_v(self.split_heads(v))
        if self.q_norm is not None:
            if self.qk_norm_per_head:
                q, k = self.q_norm(q), self.k_norm(k)
            else:  # OLMo 2: one norm over all heads of the projection
                q, k = (
                    self.split_heads(self.q_norm(q.flatten(-2))),
                    self.split_heads(self.k_norm(k.flatten(-2))),
                )
        return q, k, v

    def position(
        self, q: torch.Tensor, k: torch.Tensor, rotary: RotaryAngles | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotate q and k by their positions (through hook_rot_q/k) when the attention is rotary."""
        if not self.rotary:
            if rotary is not None:
                raise ValueError("rotary angles were passed to an attention built without rotary=True")
            return q, k
        if rotary is None:
            raise ValueError("this attention is rotary (rotary=True): pass the RotaryAngles of the positions")
        return self.hook_rot_q(rotary.rotate(q)), self.hook_rot_k(rotary.rotate(k))

    def window(
        self,
        mask: torch.Tensor | CausalMask | None,
        q: torch.Tensor,
        key_len: int,
        query_positions: torch.Tensor | None = None,
    ) -> torch.Tensor | CausalMask | None:
        """The mask [.., query_pos, key_pos] with the keys outside the sliding window masked too (``q``: [batch,
        query_pos, head, d_head], the new queries, at key slots ``query_positions`` [query_pos]: by default the
        last of the ``key_len``); unchanged without a window."""
        if self.sliding_window is None:
            return mask
        mask = as_tensor(mask, q.device)
        if query_positions is None:
            query_positions = torch.arange(key_len - q.shape[1], key_len, device=q.device)
        outside = ~sliding_window_allowed(query_positions, key_len, self.sliding_window)
        if mask is None:
            mask = torch.zeros(outside.shape, dtype=q.dtype, device=q.device)
        # masked_fill, not adding a second mask: a key masked twice stays at the dtype's minimum, not -inf.
        return mask.masked_fill(outside, torch.finfo(mask.dtype).min)

    def fast_path(self, need_pattern: bool) -> bool:
        """Whether SDPA computes the attention: nobody reads scores or pattern, and no soft-capping."""
        return not (
            need_pattern
            or self.softcap is not None
            or self.hook_scores.is_active
            or self.hook_pattern.is_active
        )

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | CausalMask | None,
        need_pattern: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """q [batch, query_pos, head, d_head], k and v [batch, key_pos, head or kv_head, d_head] -> z [batch,
        query_pos, head, d_head] and the pattern [batch, head, query_pos, key_pos] (None on the fast path)."""
        dropout = self.dropout if self.training else 0.0
        if not self.fast_path(need_pattern):
            return self.explicit_attention(q, k, v, mask, dropout)
        gqa = {"enable_gqa": True} if self.n_kv_heads != self.n_heads else {}
        # Causal with nothing padded and no past: the kernel's is_causal skips the masked half of the scores.
        is_causal = isinstance(mask, CausalMask) and mask.is_square
        z = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            attn_mask=None if is_causal else as_tensor(mask, q.device),
            dropout_p=dropout,
            is_causal=is_causal,
            scale=self.scale,
            **gqa,
        ).transpose(1, 2)
        return z, None

    def explicit_attention(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor | CausalMask | None,
        dropout: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The path that writes scores and pattern out, through ``hook_scores`` and ``hook_pattern``: q [batch,
        query_pos, head, d_head], k and v [batch, key_pos, head or kv_head, d_head] -> z [batch, query_pos, head,
        d_head] and the pattern [batch, head, query_pos, key_pos].

        Without a gradient to record, the scores are computed into ``hook_scores.empty`` (the previous cache's
        tensor under ``run_with_cache(..., out=...)``, else a new one) and the pattern into
        ``hook_pattern.empty``, or over the scores when no hook sees them. Causal with nothing padded and no
        past (a square :class:`~.masks.CausalMask`), the products skip most of the masked upper triangle
        (:func:`causal_scores`, and :func:`causal_mix` unless a hook may edit the scores or the pattern, where
        the upper triangle would no longer be zero)."""
        # Each query head gets its keys and values.
        k, v = repeat_kv(k, self.n_heads // self.n_kv_heads), repeat_kv(v, self.n_heads // self.n_kv_heads)
        batch, query_len, heads, _ = q.shape
        shape = (batch, heads, query_len, k.shape[1])
        keep_scores = self.hook_scores.is_active
        grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
        causal = isinstance(mask, CausalMask) and mask.is_square and self.softcap is None and not grad
        scores_point = self.hook_scores if keep_scores else self.hook_pattern  # whose tensor the scores fill
        into = None if grad else scores_point.empty(shape, q.dtype, q.device)
        if causal:
            scores = causal_scores(q, k, self.scale, into)
        else:
            scores = attention_scores(q, k, as_tensor(mask, q.device), self.scale, self.softcap, into)
        scores = self.hook_scores(scores)
        into = self.hook_pattern.empty(shape, q.dtype, q.device) if keep_scores and not grad else None
        pattern = self.hook_pattern(softmax_last(scores, in_place=not keep_scores, out=into))
        weights = F.dropout(pattern, dropout, self.training)
        if causal and not (self.hook_scores.may_edit or self.hook_pattern.may_edit):
            return causal_mix(weights, v), pattern
        return torch.matmul(weights, v.transpose(1, 2)).transpose(1, 2), pattern


def check_head_counts(d_model: int, n_heads: int, n_kv_heads: int, d_head: int | None) -> None:
    """Raise a ValueError naming the argument when the heads do not fit together."""
    if n_heads < 1 or n_kv_heads < 1:
        raise ValueError(f"n_heads={n_heads} and n_kv_heads={n_kv_heads} must be positive")
    if n_heads % n_kv_heads:
        raise ValueError(
            f"n_heads={n_heads} is not a multiple of n_kv_heads={n_kv_heads}: each key/value head serves a group "
            "of query heads of equal size"
        )
    if d_head is None and d_model % n_heads:
        raise ValueError(f"d_model={d_model} is not a multiple of the number of heads n_heads={n_heads}")


def repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """[batch, pos, kv_head, d_head] -> [batch, pos, kv_head * groups, d_head]: each key/value head repeated for
    the ``groups`` query heads that read it (query head h reads kv head h // groups)."""
    return x if groups == 1 else x.repeat_interleave(groups, dim=2)


def sliding_window_allowed(query_positions: torch.Tensor, key_len: int, window: int) -> torch.Tensor:
    """[query_pos, key_pos] bool: key j is within the last ``window`` positions of query i (``query_positions``
    [query_pos]: the queries' slots among the ``key_len`` keys), i.e. ``i - window < j``. Keys after the query
    are not excluded here; the causal mask does that."""
    keys = torch.arange(key_len, device=query_positions.device)
    return keys[None, :] > query_positions[:, None] - window


def softmax_last(scores: torch.Tensor, in_place: bool, out: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax over the last dimension (keys), as ``torch.softmax`` computes it.

    Args:
        scores: [..., key_pos].
        in_place: write it over ``scores`` (when nobody keeps the scores, e.g. only the pattern is cached), so a
            long sequence holds one [batch, head, query, key] tensor, not two.
        out: else write it there (a contiguous tensor of the scores' shape, dtype and device, e.g. the one a
            previous cache lends); None: a new tensor.

    Tensors that need a gradient take ``torch.softmax``. On the CPU, in place is aten's own kernel with the
    scores as its output (it reads each value before writing it; a test checks it gives ``torch.softmax``'s
    values bit for bit); elsewhere the max-subtracted formula in place, half precision excepted (which
    ``torch.softmax`` accumulates in float32)."""
    if scores.requires_grad:
        return scores.softmax(dim=-1)
    if in_place:
        if scores.device.type == "cpu" and scores.is_contiguous():
            return torch.ops.aten._softmax.out(scores, -1, False, out=scores)
        if scores.dtype not in (torch.float32, torch.float64):
            return scores.softmax(dim=-1)
        scores.sub_(scores.amax(dim=-1, keepdim=True)).exp_()
        return scores.div_(scores.sum(dim=-1, keepdim=True))
    if out is not None and scores.is_contiguous() and out.is_contiguous():
        if (out.shape, out.dtype, out.device) == (scores.shape, scores.dtype, scores.device):
            return torch.ops.aten._softmax.out(scores, -1, False, out=out)
    return scores.softmax(dim=-1)


def attention_scores(
    q: torch.Tensor,
    k: torch.Tensor,
    mask: torch.Tensor | None,
    scale: float,
    softcap: float | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """q: [batch, query_pos, head, d_head], k: [batch, key_pos, head, d_head]
    -> [batch, head, query_pos, key_pos] = scale * q.k (then ``softcap * tanh(. / softcap)``) + mask, written
    into ``out`` (contiguous, of that shape; not with a gradient to record) when given."""
    batch, query_len, heads, _ = q.shape
    if softcap is None and mask is not None and mask.shape[0] == 1 and mask.shape[1] == 1:
        # One mask for every row and head (causal with a past, or a sliding window): written out once by the
        # product itself, mask + scale * q.k in one pass over the scores instead of three.
        scores = torch.baddbmm(
            mask[0],
            q.transpose(1, 2).reshape(batch * heads, query_len, -1),
            k.permute(0, 2, 3, 1).reshape(batch * heads, k.shape[-1], -1),
            alpha=scale,
            out=None if out is None else out.view(batch * heads, query_len, -1),
        )
        return scores.view(batch, heads, query_len, -1)
    scores = torch.matmul(q.transpose(1, 2), k.permute(0, 2, 3, 1), out=out).mul_(scale)
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    return scores if mask is None else scores.add_(mask)


# Query rows per product in causal_scores / causal_mix: of the upper triangle, the blocks skip all but the
# diagonal blocks (at 1024 positions 56% of the full product is computed); smaller blocks skip more but run
# more, smaller products.
CAUSAL_ROW_BLOCK = 128


def causal_scores(
    q: torch.Tensor, k: torch.Tensor, scale: float, out: torch.Tensor | None = None
) -> torch.Tensor:
    """q, k: [batch, pos, head, d_head] (the same positions: causal, nothing padded, no past) -> [batch, head,
    query_pos, key_pos]: ``scale * q.k`` where key <= query and the dtype's minimum above the diagonal (what
    :func:`attention_scores` gives with :func:`~.masks.causal_mask`), written into ``out`` when given
    (contiguous). Each block of :data:`CAUSAL_ROW_BLOCK` query rows is multiplied with the keys up to its last
    row only; the rest of its rows is filled. No gradient is recorded (products written into ``out``)."""
    batch, length, heads, d_head = q.shape
    if out is None:
        out = torch.empty(batch, heads, length, length, dtype=q.dtype, device=q.device)
    rows = out.view(batch * heads, length, length)
    queries = q.transpose(1, 2).reshape(batch * heads, length, d_head)
    keys = k.permute(0, 2, 3, 1).reshape(batch * heads, d_head, length)
    lowest = torch.finfo(q.dtype).min
    block = min(CAUSAL_ROW_BLOCK, length)
    above = torch.ones(block, block, dtype=torch.bool, device=q.device).triu_(1)
    for start in range(0, length, block):
        end = min(start + block, length)
        seen = rows[:, start:end, :end]
        # beta=0: the product overwrites whatever the buffer held (NaN included), scaled in the same pass.
        torch.baddbmm(seen, queries[:, start:end], keys[:, :, :end], beta=0, alpha=scale, out=seen)
        seen[:, :, start:].masked_fill_(above[: end - start, : end - start], lowest)
        rows[:, start:end, end:].fill_(lowest)
    return out


def causal_mix(pattern: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """pattern [batch, head, pos, pos] (zero above the diagonal), v [batch, pos, head, d_head] -> z [batch,
    pos, head, d_head] = pattern @ v, each block of :data:`CAUSAL_ROW_BLOCK` query rows multiplied with the
    values up to its last row only (the pattern's zeros beyond add nothing)."""
    batch, heads, length, _ = pattern.shape
    d_head = v.shape[-1]
    z = torch.empty(batch, heads, length, d_head, dtype=v.dtype, device=v.device)
    rows, out = pattern.reshape(batch * heads, length, length), z.view(batch * heads, length, d_head)
    values = v.transpose(1, 2).reshape(batch * heads, length, d_head)
    for start in range(0, length, CAUSAL_ROW_BLOCK):
        end = min(start + CAUSAL_ROW_BLOCK, length)
        torch.bmm(rows[:, start:end, :end], values[:, :end], out=out[:, start:end])
    return z.transpose(1, 2)


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
