"""Auto classes: pick the architecture from ``config.json``'s ``model_type``.

Each registry is a plain dict from ``model_type`` to a class; an architecture adds one line to each
registry that it supports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from .config import CONFIG_NAME, ConfigError, ModelConfig, check_device_memory, read_config_json
from .hub import resolve_checkpoint
from .model import HookedTransformer
from .models.bert import (
    BertConfig,
    BertForMaskedLM,
    BertForMultipleChoice,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
)
from .models.distilbert import (
    DistilBertConfig,
    DistilBertForMaskedLM,
    DistilBertForMultipleChoice,
    DistilBertForQuestionAnswering,
    DistilBertForSequenceClassification,
    DistilBertForTokenClassification,
    DistilBertModel,
)
from .models.gpt2 import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel, GPT2Model
from .models.openai_gpt import (
    OpenAIGPTConfig,
    OpenAIGPTForSequenceClassification,
    OpenAIGPTLMHeadModel,
    OpenAIGPTModel,
)
from .models.roberta import (
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaForMultipleChoice,
    RobertaForQuestionAnswering,
    RobertaForSequenceClassification,
    RobertaForTokenClassification,
    RobertaModel,
)
from .models.transfo_xl import (
    TransfoXLConfig,
    TransfoXLForSequenceClassification,
    TransfoXLLMHeadModel,
    TransfoXLModel,
)
from .models.xlm import (
    XLMConfig,
    XLMForMultipleChoice,
    XLMForQuestionAnsweringSimple,
    XLMForSequenceClassification,
    XLMForTokenClassification,
    XLMModel,
    XLMWithLMHeadModel,
)
from .models.xlnet import (
    XLNetConfig,
    XLNetForMultipleChoice,
    XLNetForQuestionAnsweringSimple,
    XLNetForSequenceClassification,
    XLNetForTokenClassification,
    XLNetLMHeadModel,
    XLNetModel,
)
from .tokenizers import Tokenizer

CONFIG_REGISTRY: dict[str, type[ModelConfig]] = {
    "bert": BertConfig,
    "gpt2": GPT2Config,
    "openai-gpt": OpenAIGPTConfig,
    "distilbert": DistilBertConfig,
    "roberta": RobertaConfig,
    "xlm": XLMConfig,
    "xlnet": XLNetConfig,
    "transfo-xl": TransfoXLConfig,
}
MODEL_REGISTRY: dict[str, type[HookedTransformer]] = {
    "bert": BertModel,
    "gpt2": GPT2Model,
    "openai-gpt": OpenAIGPTModel,
    "distilbert": DistilBertModel,
    "roberta": RobertaModel,
    "xlm": XLMModel,
    "xlnet": XLNetModel,
    "transfo-xl": TransfoXLModel,
}
MASKED_LM_REGISTRY: dict[str, type[HookedTransformer]] = {
    "bert": BertForMaskedLM,
    "distilbert": DistilBertForMaskedLM,
    "roberta": RobertaForMaskedLM,
    "xlm": XLMWithLMHeadModel,
}
CAUSAL_LM_REGISTRY: dict[str, type[HookedTransformer]] = {
    "gpt2": GPT2LMHeadModel,
    "openai-gpt": OpenAIGPTLMHeadModel,
    "xlm": XLMWithLMHeadModel,
    "xlnet": XLNetLMHeadModel,
    "transfo-xl": TransfoXLLMHeadModel,
}
SEQUENCE_CLASSIFICATION_REGISTRY: dict[str, type[HookedTransformer]] = {
    "bert": BertForSequenceClassification,
    "gpt2": GPT2ForSequenceClassification,
    "openai-gpt": OpenAIGPTForSequenceClassification,
    "distilbert": DistilBertForSequenceClassification,
    "roberta": RobertaForSequenceClassification,
    "xlm": XLMForSequenceClassification,
    "xlnet": XLNetForSequenceClassification,
    "transfo-xl": TransfoXLForSequenceClassification,
}
TOKEN_CLASSIFICATION_REGISTRY: dict[str, type[HookedTransformer]] = {
    "bert": BertForTokenClassification,
    "distilbert": DistilBertForTokenClassification,
    "roberta": RobertaForTokenClassification,
    "xlm": XLMForTokenClassification,
    "xlnet": XLNetForTokenClassification,
}
QUESTION_ANSWERING_REGISTRY: dict[str, type[HookedTransformer]] = {
    "bert": BertForQuestionAnswering,
    "distilbert": DistilBertForQuestionAnswering,
    "roberta": RobertaForQuestionAnswering,
    "xlm": XLMForQuestionAnsweringSimple,
    "xlnet": XLNetForQuestionAnsweringSimple,
}
MULTIPLE_CHOICE_REGISTRY: dict[str, type[HookedTransformer]] = {
    "bert": BertForMultipleChoice,
    "distilbert": DistilBertForMultipleChoice,
    "roberta": RobertaForMultipleChoice,
    "xlm": XLMForMultipleChoice,
    "xlnet": XLNetForMultipleChoice,
}

# wb.load's task names -> registries.
TASK_REGISTRIES = {
    "base": MODEL_REGISTRY,
    "masked_lm": MASKED_LM_REGISTRY,
    "causal_lm": CAUSAL_LM_REGISTRY,
    "sequence_classification": SEQUENCE_CLASSIFICATION_REGISTRY,
    "token_classification": TOKEN_CLASSIFICATION_REGISTRY,
    "question_answering": QUESTION_ANSWERING_REGISTRY,
    "multiple_choice": MULTIPLE_CHOICE_REGISTRY,
}


def _lookup(registry: dict[str, Any], model_type: Any, what: str, source: Any) -> Any:
    if isinstance(model_type, str) and model_type in registry:
        return registry[model_type]
    raise ConfigError(
        f"{source}: model_type {model_type!r} is not supported for {what}; supported model types: "
        f"{sorted(registry)}"
    )


class AutoConfig:
    """``AutoConfig.from_pretrained(name_or_path)`` -> the config dataclass of the checkpoint's architecture."""

    @staticmethod
    def from_pretrained(name_or_path: str | Path, revision: str | None = None, **overrides: Any) -> ModelConfig:
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
    registry: ClassVar[dict[str, type[HookedTransformer]]]
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
