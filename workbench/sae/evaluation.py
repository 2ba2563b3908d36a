"""How good a dictionary is on a model's texts (``metrics``), and what its features respond to
(``top_examples``).

Metrics, over the real (non-padding) tokens of the texts, in the model's units:

- ``l0``: mean number of active features per token;
- ``explained_variance``: ``1 - sum ||x - x_hat||^2 / sum ||x - mean(x)||^2`` (x: the activation
  reconstructed);
- ``mse``: mean squared error per element;
- ``dead_fraction``: features that never fired on these texts; ``dense_fraction``: features that fired on
  more than ``dense_threshold`` of the tokens;
- for a causal LM: next-token cross-entropy clean (``ce_clean``), with the reconstruction spliced in
  (``ce_spliced``) and with the activation zero-ablated (``ce_zero``), and
  ``loss_recovered = (ce_zero - ce_spliced) / (ce_zero - ce_clean)`` (1: as good as the model, 0: as bad as
  deleting the activation); ``kl_spliced``: mean KL(clean || spliced) of the next-token distributions.
- a model with output logits but no next-token loss (a masked LM): ``kl_spliced`` over every token, and no
  cross-entropy (its loss needs masked inputs, which would change the activation being reconstructed);
- a model without output logits (a bare encoder): reconstruction metrics only. ``attrs["note"]`` says which.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
import torch
import torch.nn.functional as F

from ..outputs import CausalLMOutput
from .dictionary import SparseAutoencoder
from .splice import spliced


def metrics(
    dictionary: SparseAutoencoder,
    model,
    texts: Sequence[str],
    batch_size: int = 8,
    dense_threshold: float = 0.1,
) -> pd.Series:
    """Reconstruction and downstream metrics of ``dictionary`` on ``model`` over ``texts`` (see the module
    doc).

    Returns:
        a pandas Series (``attrs["note"]`` says which downstream metrics apply to this model and why).
    """
    texts = _texts(texts)
    cfg = dictionary.cfg
    hook_in = cfg.hook_name
    hook_out = cfg.hook_name_out or cfg.hook_name
    totals = _Totals(cfg.d_sae)
    kind = None
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        kwargs, _ = model.prepare_inputs(batch)
        mask = kwargs["attention_mask"].bool()
        with torch.no_grad():
            clean, cache = model.run_with_cache(kwargs, names_filter=list(dict.fromkeys([hook_in, hook_out])))
            x_in, target = cache[hook_in][mask], cache[hook_out][mask]
            out = dictionary(x_in.to(dictionary.W_enc.device))
            totals.add_reconstruction(
                target.float(), out.reconstruction.float().to(target.device), out.feature_acts
            )
            kind = _output_kind(clean)
            if kind == "none":
                continue
            with spliced(dictionary, model):
                patched = model(**kwargs)
            if kind == "causal":
                with model.hooks([(hook_out, lambda x, hook: torch.zeros_like(x))]):
                    zeroed = model(**kwargs)
                totals.add_causal(clean.logits, patched.logits, zeroed.logits, mask, kwargs["input_ids"])
            else:
                totals.add_kl(clean.logits, patched.logits, mask)
    return totals.series(kind, dense_threshold)


def _texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str) or not texts or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a non-empty list of str")
    return list(texts)


def _output_kind(output) -> str:
    """ "causal" (next-token logits), "logits" (other token logits, e.g. a masked LM) or "none"."""
    logits = getattr(output, "logits", None)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3:
        return "none"
    if isinstance(output, CausalLMOutput) or type(output).__name__.startswith("CausalLM"):
        return "causal"
    return "logits"


class _Totals:
    """Running sums over tokens, turned into the metrics at the end."""

    def __init__(self, d_sae: int) -> None:
        self.tokens = 0
        self.squared_error = 0.0
        self.target_sum: torch.Tensor | None = None
        self.target_squares = 0.0
        self.elements = 0
        self.active = 0
        self.fired = torch.zeros(d_sae, dtype=torch.long)
        self.ce = {"clean": 0.0, "spliced": 0.0, "zero": 0.0}
        self.kl = 0.0
        self.predicted = 0  # positions with a next-token (or KL) term

    def add_reconstruction(self, target: torch.Tensor, recon: torch.Tensor, acts: torch.Tensor) -> None:
        self.tokens += len(target)
        self.elements += target.numel()
        self.squared_error += (target - recon).pow(2).sum().item()
        self.target_squares += target.pow(2).sum().item()
        total = target.sum(0).double()
        self.target_sum = total if self.target_sum is None else self.target_sum + total
        active = acts > 0
        self.active += int(active.sum())
        self.fired += active.sum(0).cpu()

    def add_causal(
        self,
        clean: torch.Tensor,
        patched: torch.Tensor,
        zeroed: torch.Tensor,
        mask: torch.Tensor,
        ids: torch.Tensor,
    ) -> None:
        """Logits [batch, pos, vocab], ids [batch, pos]; a position counts when it and the next one are real
        tokens."""
        keep = mask[:, :-1] & mask[:, 1:]
        labels = ids[:, 1:][keep]
        for name, logits in (("clean", clean), ("spliced", patched), ("zero", zeroed)):
            self.ce[name] += F.cross_entropy(logits[:, :-1][keep].float(), labels, reduction="sum").item()
        self.kl += _kl_sum(clean[:, :-1][keep], patched[:, :-1][keep])
        self.predicted += int(keep.sum())

    def add_kl(self, clean: torch.Tensor, patched: torch.Tensor, mask: torch.Tensor) -> None:
        self.kl += _kl_sum(clean[mask], patched[mask])
        self.predicted += int(mask.sum())

    def series(self, kind: str | None, dense_threshold: float) -> pd.Series:
        mean = self.target_sum / self.tokens
        variance = self.target_squares - self.tokens * float(mean.pow(2).sum())
        frequency = self.fired.double() / self.tokens
        values = {
            "tokens": self.tokens,
            "l0": self.active / self.tokens,
            "explained_variance": 1.0 - self.squared_error / variance if variance > 0 else math.nan,
            "mse": self.squared_error / self.elements,
            "dead_fraction": float((self.fired == 0).double().mean()),
            "dense_fraction": float((frequency > dense_threshold).double().mean()),
        }
        nan = math.nan
        ce = {
            name: (total / self.predicted if kind == "causal" and self.predicted else nan)
            for name, total in self.ce.items()
        }
        values.update({f"ce_{name}": value for name, value in ce.items()})
        gap = ce["zero"] - ce["clean"]
        values["loss_recovered"] = (
            (ce["zero"] - ce["spliced"]) / gap if kind == "causal" and gap != 0 else nan
        )
        values["kl_spliced"] = (
            self.kl / self.predicted if kind in ("causal", "logits") and self.predicted else nan
        )
        series = pd.Series(values, dtype=float)
        series.attrs["note"] = _NOTES[kind or "none"]
        return series


_NOTES = {
    "causal": "causal LM: cross-entropy of the next token (clean, spliced, zero-ablated) and loss recovered",
    "logits": "no next-token loss (e.g. a masked LM, whose loss needs masked inputs that would change the "
    "activation): KL(clean || spliced) of the output distributions at every token instead of cross-entropy",
    "none": "the model has no output logits (no LM head): reconstruction metrics only",
}


def _kl_sum(clean: torch.Tensor, patched: torch.Tensor) -> float:
    """Sum over rows of KL(softmax(clean) || softmax(patched)); logits [n, vocab]."""
    log_p = clean.float().log_softmax(-1)
    log_q = patched.float().log_softmax(-1)
    return (log_p.exp() * (log_p - log_q)).sum().item()


def top_examples(
    dictionary: SparseAutoencoder,
    model,
    texts: Sequence[str],
    n: int = 20,
    features: Sequence[int] | None = None,
    context: int = 8,
    batch_size: int = 8,
) -> pd.DataFrame:
    """The ``n`` tokens of ``texts`` on which each feature is most active, with their context.

    Returns:
        a DataFrame with one row per (feature, rank): ``feature``, ``rank`` (0 = strongest), ``activation``,
        ``text`` (index into ``texts``), ``position`` (index among the text's tokens, padding not counted),
        ``token``, ``left`` / ``right`` (up to
        ``context`` token strings either side) and ``context`` (the tokens joined by spaces, the token
        itself in brackets). Only positive activations are listed, so a feature may have fewer rows.
        ``attrs``: ``texts`` and ``tokens`` (how many were searched) and the dictionary's ``model_name``.
    """
    texts = _texts(texts)
    chosen = (
        torch.arange(dictionary.cfg.d_sae)
        if features is None
        else torch.as_tensor(list(features), dtype=torch.long)
    )
    if len(chosen) and (chosen.min() < 0 or chosen.max() >= dictionary.cfg.d_sae):
        raise IndexError(f"features must be in [0, {dictionary.cfg.d_sae}), got {chosen.tolist()}")
    best = torch.full((0, len(chosen)), -math.inf)
    best_ids = torch.zeros((0, len(chosen)), dtype=torch.long)
    where: list[tuple[int, int]] = []  # token id -> (text, position)
    tokens: list[list[str]] = []
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        kwargs, strings = model.prepare_inputs(batch)
        mask = kwargs["attention_mask"].bool()
        with torch.no_grad():
            _, cache = model.run_with_cache(kwargs, names_filter=dictionary.cfg.hook_name)
            acts = dictionary.encode(cache[dictionary.cfg.hook_name][mask].to(dictionary.W_enc.device))[
                :, chosen.to(dictionary.W_enc.device)
            ]
        for row, text_mask in enumerate(
            mask.cpu()
        ):  # real tokens only: padding is neither example nor context
            positions = text_mask.nonzero().flatten().tolist()
            where.extend((start + row, i) for i in range(len(positions)))
            tokens.append([strings[row][p] if strings else str(p) for p in positions])
        ids = torch.arange(len(where) - len(acts), len(where))
        values = torch.cat([best, acts.float().cpu()])
        candidates = torch.cat([best_ids, ids[:, None].expand(-1, len(chosen))])
        top = values.topk(min(n, len(values)), dim=0)
        best, best_ids = top.values, candidates.gather(0, top.indices)
    frame = _example_rows(chosen.tolist(), best, best_ids, where, tokens, context)
    # What the examples were drawn from, for views that must say it (viz.feature_dashboard).
    frame.attrs.update({"texts": len(texts), "tokens": len(where), "model_name": dictionary.cfg.model_name})
    return frame


def _example_rows(features, best, best_ids, where, tokens, context) -> pd.DataFrame:
    rows = []
    for column, feature in enumerate(features):
        for rank in range(best.shape[0]):
            value = float(best[rank, column])
            if not value > 0:
                break
            text, position = where[int(best_ids[rank, column])]
            strings = tokens[text]
            left = strings[max(0, position - context) : position]
            right = strings[position + 1 : position + 1 + context]
            rows.append(
                {
                    "feature": feature,
                    "rank": rank,
                    "activation": value,
                    "text": text,
                    "position": position,
                    "token": strings[position],
                    "left": left,
                    "right": right,
                    "context": " ".join([*left, f"[{strings[position]}]", *right]),
                }
            )
    columns = ["feature", "rank", "activation", "text", "position", "token", "left", "right", "context"]
    return pd.DataFrame(rows, columns=columns)


SparseAutoencoder.metrics = metrics
SparseAutoencoder.top_examples = top_examples
