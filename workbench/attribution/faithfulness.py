"""Faithfulness of attribution methods: deletion and insertion curves and their area (AOPC).

Deletion: replace the tokens in attribution order (most important first) by the baseline token and track
the target; a faithful method makes it fall fast. Insertion: start from the baseline and put the tokens
back in the same order; a faithful method makes it rise fast. AOPC (Samek et al. 2017) is the mean change
over the curve: ``mean_k (f(x) - f(x without top k))`` for deletion and ``mean_k (f(top k only) -
f(baseline))`` for insertion; higher is better for both. Special tokens ([CLS], [SEP], <s>...) are never
removed. A "random" order is added as the reference every method should beat.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch

from ..model import HookedTransformer, ModelInput
from .core import attribute, baseline_ids, make_target


@dataclass
class FaithfulnessResult:
    """Attributes:
    frame: one row per method (and input): method, text_index, deletion_aopc, insertion_aopc.
    curves: tidy: method, text_index, curve ("deletion"/"insertion"), k (tokens changed), fraction, value.
    """

    frame: pd.DataFrame
    curves: pd.DataFrame

    def summary(self) -> pd.DataFrame:
        """Mean AOPC per method over the inputs, best deletion first."""
        return (self.frame.groupby("method")[["deletion_aopc", "insertion_aopc"]].mean()
                .sort_values("deletion_aopc", ascending=False))

    def figure(self, text_index: int = 0):
        """Deletion and insertion curves of every method (plotly), for one input."""
        import plotly.express as px

        data = self.curves[self.curves["text_index"] == text_index]
        return px.line(data, x="fraction", y="value", color="method", facet_col="curve", markers=True,
                       labels={"fraction": "fraction of tokens changed", "value": "target"},
                       title="deletion (falls fast = faithful) and insertion (rises fast = faithful)")


def evaluate(
    model: HookedTransformer,
    inputs: ModelInput,
    target,
    methods: Sequence[str] = ("integrated_gradients", "saliency", "input_x_gradient", "occlusion"),
    baseline: str = "pad",
    seed: int = 0,
    **attribute_options,
) -> FaithfulnessResult:
    """Deletion/insertion curves and AOPC of several attribution methods on the same inputs and model."""
    kwargs, _ = model.prepare_inputs(inputs)
    kwargs.setdefault("attention_mask", torch.ones_like(kwargs["input_ids"]))
    ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
    attr = attribute(model, kwargs, target, method=list(methods), baseline=baseline, **attribute_options)
    target_fn = make_target(model, target)
    base = baseline_ids(model, ids, baseline)
    changeable = (ids != base) & mask.bool()  # real, non-special tokens
    generator = torch.Generator().manual_seed(seed)
    orders = {name: attr[name] for name in methods}
    orders["random"] = torch.rand(ids.shape, generator=generator).to(ids.device)

    rows, curve_rows = [], []
    for index in range(ids.shape[0]):
        candidates = changeable[index].nonzero().flatten()
        if len(candidates) == 0:
            raise ValueError(f"input {index} has no token to delete (only special tokens or padding)")
        for name, scores in orders.items():
            ranked = candidates[scores[index, candidates].argsort(descending=True)]
            deletion = _curve(model, target_fn, ids[index], base[index], mask[index], ranked, start_from_input=True)
            insertion = _curve(model, target_fn, ids[index], base[index], mask[index], ranked, start_from_input=False)
            rows.append({
                "method": name,
                "text_index": index,
                "deletion_aopc": float((deletion[0] - deletion[1:]).mean()),
                "insertion_aopc": float((insertion[1:] - insertion[0]).mean()),
            })
            for curve, values in (("deletion", deletion), ("insertion", insertion)):
                for k, value in enumerate(values.tolist()):
                    curve_rows.append({"method": name, "text_index": index, "curve": curve, "k": k,
                                       "fraction": k / len(ranked), "value": value})
    return FaithfulnessResult(pd.DataFrame(rows), pd.DataFrame(curve_rows))


def _curve(model, target_fn, ids, base, mask, ranked, start_from_input: bool) -> torch.Tensor:
    """Target values [len(ranked) + 1] with the top-k tokens deleted (or, from the baseline, inserted)."""
    k_max = len(ranked)
    variants = (ids if start_from_input else base).repeat(k_max + 1, 1)
    source = base if start_from_input else ids
    for k in range(1, k_max + 1):
        changed = ranked[:k]
        variants[k, changed] = source[changed]
    masks = mask.repeat(k_max + 1, 1)
    with torch.no_grad():
        return target_fn(model(input_ids=variants, attention_mask=masks), variants, masks).float().cpu()
