"""The key/value cache of incremental decoding."""

from __future__ import annotations

import torch


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
