"""Auto classes: pick the architecture from ``config.json``'s ``model_type``.

The tables (``MODEL_REGISTRY``, ``CAUSAL_LM_REGISTRY``, ...) are read-only ``model_type -> class`` views of
:data:`workbench.registry.REGISTRY`, which collects the ``ARCHITECTURE`` record declared at the end of each
``models/<arch>.py``; an architecture is added there, never here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from .architecture import TASKS
from .config import CONFIG_NAME, ConfigError, ModelConfig, check_device_memory, read_config_json
from .hub import resolve_checkpoint
from .model import HookedTransformer
from .registry import REGISTRY, FieldView
from .tokenizers import Tokenizer

# model_type -> class tables, read-only views of the registry (each architecture's ARCHITECTURE record, at the
# end of its models/<arch>.py): an architecture registered there appears here. By wb.load's task names:
TASK_REGISTRIES: dict[str, FieldView] = {task: REGISTRY.classes(task) for task in TASKS}
CONFIG_REGISTRY: FieldView = REGISTRY.configs()
MODEL_REGISTRY: FieldView = TASK_REGISTRIES["base"]
MASKED_LM_REGISTRY: FieldView = TASK_REGISTRIES["masked_lm"]
CAUSAL_LM_REGISTRY: FieldView = TASK_REGISTRIES["causal_lm"]
SEQUENCE_CLASSIFICATION_REGISTRY: FieldView = TASK_REGISTRIES["sequence_classification"]
TOKEN_CLASSIFICATION_REGISTRY: FieldView = TASK_REGISTRIES["token_classification"]
QUESTION_ANSWERING_REGISTRY: FieldView = TASK_REGISTRIES["question_answering"]
MULTIPLE_CHOICE_REGISTRY: FieldView = TASK_REGISTRIES["multiple_choice"]


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
    """The class of a checkpoint's ``model_type`` for one task; a subclass names the task
    (``class AutoModelForMaskedLM(_AutoModel, task="masked_lm")``) and reads its table from the registry."""

    registry: ClassVar[Mapping[str, type[HookedTransformer]]]

    def __init_subclass__(cls, task: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.registry = TASK_REGISTRIES[task]

    @classmethod
    def model_class(cls, model_type: str, source: Any = "") -> type[HookedTransformer]:
        return _lookup(cls.registry, model_type, cls.__name__, source or cls.__name__)

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


_LOAD_OPTIONS = {"device", "device_map", "dtype", "ignore_mismatched_sizes"}


class AutoModel(_AutoModel, task="base"):
    """The bare model of the checkpoint's architecture (``BertModel`` for a BERT checkpoint)."""


class AutoModelForMaskedLM(_AutoModel, task="masked_lm"):
    """An encoder with its masked-language-modelling head (``BertForMaskedLM`` for a BERT checkpoint)."""


class AutoModelForCausalLM(_AutoModel, task="causal_lm"):
    """A decoder with its language-modelling head (``GPT2LMHeadModel`` for a GPT-2 checkpoint)."""


class AutoModelForSequenceClassification(_AutoModel, task="sequence_classification"):
    """A classifier; ``from_pretrained(body_checkpoint, num_labels=k)`` builds a fresh head (reported)."""


class AutoModelForTokenClassification(_AutoModel, task="token_classification"):
    """A classifier on every token (NER, POS tagging)."""


class AutoModelForQuestionAnswering(_AutoModel, task="question_answering"):
    """Span start/end logits for extractive question answering (SQuAD)."""


class AutoModelForMultipleChoice(_AutoModel, task="multiple_choice"):
    """One score per choice, inputs [batch, num_choices, pos] (SWAG, RACE, ARC)."""


class AutoTokenizer:
    """``AutoTokenizer.from_pretrained(name_or_path)`` -> the :class:`Tokenizer` of the checkpoint."""

    @staticmethod
    def from_pretrained(name_or_path: str | Path, **kwargs: Any) -> Tokenizer:
        return Tokenizer.from_pretrained(name_or_path, **kwargs)
