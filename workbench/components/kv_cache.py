"""The key/value cache of incremental decoding."""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values of the positions already processed, for incremental decoding.

    It grows by concatenation until :meth:`reserve` preallocates room for the whole generation (what
    ``model.generate`` does after the prompt): from then on each step writes its keys and values in place
    into one buffer per layer and attention reads a view of the filled part, so a step allocates no cache
    memory and copies nothing already cached. The buffers are stored head-major (see :func:`head_major_empty`):
    measured on one CPU thread, a one-query fused attention over 64 cached positions of 12 heads then takes
    0.45 ms at batch 8 instead of 2.4 ms (batch 1: 0.12 instead of 0.21 ms).

    Attributes:
        keys, values: one [batch, pos, head, d_head] tensor per layer (a view of the buffer once reserved).
    """

    def __init__(self) -> None:
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.key_buffers: list[torch.Tensor] = []  # [batch, capacity, head, d_head] per layer, once reserved
        self.value_buffers: list[torch.Tensor] = []
        self.layer_views: list[LayerKV] = []  # made once per layer by layer()

    def __len__(self) -> int:
        """Number of cached positions."""
        return self.keys[0].shape[1] if self.keys else 0

    @property
    def capacity(self) -> int | None:
        """Positions the reserved buffers hold (None before :meth:`reserve`)."""
        return self.key_buffers[0].shape[1] if self.key_buffers else None

    def layer(self, index: int) -> LayerKV:
        """The view of one layer (made once per layer: a decoding step asks for every layer's)."""
        while len(self.layer_views) <= index:
            self.layer_views.append(LayerKV(self, len(self.layer_views)))
        return self.layer_views[index]

    def reserve(self, capacity: int) -> None:
        """Preallocate buffers of ``capacity`` positions for every cached layer and copy the cached positions in.
        Later updates that fit write in place; one that does not fit falls back to concatenation."""
        if capacity < len(self):
            raise ValueError(f"capacity={capacity} is less than the {len(self)} positions already cached")
        self.key_buffers, self.value_buffers = [], []
        for layer, (k, v) in enumerate(zip(self.keys, self.values)):
            key_buffer, value_buffer = head_major_empty(k, capacity), head_major_empty(v, capacity)
            key_buffer[:, : k.shape[1]], value_buffer[:, : v.shape[1]] = k, v
            self.key_buffers.append(key_buffer)
            self.value_buffers.append(value_buffer)
            self.keys[layer], self.values[layer] = key_buffer[:, : k.shape[1]], value_buffer[:, : v.shape[1]]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append the new positions of ``layer``; return all its keys and values."""
        if layer == len(self.keys):
            self.keys.append(k)
            self.values.append(v)
            return k, v
        start = self.keys[layer].shape[1]
        end = start + k.shape[1]
        if layer < len(self.key_buffers) and end <= self.key_buffers[layer].shape[1]:
            self.key_buffers[layer][:, start:end] = k
            self.value_buffers[layer][:, start:end] = v
            self.keys[layer] = self.key_buffers[layer][:, :end]
            self.values[layer] = self.value_buffers[layer][:, :end]
        else:
            self.keys[layer] = torch.cat([self.keys[layer], k], dim=1)
            self.values[layer] = torch.cat([self.values[layer], v], dim=1)
        return self.keys[layer], self.values[layer]

    def reorder(self, batch_indices: torch.Tensor) -> None:
        """Keep (and reorder) the given batch rows, e.g. when finished sequences leave a batch. The reserved
        buffers are dropped: later steps grow by concatenation until :meth:`reserve` is called again."""
        self.keys = [k[batch_indices] for k in self.keys]
        self.values = [v[batch_indices] for v in self.values]
        self.key_buffers, self.value_buffers = [], []


def head_major_empty(x: torch.Tensor, capacity: int) -> torch.Tensor:
    """An uninitialised [batch, capacity, head, d_head] buffer for the positions of ``x`` [batch, pos, head,
    d_head], stored head-major ([batch, head, capacity, d_head] in memory): attention reads each head's keys
    and values as one contiguous block (the fused kernel runs on [batch, head, pos, d_head]), as it would
    read a concatenated cache."""
    batch, _, heads, d_head = x.shape
    return x.new_empty((batch, heads, capacity, d_head)).transpose(1, 2)


class LayerKV:
    """One layer's view of a :class:`KVCache`."""

    def __init__(self, cache: KVCache, layer: int) -> None:
        self.cache = cache
        self.layer = layer

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cache.update(self.layer, k, v)
