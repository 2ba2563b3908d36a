"""Phi-3 (Abdin et al. 2024, "Phi-3 Technical Report"; also Phi-3.5 and Phi-4-mini, which share its
``model_type``): Llama's layout with fused projections.

What differs from :mod:`workbench.models.llama`:
- the checkpoints store q, k and v in one ``qkv_proj`` (the rows of every query head, then those of every
  key/value head for k and for v: unequal parts under grouped-query attention) and the gate and up
  projections in one ``gate_up_proj`` (gate rows first); they are split on load and fused again on save
  (:mod:`workbench.components.fused`), so the hooks are Llama's;
- the rotary settings may rotate only part of each head (``partial_rotary_factor`` in ``rope_parameters``,
  Phi-4-mini) and use ``longrope`` scaling (the 128k releases): per-frequency divisors, the long ones once an
  input is longer than ``original_max_position_embeddings`` (a field beside the rope settings, which Hugging
  Face prefers to the one inside them); ``su`` and ``yarn`` in older configs are read as ``longrope``, as
  Hugging Face reads them;
- an optional ``sliding_window`` in every layer (as Mistral's), and dropout ``resid_pdrop`` on what each
  sublayer adds to the residual stream while training;
- no biases anywhere.

With ``longrope`` the frequencies depend on the length of the input (its largest position), as in Hugging
Face: cached keys keep the rotation of the call that computed them, so a generation that grows past
``original_max_position_embeddings`` with the key/value cache keeps short-factor keys for the earlier
positions, where Hugging Face's ``generate`` drops its cache once and recomputes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from ..architecture import Architecture
from ..components import RotaryEmbedding
from ..components.fused import FusedHeadsSplit, FusedSplit, FusedWeights
from ..config import ConfigError
from ..loading import KeyMap
from .llama import LLAMA_KEY_MAP, LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification, LlamaModel

# Configuration ---------------------------------------------------------------------------------------


@dataclass
class Phi3Config(LlamaConfig):
    """Phi-3's hyper-parameters, with Hugging Face's names: Llama's (Phi-3-mini's defaults), the original
    context of ``longrope``, ``sliding_window`` and ``resid_pdrop``. ``attention_bias`` and ``mlp_bias`` stay
    false: Phi-3 has no biases."""

    model_type = "phi3"
    SIZE_FIELDS = (*LlamaConfig.SIZE_FIELDS, "original_max_position_embeddings", "sliding_window")
    PROBABILITY_FIELDS = (*LlamaConfig.PROBABILITY_FIELDS, "resid_pdrop")
    ROPE_TYPES = ("default", "longrope")  # those Hugging Face's Phi-3 accepts

    vocab_size: int = 32064  #: tokens in the vocabulary.
    hidden_size: int = 3072  #: d_model.
    intermediate_size: int = 8192  #: d_mlp, the width of the gated MLP.
    max_position_embeddings: int = 4096  #: the context it handles (longrope's factor is it / the original).
    rms_norm_eps: float = 1e-5  #: RMSNorm epsilon.
    eos_token_id: int | list[int] | None = 32000  #: the end-of-text token.
    pad_token_id: int | None = 32000  #: the padding token.
    #: The context it was pre-trained for: ``longrope`` switches to its long factors beyond it.
    original_max_position_embeddings: int = 4096
    #: The last positions a query sees, itself included (None: every earlier position).
    sliding_window: int | None = None
    resid_pdrop: float = 0.0  #: dropout on each sublayer's output before the residual add, while training.

    def fold_rope_settings(self) -> None:
        """Llama's folding, then Phi-3's: ``partial_rotary_factor`` (beside the dict in older configs; 1.0
        unless given) inside the dict, and the ``su``/``yarn`` of the first releases read as ``longrope``."""
        partial = self.extra.pop("partial_rotary_factor", None)
        super().fold_rope_settings()
        self.rope_parameters.setdefault("partial_rotary_factor", 1.0 if partial is None else partial)
        if self.rope_parameters["rope_type"] in ("su", "yarn"):
            self.rope_parameters["rope_type"] = "longrope"

    def validate(self) -> None:
        super().validate()
        if self.attention_bias or self.mlp_bias:
            raise ConfigError(
                "Phi-3 has no biases (its fused qkv_proj and gate_up_proj have none): attention_bias and "
                "mlp_bias must be false",
                field="attention_bias" if self.attention_bias else "mlp_bias",
            )
        rope_type = self.rope_parameters["rope_type"]
        if rope_type not in self.ROPE_TYPES:
            raise ConfigError(
                f"rope_type {rope_type!r}: Phi-3 reads {' or '.join(self.ROPE_TYPES)} (as Hugging Face)",
                field="rope_parameters",
            )

    def rotary_embedding(self) -> RotaryEmbedding:
        """The rotary positions of ``rope_parameters`` (the first ``partial_rotary_factor`` of each head),
        with ``original_max_position_embeddings`` as longrope's original context."""
        return RotaryEmbedding.from_rope_parameters(
            self.rope_parameters, self.head_dim, self.max_position_embeddings,
            original_max_positions=self.original_max_position_embeddings,
        )


