"""Auto classes: pick the architecture from ``config.json``'s ``model_type``.

The tables (``MODEL_REGISTRY``, ``CAUSAL_LM_REGISTRY``, ...) are read-only ``model_type -> class`` views of
:data:`workbench.registry.REGISTRY`, which collects the ``ARCHITECTURE`` record declared at the end of each
``models/<arch>.py``; an architecture is added there, never here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from .config import CONFIG_NAME, ConfigError, ModelConfig, check_device_memory, read_config_json
from .hub import resolve_checkpoint
from .model import HookedTransformer
from .registry import REGISTRY, FieldView
from .tokenizers import Tokenizer

# model_type -> class tables, read-only views of the registry (each architecture's ARCHITECTURE record, at the
# end of its models/<arch>.py): an architecture registered there appears here.
CONFIG_REGISTRY: FieldView = REGISTRY.configs()
MODEL_REGISTRY: FieldView = REGISTRY.classes("base")
MASKED_LM_REGISTRY: FieldView = REGISTRY.classes("masked_lm")
CAUSAL_LM_REGISTRY: FieldView = REGISTRY.classes("causal_lm")
SEQUENCE_CLASSIFICATION_REGISTRY: FieldView = REGISTRY.classes("sequence_classification")
TOKEN_CLASSIFICATION_REGISTRY: FieldView = REGISTRY.classes("token_classification")
QUESTION_ANSWERING_REGISTRY: FieldView = REGISTRY.classes("question_answering")
MULTIPLE_CHOICE_REGISTRY: FieldView = REGISTRY.classes("multiple_choice")

# wb.load's task names -> tables.
TASK_REGISTRIES: dict[str, FieldView] = {
    "base": MODEL_REGISTRY,
    "masked_lm": MASKED_LM_REGISTRY,
    "causal_lm": CAUSAL_LM_REGISTRY,
    "sequence_classification": SEQUENCE_CLASSIFICATION_REGISTRY,
    "token_classification": TOKEN_CLASSIFICATION_REGISTRY,
    "question_answering": QUESTION_ANSWERING_REGISTRY,
    "multiple_choice": MULTIPLE_CHOICE_REGISTRY,
}


def _lookup(registry: Mapping[str, Any], model_type: Any, what: str, source: Any) -> Any:
    if isinstance(model_type, str) and model_type in registry:
        return registry[model_type]
    raise ConfigError(
        f"{source}: model_type {model_type!r} is not supported for {what}; supported model types: "
        f"{sorted(registry)}"
    )


class AutoConfig:
    """``AutoConfig.from_pretrained(name_or_path)`` -> the config dataclass of the checkpoint's architecture."""

    @staticmethod
    def from_pretrained(
        name_or_path: str | Path, revision: str | None = None, **overrides: Any
    ) -> ModelConfig:
        folder = resolve_checkpoint(name_or_path, revision=revision)
        values = read_config_json(folder / CONFIG_NAME)
        config_class = _lookup(CONFIG_REGISTRY, values.get("model_type"), "configs", folder / CONFIG_NAME)
        overrides.setdefault("name_or_path", str(name_or_path))
        return config_class.from_file_values(folder / CONFIG_NAME, values, **overrides)

    @staticmethod
    def for_model(model_type: str, **fields: Any) -> ModelConfig:
        """A fresh config of ``model_type`` (e.g. a tiny random model for tests)."""
        return _lookup(CONFIG_REGISTRY, model_type, "configs", "AutoConfig.for_model").from_dict(fields)


class _AutoModel:
    registry: ClassVar[Mapping[str, type[HookedTransformer]]]
    task: ClassVar[str]

    @classmethod
    def model_class(cls, model_type: str, source: Any = "") -> type[HookedTransformer]:
        return _lookup(cls.registry, model_type, cls.task, source or cls.__name__)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, revision: str | None = None, **kwargs: Any):
        """Load the checkpoint into the class registered for its ``model_type``.

        Keyword arguments are those of :meth:`HookedTransformer.from_pretrained` (``device``, ``dtype``,
        ``num_labels`` and other config overrides).
        """
        config = kwargs.pop("config", None)
        if config is None:
            config_keys = {k: kwargs.pop(k) for k in list(kwargs) if k not in _LOAD_OPTIONS}
            config = AutoConfig.from_pretrained(name_or_path, revision=revision, **config_keys)
        model_class = cls.model_class(config.model_type, name_or_path)
        check_device_memory(config, kwargs.get("device"))
        return model_class.from_pretrained(name_or_path, config=config, revision=revision, **kwargs)

    @classmethod
    def from_config(cls, config: ModelConfig, seed: int | None = None):
        return cls.model_class(config.model_type).from_config(config, seed=seed)


_LOAD_OPTIONS = {"device", "dtype", "ignore_mismatched_sizes"}


class AutoModel(_AutoModel):
    """The bare model of the checkpoint's architecture (``BertModel`` for a BERT checkpoint)."""

    registry = MODEL_REGISTRY
    task = "AutoModel"


class AutoModelForMaskedLM(_AutoModel):
    registry = MASKED_LM_REGISTRY
    task = "AutoModelForMaskedLM"


class AutoModelForCausalLM(_AutoModel):
    """A decoder with its language-modelling head (``GPT2LMHeadModel`` for a GPT-2 checkpoint)."""

    registry = CAUSAL_LM_REGISTRY
    task = "AutoModelForCausalLM"


class AutoModelForSequenceClassification(_AutoModel):
    """A classifier; ``from_pretrained(body_checkpoint, num_labels=k)`` builds a fresh head (reported)."""

    registry = SEQUENCE_CLASSIFICATION_REGISTRY
    task = "AutoModelForSequenceClassification"


class AutoModelForTokenClassification(_AutoModel):
    """A classifier on every token (NER, POS tagging)."""

    registry = TOKEN_CLASSIFICATION_REGISTRY
    task = "AutoModelForTokenClassification"


class AutoModelForQuestionAnswering(_AutoModel):
    """Span start/end logits for extractive question answering (SQuAD)."""

    registry = QUESTION_ANSWERING_REGISTRY
    task = "AutoModelForQuestionAnswering"


class AutoModelForMultipleChoice(_AutoModel):
    """One score per choice, inputs [batch, num_choices, pos] (SWAG, RACE, ARC)."""

    registry = MULTIPLE_CHOICE_REGISTRY
    task = "AutoModelForMultipleChoice"


class AutoTokenizer:
    """``AutoTokenizer.from_pretrained(name_or_path)`` -> the :class:`Tokenizer` of the checkpoint."""

    @staticmethod
    def from_pretrained(name_or_path: str | Path, **kwargs: Any) -> Tokenizer:
        return Tokenizer.from_pretrained(name_or_path, **kwargs)
