"""Reading and writing Hugging Face–format weights.

Each architecture declares one :class:`KeyMap`: the pairs (Hugging Face key pattern, workbench key pattern),
used in both directions — to load a checkpoint and to save one that Hugging Face loads back. Weights are
read from ``model.safetensors`` (sharded too) or, failing that, ``pytorch_model.bin`` with
``torch.load(weights_only=True)``, which refuses to run code from the file. A shard index may only name
files inside the checkpoint folder. Loading checks every tensor's shape and dtype kind against the model
(errors), and warns about unused tensors and NaN/inf values (see :class:`LoadingInfo`).

At real size: safetensors are read tensor by tensor with plain reads (no memory map), each converted to the
loading dtype and moved to the device as it is read; a model built by :func:`empty_parameters` (parameters on
the meta device) then takes those tensors as its parameters (:func:`fill_empty_model`), so loading holds the
weights once. :func:`stored_tensors` reads the shapes and dtypes from the file headers alone (the memory
estimate).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Union

import torch
from torch import nn

SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_BIN_NAME = "pytorch_model.bin"
TORCH_BIN_INDEX = "pytorch_model.bin.index.json"

logger = logging.getLogger(__name__)

# How many names a warning lists before "... and N more".
_NAMES_SHOWN = 5

# Where read tensors go: one device for all, or a function of the tensor's (checkpoint) name.
TensorDevice = Union[torch.device, str, Callable[[str], torch.device], None]


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, or whose tensors do not fit the model."""


# Reading ---------------------------------------------------------------------------------------------


def read_state_dict(
    folder: Path, dtype: torch.dtype | None = None, device: TensorDevice = None
) -> dict[str, torch.Tensor]:
    """All tensors of the checkpoint in ``folder``, by their Hugging Face names.

    Args:
        dtype: convert floating-point tensors to it as each is read (integer and bool tensors stay as stored);
            None keeps the stored dtypes.
        device: where the tensors go (default: the CPU), or a function of the tensor's name giving its device
            (a model split over devices). Each tensor is read, converted and moved before the next is read,
            so at most one tensor exists twice at any moment.
    """
    for index_name, single_name in ((SAFETENSORS_INDEX, SAFETENSORS_NAME), (TORCH_BIN_INDEX, TORCH_BIN_NAME)):
        if (folder / single_name).is_file():
            return _read_file(folder / single_name, dtype, device)
        if (folder / index_name).is_file():
            return _read_sharded(folder / index_name, dtype, device)
    raise FileNotFoundError(
        f"no weights in {folder}: expected {SAFETENSORS_NAME}, {SAFETENSORS_INDEX}, {TORCH_BIN_NAME} "
        f"or {TORCH_BIN_INDEX}"
    )


def _read_file(
    path: Path, dtype: torch.dtype | None = None, device: TensorDevice = None
) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            return _read_safetensors(path, dtype, device)
        state = torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as err:
        raise _unreadable(path, err) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a flat dict of tensors (a state dict)")
    for name in state:  # one tensor at a time: the stored one is freed as its converted copy is made
        state[name] = _place(state[name], dtype, device(name) if callable(device) else device)
    return state


def _unreadable(path: Path, err: Exception) -> CheckpointError:
    return CheckpointError(
        f"could not read {path}: {type(err).__name__}: {err}. The file may be truncated or corrupt "
        f"(re-download it), or, for a .bin file, hold objects other than tensors."
    )


def _place(tensor: torch.Tensor, dtype: torch.dtype | None, device: torch.device | str | None) -> torch.Tensor:
    """A tensor just read, in ``dtype`` (floating-point tensors only) on ``device``; converted on the CPU into
    page-aligned memory (see :func:`page_aligned_empty`)."""
    if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
        if tensor.device.type == "cpu":
            tensor = page_aligned_empty(tensor.shape, dtype).copy_(tensor)
        else:
            tensor = tensor.to(dtype)
    return tensor if device is None else tensor.to(device)