# Hugging Face parameter names <-> ours: the fused tensors are split first (q, k, v by head counts; gate and
# up in halves), into parts named ``qkv_proj.q`` ... ``gate_up_proj.up``; the rest is Llama's.
FUSED_QKV = FusedHeadsSplit("self_attn.qkv_proj", dim=0, params=("weight",))
FUSED_GATE_UP = FusedSplit("mlp.gate_up_proj", dim=0, parts=("gate", "up"), params=("weight",))
FUSED_PARTS = {
    "self_attn.q_proj": "self_attn.qkv_proj.q", "self_attn.k_proj": "self_attn.qkv_proj.k",
    "self_attn.v_proj": "self_attn.qkv_proj.v", "mlp.gate_proj": "mlp.gate_up_proj.gate",
    "mlp.up_proj": "mlp.gate_up_proj.up",
}


def fused_part_name(hf_pattern: str) -> str:
    """A Llama parameter name -> the name of the same tensor once Phi-3's fused tensors are split."""
    for separate, part in FUSED_PARTS.items():
        hf_pattern = hf_pattern.replace(f".{separate}.", f".{part}.")
    return hf_pattern


PHI3_KEY_MAP = KeyMap(
    [(fused_part_name(hf), ours) for hf, ours in LLAMA_KEY_MAP.pairs],
    ignored=[regex.pattern for regex in LLAMA_KEY_MAP.ignored],
)


# The model -------------------------------------------------------------------------------------------


class Phi3Model(FusedWeights, LlamaModel):
    """The Phi-3 decoder: :class:`~workbench.models.llama.LlamaModel` (its hooks, one for one) loaded from
    fused projections, with rotary positions on the first ``partial_rotary_factor`` of each head
    (``hook_rot_q`` and ``hook_rot_k`` leave the rest unchanged), the optional sliding window in every layer
    and ``resid_pdrop``.
    """

    config_class = Phi3Config
    body_key_map = PHI3_KEY_MAP
    fused_weights = (FUSED_QKV, FUSED_GATE_UP)

    def attention_options(self, config: Phi3Config, layer: int) -> dict[str, Any]:
        return {**super().attention_options(config, layer), "sliding_window": config.sliding_window}

    def make_block(self, config: Phi3Config, layer: int) -> nn.Module:
        block = super().make_block(config, layer)
        block.dropout = nn.Dropout(config.resid_pdrop)  # on each sublayer's output, before the residual add
        return block


class Phi3ForCausalLM(Phi3Model, LlamaForCausalLM):
    """Phi-3 predicting the next token (Hugging Face's ``lm_head``): as
    :class:`~workbench.models.llama.LlamaForCausalLM`."""


class Phi3ForSequenceClassification(Phi3Model, LlamaForSequenceClassification):
    """Phi-3 scoring a sequence from its last real token (Hugging Face's ``score``): as
    :class:`~workbench.models.llama.LlamaForSequenceClassification`."""


def tiny_config(size, vocabulary) -> dict:
    """The tiny stand-in: grouped-query attention (two query heads per key/value head) and rotary positions on
    half of each head (as Phi-4-mini rotates a part)."""
    return {
        "num_key_value_heads": max(1, size.n_heads // 2),
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
    }


ARCHITECTURE = Architecture(
    "Phi-3", Phi3Config, Phi3Model, causal_lm=Phi3ForCausalLM, default_task="causal_lm",
    sequence_classification=Phi3ForSequenceClassification, tokenizer_family="byte_level_bpe",
    name_patterns=(r"^phi-3",), tiny_config=tiny_config,
)
