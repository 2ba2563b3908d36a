"""Every adapter declared in :mod:`workbench.bridge.families`, looked up by ``model_type``."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from . import families
from .adapters import Adapter


@cache
def all_adapters() -> tuple[Adapter, ...]:
    """The ``ADAPTERS`` of every module of :mod:`workbench.bridge.families`, in module-name order; a
    ``model_type`` declared twice is an error naming both modules."""
    adapters, owner = [], {}
    for info in sorted(pkgutil.iter_modules(families.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{families.__name__}.{info.name}")
        for adapter in getattr(module, "ADAPTERS", []):
            for model_type in adapter.model_types:
                if model_type in owner:
                    raise ValueError(f"model_type {model_type!r} has adapters in both {owner[model_type]} and "
                                     f"{module.__name__}")
                owner[model_type] = module.__name__
            adapters.append(adapter)
    return tuple(adapters)


def find_adapter(model_type: str) -> Adapter | None:
    """The adapter declared for ``model_type``, or None."""
    return next((adapter for adapter in all_adapters() if model_type in adapter.model_types), None)


def adapted_model_types() -> list[str]:
    """Every ``model_type`` with a declared adapter, sorted."""
    return sorted(t for adapter in all_adapters() for t in adapter.model_types)
