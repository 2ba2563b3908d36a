"""``wb.load``: one call from a name to a model ready to run on text, on the best device there is."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .auto import CONFIG_REGISTRY, TASK_REGISTRIES, AutoConfig
from .config import CONFIG_NAME, check_device_memory, read_config_json
from .hub import resolve_checkpoint
from .memory import MemoryEstimate
from .model import HookedTransformer, estimate_memory, loading_dtype

# Hugging Face class-name endings -> our task names, to load the head a checkpoint was saved with.
_ARCHITECTURE_SUFFIXES = {
    "ForMaskedLM": "masked_lm",
    "LMHeadModel": "causal_lm",
    "ForCausalLM": "causal_lm",
    "ForPreTraining": "masked_lm",
    "ForSequenceClassification": "sequence_classification",
    "ForTokenClassification": "token_classification",
    "ForQuestionAnswering": "question_answering",
    "ForQuestionAnsweringSimple": "question_answering",
    "ForMultipleChoice": "multiple_choice",
}


def default_device() -> torch.device:
    """CUDA when there is a GPU, else Apple's MPS when available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def load(
    name_or_path: str | Path = "minilm",
    task: str | None = None,
    device: torch.device | str | None = "auto",
    dtype: torch.dtype | None = None,
    device_map: str | Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> HookedTransformer:
    """Load a model with its tokenizer, in eval mode, ready for ``run_with_cache("some text")``.

    Args:
        name_or_path: a folder, an alias (``"minilm"``, the embedded default) or a Hugging Face hub id. A
            checkpoint whose ``model_type`` has no native implementation (OPT, BLOOM, T5, ...) is loaded by
            ``transformers`` and bridged (:func:`workbench.bridge.from_hf`; needs ``pip install 'workbench[hf]'``).
        task: ``"base"``, ``"masked_lm"``, ``"causal_lm"``, ``"sequence_classification"``,
            ``"token_classification"``, ``"question_answering"`` or ``"multiple_choice"``; None picks the head
            the checkpoint was saved with (``config.architectures``), else the bare model.
        device: ``"auto"`` (GPU when there is one), or any torch device.
        device_map: split the model over devices instead (``"auto"`` or ``{part: device}``; see
            :meth:`HookedTransformer.from_pretrained`), with ``device`` left at its default.
        **kwargs: config overrides and loading options (``num_labels=3``, ``ignore_mismatched_sizes``).

    >>> lm = load("minilm")  # doctest: +SKIP
    >>> out, cache = lm.run_with_cache("The keys to the cabinet are on the table.")  # doctest: +SKIP
    """
    config_overrides = {k: v for k, v in kwargs.items() if k != "ignore_mismatched_sizes"}
    if device_map is not None and device != "auto":
        raise ValueError(f"pass device={device!r} or device_map, not both")
    if device == "auto":
        device = None if device_map is not None else default_device()
    model_type = _model_type_of(name_or_path)
    if model_type is not None and model_type not in CONFIG_REGISTRY:
        # No native implementation: transformers loads it and the bridge adds the hook points.
        from .bridge.loading import load_through_bridge

        if device_map is not None:
            raise ValueError(f"device_map is for native architectures; {model_type!r} is loaded through the bridge")
        return load_through_bridge(name_or_path, model_type, task, device, dtype, **config_overrides)
    config = AutoConfig.from_pretrained(name_or_path, **config_overrides)
    task = task or _task_of(config.architectures)
    if task not in TASK_REGISTRIES:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASK_REGISTRIES)}")
    registry = TASK_REGISTRIES[task]
    if config.model_type not in registry:
        raise ValueError(
            f"{name_or_path}: no {task} model for model_type {config.model_type!r}; "
            f"{task} exists for {sorted(registry)}"
        )
    check_device_memory(config, device)  # a model too large for the GPU fails here, before it is built
    return registry[config.model_type].from_pretrained(
        name_or_path, config=config, device=device, dtype=dtype, device_map=device_map,
        ignore_mismatched_sizes=kwargs.get("ignore_mismatched_sizes", False),
    )


def memory_estimate(
    name_or_path: str | Path,
    batch: int = 1,
    seq: int = 2048,
    dtype: torch.dtype | str | None = None,
    revision: str | None = None,
) -> MemoryEstimate:
    """What a checkpoint needs before it is loaded: its weights in ``dtype`` (as ``from_pretrained`` reads it:
    None float32, ``"auto"`` the checkpoint's, or a dtype), counted from the safetensors headers without
    reading a tensor, plus the key/value cache of ``batch`` sequences of ``seq`` positions.

    >>> print(memory_estimate("meta-llama/Llama-3.2-1B", dtype="auto"))  # doctest: +SKIP
    1.24e+09 parameters: 2.3 GiB of weights in bfloat16 + 0.0625 GiB of key/value cache (1 x 2048 positions) = ...
    """
    folder = resolve_checkpoint(name_or_path, revision=revision)
    config = AutoConfig.from_pretrained(folder)
    return estimate_memory(folder, config, loading_dtype(dtype, config), batch, seq)


def _model_type_of(name_or_path: str | Path) -> str | None:
    """The ``model_type`` in the checkpoint's config.json, or None when it has none (the native path then
    reports what is wrong)."""
    folder = resolve_checkpoint(name_or_path)
    try:
        model_type = read_config_json(folder / CONFIG_NAME).get("model_type")
    except (OSError, ValueError):
        return None
    return model_type if isinstance(model_type, str) else None


def _task_of(architectures: list[str] | None) -> str:
    for architecture in architectures or []:
        for suffix, task in _ARCHITECTURE_SUFFIXES.items():
            if architecture.endswith(suffix):
                return task
    return "base"
