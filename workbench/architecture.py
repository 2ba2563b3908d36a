"""The record an architecture declares about itself, at the end of its ``models/<arch>.py``.

>>> ARCHITECTURE = Architecture(  # doctest: +SKIP
...     "BERT", BertConfig, BertModel, default_task="masked_lm", tokenizer_family="wordpiece",
...     masked_lm=BertForMaskedLM, sequence_classification=BertForSequenceClassification,
...     name_patterns=(r"^bert", r"^.*minilm"),
... )

:mod:`workbench.registry` collects the records of every module of :mod:`workbench.models`; the Auto classes,
``wb.load``, ``wb.zoo`` (its tiny stand-ins included), the tokenizer dispatch by ``model_type`` and the
zero-shot benchmark read what they need from it, so an architecture is registered by its model file alone.
This module sits below the model files (they import it) and imports nothing of workbench.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# wb.load's task names, in the order the record lists their classes.
TASKS = (
    "base",
    "masked_lm",
    "causal_lm",
    "sequence_classification",
    "token_classification",
    "question_answering",
    "multiple_choice",
)

# How an architecture's language model scores a continuation in zero-shot multiple choice
# (workbench.bench.zeroshot), and the task whose class does it:
# "causal": summed log-probabilities under the causal LM; "masked": the masked LM's pseudo-log-likelihood;
# "permutation": the permutation LM (XLNet) through its causal-LM class; "by_config": causal or masked as the
# checkpoint's ``config.causal`` says (XLM, whose one LM head is trained with either objective).
ZERO_SHOT_TASKS = {"causal": "causal_lm", "masked": "masked_lm", "permutation": "causal_lm"}
ZERO_SHOT_KINDS = (*ZERO_SHOT_TASKS, "by_config")


@dataclass(frozen=True)
class TinySize:
    """The shape of a tiny model (the zoo's stand-ins), in the canonical names that every config answers to;
    :meth:`Architecture.tiny_fields` translates them per architecture."""

    n_layers: int = 4  #: Blocks.
    d_model: int = 128  #: Width of the residual stream.
    n_heads: int = 4  #: Attention heads per block (d_head = d_model / n_heads).
    d_mlp: int = 512  #: Hidden width of the MLP (GPT and XLM have no setting for it: theirs is 4 * d_model).
    n_positions: int = 512  #: The longest input, in tokens (the config's ``max_positions``).
    #: Tokens of the vocabularies the tokenizer stand-ins train (GPT and XLM: twice as many, each also with
    #: its ``</w>`` word-end form).
    bpe_vocab_size: int = 2000


# The canonical sizes a TinySize gives every config that has a field for them (the vocabulary's size comes
# from the tokenizer stand-in).
_TINY_SIZES = {"d_model": "d_model", "n_layers": "n_layers", "n_heads": "n_heads", "d_mlp": "d_mlp",
               "max_positions": "n_positions"}
# The special tokens whose ids a config holds under the same name in every architecture (``pad_token_id``).
_TINY_SPECIAL_TOKENS = ("pad_token", "bos_token", "eos_token")


@dataclass(frozen=True)
class Architecture:
    """One architecture: its config, its class per task, and what the rest of the workbench reads about it.

    Attributes:
        display_name: how reports and notices name it (``"GPT-2"``).
        config_class: its config dataclass; the record's ``model_type`` is ``config_class.model_type``.
        base: the bare model (``BertModel``).
        masked_lm, causal_lm, sequence_classification, token_classification, question_answering,
            multiple_choice: the class for each task; None where the architecture has no such head.
        default_task: the head a released checkpoint carries (what ``wb.zoo.load`` gives for the real model).
        tokenizer_family: the tokenizer it reads its files with (``"wordpiece"``, ``"byte_level_bpe"``, ...);
            the tokenizer dispatch uses it for a folder whose ``tokenizer_config.json`` names no class, and
            the zoo writes a stand-in of this family (:mod:`workbench.tokenizers.stand_in`).
        tokenizer_class: the Hugging Face tokenizer class its checkpoints name, where it is not the family's
            usual one (DistilBERT's ``"DistilBertTokenizer"``: WordPiece without ``token_type_ids``).
        name_patterns: regular expressions (``re.match``, on the lower-cased hub name without its
            organization) of the checkpoint names that stand for it; a name matching the patterns of two
            architectures stands for neither (see :meth:`workbench.registry.Registry.matching`).
        zero_shot: how zero-shot multiple choice scores with it, one of :data:`ZERO_SHOT_KINDS`; None: from
            its heads (see :attr:`zero_shot_kind`). XLNet declares ``"permutation"``, XLM ``"by_config"``.
        tiny_config: ``tiny_config(size, vocabulary) -> {field: value}``, the config fields of a tiny model
            beyond the canonical sizes (see :meth:`tiny_fields`); ``vocabulary`` is the tokenizer
            stand-in's (``.size``, and ``.ids``: special-token role such as ``"pad_token"`` -> id). None: the
            canonical sizes are all it needs.
    """

    display_name: str
    config_class: type
    base: type
    masked_lm: type | None = None
    causal_lm: type | None = None
    sequence_classification: type | None = None
    token_classification: type | None = None
    question_answering: type | None = None
    multiple_choice: type | None = None
    default_task: str = "base"
    tokenizer_family: str | None = None
    tokenizer_class: str | None = None
    name_patterns: tuple[str, ...] = ()
    zero_shot: str | None = None
    tiny_config: Callable[[TinySize, Any], Mapping[str, Any]] | None = None

    def __post_init__(self) -> None:
        model_type = getattr(self.config_class, "model_type", None)
        if not isinstance(model_type, str) or not model_type:
            raise ValueError(
                f"Architecture {self.display_name!r}: config_class {self.config_class.__name__} has no "
                f"model_type string (got {model_type!r})"
            )
        if self.default_task not in TASKS or self.model_class(self.default_task) is None:
            raise ValueError(
                f"Architecture {model_type!r}: default_task {self.default_task!r} is not one of its tasks "
                f"{self.tasks}"
            )
        if isinstance(self.name_patterns, str):
            raise TypeError(
                f"Architecture {model_type!r}: name_patterns must be a tuple of patterns, not a str"
            )
        for pattern in self.name_patterns:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"Architecture {model_type!r}: name pattern {pattern!r}: {error}") from error
        self._check_zero_shot()

    def _check_zero_shot(self) -> None:
        """A declared zero-shot kind is one of :data:`ZERO_SHOT_KINDS`, with the classes it scores with."""
        if self.zero_shot is None:
            return
        if self.zero_shot not in ZERO_SHOT_KINDS:
            raise ValueError(
                f"Architecture {self.model_type!r}: zero_shot {self.zero_shot!r} is not one of "
                f"{ZERO_SHOT_KINDS}"
            )
        by_config = self.zero_shot == "by_config"
        needed = ("causal_lm", "masked_lm") if by_config else (ZERO_SHOT_TASKS[self.zero_shot],)
        missing = [task for task in needed if self.model_class(task) is None]
        if missing:
            raise ValueError(
                f"Architecture {self.model_type!r}: zero_shot {self.zero_shot!r} scores with a {missing[0]} "
                f"class, and the record has none"
            )

    @property
    def zero_shot_kind(self) -> str | None:
        """How zero-shot multiple choice scores with it: :attr:`zero_shot` when declared, else ``"causal"``
        with a causal-LM class, else ``"masked"`` with a masked-LM class, else None (no zero-shot scoring)."""
        if self.zero_shot is not None:
            return self.zero_shot
        return "causal" if self.causal_lm else "masked" if self.masked_lm else None

    @property
    def model_type(self) -> str:
        """``config.json``'s ``model_type`` for this architecture (its config class's)."""
        return self.config_class.model_type

    def model_class(self, task: str) -> Any:
        """The class for ``task`` (one of :data:`TASKS`), or None where the architecture has no such head."""
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of {list(TASKS)}")
        return getattr(self, task)

    @property
    def tasks(self) -> tuple[str, ...]:
        """The tasks it has a class for, in :data:`TASKS` order."""
        return tuple(task for task in TASKS if getattr(self, task) is not None)

    @property
    def classifier_position(self) -> str | None:
        """Which token its sequence-classification head reads: ``"first"`` ([CLS]-style encoders) or
        ``"last"`` (the last real token: decoders, XLNet); None without such a head.

        The class attribute of the same name is the one place that says it (the model reads it there, as do
        attribution and interventions); the record shows it rather than repeating it.
        """
        head = self.sequence_classification
        return head.classifier_position if head is not None else None

    def zero_shot_scoring(self, config: Any) -> tuple[str, str]:
        """(scorer, task of the class that scores) for a checkpoint with ``config``: ``("causal",
        "causal_lm")``, ``("masked", "masked_lm")`` or ``("permutation", "causal_lm")``.

        Raises:
            ValueError: the architecture has no zero-shot scoring (no language-modelling head).
        """
        kind = self.zero_shot_kind
        if kind is None:
            raise ValueError(
                f"zero-shot scoring is not available for model_type {self.model_type!r}: it has neither a "
                f"causal nor a masked LM head here"
            )
        if kind == "by_config":
            kind = "causal" if getattr(config, "causal", False) else "masked"
        return kind, ZERO_SHOT_TASKS[kind]

    def tiny_fields(self, size: TinySize, vocabulary: Any) -> dict[str, Any]:
        """The config fields of a tiny random model of this architecture (``wb.zoo.tiny``).

        ``size``'s canonical sizes under this config's names (``d_model`` -> BERT's ``hidden_size``, through
        the config's ``ATTRIBUTE_MAP``; a canonical name that is no field of the config, such as GPT-2's
        derived ``d_mlp``, is left out); ``vocab_size`` and the ``pad_token_id``, ``bos_token_id`` and
        ``eos_token_id`` fields the config has, from the tokenizer stand-in's ``vocabulary``; then the fields
        of :attr:`tiny_config` over them, and ``architectures`` naming the class of :attr:`default_task`.
        """
        names = {field.name for field in dataclasses.fields(self.config_class)}
        aliases = getattr(self.config_class, "ATTRIBUTE_MAP", {})
        values = {"vocab_size": vocabulary.size}
        for canonical, attribute in _TINY_SIZES.items():
            name = aliases.get(canonical, canonical)
            if name in names:
                values[name] = getattr(size, attribute)
        for role in _TINY_SPECIAL_TOKENS:
            if f"{role}_id" in names and role in vocabulary.ids:
                values[f"{role}_id"] = vocabulary.ids[role]
        values.update(self.tiny_config(size, vocabulary) if self.tiny_config is not None else {})
        values["architectures"] = [self.model_class(self.default_task).__name__]
        return values

    def matches(self, name: str) -> bool:
        """Whether the lower-cased hub/folder ``name`` (no organization) matches one of its name patterns."""
        return any(re.match(pattern, name) for pattern in self.name_patterns)