_PAGE_BYTES = 4096  # the page size of x86-64 and most arm64 Linux; a multiple of it is aligned too


def page_aligned_empty(shape: tuple[int, ...] | torch.Size, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised CPU tensor of ``shape`` whose data starts on a page boundary (one smaller than a page
    is allocated as usual).

    Why: a decoding step multiplies each weight matrix by one vector, streaming the matrix row by row, and the
    CPU's prefetchers stop at page boundaries. The allocator starts a large block at whatever offset its heap
    gives, so a 4 KiB row then straddles two pages; measured on a Llama-shaped model (d_model 1024, float32),
    its matrix-vector products took 5-13% longer than with page-aligned weights. The block is one page
    longer than the tensor, which starts at its first boundary (the storage keeps the few bytes before it).
    """
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < _PAGE_BYTES:
        return torch.empty(shape, dtype=dtype)
    block = torch.empty(nbytes + _PAGE_BYTES, dtype=torch.uint8)
    start = -block.data_ptr() % _PAGE_BYTES
    return block[start : start + nbytes].view(dtype).reshape(shape)


# safetensors' dtype names (the header's "dtype") -> torch's.
_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "C64": torch.complex64,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U64": torch.uint64, "U32": torch.uint32, "U16": torch.uint16, "U8": torch.uint8, "BOOL": torch.bool,
}


@dataclass(frozen=True)
class StoredTensor:
    """Where one tensor of a ``.safetensors`` file lies: its dtype, shape and byte range in the data part."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def safetensors_layout(path: Path) -> tuple[dict[str, StoredTensor], int]:
    """(tensor name -> :class:`StoredTensor`, in the file's order; the offset of the data part) of a
    ``.safetensors`` file, from its header alone.

    The ``safetensors`` library checks the header against the file first (offsets inside the file, sizes that
    fit the shapes, no overlaps), so a truncated or forged file is refused before anything is read.
    """
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:  # validates; reads no tensor
        names = list(handle.offset_keys())  # the order of the data, as safetensors' own load_file
    with open(path, "rb") as file:
        header_size = int.from_bytes(file.read(8), "little")
        header = json.loads(file.read(header_size))
    layout = {}
    for name in names:
        entry = header[name]
        if entry["dtype"] not in _SAFETENSORS_DTYPES:
            raise CheckpointError(f"{path}: the tensor {name!r} has dtype {entry['dtype']}, which torch lacks")
        begin, end = entry["data_offsets"]
        layout[name] = StoredTensor(_SAFETENSORS_DTYPES[entry["dtype"]], tuple(entry["shape"]), begin, end)
    return layout, 8 + header_size


def _read_safetensors(
    path: Path, dtype: torch.dtype | None, device: TensorDevice
) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, each read with plain reads into its own new tensor.

    No memory map: mapped file pages that have been read count in the process's resident memory until the
    map is closed, which would make a loading process hold the file and the weights at once (twice the
    weights). Read pages stay in the kernel's page cache instead, which the kernel can reclaim.
    """
    layout, data_start = safetensors_layout(path)
    state = {}
    with open(path, "rb", buffering=0) as file:
        for name, stored in layout.items():
            # A tensor kept as read starts on a page (see page_aligned_empty); one to be converted is read into
            # a plain buffer, freed once _place has made its (aligned) copy: a freed over-sized block would sit
            # between kept ones in the heap and count in the peak.
            converted = dtype is not None and stored.dtype.is_floating_point and stored.dtype != dtype
            size = (stored.end - stored.begin,)
            raw = torch.empty(size, dtype=torch.uint8) if converted else page_aligned_empty(size, torch.uint8)
            file.seek(data_start + stored.begin)
            _read_into(file, raw.numpy(), path)
            tensor = raw.view(stored.dtype).reshape(stored.shape)  # safetensors is little-endian, as torch here
            state[name] = _place(tensor, dtype, device(name) if callable(device) else device)
    return state


def _read_into(file: Any, buffer: Any, path: Path) -> None:
    """Fill ``buffer`` (a writable uint8 array) from ``file``'s position."""
    view, done = memoryview(buffer).cast("B"), 0
    while done < len(view):
        count = file.readinto(view[done:])
        if not count:
            raise CheckpointError(f"{path} ends before its tensors do: it is truncated (re-download it)")
        done += count


# A shard index lists tensor names; a bigger file than this is not one.
_MAX_INDEX_BYTES = 64 * 2**20


def _read_sharded(
    index_path: Path, dtype: torch.dtype | None = None, device: TensorDevice = None
) -> dict[str, torch.Tensor]:
    """Every shard that the index names, each confined to the checkpoint folder (see ``_shard_path``)."""
    weight_map, paths = _shard_paths(index_path)
    state: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}
    for shard, path in paths.items():
        tensors = _read_file(path, dtype, device)
        for name in tensors:
            if name in source:
                raise CheckpointError(
                    f"{index_path}: the tensor {name!r} is in two shards, {source[name]} and {shard}; "
                    f"which one is right cannot be told (re-download the checkpoint)"
                )
            source[name] = shard
        state.update(tensors)
    missing = set(weight_map) - set(state)
    if missing:
        raise CheckpointError(f"{index_path} lists tensors no shard holds: {sorted(missing)[:5]}")
    unlisted = sorted(set(state) - set(weight_map))
    if unlisted:
        logger.warning(
            "%s does not list %d tensor(s) that its shards hold: %s; they are loaded as the shards have "
            "them. "
            "Is the index from another version of the checkpoint?",
            index_path,
            len(unlisted),
            name_list(unlisted),
        )
    return state


