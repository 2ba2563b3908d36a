"""Zero-shot multiple choice: score each choice as a continuation of the prompt under a language model.

Three scorers; the architecture's record (``zero_shot``, in its ``models/<arch>.py``) says which one scores
with it (:func:`scorer_kind`):

- ``causal`` (GPT, GPT-2, and any model registered as a causal LM): the summed log-probability of the
  continuation's tokens given the prompt, as lm-evaluation-harness computes it (the prompt's trailing
  whitespace moves to the continuation; the continuation's tokens are those of ``encode(prompt +
  continuation)`` after the prompt's). ``accuracy`` picks the highest sum, ``accuracy_norm`` the highest sum
  per character of the continuation (lm-evaluation-harness's ``acc_norm``).
- ``masked`` (BERT, RoBERTa, DistilBERT, XLM-MLM): the pseudo-log-likelihood of Salazar et al. (2020),
  restricted to the continuation: each continuation token is masked in its own copy of the input (one mask
  per copy) and its log-probability read at that position; the sum over the continuation's tokens is the
  score. A masked LM needs its pretraining head: a checkpoint without one (a sentence-embedding model such
  as all-MiniLM-L6-v2) gets a freshly initialized head and scores are then meaningless: a WARNING says so
  (logged and ``warnings.warn``), and :class:`ChoiceScores` carries ``head_initialized=True`` (a column of
  :meth:`ChoiceScores.to_frame`), as it carries ``stand_in`` for a random stand-in model.
- ``permutation`` (XLNet): the permutation LM scores each continuation token with the prompt and the earlier
  continuation tokens visible (``perm_mask``/``target_mapping``); :func:`permutation_lm_logprobs` is the
  dispatch point, and raises a clear error while no XLNet LM head is registered.

Inputs are length-sorted and batched; the model runs on its own device.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..auto import AutoConfig
from ..bridge import HookedHF
from ..mask_filling import initialized_head_keys
from ..registry import REGISTRY
from .data import ChoiceExample

logger = logging.getLogger(__name__)

# What every scorer takes: (context, continuation) pairs.
Requests = Sequence[tuple[str, str]]


@dataclass
class ChoiceScores:
    """Summed log-probabilities [n_examples][n_choices] and the continuations' character lengths.

    Attributes:
        head_initialized: the scoring model's LM head was not in its checkpoint (freshly initialized: the
            scores are meaningless); ``initialized_keys`` names its parameters.
        stand_in: the model is a random stand-in (``wb.zoo``): every weight is random.
        truncated: how many (prompt, continuation) pairs were longer than the model's context and lost
            tokens from the left of the prompt (a WARNING says so).
    """

    logprobs: list[list[float]]
    lengths: list[list[int]]
    labels: list[int]
    head_initialized: bool = False
    stand_in: bool = False
    initialized_keys: list[str] = field(default_factory=list)
    truncated: int = 0

    def metrics(self) -> dict[str, float]:
        correct = [int(np.argmax(s)) == y for s, y in zip(self.logprobs, self.labels)]
        normed = [
            int(np.argmax(np.array(s) / np.maximum(np.array(n), 1))) == y
            for s, n, y in zip(self.logprobs, self.lengths, self.labels)
        ]
        return {"accuracy": float(np.mean(correct)), "accuracy_norm": float(np.mean(normed))}

    def flags(self) -> dict:
        """The columns that say how far to trust the metrics: ``head_initialized``, ``stand_in`` and
        ``truncated`` (a count)."""
        return {
            "head_initialized": self.head_initialized,
            "stand_in": self.stand_in,
            "truncated": self.truncated,
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per metric: metric, value, n, head_initialized, stand_in, truncated."""
        return pd.DataFrame(
            [
                {"metric": k, "value": v, "n": len(self.labels), **self.flags()}
                for k, v in self.metrics().items()
            ]
        )


def warn_initialized_head(name, keys: Sequence[str]) -> None:
    """A visible WARNING (logged and ``warnings.warn``) that ``name``'s LM head is freshly initialized."""
    message = (
        f"{name} has no trained LM head (newly initialized: {list(keys)[:5]}"
        f"{' ...' if len(keys) > 5 else ''}); its zero-shot scores are meaningless"
    )
    logger.warning(message)
    warnings.warn(message, UserWarning, stacklevel=3)


