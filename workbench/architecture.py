"""The record an architecture declares about itself, at the end of its ``models/<arch>.py``.

>>> ARCHITECTURE = Architecture(  # doctest: +SKIP
...     display_name="BERT",
...     config_class=BertConfig,
...     base=BertModel,
...     masked_lm=BertForMaskedLM,
...     sequence_classification=BertForSequenceClassification,
...     default_task="masked_lm",
...     tokenizer_family="wordpiece",
...     name_patterns=(r"^bert", r"^.*minilm"),
... )

:mod:`workbench.registry` collects the records of every module of :mod:`workbench.models`; the Auto classes,
``wb.load`` and ``wb.zoo`` read their tables from it, so an architecture is registered by its model file alone.
This module sits below the model files (they import it) and imports nothing of workbench.
"""

from __future__ import annotations

import re
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


@dataclass(frozen=True)
class Architecture:
    """One architecture: its config, its class per task, and how hub names and the zoo refer to it.

    Attributes:
        display_name: how reports and notices name it (``"GPT-2"``).
        config_class: its config dataclass; the record's ``model_type`` is ``config_class.model_type``.
        base: the bare model (``BertModel``).
        masked_lm, causal_lm, sequence_classification, token_classification, question_answering,
            multiple_choice: the class for each task; None where the architecture has no such head.
        default_task: the head a released checkpoint carries (what ``wb.zoo.load`` gives for the real model).
        tokenizer_family: the tokenizer it reads its files with (``"wordpiece"``, ``"byte_level_bpe"``, ...).
        name_patterns: regular expressions (``re.match``, on the lower-cased hub name without its
            organization) of the checkpoint names that stand for it; a name matching the patterns of two
            architectures stands for neither (see :meth:`workbench.registry.Registry.matching`).
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
    name_patterns: tuple[str, ...] = ()

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

    def matches(self, name: str) -> bool:
        """Whether the lower-cased hub/folder ``name`` (no organization) matches one of its name patterns."""
        return any(re.match(pattern, name) for pattern in self.name_patterns)