def _shard_paths(index_path: Path) -> tuple[dict[str, str], dict[str, Path]]:
    """(the index's weight map, shard name -> its file), the shards checked (see ``_shard_path``)."""
    weight_map = _read_weight_map(index_path)
    suffix = ".safetensors" if index_path.name == SAFETENSORS_INDEX else ".bin"
    first_tensor: dict[str, str] = {}
    for tensor_name, shard in weight_map.items():
        first_tensor.setdefault(shard, tensor_name)
    paths = {
        shard: _shard_path(index_path, shard, first_tensor[shard], suffix) for shard in sorted(first_tensor)
    }
    _check_shard_numbers(index_path, list(paths))
    return weight_map, paths


def stored_tensors(folder: Path) -> dict[str, StoredTensor] | None:
    """The dtype and shape of every tensor of a safetensors checkpoint (one file or shards), read from the
    file headers only; None for a ``pytorch_model.bin`` checkpoint, whose shapes cannot be known unread."""
    if (folder / SAFETENSORS_NAME).is_file():
        paths = [folder / SAFETENSORS_NAME]
    elif (folder / SAFETENSORS_INDEX).is_file():
        paths = list(_shard_paths(folder / SAFETENSORS_INDEX)[1].values())
    else:
        return None
    tensors: dict[str, StoredTensor] = {}
    for path in paths:
        try:
            tensors.update(safetensors_layout(path)[0])
        except CheckpointError:
            raise
        except Exception as err:
            raise _unreadable(path, err) from None
    return tensors


_SHARD_NUMBER = re.compile(r"-(\d+)-of-(\d+)\.[a-z]+$")


def _check_shard_numbers(index_path: Path, shards: list[str]) -> None:
    """Shards named ``...-00002-of-00005...``, as Hugging Face names them, must all be there: an index that
    names only some of them would silently leave the others' tensors out."""
    numbered = [(shard, _SHARD_NUMBER.search(shard)) for shard in shards]
    counts = {int(match.group(2)) for _, match in numbered if match}
    if not counts:
        return
    named = {int(match.group(1)) for _, match in numbered if match}
    total = max(counts)
    if len(counts) > 1 or named != set(range(1, total + 1)):
        absent = sorted(set(range(1, total + 1)) - named)
        raise CheckpointError(
            f"{index_path} names shards {sorted(shards)}: numbered 'of {total}' but shard(s) "
            f"{absent or sorted(named)} "
            f"are missing from or do not fit the index; the index is damaged or from another checkpoint"
        )