def scorer_kind(model) -> str:
    """``"causal"``, ``"masked"`` or ``"permutation"``: how the architecture's record says it scores
    (``zero_shot``; XLM's by its config's ``causal``), for a model of the class that scores that way; a bridged
    Hugging Face model (``wb.from_hf``) by its head's class."""
    if isinstance(model, HookedHF):
        kind = _bridged_kind(model)
        if kind is not None:
            return kind
    record = REGISTRY.get(model.config.model_type)
    kind, task = record.zero_shot_scoring(model.config) if record and record.zero_shot_kind else (None, None)
    cls = type(model)
    # The permutation scorer says itself what it needs of the class (perm_mask, target_mapping).
    if kind == "permutation" or (kind is not None and cls is record.model_class(task)):
        return kind
    raise ValueError(
        f"zero-shot scoring needs a language-modelling head; {cls.__name__} (model_type "
        f"{model.config.model_type!r}) has none. Load it with load_scoring_model(), or "
        f"wb.load(..., task='causal_lm' / 'masked_lm')"
    )


def _bridged_kind(model: HookedHF) -> str | None:
    """A bridged model scores as its Hugging Face class's head does: causal LM (``*ForCausalLM``,
    ``*LMHeadModel``) or masked LM (``*ForMaskedLM``); None for other heads."""
    name = type(model.hf).__name__
    if name.endswith(("ForCausalLM", "LMHeadModel")):
        return "causal"
    return "masked" if name.endswith("ForMaskedLM") else None


def load_scoring_model(name_or_path, device=None):
    """The checkpoint with the language-modelling head its architecture scores with (its record's
    ``zero_shot``: causal, masked or permutation LM; XLM's by the config's ``causal``)."""
    config = AutoConfig.from_pretrained(name_or_path)
    record = REGISTRY[config.model_type]  # AutoConfig refuses a model_type that is not registered
    if record.zero_shot_kind is None:
        raise ValueError(
            f"zero-shot scoring is not available for model_type {config.model_type!r} ({name_or_path}): "
            f"it has neither a causal nor a masked LM head here"
        )
    _, task = record.zero_shot_scoring(config)
    model = record.model_class(task).from_pretrained(name_or_path, config=config, device=device)
    head = initialized_head_keys(model)
    if head:
        warn_initialized_head(name_or_path, head)
    return model


def score_choices(
    model,
    examples: Sequence[ChoiceExample],
    batch_size: int = 16,
    progress: bool = True,
) -> ChoiceScores:
    """Score every (prompt, continuation) of ``examples`` with the scorer of the model's kind.

    A model whose LM head is freshly initialized is scored anyway, with a WARNING, and the result says so
    (``head_initialized``); so does ``stand_in`` for a random stand-in.
    """
    requests = [(ex.prompt, cont) for ex in examples for cont in ex.continuations]
    kind = scorer_kind(model)
    head = initialized_head_keys(model)
    if head:
        warn_initialized_head(model.config.name_or_path or type(model).__name__, head)
    scorer = {
        "causal": causal_lm_logprobs,
        "masked": masked_lm_logprobs,
        "permutation": permutation_lm_logprobs,
    }[kind]
    stats: dict = {}
    flat = scorer(model, requests, batch_size=batch_size, progress=progress, stats=stats)
    logprobs, lengths, i = [], [], 0
    for ex in examples:
        k = len(ex.continuations)
        logprobs.append(flat[i : i + k])
        lengths.append([len(c) for c in ex.continuations])
        i += k
    return ChoiceScores(
        logprobs,
        lengths,
        [ex.label for ex in examples],
        head_initialized=bool(head),
        stand_in=getattr(model, "stand_in_notice", None) is not None,
        initialized_keys=head,
        truncated=stats.get("truncated", 0),
    )


def _move_trailing_space(context: str, continuation: str) -> tuple[str, str]:
    stripped = context.rstrip()
    return stripped, context[len(stripped) :] + continuation


def _max_length(model) -> int:
    limits = [
        getattr(model.config, "max_position_embeddings", None),
        getattr(model.tokenizer, "model_max_length", None),
    ]
    return int(min(limit for limit in limits if limit))


