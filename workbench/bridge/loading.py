"""``wb.load`` of a checkpoint whose ``model_type`` has no native implementation: ``transformers`` loads it,
the bridge puts the hook points on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..auto import CONFIG_REGISTRY
from ..hub import resolve_checkpoint
from ..tokenizers import has_tokenizer_files
from .model import HookedHF, from_hf

# Our task names -> transformers' Auto classes.
AUTO_CLASSES = {
    "base": "AutoModel",
    "causal_lm": "AutoModelForCausalLM",
    "masked_lm": "AutoModelForMaskedLM",
    "sequence_classification": "AutoModelForSequenceClassification",
    "token_classification": "AutoModelForTokenClassification",
    "question_answering": "AutoModelForQuestionAnswering",
    "multiple_choice": "AutoModelForMultipleChoice",
    "seq2seq_lm": "AutoModelForSeq2SeqLM",
}

INSTALL_HINT = "pip install 'workbench[hf]'"


def import_transformers() -> Any:
    """transformers, or an ImportError saying which extra installs it."""
    try:
        import transformers
    except ImportError as error:
        raise ImportError(
            f"this checkpoint needs the bridge to Hugging Face models, which needs transformers: {INSTALL_HINT}"
        ) from error
    return transformers


def load_through_bridge(
    name_or_path: str | Path,
    model_type: str,
    task: str | None,
    device: torch.device | str | None,
    dtype: torch.dtype | str | None,
    revision: str | None = None,
    **config_overrides: Any,
) -> HookedHF:
    """Load the checkpoint with ``transformers`` (the class its ``config.architectures`` names, or the Auto class
    of ``task``) and bridge it. Checkpoint code is never run (``trust_remote_code`` stays off): a model_type
    transformers does not know is an error naming it."""
    transformers = import_transformers()
    folder = resolve_checkpoint(name_or_path, revision=revision)
    if model_type not in transformers.CONFIG_MAPPING:
        raise ValueError(
            f"{folder / 'config.json'}: model_type {model_type!r} is neither a native workbench architecture "
            f"(supported: {sorted(CONFIG_REGISTRY)}) nor one transformers {transformers.__version__} knows (the "
            f"bridge); the workbench does not run code shipped with a checkpoint"
        )
    model_class = _model_class(transformers, folder, task)
    dtype = torch.float32 if dtype is None else dtype
    hf_model = model_class.from_pretrained(folder, dtype=dtype, trust_remote_code=False, **config_overrides)
    if device is not None:
        hf_model = hf_model.to(device)
    return from_hf(hf_model, tokenizer=folder if has_tokenizer_files(folder) else None)


def _model_class(transformers: Any, folder: Path, task: str | None) -> Any:
    if task is not None:
        if task not in AUTO_CLASSES:
            raise ValueError(f"unknown task {task!r}; choose one of {sorted(AUTO_CLASSES)}")
        return getattr(transformers, AUTO_CLASSES[task])
    config = transformers.AutoConfig.from_pretrained(folder, trust_remote_code=False)
    for name in config.architectures or []:
        model_class = getattr(transformers, name, None)
        if model_class is not None:
            return model_class
    return transformers.AutoModel