def _read_weight_map(index_path: Path) -> dict[str, str]:
    """The ``weight_map`` of a shard index (tensor name -> shard file), its structure checked."""
    size = index_path.stat().st_size
    if size > _MAX_INDEX_BYTES:
        raise CheckpointError(f"{index_path} is {size} bytes: too large for a shard index")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    # ValueError: bad JSON or UTF-8, an integer too long to convert; RecursionError: absurd nesting.
    except (ValueError, RecursionError) as err:
        raise CheckpointError(
            f"{index_path} is not a valid JSON shard index: {type(err).__name__}: {err}"
        ) from None
    if not isinstance(index, dict) or "weight_map" not in index:
        raise CheckpointError(
            f"{index_path} is not a shard index with a 'weight_map': expected a JSON object "
            f'{{"weight_map": {{tensor name: shard file, ...}}}}'
        )
    weight_map = index["weight_map"]
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(
            f"{index_path}: 'weight_map' must be a non-empty JSON object of tensor name -> shard file, "
            f"found {type(weight_map).__name__} {str(weight_map)[:80]}"
        )
    for tensor_name, shard in weight_map.items():
        if not isinstance(shard, str) or not shard:
            raise CheckpointError(
                f"{index_path}: the weight_map entry {tensor_name!r}: {shard!r} must name a shard file "
                f"(a string)"
            )
    return weight_map


def _shard_path(index_path: Path, shard: str, tensor_name: str, suffix: str) -> Path:
    """The file of one shard: a relative path inside the checkpoint folder (links included), never outside.

    The Hugging Face cache keeps a snapshot's files as links into the repository's ``blobs`` folder: those
    are followed too, and nothing else outside the folder.
    """
    folder = index_path.parent
    entry = f"{index_path}: the weight_map entry {tensor_name!r}: {shard!r}"
    posix, windows = PurePosixPath(shard), PureWindowsPath(shard)
    if (
        "\x00" in shard
        or posix.is_absolute()
        or windows.is_absolute()
        or windows.drive
        or ".." in windows.parts
    ):
        raise CheckpointError(
            f"{entry} names a file outside the checkpoint folder {folder}; a shard must be a relative path "
            f"inside it (no absolute path, no drive, no '..')"
        )
    if not shard.endswith(suffix):
        raise CheckpointError(f"{entry}: the shards of a {index_path.name} are {suffix} files")
    path = folder / shard
    try:
        exists, resolved = path.is_file(), path.resolve()
    except (OSError, RuntimeError) as err:  # a name too long for the file system, a loop of links
        raise CheckpointError(f"{entry} cannot be opened: {type(err).__name__}: {err}") from None
    if not exists:
        raise CheckpointError(f"{index_path} names the shard {shard}, which is missing from {folder}")
    roots = [folder.resolve()]
    if folder.parent.name == "snapshots":  # the Hugging Face cache: snapshots/<revision>/file -> blobs/<hash>
        roots.append((folder.parent.parent / "blobs").resolve())
    if not any(resolved.is_relative_to(root) for root in roots):
        raise CheckpointError(
            f"{entry} is a link to {resolved}, outside the checkpoint folder {folder}; shards must lie "
            f"inside it"
        )
    return path


# Renaming --------------------------------------------------------------------------------------------


