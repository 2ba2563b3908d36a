"""Probing classifiers on workbench activations: linguistic tasks from Universal Dependencies, probes with
control tasks, structural probes and MDL, at dataset scale, across architectures.

>>> import probes
>>> results = probes.run(models=["minilm"], tasks=["upos", "depth"], data="sample")  # doctest: +SKIP
>>> results.frame, results.figure(), results.save("reports/probing")  # doctest: +SKIP

The names below are looked up on first use (:func:`__getattr__`), so ``import probes`` (and the ``probes``
command's ``--help``) imports no torch until something that needs it is used.
"""

import importlib
from typing import Any

# Each public name and the submodule that defines it.
_EXPORTS = {
    "ActivationStore": "store",
    "ControlTask": "tasks",
    "DataFrameTask": "tasks",
    "ProbingResults": "experiment",
    "Sentence": "data",
    "extract": "store",
    "get_task": "tasks",
    "load_treebank": "data",
    "read_conllu": "data",
    "run": "experiment",
    "task_names": "tasks",
    "treebank_projection": "views",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """``probes.<name>``: a public name from its submodule, or a submodule (``probes.data``); else AttributeError."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # looked up once
        return value
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as err:
        if err.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
