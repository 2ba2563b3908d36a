"""Fine-tuning the task heads: AdamW, warm-up then decay, clipping, mixed precision, accumulation, early stopping.

:func:`finetune` trains a head (``AutoModelForSequenceClassification`` for single sentences and pairs,
regression for STS-B; ``AutoModelForMultipleChoice``; ``AutoModelForQuestionAnswering`` for SQuAD) on
examples of a task and evaluates it with the task's official metrics:

- AdamW (no weight decay on biases and LayerNorm weights, as BERT's recipe), a learning-rate schedule from
  :data:`SCHEDULES` (linear warm-up then linear decay by default; cosine, constant, constant with warm-up,
  polynomial), gradient clipping, gradient accumulation;
- mixed precision on CUDA (bf16 autocast where the GPU supports it, else fp16 autocast with a gradient
  scaler); full precision on the CPU;
- early stopping on the dev metric (evaluated after every epoch; the best epoch's weights are kept);
- fixed seeds (Python, numpy, torch) for the head's initialization, dropout and the batch order.

SQuAD: contexts longer than ``max_length`` are split into windows that overlap by ``doc_stride`` tokens;
answers are predicted with the official post-processing (the ``n_best`` start and end logits of every
window, spans of at most ``max_answer_length`` tokens inside the context, mapped back to the text through
the tokenizer's offsets) and, for SQuAD 2.0, no answer when the null score (start and end at [CLS]) beats
the best span by more than ``null_threshold``.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from . import metrics as M
from .data import ChoiceExample, SpanExample, TaskSpec, TextExample

logger = logging.getLogger(__name__)


@dataclass
class FinetuneConfig:
    """Hyper-parameters (defaults: BERT's GLUE recipe, 3 epochs)."""

    learning_rate: float = 2e-5  #: AdamW's learning rate (the schedule's peak).
    weight_decay: float = 0.01  #: AdamW's weight decay.
    epochs: int = 3  #: passes over the training set.
    batch_size: int = 32  #: training examples per batch.
    #: optimizer step every this many batches (effective batch = batch_size × this).
    gradient_accumulation: int = 1
    schedule: str = "linear"  #: the learning-rate schedule, one of :data:`SCHEDULES`.
    warmup_ratio: float = 0.1  #: share of the optimizer steps spent warming up.
    max_grad_norm: float | None = 1.0  #: gradient clipping (None: no clipping).
    #: ``"auto"`` (bf16 on CUDA if supported, else fp16; none on CPU), ``"bf16"``, ``"fp16"``, ``"no"``.
    mixed_precision: str = "auto"
    #: stop after this many epochs without a better dev metric (None: train every epoch).
    patience: int | None = None
    seed: int = 42  #: seeds Python, numpy and torch.
    max_length: int = 128  #: tokens per input (truncation).
    doc_stride: int = 128  #: SQuAD: context tokens that consecutive windows share.
    max_answer_length: int = 30  #: SQuAD: the longest answer span, in tokens.
    n_best: int = 20  #: SQuAD: start and end logits considered per window.
    null_threshold: float = 0.0  #: SQuAD 2.0: no answer when the null score beats the best span by more.
    eval_batch_size: int = 64  #: examples per batch when evaluating.


def _linear(step, warmup, total):
    return step / max(1, warmup) if step < warmup else max(0.0, (total - step) / max(1, total - warmup))


def _cosine(step, warmup, total):
    if step < warmup:
        return step / max(1, warmup)
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


SCHEDULES = {
    "linear": _linear,
    "cosine": _cosine,
    "constant": lambda step, warmup, total: 1.0,
    "constant_with_warmup": lambda step, warmup, total: min(1.0, step / max(1, warmup)),
    "polynomial": lambda step, warmup, total: (
        _linear(step, warmup, total) ** 2 if step >= warmup else step / max(1, warmup)
    ),
}


def schedule_factor(name: str, step: int, warmup: int, total: int) -> float:
    """The learning-rate multiplier of schedule ``name`` at optimizer step ``step`` (0-based)."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    return SCHEDULES[name](step, warmup, total)


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# The task head of each task family (``TASK_REGISTRIES`` name).
HEAD_TASKS = {
    "classification": "sequence_classification",
    "regression": "sequence_classification",
    "multiple_choice": "multiple_choice",
    "span": "question_answering",
}


def build_head(model_or_name, spec: TaskSpec, device=None):
    """The task head of ``spec``'s family on the checkpoint's body (a fresh head unless the checkpoint has one).

    Args:
        model_or_name: a folder, an alias or a hub id; or a loaded model (any head, e.g. a random stand-in
            from ``wb.zoo``, which has no folder to reload by name): its body's weights, config and tokenizer
            go under a fresh head (a stand-in stays labelled one).
        device: where the head goes (default: a loaded model's own device, else the CPU).
    """
    from ..auto import (
        AutoModelForMultipleChoice,
        AutoModelForQuestionAnswering,
        AutoModelForSequenceClassification,
    )
    from ..model import HookedTransformer

    if spec.family not in HEAD_TASKS:
        raise ValueError(f"no head for the {spec.family!r} task {spec.name!r}")
    if isinstance(model_or_name, HookedTransformer):
        return _head_on_body(model_or_name, spec, device)
    name_or_path = model_or_name
    if spec.family in ("classification", "regression"):
        extra = {"problem_type": "regression"} if spec.family == "regression" else {}
        return AutoModelForSequenceClassification.from_pretrained(
            name_or_path, num_labels=spec.num_labels, device=device, **extra
        )
    if spec.family == "multiple_choice":
        return AutoModelForMultipleChoice.from_pretrained(name_or_path, device=device)
    return AutoModelForQuestionAnswering.from_pretrained(name_or_path, device=device)


def _head_on_body(source, spec: TaskSpec, device=None):
    """A fresh ``spec`` head on a copy of ``source``'s body weights (same config, same tokenizer)."""
    from workbench.auto import TASK_REGISTRIES
    from workbench.loading import LoadingInfo

    task = HEAD_TASKS[spec.family]
    model_type = source.config.model_type
    registry = TASK_REGISTRIES[task]
    if model_type not in registry:
        raise ValueError(f"{spec.name}: {model_type} has no {task} head (it exists for {sorted(registry)})")
    config = copy.deepcopy(source.config)
    if spec.family in ("classification", "regression"):
        config.num_labels = spec.num_labels
        config.problem_type = "regression" if spec.family == "regression" else None
    head = registry[model_type].from_config(config)
    body = head.body_parameter_names()
    state = {key: value for key, value in source.state_dict().items() if key in body}
    lacking = sorted(body - set(state))
    if lacking:
        raise ValueError(
            f"{type(source).__name__} does not have the body weights a {type(head).__name__} needs: "
            f"{lacking[:5]}{' ...' if len(lacking) > 5 else ''}"
        )
    head.load_state_dict(state, strict=False)
    head.loading_info = LoadingInfo(missing_keys=sorted(set(head.state_dict()) - body))
    head.tokenizer = source.tokenizer
    return head.to(device=device if device is not None else source.device).eval()


# Batches ------------------------------------------------------------------------------------------------------
def _length(tokenizer, example) -> int:
    """A cheap length key for length-sorted batching (characters)."""
    if isinstance(example, TextExample):
        return len(example.text) + len(example.text_pair or "")
    if isinstance(example, ChoiceExample):
        return len(example.context) + max(len(c) for c in example.choices)
    return len(example.question) + len(example.context)


def encode_padded(tokenizer, texts: Sequence[str], pairs: Sequence[str] | None, max_length: int) -> dict:
    """Model inputs for texts (and pairs), truncated to ``max_length`` and padded here on the tokenizer's
    ``padding_side`` (XLNet pads on the left: its heads read the last position), with the pad token, else
    the end-of-text token, else id 0 (GPT has neither). Padding is masked out by ``attention_mask``, so its
    id never changes a result."""
    from .probe import pad_token_id

    encodings = tokenizer(
        list(texts), None if pairs is None else list(pairs), truncation=True, max_length=max_length
    ).encodings
    width = max(len(e.ids) for e in encodings)
    ids = torch.full((len(encodings), width), pad_token_id(tokenizer), dtype=torch.long)
    types = torch.zeros_like(ids)
    mask = torch.zeros_like(ids)
    left = getattr(tokenizer, "padding_side", "right") == "left"
    for row, e in enumerate(encodings):
        cells = slice(width - len(e.ids), width) if left else slice(0, len(e.ids))
        ids[row, cells] = torch.tensor(e.ids)
        types[row, cells] = torch.tensor(e.type_ids)
        mask[row, cells] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in tokenizer.model_input_names:
        batch["token_type_ids"] = types
    return batch


def text_batch(tokenizer, examples: Sequence[TextExample], max_length: int, regression: bool) -> dict:
    pairs = [ex.text_pair for ex in examples]
    batch = encode_padded(
        tokenizer, [ex.text for ex in examples], None if pairs[0] is None else pairs, max_length
    )
    dtype = torch.float32 if regression else torch.long
    batch["labels"] = torch.tensor([ex.label for ex in examples], dtype=dtype)
    return batch


def choice_batch(tokenizer, examples: Sequence[ChoiceExample], max_length: int) -> dict:
    """Inputs [batch, num_choices, pos]: each choice read as the pair (context, choice)."""
    k = len(examples[0].choices)
    if any(len(ex.choices) != k for ex in examples):
        raise ValueError("a multiple-choice batch needs the same number of choices in every example")
    contexts = [ex.context for ex in examples for _ in ex.choices]
    choices = [choice for ex in examples for choice in ex.choices]
    encoding = encode_padded(tokenizer, contexts, choices, max_length)
    batch = {name: value.view(len(examples), k, -1) for name, value in encoding.items()}
    batch["labels"] = torch.tensor([ex.label for ex in examples], dtype=torch.long)
    return batch


def batches(
    examples: Sequence, batch_size: int, shuffle: bool, generator: np.random.Generator | None, tokenizer=None
) -> list[list[int]]:
    """Index batches. Evaluation: sorted by length (little padding); training: shuffled. Multiple-choice
    batches hold examples with the same number of choices."""
    groups: dict[int, list[int]] = {}
    for i, ex in enumerate(examples):
        groups.setdefault(len(ex.choices) if isinstance(ex, ChoiceExample) else 0, []).append(i)
    out = []
    for members in groups.values():
        members = np.array(members)
        if shuffle:
            members = members[generator.permutation(len(members))]
        else:
            members = members[np.argsort([-_length(tokenizer, examples[i]) for i in members], kind="stable")]
        out.extend(members[s : s + batch_size].tolist() for s in range(0, len(members), batch_size))
    if shuffle:
        out = [out[i] for i in generator.permutation(len(out))]
    return out


# SQuAD windows and post-processing -----------------------------------------------------------------------------
@dataclass
class SpanFeature:
    """One window of a SQuAD context: model inputs, the context tokens' character offsets (None elsewhere)."""

    example: int
    input_ids: list[int]
    token_type_ids: list[int]
    offsets: list[tuple[int, int] | None]
    start_position: int = 0
    end_position: int = 0


def squad_features(
    tokenizer,
    examples: Sequence[SpanExample],
    max_length: int = 384,
    doc_stride: int = 128,
) -> list[SpanFeature]:
    """Windows of (question, context) with ``doc_stride`` overlapping context tokens; a window that does not
    hold the (first) answer gets start = end = 0 ([CLS]), as in the BERT recipe."""
    backend = tokenizer.backend
    features = []
    specials = backend.num_special_tokens_to_add(True)
    for ex in examples:  # the tokenizers library panics (no Python error) when a window has no room
        room = max_length - specials - len(backend.encode(ex.question.lstrip(), add_special_tokens=False))
        if room <= doc_stride:
            raise ValueError(
                f"SQuAD example {ex.id!r}: its question leaves {room} of max_length={max_length} tokens for "
                f"the context, not more than doc_stride={doc_stride}; raise max_length or lower doc_stride"
            )
    backend.enable_truncation(max_length, stride=doc_stride, strategy="only_second")
    try:
        for index, ex in enumerate(examples):
            encoding = backend.encode(ex.question.lstrip(), ex.context)
            for window in [encoding, *encoding.overflowing]:
                sequence = window.sequence_ids
                offsets = [off if seq == 1 else None for off, seq in zip(window.offsets, sequence)]
                feature = SpanFeature(index, list(window.ids), list(window.type_ids), offsets)
                if ex.answers:
                    start_char = ex.answer_starts[0]
                    end_char = start_char + len(ex.answers[0])
                    inside = [i for i, off in enumerate(offsets) if off is not None]
                    if inside and offsets[inside[0]][0] <= start_char and offsets[inside[-1]][1] >= end_char:
                        feature.start_position = next(i for i in inside if offsets[i][1] > start_char)
                        feature.end_position = max(i for i in inside if offsets[i][0] < end_char)
                features.append(feature)
    finally:
        backend.no_truncation()
    return features


def squad_predictions(
    examples: Sequence[SpanExample],
    features: Sequence[SpanFeature],
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    n_best: int = 20,
    max_answer_length: int = 30,
    version_2: bool = False,
    null_threshold: float = 0.0,
) -> dict[str, str]:
    """The official post-processing: the best span over every window of an example; SQuAD 2.0 answers ""
    when ``null score - best span score > null_threshold`` (the null score: the minimum over windows of
    start[CLS] + end[CLS])."""
    by_example: dict[int, list[int]] = {}
    for f, feature in enumerate(features):
        by_example.setdefault(feature.example, []).append(f)
    predictions = {}
    for index, ex in enumerate(examples):
        best_text, best_score, null_score = "", -math.inf, math.inf
        for f in by_example.get(index, []):
            feature, starts, ends = features[f], start_logits[f], end_logits[f]
            n = len(feature.input_ids)
            null_score = min(null_score, float(starts[0] + ends[0]))
            top_starts = np.argsort(starts[:n])[::-1][:n_best]
            top_ends = np.argsort(ends[:n])[::-1][:n_best]
            for s in top_starts:
                for e in top_ends:
                    if feature.offsets[s] is None or feature.offsets[e] is None:
                        continue
                    if e < s or e - s + 1 > max_answer_length:
                        continue
                    score = float(starts[s] + ends[e])
                    if score > best_score:
                        best_score = score
                        best_text = ex.context[feature.offsets[s][0] : feature.offsets[e][1]]
        if version_2 and (best_score == -math.inf or null_score - best_score > null_threshold):
            best_text = ""
        predictions[ex.id] = best_text
    return predictions


def _span_tensors(features: Sequence[SpanFeature], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(f.input_ids) for f in features)
    ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    types = torch.zeros_like(ids)
    mask = torch.zeros_like(ids)
    for row, f in enumerate(features):
        ids[row, : len(f.input_ids)] = torch.tensor(f.input_ids)
        types[row, : len(f.input_ids)] = torch.tensor(f.token_type_ids)
        mask[row, : len(f.input_ids)] = 1
    return {
        "input_ids": ids,
        "token_type_ids": types,
        "attention_mask": mask,
        "start_positions": torch.tensor([f.start_position for f in features]),
        "end_positions": torch.tensor([f.end_position for f in features]),
    }


# Training and evaluation --------------------------------------------------------------------------------------
def _autocast(device: torch.device, mode: str):
    if device.type != "cuda" or mode == "no":
        return torch.autocast(device.type, enabled=False), None
    if mode == "auto":
        mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if mode not in ("bf16", "fp16"):
        raise ValueError(f"mixed_precision must be 'auto', 'bf16', 'fp16' or 'no', got {mode!r}")
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda") if mode == "fp16" else None
    return torch.autocast("cuda", dtype=dtype), scaler


class _Task:
    """Turns examples of one family into model batches, and model outputs into predictions."""

    def __init__(self, spec: TaskSpec, tokenizer, config: FinetuneConfig) -> None:
        self.spec, self.tokenizer, self.config = spec, tokenizer, config

    def prepare(self, examples):
        if self.spec.family == "span":
            return squad_features(self.tokenizer, examples, self.config.max_length, self.config.doc_stride)
        return list(examples)

    def batch(self, items, indices) -> dict[str, torch.Tensor]:
        chosen = [items[i] for i in indices]
        if self.spec.family == "span":
            token = self.tokenizer.special_tokens.get("pad_token") or self.tokenizer.special_tokens.get(
                "eos_token"
            )
            tensors = _span_tensors(chosen, self.tokenizer.token_to_id(token) if token else 0)
            if "token_type_ids" not in self.tokenizer.model_input_names:  # DistilBERT, RoBERTa: no segments
                tensors.pop("token_type_ids")
            return tensors
        if self.spec.family == "multiple_choice":
            return choice_batch(self.tokenizer, chosen, self.config.max_length)
        return text_batch(self.tokenizer, chosen, self.config.max_length, self.spec.family == "regression")


def _fit_to_model(config: FinetuneConfig, model) -> FinetuneConfig:
    """``config`` with max_length cut to what the model has positions for, with a WARNING (and doc_stride
    below half of it)."""
    limits = [
        config.max_length,
        getattr(model.config, "max_position_embeddings", None),
        getattr(model.tokenizer, "model_max_length", None),
    ]
    max_length = int(min(limit for limit in limits if limit))
    if max_length < config.max_length:
        logger.warning(
            "fine-tuning: max_length=%d is more than %s has positions for; inputs are truncated to %d tokens",
            config.max_length,
            model.config.name_or_path or type(model).__name__,
            max_length,
        )
    return dataclasses.replace(
        config, max_length=max_length, doc_stride=min(config.doc_stride, max_length // 2)
    )


def evaluate(
    model, spec: TaskSpec, examples: Sequence, config: FinetuneConfig | None = None, progress: bool = False
) -> dict[str, float]:
    """The official metrics of ``model`` (a task head) on ``examples``."""
    config = _fit_to_model(config or FinetuneConfig(), model)
    task = _Task(spec, model.tokenizer, config)
    items = task.prepare(examples)
    model.eval()
    outputs: dict[int, tuple] = {}
    autocast, _ = _autocast(model.device, config.mixed_precision)
    with torch.inference_mode():
        for indices in (
            batches(items, config.eval_batch_size, False, None, model.tokenizer)
            if spec.family != "span"
            else [
                list(range(s, min(s + config.eval_batch_size, len(items))))
                for s in range(0, len(items), config.eval_batch_size)
            ]
        ):
            inputs = {k: v.to(model.device) for k, v in task.batch(items, indices).items()}
            for key in ("labels", "start_positions", "end_positions"):
                inputs.pop(key, None)
            with autocast:
                out = model(**inputs)
            if spec.family == "span":
                for row, i in enumerate(indices):
                    outputs[i] = (
                        out.start_logits[row].float().cpu().numpy(),
                        out.end_logits[row].float().cpu().numpy(),
                    )
            else:
                logits = out.logits.float().cpu()
                for row, i in enumerate(indices):
                    outputs[i] = logits[row]
    if spec.family == "span":
        width = max(len(f.input_ids) for f in items)
        starts = np.full((len(items), width), -1e9)
        ends = np.full((len(items), width), -1e9)
        for i, (s, e) in outputs.items():
            starts[i, : len(s)], ends[i, : len(e)] = s, e
        predictions = squad_predictions(
            examples,
            items,
            starts,
            ends,
            config.n_best,
            config.max_answer_length,
            spec.name == "squad_v2",
            config.null_threshold,
        )
        return M.squad_scores(predictions, {ex.id: ex.answers for ex in examples})
    logits = torch.stack([outputs[i] for i in range(len(items))])
    labels = [ex.label for ex in examples]
    predicted = logits.squeeze(-1).numpy() if spec.family == "regression" else logits.argmax(-1).numpy()
    return M.compute(spec.metrics, predicted, labels)


@dataclass
class FinetuneResult:
    """Attributes: model (the best epoch's weights, eval mode), history (step, epoch, loss, learning_rate),
    epochs (epoch, dev metrics), metrics (the best epoch's dev metrics), seconds, examples_per_second,
    stand_in (the model is a random stand-in from ``wb.zoo``: its scores say nothing about the real model)."""

    model: object
    history: pd.DataFrame
    epochs: pd.DataFrame
    metrics: dict[str, float]
    seconds: float
    examples_per_second: float
    best_epoch: int = 0
    extra: dict = field(default_factory=dict)
    stand_in: bool = False


def finetune(
    model,
    spec: TaskSpec,
    train_examples: Sequence,
    dev_examples: Sequence | None = None,
    config: FinetuneConfig | None = None,
    progress: bool = True,
) -> FinetuneResult:
    """Train ``model`` (a task head from :func:`build_head`) on ``train_examples``; evaluate on ``dev_examples``
    after every epoch, keep the best epoch's weights (early stopping with ``config.patience``)."""
    from tqdm.auto import tqdm

    config = config or FinetuneConfig()
    if config.gradient_accumulation < 1 or config.batch_size < 1 or config.epochs < 1:
        raise ValueError("epochs, batch_size and gradient_accumulation must be >= 1")
    if model.tokenizer is None:
        raise ValueError(f"{type(model).__name__} has no tokenizer; fine-tuning needs one")
    config = _fit_to_model(config, model)
    set_seed(config.seed)
    task = _Task(spec, model.tokenizer, config)
    items = task.prepare(train_examples)
    generator = np.random.default_rng(config.seed)
    exempt = _no_decay_names(model)
    decay = [p for n, p in model.named_parameters() if p.requires_grad and n not in exempt]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and n in exempt]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
    )
    steps_per_epoch = math.ceil(math.ceil(len(items) / config.batch_size) / config.gradient_accumulation)
    total = steps_per_epoch * config.epochs
    warmup = int(config.warmup_ratio * total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: schedule_factor(config.schedule, step, warmup, total)
    )
    autocast, scaler = _autocast(model.device, config.mixed_precision)
    history, epochs = [], []
    best_state, best_value, best_epoch, since_best = None, -math.inf, 0, 0
    headline = "f1" if spec.family == "span" else spec.metrics[0]
    start_time, seen, step = time.perf_counter(), 0, 0
    bar = tqdm(total=total, disable=not progress, desc=f"fine-tune {spec.name}", unit="step")
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = batches(items, config.batch_size, True, generator, model.tokenizer)
        optimizer.zero_grad(set_to_none=True)
        for b, indices in enumerate(order, start=1):
            inputs = {k: v.to(model.device) for k, v in task.batch(items, indices).items()}
            with autocast:
                loss = model(**inputs).loss
            scaled = loss / config.gradient_accumulation
            (scaler.scale(scaled) if scaler else scaled).backward()
            seen += len(indices)
            if b % config.gradient_accumulation == 0 or b == len(order):
                if scaler:
                    scaler.unscale_(optimizer)
                if config.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                if scaler:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                history.append(
                    {
                        "step": step,
                        "epoch": epoch,
                        "loss": float(loss.detach()),
                        "learning_rate": scheduler.get_last_lr()[0],
                    }
                )
                scheduler.step()
                step += 1
                bar.update(1)
        if dev_examples is not None:
            values = evaluate(model, spec, dev_examples, config)
            epochs.append({"epoch": epoch, **values})
            if values[headline] > best_value:
                best_value, best_epoch, since_best = values[headline], epoch, 0
                best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
            else:
                since_best += 1
                if config.patience is not None and since_best >= config.patience:
                    break
    bar.close()
    seconds = time.perf_counter() - start_time
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    metrics = {k: v for k, v in epochs[best_epoch - 1].items() if k != "epoch"} if epochs else {}
    return FinetuneResult(
        model,
        pd.DataFrame(history),
        pd.DataFrame(epochs),
        metrics,
        seconds,
        seen / seconds if seconds else 0.0,
        best_epoch,
        stand_in=getattr(model, "stand_in_notice", None) is not None,
    )


def _no_decay_names(model) -> set[str]:
    """Biases and normalization weights: AdamW does not decay them (BERT's recipe)."""
    names = {name for name, _ in model.named_parameters() if name.endswith("bias")}
    for module_name, module in model.named_modules():
        if type(module).__name__.endswith("Norm"):
            names.update(
                f"{module_name}.{p}" if module_name else p for p, _ in module.named_parameters(recurse=False)
            )
    return names
