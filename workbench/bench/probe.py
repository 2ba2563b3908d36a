"""Frozen features, per layer: pooled representations from every layer -> a linear probe per task.

Each example becomes one vector per layer: the mean of its non-special tokens' residual stream at that layer
(``pooling="mean"``, the default: all-MiniLM-L6-v2 was trained with mean pooling, and a mean works for every
architecture), or the first token (``"first"``: BERT's [CLS]) or the last real token (``"last"``: GPT-style
models). Layer 0 is the embedding output (``blocks.0.hook_resid_pre``), layer i the output of block i - 1
(``hook_resid_post``), the same numbering as the probes package's activation store (``workbench.probing``).
A sentence pair is encoded as one sequence with the tokenizer's pair template (``[CLS] a [SEP] b [SEP]``); a
multiple-choice example gives one vector per (context, choice) pair.

Only dev sets are local for most tasks, so scores are k-fold cross-validated on dev: every example is
predicted by a probe that did not see it, and the official metric is computed on those out-of-fold
predictions. Classification uses the batched :class:`workbench.probing.LinearProbe` (``probes.models``; all
layers in one computation); regression (STS-B) a closed-form ridge regression per layer; multiple choice a linear
scorer (one weight vector per layer, softmax over the choices), batched over layers the same way.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import metrics as M
from .data import ChoiceExample, TaskSpec, TextExample

logger = logging.getLogger(__name__)

POOLINGS = ("mean", "first", "last")


def _segments(examples: Sequence) -> tuple[list[str], list[str] | None, list[int]]:
    """Texts, pair texts (None when every example is a single text) and each example's number of items."""
    texts, pairs, counts = [], [], []
    for ex in examples:
        if isinstance(ex, TextExample):
            texts.append(ex.text)
            pairs.append(ex.text_pair)
            counts.append(1)
        elif isinstance(ex, ChoiceExample):
            texts.extend([ex.context] * len(ex.choices))
            pairs.extend(ex.choices)
            counts.append(len(ex.choices))
        else:
            raise TypeError(
                f"probe mode takes TextExample or ChoiceExample, got {type(ex).__name__} "
                f"(span extraction has no per-example vector; fine-tune it instead)"
            )
    if all(p is None for p in pairs):
        return texts, None, counts
    if any(p is None for p in pairs):
        raise ValueError("examples mix single texts and pairs")
    return texts, pairs, counts


