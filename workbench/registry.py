"""The registry of architectures: one :class:`~workbench.architecture.Architecture` record per model file.

Every module of :mod:`workbench.models` that declares ``ARCHITECTURE = Architecture(...)`` is registered here
when this module is imported, so adding an architecture means writing its model file; the Auto classes
(:mod:`workbench.auto`), ``wb.load``, ``wb.zoo`` and the zero-shot benchmark read their tables from
:data:`REGISTRY`, and the tokenizer dispatch by ``config.json``'s ``model_type`` gets its own from here
(:func:`hand_down_tokenizer_families`).

>>> from workbench.registry import REGISTRY
>>> REGISTRY["gpt2"].causal_lm.__name__
'GPT2LMHeadModel'
>>> sorted(REGISTRY.classes("multiple_choice"))
['bert', 'distilbert', 'roberta', 'xlm', 'xlnet']
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from . import models
from .architecture import TASKS, Architecture
from .tokenizers.wordpiece_bpe import MODEL_TYPES


class Registry:
    """Architectures by ``model_type``, in registration order."""

    def __init__(self, architectures: Iterable[Architecture] = ()) -> None:
        self._architectures: dict[str, Architecture] = {}
        for architecture in architectures:
            self.register(architecture)

    def register(self, architecture: Architecture) -> Architecture:
        """Add ``architecture``; a second record for a ``model_type`` already registered is refused."""
        if not isinstance(architecture, Architecture):
            raise TypeError(f"expected an Architecture record, got {type(architecture).__name__}")
        model_type = architecture.model_type
        if model_type in self._architectures:
            raise ValueError(
                f"model_type {model_type!r} is registered twice: {self._architectures[model_type].display_name} "
                f"and {architecture.display_name}"
            )
        self._architectures[model_type] = architecture
        return architecture

    def unregister(self, model_type: str) -> Architecture:
        """Remove and return the record of ``model_type`` (KeyError when there is none)."""
        return self._architectures.pop(model_type)

    def __getitem__(self, model_type: str) -> Architecture:
        return self._architectures[model_type]

    def get(self, model_type: Any) -> Architecture | None:
        return self._architectures.get(model_type) if isinstance(model_type, str) else None

    def __contains__(self, model_type: object) -> bool:
        return model_type in self._architectures

    def __iter__(self) -> Iterator[Architecture]:
        return iter(list(self._architectures.values()))

    def __len__(self) -> int:
        return len(self._architectures)

    def model_types(self) -> list[str]:
        return list(self._architectures)

    def classes(self, task: str) -> FieldView:
        """``model_type -> class`` for ``task``, over the architectures that have it (a live, read-only view)."""
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; choose one of {list(TASKS)}")
        return FieldView(self, task)

    def configs(self) -> FieldView:
        """``model_type -> config class`` (a live, read-only view)."""
        return FieldView(self, "config_class")

    def field(self, name: str) -> FieldView:
        """``model_type -> record.<name>`` (``"display_name"``, ``"default_task"``; a live, read-only view)."""
        if name not in Architecture.__dataclass_fields__:
            raise ValueError(
                f"Architecture has no field {name!r}; fields: {list(Architecture.__dataclass_fields__)}"
            )
        return FieldView(self, name)

    def matching(self, name: str) -> list[Architecture]:
        """The architectures whose name patterns match the lower-cased hub/folder ``name``."""
        return [architecture for architecture in self if architecture.matches(name)]


class FieldView(Mapping):
    """A read-only ``model_type -> value`` view of one field of the records of a :class:`Registry`.

    Architectures whose field is None (no class for that task) are not in it.

    It follows the registry (an architecture registered later appears), so the module-level tables of
    :mod:`workbench.auto` (``MODEL_REGISTRY``, ``CAUSAL_LM_REGISTRY``, ...) stay what the registry says.
    """

    def __init__(self, registry: Registry, field: str) -> None:
        self._registry = registry
        self._field = field

    def __getitem__(self, model_type: Any) -> Any:
        architecture = self._registry.get(model_type)
        value = getattr(architecture, self._field) if architecture is not None else None
        if value is None:
            raise KeyError(model_type)
        return value

    def __iter__(self) -> Iterator[str]:
        return (a.model_type for a in self._registry if getattr(a, self._field) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._field}: {dict(self)!r})"


def discover(package: Any = models) -> Registry:
    """A registry of the ``ARCHITECTURE`` records of the modules of ``package`` (in module-name order).

    A module without an ``ARCHITECTURE`` is a helper module and is skipped; one whose ``ARCHITECTURE`` is not
    an :class:`Architecture` is an error naming the module.
    """
    registry = Registry()
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda info: info.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        record = getattr(module, "ARCHITECTURE", None)
        if record is None:
            continue
        if not isinstance(record, Architecture):
            raise TypeError(
                f"{module.__name__}.ARCHITECTURE must be a workbench.architecture.Architecture, got "
                f"{type(record).__name__}"
            )
        registry.register(record)
    return registry


def hand_down_tokenizer_families(registry: Registry) -> None:
    """Give the tokenizer dispatch the records' ``model_type -> tokenizer_family`` and ``-> tokenizer_class``
    (live views: an architecture registered later is dispatched too). The tokenizers sit below the models
    and cannot read the registry themselves; see :class:`~workbench.tokenizers.wordpiece_bpe.ModelTypeTokenizers`."""
    MODEL_TYPES.use(registry.field("tokenizer_family"), registry.field("tokenizer_class"))


REGISTRY = discover()
hand_down_tokenizer_families(REGISTRY)
