"""A Hugging Face model with the workbench's hook points: ``wb.from_hf(hf_model)``.

:class:`HookedHF` holds the Hugging Face model as ``model.hf`` and runs it unchanged. Its hook points are
identity modules in a tree of their own (``blocks.{i}.attn.hook_pattern`` and the other canonical names,
from the family's :class:`~workbench.bridge.adapters.Adapter`; ``hf.<module path>`` and
``hf.<module path>.hook_in`` for the output and the input of every module). A forward with no hook attached is
Hugging Face's forward and nothing else; a forward with hooks attaches torch module hooks to the modules
those hook points read, for that forward only, and removes them after it (also after an error). Hooks that
need the inside of attention (q, k, v, pattern, z) switch the model to the ``"workbench"`` attention function
(:mod:`workbench.bridge.attention`) for that forward and back.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import torch
from torch import nn

from ..config import ModelConfig
from ..hook_points import HookFn, HookPoint, NameOrPredicate
from ..model import GenerationMixin, HookedTransformer
from ..tokenizers import Tokenizer, has_tokenizer_files
from . import attention, experts
from .adapters import Adapter, Stack
from .catalog import find_adapter
from .discover import discover_adapter
from .taps import FusedQKVTap, HalvesTap, PatternTap, ResidMidTap, RunState, Tap

logger = logging.getLogger(__name__)

AnyTap = Union[Tap, FusedQKVTap, HalvesTap, PatternTap, ResidMidTap]


# Config --------------------------------------------------------------------------------------------------


@dataclass
class BridgeConfig(ModelConfig):
    """The canonical sizes of a bridged model, read from its Hugging Face config (which stays at
    ``model.hf.config``); ``hf_model_type`` is the family's ``model_type``."""

    ATTRIBUTE_MAP = {
        "d_model": "hidden_size", "n_layers": "num_hidden_layers", "n_heads": "num_attention_heads",
        "n_kv_heads": "num_key_value_heads", "d_head": "head_dim", "d_mlp": "intermediate_size",
        "max_positions": "max_position_embeddings",
    }

    hf_model_type: str = ""  #: the Hugging Face config's ``model_type``.
    vocab_size: int = 0  #: rows of the input embedding.
    hidden_size: int = 0  #: d_model (0 when the config names none).
    num_hidden_layers: int = 0  #: blocks (of the last stack, the decoder's in an encoder-decoder).
    num_attention_heads: int = 0  #: query heads per block (0: no attention, e.g. Mamba).
    num_key_value_heads: int = 0  #: key/value heads per block.
    head_dim: int = 0  #: d_head.
    intermediate_size: int = 0  #: d_mlp.
    max_position_embeddings: int = 1 << 30  #: positions the model has (a large number when unbounded).
    eos_token_id: int | list[int] | None = None  #: the end-of-text token(s), for generate.
    num_labels_: int | None = None

    @property
    def model_type(self) -> str:  # type: ignore[override]
        return self.hf_model_type

    @classmethod
    def from_hf(cls, hf_config: Any) -> BridgeConfig:
        """Read the canonical sizes from any Hugging Face config, trying each family's names for them."""
        text = hf_config.get_text_config() if hasattr(hf_config, "get_text_config") else hf_config
        d_model = _first(text, "hidden_size", "d_model", "n_embd", "dim", "embed_dim") or 0
        n_heads = _first(text, "num_attention_heads", "num_heads", "n_head", "n_heads", "encoder_attention_heads") or 0
        n_kv = _first(text, "num_key_value_heads", "num_kv_heads", "multi_query_group_num") or n_heads
        if getattr(text, "multi_query", False) and not getattr(text, "new_decoder_architecture", False):
            n_kv = 1
        head_dim = _first(text, "head_dim", "d_kv", "attention_head_size") or (d_model // n_heads if n_heads else 0)
        return cls(
            hf_model_type=getattr(hf_config, "model_type", "") or type(hf_config).__name__,
            vocab_size=_first(text, "vocab_size") or 0,
            hidden_size=d_model,
            num_hidden_layers=_first(text, "num_decoder_layers", "num_hidden_layers", "num_layers", "n_layer",
                                     "n_layers", "decoder_layers") or 0,
            num_attention_heads=n_heads,
            num_key_value_heads=n_kv,
            head_dim=head_dim,
            intermediate_size=_first(text, "intermediate_size", "ffn_dim", "d_ff", "n_inner", "decoder_ffn_dim") or 0,
            max_position_embeddings=_first(text, "max_position_embeddings", "n_positions", "n_ctx") or (1 << 30),
            eos_token_id=getattr(text, "eos_token_id", None),
            id2label=dict(getattr(hf_config, "id2label", None) or {0: "LABEL_0", 1: "LABEL_1"}),
            tie_word_embeddings=bool(getattr(hf_config, "tie_word_embeddings", True)),
            name_or_path=str(getattr(hf_config, "name_or_path", "") or getattr(hf_config, "_name_or_path", "")),
        )

    def validate(self) -> None:
        """Sizes come from a config transformers has accepted already."""


def _first(config: Any, *names: str) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None and not callable(value):
            return value
    return None


# The hook-point tree -------------------------------------------------------------------------------------


class BridgeAttention(nn.Module):
    """``attn.hook_q``, ``hook_k``, ``hook_v``, ``hook_pattern``, ``hook_z`` (see :mod:`.attention`); ``scale``:
    what the last hooked run multiplied q.k by (None before one)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale: float | None = None
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        self.hook_pattern, self.hook_z = HookPoint(), HookPoint()


class BridgeNorm(nn.Module):
    """``ln*.hook_normalized``: the norm module's output."""

    def __init__(self) -> None:
        super().__init__()
        self.hook_normalized = HookPoint()


class BridgeMLP(nn.Module):
    """``mlp.hook_pre`` (first projection's output), ``hook_pre_linear`` (a gated MLP's other projection),
    ``hook_post`` (what the last projection reads)."""

    def __init__(self, gated: bool) -> None:
        super().__init__()
        self.hook_pre = HookPoint()
        if gated:
            self.hook_pre_linear = HookPoint()
        self.hook_post = HookPoint()


class BridgeExpert(nn.Module):
    """``mlp.experts.{e}.hook_out``: one expert's output (see :mod:`workbench.bridge.experts`)."""

    def __init__(self) -> None:
        super().__init__()
        self.hook_out = HookPoint()


class BridgeBlock(nn.Module):
    """The hook points of one block, as attributes in forward order."""

    def __init__(self, stack: Stack, n_experts: int = 0) -> None:
        super().__init__()
        self.hook_resid_pre = HookPoint()
        if stack.ln1 and stack.kind != "post_norm":
            self.ln1 = BridgeNorm()
        if stack.attention in ("interface", "projections") and stack.attn:
            self.attn = BridgeAttention()
        if stack.attn or stack.attn_out:
            self.hook_attn_out = HookPoint()
        if stack.kind != "parallel" and (stack.attn or stack.resid_mid):
            if stack.ln1 and stack.kind == "post_norm":
                self.ln1 = BridgeNorm()
            self.hook_resid_mid = HookPoint()
        if stack.cross_attn:
            self.cross_attn = BridgeAttention()
            self.hook_cross_attn_out = HookPoint()
        if stack.ln2 and stack.kind != "post_norm":
            self.ln2 = BridgeNorm()
        if stack.mlp_in or stack.mlp_out:
            self.mlp = BridgeMLP(gated=stack.mlp_in_linear is not None or stack.mlp_in_fused)
        if stack.mlp:
            self.hook_mlp_out = HookPoint()
        if stack.ln2 and stack.kind == "post_norm":
            self.ln2 = BridgeNorm()
        for name in stack.extra:
            _add_point(self, name)
        if n_experts:
            if not hasattr(self, "mlp"):
                self.mlp = nn.Module()
            self.mlp.experts = nn.ModuleList(BridgeExpert() for _ in range(n_experts))
        self.hook_resid_post = HookPoint()


class BridgeStack(nn.Module):
    """``blocks`` and ``ln_final`` of one stack (the encoder's or the decoder's in an encoder-decoder)."""

    def __init__(self, stack: Stack, n_blocks: int, n_experts: int = 0) -> None:
        super().__init__()
        if stack.embed:
            self.hook_embed = HookPoint()
        self.blocks = nn.ModuleList(BridgeBlock(stack, n_experts) for _ in range(n_blocks))
        if stack.final_norm:
            self.ln_final = BridgeNorm()


# The model -----------------------------------------------------------------------------------------------


class HookedHF(GenerationMixin, HookedTransformer):
    """A Hugging Face model with the workbench's hook points, built by :func:`from_hf`.

    Attributes:
        hf: the Hugging Face model, run unchanged.
        adapter: the family's layout (declared, or found by :func:`~workbench.bridge.discover.discover_adapter`).
        bridge_notes: how this family's hook points differ from the canonical ones, and what could not be
            mapped.
    """

    config_class = BridgeConfig

    def __init__(self, hf_model: nn.Module, adapter: Adapter, notes: str = "") -> None:
        super().__init__(BridgeConfig.from_hf(hf_model.config))
        self.hf = hf_model
        self.adapter = adapter
        self.bridge_notes = " ".join(part for part in (adapter.notes, notes) if part)
        base = getattr(hf_model, "base_model", hf_model)
        self._base = base
        if not any(stack.embed for stack in adapter.stacks):  # else each stack has its own hook_embed
            self.hook_embed = HookPoint()
        for name in adapter.embeds:
            _add_point(self, name)
        # (the adapter's stack, Hugging Face's blocks, the hook-point blocks: one per layer)
        self._stacks: list[tuple[Stack, nn.ModuleList, list[BridgeBlock]]] = []
        for stack in adapter.stacks:
            blocks = _module_at(base, stack.blocks, "blocks")
            n_experts = experts.experts_count(hf_model.config, stack.experts_from_config) if stack.experts else 0
            hooks = BridgeStack(stack, _layer_count(stack, blocks, hf_model.config), n_experts)
            if stack.prefix:
                self.add_module(stack.prefix.rstrip("."), hooks)
            else:
                if stack.embed:
                    self.hook_embed = hooks.hook_embed
                self.blocks = hooks.blocks
                if stack.final_norm:
                    self.ln_final = hooks.ln_final
            self._stacks.append((stack, blocks, list(hooks.blocks)))
        self.hook_logits = HookPoint()
        self._module_points = {
            f"hf.{path}" + suffix: HookPoint() for path, _ in hf_model.named_modules() if path
            for suffix in ("", ".hook_in")
        }
        self._forward_parameters = set(inspect.signature(hf_model.forward).parameters)
        self._taps = self._make_taps()

    # Hook points -------------------------------------------------------------------------------------
    def hook_points(self) -> dict[str, HookPoint]:
        """The canonical hook points (in forward order), then ``hf.<path>`` and ``hf.<path>.hook_in`` for every
        module of the Hugging Face model."""
        points = self.__dict__.get("_hook_points")
        if points is None:
            points = {}
            for name, module in self.named_modules():
                if isinstance(module, HookPoint) and not name.startswith("hf."):
                    module.name = name
                    points[name] = module
            for name, point in self._module_points.items():
                point.name = name
                points[name] = point
            self.__dict__["_hook_points"] = points
        return points

    def _make_taps(self) -> list[AnyTap]:
        """Every tap, from the adapter's paths and every module's path."""
        base, config = self._base, self.config
        taps: list[AnyTap] = []
        if hasattr(self, "hook_embed"):
            taps.append(Tap((self.hook_embed,), self.hf.get_input_embeddings()))
        for name, path in self.adapter.embeds.items():
            module = _module_at(base, path, name, optional=True)
            if module is not None:
                taps.append(Tap(_points([self], name), module))
        sizes = (config.n_heads, config.n_kv_heads, config.d_head)
        for stack, blocks, hook_blocks in self._stacks:
            owner = self if not stack.prefix else getattr(self, stack.prefix.rstrip("."))
            if stack.embed:
                taps.append(Tap((owner.hook_embed,), _module_at(base, stack.embed, "embed")))
            for block, layers in zip(blocks, _layers_per_block(len(blocks), len(hook_blocks))):
                taps += block_taps(stack, block, [hook_blocks[i] for i in layers], sizes)
            if stack.final_norm:
                norm = _module_at(base, stack.final_norm, "final_norm", optional=True)
                if norm is not None:
                    taps.append(Tap((owner.ln_final.hook_normalized,), norm))
        for path, module in self.hf.named_modules():
            if path:
                taps.append(Tap((self._module_points[f"hf.{path}"],), module, "out"))
                taps.append(Tap((self._module_points[f"hf.{path}.hook_in"],), module, "in"))
        return taps

    @contextmanager
    def _attached(self, state: RunState) -> Iterator[None]:
        """Torch module hooks for the active taps, and the workbench attention function where q, k, v, the
        pattern or z are hooked; all removed on exit, also on error."""
        with ExitStack() as undo:
            for tap in self._taps:
                if tap.is_active:
                    undo.callback(tap.attach(state).remove)
            undo.enter_context(self._attention_hooks())
            undo.enter_context(self._experts_hooks(state))
            yield

    @contextmanager
    def _experts_hooks(self, state: RunState) -> Iterator[None]:
        """Hand the experts modules whose experts are hooked their hook points and switch the model to the
        workbench experts function (:mod:`workbench.bridge.experts`) for this forward."""
        hooked = []
        for stack, blocks, hook_blocks in self._stacks:
            if not stack.experts:
                continue
            for block, layers in zip(blocks, _layers_per_block(len(blocks), len(hook_blocks))):
                containers = [hook_blocks[i].mlp for i in layers]
                if any(expert.hook_out.is_active for container in containers for expert in container.experts):
                    module = _module_at(block, stack.experts, "experts")
                    experts.check_supported(module)
                    hooked.append((module, experts.ExpertCalls(containers, state.batch)))
        with _implementation_switched(self.hf, hooked, experts.HOOKS_ATTRIBUTE, "_experts_implementation",
                                      experts.IMPLEMENTATION, experts.register):
            yield

    @contextmanager
    def _attention_hooks(self) -> Iterator[None]:
        """Hand the attention modules of ``interface`` stacks their hook points (one set per call, for shared
        blocks) and switch the model to the workbench attention function, when any of them is active."""
        hooked = []
        for stack, blocks, hook_blocks in self._stacks:
            if stack.attention != "interface":
                continue
            for block, layers in zip(blocks, _layers_per_block(len(blocks), len(hook_blocks))):
                for path, name in ((stack.attn, "attn"), (stack.cross_attn, "cross_attn")):
                    containers = [getattr(hook_blocks[i], name, None) for i in layers]
                    if not path or None in containers or not any(
                        point.is_active for container in containers for point in container.children()
                    ):
                        continue
                    hooked.append((_module_at(block, path, name), attention.CallCycle(containers)))
        with _implementation_switched(self.hf, hooked, attention.HOOKS_ATTRIBUTE, "_attn_implementation",
                                      attention.IMPLEMENTATION, attention.register):
            yield

    # Running -----------------------------------------------------------------------------------------
    def forward(self, input_ids: torch.Tensor | None = None, **kwargs: Any) -> Any:
        """Hugging Face's forward (same arguments, same output), with the active hook points attached.

        ``past_key_values`` is passed as Hugging Face's ``cache`` where the model names it so, and the output's
        cache is also ``out.past_key_values``. With a key/value cache or a left-padded batch, position ids come
        from the attention mask (real tokens counted), as Hugging Face's ``generate`` makes them.
        """
        if input_ids is not None:
            kwargs["input_ids"] = input_ids
        kwargs = self._hf_arguments(kwargs)
        batch = _batch_size(kwargs)
        active = any(point.is_active for point in self.hook_points().values())
        if not active:
            return self._finish(self.hf(**kwargs))
        if "output_attentions" in self._forward_parameters and any(
            isinstance(tap, PatternTap) and tap.is_active for tap in self._taps
        ):
            kwargs.setdefault("output_attentions", True)  # families that return probabilities only when asked
        with self._attached(RunState(batch)):
            out = self.hf(**kwargs)
        return self._finish(out)

    def hf_generate(self, *args: Any, fwd_hooks: Iterable[tuple[NameOrPredicate, HookFn]] = (), **kwargs: Any) -> Any:
        """Hugging Face's own ``generate`` (every decoding strategy, encoder-decoders too), with the hook points
        active on every step: ``fwd_hooks`` for this call, and any attached with ``model.hooks(...)`` around it.

        ``model.generate`` (the workbench's: greedy or sampled, a token table, ``return_cache``) is the one for
        decoder-only models; this one is for what it does not cover (beam search, T5/BART). The first step's
        hooks see the whole input, later steps the new token (and, in an encoder-decoder, the encoder runs once).
        """
        inputs = kwargs.get("input_ids", args[0] if args else None)
        batch = inputs.shape[0] if isinstance(inputs, torch.Tensor) and inputs.dim() == 2 else 0
        with self.hooks(fwd_hooks), self._attached(RunState(batch)):
            return self.hf.generate(*args, **kwargs)

    def _hf_arguments(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        params = self._forward_parameters
        if "past_key_values" in kwargs and "past_key_values" not in params and "cache" in params:
            kwargs["cache"] = kwargs.pop("past_key_values")
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        if cache is not None and not self.adapter.mask_with_cache:
            kwargs.pop("attention_mask", None)
        mask = kwargs.get("attention_mask")
        if "position_ids" in params and kwargs.get("position_ids") is None and mask is not None and mask.dim() == 2:
            left_padded = bool((mask[:, 0] == 0).any()) and bool((mask.sum(-1) > 0).all())
            if cache is not None or left_padded:
                positions = mask.long().cumsum(-1) - 1
                positions = positions.masked_fill(mask == 0, 1)
                new = (kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs["inputs_embeds"])
                kwargs["position_ids"] = positions[:, -new.shape[1]:]
        return kwargs

    def _finish(self, out: Any) -> Any:
        logits = getattr(out, "logits", None)
        if isinstance(logits, torch.Tensor) and self.hook_logits.is_active:
            out.logits = self.hook_logits(logits)
        if hasattr(out, "cache") and "past_key_values" not in out:
            out["past_key_values"] = out.cache
        return out

    @property
    def read_only_hooks(self) -> list[str]:
        """Hook points whose activation can be read but not replaced (a pattern a family forms inside its own
        attention module): a hook returning a replacement there is an error."""
        return [point.name for tap in self._taps
                if isinstance(tap, PatternTap) or (isinstance(tap, Tap) and tap.read_only) for point in tap.points]

    # What the analysis functions read ------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return len(self._stacks[-1][2]) if self._stacks else 0

    @property
    def stack_prefix(self) -> str:
        """The hook-name prefix of the stack the analysis tools read (the logit lens, activation patching): the
        last one, the decoder's in an encoder-decoder (``"decoder."``), else ``""``."""
        return self._stacks[-1][0].prefix if self._stacks else ""

    @property
    def stack_input(self) -> str:
        """The input whose positions that stack's hook points have: ``decoder_input_ids`` in an encoder-decoder."""
        return "decoder_input_ids" if self.stack_prefix == "decoder." else "input_ids"

    @property
    def embed_hook(self) -> str:
        """The token embeddings' hook point attribution replaces: ``hook_embed``, or the first stack's own
        (``encoder.hook_embed`` in T5 and BART)."""
        if "hook_embed" in self.hook_points():
            return "hook_embed"
        return f"{self._stacks[0][0].prefix}hook_embed"

    @property
    def embed(self) -> nn.Module:
        return self.hf.get_input_embeddings()

    @property
    def unembed(self) -> nn.Module | None:
        return self.hf.get_output_embeddings() if hasattr(self.hf, "get_output_embeddings") else None

    @property
    def classifier_position(self) -> str:  # type: ignore[override]
        """Decoders classify from the last real token, encoders from the first."""
        return "last" if getattr(self.hf.config, "is_decoder", False) or self._is_causal() else "first"

    def _is_causal(self) -> bool:
        return any(name.endswith("ForCausalLM") or name.endswith("LMHeadModel")
                   for name in (getattr(self.hf.config, "architectures", None) or [type(self.hf).__name__]))

    @property
    def decode_residual(self):
        """``decode_residual(resid [..., d_model]) -> logits [..., vocab]``: through the final norm (and what
        else the adapter's ``decode`` names: OPT's ``project_out``, an MLM head's transform), then the
        unembedding, as the last block's output is decoded. Only models with an unembedding have it (the logit
        lens and attribution ask ``hasattr(model, "decode_residual")``)."""
        if self.unembed is None:
            raise AttributeError(
                f"{type(self.hf).__name__} has no unembedding (get_output_embeddings() is None): no decode_residual"
            )
        return self._decode_residual

    def _decode_residual(self, resid: torch.Tensor) -> torch.Tensor:
        x = resid
        for path in self.adapter.decode_paths:
            module = _module_at(self._base, path, "decode", optional=True)
            if module is None:
                module = _module_at(self.hf, path, "decode", optional=True)
            if module is not None:
                x = module(x)
        scale = self.adapter.decode_scale(self.hf.config) if self.adapter.decode_scale else None
        logits = self.unembed(x * scale if scale is not None else x)
        bias = _module_at(self.hf, self.adapter.logits_bias, "logits_bias", optional=True) if (
            self.adapter.logits_bias) else None
        return logits + bias.to(logits.dtype) if bias is not None else logits

    @property
    def classifier(self) -> nn.Module:
        """The classification head of a ``*ForSequenceClassification`` / ``*ForTokenClassification`` model
        (attribution asks ``hasattr(model, "classifier")`` to take class-index targets)."""
        name = type(self.hf).__name__
        head = getattr(self.hf, "classifier", None) or getattr(self.hf, "score", None)
        if head is None or not name.endswith(("ForSequenceClassification", "ForTokenClassification")):
            raise AttributeError(f"{name} has no classification head")
        return head

    @property
    def hf_architecture(self) -> str:
        """The Hugging Face class this model is (``OPTForCausalLM``)."""
        return type(self.hf).__name__

    def save_pretrained(self, folder: str | Path) -> Path:
        """The Hugging Face model's own ``save_pretrained`` (and the tokenizer)."""
        folder = Path(folder)
        self.hf.save_pretrained(folder)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(folder)
        return folder

    def extra_repr(self) -> str:
        return f"bridge of {type(self.hf).__name__} ({self.config.model_type})"


def _add_point(owner: nn.Module, name: str) -> None:
    """A hook point at dotted ``name`` under ``owner`` (``ln_embed.hook_normalized`` makes ``ln_embed``)."""
    *parents, leaf = name.split(".")
    for parent in parents:
        if not hasattr(owner, parent):
            owner.add_module(parent, nn.Module())
        owner = getattr(owner, parent)
    owner.add_module(leaf, HookPoint())


def _owner_path(stack: Stack, name: str) -> str | None:
    """The path of the module whose output is the block hook ``name`` (for ``Stack.copy_outputs``)."""
    paths = {"hook_attn_out": stack.attn_out or stack.attn, "hook_mlp_out": stack.mlp, "mlp.hook_pre": stack.mlp_in,
             "ln1.hook_normalized": stack.ln1, "ln2.hook_normalized": stack.ln2}
    if name in stack.extra:
        return stack.extra[name][0]
    if name not in paths:
        raise ValueError(f"Stack.copy_outputs names {name!r}; expected one of {sorted(paths)} or an extra hook")
    return paths[name]


def _layer_count(stack: Stack, blocks: nn.ModuleList, hf_config: Any) -> int:
    """Layers of a stack: its blocks, or for shared blocks the config's count (``layers_from_config``)."""
    if stack.layers_from_config is None:
        return len(blocks)
    text = hf_config.get_text_config() if hasattr(hf_config, "get_text_config") else hf_config
    return int(getattr(text, stack.layers_from_config))


def _layers_per_block(n_blocks: int, n_layers: int) -> list[list[int]]:
    """For each block module, the layers that run it, in order (layer i runs block i * n_blocks // n_layers)."""
    layers: list[list[int]] = [[] for _ in range(n_blocks)]
    for i in range(n_layers):
        layers[i * n_blocks // n_layers].append(i)
    return layers


def _points(hooks: list[nn.Module], name: str) -> tuple[HookPoint, ...] | None:
    """The hook point at dotted ``name`` of each hook-point block, or None where the blocks have none."""
    found = []
    for block in hooks:
        point: Any = block
        for part in name.split("."):
            point = getattr(point, part, None)
        if point is None:
            return None
        found.append(point)
    return tuple(found)


def block_taps(stack: Stack, block: nn.Module, hooks: list[BridgeBlock], sizes: tuple[int, int, int]) -> list[AnyTap]:
    """The taps of one Hugging Face block, for the hook-point blocks of the layers that run it."""
    def at(path: str | None) -> nn.Module | None:
        return _module_at(block, path, "block part", optional=True) if path else None

    wanted: list[tuple[str, nn.Module | None, str, int | None]] = [
        ("hook_resid_pre", block, "in", None),
        ("ln1.hook_normalized", at(stack.ln1), "out", None),
        ("hook_attn_out", at(stack.attn_out or stack.attn), "out", None),
        ("hook_cross_attn_out", at(stack.cross_attn), "out", None),
        ("ln2.hook_normalized", at(stack.ln2), "out", None),
        ("mlp.hook_pre", at(stack.mlp_in), "out", None),
        ("mlp.hook_pre_linear", at(stack.mlp_in_linear), "out", None),
        ("mlp.hook_post", at(stack.mlp_out), "in", None),
        ("hook_mlp_out", at(stack.mlp), "out", None),
        ("hook_resid_post", block, "out", None),
    ]
    if stack.kind == "post_norm":
        wanted.append(("hook_resid_mid", at(stack.resid_mid), "out", None))
    n_heads, n_kv_heads, d_head = sizes
    if stack.attention == "projections":
        wanted += [("attn.hook_q", at(stack.q), "out", d_head), ("attn.hook_k", at(stack.k), "out", d_head),
                   ("attn.hook_v", at(stack.v), "out", d_head), ("attn.hook_z", at(stack.z), "in", d_head)]
    wanted += [(name, at(path), where, None) for name, (path, where) in stack.extra.items()]
    taps: list[AnyTap] = []
    if stack.mlp_in_fused:
        wanted = [entry for entry in wanted if entry[0] not in ("mlp.hook_pre", "mlp.hook_pre_linear")]
        pre, pre_linear, fused = _points(hooks, "mlp.hook_pre"), _points(hooks, "mlp.hook_pre_linear"), at(stack.mlp_in)
        if pre is not None and pre_linear is not None and fused is not None:
            taps.append(HalvesTap(pre, pre_linear, fused))
    copied = {at(_owner_path(stack, name)) for name in stack.copy_outputs} - {None}
    for name, module, where, heads in wanted:
        points = _points(hooks, name)
        if points is not None and module is not None:
            taps.append(Tap(points, module, where, heads, calls_per_point=stack.calls_per_layer.get(name, 1),
                            copy_output=where == "out" and module in copied, read_only=name in stack.read_only))
    points = _points(hooks, "hook_resid_mid")
    attn_out = at(stack.attn_out or stack.attn)
    if stack.kind == "pre_norm" and points is not None and attn_out is not None:
        taps.append(ResidMidTap(points, block, attn_out))
    if stack.attention == "projections":
        qkv, attn = at(stack.qkv), at(stack.attn)
        if qkv is not None:
            q, k, v = (_points(hooks, f"attn.hook_{part}") for part in "qkv")
            taps.append(FusedQKVTap(q, k, v, qkv, stack.qkv_layout, n_heads, n_kv_heads, d_head))
        pattern = _points(hooks, "attn.hook_pattern")
        if attn is not None and pattern is not None and stack.pattern_index is not None:
            taps.append(PatternTap(pattern, attn, stack.pattern_index))
    return taps


def _module_at(root: nn.Module, path: str, what: str, optional: bool = False) -> nn.Module | None:
    """The submodule at dotted ``path`` (None when ``optional`` and absent, e.g. OPT-350m's final norm)."""
    module = root
    for part in path.split("."):
        module = getattr(module, part, None)
        if module is None:
            if optional:
                return None
            raise ValueError(
                f"the bridge's adapter says the {what} is at {path!r}, but {type(root).__name__} has no "
                f"{part!r} there; its children are {[name for name, _ in root.named_children()]}"
            )
    return module


@contextmanager
def _implementation_switched(hf_model: nn.Module, hooked: list[tuple[nn.Module, Any]], attribute: str,
                             config_field: str, implementation: str, register) -> Iterator[None]:
    """For the ``with`` block: each hooked module gets its calls object (in its ``__dict__``, so not as a
    submodule) and every config of the model names the workbench's ``implementation`` in ``config_field``
    (``_attn_implementation``, ``_experts_implementation``); both undone on exit, also on error. Nothing is
    switched when nothing is hooked."""
    if not hooked:
        yield
        return
    register()
    configs = [config for config in _all_configs(hf_model) if hasattr(config, config_field)]
    before = [getattr(config, config_field) for config in configs]
    try:
        for module, calls in hooked:
            module.__dict__[attribute] = calls
        for config in configs:
            setattr(config, config_field, implementation)
        yield
    finally:
        for config, value in zip(configs, before):
            setattr(config, config_field, value)
        for module, _ in hooked:
            module.__dict__.pop(attribute, None)


def _all_configs(hf_model: nn.Module) -> list[Any]:
    """The config of every submodule that has one (encoder-decoders keep sub-configs), each once."""
    seen, configs = set(), []
    for module in hf_model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation") and id(config) not in seen:
            seen.add(id(config))
            configs.append(config)
    return configs


def _batch_size(kwargs: dict[str, Any]) -> int:
    for name in ("input_ids", "inputs_embeds", "decoder_input_ids"):
        value = kwargs.get(name)
        if isinstance(value, torch.Tensor) and value.dim() >= 2:
            return value.shape[0]
    return 0


# Building ------------------------------------------------------------------------------------------------


def from_hf(hf_model: nn.Module, tokenizer: Tokenizer | str | Path | Any | None = None,
            adapter: Adapter | None = None) -> HookedHF:
    """Put the workbench's hook points on a Hugging Face model (``transformers.PreTrainedModel``).

    Args:
        hf_model: the model, as ``transformers`` loaded it; it is put in eval mode and is not copied.
        tokenizer: a workbench :class:`~workbench.tokenizers.Tokenizer`, a folder holding tokenizer files, or a
            ``transformers`` tokenizer (saved and read back with the workbench's); by default the tokenizer of
            the checkpoint the model was loaded from (``config.name_or_path``), when its files are there.
        adapter: the layout to use; by default the one declared for ``config.model_type``, else the one
            :func:`~workbench.bridge.discover.discover_adapter` finds (a warning says what it could not map).

    Returns:
        a :class:`HookedHF`: ``run_with_cache``, ``run_with_hooks``, ``generate``, the logit lens, attribution,
        interventions and probes work on it as on a native model.
    """
    if not isinstance(hf_model, nn.Module) or not hasattr(hf_model, "config"):
        raise TypeError(
            f"from_hf needs a transformers model (a torch module with a .config), got {type(hf_model).__name__}"
        )
    notes = ""
    if adapter is None:
        model_type = getattr(hf_model.config, "model_type", "")
        declared = find_adapter(model_type)
        if declared is not None:
            adapter = declared.resolved(hf_model.config)
        else:
            adapter, notes = discover_adapter(hf_model)
            warnings.warn(
                f"workbench has no adapter for model_type {model_type!r}: the blocks were found automatically "
                f"({notes}). Every module is reachable as hf.<path> hooks.",
                stacklevel=2,
            )
    model = HookedHF(hf_model.eval(), adapter, notes)
    model.tokenizer = _bridge_tokenizer(hf_model, tokenizer)
    return model.eval()


def _bridge_tokenizer(hf_model: nn.Module, tokenizer: Any) -> Tokenizer | None:
    if isinstance(tokenizer, Tokenizer):
        return tokenizer
    if isinstance(tokenizer, (str, Path)):
        return Tokenizer.from_pretrained(tokenizer)
    if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            tokenizer.save_pretrained(folder)
            return Tokenizer.from_pretrained(folder)
    if tokenizer is not None:
        raise TypeError(
            f"tokenizer must be a workbench Tokenizer, a folder of tokenizer files or a transformers tokenizer, "
            f"got {type(tokenizer).__name__}"
        )
    source = getattr(hf_model.config, "name_or_path", "") or getattr(hf_model.config, "_name_or_path", "")
    if source and Path(source).is_dir() and has_tokenizer_files(Path(source)):
        return Tokenizer.from_pretrained(source)
    return None
