"""Data for the streamed-probe tests (tests/test_streamed_probes.py and the torchrun worker it launches):
small, seeded, with some signal in every layer so the probes have something to learn."""

from __future__ import annotations

import numpy as np
import torch

from workbench.probing import tree_depths


def classification_data(n: int = 3000, n_layers: int = 3, dim: int = 16, n_classes: int = 5, seed: int = 0):
    """features [layer, n, d] (layers on different scales and offsets, so standardization matters) and labels
    [n] that a linear map of every layer predicts with noise."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.arange(1, n_layers + 1, dtype=torch.float32)[:, None, None]
    features = torch.randn(n_layers, n, dim, generator=g) * scale + 0.5
    weight = torch.randn(dim, n_classes, generator=g)
    noise = torch.randn(n, n_classes, generator=g) * 2.0
    labels = (features.sum(0) @ weight / n_layers + noise).argmax(-1)
    return features, labels


def random_heads(n_words: int, g: torch.Generator) -> list[int]:
    """A random tree over ``n_words`` words as 0-based head indices (word 0 is the root, head -1)."""
    return [-1] + [int(torch.randint(0, i, (1,), generator=g)) for i in range(1, n_words)]


def sentence_data(n_sentences: int = 60, n_layers: int = 3, dim: int = 16, seed: int = 0):
    """features (one [layer, n_i, d] per sentence), depths (one [n_i] per sentence) and their row offsets
    [n_sentences + 1] into the features put end to end ([layer, total, d])."""
    g = torch.Generator().manual_seed(seed)
    features, depths = [], []
    for _ in range(n_sentences):
        n_words = int(torch.randint(3, 14, (1,), generator=g))
        depth = tree_depths(random_heads(n_words, g))
        x = torch.randn(n_layers, n_words, dim, generator=g)
        x[:, :, 0] += depth  # the depth is (partly) in the first dimension
        features.append(x)
        depths.append(depth)
    offsets = np.concatenate([[0], np.cumsum([x.shape[1] for x in features])])
    return features, depths, offsets
