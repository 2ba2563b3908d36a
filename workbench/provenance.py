"""Provenance: what made a stored result, so that it is reused only when everything that changes it is equal.

A result written to disk (an activation store, a benchmark row, a probing table) carries a record of

- the **model**: :func:`model_fingerprint` — a hash of every parameter and buffer as they are now (not the
  checkpoint's name: another seed, an in-place retrain or another dtype gives another hash), the dtypes, a
  hash of the config, whether the model is in training mode (dropout) and the editing hooks attached to it
  (hook points and torch forward hooks, by hook point and function name);
- the **data**: :func:`data_fingerprint` — for a file its path, size and content hash; for data in memory
  (sentences, examples) the hash of its canonical JSON;
- every **argument** that changes the numbers (pooling, layers, folds, seed, ...), recorded by the caller.

:func:`differences` compares two such records and names what differs, so a refusal can say why.

Hashing all weights costs one pass over them (MiniLM, 33M parameters: about a tenth of a second); the
per-tensor hashes are cached on the model object (a ``WeakKeyDictionary``: nothing outlives the model) and
a tensor is hashed again only when its storage, ``_version`` (bumped by every in-place operation on it,
``optimizer.step()`` and ``load_state_dict`` included), dtype, shape or device changed. Writes that bypass
the version counter — through ``tensor.data`` or a numpy view — are not seen: pass ``refresh=True`` after
such an edit.

>>> import workbench as wb
>>> from workbench.provenance import model_fingerprint
>>> model = wb.zoo.tiny("bert", device="cpu")  # doctest: +SKIP
>>> model_fingerprint(model)["weights"][:16]  # doctest: +SKIP
'5f0c...'
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "model_fingerprint",
    "data_fingerprint",
    "file_fingerprint",
    "record_id",
    "differences",
    "describe_differences",
    "canonical_json",
]

_DIGEST_SIZE = 16  # bytes of blake2b: 128 bits, ample to tell weights apart
# model -> {tensor name: (cache key, digest)}; weak keys: the entry goes with the model.
_TENSOR_DIGESTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _tensor_key(tensor: torch.Tensor) -> tuple:
    return (
        tensor.data_ptr(),
        tensor._version,
        str(tensor.dtype),
        tuple(tensor.shape),
        tuple(tensor.stride()),
        str(tensor.device),
    )


def _tensor_digest(tensor: torch.Tensor) -> str:
    """blake2b of the tensor's bytes (any dtype, any device), with its dtype and shape."""
    digest = hashlib.blake2b(digest_size=_DIGEST_SIZE)
    digest.update(f"{tensor.dtype}|{tuple(tensor.shape)}|".encode())
    flat = tensor.detach().reshape(-1)
    if flat.numel():
        data = flat.contiguous().view(torch.uint8).cpu().numpy()
        digest.update(memoryview(data))
    return digest.hexdigest()


