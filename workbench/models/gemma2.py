"""Gemma 2 (Gemma Team 2024, "Gemma 2: Improving Open Language Models at a Practical Size"): Gemma's decoder
(:mod:`workbench.models.gemma`) with four changes, written here as overrides of its parts:

- sandwich blocks: a norm after each sublayer as well as before it,
  ``x = x + RMSNorm(Attention(RMSNorm(x)))``, ``x = x + RMSNorm(GeGLU(RMSNorm(x)))``;
- attention logits soft-capped, ``c * tanh(scores / c)`` (``attn_logit_softcapping``), before the mask, and
  scaled by ``query_pre_attn_scalar ** -0.5`` instead of ``head_dim ** -0.5``;
- local and global layers alternating (``layer_types``; by default the even layers are local): a local layer's
  query sees only the last ``sliding_window`` positions, itself included;
- the LM logits soft-capped as well (``final_logit_softcapping``).

Hugging Face names the MLP's activation ``hidden_activation`` here (``hidden_act``, which the released
config.json files also carry, is not read).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..architecture import Architecture
from ..components import Attention, GatedMLP, SandwichBlock, activation
from ..config import ConfigError
from ..hook_points import HookPoint
from ..loading import KeyMap
from .gemma import GemmaConfig, GemmaForCausalLM, GemmaForSequenceClassification, GemmaModel
from .llama import LLAMA_KEY_MAP

LAYER_TYPES = ("sliding_attention", "full_attention")

# Configuration ---------------------------------------------------------------------------------------


@dataclass
class Gemma2Config(GemmaConfig):
    """Gemma 2's hyper-parameters, with Hugging Face's names and defaults (Gemma 2 2B's sizes): Gemma's fields
    (:class:`~workbench.models.gemma.GemmaConfig`) and those below."""

    model_type = "gemma2"
    SIZE_FIELDS = (*GemmaConfig.SIZE_FIELDS, "sliding_window")

    hidden_size: int = 2304  #: d_model.
    intermediate_size: int = 9216  #: d_mlp, the width of the gated MLP.
    num_hidden_layers: int = 26  #: blocks.
    num_attention_heads: int = 8  #: query heads per block.
    num_key_value_heads: int | None = 4  #: key/value heads per block (None: as many as query heads).
    hidden_activation: str = "gelu_pytorch_tanh"  #: the gate's activation (GeGLU); Gemma 2 reads this one.
    query_pre_attn_scalar: float = 256  #: attention scores are q.k * query_pre_attn_scalar ** -0.5.
    sliding_window: int | None = 4096  #: how many positions a query of a local layer sees, itself included.
    #: per layer ``"sliding_attention"`` (local) or ``"full_attention"`` (global); None: local, global, local,
    #: ... (Hugging Face's default; kept None, so that it follows num_hidden_layers when that changes).
    layer_types: list[str] | None = None
    final_logit_softcapping: float | None = 30.0  #: c in ``c * tanh(logits / c)`` on the LM logits (None: off).
    attn_logit_softcapping: float | None = 50.0  #: c in ``c * tanh(scores / c)`` on attention scores (None: off).

    BLOCK_NORMS = 4  # sandwich blocks: a norm before and after each sublayer

    def validate(self) -> None:
        super().validate()
        activation(self.hidden_activation)
        types = self.layer_types
        if types is not None and (len(types) != self.num_hidden_layers or not set(types) <= set(LAYER_TYPES)):
            raise ConfigError(
                f"layer_types={self.layer_types!r} must name {self.num_hidden_layers} layers, each one of "
                f"{LAYER_TYPES}",
                field="layer_types",
            )
        for name in ("query_pre_attn_scalar", "final_logit_softcapping", "attn_logit_softcapping"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name}={value!r} must be positive", field=name)
        if self.extra.get("use_bidirectional_attention"):
            raise ConfigError("use_bidirectional_attention (Gemma 2 as an encoder) is not supported here",
                              field="use_bidirectional_attention")

    def layer_type(self, layer: int) -> str:
        """``"sliding_attention"`` or ``"full_attention"``: from ``layer_types``, else even layers local."""
        return self.layer_types[layer] if self.layer_types is not None else LAYER_TYPES[layer % 2]

    def window(self, layer: int) -> int | None:
        """The sliding window of ``layer``'s attention: None for a global layer."""
        return self.sliding_window if self.layer_type(layer) == "sliding_attention" else None


# Hugging Face parameter names <-> ours: Llama's, but its "post_attention_layernorm" is here the norm after
# attention (ln1_post), and the MLP has a norm on each side.
SANDWICH_NORMS = [
    ("layers.{i}.post_attention_layernorm.weight", "blocks.{i}.ln1_post.weight"),
    ("layers.{i}.pre_feedforward_layernorm.weight", "blocks.{i}.ln2.weight"),
    ("layers.{i}.post_feedforward_layernorm.weight", "blocks.{i}.ln2_post.weight"),
]
GEMMA2_KEY_MAP = KeyMap(
    [*(pair for pair in LLAMA_KEY_MAP.pairs if pair[0] != SANDWICH_NORMS[0][0]), *SANDWICH_NORMS],
    ignored=[pattern.pattern for pattern in LLAMA_KEY_MAP.ignored],
)


# The model, as Gemma's with Gemma 2's parts ----------------------------------------------------------


class Gemma2Model(GemmaModel):
    """The Gemma 2 decoder: Gemma's (:class:`~workbench.models.gemma.GemmaModel`) with sandwich blocks,
    soft-capped attention scaled by ``query_pre_attn_scalar``, and local (sliding-window) layers.

    Hooks: Gemma's, the blocks' order being the sandwich's: hook_resid_pre; ln1.*; attn.*; ln1_post.*;
    hook_attn_out (``ln1_post``'s output, what is added to the stream); hook_resid_mid; ln2.*; mlp.*;
    ln2_post.*; hook_mlp_out; hook_resid_post. ``attn.hook_scores`` are soft-capped, the mask added after;
    in a local layer the keys outside the window are masked there.
    """

    config_class = Gemma2Config
    body_key_map = GEMMA2_KEY_MAP

    def make_attention(self, config: Gemma2Config, layer: int) -> nn.Module:
        return Attention(
            config.d_model, config.n_heads, config.attention_dropout, config.query_pre_attn_scalar**-0.5,
            n_kv_heads=config.n_kv_heads, d_head=config.d_head, bias=config.attention_bias, rotary=True,
            sliding_window=config.window(layer), softcap=config.attn_logit_softcapping,
        )

    def make_mlp(self, config: Gemma2Config, layer: int) -> nn.Module:
        return GatedMLP(config.d_model, config.d_mlp, config.hidden_activation)

    def make_block(self, config: Gemma2Config, layer: int) -> nn.Module:
        attn, mlp = self.make_attention(config, layer), self.make_mlp(config, layer)
        return SandwichBlock(
            attn, mlp, config.d_model, config.rms_norm_eps, 0.0, norm=lambda: self.make_norm(config)
        )


class Gemma2ForCausalLM(GemmaForCausalLM, Gemma2Model):
    """Gemma 2 predicting the next token: ``unembed`` (the token embedding unless ``tie_word_embeddings`` is
    off), then ``final_logit_softcapping`` c: ``c * tanh(logits / c)``.

    Hooks: ``hook_logits_uncapped`` [batch, pos, vocab] (before the soft-cap; only with one), then
    ``hook_logits`` [batch, pos, vocab] (what the loss and generation read).
    """

    config_class = Gemma2Config

    def __init__(self, config: Gemma2Config) -> None:
        super().__init__(config)
        if config.final_logit_softcapping is not None:
            self.hook_logits_uncapped = HookPoint()  # [batch, pos, vocab]
            # registered after hook_logits: moved back so that hook_names keep the forward order
            self._modules["hook_logits"] = self._modules.pop("hook_logits")

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """[..., d_model] (after ``ln_final``) -> soft-capped logits [..., vocab], as Hugging Face caps them."""
        logits = self.unembed(hidden)
        cap = self.config.final_logit_softcapping
        if cap is None:
            return logits
        return torch.tanh(self.hook_logits_uncapped(logits) / cap) * cap


class Gemma2ForSequenceClassification(GemmaForSequenceClassification, Gemma2Model):
    """Gemma 2 scoring a sequence from its last real token (no soft-cap on the score, as in Hugging Face):
    ``hook_logits`` [batch, num_labels]."""

    config_class = Gemma2Config


def tiny_config(size, vocabulary) -> dict:
    """The tiny stand-in: grouped-query attention (two query heads per key/value head), head_dim d_model /
    n_heads, local layers seeing a quarter of the context, Gemma 2's soft-caps."""
    d_head = size.d_model // size.n_heads
    return {
        "num_key_value_heads": max(1, size.n_heads // 2), "head_dim": d_head, "query_pre_attn_scalar": d_head,
        "sliding_window": max(1, size.n_positions // 4),
    }


ARCHITECTURE = Architecture(
    "Gemma 2", Gemma2Config, Gemma2Model, causal_lm=Gemma2ForCausalLM, default_task="causal_lm",
    sequence_classification=Gemma2ForSequenceClassification, tokenizer_family="byte_level_bpe",
    # gemma-2-2b, gemma-2-9b-it, gemma-2-27b
    name_patterns=(r"^gemma-2-\d+(\.\d+)?b",),
    tiny_config=tiny_config,
)
