"""What the task heads of every encoder share: the math on top of the body.

Each architecture keeps its own head classes (their parameter names differ per checkpoint format); they
call these functions so that the losses and shapes are the same everywhere and match Hugging Face's.
``fill_mask`` is in :mod:`workbench.mask_filling` (the analysis layer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def token_classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over every token: logits [batch, pos, num_labels], labels [batch, pos] (-100 ignored)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


def split_span_logits(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[batch, pos, 2] -> (start_logits [batch, pos], end_logits [batch, pos])."""
    start, end = logits.split(1, dim=-1)
    return start.squeeze(-1).contiguous(), end.squeeze(-1).contiguous()


def span_loss(
    start_logits: torch.Tensor, end_logits: torch.Tensor, start_positions: torch.Tensor, end_positions: torch.Tensor
) -> torch.Tensor:
    """Mean of the start and end cross-entropies; positions outside the input are ignored (as in Hugging Face)."""
    outside = start_logits.shape[1]
    start_positions = start_positions.reshape(-1).clamp(0, outside)
    end_positions = end_positions.reshape(-1).clamp(0, outside)
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
