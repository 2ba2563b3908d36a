"""Tiny random models of every registered architecture, for the tests (a helper module, not a test module).

Driven by the registry (:data:`workbench.registry.REGISTRY`): an architecture's config class says which of
the canonical sizes (``d_model``, ``n_layers``, ``n_heads``, ``d_mlp``, ``vocab_size``, ``max_positions``,
...) it has a field for and under which Hugging Face name (its ``ATTRIBUTE_MAP``), and its class for a task
is named as Hugging Face's. So a new architecture gets tiny models here without editing this file, unless it
needs a field of its own (the ``*_EXTRA`` tables).

- :func:`save_tiny_hf` saves a Hugging Face checkpoint (``transformers``) for the parity tests.
- :func:`tiny_config` and :func:`tiny_model` build our config and model in memory for the analysis tests.

Sizes and fields are given by canonical name or by the architecture's own (Hugging Face) field name:

>>> save_tiny_hf(folder, "roberta", "masked_lm", d_model=48, n_heads=6, hidden_act="gelu_new")  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

import workbench as wb
from workbench.config import CANONICAL_NAMES, ModelConfig
from workbench.registry import REGISTRY

# Checkpoints saved by Hugging Face (parity tests): small, and unusual where it catches mix-ups (d_mlp 37 is
# no multiple of anything; vocab 99 differs from every other size).
CHECKPOINT_SIZES = dict(vocab_size=99, d_model=32, n_layers=2, n_heads=4, d_mlp=37, max_positions=64)
CHECKPOINT_EXTRA: dict[str, dict[str, Any]] = {
    "roberta": dict(pad_token_id=1, bos_token_id=0, eos_token_id=2),  # the released checkpoints' ids
    "xlnet": dict(mem_len=6, pad_token_id=5),
    "gpt2": dict(bos_token_id=98, eos_token_id=98),
    "openai-gpt": dict(bos_token_id=98, eos_token_id=98),
    "phi3": dict(pad_token_id=0, eos_token_id=2),  # Phi-3's defaults (32000) are outside a tiny vocabulary
}

# Models built in memory (interventions, attribution, views, input checks): smaller still.
# Where a config stores d_head and n_kv_heads as fields of their own (Gemma's head_dim defaults to 256,
# Mistral's key/value heads to 8), they follow the other sizes: plain multi-head attention, d_model / n_heads.
TINY_SIZES = dict(
    vocab_size=60, d_model=16, n_layers=2, n_heads=4, d_mlp=32, max_positions=32, d_head=4, n_kv_heads=4
)
TINY_EXTRA: dict[str, dict[str, Any]] = {
    "roberta": dict(max_positions=40, pad_token_id=1),  # positions start after the padding index
    # one softmax cluster (no adaptive cutoffs), embeddings as wide as the model, a short memory
    "transfo-xl": dict(d_embed=16, d_head=4, cutoffs=[], div_val=1, mem_len=8),
    "phi3": dict(pad_token_id=0, eos_token_id=2),
}

# The architectures by model_type, as the architecture-parametrized tests list them.
ARCHITECTURES = sorted(REGISTRY.model_types())


def architectures_with(task: str) -> list[str]:
    """The model_types that have a class for ``task`` (``"sequence_classification"``), sorted."""
    return sorted(REGISTRY.classes(task))


def hf_fields(model_type: str, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with canonical names renamed to ``model_type``'s Hugging Face fields; other keys as given.

    A canonical name that is no field of the architecture (GPT-2's ``d_mlp`` is ``4 * d_model``) is an
    error, as is giving one field under two names."""
    config_class = REGISTRY[model_type].config_class
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = config_class.ATTRIBUTE_MAP.get(key, key)
        if key in CANONICAL_NAMES and not has_field(model_type, key):
            raise ValueError(f"{model_type} has no field for {key}: it follows from the other sizes")
        if name in out:
            raise ValueError(f"{key}={value!r} gives {model_type}'s {name} a second time")
        out[name] = value
    return out


def has_field(model_type: str, canonical_name: str) -> bool:
    """Whether ``model_type``'s config stores ``canonical_name`` (rather than deriving it or lacking it)."""
    config_class = REGISTRY[model_type].config_class
    name = config_class.ATTRIBUTE_MAP.get(canonical_name, canonical_name)
    return name in {f.name for f in dataclasses.fields(config_class)}


