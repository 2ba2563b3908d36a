"""Qwen3 (Yang et al. 2025, "Qwen3 Technical Report"): Qwen2's layout with an RMSNorm on each head's queries
and keys, and a head width of its own.

What differs from :mod:`workbench.models.qwen2`:
- ``q_norm`` and ``k_norm``: RMSNorms over each head's ``head_dim`` values (one weight shared by the heads),
  applied to the queries and keys after their projections and before the rotation;
- ``head_dim`` is set apart from ``hidden_size / num_attention_heads`` (Hugging Face's default 128; Qwen3-0.6B
  has 16 heads of 128 on a width of 1024);
- no biases by default: ``attention_bias`` puts them on all four projections, the output one included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..architecture import Architecture
from ..components import RMSNorm
from ..loading import KeyMap
from .llama import LLAMA_KEY_MAP, LlamaConfig
from .qwen2 import Qwen2Config, Qwen2ForCausalLM, Qwen2ForSequenceClassification, Qwen2Model


@dataclass
class Qwen3Config(Qwen2Config):
    """Qwen3's hyper-parameters, with Hugging Face's names: Qwen2's, with a head width of its own and optional
    biases."""

    model_type = "qwen3"

    head_dim: int | None = 128  #: d_head, apart from hidden_size / num_attention_heads.
    attention_bias: bool = False  #: biases on the q, k, v and o projections.

    def attention_parameters(self) -> int:
        """Llama's count (biases on all four projections with ``attention_bias``, unlike Qwen2) and the
        per-head q and k norms, ``head_dim`` wide each."""
        return LlamaConfig.attention_parameters(self) + 2 * self.d_head


# Hugging Face parameter names <-> ours: Llama's, and the per-head norms of queries and keys.
QWEN3_KEY_MAP = KeyMap(
    [
        *LLAMA_KEY_MAP.pairs,
        ("layers.{i}.self_attn.q_norm.weight", "blocks.{i}.attn.q_norm.weight"),
        ("layers.{i}.self_attn.k_norm.weight", "blocks.{i}.attn.k_norm.weight"),
    ],
    ignored=[pattern.pattern for pattern in LLAMA_KEY_MAP.ignored],
)


class Qwen3Model(Qwen2Model):
    """The Qwen3 decoder: :class:`~workbench.models.qwen2.Qwen2Model` with per-head q/k RMSNorms.

    Hooks: Llama's, and in each attention, between ``hook_q``/``hook_k`` and ``hook_rot_q``/``hook_rot_k``:
    ``attn.q_norm.hook_scale`` [batch, pos, head, 1] (each head's root mean square),
    ``attn.q_norm.hook_normalized`` [batch, pos, head, d_head] (after the weight: what the rotation reads),
    then ``attn.k_norm.*`` with ``kv_head``.
    """

    config_class = Qwen3Config
    body_key_map = QWEN3_KEY_MAP

    def attention_options(self, config: Qwen3Config, layer: int) -> dict[str, Any]:
        return {
            **super().attention_options(config, layer),
            "out_bias": config.attention_bias,
            "qk_norm": lambda width: RMSNorm(width, config.rms_norm_eps),
        }


class Qwen3ForCausalLM(Qwen3Model, Qwen2ForCausalLM):
    """Qwen3 predicting the next token (Hugging Face's ``lm_head``; tied to the token embedding in the small
    releases): as :class:`~workbench.models.llama.LlamaForCausalLM`."""


class Qwen3ForSequenceClassification(Qwen3Model, Qwen2ForSequenceClassification):
    """Qwen3 scoring a sequence from its last real token (Hugging Face's ``score``): as
    :class:`~workbench.models.llama.LlamaForSequenceClassification`."""


def tiny_config(size, vocabulary) -> dict:
    """The tiny stand-in, as Qwen3-0.6B: heads twice as wide as ``d_model / n_heads``, grouped-query
    attention, a tied unembedding."""
    return {
        "head_dim": 2 * size.d_model // size.n_heads,
        "num_key_value_heads": max(1, size.n_heads // 2),
        "tie_word_embeddings": True,
    }


ARCHITECTURE = Architecture(
    "Qwen3", Qwen3Config, Qwen3Model, causal_lm=Qwen3ForCausalLM, default_task="causal_lm",
    sequence_classification=Qwen3ForSequenceClassification, tokenizer_family="byte_level_bpe",
    name_patterns=(r"^qwen3-",), tiny_config=tiny_config,
)
