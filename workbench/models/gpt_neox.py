"""GPT-NeoX (Black et al. 2022, "GPT-NeoX-20B: An Open-Source Autoregressive Language Model") and the Pythia
suite (Biderman et al. 2023) trained with it.

What is distinctive about it, next to Llama (whose decoder it reuses: :class:`~.llama.LlamaModel`):
- parallel attention and MLP (``use_parallel_residual``, the default): both read the block's input and both
  are added to it at once, ``x = x + Attention(LN1(x)) + MLP(LN2(x))``; with ``use_parallel_residual=False``
  a pre-norm block, ``x = x + Attention(LN1(x))``, then ``x = x + MLP(LN2(x))``;
- LayerNorms with a bias (not RMSNorms), and a plain GELU MLP, ``dense_4h_to_h(gelu(dense_h_to_4h(x)))``;
- rotary positions on a fraction of each head only (``rotary_pct``, 0.25 in Pythia; transformers 5's
  ``rope_parameters["partial_rotary_factor"]``), the first ``int(d_head * rotary_pct)`` dimensions,
  half-split pairs; the rest of the head carries no position;
- q, k and v fused in one ``attention.query_key_value`` projection, interleaved per head (head 0's q, k, v
  rows, then head 1's, ...): split on load and fused on save by a
  :class:`~workbench.components.fused.PerHeadFusedSplit`;
- biases on every attention projection (``attention_bias``) and in the MLP; an untied unembedding,
  ``embed_out``.

Batching, positions and the cache are Llama's: position ids come from the attention mask, so left- and
right-padded batches give every real token its activations alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from ..architecture import Architecture
from ..components import MLP, Attention, LayerNorm, ParallelBlock, PreNormBlock, RotaryEmbedding, activation
from ..components.fused import FusedWeights, PerHeadFusedSplit
from ..components.heads import CausalLMHead, SequenceClassificationHead
from ..config import ConfigError, ModelConfig
from ..loading import KeyMap
from ..model import GenerationMixin
from .llama import SCORE_KEY_MAP, LlamaConfig, LlamaForCausalLM, LlamaModel

# Configuration ---------------------------------------------------------------------------------------


@dataclass
class GPTNeoXConfig(ModelConfig):
    """GPT-NeoX's hyper-parameters, with Hugging Face's names (defaults: GPT-NeoX-20B's)."""

    model_type = "gpt_neox"

    # Checked by ModelConfig.check_fields before anything is built.
    SIZE_FIELDS = (
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "max_position_embeddings",
    )
    NON_NEGATIVE_FIELDS = ("layer_norm_eps", "initializer_range", "bos_token_id", "pad_token_id")
    PROBABILITY_FIELDS = ("attention_dropout", "hidden_dropout")

    # Canonical names (readable and writable; see workbench.config). d_head is hidden_size / heads.
    ATTRIBUTE_MAP = {
        "d_model": "hidden_size", "n_layers": "num_hidden_layers", "d_mlp": "intermediate_size",
        "n_heads": "num_attention_heads", "max_positions": "max_position_embeddings",
    }

    vocab_size: int = 50432  #: tokens in the vocabulary (Pythia's checkpoints: 50304 and more, padded).
    hidden_size: int = 6144  #: d_model.
    intermediate_size: int = 24576  #: d_mlp.
    num_hidden_layers: int = 44  #: blocks.
    num_attention_heads: int = 64  #: heads per block; d_head = hidden_size / num_attention_heads.
    hidden_act: str = "gelu"  #: the MLP's activation (exact GELU).
    max_position_embeddings: int = 2048  #: the context it was trained for (rotary scaling reads it).
    layer_norm_eps: float = 1e-5  #: LayerNorm epsilon.
    #: The rotary settings as transformers 5 writes them: ``rope_theta`` (the base), ``partial_rotary_factor``
    #: (the fraction of each head that rotates), ``rope_type`` and that type's parameters (see
    #: :mod:`workbench.components.rotary`). Older ``config.json`` files (Pythia's) give ``rotary_emb_base``
    #: and ``rotary_pct`` instead, and maybe a ``rope_scaling``: they are read into this one dict and written
    #: back as it, as transformers 5 does (:meth:`fold_rope_settings`).
    rope_parameters: dict[str, Any] | None = None
    use_parallel_residual: bool = True  #: attention and MLP side by side (True) or one after the other.
    attention_bias: bool = True  #: biases on the query_key_value and dense projections.
    attention_dropout: float = 0.0  #: dropout on the attention pattern while training.
    hidden_dropout: float = 0.0  #: dropout on each sublayer's output while training.
    initializer_range: float = 0.02  #: std of the normal initialization.
    bos_token_id: int | None = 0  #: the beginning-of-text token.
    eos_token_id: int | list[int] | None = 2  #: the end-of-text token (Pythia's is 0).
    pad_token_id: int | None = None  #: the padding token (Pythia's tokenizer has none).
    tie_word_embeddings: bool = False  #: the unembedding is the token embedding (never in released models).

    def __post_init__(self) -> None:
        super().__post_init__()
        self.fold_rope_settings()

    def fold_rope_settings(self) -> None:
        """One ``rope_parameters`` dict (default: base 10000, a quarter of each head rotating, no scaling),
        from it or from an older config's ``rope_scaling``, ``rotary_emb_base`` and ``rotary_pct`` (in
        ``extra`` until here), as transformers 5's ``GPTNeoXConfig`` folds them."""
        base, fraction = self.extra.pop("rotary_emb_base", None), self.extra.pop("rotary_pct", None)
        if base is not None:
            self.extra.setdefault("rope_theta", base)
        LlamaConfig.fold_rope_settings(self)  # rope_scaling and rope_theta into the dict, as Llama's
        self.rope_parameters.setdefault("partial_rotary_factor", 0.25 if fraction is None else fraction)

    def validate(self) -> None:
        super().validate()
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"hidden_size={self.hidden_size} is not a multiple of num_attention_heads="
                f"{self.num_attention_heads}: the heads split the width in equal parts",
                field="num_attention_heads",
            )
        fraction = self.rope_parameters["partial_rotary_factor"]
        if not 0 < fraction <= 1 or int(self.d_head * fraction) < 1:
            raise ConfigError(
                f"rope_parameters' partial_rotary_factor (rotary_pct)={fraction!r} must rotate at least one "
                f"dimension of a head of {self.d_head}, and at most all of them",
                field="rope_parameters",
            )
        activation(self.hidden_act)
        self.rotary_embedding()  # an unknown rope_type, or one missing a parameter, is refused here

    def estimated_parameters(self) -> int:
        """The parameters of the model with an LM head (the memory check reads it): token embedding and an
        untied unembedding, per block q, k, v and o (with their biases when ``attention_bias``), the MLP with
        its biases and two LayerNorms, then the final LayerNorm."""
        d = self.d_model
        embeddings = self.vocab_size * d * (1 if self.tie_word_embeddings else 2)
        attention = 4 * d * d + (4 * d if self.attention_bias else 0)
        mlp = 2 * d * self.d_mlp + self.d_mlp + d
        return embeddings + self.n_layers * (attention + mlp + 4 * d) + 2 * d

    def rotary_embedding(self) -> RotaryEmbedding:
        """The rotary positions that ``rope_parameters`` describe, on the first
        ``int(d_head * partial_rotary_factor)`` dimensions of each head, rounded up to pairs as Hugging Face
        rounds them."""
        rope = dict(self.rope_parameters)
        if int(self.d_head * rope["partial_rotary_factor"]) == 1:
            # Hugging Face turns one pair at frequency 1 (base^0), which is what a rotary_dim of 2 computes.
            rope["partial_rotary_factor"] = 2 / self.d_head
        return RotaryEmbedding.from_rope_parameters(rope, self.d_head, self.max_position_embeddings)


