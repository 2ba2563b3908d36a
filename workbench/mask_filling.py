"""``fill_mask``: the most likely tokens at each mask token, from a masked-LM model.

``mlm.fill_mask("The capital of France is [MASK].")`` (a method of every model class that inherits
:class:`workbench.model.FillMaskMixin`) and ``wb.fill_mask(mlm, ...)`` are the same function.
"""

from __future__ import annotations

import logging
import warnings

import pandas as pd
import torch

from .model import FillMaskMixin

logger = logging.getLogger(__name__)


def fill_mask(model, text: str | list[str], top_k: int = 5) -> pd.DataFrame:
    """The most likely tokens at each mask token of ``text``, from a masked-LM model.

    Args:
        model: a model with a masked-LM head and its tokenizer (``AutoModelForMaskedLM``).
        text: one text or a batch, with the tokenizer's mask token (``[MASK]`` for BERT, ``<mask>`` for RoBERTa).

    Returns:
        One row per (text, mask, rank): text_index, mask_position, rank, token, token_id, probability,
        ``filled``: the text with that mask replaced by the token, and two columns that say how far to trust
        the row: ``head_initialized`` (the masked-LM head was not in the checkpoint but freshly initialized,
        e.g. MiniLM, a sentence-embedding model: the predictions are meaningless) and ``stand_in`` (a random
        stand-in model: so are they). Either one is also a WARNING (logged and a ``UserWarning`` pointing at
        the caller's line); ``frame.attrs`` holds both flags, ``initialized_keys`` and ``warning`` (that
        message, None for a trained head from a checkpoint).
    """
    return _fill_mask(model, text, top_k)


def _fill_mask(model, text: str | list[str], top_k: int) -> pd.DataFrame:
    """:func:`fill_mask`; called from it or from the method, so the warning's stacklevel 3 is the caller's line."""
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
    head = initialized_head_keys(model)
    stand_in = getattr(model, "stand_in_notice", None) is not None
    message = _untrusted_message(model, head, stand_in)
    if message:
        logger.warning(message)
        warnings.warn(message, UserWarning, stacklevel=3)
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
    frame.attrs.update(head_initialized=bool(head), initialized_keys=head, stand_in=stand_in, warning=message)
    return frame


def _untrusted_message(model, head: list[str], stand_in: bool) -> str | None:
    """Why the predictions mean nothing (a freshly initialized head, a random stand-in), or None."""
    name = model.config.name_or_path or type(model).__name__
    if head:
        return (
            f"fill_mask: the masked-LM head of {name} is not in its checkpoint and was freshly initialized "
            f"({head[:3]}{' ...' if len(head) > 3 else ''}): its predictions are meaningless; use a checkpoint "
            f"with a trained masked-LM head (e.g. bert-base-uncased)"
        )
    if stand_in:
        return f"fill_mask: {name} is a random stand-in ({model.stand_in_notice}): its predictions are random"
    return None


def initialized_head_keys(model) -> list[str]:
    """The head parameters the model's checkpoint did not provide (``model.loading_info.missing_keys``
    outside the body), [] when the head was loaded or the model was not loaded from a checkpoint.

    Shared with the zero-shot benchmark (``workbench.bench.zeroshot``), which warns on the same condition."""
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


def _fill_mask_method(self, text: str | list[str], top_k: int = 5) -> pd.DataFrame:
    """The top tokens for each mask token of ``text``, as a DataFrame; see
    :func:`workbench.mask_filling.fill_mask` (``wb.fill_mask``)."""
    return _fill_mask(self, text, top_k)


# ``mlm.fill_mask(...)`` for every model class that inherits FillMaskMixin. The model layers never import this
# module; see the note above GenerationMixin in workbench/model.py.
_fill_mask_method.__name__, _fill_mask_method.__qualname__ = "fill_mask", "FillMaskMixin.fill_mask"
FillMaskMixin.fill_mask = _fill_mask_method
