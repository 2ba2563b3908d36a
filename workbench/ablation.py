"""Head ablation through hooks: zero or mean-ablate chosen heads of chosen layers.

This acts on ``blocks.{i}.attn.hook_z`` ([batch, pos, head, d_head]), the output of each head before the
output projection. Zero ablation equals Hugging Face's ``head_mask`` with zeros at those heads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Union

import torch

from .model import HookedTransformer, ModelInput

Heads = Union[Mapping[int, Iterable[int]], Iterable[tuple[int, int]]]


def normalize_heads(model: HookedTransformer, heads: Heads) -> dict[int, list[int]]:
    """``{layer: [head, ...]}`` or ``[(layer, head), ...]`` -> ``{layer: sorted heads}``, range-checked."""
    pairs = (
        [(layer, head) for layer, hs in heads.items() for head in hs]
        if isinstance(heads, Mapping)
        else [tuple(pair) for pair in heads]
    )
    n_layers, n_heads = model.n_layers, model.config.n_heads
    by_layer: dict[int, list[int]] = {}
    for layer, head in pairs:
        if not 0 <= layer < n_layers:
            raise ValueError(f"layer {layer} is out of range: the model has layers 0..{n_layers - 1}")
        if not 0 <= head < n_heads:
            raise ValueError(f"head {head} (layer {layer}) is out of range: the model has heads 0..{n_heads - 1}")
        by_layer.setdefault(layer, []).append(head)
    return {layer: sorted(set(hs)) for layer, hs in sorted(by_layer.items())}


def head_ablation_hooks(
    model: HookedTransformer,
    heads: Heads,
    mode: str = "zero",
    reference: ModelInput | None = None,
) -> list[tuple[str, callable]]:
    """Forward hooks that ablate ``heads``, for ``run_with_hooks`` or ``model.hooks``.

    Args:
        heads: ``{layer: [head, ...]}`` or ``[(layer, head), ...]``.
        mode: ``"zero"`` sets the heads' outputs to 0; ``"mean"`` replaces them by their mean over the
            ``reference`` inputs (over every real token of every sequence).
        reference: the inputs whose mean activation replaces the heads' outputs (``mode="mean"``).

    Returns:
        ``[(hook name, fn), ...]``
    """
    by_layer = normalize_heads(model, heads)
    if mode not in ("zero", "mean"):
        raise ValueError(f"mode must be 'zero' or 'mean', got {mode!r}")
    if mode == "mean" and reference is None:
        raise ValueError("mode='mean' needs reference inputs to average the heads' outputs over")
    means: dict[int, torch.Tensor] = {}
    if mode == "mean":
        means = mean_head_outputs(model, reference, list(by_layer))

    def make_hook(layer: int, chosen: list[int]):
        def ablate(z: torch.Tensor, hook) -> torch.Tensor:
            z = z.clone()
            z[:, :, chosen] = 0.0 if mode == "zero" else means[layer][chosen].to(z.dtype)
            return z

        return ablate

    return [(f"blocks.{layer}.attn.hook_z", make_hook(layer, chosen)) for layer, chosen in by_layer.items()]


def mean_head_outputs(model: HookedTransformer, reference: ModelInput, layers: list[int]) -> dict[int, torch.Tensor]:
    """Mean of ``hook_z`` over the real tokens of ``reference``: {layer: [head, d_head]}."""
    names = [f"blocks.{layer}.attn.hook_z" for layer in layers]
    kwargs, _ = model.prepare_inputs(reference)
    with torch.no_grad():
        _, cache = model.run_with_cache(kwargs, names_filter=names)
    mask = kwargs.get("attention_mask")
    means = {}
    for layer, name in zip(layers, names):
        z = cache[name]  # [batch, pos, head, d_head]
        weights = torch.ones(z.shape[:2], device=z.device) if mask is None else mask.to(z.dtype)
        means[layer] = (z * weights[:, :, None, None]).sum((0, 1)) / weights.sum()
    return means


@contextmanager
def ablate_heads(
    model: HookedTransformer, heads: Heads, mode: str = "zero", reference: ModelInput | None = None
) -> Iterator[HookedTransformer]:
    """Context manager: inside the ``with`` block, ``heads`` are ablated in every forward pass.

    >>> with wb.ablate_heads(model, {3: [0, 5]}):  # doctest: +SKIP
    ...     out = model(**inputs)
    """
    with model.hooks(head_ablation_hooks(model, heads, mode, reference)):
        yield model