def default_fields(model_type: str, sizes: dict[str, int], extra: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The Hugging Face fields of ``model_type`` for ``sizes`` (those it has a field for) and its ``extra``."""
    own_sizes = {name: value for name, value in sizes.items() if has_field(model_type, name)}
    return {**hf_fields(model_type, own_sizes), **hf_fields(model_type, extra.get(model_type, {}))}


def task_of(model_type: str, class_name: str) -> str:
    """The task whose class is named ``class_name`` (``"RobertaForMaskedLM"`` -> ``"masked_lm"``)."""
    architecture = REGISTRY[model_type]
    for task in architecture.tasks:
        if architecture.model_class(task).__name__ == class_name:
            return task
    raise ValueError(f"{model_type} has no class {class_name!r}; its tasks are {architecture.tasks}")


def perturb_parameters(model: torch.nn.Module, scale: float) -> torch.nn.Module:
    """Add ``scale`` * N(0, 1) noise to every parameter, from the global random generator.

    Fresh models have LayerNorms at 1/0 and biases at 0: moving every parameter makes a mix-up of any two
    tensors (or a forgotten bias) show in the outputs."""
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * scale)
    return model


# Checkpoints saved by Hugging Face -----------------------------------------------------------------------


def save_tiny_hf(folder, model_type: str, task: str = "base", seed: int = 0, perturb: float = 0.1,
                 **sizes_and_fields):
    """Save a random Hugging Face model of ``model_type`` with the head of ``task`` to ``folder``; return it.

    The ``transformers`` class is the one named as ours (``REGISTRY[model_type].model_class(task)``), with
    eager attention (so attentions are returned), :data:`CHECKPOINT_SIZES` and the architecture's
    :data:`CHECKPOINT_EXTRA` unless ``sizes_and_fields`` says otherwise, initialized under ``seed`` and every
    parameter perturbed by ``perturb`` * N(0, 1). The model is returned in eval mode.
    """
    import transformers

    model_class = REGISTRY[model_type].model_class(task)
    if model_class is None:
        raise ValueError(f"{model_type} has no {task} class; its tasks are {REGISTRY[model_type].tasks}")
    hf_class = getattr(transformers, model_class.__name__, None)
    if hf_class is None:
        raise ValueError(f"transformers {transformers.__version__} has no {model_class.__name__} to save")
    fields = {**default_fields(model_type, CHECKPOINT_SIZES, CHECKPOINT_EXTRA), **hf_fields(model_type, sizes_and_fields)}
    config = hf_class.config_class(**fields, attn_implementation="eager")
    torch.manual_seed(seed)
    model = perturb_parameters(hf_class(config).eval(), perturb)
    model.save_pretrained(folder)
    return model


# Models built in memory ------------------------------------------------------------------------------------


def tiny_config(model_type: str, **sizes_and_fields) -> ModelConfig:
    """Our config of ``model_type`` with :data:`TINY_SIZES` (and :data:`TINY_EXTRA`), ``sizes_and_fields`` winning
    (``num_labels=3``, ``vocab_size=300``, ``causal=True``, ...)."""
    fields = {**default_fields(model_type, TINY_SIZES, TINY_EXTRA), **hf_fields(model_type, sizes_and_fields)}
    return wb.AutoConfig.for_model(model_type, **fields)


def tiny_model(model_type: str, task: str = "base", seed: int = 0, perturb: float = 0.0, **sizes_and_fields):
    """Our ``model_type`` model with the head of ``task`` on :func:`tiny_config`, initialized under ``seed``
    (the global random state is left as it was) and every parameter moved by ``perturb`` * N(0, 1)."""
    model_class = REGISTRY[model_type].model_class(task)
    config = tiny_config(model_type, **sizes_and_fields)
    with torch.random.fork_rng():  # the same model whatever ran before
        torch.manual_seed(seed)
        model = model_class.from_config(config)
        perturb_parameters(model, perturb)
    return model


def tiny_classifier(model_type: str, seed: int = 0):
    """A two-label sequence classifier whose random weights are sharpened (perturbed by 0.2) so that its
    inputs matter; the interventions tests patch it."""
    return tiny_model(model_type, "sequence_classification", seed=seed, perturb=0.2, num_labels=2)


def clean_and_corrupted(length: int = 7):
    """Two [1, length] token rows in the tiny vocabulary that differ at position 2 only."""
    generator = torch.Generator().manual_seed(1)
    clean = torch.randint(3, 60, (1, length), generator=generator)
    corrupted = clean.clone()
    corrupted[0, 2] = (clean[0, 2] + 7) % 57 + 3  # one token changed
    return clean, corrupted


def logit_margin(output) -> torch.Tensor:
    """[batch] the classifier's label-1 logit minus its label-0 logit: the metric the patching tests follow."""
    return output.logits[:, 1] - output.logits[:, 0]