# Hugging Face parameter names <-> ours. ``query_key_value`` is first split per head into q, k and v parts
# (FUSED_QKV, before the renaming); the key map renames the parts.
FUSED_QKV = PerHeadFusedSplit("attention.query_key_value")
GPT_NEOX_KEY_MAP = KeyMap(
    [
        ("embed_in.weight", "embed.weight"),
        ("layers.{i}.input_layernorm.{p}", "blocks.{i}.ln1.{p}"),
        ("layers.{i}.attention.query_key_value.q.{p}", "blocks.{i}.attn.q.{p}"),
        ("layers.{i}.attention.query_key_value.k.{p}", "blocks.{i}.attn.k.{p}"),
        ("layers.{i}.attention.query_key_value.v.{p}", "blocks.{i}.attn.v.{p}"),
        ("layers.{i}.attention.dense.{p}", "blocks.{i}.attn.o.{p}"),
        ("layers.{i}.post_attention_layernorm.{p}", "blocks.{i}.ln2.{p}"),
        ("layers.{i}.mlp.dense_h_to_4h.{p}", "blocks.{i}.mlp.fc_in.{p}"),
        ("layers.{i}.mlp.dense_4h_to_h.{p}", "blocks.{i}.mlp.fc_out.{p}"),
        ("final_layer_norm.{p}", "ln_final.{p}"),
    ],
    # Buffers of older checkpoints (Pythia's): the causal mask and its fill value, and the rotary
    # frequencies; all recomputed here, never loaded.
    ignored=[r"(^|\.)attention\.(bias|masked_bias)$", r"(^|\.)rotary_emb\.inv_freq$"],
)
# The checkpoints' name for the unembedding (transformers 5 calls the module lm_head and saves it so).
EMBED_OUT_KEY_MAP = KeyMap([("embed_out.weight", "unembed.weight")])


