"""What the task heads of every encoder share: the math on top of the body, and ``fill_mask``.

Each architecture keeps its own head classes (their parameter names differ per checkpoint format); they
call these functions so that the losses and shapes are the same everywhere and match Hugging Face's.
"""

from __future__ import annotations

import logging
import warnings

import pandas as pd
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

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


def fill_mask(model, text: str | list[str], top_k: int = 5) -> pd.DataFrame:
    """The most likely tokens at each mask token of ``text``, from a masked-LM model.

    Args:
        model: a model with a masked-LM head and its tokenizer (``AutoModelForMaskedLM``).
        text: one text or a batch, with the tokenizer's mask token (``[MASK]`` for BERT, ``<mask>`` for RoBERTa).

    Returns:
        One row per (text, mask, rank): text_index, mask_position, rank, token, token_id, probability,
        ``filled``: the text with that mask replaced by the token, and two columns that say how far to trust
        the row: ``head_initialized`` (the masked-LM head was not in the checkpoint but freshly initialized,
        e.g. MiniLM, a sentence-embedding model: the predictions are meaningless, and a WARNING says so) and
        ``stand_in`` (a random stand-in model). Both are also in ``frame.attrs``.
    """
    tokenizer = model.tokenizer
    if tokenizer is None or not hasattr(model, "decode_residual"):
        raise TypeError(f"fill_mask needs a masked-LM model with its tokenizer, got {type(model).__name__}")
    mask_token = tokenizer.mask_token
    if mask_token is None:
        raise ValueError("this tokenizer has no mask token")
    texts = [text] if isinstance(text, str) else list(text)
    for item in texts:
        if mask_token not in item:
            raise ValueError(f"{item!r} has no {mask_token} to fill")
    head = _initialized_head_keys(model)
    stand_in = getattr(model, "stand_in_notice", None) is not None
    if head:
        message = (
            f"fill_mask: the masked-LM head of {model.config.name_or_path or type(model).__name__} is not in its "
            f"checkpoint and was freshly initialized ({head[:3]}{' ...' if len(head) > 3 else ''}): "
            f"its predictions are meaningless"
        )
        logger.warning(message)
        warnings.warn(message, UserWarning, stacklevel=2)
    encoding = model.tokenize(texts)
    with torch.no_grad():
        probabilities = model(**encoding).logits.float().softmax(-1)  # [batch, pos, vocab]
    mask_id = tokenizer.token_to_id(mask_token)
    rows = []
    for index, item in enumerate(texts):
        positions = (encoding["input_ids"][index] == mask_id).nonzero().flatten().tolist()
        for nth, position in enumerate(positions):
            top = torch.topk(probabilities[index, position], top_k)
            for rank, (p, token_id) in enumerate(zip(top.values.tolist(), top.indices.tolist()), start=1):
                token = tokenizer.decode([token_id]).strip()
                rows.append({
                    "text_index": index,
                    "mask_position": position,
                    "rank": rank,
                    "token": token,
                    "token_id": token_id,
                    "probability": p,
                    "filled": _replace_nth(item, mask_token, nth, token),
                    "head_initialized": bool(head),
                    "stand_in": stand_in,
                })
    frame = pd.DataFrame(rows)
    frame.attrs.update(head_initialized=bool(head), initialized_keys=head, stand_in=stand_in)
    return frame


def _initialized_head_keys(model) -> list[str]:
    """The head parameters the model's checkpoint did not provide (``model.loading_info.missing_keys``
    outside the body), [] when the head was loaded or the model was not loaded from a checkpoint."""
    info = getattr(model, "loading_info", None)
    missing = list(getattr(info, "missing_keys", []) or [])
    if not missing:
        return []
    body = model.body_parameter_names()
    return [key for key in missing if key not in body]


def _replace_nth(text: str, old: str, n: int, new: str) -> str:
    """``text`` with its n-th (0-based) occurrence of ``old`` replaced by ``new``."""
    parts = text.split(old)
    return old.join(parts[: n + 1]) + new + old.join(parts[n + 1 :])
