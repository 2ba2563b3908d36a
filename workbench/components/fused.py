"""Rules for the tensors Hugging Face stores in another shape than ours: split on load, fused again on save.

A model class that inherits :class:`FusedWeights` lists its rules in ``fused_weights``: loading applies them in
order to a Hugging Face state dict before the key map renames it (``unfuse_hf_state``), saving undoes them in
reverse order (``fuse_hf_state``). GPT-2's ``c_attn`` and Transformer-XL's ``qkv_net`` are :class:`FusedSplit`
rules, Phi-3's ``qkv_proj`` (q, k, v of unequal widths) a :class:`FusedHeadsSplit`, GPT-NeoX's
``query_key_value`` (q, k, v interleaved per head) a :class:`PerHeadFusedSplit`, XLNet's
per-head projections a :class:`HeadShapedProjections` rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..loading import CheckpointError


@dataclass(frozen=True)
class FusedSplit:
    """One Hugging Face tensor holding several of ours side by side.

    ``{...}{module}.{param}`` [..., n * size, ...] <-> ``{...}{module}.{part}.{param}`` for each part, cut in
    equal chunks along ``dim``. GPT-2's ``attn.c_attn`` (q, k, v along the last dimension of a Conv1D weight
    and of its bias) and Transformer-XL's ``dec_attn.qkv_net`` (along the first dimension) are two of them.

    Attributes:
        module: the end of the fused module's name (a key matches when it ends with ``module.param``).
        dim: the dimension along which the parts are concatenated.
        parts: the names of the parts, in their order in the fused tensor.
        params: the parameter names that are fused (``weight``, ``bias``).
    """

    module: str
    dim: int
    parts: tuple[str, ...] = ("q", "k", "v")
    params: tuple[str, ...] = ("weight", "bias")

    def split(self, hf_state: dict[str, torch.Tensor], config=None) -> dict[str, torch.Tensor]:
        out = {}
        fused = tuple(f"{self.module}.{param}" for param in self.params)
        for key, tensor in hf_state.items():
            if not key.endswith(fused):
                out[key] = tensor
                continue
            stem, param = key.rsplit(".", 1)
            for name, part in zip(self.parts, self.cut(key, tensor, config)):
                out[f"{stem}.{name}.{param}"] = part
        return out

    def cut(self, key: str, tensor: torch.Tensor, config=None) -> tuple[torch.Tensor, ...]:
        """The fused ``tensor`` (stored under ``key``) -> its parts, in the order of ``parts``."""
        if tensor.shape[self.dim] % len(self.parts):
            raise CheckpointError(
                f"{key} has shape {tuple(tensor.shape)}: dimension {self.dim} does not split into "
                f"{len(self.parts)} equal parts ({', '.join(self.parts)})"
            )
        return tensor.chunk(len(self.parts), dim=self.dim)

    def glue(self, parts: list[torch.Tensor], config=None) -> torch.Tensor:
        """The inverse of :meth:`cut`: the parts, in the order of ``parts``, -> the fused tensor."""
        return torch.cat(parts, dim=self.dim)

    def join(self, hf_state: dict[str, torch.Tensor], config=None) -> dict[str, torch.Tensor]:
        out = {}
        for key, tensor in hf_state.items():
            stem, name, param = key.rsplit(".", 2) if key.count(".") >= 2 else (key, "", "")
            if not (stem.endswith(self.module) and name in self.parts and param in self.params):
                out[key] = tensor
            elif name == self.parts[0]:
                wanted = [f"{stem}.{part}.{param}" for part in self.parts]
                missing = [part_key for part_key in wanted if part_key not in hf_state]
                if missing:
                    raise CheckpointError(f"cannot fuse {stem}.{param}: {', '.join(missing)} missing")
                out[f"{stem}.{param}"] = self.glue([hf_state[k] for k in wanted], config).contiguous()
        return out


@dataclass(frozen=True)
class PerHeadFusedSplit(FusedSplit):
    """One Hugging Face tensor holding several of ours interleaved head by head (GPT-NeoX's
    ``attention.query_key_value``): along dimension 0, for each head in turn, that head's rows of every part.

    ``{...}{module}.{param}`` [head * n_parts * d_head, ...] <-> ``{...}{module}.{part}.{param}``
    [head * d_head, ...] for each part (a weight [.., d_model] or a bias). Cutting needs the head count, from
    the config (``config.n_heads``): the same rows cut in equal thirds (:class:`FusedSplit`) would give each
    part a slice of every head's q, k and v.

    Attributes: as :class:`FusedSplit`'s (``dim`` is 0).
    """

    dim: int = 0

    def cut(self, key: str, tensor: torch.Tensor, config=None) -> tuple[torch.Tensor, ...]:
        heads = n_heads_of(config, type(self).__name__)
        if tensor.dim() == 0 or tensor.shape[0] % (heads * len(self.parts)):
            raise CheckpointError(
                f"{key} has shape {tuple(tensor.shape)}: its rows do not split into {heads} heads of "
                f"{len(self.parts)} equal parts ({', '.join(self.parts)}) each"
            )
        per_head = tensor.reshape(heads, len(self.parts), -1, *tensor.shape[1:])  # [head, part, d_head, ...]
        return tuple(per_head[:, index].flatten(0, 1) for index in range(len(self.parts)))

    def glue(self, parts: list[torch.Tensor], config=None) -> torch.Tensor:
        heads = n_heads_of(config, type(self).__name__)
        per_head = [part.reshape(heads, -1, *part.shape[1:]) for part in parts]  # each [head, d_head, ...]
        return torch.stack(per_head, dim=1).flatten(0, 2)  # [head * n_parts * d_head, ...]


@dataclass(frozen=True)
class FusedHeadsSplit(FusedSplit):
    """Parts of unequal widths side by side, each a whole number of heads (Phi-3's ``qkv_proj``: the rows of
    every query head, then those of every key/value head for k and for v, fewer under grouped-query
    attention).

    Part i is ``getattr(config, head_counts[i]) * config.d_head`` wide along ``dim``, so cutting needs the
    config; fusing concatenates, as :class:`FusedSplit` does.

    Attributes: as :class:`FusedSplit`'s, and ``head_counts``: the config's head count of each part.
    """

    head_counts: tuple[str, ...] = ("n_heads", "n_kv_heads", "n_kv_heads")

    def cut(self, key: str, tensor: torch.Tensor, config=None) -> tuple[torch.Tensor, ...]:
        if config is None:
            raise TypeError(f"{type(self).__name__} needs the config (head counts, d_head) to split {key}")
        widths = [getattr(config, count) * config.d_head for count in self.head_counts]
        if tensor.dim() == 0 or tensor.shape[self.dim] != sum(widths):
            parts = ", ".join(f"{part} ({width})" for part, width in zip(self.parts, widths))
            raise CheckpointError(
                f"{key} has shape {tuple(tensor.shape)}: dimension {self.dim} is not {sum(widths)}, {parts}"
            )
        return tensor.split(widths, dim=self.dim)


def n_heads_of(config, rule: str) -> int:
    """The query-head count a per-head rule cuts by (``config.n_heads``)."""
    if config is None:
        raise TypeError(f"{rule} needs the config (n_heads) to split or fuse per head")
    return config.n_heads


@dataclass(frozen=True)
class HeadShapedProjections:
    """Projections Hugging Face stores per head, [d_model, head, d_head] (XLNet's ``rel_attn.q``), that are
    ``nn.Linear`` weights here: ``{module}.{name}`` <-> ``{module}.{name}.weight``, [head * d_head, d_model],
    or [d_model, head * d_head] for the ``outputs`` (which map heads back to d_model).

    Attributes:
        module: the attention module's name (the key's third-to-last part once ``.weight`` is added).
        names: the projections stored per head.
        outputs: those of ``names`` that are output projections (not transposed).
    """

    module: str
    names: tuple[str, ...]
    outputs: tuple[str, ...] = ("o",)

    def split(self, hf_state: dict[str, torch.Tensor], config=None) -> dict[str, torch.Tensor]:
        out = {}
        for key, tensor in hf_state.items():
            name = key.rsplit(".", 1)[-1]
            if f".{self.module}." in key and name in self.names:
                if tensor.dim() != 3:
                    raise CheckpointError(
                        f"{key} has shape {tuple(tensor.shape)}; the attention projections of "
                        f"{self.module} are stored [d_model, head, d_head]"
                    )
                flat = tensor.reshape(tensor.shape[0], -1)  # [d_model, head * d_head]
                out[key + ".weight"] = flat if name in self.outputs else flat.t()
            else:
                out[key] = tensor
        return out

    def join(self, hf_state: dict[str, torch.Tensor], config=None) -> dict[str, torch.Tensor]:
        """``config`` gives ``n_heads`` and ``d_head``."""
        if config is None:
            raise TypeError("HeadShapedProjections.join needs the config (n_heads, d_head)")
        out = {}
        for key, tensor in hf_state.items():
            parts = key.split(".")
            if (
                len(parts) > 2
                and parts[-3] == self.module
                and parts[-2] in self.names
                and parts[-1] == "weight"
            ):
                flat = tensor if parts[-2] in self.outputs else tensor.t()
                out[key[: -len(".weight")]] = flat.reshape(
                    flat.shape[0], config.n_heads, config.d_head
                ).contiguous()
            else:
                out[key] = tensor
        return out


def split_fused(rules, hf_state: dict[str, torch.Tensor], config=None) -> dict[str, torch.Tensor]:
    """Apply ``rules`` in order: Hugging Face's tensors -> ours (before the key map renames them)."""
    for rule in rules:
        hf_state = rule.split(hf_state, config)
    return hf_state


def join_fused(rules, hf_state: dict[str, torch.Tensor], config=None) -> dict[str, torch.Tensor]:
    """Undo :func:`split_fused`: our tensors -> Hugging Face's, rules in reverse order."""
    for rule in reversed(rules):
        hf_state = rule.join(hf_state, config)
    return hf_state


class FusedWeights:
    """A mixin for models whose Hugging Face checkpoints store tensors fused or shaped otherwise: the class
    declares its rules in ``fused_weights``; loading splits by them, saving fuses back (in reverse order)."""

    fused_weights: tuple = ()

    @classmethod
    def unfuse_hf_state(cls, hf_state: dict[str, torch.Tensor], config=None) -> dict[str, torch.Tensor]:
        """Hugging Face's tensors -> ours, by ``fused_weights``, before the key map renames them (``config``:
        the checkpoint's, for the rules that cut per head)."""
        return split_fused(cls.fused_weights, hf_state, config)

    def fuse_hf_state(self, hf_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The inverse of :meth:`unfuse_hf_state`, when saving."""
        return join_fused(self.fused_weights, hf_state, self.config)
