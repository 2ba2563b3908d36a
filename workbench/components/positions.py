"""Positions: position ids, sinusoids (absolute and relative) and the relative shift."""

from __future__ import annotations

import numpy as np
import torch


def positions_from_mask(attention_mask: torch.Tensor, query_len: int) -> torch.Tensor:
    """Position ids [batch, query_len] that count real tokens only, so left or right padding does not
    shift them: ``cumsum(attention_mask) - 1`` over all positions (past included), padding at 0."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -query_len:]


# Sinusoids (Vaswani et al. 2017, section 3.5) ------------------------------------------------------------


def sinusoid_table(n_positions: int, dim: int) -> torch.Tensor:
    """Absolute positions, [n_positions, dim] float32: sin(pos / 10000^(2k/dim)) in even columns 2k, cos in odd
    columns 2k + 1 (the interleaved layout of XLM and DistilBERT). Computed in float64 with numpy, as Hugging
    Face's ``create_sinusoidal_embeddings`` does, so that the float32 result is bitwise the same."""
    angle = np.arange(n_positions)[:, None] / np.power(10000, 2 * (np.arange(dim) // 2) / dim)
    out = torch.empty(n_positions, dim)
    out[:, 0::2] = torch.from_numpy(np.sin(angle[:, 0::2]))
    out[:, 1::2] = torch.from_numpy(np.cos(angle[:, 1::2]))
    return out


def inverse_frequencies(dim: int) -> torch.Tensor:
    """[dim / 2] float32: the frequencies f_k = 1 / 10000^(2k / dim) of the sinusoids."""
    return 1 / torch.pow(10000, torch.arange(0.0, dim, 2.0) / dim)


def distance_sinusoids(distances: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """Relative distances [n] -> [n, dim]: ``[sin(d * f), cos(d * f)]``, all sines first, then all cosines
    (the layout of Transformer-XL and XLNet), in the dtype of ``distances`` and ``inv_freq``."""
    angles = distances[:, None] * inv_freq
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def rel_shift(position_scores: torch.Tensor, key_len: int) -> torch.Tensor:
    """Transformer-XL's relative shift (Dai et al. 2019, appendix B), shared by Transformer-XL and XLNet.

    [..., query_pos, rel_pos] scores of every query against every row of a relative-position table ->
    [..., query_pos, key_pos]: ``out[..., i, j] = x[..., i, j + query_pos - i]`` for the first ``key_len``
    columns (pad ``x`` with one zero column in front for ``x[..., i, j + query_pos - 1 - i]``), by reshaping
    [query_pos, rel_pos] to [rel_pos, query_pos] and dropping the first row. No arithmetic: scores are only
    moved. Where ``j + query_pos - i`` overflows the row (keys in the future of a causal query) the entry holds
    another row's score; such keys are masked.
    """
    *lead, query_len, rel_len = position_scores.shape
    if key_len > rel_len - 1:
        raise ValueError(
            f"rel_shift: {rel_len} relative positions give at most {rel_len - 1} keys, not {key_len}"
        )
    shifted = position_scores.reshape(*lead, rel_len, query_len)[..., 1:, :]
    return shifted.reshape(*lead, query_len, rel_len - 1)[..., :key_len]
