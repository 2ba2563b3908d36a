"""ActivationCache: the activations of one forward pass, by hook name."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

import torch

from .hook_points import unknown_hook_message

_BLOCK_RE = re.compile(r"^blocks\.(\d+)\.(.+)$")


class ActivationCache(Mapping):
    """Activations of one forward pass, keyed by hook name, in forward order.

    ``cache["blocks.3.attn.hook_pattern"]`` is a tensor (shapes in ``docs/hooks.md``);
    ``cache.stack("hook_resid_post")`` stacks one kind of activation over layers;
    ``cache.tokens`` holds the token strings of the input (a list for one text, a list of lists for a batch).

    Args:
        activations: name -> tensor, in forward order.
        tokens: the token strings, or None when the model had no tokenizer.
        n_layers: the number of blocks of the model (to tell a partial cache from a full one in ``stack``).
    """

    def __init__(
        self,
        activations: dict[str, torch.Tensor],
        tokens: list | None = None,
        n_layers: int | None = None,
    ) -> None:
        self._activations = dict(activations)
        self.tokens = tokens
        self.n_layers = n_layers

    # Mapping interface ------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> torch.Tensor:
        try:
            return self._activations[name]
        except KeyError:
            raise KeyError(
                unknown_hook_message(name, self._activations, "this cache")
                + " A cache holds only what names_filter selected."
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._activations)

    def __len__(self) -> int:
        return len(self._activations)

    def __repr__(self) -> str:
        return (
            f"ActivationCache({len(self)} activations, {self.nbytes / 2**20:.1f} MiB"
            + (f", {self.n_layers} layers" if self.n_layers is not None else "")
            + ")"
        )

    # Views over layers -------------------------------------------------------------------------------
    def stack(self, kind: str) -> torch.Tensor:
        """Stack one per-layer activation over layers: ``stack("hook_resid_post")`` -> [layer, batch, pos, d_model].

        Args:
            kind: the name inside a block, e.g. ``"hook_resid_post"`` or ``"attn.hook_pattern"``.

        Raises:
            KeyError: no activation of that kind is cached, or some layers are missing.
        """
        found = {}
        for name, tensor in self._activations.items():
            match = _BLOCK_RE.match(name)
            if match and match.group(2) == kind:
                found[int(match.group(1))] = tensor
        if not found:
            kinds = sorted({m.group(2) for m in map(_BLOCK_RE.match, self._activations) if m})
            raise KeyError(f"no cached activation of kind {kind!r}; per-layer kinds in this cache: {kinds}")
        layers = sorted(found)
        expected = list(range(self.n_layers)) if self.n_layers is not None else list(range(len(layers)))
        if layers != expected:
            raise KeyError(f"{kind!r} is cached for layers {layers} only, not for every layer {expected}")
        return torch.stack([found[i] for i in layers])

    def layer(self, index: int) -> dict[str, torch.Tensor]:
        """The activations of block ``index``, keyed by their name inside the block (``"attn.hook_pattern"``)."""
        prefix = f"blocks.{index}."
        selected = {n[len(prefix) :]: t for n, t in self._activations.items() if n.startswith(prefix)}
        if not selected:
            raise KeyError(f"no cached activation for layer {index}")
        return selected

    # Housekeeping ------------------------------------------------------------------------------------
    def to(self, device: torch.device | str) -> ActivationCache:
        """A copy of the cache with every tensor moved to ``device``."""
        moved = {name: tensor.to(device) for name, tensor in self._activations.items()}
        return ActivationCache(moved, tokens=self.tokens, n_layers=self.n_layers)

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached tensors, each storage counted once (names may share a tensor, e.g.
        ``blocks.{i}.hook_resid_post`` and ``blocks.{i+1}.hook_resid_pre``)."""
        storages = {}
        for tensor in self._activations.values():
            storage = tensor.untyped_storage()
            storages[(tensor.device, storage.data_ptr())] = storage.nbytes()
        return sum(storages.values())