# The model -------------------------------------------------------------------------------------------


class GPTNeoXModel(FusedWeights, LlamaModel):
    """The GPT-NeoX decoder: token embeddings, blocks of LayerNorms, rotary attention (on a fraction of each
    head, with biases) and a GELU MLP, side by side or in turn, then a final LayerNorm. The decoder itself
    (positions from the mask, the cache, the hidden states) is :class:`~.llama.LlamaModel`'s.

    Hooks: hook_embed [batch, pos, d_model]; per block ``blocks.{i}.``: hook_resid_pre; ln1.hook_scale
    [batch, pos, 1], ln1.hook_normalized; attn.hook_q, attn.hook_k, attn.hook_v [batch, pos, head, d_head];
    attn.hook_rot_q, attn.hook_rot_k (after the rotation of the first ``rotary_dim`` dimensions; the others
    equal hook_q's/hook_k's); attn.hook_scores, attn.hook_pattern [batch, head, query_pos, key_pos];
    attn.hook_z [batch, pos, head, d_head]; hook_attn_out; (hook_resid_mid only when not parallel);
    ln2.hook_scale, ln2.hook_normalized; mlp.hook_pre, mlp.hook_post [batch, pos, d_mlp]; hook_mlp_out;
    hook_resid_post; then ln_final.hook_scale, ln_final.hook_normalized. In a parallel block ``ln2`` reads
    hook_resid_pre, as ``ln1`` does.
    """

    config_class = GPTNeoXConfig
    body_key_map = GPT_NEOX_KEY_MAP
    base_model_prefix = "gpt_neox"
    fused_weights = (FUSED_QKV,)

    def make_norm(self, config: GPTNeoXConfig) -> nn.Module:
        return LayerNorm(config.d_model, config.layer_norm_eps)

    def make_attention(self, config: GPTNeoXConfig, layer: int) -> nn.Module:
        return Attention(
            config.d_model, config.n_heads, config.attention_dropout, bias=config.attention_bias, rotary=True
        )

    def make_mlp(self, config: GPTNeoXConfig, layer: int) -> nn.Module:
        return MLP(config.d_model, config.d_mlp, config.hidden_act)

    def make_block(self, config: GPTNeoXConfig, layer: int) -> nn.Module:
        block = ParallelBlock if config.use_parallel_residual else PreNormBlock
        return block(
            self.make_attention(config, layer), self.make_mlp(config, layer), config.d_model,
            config.layer_norm_eps, config.hidden_dropout, norm=lambda: self.make_norm(config),
        )


class GPTNeoXForCausalLM(CausalLMHead, GPTNeoXModel, GenerationMixin):
    """GPT-NeoX predicting the next token: ``unembed`` (the checkpoints' ``embed_out``, bias-free, untied
    unless ``tie_word_embeddings``) gives ``hook_logits`` [batch, pos, vocab]. ``labels`` [batch, pos] give
    the loss of :meth:`LanguageModelHead.forward`; ``use_cache=True`` returns the key/value cache that
    ``model.generate(...)`` decodes with.
    """

    head_key_map = EMBED_OUT_KEY_MAP

    def __init__(self, config: GPTNeoXConfig) -> None:
        super().__init__(config)
        self.add_unembed(config.d_model, config.vocab_size, bias=False)

    decode_residual = LlamaForCausalLM.decode_residual  # ln_final, then the unembedding (the logit lens)


class GPTNeoXForSequenceClassification(SequenceClassificationHead, GPTNeoXModel):
    """GPT-NeoX scoring a whole sequence from its last real token (found from the attention mask, else from
    ``pad_token_id``; either padding side) through ``score``, a bias-free linear layer: ``hook_logits``
    [batch, num_labels]. Labels and loss: :meth:`SequenceClassificationHead.forward`.
    """

    head_key_map = SCORE_KEY_MAP

    def __init__(self, config: GPTNeoXConfig) -> None:
        super().__init__(config)
        self.add_sequence_classifier(config.d_model, config.num_labels, bias=False)


def tiny_config(size, vocabulary) -> dict:
    """The tiny stand-in, Pythia-shaped: parallel blocks, a quarter of each head rotating, untied."""
    return {
        "use_parallel_residual": True, "tie_word_embeddings": False,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25},
    }


ARCHITECTURE = Architecture(
    "GPT-NeoX", GPTNeoXConfig, GPTNeoXModel, causal_lm=GPTNeoXForCausalLM, default_task="causal_lm",
    sequence_classification=GPTNeoXForSequenceClassification, tokenizer_family="byte_level_bpe",
    name_patterns=(r"^pythia", r"^gpt-neox"), tiny_config=tiny_config,
)
