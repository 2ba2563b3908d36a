"""An on-disk store of word representations: one float16 memmap per layer, resumable, memory-flat.

:func:`extract` runs a workbench model over sentences given as words (e.g. Universal Dependencies words),
pools each word's subword tokens into one vector (first, mean or last subword) at every chosen layer, and
writes the vectors to ``folder``:

- ``layer_{i}.f16``: a float16 ``numpy.memmap`` [n_words_total, d_model] per layer; layer 0 is the embedding
  output (``blocks.0.hook_resid_pre``), layer i >= 1 is ``blocks.{i-1}.{hook}`` (``hook_resid_post`` by
  default), so layer i is Hugging Face's ``hidden_states[i]`` for BERT-like models;
- ``n_subwords.u16``: a uint16 memmap [n_words_total]: how many tokens each word had (0 when a word got no
  token: truncated away, or an empty string; its vectors are then zeros);
- ``sentence_offsets.npy``: int64 [n_sentences + 1]; sentence s holds rows ``offsets[s]:offsets[s + 1]``;
- ``manifest.json``: what was extracted — the model's fingerprint (a hash of its weights as loaded, dtype,
  config and attached editing hooks: :func:`workbench.provenance.model_fingerprint`), the tokenizer's, the
  data's (hash of the words), pooling, hook, layers, batch size, truncation length, shapes — ``progress``
  (the number of sentences done), a hash of the offsets, and a checksum of the manifest itself.

Sentences are batched by token count (longest first) for speed; each sentence's words are written at its
original offset. Each batch is written to the memmaps, flushed, and only then counted in ``progress``, so an
interrupted run leaves a consistent store that the next call with the same arguments continues (the order
of sentences is a function of the data alone, so the result is byte-identical to an uninterrupted run with
the same batch size). A folder holding another extraction — another model (even one of the same config
with other weights, dtype or editing hooks), other data or other arguments — raises :class:`StoreError`
naming what differs; ``overwrite=True`` replaces it. Before a store is resumed or read, the manifest's
checksum, the offsets and every file's size are checked: a damaged or truncated store is a
:class:`StoreError` naming the file, and nothing is ever extended or zero-filled.

>>> store = extract(model, [["The", "keys", "are", "here", "."]], "acts/minilm")  # doctest: +SKIP
>>> store.stack(layers=[3, 6]).shape  # [layer, n_words, d_model]  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench.probing import EMBEDDING_HOOK, hook_name, resolve_layers  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

POOLINGS = ("first", "mean", "last")
MANIFEST = "manifest.json"
OFFSETS = "sentence_offsets.npy"
SUBWORDS = "n_subwords.u16"
FORMAT_VERSION = 2
STORE_DTYPE = "float16"
# Manifest keys that must agree for a folder to be resumed or reused (the rest describe the store).
IDENTITY_KEYS = (
    "format_version",
    "model",
    "model_class",
    "config_hash",
    "model_fingerprint",
    "tokenizer_fingerprint",
    "data_checksum",
    "data_fingerprint",
    "n_sentences",
    "n_words",
    "pooling",
    "hook",
    "layers",
    "d_model",
    "dtype",
    "add_prefix_space",
    "max_length",
    "batch_size",
)
_DESCRIPTIONS = {
    "model": "model",
    "model_class": "model class",
    "config_hash": "model config (hash)",
    "data_checksum": "data checksum",
    "n_sentences": "number of sentences",
    "n_words": "number of words",
    "pooling": "pooling",
    "hook": "hook",
    "layers": "layers",
    "d_model": "d_model",
    "dtype": "dtype",
    "add_prefix_space": "tokenizer add_prefix_space",
    "max_length": "max_length (truncation)",
    "format_version": "store format version",
    "model_fingerprint": "model fingerprint (weights, dtype, config, hooks)",
    "tokenizer_fingerprint": "tokenizer fingerprint",
    "data_fingerprint": "data fingerprint (hash of the words)",
    "batch_size": "batch_size",
}
_FIX = "Use another folder, or pass overwrite=True to extract into this one anew (or delete it)."


class StoreError(ValueError):
    """An activation store that cannot be used as asked: damaged or truncated files, a manifest that does
    not check, or a folder that holds another extraction. The message names the file or the difference,
    and the fix."""


def layer_file(layer: int) -> str:
    return f"layer_{layer}.f16"


def data_checksum(sentences: Sequence[Sequence[str]]) -> str:
    """sha256 of the sentences' words (one JSON list per sentence, in order)."""
    digest = hashlib.sha256()
    for words in sentences:
        digest.update(json.dumps(list(words), ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def config_hash(model) -> str:
    values = model.config.to_dict()
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def word_tokenizer(model):
    """The model's tokenizer, made fit for words, without reloading anything by name (stand-ins work too).

    A byte-level BPE tokenizer (GPT-2, RoBERTa) with ``add_prefix_space=False`` is copied with
    ``add_prefix_space=True``, so every word, the first included, is tokenized as a word that follows a space
    (otherwise the words are tokenized as if glued together), as ``from_pretrained(..., add_prefix_space=True)``
    would load it. A tokenizer with neither a pad nor an eos token (GPT's) is copied with its unknown token
    (else its token 0) as the pad token: padded positions have ``attention_mask`` 0 and no word, so they are
    never stored. The model's own tokenizer is left unchanged.
    """
    from tokenizers import Tokenizer as BackendTokenizer
    from tokenizers import processors

    tokenizer = model.tokenizer
    if tokenizer is None:
        raise ValueError(
            f"{type(model).__name__} has no tokenizer; set model.tokenizer = "
            f"workbench.AutoTokenizer.from_pretrained(...) first"
        )
    needs_prefix_space = tokenizer.add_prefix_space is False
    special = tokenizer.special_tokens
    needs_pad = not special.get("pad_token") and not special.get("eos_token")
    if not needs_prefix_space and not needs_pad:
        return tokenizer
    words = copy.copy(tokenizer)
    words.special_tokens = dict(special)
    words.saved_settings = dict(tokenizer.saved_settings)
    words.backend = BackendTokenizer.from_str(tokenizer.backend.to_str())
    if needs_prefix_space:
        words.backend.pre_tokenizer.add_prefix_space = True
        post = words.backend.post_processor
        if isinstance(post, processors.RobertaProcessing):
            words.backend.post_processor = processors.RobertaProcessing(
                tuple(post.sep), tuple(post.cls), post.trim_offsets, True
            )
        words.saved_settings["add_prefix_space"] = True
    if needs_pad:
        unk = special.get("unk_token")
        words.special_tokens["pad_token"] = (
            unk
            if unk is not None and words.backend.token_to_id(unk) is not None
            else words.backend.id_to_token(0)
        )
    return words


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of the tokenizer's pipeline (its ``tokenizer.json`` text), special tokens and padding side."""
    digest = hashlib.sha256(tokenizer.backend.to_str().encode("utf-8"))
    digest.update(json.dumps([sorted(tokenizer.special_tokens.items()), tokenizer.padding_side]).encode())
    return digest.hexdigest()


def _max_length(model, tokenizer) -> int:
    limits = [tokenizer.model_max_length, getattr(model.config, "max_position_embeddings", None)]
    return int(min(limit for limit in limits if limit is not None))


def _token_lengths(
    tokenizer, sentences: Sequence[Sequence[str]], max_length: int, chunk: int = 256
) -> np.ndarray:
    """Every sentence's token count (capped at max_length), tokenized in chunks: only the counts are kept."""
    lengths = np.zeros(len(sentences), dtype=np.int64)
    for start in range(0, len(sentences), chunk):
        batch = [list(words) for words in sentences[start : start + chunk]]
        encodings = tokenizer.backend.encode_batch(batch, is_pretokenized=True, add_special_tokens=True)
        lengths[start : start + len(batch)] = [min(len(e.ids), max_length) for e in encodings]
    return lengths


def _manifest_checksum(values: dict[str, Any]) -> str:
    body = {key: value for key, value in values.items() if key != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()


def _write_manifest(path: Path, values: dict[str, Any]) -> None:
    """Write the manifest with its checksum, atomically (a crash leaves the old or the new one)."""
    values["checksum"] = _manifest_checksum(values)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(values, indent=2))
    os.replace(tmp, path)


def _offsets_hash(offsets: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(offsets, dtype="<i8").tobytes()).hexdigest()


def _damaged(path: Path, problem: str) -> StoreError:
    return StoreError(
        f"{path} is damaged: {problem}. The activation store in {path.parent} cannot be trusted; delete the "
        f"folder, or call extract(..., overwrite=True) to extract again."
    )


def _is_int(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest of the store in ``folder``, checked: valid JSON, its checksum, every field's type and range.

    Raises:
        FileNotFoundError: no manifest.
        StoreError: a damaged manifest (names the file, the problem and the fix); a manifest of another store
            format version.
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"no activation store in {Path(folder)}: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise _damaged(path, f"not valid JSON ({err})") from None
    if not isinstance(manifest, dict):
        raise _damaged(path, f"a JSON {type(manifest).__name__}, not an object")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION and _is_int(version) and "checksum" not in manifest:
        raise StoreError(
            f"{path} was written by store format version {version}; this version reads version "
            f"{FORMAT_VERSION}, which also records the model's weights fingerprint. {_FIX}"
        )
    if manifest.get("checksum") != _manifest_checksum(manifest):
        raise _damaged(path, "its checksum does not match its content (edited or corrupted)")
    if version != FORMAT_VERSION:
        raise StoreError(
            f"{path} is store format version {version!r}; this version reads {FORMAT_VERSION}. {_FIX}"
        )
    _check_fields(path, manifest)
    return manifest


def _check_fields(path: Path, manifest: dict[str, Any]) -> None:
    problems = []
    for key in ("n_sentences", "progress", "words_without_tokens"):
        if not _is_int(manifest.get(key)):
            problems.append(f"{key} must be an int >= 0, got {manifest.get(key)!r}")
    for key in ("n_words", "d_model"):
        if not _is_int(manifest.get(key), 1):
            problems.append(f"{key} must be an int >= 1, got {manifest.get(key)!r}")
    layers = manifest.get("layers")
    if not isinstance(layers, list) or not layers or not all(_is_int(layer) for layer in layers):
        problems.append(f"layers must be a non-empty list of ints >= 0, got {layers!r}")
    elif layers != sorted(set(layers)):
        problems.append(f"layers must be sorted and unique, got {layers}")
    if manifest.get("pooling") not in POOLINGS:
        problems.append(f"pooling must be one of {POOLINGS}, got {manifest.get('pooling')!r}")
    if manifest.get("dtype") != STORE_DTYPE:
        problems.append(f"dtype must be {STORE_DTYPE!r}, got {manifest.get('dtype')!r}")
    if not isinstance(manifest.get("offsets_sha256"), str):
        problems.append("offsets_sha256 is missing")
    if not problems:
        if manifest["progress"] > manifest["n_sentences"]:
            problems.append(f"progress {manifest['progress']} > n_sentences {manifest['n_sentences']}")
        if manifest.get("shape") != [manifest["n_words"], manifest["d_model"]]:
            problems.append(f"shape {manifest.get('shape')!r} is not [n_words, d_model]")
        if manifest.get("files") != {str(layer): layer_file(layer) for layer in layers}:
            problems.append(f"files {manifest.get('files')!r} do not match layers {layers}")
    if problems:
        raise _damaged(path, "; ".join(problems))


def read_offsets(folder: Path, manifest: dict[str, Any]) -> np.ndarray:
    """``sentence_offsets.npy``, checked against the manifest (shape, dtype, hash, first 0, last n_words)."""
    path = folder / OFFSETS
    if not path.is_file():
        raise _damaged(path, "the file is missing")
    try:
        offsets = np.load(path, allow_pickle=False)
        with path.open("rb") as handle:  # np.load ignores bytes after the array: the size must be exact
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            read_header(handle)
            data_start = handle.tell()
    except Exception as err:  # numpy raises ValueError, OSError, EOFError... for a damaged .npy
        raise _damaged(path, f"not a readable .npy file ({type(err).__name__}: {err})") from None
    if path.stat().st_size != data_start + offsets.nbytes:
        raise _damaged(
            path, f"{path.stat().st_size} bytes, but its header describes {data_start + offsets.nbytes}"
        )
    expected = (manifest["n_sentences"] + 1,)
    if offsets.dtype != np.int64 or offsets.shape != expected:
        raise _damaged(path, f"int64 {expected} expected, found {offsets.dtype} {offsets.shape}")
    if _offsets_hash(offsets) != manifest["offsets_sha256"]:
        raise _damaged(path, "its content does not match the hash in the manifest")
    return offsets


def check_files(folder: str | Path, manifest: dict[str, Any]) -> None:
    """Every data file of the store exists and has exactly the size the manifest implies.

    Raises:
        StoreError: naming the file, its size and the expected size (a file is never extended or cut here).
    """
    folder = Path(folder)
    n_words, d_model = manifest["n_words"], manifest["d_model"]
    expected = {
        layer_file(layer): n_words * d_model * np.dtype(np.float16).itemsize for layer in manifest["layers"]
    }
    expected[SUBWORDS] = n_words * np.dtype(np.uint16).itemsize
    for name, size in expected.items():
        path = folder / name
        if not path.is_file():
            raise _damaged(path, "the file is missing")
        actual = path.stat().st_size
        if actual != size:
            raise _damaged(
                path,
                f"{actual} bytes, but the manifest's shape [{n_words}, {d_model}] needs {size} "
                f"({'truncated' if actual < size else 'too long'})",
            )


def _check_same(stored: dict[str, Any], wanted: dict[str, Any], folder: Path) -> None:
    from workbench.provenance import differences as record_differences

    differences = []
    for key in IDENTITY_KEYS:
        if stored.get(key) != wanted.get(key):
            if isinstance(wanted.get(key), dict) and isinstance(stored.get(key), dict):
                detail = ", ".join(record_differences(stored[key], wanted[key]))
                differences.append(f"{_DESCRIPTIONS[key]}: {detail}")
            else:
                differences.append(
                    f"{_DESCRIPTIONS[key]}: stored {stored.get(key)!r}, requested {wanted.get(key)!r}"
                )
    if differences:
        raise StoreError(
            f"{folder} already holds another extraction; differences: " + "; ".join(differences) + f". {_FIX}"
        )


def _remove_store_files(folder: Path) -> None:
    """Delete what extract writes (the manifest first, so an interruption never leaves a stale claim)."""
    for name in (MANIFEST, MANIFEST + ".tmp", OFFSETS, SUBWORDS):
        (folder / name).unlink(missing_ok=True)
    for path in folder.glob("layer_*.f16"):
        path.unlink()


def _pool(
    activation: torch.Tensor,
    rows: torch.Tensor,
    positions: torch.Tensor,
    word_index: torch.Tensor,
    n_words: int,
    pooling: str,
) -> torch.Tensor:
    """Pool token vectors [batch, pos, d] into word vectors [n_words, d] (float32; words without tokens: 0)."""
    tokens = activation[rows, positions].float()  # [n_tokens, d], in order of position within each row
    out = torch.zeros(n_words, activation.shape[-1], dtype=torch.float32, device=activation.device)
    if pooling == "mean":
        out.index_add_(0, word_index, tokens)
        counts = torch.bincount(word_index, minlength=n_words).clamp(min=1).to(out.dtype)
        return out / counts[:, None]
    # first: the last write of a reversed sequence wins; last: the last write wins. index_copy_ with repeated
    # indices is not deterministic, so pick one token per word explicitly.
    n_tokens = word_index.shape[0]
    order = torch.arange(n_tokens, device=activation.device)
    pick = torch.full((n_words,), -1, dtype=torch.long, device=activation.device)
    reduce = "amin" if pooling == "first" else "amax"
    pick.scatter_reduce_(0, word_index, order, reduce=reduce, include_self=False)
    has = pick >= 0
    out[has] = tokens[pick[has]]
    return out


def extract(
    model,
    sentences: Sequence[Sequence[str]],
    folder: str | Path,
    pooling: str = "mean",
    layers: str | Sequence[int] = "all",
    batch_size: int = 32,
    hook: str = "hook_resid_post",
    data_id: str | None = None,
    progress: bool = True,
    max_batches: int | None = None,
    overwrite: bool = False,
) -> ActivationStore:
    """Extract pooled word representations of ``sentences`` into ``folder``, resuming a partial run.

    Args:
        model: a workbench model with a tokenizer; it runs on its own device (GPU if it is there), no grad.
        sentences: each a list of words (already split, e.g. UD words).
        folder: the store's folder (created).
        pooling: ``"first"``, ``"mean"`` or ``"last"`` subword of each word.
        layers: ``"all"`` (0 = embedding output, then 1..n_layers = each block's ``hook``) or a list of ints.
        batch_size: sentences per forward pass (batched by token count).
        hook: the block hook stored for layers >= 1 (layer 0 is always ``blocks.0.hook_resid_pre``). Note that
            GPT-2's last ``hook_resid_post`` is before the final LayerNorm (Hugging Face's last hidden state is
            after it).
        data_id: a name for the data, recorded as ``data_checksum`` instead of the sha256 of the words (the
            hash of the words is recorded and compared as ``data_fingerprint`` all the same).
        progress: show a tqdm progress bar.
        max_batches: process at most this many batches in this call, leaving the store resumable (for runs in
            chunks, and tests).
        overwrite: replace whatever store ``folder`` holds instead of refusing one made another way.

    Returns:
        an :class:`ActivationStore` over ``folder`` (``.complete`` is False when ``max_batches`` stopped early).

    Words longer than the model's context are truncated; words left without any token get zero vectors and
    ``n_subwords`` 0 (counted in the manifest's ``words_without_tokens``).

    Raises:
        StoreError: ``folder`` holds an extraction made another way (the message names every difference:
            model weights, dtype, hooks, tokenizer, data, pooling, layers, ...), or a damaged one (names the
            file). Reuse and resume happen only when everything that changes the numbers is equal.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    chosen = resolve_layers(layers, model.n_layers)
    if f"blocks.0.{hook}" not in model.hook_names:
        block_hooks = sorted(
            {name.split(".", 2)[2] for name in model.hook_names if name.startswith("blocks.0.")}
        )
        raise ValueError(
            f"hook {hook!r} is not a block hook of {type(model).__name__}; choose one of {block_hooks}"
        )
    sentences = [list(words) for words in sentences] if not isinstance(sentences, list) else sentences
    for index, words in enumerate(sentences):
        if isinstance(words, str) or not all(isinstance(word, str) for word in words):
            raise TypeError(f"sentence {index} must be a list of words (str), got {words!r:.80}")
    tokenizer = word_tokenizer(model)
    max_length = _max_length(model, tokenizer)
    lengths_words = np.fromiter((len(words) for words in sentences), dtype=np.int64, count=len(sentences))
    offsets = np.zeros(len(sentences) + 1, dtype=np.int64)
    np.cumsum(lengths_words, out=offsets[1:])
    n_words = int(offsets[-1])
    if n_words == 0:
        raise ValueError("the sentences hold no words")
    d_model = int(model.config.d_model)
    from workbench.provenance import model_fingerprint
    from workbench.zoo import is_stand_in

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    checksum = data_checksum(sentences)
    wanted = {
        "format_version": FORMAT_VERSION,
        "model": str(model.config.name_or_path or tokenizer.name_or_path),
        "model_class": type(model).__name__,
        "config_hash": config_hash(model),
        "model_fingerprint": model_fingerprint(model),
        "stand_in": is_stand_in(model),
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),
        "data_checksum": data_id if data_id is not None else checksum,
        "data_fingerprint": checksum,
        "n_sentences": len(sentences),
        "n_words": n_words,
        "pooling": pooling,
        "hook": hook,
        "layers": chosen,
        "layer_hooks": {str(layer): hook_name(layer, hook) for layer in chosen},
        "d_model": d_model,
        "dtype": STORE_DTYPE,
        "add_prefix_space": tokenizer.add_prefix_space,
        "max_length": max_length,
        "batch_size": batch_size,
        "shape": [n_words, d_model],
        "files": {str(layer): layer_file(layer) for layer in chosen},
        "offsets_file": OFFSETS,
        "subwords_file": SUBWORDS,
        "offsets_sha256": _offsets_hash(offsets),
        "progress": 0,
        "words_without_tokens": 0,
    }
    manifest_path = folder / MANIFEST
    if overwrite:
        _remove_store_files(folder)
    if manifest_path.is_file():
        stored = read_manifest(folder)
        _check_same(stored, wanted, folder)
        read_offsets(folder, stored)
        check_files(folder, stored)  # before any memmap is opened for writing: nothing is ever extended
        if stored["progress"] >= stored["n_sentences"]:
            return ActivationStore(folder)
        manifest = stored
        mode = "r+"
    else:
        manifest = wanted
        mode = "w+"
        np.save(folder / OFFSETS, offsets)
    shape = (n_words, d_model)
    maps = {
        layer: np.memmap(folder / layer_file(layer), dtype=np.float16, mode=mode, shape=shape)
        for layer in chosen
    }
    subwords = np.memmap(folder / SUBWORDS, dtype=np.uint16, mode=mode, shape=(n_words,))
    if mode == "w+":
        for array in (*maps.values(), subwords):
            array.flush()
        _write_manifest(manifest_path, manifest)  # progress 0: the files exist and are sized

    token_lengths = _token_lengths(tokenizer, sentences, max_length)
    order = np.argsort(-token_lengths, kind="stable")  # longest first: memory trouble shows at once
    del token_lengths
    names = [hook_name(layer, hook) for layer in chosen]
    device = model.device
    done = int(manifest["progress"])
    bar = _progress_bar(len(sentences), done, progress)
    batches = 0
    try:
        while done < len(sentences) and (max_batches is None or batches < max_batches):
            batch = order[done : done + batch_size]
            words = [sentences[i] for i in batch]
            encoding = tokenizer(
                words,
                is_split_into_words=True,
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            rows, positions, word_index, counts = _token_map(encoding, [len(w) for w in words])
            n_batch_words = int(counts.shape[0])
            inputs = {k: v.to(device) for k, v in encoding.items()}
            with torch.inference_mode():
                _, cache = model.run_with_cache(inputs, names_filter=names)
                index = (rows.to(device), positions.to(device), word_index.to(device))
                pooled = {
                    layer: _pool(cache[name], *index, n_batch_words, pooling).to(torch.float16).cpu().numpy()
                    for layer, name in zip(chosen, names)
                }
            del cache
            destination = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in batch])
            for layer in chosen:
                maps[layer][destination] = pooled[layer]
                maps[layer].flush()
            subwords[destination] = np.minimum(counts.numpy(), np.iinfo(np.uint16).max)
            subwords.flush()
            done += len(batch)
            batches += 1
            manifest["progress"] = done
            manifest["words_without_tokens"] = int(manifest.get("words_without_tokens", 0)) + int(
                (counts == 0).sum()
            )
            _write_manifest(manifest_path, manifest)
            bar.update(len(batch))
    finally:
        bar.close()
        del maps, subwords
    if done >= len(sentences) and manifest["words_without_tokens"]:
        logger.warning(
            "%d words got no token (truncated or empty) and hold zero vectors; see n_subwords",
            manifest["words_without_tokens"],
        )
    return ActivationStore(folder)


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="sent", desc="extract")


def _token_map(encoding, n_words: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """For every token that belongs to a word: its row, position and batch-level word index; and the number
    of tokens of each word of the batch (sentences concatenated in batch order)."""
    rows, positions, word_index = [], [], []
    first_word = 0
    for row, count in enumerate(n_words):
        for position, word in enumerate(encoding.word_ids(row)):
            if word is not None:
                rows.append(row)
                positions.append(position)
                word_index.append(first_word + word)
        first_word += count
    word_index_tensor = torch.tensor(word_index, dtype=torch.long)
    counts = torch.bincount(word_index_tensor, minlength=first_word)
    return (
        torch.tensor(rows, dtype=torch.long),
        torch.tensor(positions, dtype=torch.long),
        word_index_tensor,
        counts,
    )


class ActivationStore:
    """Read access to a folder written by :func:`extract` (memmaps: nothing is loaded until indexed).

    Attributes:
        manifest: the manifest dict; layers: the stored layer numbers; offsets: int64 [n_sentences + 1];
        n_words, n_sentences, d_model; complete: whether every sentence is done.

    Raises:
        FileNotFoundError: no manifest in ``folder``.
        StoreError: a damaged manifest or offsets file, or a data file of another size than the manifest's
            shape implies (the message names the file).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.manifest: dict[str, Any] = read_manifest(self.folder)
        self.offsets: np.ndarray = read_offsets(self.folder, self.manifest)
        check_files(self.folder, self.manifest)
        self.layers: list[int] = list(self.manifest["layers"])
        self.n_words: int = int(self.manifest["n_words"])
        self.n_sentences: int = int(self.manifest["n_sentences"])
        self.d_model: int = int(self.manifest["d_model"])
        self._maps: dict[int, np.memmap] = {}
        if not self.complete:
            logger.warning(
                "%s is incomplete: %d of %d sentences done; run extract again to finish it",
                self.folder,
                self.manifest["progress"],
                self.n_sentences,
            )

    @property
    def complete(self) -> bool:
        return int(self.manifest["progress"]) >= self.n_sentences

    @property
    def n_subwords(self) -> np.memmap:
        """uint16 [n_words]: the number of tokens of each word (0: the word got none and its vectors are 0)."""
        return np.memmap(self.folder / SUBWORDS, dtype=np.uint16, mode="r", shape=(self.n_words,))

    def layer(self, layer: int) -> np.memmap:
        """The float16 memmap [n_words, d_model] of one layer (a layer number, as in ``.layers``)."""
        if layer not in self.layers:
            raise KeyError(f"layer {layer} is not in this store; stored layers: {self.layers}")
        if layer not in self._maps:
            self._maps[layer] = np.memmap(
                self.folder / layer_file(layer),
                dtype=np.float16,
                mode="r",
                shape=(self.n_words, self.d_model),
            )
        return self._maps[layer]

    def sentence(self, index: int, layer: int) -> np.ndarray:
        """The word vectors [n_words_of_sentence, d_model] of sentence ``index`` at ``layer``."""
        if not -self.n_sentences <= index < self.n_sentences:
            raise IndexError(f"sentence {index} out of range (the store has {self.n_sentences})")
        index %= self.n_sentences
        return self.layer(layer)[self.offsets[index] : self.offsets[index + 1]]

    def stack(self, layers: Sequence[int] | None = None, rows=None) -> torch.Tensor:
        """float32 tensor [layer, n, d_model] of the chosen layers (default all) and word rows (default all:
        a slice, an index array or a boolean mask over words); only those rows are read."""
        chosen = self.layers if layers is None else list(layers)
        if rows is None:
            rows = slice(None)
        elif not isinstance(rows, slice):
            rows = np.asarray(rows)
            if rows.dtype == bool:
                rows = np.flatnonzero(rows)
        first = np.asarray(self.layer(chosen[0])[rows], dtype=np.float32)
        out = torch.empty((len(chosen), *first.shape), dtype=torch.float32)
        out[0] = torch.from_numpy(first)
        for i, layer in enumerate(chosen[1:], start=1):
            out[i] = torch.from_numpy(np.asarray(self.layer(layer)[rows], dtype=np.float32))
        return out

    def batches(self, layer: int, batch_size: int = 4096) -> LayerBatches:
        """The word vectors of ``layer`` as float32 batches [<= batch_size, d_model], read in order (what
        ``workbench.sae.train(..., data=store.batches(layer))`` trains a dictionary on)."""
        self.layer(layer)  # an unknown layer is a KeyError now, not when iterated
        return LayerBatches(self, layer, batch_size)

    def __repr__(self) -> str:
        return (
            f"ActivationStore({str(self.folder)!r}, model={self.manifest['model']!r}, "
            f"pooling={self.manifest['pooling']!r}, layers={self.layers}, shape=[{self.n_words}, "
            f"{self.d_model}], progress={self.manifest['progress']}/{self.n_sentences})"
        )


class LayerBatches:
    """One stored layer's word vectors as float32 tensors [<= batch_size, d_model], in row order, leaving out
    words that got no token (their vectors are zeros). Iterating again starts over, so a consumer can run
    several epochs or resume part-way (``workbench.sae.train`` does both)."""

    def __init__(self, store: ActivationStore, layer: int, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.store, self.layer, self.batch_size = store, layer, batch_size

    def __iter__(self):
        vectors, counts = self.store.layer(self.layer), self.store.n_subwords
        for start in range(0, self.store.n_words, self.batch_size):
            stop = start + self.batch_size
            rows = np.asarray(vectors[start:stop], dtype=np.float32)[np.asarray(counts[start:stop]) > 0]
            if len(rows):
                yield torch.from_numpy(rows)