def _named_tensors(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Every parameter and buffer (tied tensors once, under their first name), in name order."""
    tensors = dict(model.named_parameters())
    for name, buffer in model.named_buffers():
        if buffer is not None:
            tensors.setdefault(name, buffer)
    return sorted(tensors.items())


def _weights_digest(model: torch.nn.Module, refresh: bool) -> tuple[str, int]:
    try:
        cache = _TENSOR_DIGESTS.setdefault(model, {})
    except TypeError:  # a module that cannot be weakly referenced: no cache
        cache = {}
    if refresh:
        cache.clear()
    combined = hashlib.blake2b(digest_size=_DIGEST_SIZE)
    named = _named_tensors(model)
    seen = set()
    for name, tensor in named:
        key = _tensor_key(tensor)
        cached = cache.get(name)
        if cached is None or cached[0] != key:
            cached = (key, _tensor_digest(tensor))
            cache[name] = cached
        seen.add(name)
        combined.update(f"{name}={cached[1]};".encode())
    for name in [name for name in cache if name not in seen]:
        del cache[name]
    return combined.hexdigest(), sum(t.numel() for _, t in named)


def _function_name(fn: Any) -> str:
    """``module.qualname`` of a hook function (a partial: of the function it wraps; an object: its class)."""
    import functools

    while isinstance(fn, functools.partial):
        fn = fn.func
    target = fn if hasattr(fn, "__qualname__") else type(fn)
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', repr(target))}"


def _hook_point_hooks(point: Any) -> list[tuple[Any, bool]]:
    """(fn, read_only) of the hooks attached to a hook point (as the calling thread sees them)."""
    attached = getattr(point, "attached_hooks", None)
    if callable(attached):
        return list(attached())
    hooks = getattr(point, "_hooks", None)
    if isinstance(hooks, Mapping):
        return [entry if isinstance(entry, tuple) else (entry, False) for entry in hooks.values()]
    return []


def editing_hooks(model: torch.nn.Module) -> list[str]:
    """The hooks that may change the model's outputs, as ``"where: function"`` strings, in module order.

    Hook points' hooks that are not read-only (read-only hooks, e.g. a cache, change nothing), and torch
    forward / forward-pre hooks registered on any submodule.
    """
    from .hook_points import HookPoint

    found = []
    for name, module in model.named_modules():
        if isinstance(module, HookPoint):
            for fn, read_only in _hook_point_hooks(module):
                if not read_only:
                    found.append(f"{name}: {_function_name(fn)}")
        for kind in ("_forward_pre_hooks", "_forward_hooks"):
            for fn in getattr(module, kind, {}).values():
                if not getattr(fn, "changes_outputs", True):  # e.g. a device_map's AlignDevice: moves inputs only
                    continue
                found.append(
                    f"{name or '<model>'} ({kind.strip('_')[:-1].replace('_', ' ')}): {_function_name(fn)}"
                )
    return found


def config_digest(model: torch.nn.Module) -> str | None:
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        return None
    return hashlib.sha256(canonical_json(config.to_dict()).encode("utf-8")).hexdigest()


def model_fingerprint(model: torch.nn.Module, refresh: bool = False) -> dict[str, Any]:
    """What a model computes with, as a JSON-ready dict; equal dicts mean equal numbers for equal inputs.

    Args:
        model: any ``torch.nn.Module`` (a workbench model: with its config and hook points).
        refresh: hash every tensor again, ignoring the cache (after writes through ``tensor.data``).

    Returns:
        ``{"weights": hex hash of every parameter and buffer (names, dtypes, shapes, bytes), "n_values":
        numel, "dtype": the parameters' dtypes, "config": sha256 of the config, "training": dropout on,
        "hooks": editing hooks attached, "class": the model class}``.
    """
    weights, n_values = _weights_digest(model, refresh)
    dtypes = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()})
    return {
        "class": type(model).__name__,
        "weights": weights,
        "n_values": n_values,
        "dtype": dtypes[0] if len(dtypes) == 1 else dtypes,
        "config": config_digest(model),
        "training": bool(model.training),
        "hooks": editing_hooks(model),
    }


def file_fingerprint(path: str | Path) -> dict[str, Any]:
    """``{"path", "size", "blake2b"}`` of a file's content (read in 1 MiB chunks)."""
    path = Path(path)
    digest = hashlib.blake2b(digest_size=_DIGEST_SIZE)
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return {"path": str(path.resolve()), "size": size, "blake2b": digest.hexdigest()}


def data_fingerprint(data: Any) -> dict[str, Any]:
    """A record of some data: a file or folder (by content), or examples / sentences in memory (by value).

    Args:
        data: a path to a file (``{"kind": "file", path, size, blake2b}``); a path to a folder (every file
            under it, sorted: ``{"kind": "folder", "path", "files": [...], "blake2b"}``); or anything JSON-like
            (lists of words, dataclass examples, dicts): ``{"kind": "values", "n": len, "blake2b"}`` of its
            canonical JSON.
    """
    if isinstance(data, (str, Path)) and Path(data).exists():
        path = Path(data)
        if path.is_file():
            return {"kind": "file", **file_fingerprint(path)}
        files = [file_fingerprint(p) for p in sorted(path.rglob("*")) if p.is_file()]
        digest = hashlib.blake2b(canonical_json(files).encode(), digest_size=_DIGEST_SIZE).hexdigest()
        return {"kind": "folder", "path": str(path.resolve()), "files": len(files), "blake2b": digest}
    digest = hashlib.blake2b(digest_size=_DIGEST_SIZE)
    n = None
    if isinstance(data, (list, tuple)):
        n = len(data)
        for item in data:  # one item at a time: no giant string for large data
            digest.update(canonical_json(item).encode("utf-8"))
            digest.update(b"\n")
    else:
        digest.update(canonical_json(data).encode("utf-8"))
    return {"kind": "values", "n": n, "blake2b": digest.hexdigest()}


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            "__type__": type(value).__name__,
            **{f.name: getattr(value, f.name) for f in dataclasses.fields(value)},
        }
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    if isinstance(value, torch.dtype):
        return str(value)
    raise TypeError(f"cannot fingerprint a value of type {type(value).__name__}: {value!r:.80}")


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, dataclasses as dicts, NaN as a string (JSON has none): one text per value."""
    return json.dumps(
        _nan_safe(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_jsonable
    )


def _nan_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {str(k): _nan_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_safe(v) for v in value]
    return value


def record_id(record: Mapping[str, Any], length: int = 12) -> str:
    """A short hex id of a provenance record (for file names): equal records, equal ids."""
    return hashlib.sha256(canonical_json(record).encode("utf-8")).hexdigest()[:length]


def _flatten(record: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(record, Mapping):
        flat: dict[str, Any] = {}
        for key, value in record.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: record}


_MISSING = object()


def differences(
    stored: Mapping[str, Any], wanted: Mapping[str, Any], keys: Iterable[str] | None = None
) -> list[str]:
    """Readable lines ``"key: stored X, requested Y"`` for every (nested, dotted) key whose values differ.

    Args:
        keys: compare only these top-level keys (default: every key of either record).
    """
    if keys is not None:
        keys = list(keys)
        stored = {k: stored.get(k, None) for k in keys if k in stored or k in wanted}
        wanted = {k: wanted.get(k, None) for k in keys if k in stored or k in wanted}
    # Compare through canonical JSON: a tuple read back from JSON is a list, and must still be equal.
    left = _flatten(json.loads(canonical_json(stored)))
    right = _flatten(json.loads(canonical_json(wanted)))
    lines = []
    for key in sorted(set(left) | set(right)):
        a, b = left.get(key, _MISSING), right.get(key, _MISSING)
        if a != b:
            shown_a = "(not recorded)" if a is _MISSING else _short(a)
            shown_b = "(not recorded)" if b is _MISSING else _short(b)
            lines.append(f"{key}: stored {shown_a}, requested {shown_b}")
    return lines


def describe_differences(
    stored: Mapping[str, Any], wanted: Mapping[str, Any], keys: Iterable[str] | None = None
) -> str:
    """:func:`differences` as one message (``""`` when the records agree)."""
    return "; ".join(differences(stored, wanted, keys))


def _short(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
