"""An activation store of word representations: one row-chunked zarr v3 array per layer, written by one process
or by many at once (``torchrun``), resumable per chunk, on a local folder or any fsspec URL.

:func:`extract` runs a workbench model over sentences given as words (e.g. Universal Dependencies words),
pools each word's subword tokens into one vector (first, mean or last subword) at every chosen layer, and
writes the vectors to ``folder`` (a path, or a URL such as ``memory://acts``, ``file:///data/acts`` or
``s3://bucket/acts`` with ``s3fs`` installed), a zarr v3 group holding:

- ``layer_{i}``: float16 [n_words_total, d_model] per layer, chunked by ``chunk_rows`` rows; layer 0 is the
  embedding output (``blocks.0.hook_resid_pre``), layer i >= 1 is ``blocks.{i-1}.{hook}``
  (``hook_resid_post`` by default), so layer i is Hugging Face's ``hidden_states[i]`` for BERT-like models;
- ``n_subwords``: uint16 [n_words_total]: how many tokens each word had (0 when a word got no token:
  truncated away, or an empty string; its vectors are then zeros);
- ``sentence_offsets``: int64 [n_sentences + 1]; sentence s holds rows ``offsets[s]:offsets[s + 1]``;
- ``chunks_done``: uint8 [n_chunks], one object per chunk: 1 once that chunk's rows of every array are written;
- the manifest, as the group's ``manifest`` attribute: what was extracted — the model's fingerprint (a hash
  of its weights as loaded, dtype, config and attached editing hooks:
  :func:`workbench.provenance.model_fingerprint`), the tokenizer's, the data's (hash of the words), pooling,
  hook, layers, batch size, chunk size, truncation length, shapes — ``progress`` (sentences done), a hash
  of the offsets, and a checksum of the manifest itself.

Every chunk ends with a CRC32C checksum: a changed byte is an error when read. The unit of work is a chunk
of rows: the sentences that overlap it are sorted by token count and batched, and only its rows are
written. Under ``torchrun`` (or any launcher setting ``RANK``/``WORLD_SIZE``) each rank takes a strided
share of the chunks not yet done (:mod:`workbench.distributed`), so no two ranks ever write one chunk;
rank 0 creates the store and finalizes the manifest. A chunk's done record is written after its data, so
an interrupted run resumes with any number of processes, and the store equals a one-process run's byte for
byte (each chunk is computed the same way whoever computes it).

A store holding another extraction — another model (even one of the same config with other weights,
dtype or editing hooks), other data or other arguments — raises :class:`StoreError` naming what differs;
``overwrite=True`` replaces it. Before a store is resumed or read, the manifest's checksum, the offsets,
every array's metadata and every chunk object's size are checked, and every chunk recorded as done must
exist: a damaged or truncated store is a :class:`StoreError` naming the object, and nothing is ever
zero-filled.

Stores of the previous format (format version 2: one float16 ``numpy.memmap`` file per layer,
``manifest.json``) are still read by :class:`ActivationStore`, written with ``extract(..., format="memmap")``
(one process), and converted with :func:`convert`.

>>> store = extract(model, [["The", "keys", "are", "here", "."]], "acts/minilm")  # doctest: +SKIP
>>> store.stack(layers=[3, 6]).shape  # [layer, n_words, d_model]  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from workbench import distributed
from workbench.probing import EMBEDDING_HOOK, hook_name, resolve_layers  # noqa: F401  (re-exported)

from . import chunked
from .chunked import StoreError

logger = distributed.get_logger(__name__)

POOLINGS = ("first", "mean", "last")
FORMATS = ("zarr", "memmap")
FORMAT_VERSION = 3  # the zarr store; extract writes it unless format="memmap"
MEMMAP_FORMAT_VERSION = 2  # the previous format: memmap files and manifest.json (read, converted, written)
MANIFEST = "manifest.json"
OFFSETS = "sentence_offsets.npy"
SUBWORDS = "n_subwords.u16"
STORE_DTYPE = "float16"
# The zarr store's arrays and the group attribute holding the manifest.
MANIFEST_ATTRIBUTE = "manifest"
OFFSETS_ARRAY = "sentence_offsets"
SUBWORDS_ARRAY = "n_subwords"
DONE_ARRAY = "chunks_done"
CHUNK_BYTES = 8 * 2**20  # default chunk: about 8 MiB of one layer (8192 rows of d_model 384, 1024 of 4096)
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
    "chunk_rows",
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
    "chunk_rows": "chunk_rows (rows per chunk: the unit of work and of batching)",
}
_FIX = "Use another folder, or pass overwrite=True to extract into this one anew (or delete it)."


def layer_file(layer: int) -> str:
    """The memmap file of ``layer`` in a format-2 store."""
    return f"layer_{layer}.f16"


def layer_array(layer: int) -> str:
    """The zarr array of ``layer``."""
    return f"layer_{layer}"


def default_chunk_rows(d_model: int) -> int:
    """Rows per chunk: a power of two near :data:`CHUNK_BYTES` of float16 [rows, d_model], 64 at least."""
    return max(64, 2 ** round(np.log2(CHUNK_BYTES / (2 * d_model))))


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
    if version != MEMMAP_FORMAT_VERSION and _is_int(version) and "checksum" not in manifest:
        raise StoreError(
            f"{path} was written by store format version {version}; this version reads versions "
            f"{MEMMAP_FORMAT_VERSION} and {FORMAT_VERSION}, which also record the model's weights fingerprint. "
            f"{_FIX}"
        )
    if manifest.get("checksum") != _manifest_checksum(manifest):
        raise _damaged(path, "its checksum does not match its content (edited or corrupted)")
    if version != MEMMAP_FORMAT_VERSION:
        raise StoreError(
            f"{path} is store format version {version!r}; a manifest.json store is format "
            f"{MEMMAP_FORMAT_VERSION}. {_FIX}"
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
        if manifest.get("format_version") == FORMAT_VERSION:
            problems.extend(_zarr_field_problems(manifest))
        elif manifest.get("files") != {str(layer): layer_file(layer) for layer in layers}:
            problems.append(f"files {manifest.get('files')!r} do not match layers {layers}")
    if problems:
        raise _damaged(path, "; ".join(problems))


def _zarr_field_problems(manifest: dict[str, Any]) -> list[str]:
    problems = []
    chunk_rows = manifest.get("chunk_rows")
    if not _is_int(chunk_rows, 1):
        return [f"chunk_rows must be an int >= 1, got {chunk_rows!r}"]
    if manifest.get("n_chunks") != chunked.n_chunks(manifest["n_words"], chunk_rows):
        problems.append(f"n_chunks {manifest.get('n_chunks')!r} does not match n_words and chunk_rows")
    if manifest.get("arrays") != {str(layer): layer_array(layer) for layer in manifest["layers"]}:
        problems.append(f"arrays {manifest.get('arrays')!r} do not match layers {manifest['layers']}")
    return problems


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


def _check_same(stored: dict[str, Any], wanted: dict[str, Any], folder) -> None:
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
    format: str = "zarr",
    chunk_rows: int | None = None,
    max_chunks: int | None = None,
) -> ActivationStore:
    """Extract pooled word representations of ``sentences`` into ``folder``, resuming a partial run.

    Alone, or under ``torchrun``: every rank calls it with the same arguments and takes its share of the
    chunks (see the module docstring); each returns the finished store.

    Args:
        model: a workbench model with a tokenizer; it runs on its own device (GPU if it is there), no grad.
            Under ``torchrun`` put each rank's model on its own GPU (``cuda:{LOCAL_RANK}``).
        sentences: each a list of words (already split, e.g. UD words).
        folder: the store's folder (created) or fsspec URL (``memory://...``, ``file://...``, ``s3://...``).
        pooling: ``"first"``, ``"mean"`` or ``"last"`` subword of each word.
        layers: ``"all"`` (0 = embedding output, then 1..n_layers = each block's ``hook``) or a list of ints.
        batch_size: sentences per forward pass (batched by token count).
        hook: the block hook stored for layers >= 1 (layer 0 is always ``blocks.0.hook_resid_pre``). Note that
            GPT-2's last ``hook_resid_post`` is before the final LayerNorm (Hugging Face's last hidden state is
            after it).
        data_id: a name for the data, recorded as ``data_checksum`` instead of the sha256 of the words (the
            hash of the words is recorded and compared as ``data_fingerprint`` all the same).
        progress: show a tqdm progress bar (on rank 0, counting every rank's words).
        max_batches: ``format="memmap"`` only: process at most this many batches in this call.
        overwrite: replace whatever store ``folder`` holds instead of refusing one made another way.
        format: ``"zarr"`` (the chunked store; any number of processes, local or URL) or ``"memmap"`` (the
            previous format: one process, a local folder).
        chunk_rows: zarr: rows per chunk (the unit of work, of resumption and of batching); default
            :func:`default_chunk_rows` (about 8 MiB of one layer).
        max_chunks: zarr: each rank processes at most this many chunks in this call, leaving the store
            resumable (for runs in pieces, and tests).

    Returns:
        an :class:`ActivationStore` (``.complete`` is False when ``max_chunks``/``max_batches`` stopped early).

    Words longer than the model's context are truncated; words left without any token get zero vectors and
    ``n_subwords`` 0 (counted in the manifest's ``words_without_tokens``).

    Raises:
        StoreError: ``folder`` holds an extraction made another way (the message names every difference:
            model weights, dtype, hooks, tokenizer, data, pooling, layers, ...), or a damaged one (names the
            file). Reuse and resume happen only when everything that changes the numbers is equal.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    for name, value in (("max_batches", max_batches), ("max_chunks", max_chunks), ("chunk_rows", chunk_rows)):
        if value is not None and (not _is_int(value, 1)):
            raise ValueError(f"{name} must be an int >= 1 or None, got {value!r}")
    if format == "memmap" and (chunk_rows is not None or max_chunks is not None):
        raise ValueError(
            "chunk_rows and max_chunks are options of format='zarr'; the memmap format has no chunks"
        )
    if format == "zarr" and max_batches is not None:
        raise ValueError(
            "max_batches is an option of format='memmap'; a zarr store stops by chunks: max_chunks"
        )
    job = _prepare(model, sentences, pooling, layers, batch_size, hook, data_id)
    if format == "memmap":
        if distributed.context().distributed:
            raise ValueError("format='memmap' is written by one process; under torchrun use format='zarr'")
        return _extract_memmap(job, Path(folder), progress, max_batches, overwrite)
    job.manifest.update(_zarr_manifest_fields(job, chunk_rows or default_chunk_rows(job.d_model)))
    return _extract_zarr(job, folder, progress, max_chunks, overwrite)


@dataclass
class _Job:
    """What one extraction computes: the model and its word tokenizer, the sentences, and the manifest."""

    model: Any
    tokenizer: Any
    sentences: list
    offsets: np.ndarray  # int64 [n_sentences + 1]
    layers: list[int]
    names: list[str]  # the hook of each layer
    pooling: str
    batch_size: int
    max_length: int
    manifest: dict[str, Any]

    @property
    def n_words(self) -> int:
        return int(self.offsets[-1])

    @property
    def d_model(self) -> int:
        return int(self.manifest["d_model"])


def _prepare(model, sentences, pooling, layers, batch_size, hook, data_id) -> _Job:
    """Check the arguments and build the manifest of the extraction they ask for (nothing is written)."""
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

    checksum = data_checksum(sentences)
    manifest = {
        "format_version": MEMMAP_FORMAT_VERSION,
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
    names = [hook_name(layer, hook) for layer in chosen]
    return _Job(
        model, tokenizer, sentences, offsets, chosen, names, pooling, batch_size, max_length, manifest
    )


def _pooled_batch(job: _Job, indices: np.ndarray) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """One forward pass over the sentences ``indices``: per layer the float16 word vectors [n_words_of_batch,
    d_model] (sentences concatenated in ``indices`` order), and every word's token count [n_words_of_batch]."""
    words = [job.sentences[i] for i in indices]
    encoding = job.tokenizer(
        words,
        is_split_into_words=True,
        padding=True,
        truncation=True,
        max_length=job.max_length,
        return_tensors="pt",
    )
    rows, positions, word_index, counts = _token_map(encoding, [len(w) for w in words])
    n_batch_words = int(counts.shape[0])
    device = job.model.device
    inputs = {k: v.to(device) for k, v in encoding.items()}
    with torch.inference_mode():
        _, cache = job.model.run_with_cache(inputs, names_filter=job.names)
        index = (rows.to(device), positions.to(device), word_index.to(device))
        pooled = {
            layer: _pool(cache[name], *index, n_batch_words, job.pooling).to(torch.float16).cpu().numpy()
            for layer, name in zip(job.layers, job.names)
        }
    del cache
    return pooled, counts.numpy()


def _rows_of(offsets: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The store rows of the words of sentences ``indices``, concatenated in that order."""
    if len(indices) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in indices])


# The memmap format (version 2) -------------------------------------------------------------------------


def _extract_memmap(job: _Job, folder: Path, progress: bool, max_batches, overwrite: bool) -> ActivationStore:
    """The format-2 writer: sentences in one global longest-first order, each batch flushed then counted."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted, offsets, sentences = job.manifest, job.offsets, job.sentences
    n_words, d_model = job.n_words, job.d_model
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
        for layer in job.layers
    }
    subwords = np.memmap(folder / SUBWORDS, dtype=np.uint16, mode=mode, shape=(n_words,))
    if mode == "w+":
        for array in (*maps.values(), subwords):
            array.flush()
        _write_manifest(manifest_path, manifest)  # progress 0: the files exist and are sized

    token_lengths = _token_lengths(job.tokenizer, sentences, job.max_length)
    order = np.argsort(-token_lengths, kind="stable")  # longest first: memory trouble shows at once
    del token_lengths
    done = int(manifest["progress"])
    bar = _progress_bar(len(sentences), done, progress)
    batches = 0
    try:
        while done < len(sentences) and (max_batches is None or batches < max_batches):
            batch = order[done : done + job.batch_size]
            pooled, counts = _pooled_batch(job, batch)
            destination = _rows_of(offsets, batch)
            for layer in job.layers:
                maps[layer][destination] = pooled[layer]
                maps[layer].flush()
            subwords[destination] = np.minimum(counts, np.iinfo(np.uint16).max)
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
    _warn_words_without_tokens(manifest, done >= len(sentences))
    return ActivationStore(folder)


def _warn_words_without_tokens(manifest: dict[str, Any], complete: bool) -> None:
    if complete and manifest["words_without_tokens"]:
        logger.warning(
            "%d words got no token (truncated or empty) and hold zero vectors; see n_subwords",
            manifest["words_without_tokens"],
        )


# The zarr format (version 3) ---------------------------------------------------------------------------


def _zarr_manifest_fields(job: _Job, chunk_rows: int) -> dict[str, Any]:
    """What the zarr store's manifest has instead of the memmap file names."""
    del job.manifest["files"], job.manifest["offsets_file"], job.manifest["subwords_file"]
    return {
        "format_version": FORMAT_VERSION,
        "format": "zarr",
        "chunk_rows": chunk_rows,
        "n_chunks": chunked.n_chunks(job.n_words, chunk_rows),
        "arrays": {str(layer): layer_array(layer) for layer in job.layers},
    }


def _zarr_damaged(location: chunked.Location, key: str, problem: str) -> StoreError:
    return StoreError(
        f"{location.describe(key)} is damaged: {problem}. The activation store in {location.url} cannot be "
        f"trusted; delete it, or call extract(..., overwrite=True) to extract again."
    )


def _open_group(location: chunked.Location, mode: str):
    return chunked.require_zarr().open_group(store=location.store, mode=mode, zarr_format=3)


def _holds_zarr_store(location: chunked.Location) -> bool:
    return chunked.exists(location, "zarr.json")


def read_zarr_manifest(location: chunked.Location) -> dict[str, Any]:
    """The manifest of the zarr store at ``location``, checked like :func:`read_manifest`'s.

    Raises:
        FileNotFoundError: no store there. StoreError: a damaged group or manifest (names the object).
    """
    if not _holds_zarr_store(location):
        raise FileNotFoundError(f"no activation store at {location.url}: zarr.json is missing")
    try:
        attributes = dict(_open_group(location, "r").attrs)
    except Exception as err:  # zarr raises many types for a damaged zarr.json
        raise _zarr_damaged(
            location, "zarr.json", f"not a readable zarr group ({type(err).__name__}: {err})"
        ) from None
    manifest = attributes.get(MANIFEST_ATTRIBUTE)
    if not isinstance(manifest, dict):
        raise _zarr_damaged(location, "zarr.json", "it holds no activation store manifest")
    if manifest.get("checksum") != _manifest_checksum(manifest):
        raise _zarr_damaged(location, "zarr.json", "the manifest's checksum does not match its content")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise StoreError(
            f"{location.describe('zarr.json')} is store format version {manifest.get('format_version')!r}; "
            f"a zarr store is format {FORMAT_VERSION}. {_FIX}"
        )
    _check_fields(Path(location.describe("zarr.json")), manifest)
    return manifest


def _write_zarr_manifest(group, manifest: dict[str, Any]) -> None:
    manifest["checksum"] = _manifest_checksum(manifest)
    group.attrs[MANIFEST_ATTRIBUTE] = manifest


def _zarr_arrays(manifest: dict[str, Any]) -> dict[str, tuple[int, tuple[int, ...], str]]:
    """{array name: (n_rows, row_shape, dtype)} of every row-chunked array the manifest implies."""
    n_words, d_model = manifest["n_words"], manifest["d_model"]
    arrays = {name: (n_words, (d_model,), STORE_DTYPE) for name in manifest["arrays"].values()}
    arrays[SUBWORDS_ARRAY] = (n_words, (), "uint16")
    arrays[DONE_ARRAY] = (manifest["n_chunks"], (), "uint8")
    return arrays


def _array_chunk_rows(manifest: dict[str, Any], name: str) -> int:
    return 1 if name == DONE_ARRAY else manifest["chunk_rows"]


def check_zarr_store(
    location: chunked.Location, manifest: dict[str, Any], chunks: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Check a zarr store against its manifest: the offsets (shape, hash), every array's shape, dtype and
    chunking, the done records, and (``chunks``) every chunk object's size and that every chunk recorded as
    done exists in every array: a listing of every array, which on object storage costs a request per
    thousand objects (a reader checks each chunk's size and checksum when it reads it anyway).

    Returns:
        (offsets int64 [n_sentences + 1], done bool [n_chunks]).

    Raises:
        StoreError: naming the damaged object (nothing is repaired or zero-filled).
    """
    group = _open_group(location, "r")
    offsets = _read_whole(location, group, OFFSETS_ARRAY, (manifest["n_sentences"] + 1,), "int64")
    if _offsets_hash(offsets) != manifest["offsets_sha256"]:
        raise _zarr_damaged(location, OFFSETS_ARRAY, "its content does not match the hash in the manifest")
    arrays = _zarr_arrays(manifest)
    for name, (n_rows, row_shape, dtype) in arrays.items():
        _check_array_metadata(
            location, group, name, (n_rows, *row_shape), dtype, _array_chunk_rows(manifest, name)
        )
    n_total = manifest["n_chunks"]
    chunked.check_chunks(
        location, DONE_ARRAY, n_total, chunked.chunk_nbytes(1, (), "uint8"), range(0), _damager(location), 1
    )
    done = _read_whole(location, group, DONE_ARRAY, (n_total,), "uint8") == 1
    required = set(np.flatnonzero(done).tolist())
    for name, (_, row_shape, dtype) in arrays.items():
        if chunks and name != DONE_ARRAY:
            nbytes = chunked.chunk_nbytes(manifest["chunk_rows"], row_shape, dtype)
            chunked.check_chunks(
                location, name, n_total, nbytes, required, _damager(location), 1 + len(row_shape)
            )
    return offsets, done


def _damager(location: chunked.Location):
    return lambda key, problem: _zarr_damaged(location, key, problem)


def _check_array_metadata(location, group, name: str, shape: tuple, dtype: str, chunk_rows: int) -> None:
    try:
        array = group[name]
    except Exception as err:
        raise _zarr_damaged(
            location, f"{name}/zarr.json", f"the array is missing or unreadable ({err})"
        ) from None
    expected_chunks = (chunk_rows, *shape[1:])
    if (
        tuple(array.shape) != shape
        or np.dtype(array.dtype) != np.dtype(dtype)
        or array.chunks != expected_chunks
    ):
        raise _zarr_damaged(
            location,
            f"{name}/zarr.json",
            f"{np.dtype(array.dtype)} {tuple(array.shape)} in chunks {array.chunks}, but the manifest needs "
            f"{dtype} {shape} in chunks {expected_chunks}",
        )
    codecs = [type(codec).__name__ for codec in array.metadata.codecs]
    if codecs != ["BytesCodec", "Crc32cCodec"]:
        raise _zarr_damaged(location, f"{name}/zarr.json", f"codecs {codecs}, not bytes + crc32c")


def _read_whole(location, group, name: str, shape: tuple, dtype: str) -> np.ndarray:
    """A small array read whole (offsets, done records), its metadata and every chunk checked first."""
    chunk_rows = 1 if name == DONE_ARRAY else shape[0]
    _check_array_metadata(location, group, name, shape, dtype, chunk_rows)
    try:
        return np.asarray(group[name][:])
    except Exception as err:  # a checksum mismatch, a short chunk
        raise _zarr_damaged(location, name, f"not readable ({type(err).__name__}: {err})") from None


def _chunk_sentences(offsets: np.ndarray, start: int, stop: int) -> np.ndarray:
    """The sentences with at least one word in rows [start, stop), in order."""
    first = int(np.searchsorted(offsets, start, side="right")) - 1
    last = int(np.searchsorted(offsets, stop, side="left"))
    candidates = np.arange(first, last)
    return candidates[offsets[candidates + 1] > offsets[candidates]]  # sentences without words have no rows


def _compute_chunk(job: _Job, chunk: int, chunk_rows: int) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """The rows [chunk * chunk_rows, ...) of every layer (float16 [rows, d_model]) and of n_subwords: the
    sentences overlapping the chunk, longest first in batches of ``batch_size``, only their rows kept."""
    start = chunk * chunk_rows
    stop = min(start + chunk_rows, job.n_words)
    members = _chunk_sentences(job.offsets, start, stop)
    lengths = _token_lengths(job.tokenizer, [job.sentences[i] for i in members], job.max_length)
    order = members[np.argsort(-lengths, kind="stable")]
    values = {layer: np.zeros((stop - start, job.d_model), dtype=np.float16) for layer in job.layers}
    subwords = np.zeros(stop - start, dtype=np.uint16)
    for first in range(0, len(order), job.batch_size):
        batch = order[first : first + job.batch_size]
        pooled, counts = _pooled_batch(job, batch)
        rows = _rows_of(job.offsets, batch)
        inside = (rows >= start) & (rows < stop)
        for layer in job.layers:
            values[layer][rows[inside] - start] = pooled[layer][inside]
        subwords[rows[inside] - start] = np.minimum(counts[inside], np.iinfo(np.uint16).max)
    return values, subwords


def _write_chunk(arrays: dict[str, Any], job: _Job, chunk: int, chunk_rows: int, values, subwords) -> None:
    """Write one chunk of every array (``arrays``: name -> zarr array), then its done record (so a chunk
    counts only once it is whole)."""
    start = chunk * chunk_rows
    stop = start + len(subwords)
    for layer in job.layers:
        arrays[layer_array(layer)][start:stop] = values[layer]
    arrays[SUBWORDS_ARRAY][start:stop] = subwords
    arrays[DONE_ARRAY][chunk] = 1


def _create_zarr_store(location: chunked.Location, manifest: dict[str, Any], offsets: np.ndarray):
    """Create the group, its arrays and the offsets, then the manifest (progress 0) last."""
    from zarr.codecs import BytesCodec, Crc32cCodec

    group = _open_group(location, "a")
    for name, (n_rows, row_shape, dtype) in _zarr_arrays(manifest).items():
        chunked.create_rows_array(group, name, n_rows, row_shape, dtype, _array_chunk_rows(manifest, name))
    offsets_array = group.create_array(
        OFFSETS_ARRAY,
        shape=offsets.shape,
        chunks=offsets.shape,
        dtype="int64",
        fill_value=0,
        serializer=BytesCodec(),
        compressors=[Crc32cCodec()],
        overwrite=True,
    )
    offsets_array[:] = offsets
    _write_zarr_manifest(group, manifest)
    return group


def _remove_zarr_store(location: chunked.Location) -> None:
    """Delete what a zarr store consists of (its zarr.json first, so an interruption leaves no stale claim),
    refusing a location that holds a zarr group which is not an activation store."""
    if not _holds_zarr_store(location):
        return
    try:
        attributes = dict(_open_group(location, "r").attrs)
    except Exception:
        attributes = {MANIFEST_ATTRIBUTE: None}  # a damaged store of ours is replaced as overwrite asks
    if MANIFEST_ATTRIBUTE not in attributes:
        raise StoreError(
            f"{location.url} holds a zarr group that is not an activation store; overwrite=True replaces only "
            f"activation stores. Choose another location."
        )
    chunked.remove(location, "zarr.json")
    for path in location.fs.ls(location.root, detail=False):
        name = str(path).rstrip("/").rsplit("/", 1)[-1]
        if name.startswith("layer_") or name in (OFFSETS_ARRAY, SUBWORDS_ARRAY, DONE_ARRAY):
            chunked.remove(location, name)


def _setup_zarr(job: _Job, location: chunked.Location, overwrite: bool) -> np.ndarray:
    """Rank 0: check an existing store against the wanted one (or replace it), or create a new one. Returns
    which chunks are done (bool [n_chunks]), for every rank: the others need not list the store again."""
    if overwrite:
        _remove_zarr_store(location)
        if location.is_local:
            _remove_store_files(Path(location.root))
    elif location.is_local and (Path(location.root) / MANIFEST).is_file():
        raise StoreError(
            f"{location.root} holds a store of the previous format (memmap files); convert it with "
            f"probes.store.convert({location.root!r}, new_location), or extract with format='memmap'. {_FIX}"
        )
    if _holds_zarr_store(location):
        stored = read_zarr_manifest(location)
        _check_same(stored, job.manifest, location.url)
        return check_zarr_store(location, stored)[1]
    _create_zarr_store(location, dict(job.manifest), job.offsets)
    return np.zeros(job.manifest["n_chunks"], dtype=bool)


def _extract_zarr(job: _Job, folder, progress: bool, max_chunks, overwrite: bool) -> ActivationStore:
    ctx = distributed.init()
    location = chunked.open_location(folder, read_only=False)
    if location.is_local:
        Path(location.root).mkdir(parents=True, exist_ok=True)
    failure = done = None
    if ctx.is_main:
        try:
            done = _setup_zarr(job, location, overwrite)  # checks every chunk of a store it resumes
        except Exception as err:  # told to the other ranks, so that none waits for a store never made
            failure = err
    failure, done = distributed.broadcast_object((failure, done))  # no rank lists the store again
    if failure is not None:
        raise failure
    stored = read_zarr_manifest(location)
    _check_same(stored, job.manifest, location.url)  # every rank runs the same model on the same data
    chunk_rows = stored["chunk_rows"]
    pending = np.flatnonzero(~done).tolist()
    mine = distributed.share(pending)[:max_chunks]
    steps = int(distributed.all_reduce_scalar(len(mine), "max"))  # every rank takes part in every step
    words_done = int(sum(min(chunk_rows, job.n_words - c * chunk_rows) for c in np.flatnonzero(done)))
    group = _open_group(location, "r+")
    arrays = {name: group[name] for name in _zarr_arrays(stored)}
    logger.info("%d of %d chunks to do; this rank does %d", len(pending), len(done), len(mine))
    with distributed.GlobalProgress(job.n_words, words_done, progress, "extract", "word") as bar:
        for step in range(steps):
            rows = 0
            if step < len(mine):
                values, subwords = _compute_chunk(job, mine[step], chunk_rows)
                _write_chunk(arrays, job, mine[step], chunk_rows, values, subwords)
                rows = len(subwords)
            bar.update(rows)
    distributed.barrier()
    if ctx.is_main:
        _finalize_zarr(location, stored)  # checks every chunk once more
    distributed.barrier()
    return ActivationStore(folder, check_chunks=False)


def _finalize_zarr(location: chunked.Location, manifest: dict[str, Any]) -> None:
    """Rank 0, after every rank is done: record progress (sentences whose every row is in a done chunk) and,
    when complete, the number of words without tokens."""
    offsets, done = check_zarr_store(location, manifest)
    chunk_rows = manifest["chunk_rows"]
    group = _open_group(location, "r+")
    if done.all():
        manifest["progress"] = manifest["n_sentences"]
        subwords = chunked.ChunkedRows(location, SUBWORDS_ARRAY, group[SUBWORDS_ARRAY], chunked.ChunkCache(0))
        manifest["words_without_tokens"] = int(
            sum(
                int((subwords[s : s + chunk_rows] == 0).sum())
                for s in range(0, manifest["n_words"], chunk_rows)
            )
        )
    else:
        # A sentence is done when the chunks of its first and last rows and all between are done.
        last_index = len(done) - 1  # a sentence without words at the very end starts at row n_words
        first_chunk = np.minimum(offsets[:-1] // chunk_rows, last_index)
        last_chunk = np.minimum(np.maximum(offsets[1:] - 1, offsets[:-1]) // chunk_rows, last_index)
        undone_before = np.concatenate([[0], np.cumsum(~done)])
        manifest["progress"] = int((undone_before[last_chunk + 1] - undone_before[first_chunk] == 0).sum())
    _write_zarr_manifest(group, manifest)
    _warn_words_without_tokens(manifest, bool(done.all()))


def convert(
    old: str | Path, new: str | Path, chunk_rows: int | None = None, progress: bool = True
) -> ActivationStore:
    """Copy a store of the previous format (memmap files, ``manifest.json``) into a new zarr store.

    The manifest keeps every provenance field (model and data fingerprints, arguments) and records
    ``converted_from``; the values are copied as they are, chunk by chunk (memory: one chunk per layer).
    The old store is checked first as when it is opened, and must be complete.

    Raises:
        StoreError: ``old`` is damaged or incomplete, or ``new`` already holds a store.
    """
    source = ActivationStore(old)
    if source.format != "memmap":
        raise StoreError(
            f"{old} is already a zarr store (format version {FORMAT_VERSION}); nothing to convert"
        )
    if not source.complete:
        raise StoreError(
            f"{old} is incomplete ({source.manifest['progress']} of {source.n_sentences} sentences); "
            f"finish it with extract(..., format='memmap') before converting it"
        )
    location = chunked.open_location(new, read_only=False)
    if _holds_zarr_store(location):
        raise StoreError(
            f"{location.url} already holds a zarr store; choose a new location for the conversion"
        )
    if location.is_local:
        Path(location.root).mkdir(parents=True, exist_ok=True)
    manifest = {
        k: v
        for k, v in source.manifest.items()
        if k not in ("files", "offsets_file", "subwords_file", "checksum")
    }
    chunk_rows = chunk_rows or default_chunk_rows(source.d_model)
    manifest.update(
        format_version=FORMAT_VERSION,
        format="zarr",
        chunk_rows=chunk_rows,
        n_chunks=chunked.n_chunks(source.n_words, chunk_rows),
        arrays={str(layer): layer_array(layer) for layer in source.layers},
        converted_from={"path": str(old), "format_version": MEMMAP_FORMAT_VERSION},
        progress=0,
    )
    group = _create_zarr_store(location, manifest, source.offsets)
    from tqdm.auto import tqdm

    for chunk in tqdm(range(manifest["n_chunks"]), disable=not progress, desc="convert", unit="chunk"):
        start = chunk * chunk_rows
        stop = min(start + chunk_rows, source.n_words)
        for layer in source.layers:
            group[layer_array(layer)][start:stop] = np.asarray(source.layer(layer)[start:stop])
        group[SUBWORDS_ARRAY][start:stop] = np.asarray(source.n_subwords[start:stop])
        group[DONE_ARRAY][chunk] = 1
    manifest["progress"] = source.n_sentences
    manifest["words_without_tokens"] = source.manifest["words_without_tokens"]
    _write_zarr_manifest(group, manifest)
    logger.info("converted %s (memmap, format %d) to %s (zarr)", old, MEMMAP_FORMAT_VERSION, location.url)
    return ActivationStore(new)


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
    """Read access to a store written by :func:`extract`: a zarr store (a path or URL) or a memmap folder of the
    previous format (nothing is loaded until indexed).

    Args:
        folder: the store's folder or URL.
        cache_bytes: zarr: the most bytes of checked chunks kept in memory for reads to come (least recently
            used dropped first; 0: none). Reads in row order need a chunk per layer; random rows over a layer
            are fast while the layer's chunks fit, and cost a chunk read per chunk touched when they do not.
        read_threads: zarr: threads reading chunks concurrently (default: 4 at most on a local disk, 16 for
            an object store).
        check_chunks: zarr: list every chunk object when opening, checking its size and that every chunk
            recorded as written exists (one list request per thousand objects on object storage). False
            skips that listing (each rank of a job opening a store one process just checked, say): a chunk
            is still checked (size, CRC32C) when its rows are read.

    Attributes:
        manifest: the manifest dict; layers: the stored layer numbers; offsets: int64 [n_sentences + 1];
        n_words, n_sentences, d_model; complete: whether every sentence is done; format: "zarr" or "memmap".

    Raises:
        FileNotFoundError: no manifest in ``folder``.
        StoreError: a damaged manifest or offsets file, or a data file of another size than the manifest's
            shape implies (the message names the file).
    """

    def __init__(
        self,
        folder: str | Path,
        cache_bytes: int = chunked.DEFAULT_CACHE_BYTES,
        read_threads: int | None = None,
        check_chunks: bool = True,
    ) -> None:
        self.folder = folder if isinstance(folder, Path) or "://" in str(folder) else Path(folder)
        self._maps: dict[Any, Any] = {}  # layer -> its rows; ("private", layer) -> a copy-on-write map
        self._cache = chunked.ChunkCache(cache_bytes)
        self._read_threads = read_threads
        if isinstance(self.folder, Path) and (self.folder / MANIFEST).is_file():
            self._open_memmap(self.folder)
        else:
            self._open_zarr(self.folder, check_chunks)
        self.layers: list[int] = list(self.manifest["layers"])
        self.n_words: int = int(self.manifest["n_words"])
        self.n_sentences: int = int(self.manifest["n_sentences"])
        self.d_model: int = int(self.manifest["d_model"])
        if not self.complete:
            logger.warning(
                "%s is incomplete: %d of %d sentences done; run extract again to finish it",
                self.folder,
                self.manifest["progress"],
                self.n_sentences,
            )

    def _open_memmap(self, folder: Path) -> None:
        self.format = "memmap"
        self.manifest: dict[str, Any] = read_manifest(folder)
        self.offsets: np.ndarray = read_offsets(folder, self.manifest)
        check_files(folder, self.manifest)
        self._done = None

    def _open_zarr(self, folder, check_chunks: bool) -> None:
        self.format = "zarr"
        self._location = chunked.open_location(folder, read_only=True)
        self.manifest = read_zarr_manifest(self._location)
        self.offsets, self._done = check_zarr_store(self._location, self.manifest, chunks=check_chunks)
        if self.manifest["progress"] >= self.manifest["n_sentences"] and not self._done.all():
            raise _zarr_damaged(
                self._location,
                DONE_ARRAY,
                "the manifest says complete but some chunks are not recorded as done",
            )
        self._group = _open_group(self._location, "r")
        if (
            not self._done.all()
        ):  # the manifest's progress is written at the end of a run: after a kill, stale
            logger.warning(
                "%s: %d of %d chunks are done", self.folder, int(self._done.sum()), len(self._done)
            )

    def _rows(self, name: str) -> chunked.ChunkedRows:
        return chunked.ChunkedRows(
            self._location, name, self._group[name], self._cache, self._done, self._read_threads
        )

    @property
    def complete(self) -> bool:
        return int(self.manifest["progress"]) >= self.n_sentences

    @property
    def n_subwords(self) -> np.memmap | chunked.ChunkedRows:
        """uint16 [n_words]: the number of tokens of each word (0: the word got none and its vectors are 0)."""
        if self.format == "zarr":
            return self._rows(SUBWORDS_ARRAY)
        return np.memmap(self.folder / SUBWORDS, dtype=np.uint16, mode="r", shape=(self.n_words,))

    def layer(self, layer: int) -> np.memmap | chunked.ChunkedRows:
        """The float16 rows [n_words, d_model] of one layer (a layer number, as in ``.layers``): a numpy
        memmap (memmap store) or a :class:`~probes.chunked.ChunkedRows` (zarr store); both index like numpy
        arrays and read only the rows asked for."""
        if layer not in self.layers:
            raise KeyError(f"layer {layer} is not in this store; stored layers: {self.layers}")
        if layer not in self._maps:
            if self.format == "zarr":
                self._maps[layer] = self._rows(layer_array(layer))
            else:
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
        if not chosen:
            raise ValueError("layers is empty; pass None for every stored layer")
        arrays = [self.layer(layer) for layer in chosen]  # an unknown layer: KeyError naming the stored ones
        if self.format == "zarr":
            return chunked.read_rows(arrays, rows)  # every chunk read once, layers concurrently
        wanted = chunked.normalize_rows(rows, self.n_words)
        n = wanted.stop - wanted.start if isinstance(wanted, slice) else wanted.size
        out = torch.empty((len(chosen), n, self.d_model), dtype=torch.float32)
        for i, layer in enumerate(chosen):
            out[i].copy_(
                torch.from_numpy(self._private_map(layer)[wanted])
            )  # torch converts: numpy is slower
        return out

    def _private_map(self, layer: int) -> np.ndarray:
        """A memmap store's layer mapped copy-on-write: writable to torch, which only reads it (``layer()``
        gives the read-only map)."""
        if ("private", layer) not in self._maps:
            self._maps[("private", layer)] = np.memmap(
                self.folder / layer_file(layer),
                dtype=np.float16,
                mode="c",
                shape=(self.n_words, self.d_model),
            )
        return self._maps[("private", layer)]

    def batches(self, layer: int, batch_size: int = 4096) -> LayerBatches:
        """The word vectors of ``layer`` as float32 batches [<= batch_size, d_model], read in order (what
        ``workbench.sae.train(..., data=store.batches(layer))`` trains a dictionary on)."""
        self.layer(layer)  # an unknown layer is a KeyError now, not when iterated
        return LayerBatches(self, layer, batch_size)

    def __repr__(self) -> str:
        return (
            f"ActivationStore({str(self.folder)!r}, format={self.format!r}, model={self.manifest['model']!r}, "
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
        counts = self.store.n_subwords
        for start in range(0, self.store.n_words, self.batch_size):
            stop = min(start + self.batch_size, self.store.n_words)
            rows = self.store.stack([self.layer], rows=slice(start, stop))[0]
            has_tokens = np.asarray(counts[start:stop]) > 0
            if not has_tokens.all():
                rows = rows[torch.from_numpy(has_tokens)]
            if len(rows):
                yield rows