def _batches(lengths: Sequence[int], batch_size: int):
    """Index batches over items sorted by length, longest first (padding is small; memory trouble shows at once)."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def _pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def _pad_id(tokenizer) -> int:
    token = tokenizer.special_tokens.get("pad_token") or tokenizer.special_tokens.get("eos_token")
    return tokenizer.token_to_id(token) if token else 0


def _note_truncated(stats: dict | None, count: int, total: int, max_length: int) -> None:
    """A WARNING (logged and ``warnings.warn``) when ``count`` of ``total`` requests lost context tokens."""
    if stats is not None:
        stats["truncated"] = count
    if count:
        message = (
            f"zero-shot: {count} of {total} (prompt, continuation) pairs are longer than the model's context "
            f"({max_length} tokens) and lost tokens from the left of the prompt"
        )
        logger.warning(message)
        warnings.warn(message, UserWarning, stacklevel=3)


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="seq")


def causal_lm_logprobs(
    model, requests: Requests, batch_size: int = 16, progress: bool = True, stats: dict | None = None
) -> list[float]:
    """Summed log p(continuation | context) for each (context, continuation), under a causal LM.

    Sequences longer than the model's context lose tokens from the left of the context, with a WARNING
    (and ``stats["truncated"]``, their count); a continuation that alone does not fit is an error.
    """
    tokenizer = _tokenizer_of(model)
    max_length = _max_length(model)
    prefix = tokenizer.special_tokens.get("bos_token") or tokenizer.special_tokens.get("eos_token")
    sequences, n_targets, truncated = [], [], 0
    for context, continuation in requests:
        context, continuation = _move_trailing_space(context, continuation)
        whole = tokenizer.encode(context + continuation, add_special_tokens=False)
        context_ids = tokenizer.encode(context, add_special_tokens=False) if context else []
        if not context_ids:  # nothing to condition the first token on: start from the BOS/EOS token
            if prefix is None:
                raise ValueError("an empty context needs a bos_token or eos_token to condition on")
            context_ids = [tokenizer.token_to_id(prefix)]
            whole = context_ids + whole
        n_target = len(whole) - len(context_ids)
        if n_target < 1:
            raise ValueError(f"the continuation {continuation!r} has no tokens")
        if n_target > max_length:
            raise ValueError(
                f"the continuation {continuation!r:.60} alone is longer than the model's context ({max_length})"
            )
        truncated += len(whole) > max_length + 1
        sequences.append(whole[-(max_length + 1) :])
        n_targets.append(n_target)
    _note_truncated(stats, truncated, len(requests), max_length)
    totals = [0.0] * len(requests)
    pad_id = _pad_id(tokenizer)
    bar = _progress(len(requests), progress, "zero-shot (causal LM)")
    with torch.inference_mode():
        for batch in _batches([len(s) for s in sequences], batch_size):
            ids, mask = _pad([sequences[i][:-1] for i in batch], pad_id)
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits
            logprobs = (
                logits.float().log_softmax(-1).cpu()
            )  # [batch, pos, vocab]; position p predicts token p + 1
            for row, i in enumerate(batch):
                sequence, n = sequences[i], n_targets[i]
                positions = torch.arange(len(sequence) - n - 1, len(sequence) - 1)
                targets = torch.tensor(sequence[-n:])
                totals[i] = float(logprobs[row, positions, targets].sum())
            bar.update(len(batch))
    bar.close()
    return totals


def _tokenizer_of(model):
    if model.tokenizer is None:
        raise ValueError(f"{type(model).__name__} has no tokenizer; zero-shot scoring needs one")
    return model.tokenizer


def _special_wrapping(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a single text ([CLS] ... [SEP] for BERT)."""
    inner = tokenizer.encode("x", add_special_tokens=False)
    outer = tokenizer.encode("x", add_special_tokens=True)
    for start in range(len(outer) - len(inner) + 1):
        if outer[start : start + len(inner)] == inner:
            return outer[:start], outer[start + len(inner) :]
    raise ValueError("cannot find where this tokenizer's template puts the text")


def masked_lm_logprobs(
    model, requests: Requests, batch_size: int = 16, progress: bool = True, stats: dict | None = None
) -> list[float]:
    """Pseudo-log-likelihood (Salazar et al. 2020) of each continuation given its context, under a masked LM.

    The text ``context + continuation`` is tokenized once; every token whose characters lie in the
    continuation is masked in its own copy of the input (one mask per copy), and the log-probability of the
    original token at that position is summed. Texts longer than the model's context lose tokens from the
    left of the context, with a WARNING (and ``stats["truncated"]``, their count).
    """
    tokenizer = _tokenizer_of(model)
    mask_token = tokenizer.special_tokens.get("mask_token")
    if mask_token is None:
        raise ValueError("pseudo-log-likelihood needs a tokenizer with a mask token")
    mask_id = tokenizer.token_to_id(mask_token)
    before, after = _special_wrapping(tokenizer)
    room = _max_length(model) - len(before) - len(after)
    copies: list[
        tuple[int, list[int], int, int]
    ] = []  # (request, ids with one mask, masked position, its token)
    truncated = 0
    for index, (context, continuation) in enumerate(requests):
        context, continuation = _move_trailing_space(context, continuation)
        encoding = tokenizer.backend.encode(context + continuation, add_special_tokens=False)
        ids = list(encoding.ids)
        starts = [start for start, end in encoding.offsets]
        first_target = next((i for i, start in enumerate(starts) if start >= len(context)), len(ids))
        if first_target == len(ids):
            raise ValueError(f"the continuation {continuation!r} has no tokens")
        cut = max(0, len(ids) - room)
        truncated += cut > 0
        if cut > first_target:
            raise ValueError(
                f"the continuation {continuation!r:.60} alone is longer than the model's context"
            )
        ids = before + ids[cut:] + after
        for position in range(len(before) + first_target - cut, len(ids) - len(after)):
            masked = list(ids)
            masked[position] = mask_id
            copies.append((index, masked, position, ids[position]))
    _note_truncated(stats, truncated, len(requests), _max_length(model))
    totals = [0.0] * len(requests)
    pad_id = _pad_id(tokenizer)
    bar = _progress(len(copies), progress, "zero-shot (pseudo-log-likelihood)")
    with torch.inference_mode():
        for batch in _batches([len(c[1]) for c in copies], batch_size):
            ids, mask = _pad([copies[i][1] for i in batch], pad_id)
            logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits
            rows = torch.arange(len(batch))
            positions = torch.tensor([copies[i][2] for i in batch])
            logprobs = (
                logits[rows.to(logits.device), positions.to(logits.device)].float().log_softmax(-1).cpu()
            )
            for row, i in enumerate(batch):
                index, _, _, target = copies[i]
                totals[index] += float(logprobs[row, target])
            bar.update(len(batch))
    bar.close()
    return totals


