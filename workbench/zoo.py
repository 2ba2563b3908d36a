"""Models by name, with a tiny random stand-in when a checkpoint cannot be found offline.

Notebooks compare architectures (BERT, RoBERTa, GPT-2, ...) whose released checkpoints are downloaded from
the Hugging Face hub. On a machine without network and without a local copy, :func:`load` builds a small
random-initialized model of the same architecture instead, with a tokenizer of the same family, and says so
in one warning line (never silently). The stand-in runs through every API (hooks, caches, attribution,
probing, generation), so a notebook still runs top to bottom; its outputs are not meaningful.

>>> import workbench as wb
>>> gpt2 = wb.zoo.load("gpt2")  # doctest: +SKIP
gpt2 is not available offline: using a random-initialized tiny GPT-2 (4 layers, d_model 128, ...) ...
>>> wb.zoo.is_stand_in(gpt2)  # doctest: +SKIP
True

Everything a stand-in is made of comes from the architecture's record (:mod:`workbench.registry`): its
tokenizer is the stand-in of the record's ``tokenizer_family`` (:mod:`workbench.tokenizers.stand_in`: MiniLM's
WordPiece vocabulary, or one trained in about a second on the committed UD English EWT sample), and its config
is :meth:`Architecture.tiny_fields <workbench.architecture.Architecture.tiny_fields>` (the canonical sizes of a
:class:`TinySize` in the architecture's names, plus its record's ``tiny_config``). Every architecture whose
tokenizer family has a stand-in has one.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import torch

from .api import default_device
from .api import load as load_checkpoint
from .architecture import TASKS, TinySize
from .auto import AutoConfig
from .hub import CheckpointNotFoundError, resolve_checkpoint
from .model import HookedTransformer
from .registry import REGISTRY
from .tokenizers import Tokenizer
from .tokenizers.stand_in import STAND_INS, write_stand_in

logger = logging.getLogger(__name__)

# The stand-ins' shape unless one is asked for (4 layers, d_model 128, 4 heads; see TinySize).
DEFAULT_SIZE = TinySize()


# model_type -> the head a released checkpoint carries (what wb.load gives for the real model), and the name
# notices use: read-only views of the architecture records (workbench.registry).
DEFAULT_TASKS = REGISTRY.field("default_task")
DISPLAY_NAMES = REGISTRY.field("display_name")


def stand_in_architectures() -> list[str]:
    """The model types :func:`tiny` builds: those whose record's tokenizer family has a stand-in."""
    return sorted(record.model_type for record in REGISTRY if record.tokenizer_family in STAND_INS)


def load(
    name_or_path: str | Path,
    task: str | None = None,
    device: torch.device | str | None = "auto",
    fallback: str | None = "tiny",
    architecture: str | None = None,
    size: TinySize = DEFAULT_SIZE,
    seed: int = 0,
    **kwargs: Any,
) -> HookedTransformer:
    """Load a model by name; offline and without a local copy, a tiny random model of its architecture.

    Args:
        name_or_path: a folder, an alias (``"minilm"``) or a Hugging Face hub id (``"gpt2"``,
            ``"bert-base-uncased"``, ``"FacebookAI/roberta-base"``).
        task: as in :func:`workbench.load`; None: the checkpoint's own head (for a stand-in, the head of the
            released checkpoints: masked LM for encoders, causal LM for decoders).
        device: ``"auto"`` (the GPU when there is one) or any torch device.
        fallback: ``"tiny"`` builds a stand-in when the checkpoint cannot be found; None raises
            :class:`~workbench.CheckpointNotFoundError` instead.
        architecture: the ``model_type`` of the stand-in (``"gpt2"``, ``"bert"``, ...); default: guessed
            from the name.
        size: the stand-in's shape.
        seed: the stand-in's random initialization.
        **kwargs: config overrides (``num_labels=3``), for the checkpoint and the stand-in alike.

    Returns:
        The model; a stand-in has ``model.stand_in_notice`` set to the line that was logged (None otherwise).
    """
    if fallback not in ("tiny", None):
        raise ValueError(f"fallback must be 'tiny' or None, got {fallback!r}")
    try:
        model = load_checkpoint(name_or_path, task=task, device=device, **kwargs)
    except CheckpointNotFoundError as err:
        if fallback is None:
            raise
        model_type = architecture or architecture_of(name_or_path)
        if model_type is None:
            raise CheckpointNotFoundError(
                f"{err}\nNo tiny stand-in either: cannot tell the architecture of {str(name_or_path)!r} from its "
                f"name; pass architecture= (one of {stand_in_architectures()})"
            ) from err
        model = tiny(model_type, task=task, device=device, size=size, seed=seed, **kwargs)
        model.stand_in_notice = (
            f"{name_or_path} is not available offline: using a random-initialized tiny "
            f"{DISPLAY_NAMES.get(model_type, model_type)} ({describe(model)}) - its outputs are not meaningful"
        )
        logger.warning(model.stand_in_notice)
        return model
    if is_stand_in(model):  # a stand-in saved earlier and loaded from its folder: still one
        logger.warning("%s is a random stand-in: %s", name_or_path, model.stand_in_notice)
    return model


# The config.json key a stand-in's notice is kept under (HookedTransformer.stand_in_notice reads it).
STAND_IN_KEY = "workbench_stand_in"
STAND_IN_LABEL = "random stand-in"


def is_stand_in(model: HookedTransformer) -> bool:
    """Whether ``model`` is a random stand-in built by :func:`load` or :func:`tiny`, also after
    ``save_pretrained`` and loading it again (the notice is kept in ``config.json``)."""
    return stand_in_notice(model) is not None