class KeyMap:
    """Two-way renaming between Hugging Face parameter names and the workbench's.

    Patterns may hold ``{i}`` (a layer number) and ``{p}`` (``weight`` or ``bias``), e.g.
    ``("encoder.layer.{i}.attention.self.query.{p}", "blocks.{i}.attn.q.{p}")``. Several Hugging Face
    names may map to one of ours (a tensor that checkpoints store twice): when loading, the earliest pair
    wins; when saving, every name is written.

    Args:
        pairs: (Hugging Face pattern, workbench pattern).
        ignored: Hugging Face keys (regexes) that are known and deliberately not loaded, e.g. buffers.
        transposed: Hugging Face patterns whose ``weight`` is stored [in, out] (GPT's ``Conv1D``) while ours,
            an ``nn.Linear``, is [out, in]: transposed on the way in and on the way out.
    """

    _FIELDS = {"{i}": r"(?P<i>\d+)", "{p}": r"(?P<p>weight|bias)"}

    def __init__(
        self, pairs: Iterable[tuple[str, str]], ignored: Iterable[str] = (), transposed: Iterable[str] = ()
    ) -> None:
        self.pairs = list(pairs)
        self._to_ours = [(self._compile(hf), ours) for hf, ours in self.pairs]
        self._to_hf = [(self._compile(ours), hf) for hf, ours in self.pairs]
        self.ignored = [re.compile(pattern) for pattern in ignored]
        self.transposed = list(transposed)
        self._transposed = [self._compile(pattern) for pattern in self.transposed]

    @classmethod
    def _compile(cls, pattern: str) -> re.Pattern:
        regex = re.escape(pattern)
        for placeholder, group in cls._FIELDS.items():
            regex = regex.replace(re.escape(placeholder), group)
        return re.compile(f"^{regex}$")

    @staticmethod
    def _fill(pattern: str, match: re.Match) -> str:
        groups = match.groupdict()
        return pattern.replace("{i}", groups.get("i") or "").replace("{p}", groups.get("p") or "")

    def match_ours(self, hf_key: str) -> tuple[str, int] | None:
        """(our name, rank of the pair that matched: lower wins) for a Hugging Face key, or None."""
        for rank, (regex, target) in enumerate(self._to_ours):
            match = regex.match(hf_key)
            if match:
                return self._fill(target, match), rank
        return None

    def to_ours(self, hf_key: str) -> str | None:
        matched = self.match_ours(hf_key)
        return matched[0] if matched else None

    def to_hf_all(self, our_key: str) -> list[str]:
        """Every Hugging Face name of one of our keys (usually one)."""
        return [self._fill(target, m) for regex, target in self._to_hf if (m := regex.match(our_key))]

    def to_hf(self, our_key: str) -> str | None:
        names = self.to_hf_all(our_key)
        return names[0] if names else None

    def is_ignored(self, hf_key: str) -> bool:
        return any(regex.search(hf_key) for regex in self.ignored)

    def is_transposed(self, hf_key: str) -> bool:
        return any(regex.match(hf_key) for regex in self._transposed)

    def __add__(self, other: KeyMap) -> KeyMap:
        return KeyMap(
            self.pairs + other.pairs,
            [r.pattern for r in self.ignored + other.ignored],
            self.transposed + other.transposed,
        )


# Loading into a model --------------------------------------------------------------------------------


@dataclass
class LoadingInfo:
    """What happened when a checkpoint was loaded into a model.

    Attributes:
        missing_keys: workbench parameters the checkpoint did not provide (newly initialized).
        unexpected_keys: checkpoint tensors (Hugging Face names) the model has no place for: not loaded, and
            reported with a WARNING (a head the model does not have, or layers beyond the config's).
        unused_layer_keys: those of ``unexpected_keys`` that name a workbench parameter this model lacks
            (usually layers beyond the config's layer count: config.json and the weights disagree).
        mismatched_keys: (workbench key, checkpoint shape, model shape) skipped with ignore_mismatched_sizes.
        nonfinite_keys: checkpoint tensors (Hugging Face names) holding NaN or infinite values: loaded as they
            are, and reported with a WARNING.
    """

    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    unused_layer_keys: list[str] = field(default_factory=list)
    mismatched_keys: list[tuple[str, tuple, tuple]] = field(default_factory=list)
    nonfinite_keys: list[str] = field(default_factory=list)


