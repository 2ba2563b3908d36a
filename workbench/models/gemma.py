"""Gemma (Gemma Team 2024, "Gemma: Open Models Based on Gemini Research and Technology"): Llama's decoder
(:mod:`workbench.models.llama`) with three changes, written here as overrides of its parts:

- RMSNorm with a ``(1 + w)`` weight: the stored weight is the offset from 1 (zero at initialization), and the
  product with it is taken in float32 before casting back to the input dtype (Hugging Face's order);
- GeGLU instead of SwiGLU: ``down(gelu_tanh(gate(x)) * up(x))`` (``hidden_act`` ``gelu_pytorch_tanh``;
  the original releases' ``"gelu"`` is read as it, as Hugging Face reads it);
- token embeddings multiplied by sqrt(d_model), the factor rounded to the embedding's dtype first (as the
  released checkpoints were trained: in bfloat16 sqrt(3072) is 55.5, not 55.43).

``head_dim`` is set apart from ``hidden_size / num_attention_heads`` (256 in the releases), the unembedding is
the token embedding, and Gemma 2B uses multi-query attention (one key/value head).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..architecture import Architecture
from ..components import RMSNorm
from ..config import ConfigError
from .llama import (
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    LlamaModel,
)

# Configuration ---------------------------------------------------------------------------------------


@dataclass
class GemmaConfig(LlamaConfig):
    """Gemma's hyper-parameters, with Hugging Face's names and defaults (Gemma 7B's sizes); the fields are
    Llama's (:class:`~workbench.models.llama.LlamaConfig`)."""

    model_type = "gemma"

    vocab_size: int = 256000  #: tokens in the vocabulary.
    hidden_size: int = 3072  #: d_model.
    intermediate_size: int = 24576  #: d_mlp, the width of the gated MLP.
    num_hidden_layers: int = 28  #: blocks.
    num_attention_heads: int = 16  #: query heads per block.
    #: key/value heads per block: Hugging Face's default is 16 whatever num_attention_heads is (a config.json
    #: without the field reads so); None: as many as query heads.
    num_key_value_heads: int | None = 16
    head_dim: int | None = 256  #: d_head, not tied to hidden_size / num_attention_heads.
    hidden_act: str = "gelu_pytorch_tanh"  #: the gate's activation (GeGLU, tanh-approximated gelu).
    max_position_embeddings: int = 8192  #: the context it was trained for.
    bos_token_id: int | None = 2  #: the beginning-of-text token.
    eos_token_id: int | list[int] | None = 1  #: the end-of-text token.
    pad_token_id: int | None = 0  #: the padding token.
    tie_word_embeddings: bool = True  #: the unembedding is the token embedding.

    def __post_init__(self) -> None:
        # The first releases' config.json says "gelu" and means the tanh approximation (Hugging Face
        # rewrites it the same way).
        if self.hidden_act == "gelu":
            self.hidden_act = "gelu_pytorch_tanh"
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        if self.mlp_bias:
            raise ConfigError("Gemma's MLP has no biases (Hugging Face's Gemma ignores mlp_bias)",
                              field="mlp_bias")


# The model, as Llama's with Gemma's parts --------------------------------------------------------------


class GemmaModel(LlamaModel):
    """The Gemma decoder: Llama's (:class:`~workbench.models.llama.LlamaModel`) with (1 + w) RMSNorms, a GeGLU
    MLP and token embeddings scaled by sqrt(d_model).

    Hooks: Llama's. ``hook_embed`` holds the scaled embeddings (Hugging Face's ``hidden_states[0]``);
    ``ln*.hook_normalized`` is after the (1 + w) weight; ``mlp.hook_pre`` is the gate before gelu.
    """

    config_class = GemmaConfig

    def make_norm(self, config: GemmaConfig) -> nn.Module:
        return RMSNorm(config.d_model, config.rms_norm_eps, weight_offset=1.0)

    def token_embeddings(self, input_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None) -> torch.Tensor:
        """input_ids [batch, pos] -> their embeddings times sqrt(d_model) [batch, pos, d_model]; ``inputs_embeds``
        as given (unscaled, as Hugging Face takes them)."""
        embeddings = super().token_embeddings(input_ids, inputs_embeds)
        if inputs_embeds is not None:
            return embeddings
        # Hugging Face keeps sqrt(d_model) as a float32 scalar and casts it to the embedding's dtype.
        normalizer = torch.tensor(self.config.d_model**0.5, dtype=torch.float32)
        return embeddings * normalizer.to(device=embeddings.device, dtype=embeddings.dtype)


class GemmaForCausalLM(LlamaForCausalLM, GemmaModel):
    """Gemma predicting the next token, as :class:`~workbench.models.llama.LlamaForCausalLM`: ``unembed`` is
    the token embedding unless ``tie_word_embeddings`` is off; ``hook_logits`` [batch, pos, vocab]."""

    config_class = GemmaConfig


class GemmaForSequenceClassification(LlamaForSequenceClassification, GemmaModel):
    """Gemma scoring a sequence from its last real token, as
    :class:`~workbench.models.llama.LlamaForSequenceClassification`: ``hook_logits`` [batch, num_labels]."""

    config_class = GemmaConfig


def tiny_config(size, vocabulary) -> dict:
    """The tiny stand-in: multi-query attention (Gemma 2B's), head_dim d_model / n_heads."""
    return {"num_key_value_heads": 1, "head_dim": size.d_model // size.n_heads}


ARCHITECTURE = Architecture(
    "Gemma", GemmaConfig, GemmaModel, causal_lm=GemmaForCausalLM, default_task="causal_lm",
    sequence_classification=GemmaForSequenceClassification, tokenizer_family="byte_level_bpe",
    # gemma-2b, gemma-7b-it, gemma-1.1-2b-it; not gemma-2-* (Gemma 2) nor gemma-3*
    name_patterns=(r"^gemma-(1\.1-)?\d+(\.\d+)?b", r"^codegemma"),
    tiny_config=tiny_config,
)