def stand_in_notice(model: Any) -> str | None:
    """The stand-in notice of ``model`` (a workbench model, or anything with a ``config``), else None."""
    notice = getattr(model, "stand_in_notice", None)
    if notice is None:
        extra = getattr(getattr(model, "config", None), "extra", None)
        notice = extra.get(STAND_IN_KEY) if isinstance(extra, dict) else None
    return notice


def display_name(model: Any, name: str | None = None) -> str:
    """The label of ``model`` in figures and tables: ``name`` (default: where the model was loaded from),
    with ``" (random stand-in)"`` appended when the model is one (``"gpt2 (random stand-in)"``).

    >>> display_name(tiny("gpt2", device="cpu"), "gpt2")  # doctest: +SKIP
    'gpt2 (random stand-in)'
    """
    if name is None:
        config = getattr(model, "config", None)
        name = getattr(config, "name_or_path", "") or type(model).__name__
    return labelled(name, is_stand_in(model))


def labelled(name: Any, stand_in: bool) -> str:
    """``name`` with ``" (random stand-in)"`` appended when ``stand_in`` (once): the label of a model named in a
    results table, e.g. from its ``stand_in`` column."""
    name = str(name)
    if stand_in and STAND_IN_LABEL not in name:
        return f"{name} ({STAND_IN_LABEL})"
    return name


def architecture_of(name_or_path: str | Path) -> str | None:
    """The ``model_type`` a hub name or folder name stands for (``"roberta-base"`` -> ``"roberta"``), or None.

    Read from each architecture's ``name_patterns``; a name that matches none, or the patterns of several
    architectures (logged as a warning), stands for none.
    """
    name = Path(str(name_or_path)).name.lower()
    matching = [architecture.model_type for architecture in REGISTRY.matching(name)]
    if len(matching) > 1:
        logger.warning(
            "%s matches the name patterns of several architectures (%s): pass architecture= to choose one",
            name_or_path,
            ", ".join(matching),
        )
        return None
    return matching[0] if matching else None


def describe(model: HookedTransformer) -> str:
    """``"4 layers, d_model 128, 4 heads, vocabulary 2000"``."""
    config = model.config
    vocab = model.tokenizer.vocab_size if model.tokenizer is not None else config.vocab_size
    return f"{model.n_layers} layers, d_model {config.d_model}, {config.n_heads} heads, vocabulary {vocab}"


def tiny(
    architecture: str,
    task: str | None = None,
    device: torch.device | str | None = "auto",
    size: TinySize = DEFAULT_SIZE,
    seed: int = 0,
    **config_overrides: Any,
) -> HookedTransformer:
    """A random-initialized small model of ``architecture`` (a ``model_type``) with a tokenizer of its family.

    The model and its tokenizer are built the way a checkpoint folder would be read: the tokenizer's files
    and ``config.json`` are written to a temporary folder and loaded back with :class:`Tokenizer`, so the
    stand-in's tokenizer behaves like a released one of the family (special tokens, padding, word ids).

    Raises:
        ValueError: for an architecture with no stand-in, or a task that architecture has no head for.
    """
    record = REGISTRY.get(architecture)
    if record is None or record.tokenizer_family not in STAND_INS:
        raise ValueError(
            f"no tiny stand-in for architecture {architecture!r}; stand-ins exist for {stand_in_architectures()}"
        )
    task = task or record.default_task
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASKS)}")
    if record.model_class(task) is None:
        raise ValueError(f"{architecture} has no {task} head; {task} exists for {sorted(REGISTRY.classes(task))}")
    with tempfile.TemporaryDirectory(prefix=f"workbench-tiny-{architecture}-") as folder:
        folder = Path(folder)
        vocabulary = write_stand_in(
            record.tokenizer_family, folder, size.bpe_vocab_size, size.n_positions, record.tokenizer_class
        )
        config = AutoConfig.for_model(architecture, **record.tiny_fields(size, vocabulary), **config_overrides)
        config.name_or_path = f"tiny-random-{architecture}"
        config.save_pretrained(folder)  # the tokenizer reads model_type from it (XLM, DistilBERT inputs)
        tokenizer = Tokenizer.from_pretrained(folder)
    tokenizer.name_or_path = config.name_or_path
    model = record.model_class(task).from_config(config, seed=seed)
    model.tokenizer = tokenizer
    model.stand_in_notice = f"tiny random {DISPLAY_NAMES.get(architecture, architecture)} ({describe(model)})"
    if device == "auto":
        device = default_device()
    return model.to(device)


def checkpoint_folder(
    name_or_path: str | Path,
    cache_dir: str | Path | None = None,
    architecture: str | None = None,
    size: TinySize = DEFAULT_SIZE,
    seed: int = 0,
) -> Path:
    """A checkpoint folder for ``name_or_path``, for APIs that take names (``probes.run``, the benchmarks).

    The checkpoint's own folder when it can be found (a folder, an alias, the hub or its cache); else a tiny
    stand-in (see :func:`load`, which logs the same one-line notice) saved with its tokenizer to
    ``cache_dir/tiny-random-<architecture>`` (default: a new temporary folder, left for the caller).
    """
    try:
        return resolve_checkpoint(name_or_path)
    except CheckpointNotFoundError:
        model = load(name_or_path, task="base", device="cpu", architecture=architecture, size=size, seed=seed)
    root = Path(cache_dir) if cache_dir is not None else Path(tempfile.mkdtemp(prefix="workbench-tiny-"))
    return model.save_pretrained(root / model.config.name_or_path)