@dataclass
class ConvertedState:
    """A checkpoint renamed to workbench names.

    Attributes:
        tensors: workbench name -> tensor.
        hf_names: workbench name -> the checkpoint key it came from (for error messages).
        unexpected: checkpoint keys that were neither mapped nor ignored.
    """

    tensors: dict[str, torch.Tensor]
    hf_names: dict[str, str]
    unexpected: list[str]


def convert_state_dict(
    hf_state: dict[str, torch.Tensor], key_map: KeyMap, prefixes: Iterable[str] = ()
) -> ConvertedState:
    """Rename a Hugging Face state dict to workbench names.

    Args:
        prefixes: body prefixes that head checkpoints put before body keys (``"bert."``); stripped when the
            stripped key is a known key.
    """
    converted = ConvertedState({}, {}, [])
    ranks: dict[str, int] = {}
    for original_key, tensor in hf_state.items():
        hf_key = _legacy_name(original_key)
        matched = key_map.match_ours(hf_key)
        for prefix in prefixes:
            if matched is None and hf_key.startswith(prefix):
                matched = key_map.match_ours(hf_key[len(prefix) :])
                hf_key = hf_key[len(prefix) :] if matched else hf_key
        if matched is not None and key_map.is_transposed(hf_key):
            tensor = tensor.t()
        if matched is None:
            # Known buffers (e.g. GPT-2's causal-mask "attn.bias") are ignored with or without the prefix.
            stripped = [hf_key[len(prefix) :] for prefix in prefixes if hf_key.startswith(prefix)]
            if not any(key_map.is_ignored(key) for key in [hf_key, *stripped]):
                converted.unexpected.append(original_key)
            continue
        target, rank = matched
        if rank < ranks.get(target, len(key_map.pairs)):
            ranks[target] = rank
            converted.tensors[target] = tensor
            converted.hf_names[target] = original_key
    return converted


def _legacy_name(key: str) -> str:
    """TensorFlow-era checkpoints (e.g. the original bert-base-uncased .bin) call LayerNorm's weight 'gamma'."""
    if key.endswith(".gamma"):
        return key[: -len("gamma")] + "weight"
    if key.endswith(".beta"):
        return key[: -len("beta")] + "bias"
    return key


