"""Dictionaries of different models compared feature by feature on the same words.

Two models with different tokenizers never see the same tokens, but they see the same words: each model's
feature activations are pooled from its tokens to the whitespace-separated words of the texts (the word
alignment of :mod:`workbench.tokenizers.words`, which ``viz.compare`` uses too: a token belongs to the word
its last character falls in), and every pair of models gets the Pearson correlation of every feature of
one with every feature of the other over those words. A feature's *best match* in the other model is the
feature it correlates with most; it is *shared* when that correlation reaches ``threshold``, *unique*
otherwise (as in Bricken et al. 2023's comparison of dictionaries across runs, and Lan et al. 2024's across
models). Features that never fire on the words (or are constant there) are *dead*: left out of the matches
and counted.

Memory: nothing grows with the corpus but the top words of each feature. The correlations come from
running sums per pair (counts, sums, sums of squares, the [d_a, d_b] sum of products), updated one batch of
texts at a time, on values shifted by each feature's mean on the first batch (so the sums cancel little).

>>> dictionaries = sae.train_per_model({"minilm": lm, "gpt2": gpt2}, texts, depth=0.5, kind="topk", k=16,
...                                    steps=500)                                      # doctest: +SKIP
>>> comparison = sae.compare(dictionaries, {"minilm": lm, "gpt2": gpt2}, texts)        # doctest: +SKIP
>>> comparison.summary                       # per ordered pair: alive, dead, shared fraction, median  # doctest: +SKIP
>>> comparison.matches("minilm", "gpt2")     # each alive feature's best match and its correlation  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..tokenizers.words import token_words, words_of
from ..zoo import is_stand_in, labelled
from .dictionary import SparseAutoencoder
from .training import train

POOLINGS = ("mean", "max")


# Training at comparable depth ---------------------------------------------------------------------------
def layer_at_depth(n_layers: int, depth: float) -> int:
    """The block at relative ``depth`` in [0, 1] of a model with ``n_layers`` blocks: the nearest to
    ``depth * (n_layers - 1)``, halves rounded up (0: the first block, 1: the last)."""
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth must be in [0, 1] (0: first block, 1: last block), got {depth}")
    return int(math.floor(depth * (n_layers - 1) + 0.5))


def train_per_model(
    models: Mapping[str, Any],
    texts: Sequence[str],
    depth: float = 0.5,
    hook: str = "hook_resid_post",
    d_sae: int | None = None,
    expansion: int = 8,
    **train_options: Any,
) -> dict[str, SparseAutoencoder]:
    """One dictionary per model, each at the block at the same relative ``depth``, on the same texts.

    Args:
        models: name -> model (any architectures, any tokenizers).
        texts: the training texts, the same for every model.
        depth: relative depth in [0, 1]: block ``round(depth * (n_layers - 1))`` of each model
            (:func:`layer_at_depth`).
        hook: the block hook point read, e.g. ``"hook_resid_post"`` or ``"hook_mlp_out"``.
        d_sae: features per dictionary; None: ``expansion * d_model`` of each model (so the dictionaries
            are equally overcomplete rather than equally wide).
        **train_options: passed to :func:`workbench.sae.train` for every model (kind, k, steps, seed, ...).

    Returns:
        name -> the trained dictionary (its ``cfg.hook_name`` says the block chosen).
    """
    if not isinstance(models, Mapping) or not models:
        raise TypeError("models must be a non-empty mapping of name -> model, e.g. {'minilm': lm}")
    dictionaries = {}
    for name, model in models.items():
        layer = layer_at_depth(model.n_layers, depth)
        width = d_sae if d_sae is not None else expansion * int(model.config.d_model)
        dictionary = train(model, f"blocks.{layer}.{hook}", texts, width, **train_options)
        dictionary.cfg.model_name = dictionary.cfg.model_name or str(name)
        dictionaries[str(name)] = dictionary
    return dictionaries


# Feature activations pooled to words ----------------------------------------------------------------------
def word_features(
    dictionary: SparseAutoencoder, model, texts: Sequence[str], pooling: str = "mean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The dictionary's feature activations of every word of ``texts``, pooled over the word's tokens.

    Args:
        texts: a batch of texts (run in one forward pass, padded); words are split at whitespace.
        pooling: ``"mean"`` or ``"max"`` over a word's tokens.

    Returns:
        ``(features [n_words, d_sae], has_tokens [n_words] bool)``, words in text order; a word left without
        any token (truncated away) has zeros and ``has_tokens`` False.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    hook = dictionary.cfg.hook_name
    max_length = _max_length(model)
    encoding = model.tokenize(list(texts), truncation=max_length is not None, max_length=max_length)
    with torch.no_grad():
        _, cache = model.run_with_cache(encoding, names_filter=[hook])
        acts = cache[hook]  # [batch, pos, d_in]
        rows, positions, word_index, n_words = _token_word_map(encoding.offsets, texts)
        device = dictionary.W_enc.device
        tokens = dictionary.encode(acts[rows.to(acts.device), positions.to(acts.device)].to(device)).float()
        return _pool(tokens, word_index.to(device), n_words, pooling)


def _max_length(model) -> int | None:
    limits = [getattr(model.tokenizer, "model_max_length", None)]
    limits.append(getattr(model.config, "max_position_embeddings", None))
    limits = [int(limit) for limit in limits if isinstance(limit, int) and 0 < limit < 10**9]
    return min(limits) if limits else None


def _token_word_map(offsets, texts: Sequence[str]):
    """Row, position and global word index [n_tokens] of every token inside a word, and the word count."""
    rows, positions, word_index = [], [], []
    first_word = 0
    for row, text in enumerate(texts):
        for position, word in enumerate(token_words(offsets[row], text)):
            if word is not None:
                rows.append(row)
                positions.append(position)
                word_index.append(first_word + word)
        first_word += len(words_of(text))
    as_long = lambda values: torch.tensor(values, dtype=torch.long)  # noqa: E731
    return as_long(rows), as_long(positions), as_long(word_index), first_word


def _pool(tokens: torch.Tensor, word_index: torch.Tensor, n_words: int, pooling: str):
    """tokens [n_tokens, d] -> (words [n_words, d], has_tokens [n_words])."""
    counts = torch.bincount(word_index, minlength=n_words)
    out = tokens.new_zeros(n_words, tokens.shape[-1])
    if pooling == "mean":
        out.index_add_(0, word_index, tokens)
        out /= counts.clamp_min(1)[:, None].to(out.dtype)
    else:
        index = word_index[:, None].expand_as(tokens)
        out.scatter_reduce_(0, index, tokens, reduce="amax", include_self=False)
    return out, counts > 0


# Running sums ------------------------------------------------------------------------------------------
class _PairSums:
    """Sums over words for the Pearson correlation of every feature of a with every feature of b, on values
    shifted by fixed per-feature constants (the correlation does not change; the sums cancel less)."""

    def __init__(self, d_a: int, d_b: int, device: torch.device) -> None:
        self.device = device
        self.dtype = torch.float64 if device.type == "cpu" else torch.float32  # the per-batch product
        self.cross = torch.zeros(d_a, d_b, dtype=torch.float64, device=device)

    def add(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """a [n, d_a], b [n, d_b]: the same words, already shifted."""
        product = a.to(self.device, self.dtype).T @ b.to(self.device, self.dtype)
        self.cross += product.double()


class _FeatureSums:
    """One model's per-feature sums over words (shifted), firing counts and top words."""

    def __init__(self, d_sae: int, top_n: int) -> None:
        self.n = 0
        self.shift: torch.Tensor | None = None
        self.sum = torch.zeros(d_sae, dtype=torch.float64)
        self.squares = torch.zeros(d_sae, dtype=torch.float64)
        self.fired = torch.zeros(d_sae, dtype=torch.long)
        self.top_n = top_n
        self.best = torch.full((0, d_sae), -math.inf)
        self.best_ids = torch.zeros((0, d_sae), dtype=torch.long)

    def shifted(self, features: torch.Tensor) -> torch.Tensor:
        if self.shift is None:
            self.shift = features.double().mean(0).to(features.device)
        return features.double() - self.shift

    def add(self, features: torch.Tensor, shifted: torch.Tensor, first_id: int) -> None:
        """features [n, d_sae] (as computed), shifted: the same minus the shift; word ids from first_id."""
        self.n += len(features)
        self.sum += shifted.sum(0).cpu()
        self.squares += shifted.pow(2).sum(0).cpu()
        self.fired += (features > 0).sum(0).cpu()
        ids = torch.arange(first_id, first_id + len(features))
        values = torch.cat([self.best, features.float().cpu()])
        candidates = torch.cat([self.best_ids, ids[:, None].expand(-1, features.shape[1])])
        top = values.topk(min(self.top_n, len(values)), dim=0)
        self.best, self.best_ids = top.values, candidates.gather(0, top.indices)

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean of the shifted values [d_sae], variance [d_sae]) over the words."""
        mean = self.sum / self.n
        variance = (self.squares / self.n - mean.pow(2)).clamp_min(0)
        return mean.numpy(), variance.numpy()

    def alive(self) -> np.ndarray:
        """bool [d_sae]: fired on some word and not constant (relative to its second moment)."""
        mean, variance = self.moments()
        second_moment = variance + (mean + self.shift.cpu().numpy()) ** 2
        return (self.fired.numpy() > 0) & (variance > 1e-9 * np.maximum(second_moment, 1e-30))


def _correlation(pair: _PairSums, a: _FeatureSums, b: _FeatureSums) -> np.ndarray:
    """Pearson correlation [d_a, d_b] from the sums; NaN in the rows / columns of dead features."""
    mean_a, var_a = a.moments()
    mean_b, var_b = b.moments()
    covariance = pair.cross.cpu().numpy() / a.n - np.outer(mean_a, mean_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        correlation = covariance / np.sqrt(np.outer(var_a, var_b))
    correlation[~a.alive(), :] = np.nan
    correlation[:, ~b.alive()] = np.nan
    return np.clip(correlation, -1.0, 1.0)


# The comparison -----------------------------------------------------------------------------------------
@dataclass
class FeatureComparison:
    """Feature-activation correlations between the dictionaries of several models, on the same words.

    Attributes:
        names: the models, in the order given.
        labels: name -> label for figures (``" (random stand-in)"`` appended for a stand-in).
        hooks: name -> the dictionary's hook point; d_sae: name -> its number of features.
        correlations: ``(a, b)`` for each pair in ``names`` order -> float [d_a, d_b] Pearson correlations
            over the words (NaN in the rows / columns of dead features); :meth:`correlation` gives either
            orientation.
        frequencies: name -> float [d_sae], the fraction of words on which each feature is active.
        alive: name -> bool [d_sae]: fired on some word and not constant there.
        top_words: name -> DataFrame ``feature, rank, activation, word, text, position`` (the words each
            feature is most active on; position: the word's index in its text).
        threshold: a best-match correlation at least this makes a feature *shared*.
        n_words: words compared (every model gave each of them at least one token); n_texts;
        words_without_tokens: name -> words that model left without a token (truncated), left out for all.
        pooling: how token activations were pooled to words; data: a name for the texts (figure titles).
    """

    names: list[str]
    labels: dict[str, str]
    hooks: dict[str, str]
    d_sae: dict[str, int]
    correlations: dict[tuple[str, str], np.ndarray]
    frequencies: dict[str, np.ndarray]
    alive: dict[str, np.ndarray]
    top_words: dict[str, pd.DataFrame]
    threshold: float
    n_words: int
    n_texts: int
    words_without_tokens: dict[str, int] = field(default_factory=dict)
    pooling: str = "mean"
    data: str | None = None

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """Every ordered pair (a, b) of different models: a's features matched into b."""
        return [(a, b) for a in self.names for b in self.names if a != b]

    def correlation(self, a: str, b: str) -> np.ndarray:
        """float [d_a, d_b]: correlation of each feature of ``a`` with each feature of ``b``."""
        self._check(a, "a")
        self._check(b, "b")
        if (a, b) in self.correlations:
            return self.correlations[(a, b)]
        if (b, a) in self.correlations:
            return self.correlations[(b, a)].T
        raise ValueError(f"a and b must be two different models of {self.names}, got {a!r} twice")

    def matches(self, a: str, b: str) -> pd.DataFrame:
        """Each alive feature of ``a`` with its best match among the alive features of ``b``.

        Returns:
            a DataFrame sorted by correlation (highest first): ``feature``, ``match``, ``correlation``,
            ``shared`` (correlation >= threshold), ``frequency`` and ``match_frequency`` (fraction of words
            active), ``top_words`` and ``match_top_words`` (the few words each is most active on).
        """
        matrix = self.correlation(a, b)
        features = np.flatnonzero(self.alive[a])
        columns = ["feature", "match", "correlation", "shared", "frequency", "match_frequency"]
        if not len(features) or not self.alive[b].any():
            frame = pd.DataFrame(columns=[*columns, "top_words", "match_top_words"])
            return frame.astype({"feature": int, "match": int, "correlation": float, "shared": bool})
        rows = np.nan_to_num(matrix[features], nan=-np.inf)
        best = rows.argmax(1)
        correlation = rows[np.arange(len(features)), best]
        frame = pd.DataFrame(
            {
                "feature": features,
                "match": best,
                "correlation": correlation,
                "shared": correlation >= self.threshold,
                "frequency": self.frequencies[a][features],
                "match_frequency": self.frequencies[b][best],
            }
        )
        frame["top_words"] = frame["feature"].map(self._top_words_text(a)).fillna("")
        frame["match_top_words"] = frame["match"].map(self._top_words_text(b)).fillna("")
        return frame.sort_values("correlation", ascending=False, kind="stable").reset_index(drop=True)

    @property
    def summary(self) -> pd.DataFrame:
        """One row per ordered pair: ``model``, ``other``, ``n_features``, ``alive``, ``dead`` (never active
        or constant on these words: left out), ``shared`` (alive features whose best match reaches the
        threshold), ``shared_fraction`` (of the alive ones), ``median_best_correlation``, ``threshold``,
        ``n_words``, ``hook``, ``other_hook``."""
        rows = []
        for a, b in self.pairs:
            matches = self.matches(a, b)
            alive = int(self.alive[a].sum())
            shared = int(matches["shared"].sum())
            rows.append(
                {
                    "model": self.labels[a],
                    "other": self.labels[b],
                    "n_features": self.d_sae[a],
                    "alive": alive,
                    "dead": self.d_sae[a] - alive,
                    "shared": shared,
                    "shared_fraction": shared / alive if alive else math.nan,
                    "median_best_correlation": float(matches["correlation"].median()) if alive else math.nan,
                    "threshold": self.threshold,
                    "n_words": self.n_words,
                    "hook": self.hooks[a],
                    "other_hook": self.hooks[b],
                }
            )
        return pd.DataFrame(rows)

    def describe_data(self) -> str:
        """``"UD EWT: n=40 texts, 512 words"``: what the correlations were computed on (for titles)."""
        return f"{self.data or 'texts'}: n={self.n_texts} texts, {self.n_words} words ({self.pooling}-pooled)"

    def _top_words_text(self, name: str, k: int = 3) -> dict[int, str]:
        frame = self.top_words[name]
        frame = frame[frame["rank"] < k]
        return {int(f): ", ".join(group["word"]) for f, group in frame.groupby("feature")}

    def _check(self, name: str, argument: str) -> None:
        if name not in self.names:
            raise KeyError(f"{argument}={name!r} is not a compared model; choose one of {self.names}")


def compare(
    dictionaries: Mapping[str, SparseAutoencoder],
    models: Mapping[str, Any],
    texts: Sequence[str],
    threshold: float = 0.5,
    pooling: str = "mean",
    batch_size: int = 8,
    top_n: int = 5,
    data: str | None = None,
    progress: bool = True,
) -> FeatureComparison:
    """Correlate the features of every pair of dictionaries on the words of ``texts``.

    Args:
        dictionaries: name -> dictionary (e.g. from :func:`train_per_model`); at least two.
        models: name -> the model each dictionary reads (the same names).
        texts: the texts (a list of str, or of lists of words, which are joined by spaces); the words are the
            whitespace-separated words, the same for every model whatever its tokenizer.
        threshold: the best-match correlation from which a feature counts as shared (else unique).
        pooling: ``"mean"`` or ``"max"`` of a word's token activations.
        batch_size: texts per forward pass.
        top_n: words kept per feature (the most active) for the tables and views.
        data: a name for the texts, shown in figure titles (e.g. ``"UD EWT (test)"``).
        progress: show a progress bar.

    Returns:
        a :class:`FeatureComparison`.
    """
    names = _check_inputs(dictionaries, models)
    texts = _as_texts(texts)
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold is a correlation, in [-1, 1]; got {threshold}")
    device = dictionaries[names[0]].W_enc.device
    device = torch.device("cpu") if device.type == "mps" else device  # no float64 there
    sums = {name: _FeatureSums(dictionaries[name].cfg.d_sae, top_n) for name in names}
    pairs = {
        (a, b): _PairSums(dictionaries[a].cfg.d_sae, dictionaries[b].cfg.d_sae, device)
        for a, b in combinations(names, 2)
    }
    where: list[tuple[int, int]] = []  # compared word id -> (text, word position)
    without_tokens = dict.fromkeys(names, 0)
    for start in tqdm(range(0, len(texts), batch_size), desc="comparing features", disable=not progress):
        batch = texts[start : start + batch_size]
        pooled = {name: word_features(dictionaries[name], models[name], batch, pooling) for name in names}
        kept = torch.stack([has.cpu() for _, has in pooled.values()]).all(0)
        for name, (_, has) in pooled.items():
            without_tokens[name] += int((~has.cpu()).sum())
        if not kept.any():
            continue
        first_id = len(where)
        batch_words = [(start + t, w) for t, text in enumerate(batch) for w in range(len(words_of(text)))]
        where.extend(word for word, keep in zip(batch_words, kept.tolist()) if keep)
        shifted = {}
        for name in names:
            features = pooled[name][0][kept.to(pooled[name][0].device)]
            shifted[name] = sums[name].shifted(features)
            sums[name].add(features, shifted[name], first_id)
        for (a, b), pair in pairs.items():
            pair.add(shifted[a], shifted[b])
    if not where:
        raise ValueError("no word of texts got a token in every model (are the texts empty?)")
    return FeatureComparison(
        names=names,
        labels={name: labelled(name, is_stand_in(models[name])) for name in names},
        hooks={name: dictionaries[name].cfg.hook_name for name in names},
        d_sae={name: dictionaries[name].cfg.d_sae for name in names},
        correlations={(a, b): _correlation(pair, sums[a], sums[b]) for (a, b), pair in pairs.items()},
        frequencies={name: (sums[name].fired.double() / sums[name].n).numpy() for name in names},
        alive={name: sums[name].alive() for name in names},
        top_words={name: _top_words(sums[name], where, texts) for name in names},
        threshold=float(threshold),
        n_words=len(where),
        n_texts=len(texts),
        words_without_tokens=without_tokens,
        pooling=pooling,
        data=data,
    )


def _check_inputs(dictionaries, models) -> list[str]:
    for argument, value in (("dictionaries", dictionaries), ("models", models)):
        if not isinstance(value, Mapping):
            raise TypeError(f"{argument} must be a mapping of model name -> ..., got {type(value).__name__}")
    names = [str(name) for name in dictionaries]
    if len(names) < 2:
        raise ValueError(f"compare needs the dictionaries of at least two models, got {names}")
    missing = [name for name in names if name not in models]
    if missing:
        raise KeyError(
            f"models lacks {missing}: give the model of every dictionary (models has {list(models)})"
        )
    for name in names:
        dictionary = dictionaries[name]
        if not isinstance(dictionary, SparseAutoencoder):
            raise TypeError(
                f"dictionaries[{name!r}] is a {type(dictionary).__name__}, not a SparseAutoencoder"
            )
        if dictionary.cfg.hook_name is None:
            raise ValueError(f"dictionaries[{name!r}] has no hook_name: which activation does it read?")
        models[name].resolve_hook_names([dictionary.cfg.hook_name])  # a KeyError naming close hook points
    return names


def _as_texts(texts) -> list[str]:
    if isinstance(texts, str) or not texts:
        raise TypeError("texts must be a non-empty list of str (or of lists of words)")
    joined = [" ".join(text) if isinstance(text, (list, tuple)) else text for text in texts]
    bad = [i for i, text in enumerate(joined) if not isinstance(text, str)]
    if bad:
        raise TypeError(f"texts[{bad[0]}] is a {type(joined[bad[0]]).__name__}, not a str or a list of words")
    return joined


def _top_words(sums: _FeatureSums, where: list[tuple[int, int]], texts: list[str]) -> pd.DataFrame:
    words = {}
    rows = []
    for feature in range(sums.best.shape[1]):
        for rank in range(sums.best.shape[0]):
            value = float(sums.best[rank, feature])
            if not value > 0:
                break
            text, position = where[int(sums.best_ids[rank, feature])]
            if text not in words:
                words[text] = [w for _, _, w in words_of(texts[text])]
            rows.append(
                {
                    "feature": feature,
                    "rank": rank,
                    "activation": value,
                    "word": words[text][position],
                    "text": text,
                    "position": position,
                }
            )
    return pd.DataFrame(rows, columns=["feature", "rank", "activation", "word", "text", "position"])
