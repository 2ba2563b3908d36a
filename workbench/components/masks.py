"""Attention masks: additive masks from padding and causality, and :class:`CausalMask`, the mask that need not
be written out (no padding: the fused kernel's ``is_causal``)."""

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


class CausalMask:
    """Causal attention with nothing padded: query i (the new positions are the last ``query_len`` of
    ``key_len``) attends to every key j <= i. Nothing is allocated until an explicit path asks for
    :meth:`tensor`; SDPA gets ``is_causal=True`` instead when there is no past (``query_len == key_len``), and
    its causal kernels skip the masked upper half of the scores.

    One instance serves every layer of a forward, so the explicit tensor is built at most once.
    """

    def __init__(self, query_len: int, key_len: int, dtype: torch.dtype, device: torch.device) -> None:
        self.query_len, self.key_len, self.dtype, self.device = query_len, key_len, dtype, device
        self._tensors: dict[torch.device, torch.Tensor] = {}

    def __repr__(self) -> str:
        return f"CausalMask(query_len={self.query_len}, key_len={self.key_len})"

    @property
    def is_square(self) -> bool:
        """No cached positions: the queries are the keys, what SDPA's ``is_causal`` means."""
        return self.query_len == self.key_len

    def tensor(self, device: torch.device | None = None) -> torch.Tensor:
        """The additive mask [1, 1, query_pos, key_pos] (0 = attend, the dtype's minimum = not), on ``device``
        (default: the device it was made for). A model split over devices (``device_map``) asks on each
        layer's device: this object is not a tensor, so the hooks that move a part's inputs do not move it."""
        device = torch.device(device) if device is not None else self.device
        if device not in self._tensors:
            self._tensors[device] = causal_mask(None, self.query_len, self.key_len, self.dtype, device)
        return self._tensors[device]


def decoder_mask(
    attention_mask: torch.Tensor | None,
    query_len: int,
    key_len: int,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor | CausalMask | None:
    """The cheapest mask that says the same as :func:`causal_mask`: None when one new query may see every key
    (a decoding step, nothing padded), a :class:`CausalMask` when nothing is padded, else the additive tensor.

    A traced or compiled model given an ``attention_mask`` gets the tensor: whether anything is padded
    depends on the mask's values.
    """
    if torch.jit.is_tracing():  # traced sizes are tensors, and a CausalMask would not be in the graph
        return causal_mask(attention_mask, query_len, key_len, dtype, device)
    if attention_mask is not None:
        data_dependent = torch.compiler.is_compiling()
        if data_dependent or attention_mask.shape[-1] != key_len or not bool(attention_mask.all()):
            return causal_mask(attention_mask, query_len, key_len, dtype, device)  # checks the width too
    return None if query_len == 1 else CausalMask(query_len, key_len, dtype, device)


def as_tensor(
    mask: torch.Tensor | CausalMask | None, device: torch.device | None = None
) -> torch.Tensor | None:
    """The additive mask tensor of any mask :func:`decoder_mask` gives (None stays None); a
    :class:`CausalMask` is built on ``device`` (the layer's) when given."""
    return mask.tensor(device) if isinstance(mask, CausalMask) else mask
