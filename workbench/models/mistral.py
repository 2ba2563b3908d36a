"""Mistral (Jiang et al. 2023, "Mistral 7B"): Llama's layout with sliding-window attention.

What differs from :mod:`workbench.models.llama`:
- every layer's attention is local: a query sees only the last ``sliding_window`` positions, itself included
  (key j is masked for query i when ``i - j >= sliding_window``); ``sliding_window: null`` (Mistral 7B v0.2
  and later) makes it Llama's full causal attention;
- its defaults are Mistral 7B's (8 key/value heads, a context of 131072, a window of 4096), and its
  attention and MLP have no biases (Hugging Face's Mistral has no setting for them).

The window counts positions, padding and cached positions included, as Hugging Face counts them: padding
before a sentence shifts its queries and keys alike, so a padded batch still gives every sentence the
activations it has alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..architecture import Architecture
from .llama import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification, LlamaModel


@dataclass
class MistralConfig(LlamaConfig):
    """Mistral's hyper-parameters, with Hugging Face's names: Llama's, Mistral 7B's defaults and
    ``sliding_window``."""

    model_type = "mistral"
    SIZE_FIELDS = (*LlamaConfig.SIZE_FIELDS, "sliding_window")

    intermediate_size: int = 14336  #: d_mlp, the width of the gated MLP.
    num_key_value_heads: int | None = 8  #: key/value heads per block (None: as many as query heads).
    max_position_embeddings: int = 131072  #: the context it was trained for.
    #: The last positions a query sees, itself included (None: every earlier position, as in Llama).
    sliding_window: int | None = 4096

    def layer_window(self, layer: int) -> int | None:
        """The sliding window of layer ``layer``'s attention (None: full causal attention); all the same."""
        return self.sliding_window


class MistralModel(LlamaModel):
    """The Mistral decoder: :class:`~workbench.models.llama.LlamaModel` with a sliding window in every
    attention layer. Hooks as Llama's; ``attn.hook_scores`` has the mask of the keys outside the window
    added, and ``attn.hook_pattern`` is 0 there."""

    config_class = MistralConfig

    def attention_options(self, config: MistralConfig, layer: int) -> dict[str, Any]:
        return {**super().attention_options(config, layer), "sliding_window": config.layer_window(layer)}


class MistralForCausalLM(MistralModel, LlamaForCausalLM):
    """Mistral predicting the next token (Hugging Face's ``lm_head``): as
    :class:`~workbench.models.llama.LlamaForCausalLM`."""


class MistralForSequenceClassification(MistralModel, LlamaForSequenceClassification):
    """Mistral scoring a sequence from its last real token (Hugging Face's ``score``): as
    :class:`~workbench.models.llama.LlamaForSequenceClassification`."""


def tiny_config(size, vocabulary) -> dict:
    """The tiny stand-in: grouped-query attention (two query heads per key/value head) and a window a quarter
    of its context, so that long inputs meet it."""
    return {"num_key_value_heads": max(1, size.n_heads // 2), "sliding_window": max(1, size.n_positions // 4)}


ARCHITECTURE = Architecture(
    "Mistral", MistralConfig, MistralModel, causal_lm=MistralForCausalLM, default_task="causal_lm",
    sequence_classification=MistralForSequenceClassification, tokenizer_family="byte_level_bpe",
    name_patterns=(r"^mistral-",), tiny_config=tiny_config,
)