def load_converted(
    model: torch.nn.Module,
    state: ConvertedState,
    source: str,
    ignore_mismatched_sizes: bool = False,
) -> LoadingInfo:
    """Put a converted checkpoint into ``model``, checking every shape.

    A model built by :func:`empty_parameters` (parameters on the meta device) takes the checkpoint's tensors
    as its parameters, without a copy, and only the parameters the checkpoint lacks are allocated and
    initialized (:func:`fill_empty_model`); a built model has the tensors copied into its own.

    Raises:
        CheckpointError: a tensor whose shape differs from the model's, naming it (both names) and both
            shapes (unless ``ignore_mismatched_sizes``, which leaves such parameters newly initialized); an
            integer, bool or complex tensor for a floating-point parameter (or the reverse), naming it and
            both dtypes (never cast; float16 to float32 and the like are casts within a kind, and load).

    NaN or infinite values are loaded but listed in ``nonfinite_keys`` and reported with a WARNING.
    """
    info = LoadingInfo(unexpected_keys=list(state.unexpected))
    own = model.state_dict()
    accepted = {}
    for key, tensor in state.tensors.items():
        hf_name = state.hf_names[key]
        if key not in own:
            info.unexpected_keys.append(hf_name)
            info.unused_layer_keys.append(hf_name)
            continue
        if tuple(tensor.shape) != tuple(own[key].shape):
            if not ignore_mismatched_sizes:
                raise CheckpointError(
                    f"{source}: the checkpoint's {hf_name!r} (workbench {key!r}) has shape {tuple(tensor.shape)} "
                    f"but {type(model).__name__} expects {tuple(own[key].shape)} from config.json; do config.json "
                    f"and the weights belong together? (ignore_mismatched_sizes=True re-initializes it)"
                )
            info.mismatched_keys.append((key, tuple(tensor.shape), tuple(own[key].shape)))
            continue
        if _dtype_kind(tensor) != _dtype_kind(own[key]):
            raise CheckpointError(
                f"{source}: the checkpoint's {hf_name!r} (workbench {key!r}) has dtype {tensor.dtype}, but "
                f"{type(model).__name__}'s tensor is {own[key].dtype}: casting {_dtype_kind(tensor)} "
                f"values to {_dtype_kind(own[key])} ones would load different weights. Is the file corrupt "
                f"or written by another program?"
            )
        if tensor.is_floating_point() and not _all_finite(tensor):
            info.nonfinite_keys.append(hf_name)
        accepted[key] = tensor
    if is_empty(model):
        missing = fill_empty_model(model, accepted)
    else:
        missing = model.load_state_dict(accepted, strict=False).missing_keys
    skipped = set(getattr(model, "tied_parameter_names", lambda: set())()) | {
        k for k, _, _ in info.mismatched_keys
    }
    info.missing_keys = [k for k in missing if k not in skipped]
    if info.unexpected_keys:
        logger.warning(_unused_message(type(model).__name__, source, info))
    if info.nonfinite_keys:
        logger.warning(
            "%d tensor(s) of the checkpoint %s hold NaN or infinite values: %s (all in "
            "model.loading_info.nonfinite_keys); outputs that depend on them will be NaN or inf.",
            len(info.nonfinite_keys),
            source,
            name_list(info.nonfinite_keys),
        )
    return info


# Building without weights -----------------------------------------------------------------------------


@contextmanager
def empty_parameters() -> Iterator[None]:
    """Build models whose parameters are on the meta device (shapes and dtypes, no memory, no random values),
    while buffers (position ids, rotary frequencies) are computed on the CPU as usual.

    Every parameter a module registers while this is active is moved to the meta device as it is registered,
    so a layer's ``reset_parameters`` then runs on the meta tensor and costs nothing (its ``torch.empty``
    was never touched). A parameter that is already on the meta device (a tied weight assigned twice) is
    kept as it is, so ties survive. This patches ``nn.Module.register_parameter`` for the duration: build
    one model at a time under it (not from several threads).
    """
    register = nn.Module.register_parameter

    def register_on_meta(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and param.device.type != "meta":
            param = type(param)(param.to("meta"), requires_grad=param.requires_grad)
        register(module, name, param)

    nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def is_empty(model: nn.Module) -> bool:
    """Whether any parameter of ``model`` is on the meta device (built by :func:`empty_parameters`)."""
    return any(param.device.type == "meta" for param in model.parameters())


def fill_empty_model(model: nn.Module, tensors: dict[str, torch.Tensor]) -> list[str]:
    """Make the parameters of an empty model (:func:`empty_parameters`) real: the checkpoint's ``tensors``
    (checked, renamed) become the parameters themselves; parameters the checkpoint lacks are allocated on
    the CPU in their built dtype and initialized by the model's own ``init_weights``, in which the loaded ones
    are still meta tensors, so their initialization allocates and draws nothing. Persistent buffers in
    ``tensors`` are copied into the computed ones.

    Returns:
        The state-dict names the checkpoint did not provide, in the model's order (tied names included).
    """
    groups = _shared_parameters(model)
    fresh = [names for names in groups.values() if not any(name in tensors for name in names)]
    for names in fresh:
        built = model.get_parameter(names[0])
        _set_parameter(model, names, torch.empty(built.shape, dtype=built.dtype), built.requires_grad)
    if fresh:
        model.init_weights()
    for names in groups.values():
        given = [name for name in names if name in tensors]
        if given:  # the last name wins, as when a state dict is copied into tied parameters in order
            built = model.get_parameter(names[0])
            _set_parameter(model, names, tensors[given[-1]].contiguous(), built.requires_grad)
    parameters = dict(model.named_parameters(remove_duplicate=False))
    buffers = {name: tensor for name, tensor in tensors.items() if name not in parameters}
    if buffers:
        model.load_state_dict(buffers, strict=False)
    return [name for name in model.state_dict() if name not in tensors]


def _shared_parameters(model: nn.Module) -> dict[int, list[str]]:
    """id(parameter) -> every name it has in ``model`` (several when it is tied), in the model's order."""
    groups: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    return groups


def _set_parameter(model: nn.Module, names: list[str], value: torch.Tensor, requires_grad: bool) -> None:
    """Make ``value`` the parameter under every one of ``names`` (one shared parameter when tied)."""
    param = nn.Parameter(value, requires_grad=requires_grad)
    for name in names:
        owner, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(owner), attribute, param)


