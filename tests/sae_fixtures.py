"""Dictionaries the SAE tests share (a helper module: test modules never import each other)."""

from __future__ import annotations

import torch

from workbench import sae


def random_dictionary(d_in: int, d_sae: int, hook: str, seed: int = 0) -> sae.SparseAutoencoder:
    """A ReLU dictionary at ``hook`` with random parameters (biases included, scale 0.3), so that most features
    fire on some words and not on others."""
    cfg = sae.SAEConfig(d_in=d_in, d_sae=d_sae, kind="relu", hook_name=hook)
    dictionary = sae.SparseAutoencoder(cfg, seed=seed)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for parameter in dictionary.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return dictionary
