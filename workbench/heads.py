"""What the task heads of every architecture share: the math on top of the body, torch only.

The head mixins of :mod:`workbench.components.heads` call these functions, so that the losses and shapes are
the same everywhere and match Hugging Face's. ``fill_mask`` is in :mod:`workbench.mask_filling` (the analysis
layer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of logits[t] against labels[t] at every position: logits [batch, pos, n], labels
    [batch, pos] (-100 ignored). The loss of token classification and of masked language modelling."""
    labels = labels.reshape(-1).to(logits.device)  # a model split by a device_map ends on another device
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels, ignore_index=-100)


def next_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting labels[:, t + 1] from logits[:, t] (computed in float32), -100 labels
    ignored: causal language modelling, as Hugging Face shifts it. logits [batch, pos, vocab], labels
    [batch, pos]."""
    shifted_logits = logits[:, :-1].reshape(-1, logits.shape[-1])
    shifted_labels = labels[:, 1:].reshape(-1).to(logits.device)
    return F.cross_entropy(shifted_logits.float(), shifted_labels, ignore_index=-100)


def split_span_logits(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[batch, pos, 2] -> (start_logits [batch, pos], end_logits [batch, pos])."""
    start, end = logits.split(1, dim=-1)
    return start.squeeze(-1).contiguous(), end.squeeze(-1).contiguous()


def span_loss(
    start_logits: torch.Tensor, end_logits: torch.Tensor, start_positions: torch.Tensor, end_positions: torch.Tensor
) -> torch.Tensor:
    """Mean of the start and end cross-entropies; positions outside the input are ignored (as in Hugging Face)."""
    outside = start_logits.shape[1]
    start_positions = start_positions.reshape(-1).clamp(0, outside).to(start_logits.device)
    end_positions = end_positions.reshape(-1).clamp(0, outside).to(end_logits.device)
    start = F.cross_entropy(start_logits, start_positions, ignore_index=outside)
    end = F.cross_entropy(end_logits, end_positions, ignore_index=outside)
    return (start + end) / 2


def flatten_choices(tensor: torch.Tensor | None) -> torch.Tensor | None:
    """[batch, num_choices, pos, ...] -> [batch * num_choices, pos, ...] (None stays None)."""
    return None if tensor is None else tensor.reshape(-1, *tensor.shape[2:])


def multiple_choice_inputs(**inputs: torch.Tensor | None) -> tuple[int, dict[str, torch.Tensor | None]]:
    """(num_choices, the inputs flattened over choices). Every given input must be [batch, num_choices, ...]."""
    given = {name: value for name, value in inputs.items() if value is not None}
    if not given:
        raise ValueError("pass input_ids or inputs_embeds of shape [batch, num_choices, pos]")
    for name, value in given.items():
        if value.dim() < 3:
            raise ValueError(f"{name} must be [batch, num_choices, pos(, ...)], got shape {tuple(value.shape)}")
    num_choices = next(iter(given.values())).shape[1]
    return num_choices, {name: flatten_choices(value) for name, value in inputs.items()}


def problem_type_of(labels: torch.Tensor, num_labels: int, problem_type: str | None) -> str:
    """``problem_type`` when set, else Hugging Face's inference: one label is a regression, integer labels
    a single-label classification, float labels a multi-label one."""
    if problem_type is not None:
        return problem_type
    if num_labels == 1:
        return "regression"
    if labels.dtype in (torch.long, torch.int):
        return "single_label_classification"
    return "multi_label_classification"


def sequence_classification_loss(
    logits: torch.Tensor, labels: torch.Tensor, num_labels: int, problem_type: str | None = None
) -> torch.Tensor:
    """Hugging Face's loss of a sequence classifier, chosen by ``problem_type`` (see :func:`problem_type_of`).

    Args:
        logits: [batch, num_labels].
        labels: regression: [batch] or [batch, 1] values; single-label: [batch] class ids; multi-label:
            [batch, num_labels] 0/1 targets.

    Returns:
        the mean squared error, the cross-entropy or the binary cross-entropy with logits (a scalar).
    """
    problem = problem_type_of(labels, num_labels, problem_type)
    labels = labels.to(logits.device)  # a model split by a device_map ends on another device
    if problem == "regression":
        return F.mse_loss(logits.squeeze(-1), labels.squeeze(-1).to(logits.dtype))
    if problem == "single_label_classification":
        return F.cross_entropy(logits.view(-1, num_labels), labels.view(-1))
    if problem == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    raise ValueError(f"unknown problem_type {problem!r}; choose one of {PROBLEM_TYPES}")


def last_real_token(
    input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, pad_token_id: int | None,
    hidden: torch.Tensor,
) -> torch.Tensor:
    """Index [batch] of the rightmost real token of each row of ``hidden`` [batch, pos, d]: from the attention
    mask when given (its last ``pos`` columns, should it also cover a memory or cache), else from
    ``pad_token_id``; with neither, the last position (a batch of one, or rows of equal length)."""
    batch, length = hidden.shape[:2]
    positions = torch.arange(length, device=hidden.device)
    if attention_mask is not None:
        real = attention_mask[:, -length:].to(hidden.device).bool()
    elif input_ids is not None and pad_token_id is not None:
        real = input_ids.to(hidden.device) != pad_token_id
    else:
        if batch > 1 and pad_token_id is None:
            raise ValueError("a batch of several sequences needs an attention_mask (or config.pad_token_id)")
        return torch.full((batch,), length - 1, device=hidden.device)
    return (positions * real).argmax(-1)