def _all_finite(tensor: torch.Tensor) -> bool:
    """No NaN or infinite value in ``tensor``: its minimum and maximum are finite (both are NaN when any value
    is). Exact, an order of magnitude faster than ``torch.isfinite(tensor).all()``, and without that call's
    temporaries as large as the tensor (an embedding matrix, while loading)."""
    if tensor.numel() == 0:
        return True
    low, high = torch.aminmax(tensor)
    return bool(torch.isfinite(low) & torch.isfinite(high))


def _dtype_kind(tensor: torch.Tensor) -> str:
    if tensor.is_complex():
        return "complex"
    return "floating-point" if tensor.is_floating_point() else "integer or bool"


def name_list(names: list[str], shown: int = _NAMES_SHOWN) -> str:
    """``'a', 'b', 'c' and 4 more`` — the first few names of a long list, for messages."""
    text = ", ".join(repr(name) for name in names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _unused_message(class_name: str, source: str, info: LoadingInfo) -> str:
    unused = info.unexpected_keys
    message = (
        f"{len(unused)} tensor(s) of the checkpoint {source} were not used by {class_name}: "
        f"{name_list(unused)} (all in model.loading_info.unexpected_keys)."
    )
    if info.unused_layer_keys:
        message += (
            f" {len(info.unused_layer_keys)} of them are weights of the architecture that this model "
            f"does not have, e.g. {name_list(info.unused_layer_keys, 2)}: is config.json's layer count "
            f"(or another size) smaller than the checkpoint's? Those weights are dropped."
        )
    else:
        message += (
            " Expected when the checkpoint has a head this model has not (e.g. an MLM head, bare model)."
        )
    return message


def state_dict_for_saving(
    model: torch.nn.Module, key_map: KeyMap, prefix: str = ""
) -> dict[str, torch.Tensor]:
    """The model's parameters under Hugging Face names (tied copies left out), contiguous, for safetensors.

    Args:
        prefix: put before body keys (``"bert."`` for a model with a head), as Hugging Face names them.
    """
    tied = set(getattr(model, "tied_parameter_names", lambda: set())())
    body_keys = set(getattr(model, "body_parameter_names", lambda: set())())
    out = {}
    for key, tensor in model.state_dict().items():
        if key in tied:
            continue
        hf_keys = key_map.to_hf_all(key)
        if not hf_keys:
            raise CheckpointError(f"{type(model).__name__}.{key} has no Hugging Face name in the key map")
        for copy, hf_key in enumerate(hf_keys):
            value = tensor.detach()
            value = (value.t() if key_map.is_transposed(hf_key) else value).contiguous().cpu()
            # safetensors refuses two names for one storage: the second name gets its own copy.
            out[prefix + hf_key if key in body_keys else hf_key] = value.clone() if copy else value
    return out