def permutation_lm_logprobs(
    model, requests: Requests, batch_size: int = 16, progress: bool = True, stats: dict | None = None
) -> list[float]:
    """XLNet's permutation-LM score of each continuation: the sum over its tokens of log p(token | context,
    the continuation's earlier tokens), all targets predicted in one forward through the query stream.

    This is the scorer of the architectures whose record says ``zero_shot="permutation"`` (XLNet); it needs an
    LM head whose forward takes ``perm_mask`` and ``target_mapping`` (as Hugging Face's ``XLNetLMHeadModel``
    does).
    """
    _check_permutation_lm(model)
    tokenizer = _tokenizer_of(model)
    totals = [0.0] * len(requests)
    bar = _progress(len(requests), progress, "zero-shot (permutation LM)")
    for index, (context, continuation) in enumerate(requests):
        context, continuation = _move_trailing_space(context, continuation)
        inner = tokenizer.encode(context + continuation, add_special_tokens=False)
        context_ids = tokenizer.encode(context, add_special_tokens=False) if context else []
        n_target = len(inner) - len(context_ids)
        if n_target < 1:
            raise ValueError(f"the continuation {continuation!r} has no tokens")
        # XLNet reads a text followed by <sep> <cls>; the targets are the continuation's tokens.
        whole = tokenizer.encode(context + continuation, add_special_tokens=True)
        offset = next(i for i in range(len(whole)) if whole[i : i + len(inner)] == inner)
        totals[index] = permutation_lm_score_ids(
            model, whole, list(range(offset + len(context_ids), offset + len(inner)))
        )
        bar.update(1)
    bar.close()
    return totals


def _check_permutation_lm(model) -> None:
    # A task-head mixin's forward hands the body's inputs on to ``encode`` (**inputs): ask both what they take.
    parameters = set()
    for name in ("forward", "encode"):
        method = getattr(type(model), name, None)
        parameters |= set(inspect.signature(method).parameters) if method is not None else set()
    if "perm_mask" not in parameters or "target_mapping" not in parameters:
        raise NotImplementedError(
            f"zero-shot permutation-LM scoring is not available for model_type {model.config.model_type!r}: "
            f"{type(model).__name__}.forward takes no perm_mask/target_mapping (an XLNet LM head is needed)"
        )


def permutation_lm_score_ids(model, ids: Sequence[int], targets: Sequence[int]) -> float:
    """sum_t log p(ids[t] | every non-target token, the targets before t) for the target positions ``targets``
    (ascending), in one forward: ``perm_mask`` hides each target from the context and from earlier targets,
    ``target_mapping`` reads every target from the query stream."""
    _check_permutation_lm(model)
    length, n = len(ids), len(targets)
    perm_mask = torch.zeros(1, length, length)  # 1: token i may not see token j
    for j, position in enumerate(targets):
        perm_mask[0, :, position] = 1.0
        perm_mask[0, list(targets[j + 1 :]), position] = 0.0  # later targets see this one
    mapping = torch.zeros(1, n, length)
    mapping[0, torch.arange(n), torch.tensor(list(targets))] = 1.0
    device = model.device
    with torch.inference_mode():
        logits = model(
            input_ids=torch.tensor([list(ids)], device=device),
            perm_mask=perm_mask.to(device),
            target_mapping=mapping.to(device),
        ).logits  # [1, n, vocab]
    logprobs = logits[0].float().log_softmax(-1).cpu()
    return float(logprobs[torch.arange(n), torch.tensor([ids[p] for p in targets])].sum())
