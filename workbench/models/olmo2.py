"""OLMo 2 (OLMo et al. 2024, "2 OLMo 2 Furious"): Llama's layout with the norms moved after the sublayers.

What differs from :mod:`workbench.models.llama`:
- no norm before attention or the MLP: each block's norms act on the sublayer's output before it is added,
  ``x = x + RMSNorm1_post(Attention(x))``, ``x = x + RMSNorm2_post(MLP(x))``
  (:class:`~workbench.components.blocks.PostSublayerNormBlock`), and a final RMSNorm;
- RMSNorms on the queries and keys, each over the whole projection (all heads together, widths
  ``n_heads * d_head`` and ``n_kv_heads * d_head``), before the rotation;
- every RMSNorm casts back to the input's dtype after its weight, not before as Llama's (equal in float32);
- ``attention_bias`` puts biases on q, k, v and o; the MLP never has any (``mlp_bias`` stays false).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from ..architecture import Architecture
from ..components import PostSublayerNormBlock, RMSNorm
from ..config import ConfigError
from ..loading import KeyMap
from .llama import LLAMA_KEY_MAP, LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification, LlamaModel

# Configuration ---------------------------------------------------------------------------------------


@dataclass
class Olmo2Config(LlamaConfig):
    """OLMo 2's hyper-parameters, with Hugging Face's names: Llama's, with OLMo-2-1124-7B's vocabulary,
    special tokens and epsilon as defaults."""

    model_type = "olmo2"

    vocab_size: int = 50304  #: tokens in the vocabulary.
    rms_norm_eps: float = 1e-5  #: RMSNorm epsilon (of the block norms and the q/k norms).
    bos_token_id: int | None = None  #: the beginning-of-text token (OLMo 2 prepends none).
    eos_token_id: int | list[int] | None = 50279  #: the end-of-text token.
    pad_token_id: int | None = 1  #: the padding token.

    def validate(self) -> None:
        super().validate()
        if self.mlp_bias:
            raise ConfigError("OLMo 2's MLP has no biases: mlp_bias must be false", field="mlp_bias")

    def attention_parameters(self) -> int:
        """Llama's count and the q and k norms, each over all heads of its projection."""
        return super().attention_parameters() + (self.n_heads + self.n_kv_heads) * self.d_head


# Hugging Face parameter names <-> ours: Llama's, without the norms before the sublayers, with those after
# them and the q/k norms.
OLMO2_KEY_MAP = KeyMap(
    [(hf, ours) for hf, ours in LLAMA_KEY_MAP.pairs if "_layernorm." not in hf]
    + [
        ("layers.{i}.post_attention_layernorm.weight", "blocks.{i}.ln1_post.weight"),
        ("layers.{i}.post_feedforward_layernorm.weight", "blocks.{i}.ln2_post.weight"),
        ("layers.{i}.self_attn.q_norm.weight", "blocks.{i}.attn.q_norm.weight"),
        ("layers.{i}.self_attn.k_norm.weight", "blocks.{i}.attn.k_norm.weight"),
    ],
    ignored=[regex.pattern for regex in LLAMA_KEY_MAP.ignored],
)


# The model -------------------------------------------------------------------------------------------


class Olmo2Model(LlamaModel):
    """The OLMo 2 decoder: token embeddings, blocks with RMSNorms after attention and after the MLP, final
    RMSNorm.

    Hooks: hook_embed; per block ``blocks.{i}.``: hook_resid_pre; attn.hook_q, attn.hook_k, attn.hook_v (as
    Llama's, before the norms); attn.q_norm.hook_scale [batch, pos, 1] and attn.q_norm.hook_normalized
    [batch, pos, head * d_head] (and ``k_norm``'s, kv_head * d_head wide); attn.hook_rot_q, attn.hook_rot_k
    (the normalized q and k, rotated); attn.hook_scores, attn.hook_pattern, attn.hook_z; ln1_post.hook_scale,
    ln1_post.hook_normalized; hook_attn_out (``ln1_post``'s output); hook_resid_mid; mlp.hook_pre,
    mlp.hook_pre_linear, mlp.hook_post; ln2_post.*; hook_mlp_out; hook_resid_post; then ln_final.*. There is
    no ``ln1`` or ``ln2``: the sublayers read the residual stream itself.
    """

    config_class = Olmo2Config
    body_key_map = OLMO2_KEY_MAP

    def make_norm(self, config: Olmo2Config, width: int | None = None) -> nn.Module:
        """An RMSNorm over ``width`` features (default d_model), cast back after its weight (OLMo 2's)."""
        return RMSNorm(width or config.d_model, config.rms_norm_eps, cast_after_weight=True)

    def attention_options(self, config: Olmo2Config, layer: int) -> dict[str, Any]:
        return {
            **super().attention_options(config, layer),
            "qk_norm": lambda width: self.make_norm(config, width),
            "qk_norm_per_head": False,
        }

    def make_block(self, config: Olmo2Config, layer: int) -> nn.Module:
        attn, mlp = self.make_attention(config, layer), self.make_mlp(config, layer)
        return PostSublayerNormBlock(
            attn, mlp, config.d_model, config.rms_norm_eps, 0.0, norm=lambda: self.make_norm(config)
        )


class Olmo2ForCausalLM(Olmo2Model, LlamaForCausalLM):
    """OLMo 2 predicting the next token (Hugging Face's ``lm_head``): as
    :class:`~workbench.models.llama.LlamaForCausalLM`."""


class Olmo2ForSequenceClassification(Olmo2Model, LlamaForSequenceClassification):
    """OLMo 2 scoring a sequence from its last real token (Hugging Face's ``score``): as
    :class:`~workbench.models.llama.LlamaForSequenceClassification`."""


def tiny_config(size, vocabulary) -> dict:
    """The tiny stand-in: grouped-query attention (two query heads per key/value head), so that the k norm is
    narrower than the q norm."""
    return {"num_key_value_heads": max(1, size.n_heads // 2)}


ARCHITECTURE = Architecture(
    "OLMo 2", Olmo2Config, Olmo2Model, causal_lm=Olmo2ForCausalLM, default_task="causal_lm",
    sequence_classification=Olmo2ForSequenceClassification, tokenizer_family="byte_level_bpe",
    name_patterns=(r"^olmo-2",), tiny_config=tiny_config,
)
