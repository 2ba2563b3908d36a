"""Feature-level interventions: steer or ablate a dictionary's features in any run of the model.

``with dictionary.steered(model, {7: 4.0}):`` splices the dictionary in with the error term on and edits
feature 7's activation at every position of every forward in the block: ``model(...)``, ``run_with_cache``,
``run_with_hooks`` and ``model.generate(...)`` alike (each generated token's forward goes through it).
Because the error term is computed from the unedited features (:func:`.splice.splice_output`), only the
chosen features change: the hooked activation becomes ``x + Σ_f (a'_f − a_f) · W_dec[f] / scale_out``
(``a``: the feature's activation, ``a'``: after the edit), and editing nothing leaves every output as it is.

Modes, per feature ``f`` with value ``v``:

- ``"add"``: ``a'_f = a_f + v`` (steering along the decoder direction, at every token);
- ``"set"``: ``a'_f = v`` (``v = 0`` is ablation: :func:`ablated`);
- ``"scale"``: ``a'_f = v · a_f`` (clamping a feature up or down where it fires).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch

from .dictionary import SparseAutoencoder
from .splice import spliced

MODES = ("add", "set", "scale")


def feature_hook_name(dictionary: SparseAutoencoder, point: str = "hook_feature_acts") -> str:
    """The model-wide name of one of the dictionary's hook points while it is spliced in:
    ``"<hook>.sae.<point>"`` (a transcoder's is under its output hook)."""
    cfg = dictionary.cfg
    return f"{cfg.hook_name_out or cfg.hook_name}.sae.{point}"


def _feature_index(dictionary: SparseAutoencoder, features: Iterable[int]) -> torch.Tensor:
    """[n] long tensor of feature ids, checked against ``d_sae``."""
    index = torch.as_tensor(list(features), dtype=torch.long)
    if index.dim() != 1:
        raise ValueError(f"features must be a flat list of feature ids, got shape {list(index.shape)}")
    d_sae = dictionary.cfg.d_sae
    if len(index) and (index.min() < 0 or index.max() >= d_sae):
        raise IndexError(f"features must be in [0, {d_sae}) (the dictionary's d_sae), got {index.tolist()}")
    return index


def edit_features(acts: torch.Tensor, index: torch.Tensor, values: torch.Tensor, mode: str) -> torch.Tensor:
    """``acts`` [..., d_sae] with features ``index`` [n] edited by ``values`` [n] (see the module doc)."""
    index, values = index.to(acts.device), values.to(acts.device, acts.dtype)
    chosen = acts[..., index]
    new = chosen + values if mode == "add" else values.expand_as(chosen) if mode == "set" else chosen * values
    out = acts.clone()
    out[..., index] = new
    return out


@contextmanager
def steered(
    dictionary: SparseAutoencoder, model, features: Mapping[int, float], mode: str = "add"
) -> Iterator[SparseAutoencoder]:
    """Run ``model`` with the dictionary spliced in (error term on) and ``features`` edited, for the block.

    Args:
        model: a workbench model with the dictionary's hook point(s).
        features: feature id -> value: added (``mode="add"``), set (``"set"``) or multiplied in
            (``"scale"``) at every position.
        mode: ``"add"``, ``"set"`` or ``"scale"``.

    >>> with dictionary.steered(lm, {7: 8.0}):                                  # doctest: +SKIP
    ...     lm.generate("The weather today is", max_new_tokens=10)
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not one of {list(MODES)}")
    if not isinstance(features, Mapping):
        raise TypeError(f"features must be a mapping feature id -> value, got {type(features).__name__}")
    index = _feature_index(dictionary, features.keys())
    values = torch.tensor([float(v) for v in features.values()])

    def edit(acts: torch.Tensor, hook) -> torch.Tensor:
        return edit_features(acts, index, values, mode)

    with spliced(dictionary, model, error_term=True), model.hooks([(feature_hook_name(dictionary), edit)]):
        yield dictionary


@contextmanager
def ablated(dictionary: SparseAutoencoder, model, features: Iterable[int]) -> Iterator[SparseAutoencoder]:
    """Run ``model`` with ``features`` set to 0 at every position (the rest of the activation unchanged:
    the error term is on), for the block. ``features``: feature ids (an int for one)."""
    features = [features] if isinstance(features, int) else list(features)
    with steered(dictionary, model, dict.fromkeys(features, 0.0), mode="set"):
        yield dictionary


SparseAutoencoder.steered = steered
SparseAutoencoder.ablated = ablated
