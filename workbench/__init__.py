"""workbench: an interpretability workbench for transformer language models.

One API over many architectures, with named hook points everywhere:

>>> import workbench as wb
>>> lm = wb.load("minilm")  # doctest: +SKIP
>>> out, cache = lm.run_with_cache("The keys to the cabinet are on the table.")  # doctest: +SKIP
>>> cache["blocks.3.attn.hook_pattern"].shape  # doctest: +SKIP
torch.Size([1, 12, 13, 13])

The public face (``__all__``, and all that ``dir(wb)`` lists):

* loading: :func:`load`, :func:`from_hf` (the bridge: hook points on any Hugging Face model),
  :func:`default_device`, :func:`memory_estimate` and the Auto classes (``AutoConfig``,
  ``AutoTokenizer``, ``AutoModel``, ``AutoModelFor<Task>``);
* the model base class :class:`HookedTransformer`, :class:`ActivationCache` and :class:`HookPoint`;
* the subpackages :mod:`~workbench.attribution`, :mod:`~workbench.interventions`, :mod:`~workbench.viz`,
  :mod:`~workbench.bench` and :mod:`~workbench.zoo`;
* the shortcuts the README uses: :func:`attribute`, :func:`ablate_heads`, :func:`generate`,
  :func:`logit_lens`, :func:`fill_mask`, :func:`keep_freed_memory`;
* the errors worth catching: :class:`ConfigError`, :class:`CheckpointError`, :class:`CheckpointNotFoundError`.

Also reachable as ``wb.<name>``, looked up on first use (:func:`__getattr__`), not listed:

* every model and config class of every registered architecture by its class name (``wb.BertModel``,
  ``wb.GPT2LMHeadModel``, ``wb.XLNetConfig``, ...), from :data:`workbench.registry.REGISTRY`: an architecture
  added to ``workbench/models/`` needs no edit here;
* the tokenizer classes (``wb.XLMTokenizer``, ...; :mod:`workbench.tokenizers`);
* the names this module exported before it shrank (:data:`_MOVED`), and any submodule (``wb.hub``, ...).

>>> wb.BertModel is wb.registry.REGISTRY["bert"].base
True
"""

import importlib
import pkgutil
from typing import Any


def _started_as_the_command_line() -> bool:
    """Whether this process is the ``workbench`` command (``python -m workbench ...`` or the ``workbench``
    script). Its public face below (torch, pandas, every model) is then not imported here: workbench/cli.py
    imports what each command needs when it runs, under a spinner, so ``--help`` prints in a fraction of a
    second and ``workbench lab`` imports no torch at all. cli.py also imports .generation, .lens and
    .mask_filling before it loads a model, which give the models their methods (workbench/model.py)."""
    import os
    import sys

    argv = list(getattr(sys, "orig_argv", []))  # the interpreter's own command line (Python 3.10+)
    if "-m" in argv and argv[argv.index("-m") + 1 :][:1] in (["workbench"], ["probes"]):
        return True
    commands = {f"{name}{suffix}" for name in ("workbench", "probes") for suffix in ("", ".exe", "-script.py")}
    return bool(sys.argv) and os.path.basename(sys.argv[0]) in commands


if not _started_as_the_command_line():
    # .generation, .lens and .mask_filling also give the models their methods model.generate, .logit_lens and
    # .fill_mask (see the note above GenerationMixin in workbench/model.py): keep importing them here.
    from . import attribution, bench, interventions, viz, zoo
    from .ablation import ablate_heads
    from .api import default_device, load, memory_estimate
    from .attribution import attribute
    from .auto import (
        AutoConfig,
        AutoModel,
        AutoModelForCausalLM,
        AutoModelForMaskedLM,
        AutoModelForMultipleChoice,
        AutoModelForQuestionAnswering,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
    )
    from .bridge import from_hf
    from .cache import ActivationCache
    from .config import ConfigError
    from .generation import generate
    from .hook_points import HookPoint
    from .hub import CheckpointNotFoundError
    from .lens import logit_lens
    from .loading import CheckpointError
    from .mask_filling import fill_mask
    from .memory import keep_freed_memory
    from .model import HookedTransformer
    from .version import __version__ as __version__

__all__ = [
    # loading
    "load",
    "from_hf",
    "default_device",
    "memory_estimate",
    "AutoConfig",
    "AutoTokenizer",
    "AutoModel",
    "AutoModelForCausalLM",
    "AutoModelForMaskedLM",
    "AutoModelForSequenceClassification",
    "AutoModelForTokenClassification",
    "AutoModelForQuestionAnswering",
    "AutoModelForMultipleChoice",
    # models, caches and hooks
    "HookedTransformer",
    "ActivationCache",
    "HookPoint",
    # subpackages
    "attribution",
    "interventions",
    "viz",
    "bench",
    "zoo",
    # shortcuts
    "attribute",
    "ablate_heads",
    "generate",
    "logit_lens",
    "fill_mask",
    "keep_freed_memory",
    # errors
    "ConfigError",
    "CheckpointError",
    "CheckpointNotFoundError",
]

# Names this module exported by hand before the public face shrank, and the module each lives in
# (``wb.<name>`` keeps working; new code imports them from there).
_MOVED = {
    "head_ablation_hooks": "ablation",
    "Attribution": "attribution",
    "GenerationResult": "generation",
    "LogitLens": "lens",
    "ModelConfig": "config",
}


def _registered_classes() -> dict[str, type]:
    """Every model class (one per task) and config class of the registered architectures, by class name."""
    from .architecture import TASKS
    from .registry import REGISTRY

    classes: dict[str, type] = {}
    for architecture in REGISTRY:
        for cls in (architecture.config_class, *map(architecture.model_class, TASKS)):
            if cls is not None:
                classes[cls.__name__] = cls
    return classes


def _tokenizer_classes() -> dict[str, type]:
    """The tokenizer base class, its ``Encoding`` and every class of the tokenizer dispatch, by class name."""
    from .tokenizers import FOLDER_CLASSES, Encoding, Tokenizer

    return {cls.__name__: cls for cls in (Tokenizer, Encoding, *FOLDER_CLASSES)}


def __getattr__(name: str) -> Any:
    """``wb.<name>`` for a name outside :data:`__all__` (see the module docstring); else AttributeError."""
    if name in _MOVED:
        return getattr(importlib.import_module(f".{_MOVED[name]}", __name__), name)
    # submodules first: ``from . import models`` in workbench.registry asks here while the registry is still
    # being imported (in the ``workbench`` command, whose imports come after this module's)
    if name in {info.name for info in pkgutil.iter_modules(__path__)}:
        return importlib.import_module(f".{name}", __name__)
    for table in (_registered_classes, _tokenizer_classes):
        found = table().get(name)
        if found is not None:
            return found
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public face only: :data:`__all__` (the lazily resolved names are documented, not listed)."""
    return sorted(__all__)
