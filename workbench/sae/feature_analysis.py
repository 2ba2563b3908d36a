"""What a dictionary's features do to the model's outputs: attribution to features (gradient × activation),
attribution patching over features, and each feature's direct logit effect.

Attribution runs the model with the dictionary spliced in and the error term on (outputs unchanged; the error
is held fixed, so the target depends on the hooked activation only through the features):

- ``feature_attribution``: ``score[b, p, f] = a[b, p, f] · ∂target/∂a[b, p, f]``, the first-order estimate
  of how much the target would drop if feature ``f`` at position ``p`` were removed (exact when the target
  is linear in the features);
- ``attribution_patching`` (Nanda 2023; Syed et al. 2023; over SAE features as Marks et al. 2024):
  ``score[b, p, f] = (a_clean − a_corrupted)[b, p, f] · ∂metric/∂a[b, p, f]`` at the corrupted run, the
  first-order estimate of how much the metric would change if that one feature were patched from the clean
  run into the corrupted one; two forwards and one backward for every (position, feature) at once.

Targets are what ``wb.attribute`` takes (:func:`workbench.attribution.make_target`): a class index, a token
(its log-probability at the prediction position), ``fn(output) -> [batch]``, or
``wb.attribution.activation_target(hook, reduce)``.

``logit_effects``: each feature's decoder direction read straight through the model's unembedding (the
direct path, skipping the blocks after the hook point), as Neuronpedia's "top / bottom logits".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from ..attribution.core import make_target
from ..weight_processing import model_unembed
from .dictionary import SparseAutoencoder
from .interventions import _feature_index, feature_hook_name
from .splice import spliced


@dataclass
class FeatureAttribution:
    """Scores per (sequence, position, feature).

    Attributes:
        method: ``"gradient_x_activation"`` or ``"attribution_patching"``.
        scores: [batch, pos, d_sae] (0 at padding).
        activations: [batch, pos, d_sae], the feature activations of the run differentiated (the corrupted
            run for attribution patching).
        gradients: [batch, pos, d_sae], ∂target/∂activations there.
        target_values: [batch], the target on that run.
        attention_mask: [batch, pos]; tokens: the token strings (a list per sequence) or None.
        clean_activations, clean_values: attribution patching's clean run ([batch, pos, d_sae], [batch]).
    """

    method: str
    scores: torch.Tensor
    activations: torch.Tensor
    gradients: torch.Tensor
    target_values: torch.Tensor
    attention_mask: torch.Tensor
    tokens: list[list[str]] | None = None
    clean_activations: torch.Tensor | None = None
    clean_values: torch.Tensor | None = None

    def top(self, k: int = 10, index: int = 0) -> pd.DataFrame:
        """The ``k`` (position, feature) pairs of sequence ``index`` with the largest ``|score|``.

        Columns: position, token, feature, score, activation (and clean_activation when patching).
        """
        scores = self.scores[index]
        flat = scores.abs().flatten()
        order = flat.topk(min(k, len(flat))).indices
        rows = []
        for i in order.tolist():
            position, feature = divmod(i, scores.shape[-1])
            row = {
                "position": position,
                "token": self.tokens[index][position] if self.tokens else None,
                "feature": feature,
                "score": float(scores[position, feature]),
                "activation": float(self.activations[index, position, feature]),
            }
            if self.clean_activations is not None:
                row["clean_activation"] = float(self.clean_activations[index, position, feature])
            rows.append(row)
        return pd.DataFrame(rows)


def _prepare(model, inputs) -> tuple[dict, list[list[str]] | None]:
    kwargs, tokens = model.prepare_inputs(inputs)
    kwargs.setdefault("attention_mask", torch.ones_like(kwargs["input_ids"]))
    if tokens and isinstance(tokens[0], str):
        tokens = [tokens]
    return kwargs, tokens


def _run(dictionary, model, kwargs, target_fn, with_gradient: bool):
    """One forward with the dictionary spliced in (error term on): (features [batch, pos, d_sae], target
    [batch], gradient of the target's sum w.r.t. the features or None)."""
    captured: dict[str, torch.Tensor] = {}

    def leaf(acts, hook):  # the features as a leaf: the gradient stops there, nothing upstream is kept
        captured["acts"] = acts.detach().requires_grad_(with_gradient)
        return captured["acts"]

    hooks = [(feature_hook_name(dictionary), leaf)]
    read_from = getattr(target_fn, "hook_name", None)  # an activation_target reads a hook point
    if read_from is not None:
        hooks.append((read_from, lambda activation, hook: captured.__setitem__("target", activation)))
    with (
        torch.set_grad_enabled(with_gradient),
        spliced(dictionary, model, error_term=True),
        model.hooks(hooks),
    ):
        output = model(**kwargs)
        source = captured["target"] if read_from is not None else output
        values = target_fn(source, kwargs["input_ids"], kwargs["attention_mask"])
        if values.dim() != 1 or len(values) != kwargs["input_ids"].shape[0]:
            raise ValueError(
                f"the target must give one value per sequence, [batch] = [{kwargs['input_ids'].shape[0]}], "
                f"got shape {list(values.shape)}"
            )
        gradient = None
        if with_gradient:
            (gradient,) = torch.autograd.grad(values.sum(), captured["acts"], allow_unused=True)
            gradient = torch.zeros_like(captured["acts"]) if gradient is None else gradient
    return captured["acts"].detach(), values.detach(), gradient


def feature_attribution(dictionary: SparseAutoencoder, model, inputs, target) -> FeatureAttribution:
    """Gradient × activation of ``target`` over the dictionary's features, per (position, feature).

    Args:
        model: a workbench model the dictionary splices into; inputs: text(s), token ids or model inputs.
        target: as ``wb.attribute`` takes it (a class index, a token, ``fn(output) -> [batch]``, or an
            ``activation_target``).

    Returns:
        a :class:`FeatureAttribution` (``method="gradient_x_activation"``). With a target linear in the
        features, ``scores.sum()`` is exactly ``target − target(all features 0)`` (the error term held).
    """
    kwargs, tokens = _prepare(model, inputs)
    acts, values, gradient = _run(dictionary, model, kwargs, make_target(model, target), with_gradient=True)
    mask = kwargs["attention_mask"][..., None].to(acts.dtype)
    return FeatureAttribution(
        "gradient_x_activation",
        acts * gradient * mask,
        acts,
        gradient,
        values,
        kwargs["attention_mask"],
        tokens,
    )


def attribution_patching(
    dictionary: SparseAutoencoder, model, clean, corrupted, metric
) -> FeatureAttribution:
    """First-order estimate of patching each feature at each position from ``clean`` into ``corrupted``.

    Args:
        clean, corrupted: inputs of the same shape (texts that tokenize to the same length, or token ids).
        metric: a target as ``wb.attribute`` takes it, e.g. ``lambda out: out.logits[:, -1, a] -
            out.logits[:, -1, b]``.

    Returns:
        a :class:`FeatureAttribution` (``method="attribution_patching"``): ``scores[b, p, f] ≈ metric(corrupted
        with feature f at p set to its clean value) − metric(corrupted)``; ``target_values`` the corrupted
        metric, ``clean_values`` the clean one.
    """
    clean_kwargs, _ = _prepare(model, clean)
    kwargs, tokens = _prepare(model, corrupted)
    if clean_kwargs["input_ids"].shape != kwargs["input_ids"].shape:
        raise ValueError(
            f"clean inputs have shape {list(clean_kwargs['input_ids'].shape)} and corrupted ones "
            f"{list(kwargs['input_ids'].shape)}: patching needs the same positions in both"
        )
    metric_fn = make_target(model, metric)
    clean_acts, clean_values, _ = _run(dictionary, model, clean_kwargs, metric_fn, with_gradient=False)
    acts, values, gradient = _run(dictionary, model, kwargs, metric_fn, with_gradient=True)
    mask = (kwargs["attention_mask"] * clean_kwargs["attention_mask"])[..., None].to(acts.dtype)
    scores = (clean_acts - acts) * gradient * mask
    return FeatureAttribution(
        "attribution_patching",
        scores,
        acts,
        gradient,
        values,
        kwargs["attention_mask"],
        tokens,
        clean_acts,
        clean_values,
    )


# Direct logit effects ----------------------------------------------------------------------------------


def feature_logits(dictionary: SparseAutoencoder, model, features: torch.Tensor) -> tuple[torch.Tensor, str]:
    """The direct logit effect of unit activation of each feature: ([n, vocab], a note on how it was read).

    A pre-norm model whose final norm feeds the unembedding (GPT-2, Llama, ... : ``ln_final`` with
    ``hook_scale``, no MLM transform): ``W_U (w ⊙ centre(d))``, with ``d`` the decoder row in the model's
    units, ``w`` the final norm's weight and the centring a LayerNorm's. The norm's scale, which depends on
    the whole residual stream at a token, is frozen at 1 (divide by ``ln_final.hook_scale`` at a token for
    that token's effect; the ranking of tokens within a feature does not depend on it), and biases (the
    norm's, the unembedding's) are left out: they do not depend on the feature. This is direct logit
    attribution's reading (``wb.attribution.direct_logit_attribution``) without an input.
    Any other head (an MLM transform, a bridged model's decode path): ``decode_residual(d) −
    decode_residual(0)``, the direction decoded on its own, which through a nonlinear head is only indicative.
    """
    directions = dictionary.W_dec.detach()[features.to(dictionary.W_dec.device)] / dictionary.scale_out
    final, unembed = getattr(model, "ln_final", None), model_unembed(model)
    if unembed is not None and "mlm_head" not in model._modules and hasattr(final, "hook_scale"):
        directions = directions.to(unembed.weight.device, unembed.weight.dtype)
        if getattr(final, "bias", None) is not None or type(final).__name__ == "LayerNorm":
            directions = directions - directions.mean(-1, keepdim=True)
        directions = directions * (final.weight + getattr(final, "weight_offset", 0.0))
        note = (
            "direct path: W_U (final-norm weight * centred decoder row), norm scale frozen at 1, biases out"
        )
        return (directions @ unembed.weight.T).detach().float(), note
    parameter = next(model.parameters())
    directions = directions.to(parameter.device, parameter.dtype)
    logits = model.decode_residual(directions) - model.decode_residual(torch.zeros_like(directions))
    return logits.detach().float(), "decode_residual(decoder row) - decode_residual(0): nonlinear head"


def logit_effects(
    dictionary: SparseAutoencoder, model, k: int = 10, features: Sequence[int] | None = None
) -> pd.DataFrame:
    """The ``k`` tokens each feature raises most (``side="top"``) and lowers most (``"bottom"``) directly.

    Returns:
        a DataFrame with one row per (feature, side, rank): ``feature``, ``side``, ``rank`` (0 = strongest),
        ``token``, ``token_id``, ``effect`` (logit per unit activation; see :func:`feature_logits` for the
        reading, which ``attrs["note"]`` names).

    Raises:
        ValueError: the model has no unembedding, or the dictionary does not write the residual stream's
            width (``d_out`` != ``d_model``).
    """
    if not hasattr(model, "decode_residual"):
        raise ValueError(
            f"{type(model).__name__} has no unembedding, so features have no logit effects; load the model with "
            f"its language-modelling head"
        )
    d_model = model.config.d_model
    if dictionary.cfg.d_out != d_model:
        raise ValueError(
            f"the dictionary writes d_out={dictionary.cfg.d_out} wide activations but the residual stream is "
            f"d_model={d_model}: logit effects read decoder rows of the residual stream's width"
        )
    chosen = _feature_index(dictionary, range(dictionary.cfg.d_sae) if features is None else features)
    logits, note = feature_logits(dictionary, model, chosen)
    k = min(int(k), logits.shape[-1])
    top, bottom = logits.topk(k, dim=-1), logits.topk(k, dim=-1, largest=False)
    rows = []
    for row, feature in enumerate(chosen.tolist()):
        for side, found in (("top", top), ("bottom", bottom)):
            for rank in range(k):
                token_id = int(found.indices[row, rank])
                rows.append(
                    {
                        "feature": feature,
                        "side": side,
                        "rank": rank,
                        "token": _token_text(model, token_id),
                        "token_id": token_id,
                        "effect": float(found.values[row, rank]),
                    }
                )
    frame = pd.DataFrame(rows, columns=["feature", "side", "rank", "token", "token_id", "effect"])
    frame.attrs["note"] = note
    return frame


def _token_text(model, token_id: int) -> str:
    tokenizer = getattr(model, "tokenizer", None)
    return tokenizer.decode([token_id]) if tokenizer is not None else str(token_id)


SparseAutoencoder.feature_attribution = feature_attribution
SparseAutoencoder.attribution_patching = attribution_patching
SparseAutoencoder.logit_effects = logit_effects
