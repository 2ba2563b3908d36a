"""Attention masks: additive masks from padding and causality."""

from __future__ import annotations

import torch


def causal_mask(
    attention_mask: torch.Tensor | None,
    query_len: int,
    key_len: int,
    dtype: torch.dtype,
    device: torch.device,
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
    return torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(
        ~allowed, torch.finfo(dtype).min
    )


def additive_padding_mask(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """[batch, key_pos] of 1 (real) / 0 (padding) -> additive [batch, 1, 1, key_pos], 0 or dtype's minimum."""
    if attention_mask is None:
        return None
    keep = attention_mask[:, None, None, :].to(torch.bool)
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, torch.finfo(dtype).min)