def pooled_features(
    model,
    examples: Sequence,
    pooling: str = "mean",
    layers: Sequence[int] | None = None,
    batch_size: int = 32,
    progress: bool = True,
    sort_by_length: bool = True,
) -> torch.Tensor:
    """One vector per item and layer: float32 [layer, n_items, d_model] (n_items: examples, or all choices).

    Inputs are tokenized once (truncated to the model's context: a WARNING counts the truncated ones),
    sorted by length and batched, so padding is small; the model runs on its own device without gradients.
    """
    from ..probing import hook_name, resolve_layers

    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    tokenizer = model.tokenizer
    if tokenizer is None:
        raise ValueError(f"{type(model).__name__} has no tokenizer; probe mode needs one")
    chosen = resolve_layers("all" if layers is None else list(layers), model.n_layers)
    names = [hook_name(layer) for layer in chosen]
    texts, pairs, _ = _segments(examples)
    limits = [tokenizer.model_max_length, getattr(model.config, "max_position_embeddings", None)]
    max_length = int(min(limit for limit in limits if limit))
    encodings = tokenizer(texts, pairs, truncation=True, max_length=max_length).encodings
    truncated = sum(bool(e.overflowing) for e in encodings)
    if truncated:
        warn_visibly(
            f"probe features: {truncated} of {len(encodings)} inputs are longer than the model's context "
            f"({max_length} tokens) and were truncated; their vectors pool only the first {max_length} tokens",
            stacklevel=2,
        )
    out = torch.zeros(len(chosen), len(texts), model.config.d_model)
    pad_id = pad_token_id(tokenizer)
    wants_types = "token_type_ids" in tokenizer.model_input_names
    order = (
        np.argsort([-len(e.ids) for e in encodings], kind="stable")
        if sort_by_length
        else np.arange(len(texts))
    )
    from tqdm.auto import tqdm

    bar = tqdm(total=len(texts), disable=not progress, desc="features", unit="seq")
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            width = max(len(encodings[i].ids) for i in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            types = torch.zeros_like(ids)
            attention = torch.zeros_like(ids)
            keep = torch.zeros(len(batch), width)
            for row, i in enumerate(batch):
                e, n = encodings[i], len(encodings[i].ids)
                ids[row, :n] = torch.tensor(e.ids)
                types[row, :n] = torch.tensor(e.type_ids)
                attention[row, :n] = 1
                if pooling == "mean":
                    real = torch.tensor(e.special_tokens_mask) == 0
                    keep[row, :n] = real.float() if real.any() else 1.0
                elif pooling == "first":
                    keep[row, 0] = 1.0
                else:
                    keep[row, n - 1] = 1.0
            inputs = {"input_ids": ids, "attention_mask": attention}
            if wants_types:
                inputs["token_type_ids"] = types
            _, cache = model.run_with_cache(inputs, names_filter=names)
            weights = (keep / keep.sum(1, keepdim=True)).to(model.device)  # [batch, pos]
            for index, name in enumerate(names):
                pooled = torch.einsum("bp,bpd->bd", weights, cache[name].float())
                out[index, torch.as_tensor(batch)] = pooled.cpu()
            bar.update(len(batch))
    bar.close()
    return out


def warn_visibly(message: str, stacklevel: int = 2) -> None:
    """A WARNING both logged (for runs and logs) and raised as a UserWarning (seen in notebooks);
    ``stacklevel`` counts from the caller, as in ``warnings.warn``."""
    logger.warning(message)
    warnings.warn(message, UserWarning, stacklevel=stacklevel + 1)


def pad_token_id(tokenizer) -> int:
    """The id that pads: the pad token, else the end-of-text token (GPT-2), else 0 (masked out either way)."""
    token = tokenizer.special_tokens.get("pad_token") or tokenizer.special_tokens.get("eos_token")
    return tokenizer.token_to_id(token) if token else 0


def fold_ids(labels: Sequence, folds: int, seed: int = 0, stratify: bool = True) -> np.ndarray:
    """The fold (0..folds-1) of every example: shuffled, and stratified by label when ``stratify``."""
    n = len(labels)
    if folds < 2 or folds > n:
        raise ValueError(f"folds must be between 2 and the number of examples ({n}), got {folds}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    if stratify:
        order = order[np.argsort(np.asarray(labels)[order], kind="stable")]
    assignment = np.empty(n, dtype=np.int64)
    assignment[order] = np.arange(n) % folds
    return assignment


# Fewer training examples than this in a fold: no inner split to choose the regularization on.
MIN_TO_CHOOSE = 20


def _warn_if_not_chosen(name: str, grid: Sequence[float], folds: np.ndarray) -> None:
    """A WARNING when some fold has too few training examples to choose ``name`` from ``grid``."""
    n_train = min(int(np.sum(folds != fold)) for fold in np.unique(folds))
    if len(grid) < 2 or n_train >= MIN_TO_CHOOSE:
        return
    warn_visibly(
        f"probe: a fold has {n_train} training examples, too few (< {MIN_TO_CHOOSE}) to choose {name} on an "
        f"inner split; that fold uses the middle of the grid, {name}={grid[len(grid) // 2]}, for every layer",
        stacklevel=3,
    )


def _classify(
    features: torch.Tensor,
    labels: np.ndarray,
    n_classes: int,
    folds: np.ndarray,
    seed: int,
    max_epochs: int,
    weight_decays: Sequence[float],
    select_metric: str = "accuracy",
) -> np.ndarray:
    """Out-of-fold predicted classes [layer, n] from LinearProbe (all layers at once).

    With several ``weight_decays``, each outer fold picks one per layer on an inner split of its training part
    (80/20, stratified; the best ``select_metric``, the task's official metric, e.g. MCC for CoLA), then
    refits on the whole training part: the dev examples being scored never take part in the choice.
    """
    from ..probing import LinearProbe

    def fit(x, y, weight_decay):
        return LinearProbe(n_classes, max_epochs=max_epochs, weight_decay=weight_decay, seed=seed).fit(x, y)

    n_layers = features.shape[0]
    predictions = np.zeros((n_layers, features.shape[1]), dtype=np.int64)
    y = torch.as_tensor(labels, dtype=torch.long)
    _warn_if_not_chosen("weight_decay", weight_decays, folds)
    for fold in np.unique(folds):
        train = np.flatnonzero(folds != fold)
        test = np.flatnonzero(folds == fold)
        chosen = np.full(n_layers, len(weight_decays) // 2)  # too few examples to choose: the middle value
        if len(weight_decays) > 1 and len(train) >= MIN_TO_CHOOSE:
            inner = fold_ids(labels[train], 5, seed + 1 + int(fold)) == 0
            fit_rows, check_rows = train[~inner], train[inner]
            scores = np.array(
                [
                    [
                        M.compute([select_metric], row, labels[check_rows])[select_metric]
                        for row in fit(features[:, fit_rows], y[fit_rows], wd)
                        .predict(features[:, check_rows])
                        .numpy()
                    ]
                    for wd in weight_decays
                ]
            )  # [grid, layer]
            chosen = scores.argmax(0)
        for index in np.unique(chosen):
            probe = fit(features[:, train], y[train], weight_decays[index])
            layers = np.flatnonzero(chosen == index)
            predictions[np.ix_(layers, test)] = probe.predict(features[:, test]).cpu().numpy()[layers]
    return predictions


def ridge_fit_predict(train: torch.Tensor, y: torch.Tensor, test: torch.Tensor, alpha: float) -> torch.Tensor:
    """Ridge regression per layer on standardized features: train [layer, n, d], y [n], test [layer, m, d] ->
    predictions [layer, m]. Closed form (X'X + alpha I)^-1 X'y, the intercept unpenalized (centred y)."""
    mean, std = train.mean(1, keepdim=True), train.std(1, keepdim=True).clamp(min=1e-6)
    x, x_test = (train - mean) / std, (test - mean) / std
    y_mean = y.mean()
    gram = x.transpose(1, 2) @ x + alpha * torch.eye(x.shape[2])
    weight = torch.linalg.solve(gram, x.transpose(1, 2) @ (y - y_mean)[None, :, None])  # [layer, d, 1]
    return (x_test @ weight).squeeze(-1) + y_mean


def _regress(
    features: torch.Tensor, labels: np.ndarray, folds: np.ndarray, alphas: Sequence[float], seed: int
) -> np.ndarray:
    """Out-of-fold ridge predictions [layer, n]; with several ``alphas``, each fold picks one per layer on an
    inner 80/20 split of its training part (the best Pearson correlation)."""
    n_layers = features.shape[0]
    predictions = np.zeros((n_layers, features.shape[1]))
    y = torch.as_tensor(labels, dtype=torch.float64)
    x = features.double()
    _warn_if_not_chosen("alpha", alphas, folds)
    for fold in np.unique(folds):
        train, test = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        chosen = np.full(n_layers, len(alphas) // 2)
        if len(alphas) > 1 and len(train) >= MIN_TO_CHOOSE:
            inner = fold_ids(labels[train], 5, seed + 1 + int(fold), stratify=False) == 0
            fit_rows, check_rows = train[~inner], train[inner]
            scores = np.array(
                [
                    [
                        M.pearson(row, labels[check_rows])
                        for row in ridge_fit_predict(
                            x[:, fit_rows], y[fit_rows], x[:, check_rows], alpha
                        ).numpy()
                    ]
                    for alpha in alphas
                ]
            )  # [grid, layer]
            chosen = scores.argmax(0)
        for index in np.unique(chosen):
            layers = np.flatnonzero(chosen == index)
            fitted = ridge_fit_predict(x[:, train], y[train], x[:, test], alphas[index]).numpy()
            predictions[np.ix_(layers, test)] = fitted[layers]
    return predictions


def fit_choice_scorer(
    x: torch.Tensor,
    valid: torch.Tensor,
    y: torch.Tensor,
    max_epochs: int = 200,
    lr: float = 0.01,
    weight_decay: float = 1e-3,
    seed: int = 0,
) -> tuple[torch.Tensor, ...]:
    """A linear scorer per layer for multiple choice: x [layer, n, choice, d] (padding choices: valid False),
    y [n] -> (weight [layer, d], mean, std). Full-batch Adam on the cross-entropy over each example's choices."""
    mean = x[:, valid].mean(1)[:, None, None]  # [layer, 1, 1, d]
    std = x[:, valid].std(1)[:, None, None].clamp(min=1e-6)
    z = (x - mean) / std
    generator = torch.Generator().manual_seed(seed)
    weight = (torch.randn(x.shape[0], x.shape[-1], generator=generator) * 0.01).requires_grad_()
    optimizer = torch.optim.Adam([weight], lr=lr)
    for _ in range(max_epochs):
        logits = torch.einsum("lncd,ld->lnc", z, weight).masked_fill(~valid, -math.inf)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.repeat(x.shape[0]), reduction="none")
        loss = loss.view(x.shape[0], -1).mean(1) + 0.5 * weight_decay * weight.pow(2).sum(1)
        optimizer.zero_grad()
        loss.sum().backward()
        optimizer.step()
    return weight.detach(), mean, std


def _choose(
    features: torch.Tensor,
    counts: Sequence[int],
    labels: np.ndarray,
    folds: np.ndarray,
    seed: int,
    max_epochs: int,
    weight_decay: float,
) -> np.ndarray:
    n_layers, d = features.shape[0], features.shape[-1]
    width = max(counts)
    x = torch.zeros(n_layers, len(counts), width, d)
    valid = torch.zeros(len(counts), width, dtype=torch.bool)
    start = 0
    for i, k in enumerate(counts):
        x[:, i, :k] = features[:, start : start + k]
        valid[i, :k] = True
        start += k
    y = torch.as_tensor(labels, dtype=torch.long)
    predictions = np.zeros((n_layers, len(counts)), dtype=np.int64)
    for fold in np.unique(folds):
        test = torch.as_tensor(folds == fold)
        weight, mean, std = fit_choice_scorer(
            x[:, ~test], valid[~test], y[~test], max_epochs=max_epochs, weight_decay=weight_decay, seed=seed
        )
        logits = torch.einsum("lncd,ld->lnc", (x[:, test] - mean) / std, weight).masked_fill(
            ~valid[test], -math.inf
        )
        predictions[:, test.numpy()] = logits.argmax(-1).numpy()
    return predictions


def cross_validate(
    spec: TaskSpec,
    examples: Sequence,
    features: torch.Tensor,
    folds: int = 5,
    seed: int = 0,
    max_epochs: int = 100,
    weight_decays: Sequence[float] = (0.1, 1.0, 10.0),
    ridge_alphas: Sequence[float] = (1.0, 10.0, 100.0, 1000.0),
    choice_weight_decay: float = 1e-2,
    layers: Sequence[int] | None = None,
) -> list[dict]:
    """k-fold cross-validated probe scores: one row per (layer, metric) with ``value`` and ``n``.

    ``features`` come from :func:`pooled_features` over the same ``examples``. The regularization strength
    (``weight_decays`` of the linear probe, ``ridge_alphas`` for regression) is chosen per layer inside each
    training fold (nested: an inner 80/20 split), so the reported score is not tuned on the examples it scores.
    """
    labels = np.array([ex.label for ex in examples])
    _, _, counts = _segments(examples)
    stratify = spec.family != "regression"
    assignment = fold_ids(labels, folds, seed, stratify)
    if spec.family == "classification":
        predictions = _classify(
            features,
            labels,
            spec.num_labels,
            assignment,
            seed,
            max_epochs,
            list(weight_decays),
            spec.metrics[0],
        )
    elif spec.family == "regression":
        predictions = _regress(features, labels, assignment, list(ridge_alphas), seed)
    elif spec.family == "multiple_choice":
        predictions = _choose(features, counts, labels, assignment, seed, max_epochs * 2, choice_weight_decay)
    else:
        raise ValueError(f"probe mode does not support the {spec.family!r} task {spec.name!r}")
    layer_numbers = list(range(features.shape[0])) if layers is None else list(layers)
    rows = []
    for index, layer in enumerate(layer_numbers):
        for name, value in M.compute(spec.metrics, predictions[index], labels).items():
            rows.append({"layer": layer, "metric": name, "value": value, "n": len(examples)})
    return rows
