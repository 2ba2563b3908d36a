"""Sparse-dictionary features as probe inputs: ``probes.run(..., features=dictionary)``.

The activation store keeps each word's pooled activation at every layer; a dictionary trained on a layer's
residual stream (``blocks.{i}.hook_resid_post``, or the embeddings' ``blocks.0.hook_resid_pre``) reads
exactly what the store holds for layer ``i + 1`` (or 0). :class:`FeatureStore` encodes those stored word
vectors with the dictionary as a probe asks for them, so the same store serves raw and feature probes.
With ``pooling="first"`` or ``"last"`` a word's features are those of one of its tokens; with ``"mean"`` they
are the dictionary's encoding of the mean of its tokens' activations (not the mean of their features; the
dictionary is not linear). Stored vectors are float16.

"Is this property carried by a few features?": :func:`top_features` ranks the features by how well they
separate the classes on the training split alone (the one-way ANOVA F statistic: variance of the class means
over the mean variance within classes), and ``probes.run`` fits the same probe on the top k of them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

ENCODE_CHUNK = 8192  # rows encoded at once: bounds the [rows, d_sae] intermediate

_RESID_POST = re.compile(r"^blocks\.(\d+)\.hook_resid_post$")


def dictionary_layer(dictionary, model) -> int:
    """The store layer a dictionary reads: ``blocks.{i}.hook_resid_post`` -> i + 1, the embeddings'
    ``blocks.0.hook_resid_pre`` -> 0.

    Raises:
        ValueError: another hook point (the store holds the residual stream only), a block the model does not
            have, or a dictionary whose input width is not the model's ``d_model``.
    """
    hook = dictionary.cfg.hook_name
    match = _RESID_POST.match(hook or "")
    if hook == "blocks.0.hook_resid_pre":
        layer = 0
    elif match:
        layer = int(match.group(1)) + 1
    else:
        raise ValueError(
            f"features= needs a dictionary on the residual stream the activation store holds "
            f"('blocks.<i>.hook_resid_post' or 'blocks.0.hook_resid_pre'); this one reads {hook!r}"
        )
    if layer > model.n_layers:
        raise ValueError(f"the dictionary reads {hook!r} but the model has {model.n_layers} blocks")
    if dictionary.cfg.d_in != int(model.config.d_model):
        raise ValueError(
            f"the dictionary reads d_in={dictionary.cfg.d_in} but the model's d_model is {model.config.d_model}: "
            f"was it trained on another model?"
        )
    return layer


def dictionary_record(dictionary) -> dict[str, Any]:
    """What identifies a dictionary in a provenance record: a hash of its weights and its config."""
    from workbench.provenance import model_fingerprint

    fingerprint = model_fingerprint(dictionary)
    return {
        "weights": fingerprint["weights"],
        "dtype": fingerprint["dtype"],
        "config": dictionary.cfg.to_dict(),
    }


class FeatureStore:
    """An activation store seen through a dictionary: ``stack`` gives feature activations [1, n, d_sae] of
    the dictionary's layer instead of the stored activations [layer, n, d_model].

    Attributes (as :class:`~probes.store.ActivationStore`'s): layers (the one layer), offsets, n_words,
    n_sentences; store: the underlying store; dictionary.
    """

    def __init__(self, store, dictionary, layer: int) -> None:
        if layer not in store.layers:
            raise KeyError(f"the store holds layers {store.layers}, not the dictionary's layer {layer}")
        self.store, self.dictionary, self.layer = store, dictionary, layer
        self.layers = [layer]
        self.offsets = store.offsets
        self.n_words, self.n_sentences = store.n_words, store.n_sentences
        self.d_model = dictionary.cfg.d_sae

    def stack(self, layers: Sequence[int] | None = None, rows=None) -> torch.Tensor:
        """float32 [1, n, d_sae]: the dictionary's features of the chosen word rows (default all)."""
        if layers is not None and list(layers) != self.layers:
            raise KeyError(f"a feature store has the one layer {self.layers}, asked for {list(layers)}")
        vectors = self.store.stack(layers=self.layers, rows=rows)[0]  # [n, d_model]
        return encode_rows(self.dictionary, vectors)[None]


@torch.no_grad()
def encode_rows(dictionary, vectors: torch.Tensor) -> torch.Tensor:
    """[n, d_in] -> float32 [n, d_sae] on the CPU, encoded ``ENCODE_CHUNK`` rows at a time on the
    dictionary's device."""
    device = dictionary.W_enc.device
    out = torch.empty(len(vectors), dictionary.cfg.d_sae, dtype=torch.float32)
    for start in range(0, len(vectors), ENCODE_CHUNK):
        chunk = vectors[start : start + ENCODE_CHUNK].to(device)
        out[start : start + len(chunk)] = dictionary.encode(chunk).float().cpu()
    return out


def class_separation(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The one-way ANOVA F statistic of every feature: features [n, d], labels [n] -> [d] (0 for a feature
    constant within every class and across them; large when the class means differ by much more than the
    spread within classes)."""
    x = features.double()
    classes, index = torch.unique(labels, return_inverse=True)
    n, n_classes = len(x), len(classes)
    if n_classes < 2 or n <= n_classes:
        raise ValueError(
            f"class separation needs >= 2 classes and more words than classes; got {n_classes}, {n}"
        )
    counts = torch.bincount(index, minlength=n_classes).double()
    means = torch.zeros(n_classes, x.shape[1], dtype=torch.float64).index_add_(0, index, x) / counts[:, None]
    overall = x.mean(0)
    between = (counts[:, None] * (means - overall).pow(2)).sum(0) / (n_classes - 1)
    within = (x - means[index]).pow(2).sum(0) / (n - n_classes)
    score = between / within
    score[within <= 1e-12 * (x.pow(2).mean(0) + 1e-30)] = 0.0  # constant within classes: no evidence
    return torch.nan_to_num(score, nan=0.0, posinf=0.0).float()


def top_features(features: torch.Tensor, labels: torch.Tensor, k: int) -> list[int]:
    """The ``k`` features [n, d] that best separate the classes of ``labels`` [n] (:func:`class_separation`,
    ties by feature index), best first."""
    if not 1 <= k <= features.shape[-1]:
        raise ValueError(
            f"top_k values must be in [1, {features.shape[-1]}] (the number of features), got {k}"
        )
    score = class_separation(features, labels).numpy()
    order = np.lexsort((np.arange(len(score)), -score))  # by score descending, then by index
    return [int(i) for i in order[:k]]