class CaptureSink:
    """Where ``run_with_cache`` puts each activation: converted to ``dtype`` (floating-point tensors only; e.g.
    ``torch.bfloat16`` halves a big sweep's cache) and moved to ``device``.

    From a CUDA device to the CPU the copy is asynchronous: the activation is snapshotted on the compute
    stream (so a later in-place edit cannot reach the copy), then copied on a side stream into pinned host
    memory, overlapping the rest of the forward; :meth:`finish` waits for the copies before the cache is
    handed out. Elsewhere it is a plain ``.to(device)``.

    With ``into`` (a previous cache: ``run_with_cache(..., out=previous_cache)``) each activation is written
    into that cache's tensor of the same name instead, which must have the shape, dtype and device the
    activation gets here (a ValueError names the hook otherwise); nothing is allocated. An activation computed
    in that very tensor (:meth:`~workbench.hook_points.HookPoint.empty`) is not copied at all.
    """

    def __init__(
        self,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        into: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        if dtype is not None and not dtype.is_floating_point:
            raise ValueError(
                f"dtype={dtype} is not a floating-point dtype; a cache dtype is e.g. torch.bfloat16"
            )
        self.device = torch.device(device) if device is not None else None
        self.dtype = dtype
        self.into = dict(into) if into is not None else None
        self.streams: dict[torch.device, torch.cuda.Stream] = {}
        # Target -> the activation written there: names that shared a tensor in the previous cache (one block's
        # hook_resid_post is the next one's hook_resid_pre) share it again only if they see the same tensor.
        self.written: dict[tuple, torch.Tensor] = {}

    def __call__(self, tensor: torch.Tensor, name: str | None = None) -> torch.Tensor:
        """The tensor to cache for the activation of hook ``name``."""
        return self.write(tensor, name) if self.into is not None else self.convert(tensor)

    def convert(self, tensor: torch.Tensor) -> torch.Tensor:
        """The activation in the cache's dtype and on its device (itself when both are its own)."""
        if self.dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(self.dtype)
        if self.device is None or tensor.device == self.device:
            return tensor
        if tensor.is_cuda and self.device.type == "cpu":
            return self.offload(tensor)
        return tensor.to(self.device)

    def write(self, tensor: torch.Tensor, name: str) -> torch.Tensor:
        """Write the activation of hook ``name`` into the previous cache's tensor of that name; return that."""
        target = self.into.get(name)
        if target is None:
            raise ValueError(
                f"out= has no tensor for {name!r}, which this call caches: pass out= a cache made with the same "
                f"names_filter ({len(self.into)} names in it)"
            )
        dtype = self.dtype if self.dtype is not None and tensor.is_floating_point() else tensor.dtype
        device = self.device if self.device is not None else tensor.device
        if (target.shape, target.dtype, target.device) != (tensor.shape, dtype, device):
            raise ValueError(
                f"out[{name!r}] is {list(target.shape)}, {target.dtype} on {target.device}, but this call caches "
                f"{list(tensor.shape)}, {dtype} on {device} there: out= takes a cache of the same hooks, input "
                "shape, dtype and device"
            )
        if same_memory(tensor, target):  # computed in place
            return target
        key = (target.device, target.data_ptr(), target.shape, target.stride())
        earlier = self.written.get(key)
        if earlier is not None and earlier is not tensor:
            # The previous cache shared this tensor between two names whose activations now differ (a hook
            # replaced one): the second gets a tensor of its own.
            return self.convert(tensor)
        self.written[key] = tensor
        if tensor.is_cuda and target.device.type == "cpu":
            return self.offload(tensor, target)
        return target.copy_(tensor)

    def offload(self, tensor: torch.Tensor, into: torch.Tensor | None = None) -> torch.Tensor:
        """CUDA tensor -> pinned CPU tensor (``into``, else a new one), filled by a copy on a side stream (valid
        after :meth:`finish`)."""
        compute = torch.cuda.current_stream(tensor.device)
        side = self.streams.get(tensor.device)
        if side is None:
            side = self.streams[tensor.device] = torch.cuda.Stream(tensor.device)
        snapshot = tensor.clone()  # on the compute stream: what the hook saw, whatever runs after it
        if into is None:
            into = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        side.wait_stream(compute)
        with torch.cuda.stream(side):
            into.copy_(snapshot, non_blocking=True)
        snapshot.record_stream(side)  # its memory is not reused before the copy is done
        return into

    def finish(self) -> None:
        """Wait for the asynchronous copies."""
        for stream in self.streams.values():
            stream.synchronize()


def same_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` and ``b`` are the same elements of the same memory (same start, shape and strides)."""
    return (
        a.device == b.device
        and a.data_ptr() == b.data_ptr()
        and a.shape == b.shape
        and a.stride() == b.stride()
        and a.dtype == b.dtype
    )
